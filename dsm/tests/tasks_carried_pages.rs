//! A migrating task's stack pages travel inside its `Migrate`, over real loopback TCP
//! between two `NodeRuntime`s with in-memory pages, under every manager: when the
//! destination's task pool gets the `Migrate`, the pages it carries are installed there
//! already (owned, writable, with the contents the source wrote) and the source has given
//! them up; pages of the stack it does not carry stay where they were. A stack page the
//! destination holds a copy of is not handed off (ownership passes otherwise), and the
//! `Migrate` still arrives.

use crate::node_support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use memlink_dsm::process::{Carried, Load, Message, StackPages, TaskId, TaskRef};
use memlink_dsm::{Access, LocalPages, ManagerKind, NodeId, PAGE_SIZE, PageNo};
use node_support::{MemPages, Node, cluster};

/// The stack: pages 4 to 7, its descriptor in page 4, its saved stack pointer in page 6.
const STACK: StackPages = StackPages {
    first: 4,
    count: 4,
    current: 6,
};

fn pattern(page: PageNo) -> u64 {
    0x5ac0_0000 + u64::from(page)
}

/// What the destination's pool saw when the `Migrate` reached it.
struct Arrival {
    from: NodeId,
    msg: Message,
    /// Each stack page's access at the destination then, and its first word.
    pages: Vec<(PageNo, Access, u64)>,
}

fn first_word(mem: &MemPages, page: PageNo) -> u64 {
    let mut buf = vec![0u8; PAGE_SIZE];
    mem.read_page(page, &mut buf);
    u64::from_le_bytes(buf[..8].try_into().unwrap())
}

/// Migrate the task from node 0 to node 1 and return what node 1's pool saw.
fn migrate(nodes: &[Node]) -> Arrival {
    let (tx, rx) = mpsc::channel();
    let mem = nodes[1].mem.clone();
    nodes[1]
        .rt
        .set_task_handler(Some(std::sync::Arc::new(move |from, msg| {
            let pages = STACK
                .iter()
                .map(|p| (p, mem.access(p), first_word(&mem, p)))
                .collect();
            let _ = tx.send(Arrival { from, msg, pages });
        })));
    let task = TaskRef {
        id: TaskId(u64::from(STACK.first) * PAGE_SIZE as u64),
        home: 0,
        migratable: true,
        stack: STACK,
    };
    let msg = Message::Migrate {
        task,
        requested: false,
        carried: Carried::default(),
        load: Load::default(),
    };
    nodes[0].rt.migrate_task(1, &msg).unwrap();
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the Migrate reached node 1's pool")
}

fn shut_down(nodes: Vec<Node>) {
    let hs: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            n.rt.set_task_handler(None);
            thread::spawn(move || n.rt.shutdown())
        })
        .collect();
    hs.into_iter()
        .for_each(|h| h.join().unwrap().expect("orderly shutdown"));
}

#[test]
fn the_current_and_descriptor_pages_arrive_inside_the_migrate_installed_before_the_task_queues() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let nodes = cluster(2, 8, manager);
        for p in STACK.iter() {
            let off = p as usize * PAGE_SIZE;
            nodes[0]
                .mem
                .write_u64(&nodes[0].rt, off, pattern(p))
                .unwrap();
        }
        let a = migrate(&nodes);
        assert_eq!(a.from, 0);
        let Message::Migrate { carried, task, .. } = a.msg else {
            panic!("{manager:?}: {:?}", a.msg)
        };
        assert_eq!(task.stack, STACK);
        assert_eq!(
            carried.iter().collect::<Vec<_>>(),
            [(6, Access::Write), (4, Access::Write)],
            "{manager:?}: the current page first, then the descriptor's"
        );
        for (page, access, word) in a.pages {
            if page == 6 || page == 4 {
                assert_eq!(access, Access::Write, "{manager:?}: page {page} installed");
                assert_eq!(word, pattern(page), "{manager:?}: page {page}'s contents");
            } else {
                assert_eq!(access, Access::None, "{manager:?}: page {page} not carried");
            }
        }
        // The source gave the carried pages up (ownership went with them), kept the rest;
        // the destination reads and writes them without a fault.
        assert_eq!(nodes[0].mem.access(6), Access::None);
        assert_eq!(nodes[0].mem.access(4), Access::None);
        assert_eq!(nodes[0].mem.access(5), Access::Write);
        let faults = nodes[1].rt.stats();
        for p in [4, 6] {
            let off = p as usize * PAGE_SIZE;
            assert_eq!(
                nodes[1].mem.read_u64(&nodes[1].rt, off).unwrap(),
                pattern(p)
            );
            nodes[1].mem.write_u64(&nodes[1].rt, off, 1).unwrap();
        }
        let after = nodes[1].rt.stats();
        assert_eq!(
            (after.read_faults, after.write_faults),
            (faults.read_faults, faults.write_faults),
            "{manager:?}: the carried pages were there"
        );
        // The rest of the stack follows on demand.
        let off = 5 * PAGE_SIZE;
        assert_eq!(
            nodes[1].mem.read_u64(&nodes[1].rt, off).unwrap(),
            pattern(5)
        );
        shut_down(nodes);
    }
}

#[test]
fn a_stack_page_the_destination_has_a_copy_of_is_not_carried_and_the_task_still_arrives() {
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        let nodes = cluster(2, 8, manager);
        let off = 6 * PAGE_SIZE;
        nodes[0]
            .mem
            .write_u64(&nodes[0].rt, off, pattern(6))
            .unwrap();
        // Node 1 reads the current page: a copy there, so it is no only copy to hand off.
        assert_eq!(
            nodes[1].mem.read_u64(&nodes[1].rt, off).unwrap(),
            pattern(6)
        );
        let a = migrate(&nodes);
        let Message::Migrate { carried, .. } = a.msg else {
            panic!("{manager:?}: {:?}", a.msg)
        };
        assert!(
            carried.iter().all(|(p, _)| p != 6),
            "{manager:?}: carried {carried:?}"
        );
        // Whatever moved, the destination writes its stack and the source reads it back.
        nodes[1].mem.write_u64(&nodes[1].rt, off, 7).unwrap();
        assert_eq!(nodes[0].mem.read_u64(&nodes[0].rt, off).unwrap(), 7);
        shut_down(nodes);
    }
}
