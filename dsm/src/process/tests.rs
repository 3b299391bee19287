//! The scheduler's answers to single steps: hints at a bounded rate, refusals, and messages a
//! bad peer could send.

use super::*;

fn task(n: u64, migratable: bool) -> TaskRef {
    TaskRef {
        id: TaskId(n),
        home: 0,
        migratable,
        stack: StackPages::new(n as u32, 1),
    }
}

fn hints(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Broadcast { .. }))
        .count()
}

#[test]
fn hints_go_out_at_most_once_per_period_and_the_held_one_follows() {
    let mut s = Scheduler::new(0, 3, 64, SchedulerConfig::default()).unwrap();
    let mut sent = 0;
    sent += hints(&s.spawn(task(1, true)).unwrap());
    sent += hints(&s.spawn(task(2, true)).unwrap()); // surplus 0 -> 1: a hint
    assert_eq!(sent, 1);
    sent += hints(&s.spawn(task(3, true)).unwrap()); // surplus 2: held back this period
    assert_eq!(sent, 1);
    assert_eq!(hints(&s.timeout()), 1, "the held hint goes out at TIMEOUT");
    assert_eq!(hints(&s.timeout()), 0, "nothing changed since");
    assert_eq!(s.stats().hints_sent, 2);
}

#[test]
fn no_surplus_means_a_refusal_and_nothing_moves() {
    let mut s = Scheduler::new(0, 2, 64, SchedulerConfig::default()).unwrap();
    s.spawn(task(1, true)).unwrap();
    s.spawn(task(2, false)).unwrap();
    s.next_task(); // task 1 runs; task 2 is not migratable: no surplus
    let out = s
        .handle(
            1,
            Message::WorkRequest {
                load: Load::default(),
            },
        )
        .unwrap();
    assert!(matches!(
        out[..],
        [Effect::Send {
            to: 1,
            msg: Message::Refuse { .. }
        }]
    ));
    assert_eq!(s.ready().map(|t| t.id).collect::<Vec<_>>(), vec![TaskId(2)]);
    assert_eq!(s.migrate(TaskId(1), 1).map(|_| ()), Ok(()));
    assert_eq!(
        s.migrate(TaskId(2), 1),
        Err(MigrateError::NotRunning(TaskId(2)))
    );
}

#[test]
fn messages_a_bad_peer_could_send_are_protocol_errors() {
    let mut d = Scheduler::new(1, 2, 64, SchedulerConfig::default()).unwrap();
    let load = Load::default();
    assert!(d.handle(5, Message::Hint { load }).is_err(), "unknown node");
    assert!(d.handle(1, Message::Hint { load }).is_err(), "itself");
    assert!(
        d.handle(0, Message::Refuse { load }).is_err(),
        "never asked"
    );
    let mut far = task(1, true);
    far.stack = StackPages {
        first: u32::MAX,
        count: 2,
        current: u32::MAX,
    };
    let migrate = |task, requested| Message::Migrate {
        task,
        requested,
        carried: Carried::default(),
        load,
    };
    assert!(d.handle(0, migrate(far, false)).is_err(), "stack outside");
    // Carried pages its stack does not hand off (a page of the stack that is neither its
    // current page nor its first).
    let mut wide = task(1, true);
    wide.stack = StackPages::new(8, 4);
    let mut carried = Carried::default();
    carried.push(9, crate::types::Access::Write);
    let odd = Message::Migrate {
        task: wide,
        requested: false,
        carried,
        load,
    };
    assert!(d.handle(0, odd).is_err(), "a page it does not hand off");
    let mut stray = task(1, true);
    stray.stack.current = stray.stack.first + 1;
    assert!(
        d.handle(0, migrate(stray, false)).is_err(),
        "current page outside its stack"
    );
    assert!(
        d.handle(0, migrate(task(1, true), true)).is_err(),
        "unasked"
    );
    d.handle(0, migrate(task(1, true), false)).unwrap();
    assert!(d.handle(0, migrate(task(1, true), false)).is_err(), "twice");
    let done = Message::Done {
        task: TaskId(9),
        panicked: false,
        load,
    };
    assert!(d.handle(0, done).is_err(), "not homed here");
}

#[test]
fn a_lost_node_ends_every_open_handle_naming_it() {
    let mut s = Scheduler::new(0, 3, 64, SchedulerConfig::default()).unwrap();
    s.spawn(task(1, true)).unwrap();
    s.spawn(task(2, true)).unwrap();
    s.next_task();
    let out = s.finished(TaskId(1), false).unwrap();
    assert!(out.contains(&Effect::Resolved {
        task: TaskId(1),
        outcome: Outcome::Finished
    }));
    let out = s.node_lost(2).unwrap();
    assert_eq!(
        out,
        vec![Effect::Resolved {
            task: TaskId(2),
            outcome: Outcome::NodeLost(2)
        }]
    );
    assert!(s.next_task().is_empty());
    assert_eq!(
        s.spawn(task(3, true)),
        Err(SpawnError::ClusterFailed { lost: 2 })
    );
}

/// A node that runs other code is never asked for work (with hints or without), its work
/// requests are refused though there is a surplus, a task is not migrated to it, and a task
/// it sends is a protocol error; the other nodes are unaffected.
#[test]
fn a_barred_node_moves_no_task_either_way() {
    for use_hints in [true, false] {
        let config = SchedulerConfig {
            use_hints,
            ..SchedulerConfig::default()
        };
        // Node 0 has a surplus; node 1 runs other code than node 0; node 2 the same.
        let mut s = Scheduler::new(0, 3, 64, config).unwrap();
        s.bar(1);
        s.spawn(task(1, true)).unwrap();
        s.spawn(task(2, true)).unwrap();
        s.spawn(task(3, true)).unwrap();
        s.next_task();
        let ask = Message::WorkRequest {
            load: Load::default(),
        };
        let out = s.handle(1, ask).unwrap();
        assert!(
            matches!(
                out[..],
                [Effect::Send {
                    to: 1,
                    msg: Message::Refuse { .. }
                }]
            ),
            "{out:?}"
        );
        assert_eq!(s.ready().count(), 2, "nothing left for the barred node");
        let out = s.handle(2, ask).unwrap();
        assert!(
            matches!(out[0], Effect::Migrate { to: 2, .. }),
            "node 2 gets work: {out:?}"
        );
        assert_eq!(s.migrate(TaskId(1), 1), Err(MigrateError::Barred(1)));
        assert!(
            s.migrate(TaskId(1), 1)
                .unwrap_err()
                .to_string()
                .contains("other code")
        );

        // An idle node never asks the barred node, even when its hint says it has a surplus.
        let mut idle = Scheduler::new(2, 3, 64, config).unwrap();
        idle.bar(1);
        let surplus = Load {
            ready: 5,
            migratable: 5,
            workers: 1,
            busy: 1,
        };
        idle.handle(1, Message::Hint { load: surplus }).unwrap();
        for _ in 0..4 {
            for e in idle.timeout() {
                if let Effect::Send { to, msg } = e {
                    assert_ne!(to, 1, "asked the barred node: {msg:?}");
                    idle.handle(
                        to,
                        Message::Refuse {
                            load: Load::default(),
                        },
                    )
                    .unwrap();
                }
            }
        }
        let sent = Message::Migrate {
            task: task(9, true),
            requested: false,
            carried: Carried::default(),
            load: Load::default(),
        };
        assert!(idle.handle(1, sent).is_err(), "a task from a barred node");
    }
}

#[test]
fn the_current_stack_page_is_kept_and_handed_off_first() {
    let mut s = Scheduler::new(0, 2, 64, SchedulerConfig::default()).unwrap();
    let t = TaskRef {
        id: TaskId(1),
        home: 0,
        migratable: true,
        stack: StackPages::new(16, 16),
    };
    assert_eq!(t.stack.current, 31, "a fresh stack starts at its top page");
    s.spawn(t).unwrap();
    assert!(s.stack_at(t.id, 20).is_err(), "not running");
    s.next_task();
    assert!(s.stack_at(t.id, 32).is_err(), "outside its stack");
    s.stack_at(t.id, 20).unwrap();
    let out = s.migrate(t.id, 1).unwrap();
    let Effect::Migrate {
        to: 1,
        msg: Message::Migrate { task, carried, .. },
    } = out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(task.stack.current, 20);
    assert_eq!(task.stack.handed_off().collect::<Vec<_>>(), [20, 16]);
    assert!(carried.is_empty(), "the node's carrier fills it in");
    // A stack whose current page is its first hands that page off once.
    assert_eq!(StackPages::new(5, 1).handed_off().collect::<Vec<_>>(), [5]);
}
