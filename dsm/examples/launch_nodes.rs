//! Launching DSM nodes from your own program, with the launcher's building blocks instead of
//! `init::launch`: the program binds one listener per node (`bind_slots`), starts each node
//! as a process of itself that inherits its listener (`pass_listener`), dies with it
//! (`die_with_launcher`) and proves the run's cluster key (`TempKeyFile`), and then decides
//! for itself what a node's end means: here it waits for every node and keeps the others
//! running when one fails, where `launch` would stop them.
//!
//! Each node builds its configuration with `NodeConfig::builder`, joins, and counts with a
//! `DsmAtomic<u64>` shared by all of them.
//!
//!     cargo run -p memlink-dsm --example launch_nodes          # 3 nodes
//!     cargo run -p memlink-dsm --example launch_nodes -- 5     # 5 nodes

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;

use memlink_dsm::admission::{KEY_FILE_ENV, TempKeyFile};
use memlink_dsm::atomic::DsmAtomic;
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{bind_slots, die_with_launcher, pass_listener};
use memlink_dsm::{Backend, DsmError, NodeConfig};

/// Increments per node.
const ROUNDS: u64 = 1000;

/// The node: joins, adds ROUNDS to the shared counter, and checks the total once everyone has.
fn node(id: u16, peers: &str) -> Result<u64, String> {
    let peers = peers
        .split(',')
        .map(|p| p.parse().map_err(|e| format!("bad peer address {p}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    // Listens on its own entry of `peers` (the listener it inherited), with default pages,
    // manager and connect timeout; the key comes from the launcher (KEY_FILE_ENV).
    let config = NodeConfig::builder(id, peers)
        .pages(16)
        .build()
        .map_err(|e| e.to_string())?;
    let dsm = Dsm::join(config, Backend::Sigsegv).map_err(|e| e.to_string())?;
    let total = count(&dsm).map_err(|e| e.to_string())?;
    dsm.leave().map_err(|e| e.to_string())?;
    Ok(total)
}

fn count(dsm: &Dsm) -> Result<u64, DsmError> {
    if dsm.id() == 0 {
        let counter = DsmAtomic::<u64>::new(dsm, 0)?;
        dsm.publish(1, counter.offset() as u64);
    }
    dsm.barrier(1)?;
    let counter = DsmAtomic::<u64>::attach(dsm, dsm.lookup(1) as usize)?;
    for _ in 0..ROUNDS {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    dsm.barrier(2)?;
    Ok(counter.load(Ordering::SeqCst))
}

/// The launcher: one process of this program per node, each with its listener and the key.
fn launcher(nodes: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let key = TempKeyFile::create().map_err(|e| e.to_string())?;
    let slots = bind_slots(nodes).map_err(|e| format!("cannot bind the listeners: {e}"))?;
    let mut children = Vec::new();
    for (slot, listener) in slots {
        let mut cmd = Command::new(&exe);
        cmd.args(["node", &slot.id.to_string(), &slot.peers_arg()])
            .env(KEY_FILE_ENV, key.path())
            .stdout(Stdio::piped());
        pass_listener(&mut cmd, &listener);
        die_with_launcher(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start node {}: {e}", slot.id))?;
        // The node holds its own copy of the listener now.
        drop(listener);
        children.push((slot.id, child));
    }
    // Every node is waited for; one that fails does not stop the others.
    let mut failed = Vec::new();
    for (id, child) in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            failed.push(format!("node {id} {}", out.status));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join(", "))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "node" {
        let Ok(id) = args[2].parse() else {
            eprintln!("bad node id {}", args[2]);
            return ExitCode::from(2);
        };
        return match node(id, &args[3]) {
            Ok(total) => {
                let nodes = args[3].split(',').count() as u64;
                println!("node {id}: counter {total}, expected {}", nodes * ROUNDS);
                if total == nodes * ROUNDS {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("node {id}: {e}");
                ExitCode::from(3)
            }
        };
    }
    let nodes = match args.get(1).map(|n| n.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if (1..=64).contains(&n) => n,
        _ => {
            eprintln!("usage: launch_nodes [NODES (1 to 64)]");
            return ExitCode::from(2);
        }
    };
    match launcher(nodes) {
        Ok(()) => {
            println!("verified: true");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("launch_nodes: {e}");
            ExitCode::FAILURE
        }
    }
}
