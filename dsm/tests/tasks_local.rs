//! Tasks on one node, for real: a one-node DSM, task blocks (descriptor and stack) in its
//! region, worker threads switching between tasks. Checks that tasks interleave at their
//! yields on one worker, that a task's stack keeps pointers into itself across yields (on
//! several workers, so a task may resume on another thread), that `current` names the task,
//! that a panic ends only its task and comes back to the joiner, that tasks spawn and join
//! tasks, and that results match a sequential run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use memlink_dsm::cluster::Dsm;
use memlink_dsm::process::TaskId;
use memlink_dsm::process::pool::{self, JoinError, TaskPool, TaskSpawnError, current, yield_now};
use memlink_dsm::{Backend, NodeConfig};

static LOG: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static STARTED: AtomicU64 = AtomicU64::new(0);

/// With one worker: waits (yielding) until the other task has started too, which only a
/// switch between the two can make happen, then logs and yields three times.
fn log_and_yield(who: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    while STARTED.load(Ordering::SeqCst) < 2 {
        yield_now();
    }
    for _ in 0..3 {
        LOG.lock().unwrap().push(who);
        yield_now();
    }
    who
}

/// A computation whose stack holds a pointer into its own stack across yields.
fn walk(n: u64) -> u64 {
    let mut cells = [0u64; 64];
    let p: *mut u64 = cells.as_mut_ptr();
    let mut acc = 0u64;
    for i in 0..64u64 {
        // SAFETY: p points into `cells`, alive for the whole function; i < 64.
        unsafe { *p.add(i as usize) = n * i + 1 };
        if i % 8 == 0 {
            yield_now();
        }
    }
    for c in cells {
        acc = acc.wrapping_mul(31).wrapping_add(c);
    }
    acc
}

fn walk_sequential(n: u64) -> u64 {
    (0..64u64).fold(0u64, |acc, i| acc.wrapping_mul(31).wrapping_add(n * i + 1))
}

fn who_am_i(_: u64) -> u64 {
    yield_now();
    current().map(|t| t.0).unwrap_or(u64::MAX)
}

/// The sum 0 + 1 + ... + (n - 1), split in halves by tasks that spawn tasks down to ranges
/// of 4, each half joined from inside its parent task (which yields meanwhile).
fn range_sum(range: [u64; 2]) -> u64 {
    let [lo, hi] = range;
    if hi - lo <= 4 {
        yield_now();
        return (lo..hi).sum();
    }
    let mid = lo + (hi - lo) / 2;
    let left = pool::spawn(range_sum, [lo, mid]).expect("spawn from a task");
    let right = pool::spawn(range_sum, [mid, hi]).expect("spawn from a task");
    let on_region = pool::with_dsm(|dsm| dsm.len()).expect("a task reaches its node's Dsm");
    assert!(on_region > 0);
    pool::join(left).expect("left half") + pool::join(right).expect("right half")
}

fn panics(n: u64) -> u64 {
    if n == 7 {
        panic!("task 7 panics on purpose");
    }
    n
}

#[test]
fn tasks_run_switch_and_end_on_one_node() {
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listen.local_addr().unwrap();
    drop(listen);
    let config = NodeConfig::builder(0, vec![addr])
        .pages(512)
        .build()
        .unwrap();
    let dsm = Dsm::join(config, Backend::Sigsegv).unwrap();
    assert_eq!(current(), None, "the test thread is no task");

    {
        // One worker: two tasks interleave at their yields.
        let pool = TaskPool::start(&dsm, 1).unwrap();
        let a = pool.spawn(log_and_yield, 1u64).unwrap();
        let b = pool.spawn(log_and_yield, 2u64).unwrap();
        assert_eq!(pool.join(a), Ok(1));
        assert_eq!(pool.join(b), Ok(2));
        let log = LOG.lock().unwrap().clone();
        assert_eq!(log.len(), 6);
        assert!(
            log.windows(2).all(|w| w[0] != w[1]),
            "the tasks alternate at their yields: {log:?}"
        );
    }

    let pool = TaskPool::start(&dsm, 2).unwrap();
    let handles: Vec<_> = (0..6u64).map(|n| pool.spawn(walk, n).unwrap()).collect();
    for (n, h) in handles.into_iter().enumerate() {
        assert_eq!(pool.join(h), Ok(walk_sequential(n as u64)));
    }
    // Tasks spawn and join tasks: a tree of 31 tasks summing 0..64.
    let h = pool.spawn(range_sum, [0u64, 64]).unwrap();
    assert_eq!(pool.join(h), Ok((0..64).sum::<u64>()));
    assert!(matches!(
        pool::spawn(range_sum, [0u64, 1]),
        Err(TaskSpawnError::NotInTask)
    ));
    assert!(
        TaskPool::start(&dsm, 1).is_err(),
        "one pool per process at a time"
    );
    let h = pool.spawn_pinned(who_am_i, 0u64).unwrap();
    let id: TaskId = h.id();
    assert_eq!(pool.join(h), Ok(id.0));
    std::panic::set_hook(Box::new(|_| {}));
    let handles: Vec<_> = (5..10u64).map(|n| pool.spawn(panics, n).unwrap()).collect();
    let results: Vec<_> = handles.into_iter().map(|h| pool.join(h)).collect();
    let _ = std::panic::take_hook();
    assert_eq!(
        results,
        vec![
            Ok(5),
            Ok(6),
            Err(JoinError::Panicked("task 7 panics on purpose".into())),
            Ok(8),
            Ok(9)
        ]
    );
    drop(pool);
    dsm.leave().unwrap();
}
