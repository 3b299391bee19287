//! The message-passing litmus test across node processes: node 0 writes data, then a flag, on
//! different pages, round after round; the other nodes read the flag, then the data. Under
//! sequential consistency a reader that sees flag f must see data >= f: seeing the flag
//! without its data is the forbidden outcome.

use crate::support;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::handles::DsmVec;
use memlink_dsm::{Backend, DsmError, PAGE_SIZE};

const ROUNDS: u64 = 150;
const FLAG: usize = PAGE_SIZE / 8; // first word of the second page

fn message_passing(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let words = DsmVec::<u64>::new_zeroed(dsm, 2 * PAGE_SIZE / 8)?;
        dsm.publish(1, words.offset() as u64);
    }
    dsm.barrier(1)?;
    let words = DsmVec::<u64>::attach(dsm, dsm.lookup(1) as usize, 2 * PAGE_SIZE / 8)?;
    let mut ok = true;
    if dsm.id() == 0 {
        for r in 1..=ROUNDS {
            words.set(0, r); // data
            words.set(FLAG, r); // flag
        }
    } else {
        let mut observations = 0u64;
        loop {
            let flag = words.get(FLAG);
            let data = words.get(0);
            observations += 1;
            if data < flag {
                eprintln!("forbidden: flag {flag} seen with data {data}");
                ok = false;
            }
            if flag == ROUNDS {
                break;
            }
        }
        ok &= observations > 0;
    }
    dsm.barrier(2)?;
    Ok(ok)
}

#[test]
fn node_main() {
    support::node_entry(&[("mp", message_passing)]);
}

#[test]
fn message_passing_never_shows_the_flag_without_the_data() {
    for run in 0..4 {
        for backend in [Backend::Sigsegv, Backend::Uffd] {
            let nodes = if run % 2 == 0 { 2 } else { 3 };
            support::assert_cluster_verifies(nodes, "mp", backend);
        }
    }
}
