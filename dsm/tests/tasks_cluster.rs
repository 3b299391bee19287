//! Tasks across a cluster of three real node processes (each re-runs this test binary with
//! address-space randomisation off, so the three load the code at the same address, as a
//! migrating task's saved return addresses need):
//! - a task migrates three times around the three nodes in the middle of a computation
//!   whose stack holds pointers into its own stack and into shared data, and returns the
//!   right answer to its home;
//! - tasks spawned on node 0 only spread to the idle nodes by work requests (event-driven:
//!   each waits until tasks have run on all three nodes);
//! - a handle passed to another node is joined there; a panicking task returns its panic;
//!   the handle joined on another node is dropped at its home, which frees the task's block;
//!   a task spawns and joins from deep down its stack on a node it migrated to (the pool
//!   takes its locks on the worker's stack, never on the task's);
//! - tasks that wait for a DSM lock (held across a yield and a migration) or barrier give
//!   their worker up meanwhile: four tasks contend on nodes of one worker each, which a
//!   waiting task holding its worker would deadlock;
//! - a task joining a child that runs on another node waits blocked on its home node,
//!   where the child's end resolves, while an idle node asks for work all along: it is
//!   never handed out (a joiner polling on the ready queue was, and then looked for the
//!   end on the wrong node forever: the quicksort hang of issue 13);
//! - a node killed while it holds tasks makes their handles on the home node return
//!   `NodeLost` naming it, never a hang.

use crate::support;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{NodeSlot, launch};
use memlink_dsm::process::pool::{
    self, JoinError, JoinHandle, TaskPool, current_node, migrate, yield_now,
};
use memlink_dsm::process::{SchedulerConfig, TaskId};
use memlink_dsm::{Backend, DsmError};
use support::{Body, DEADLINE, NodeProcess};

const BODIES: &[(&str, Body)] = &[
    ("hops", hops_node),
    ("spread", spread_node),
    ("kill", kill_node),
    ("locks", locks_node),
    ("joins", joins_node),
];

#[test]
fn node_main() {
    support::node_entry(BODIES);
}

/// The command for node `slot`, with address-space randomisation off in the child.
fn node_command(slot: &NodeSlot, body: &str) -> Command {
    let mut cmd = support::node_command(slot, body, Backend::Sigsegv);
    // Room for a dozen 64 KiB task blocks.
    cmd.env(support::PAGES_ENV, "512");
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe syscall (personality), allocating nothing.
    unsafe {
        cmd.pre_exec(|| {
            let now = libc::personality(0xffff_ffff);
            if now == -1 || libc::personality((now | libc::ADDR_NO_RANDOMIZE) as _) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn assert_verified(body: &str) {
    match launch(3, DEADLINE, |slot| node_command(slot, body)) {
        Ok(outs) => {
            for o in outs {
                assert!(
                    o.stdout.contains("verified: true"),
                    "{body}: node {} printed {:?}, stderr {:?}",
                    o.id,
                    o.stdout,
                    o.stderr
                );
            }
        }
        Err(e) => panic!("{body}: {e}"),
    }
}

/// Directory slots the bodies publish in.
const HANDLE_SLOT: usize = 2;
const FLAG_SLOT: usize = 3;

/// The shared data of `hop`: `DATA_LEN` words at a region offset.
const DATA_LEN: usize = 512;

fn data_value(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7
}

/// The argument of `hop`: where the shared data is (an address in the region: valid on
/// every node).
#[derive(Clone, Copy)]
#[repr(C)]
struct HopArg {
    data: usize,
    hops: u64,
}

// SAFETY: two plain integers (an address in the region is valid on every node).
unsafe impl memlink_dsm::handles::Shareable for HopArg {}

/// Mixes stack cells (through a pointer into its own stack) and shared data (through a
/// pointer into the region) across `hops` migrations around the nodes; returns the sum and,
/// in its top bits, whether every migration landed where asked.
fn hop(arg: HopArg) -> u64 {
    let mut cells = [0u64; 256];
    let own: *mut u64 = cells.as_mut_ptr();
    let shared = arg.data as *const u64;
    let mut acc = 0u64;
    let mut landed = true;
    for round in 0..arg.hops {
        for i in 0..256usize {
            // SAFETY: `own` points into `cells`, alive for the whole function, i < 256;
            // `shared` points to DATA_LEN words in the region, (i + round) % DATA_LEN in it.
            unsafe {
                let v = *shared.add((i + round as usize * 7) % DATA_LEN);
                *own.add(i) = own.add(i).read().wrapping_add(v ^ round);
            }
        }
        let here = current_node().expect("a pool");
        let to = (here + 1) % 3;
        migrate(to).expect("migrate");
        landed &= current_node() == Some(to);
        // A pointer to a local taken after the move still works, and so do the old ones.
        let local = &raw const acc;
        // SAFETY: `local` points to `acc`, alive.
        acc = unsafe { local.read() }.wrapping_add(cells[round as usize % 256]);
    }
    for c in cells {
        acc = acc.wrapping_mul(31).wrapping_add(c);
    }
    (acc >> 1) | (u64::from(landed) << 63)
}

fn hop_sequential(hops: u64) -> u64 {
    let mut cells = [0u64; 256];
    let mut acc = 0u64;
    for round in 0..hops {
        for (i, c) in cells.iter_mut().enumerate() {
            let v = data_value((i + round as usize * 7) % DATA_LEN);
            *c = c.wrapping_add(v ^ round);
        }
        acc = acc.wrapping_add(cells[round as usize % 256]);
    }
    for c in cells {
        acc = acc.wrapping_mul(31).wrapping_add(c);
    }
    (acc >> 1) | (1 << 63)
}

fn square(n: u64) -> u64 {
    yield_now();
    n * n
}

/// Moves to node 1, then spawns and joins a task from 24 KiB down its stack: pages this
/// stack has not touched on node 1 yet. The pool takes its locks on the worker's own stack
/// (a fault there while holding them could wait for the reader thread, blocked on the same
/// lock); in debug builds taking the scheduler's lock on a task's stack panics.
fn deep_spawn(n: u64) -> u64 {
    if current_node() != Some(1) {
        migrate(1).expect("migrate to node 1");
    }
    let mut pad = [0u8; 24 * 1024];
    std::hint::black_box(&mut pad);
    let child = pool::spawn(square, n).expect("spawn from deep in the stack");
    let got = pool::join(child).expect("join from deep in the stack");
    std::hint::black_box(&mut pad);
    got + u64::from(pad[n as usize % pad.len()])
}

fn panics(n: u64) -> u64 {
    if n > 0 {
        panic!("task {n} panics on purpose");
    }
    n
}

fn hops_node(dsm: &Dsm) -> Result<bool, DsmError> {
    let pool = TaskPool::start(dsm, 1).map_err(|e| DsmError::Config(e.to_string()))?;
    let mut ok = true;
    if dsm.id() == 0 {
        let off = dsm.alloc(DATA_LEN * 8, 64)?;
        let data = dsm.at::<u64>(off);
        for i in 0..DATA_LEN {
            // SAFETY: DATA_LEN words at `off`, just allocated in the region.
            unsafe { data.add(i).write(data_value(i)) };
        }
        let h = pool
            .spawn(
                hop,
                HopArg {
                    data: data as usize,
                    hops: 7,
                },
            )
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let got = pool.join(h);
        if got != Ok(hop_sequential(7)) {
            eprintln!("hop returned {got:?}, want {:?}", hop_sequential(7));
            ok = false;
        }
        std::panic::set_hook(Box::new(|_| {}));
        let p = pool
            .spawn(panics, 3u64)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let got = pool.join(p);
        let _ = std::panic::take_hook();
        if got != Err(JoinError::Panicked("task 3 panics on purpose".into())) {
            eprintln!("the panicking task returned {got:?}");
            ok = false;
        }
        let d = pool
            .spawn(deep_spawn, 7u64)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let got = pool.join(d);
        if got != Ok(49) {
            eprintln!("the deep spawner returned {got:?}");
            ok = false;
        }
        // A handle joined on another node.
        let h = pool
            .spawn(square, 12u64)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        dsm.publish(HANDLE_SLOT, h.into_raw().0);
    }
    dsm.barrier(1)?;
    if dsm.id() == 1 {
        // SAFETY: node 0 published a JoinHandle<u64>'s id, joined only here.
        let h: JoinHandle<u64> = unsafe { JoinHandle::from_raw(TaskId(dsm.lookup(HANDLE_SLOT))) };
        let got = pool.join(h);
        if got != Ok(144) {
            eprintln!("the handle joined on node 1 returned {got:?}");
            ok = false;
        }
    }
    // Barrier 3, managed by node 0 (3 mod 3): node 1's thread joined the last handle by its
    // descriptor and told node 0 before it sent its arrival, in order on the one connection,
    // so node 0 knows when the barrier opens: it keeps no handle.
    dsm.barrier(3)?;
    if dsm.id() == 0 && pool.handles_held() != 0 {
        eprintln!(
            "node 0 keeps {} handles after every task was joined",
            pool.handles_held()
        );
        ok = false;
    }
    println!("stats: {:?}", pool.stats());
    drop(pool);
    Ok(ok)
}

#[test]
fn a_task_migrates_mid_computation_around_three_nodes_and_returns_the_right_answer() {
    assert_verified("hops");
}

/// Runs on whichever node took it; returns when tasks have run on all three nodes (bits in
/// a shared word), which only work requests and migrations can make happen.
fn spread(flags: usize) -> u64 {
    // SAFETY: `flags` is the address of an 8-aligned word in the region, allocated by node
    // 0 and kept until every node passed the final barrier.
    let seen = unsafe { &*(flags as *const AtomicU64) };
    loop {
        let here = current_node().expect("a pool");
        if seen.fetch_or(1 << here, Ordering::SeqCst) | (1 << here) == 0b111 {
            return u64::from(here);
        }
        yield_now();
    }
}

fn spread_node(dsm: &Dsm) -> Result<bool, DsmError> {
    let pool = TaskPool::start(dsm, 1).map_err(|e| DsmError::Config(e.to_string()))?;
    let mut ok = true;
    if dsm.id() == 0 {
        let off = dsm.alloc(8, 8)?;
        dsm.publish(FLAG_SLOT, off as u64);
        let flags = dsm.at::<u64>(off) as usize;
        let handles: Vec<_> = (0..6)
            .map(|_| pool.spawn(spread, flags))
            .collect::<Result<_, _>>()
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let mut ran_on = 0u64;
        for h in handles {
            match pool.join(h) {
                Ok(n) => ran_on |= 1 << n,
                Err(e) => {
                    eprintln!("join: {e}");
                    ok = false;
                }
            }
        }
        let stats = pool.stats();
        println!("node 0: {stats:?}, tasks ended on nodes {ran_on:#b}");
        ok &= stats.migrated_out >= 2;
    }
    dsm.barrier(1)?;
    let stats = pool.stats();
    println!("stats: {stats:?}");
    if dsm.id() != 0 {
        // Each idle node asked for work and got at least one task.
        ok &= stats.migrated_in >= 1 && stats.requests_sent >= 1;
    }
    drop(pool);
    Ok(ok)
}

#[test]
fn tasks_spawned_on_one_node_spread_to_the_idle_nodes_by_work_requests() {
    assert_verified("spread");
}

/// What `park` adds to the shared counter when it could not get to node 2.
const PARK_FAILED: u64 = 1 << 32;

/// Moves to node 2 (unless a work request brought it there already: a migration to the node
/// a task runs on fails), counts itself there, and stays (yielding) until node 2 is killed.
/// A failure to get there is counted too, so node 0 reports it rather than waiting.
fn park(counter: usize) -> u64 {
    // SAFETY: an 8-aligned word in the region allocated by node 0, never freed.
    let parked = unsafe { &*(counter as *const AtomicU64) };
    if current_node() != Some(2)
        && let Err(e) = migrate(2)
    {
        eprintln!("park: migrate to node 2: {e}");
        parked.fetch_add(PARK_FAILED, Ordering::SeqCst);
        return 0;
    }
    parked.fetch_add(1, Ordering::SeqCst);
    loop {
        yield_now();
    }
}

fn kill_node(dsm: &Dsm) -> Result<bool, DsmError> {
    // Node 2 runs both parked tasks at once (a worker each), so it never has a surplus and
    // no work request takes one back to node 0: a parked task running on node 0 when node
    // 2 dies would fault on its stack there, which the cluster cannot serve any more (the
    // process exits, by design, before it reports its joins).
    let workers = if dsm.id() == 2 { 2 } else { 1 };
    let pool = TaskPool::start(dsm, workers).map_err(|e| DsmError::Config(e.to_string()))?;
    if dsm.id() != 0 {
        // Waits until the test kills node 2 (then fails with NodeLost).
        let r = dsm.barrier(1);
        println!("node {}: barrier: {r:?}", dsm.id());
        std::mem::forget(pool);
        return r.map(|()| false);
    }
    let off = dsm.alloc(8, 8)?;
    let counter = dsm.at::<u64>(off) as usize;
    let handles: Vec<_> = (0..2)
        .map(|_| pool.spawn(park, counter))
        .collect::<Result<_, _>>()
        .map_err(|e| DsmError::Config(e.to_string()))?;
    // SAFETY: as in `park`.
    let parked = unsafe { &*(counter as *const AtomicU64) };
    loop {
        let now = parked.load(Ordering::SeqCst);
        if now >= PARK_FAILED {
            println!("a park failed");
            let _ = std::io::stdout().flush();
            std::mem::forget(pool);
            return Ok(false);
        }
        if now == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("parked on node 2");
    let _ = std::io::stdout().flush();
    let results: Vec<_> = handles.into_iter().map(|h| pool.join(h)).collect();
    println!("joins: {results:?}");
    let _ = std::io::stdout().flush();
    std::mem::forget(pool);
    Ok(results.iter().all(|r| *r == Err(JoinError::NodeLost(2))))
}

#[test]
fn a_killed_node_holding_tasks_makes_their_handles_return_node_lost_naming_it() {
    let slots = support::slots(3);
    let nodes: Vec<NodeProcess> = slots
        .into_iter()
        .map(|(slot, listener)| NodeProcess::spawn_command(node_command(&slot, "kill"), listener))
        .collect();
    loop {
        match nodes[0].lines.recv_timeout(DEADLINE) {
            Ok(line) if line == "parked on node 2" => break,
            Ok(line) if line == "a park failed" => panic!("a task could not park on node 2"),
            Ok(_) => continue,
            Err(e) => panic!("node 0 never printed \"parked on node 2\": {e:?}"),
        }
    }
    let [n0, n1, mut n2] = <[NodeProcess; 3]>::try_from(nodes).ok().unwrap();
    n2.child.kill().unwrap();
    let _ = n2.child.wait();
    loop {
        match n0.lines.recv_timeout(DEADLINE) {
            Ok(line) if line.starts_with("joins:") => {
                assert_eq!(line, "joins: [Err(NodeLost(2)), Err(NodeLost(2))]");
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("node 0 never reported its joins: {e:?}"),
        }
    }
    let (s0, _) = n0.wait_for(DEADLINE);
    let (s1, _) = n1.wait_for(DEADLINE);
    assert!(s0.is_some() && s1.is_some(), "the survivors ended");
}

/// The cluster-wide lock the `locks` body's tasks contend for (managed by node 1).
const COUNTER_LOCK: u32 = 4;
/// The barrier one task per node arrives at.
const TASK_BARRIER: u32 = 9;
/// Critical sections per `add_under_lock` task.
const ROUNDS: u64 = 5;

/// Adds 1 to a shared counter `ROUNDS` times under a DSM lock, reading and writing it apart
/// with a yield between (and, once, a migration while holding the lock): increments are
/// lost unless the lock excludes the other tasks, and the yields deadlock the one-worker
/// nodes unless a waiting task gives its worker up.
fn add_under_lock(counter: usize) -> u64 {
    let cell = counter as *mut u64;
    for round in 0..ROUNDS {
        let guard = pool::lock(COUNTER_LOCK).expect("lock");
        // SAFETY: `cell` is an 8-aligned word in the region, allocated by node 0 until
        // the final barrier; the DSM lock excludes the other writers.
        let v = unsafe { cell.read_volatile() };
        yield_now();
        if round == 2 {
            let here = current_node().expect("a pool");
            migrate((here + 1) % 3).expect("migrate holding the lock");
        }
        // SAFETY: as above.
        unsafe { cell.write_volatile(v + 1) };
        guard.unlock().expect("unlock");
    }
    u64::from(current_node().expect("a pool"))
}

fn arrive(_: u64) -> u64 {
    pool::barrier(TASK_BARRIER).expect("barrier");
    1
}

fn locks_node(dsm: &Dsm) -> Result<bool, DsmError> {
    let pool = TaskPool::start(dsm, 1).map_err(|e| DsmError::Config(e.to_string()))?;
    let config = |e: memlink_dsm::process::pool::TaskSpawnError| DsmError::Config(e.to_string());
    let mut ok = true;
    // Every node's pinned task arrives at a barrier; node 0's waits while node 0's worker
    // runs the lock tasks.
    let arrival = pool.spawn_pinned(arrive, 0u64).map_err(config)?;
    if dsm.id() == 0 {
        let off = dsm.alloc(8, 8)?;
        let counter = dsm.at::<u64>(off) as usize;
        let handles: Vec<_> = (0..4)
            .map(|_| pool.spawn(add_under_lock, counter))
            .collect::<Result<_, _>>()
            .map_err(config)?;
        for h in handles {
            if let Err(e) = pool.join(h) {
                eprintln!("join: {e}");
                ok = false;
            }
        }
        // SAFETY: as in `add_under_lock`; every task ended.
        let total = unsafe { (counter as *const u64).read_volatile() };
        if total != 4 * ROUNDS {
            eprintln!("the counter is {total}, not {}", 4 * ROUNDS);
            ok = false;
        }
    }
    ok &= pool.join(arrival).is_ok();
    dsm.barrier(1)?;
    drop(pool);
    Ok(ok)
}

#[test]
fn tasks_waiting_for_a_dsm_lock_or_barrier_give_their_worker_up() {
    assert_verified("locks");
}

/// Work requests node 1's null task sends before it lets `far_child` end.
const ASKS: u64 = 25;

/// Moves to node 2 and stays there (yielding) until node 1 sets the flag word.
fn far_child(flag: usize) -> u64 {
    // (A work request may have brought it there already.)
    if current_node() != Some(2) {
        migrate(2).expect("migrate to node 2");
    }
    // SAFETY: an 8-aligned word in the region allocated by node 0, kept until the final
    // barrier.
    let set = unsafe { &*(flag as *const AtomicU64) };
    while set.load(Ordering::SeqCst) == 0 {
        yield_now();
    }
    41
}

/// Keeps node 0's only worker busy (yielding) until node 1 sets the flag word, so a ready
/// task waits on node 0's queue whenever this one runs.
fn busy_until_flag(flag: usize) -> u64 {
    // SAFETY: as in `far_child`.
    let set = unsafe { &*(flag as *const AtomicU64) };
    while set.load(Ordering::SeqCst) == 0 {
        yield_now();
    }
    0
}

/// Spawns `far_child` here (its home) and joins it; returns its result plus one, and in
/// the top bit whether it ended on the node where it started.
fn far_joiner(flag: usize) -> u64 {
    let start = current_node().expect("a pool");
    let child = pool::spawn(far_child, flag).expect("spawn from a task");
    let got = pool::join(child).expect("join the child");
    (got + 1) | (u64::from(current_node() == Some(start)) << 63)
}

fn joins_node(dsm: &Dsm) -> Result<bool, DsmError> {
    // Node 1 asks the others for work in turn every period (no hints: it asks even when
    // nobody announced a surplus).
    let config = SchedulerConfig {
        workers: 1,
        use_hints: dsm.id() != 1,
        ..SchedulerConfig::default()
    };
    let pool = TaskPool::start_with(dsm, config).map_err(|e| DsmError::Config(e.to_string()))?;
    let mut ok = true;
    if dsm.id() == 0 {
        let off = dsm.alloc(8, 8)?;
        dsm.publish(FLAG_SLOT, off as u64);
    }
    dsm.barrier(1)?;
    let flag = dsm.at::<u64>(dsm.lookup(FLAG_SLOT) as usize) as usize;
    if dsm.id() == 0 {
        let busy = pool
            .spawn_pinned(busy_until_flag, flag)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let h = pool
            .spawn(far_joiner, flag)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let got = pool.join(h);
        ok &= pool.join(busy).is_ok();
        let stats = pool.stats();
        eprintln!("node 0: joiner returned {got:?}, {stats:?}");
        // 42, ended on node 0 (a joiner made ready may be taken by a work request, and
        // goes home to end its join). While it waited, node 1 asked node 0 every other
        // request; only a task spawned but not yet run could go (the joiner itself before
        // it first ran, the child), so at least ASKS / 2 - 2 were refused: the blocked
        // joiner was never handed out.
        ok &= got == Ok(42 | 1 << 63) && stats.refusals_sent >= ASKS / 2 - 2;
    }
    if dsm.id() == 1 {
        // The joiner waits meanwhile (the child cannot end before the flag), beside a
        // pinned task that yields on node 0's only worker: were the joiner on the ready
        // queue, these requests would take it.
        while pool.stats().requests_sent < ASKS {
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: as in `far_child`.
        unsafe { &*(flag as *const AtomicU64) }.store(1, Ordering::SeqCst);
    }
    dsm.barrier(2)?;
    println!("stats: {:?}", pool.stats());
    drop(pool);
    Ok(ok)
}

#[test]
fn a_joining_task_waits_blocked_on_its_home_and_is_never_handed_out() {
    assert_verified("joins");
}
