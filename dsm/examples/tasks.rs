//! Tasks on one node: spawn, yield, join (see dsm/README.md, "Tasks"). Joins a one-node
//! cluster on a free loopback port; nothing needs to run beside it.

use memlink_dsm::cluster::Dsm;
use memlink_dsm::process::pool::{TaskPool, yield_now};
use memlink_dsm::{Backend, NodeConfig};

fn triangle(n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..=n {
        sum += i;
        yield_now(); // another task may run here; the stack (and `sum`) stays put
    }
    sum
}

fn main() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dsm = Dsm::join(
        NodeConfig::builder(0, vec![addr]).build().unwrap(),
        Backend::Sigsegv,
    )
    .unwrap();
    let pool = TaskPool::start(&dsm, 2).unwrap();
    let handles: Vec<_> = (0..4).map(|n| pool.spawn(triangle, n).unwrap()).collect();
    let sums: Vec<u64> = handles.into_iter().map(|h| pool.join(h).unwrap()).collect();
    assert_eq!(sums, vec![0, 1, 3, 6]);
    drop(pool);
    dsm.leave().unwrap();
    println!("sums: {sums:?}");
}
