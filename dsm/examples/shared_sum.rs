//! A program that joins a DSM cluster and uses the shared region directly, with plain pointers.
//!
//! Node 0 fills an array in the region; every node sums its share of it through an ordinary
//! `*const u64` (the pages come over the network on first touch) and stores its partial sum in
//! the region; node 0 adds the partial sums up and checks them.
//!
//! On one host (the example starts 3 node processes of itself):
//!     cargo run -p memlink-dsm --example shared_sum
//! On several hosts (the same --peers list everywhere, index = node id):
//!     shared_sum node 0 0.0.0.0:7700 10.0.0.1:7700,10.0.0.2:7700
//!     shared_sum node 1 0.0.0.0:7700 10.0.0.1:7700,10.0.0.2:7700

use std::process::{Command, ExitCode};
use std::time::Duration;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::{Backend, DsmError, NodeConfig};

const LEN: usize = 8192; // 64 KiB of u64: 16 pages

fn node(dsm: &Dsm) -> Result<bool, DsmError> {
    let nodes = dsm.nodes();
    if dsm.id() == 0 {
        let data = dsm.alloc(LEN * 8, 8)?;
        let sums = dsm.alloc(nodes * 8, 8)?;
        let p = dsm.at::<u64>(data);
        for i in 0..LEN {
            // SAFETY: `data` is a block of LEN u64 in the region, allocated just now.
            unsafe { p.add(i).write(i as u64 * 3) };
        }
        dsm.publish(1, data as u64);
        dsm.publish(2, sums as u64);
    }
    dsm.barrier(1)?;
    let data = dsm.at::<u64>(dsm.lookup(1) as usize) as *const u64;
    let sums = dsm.at::<u64>(dsm.lookup(2) as usize);
    let me = dsm.id() as usize;
    let (start, end) = (LEN * me / nodes, LEN * (me + 1) / nodes);
    // SAFETY: [start, end) lies inside the LEN-element block node 0 filled before barrier 1;
    // the address is the same on every node and reading it faults the pages in.
    let partial: u64 = (start..end).map(|i| unsafe { data.add(i).read() }).sum();
    // SAFETY: slot `me` of the `nodes`-element block; only this node writes it.
    unsafe { sums.add(me).write(partial) };
    dsm.barrier(2)?;
    // SAFETY: every node wrote its slot before barrier 2.
    let total: u64 = (0..nodes).map(|n| unsafe { sums.add(n).read() }).sum();
    let expect: u64 = (0..LEN as u64).map(|i| i * 3).sum();
    println!("node {me}: partial {partial}, total {total}, expected {expect}");
    Ok(total == expect)
}

fn join_and_run(id: u16, listen: &str, peers: &str) -> Result<bool, String> {
    let peers = peers
        .split(',')
        .map(|p| p.parse().map_err(|e| format!("bad peer address {p}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    let listen = listen
        .parse()
        .map_err(|e| format!("bad listen address {listen}: {e}"))?;
    // The admission defaults to the local launcher's key (MEMLINK_DSM_KEY_FILE), or none on
    // loopback; the manager to central, the connect timeout to 30 s.
    let config = NodeConfig::builder(id, peers)
        .listen(listen)
        .pages(32)
        .build()
        .map_err(|e| e.to_string())?;
    let dsm = Dsm::join(config, Backend::Sigsegv).map_err(|e| e.to_string())?;
    let ok = node(&dsm).map_err(|e| e.to_string())?;
    dsm.leave().map_err(|e| e.to_string())?;
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "node" {
        let Ok(id) = args[2].parse() else {
            eprintln!("bad node id {}", args[2]);
            return ExitCode::from(2);
        };
        return match join_and_run(id, &args[3], &args[4]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("node {id}: {e}");
                ExitCode::from(3)
            }
        };
    }
    if args.len() != 1 {
        eprintln!("usage: shared_sum                      (a local cluster of 3 nodes)");
        eprintln!("       shared_sum node ID LISTEN PEERS (one node of a cluster)");
        return ExitCode::from(2);
    }
    let exe = std::env::current_exe().expect("own path");
    let launched = memlink_dsm::init::launch(3, Duration::from_secs(60), |slot| {
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .arg(slot.id.to_string())
            .arg(slot.listen.to_string())
            .arg(slot.peers_arg());
        cmd
    });
    match launched {
        Ok(outputs) => {
            for o in outputs {
                print!("{}", o.stdout);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
