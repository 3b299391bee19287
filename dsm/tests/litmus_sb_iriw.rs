//! Litmus tests across node processes, for every manager (central, fixed, dynamic) with every
//! fault backend (sigsegv, uffd): message passing (MP), store buffering (SB) and independent
//! reads of independent writes (IRIW), with the two variables on different pages (the
//! interesting case: two coherence units) and on the same page.
//!
//! One cluster of 4 node processes per manager x backend runs every test, round after round.
//! Round `r` writes the value `r` (so nothing needs resetting) between two barriers; a read
//! "sees" a write when it returns `r`. Every node prints what it saw; the parent (this test)
//! puts the rounds together, asserts that no forbidden outcome ever happened and prints how
//! often each allowed one did (`--nocapture` shows the counts).
//!
//! The accesses are `SeqCst` operations on `DsmAtomic<u64>`s: the DSM makes page-level
//! coherence sequentially consistent, and SeqCst keeps the CPU's store buffer from reordering
//! a node's own accesses.
//!
//! - MP: node 1 writes data then flag; nodes 2 and 3 read flag then data. Forbidden: flag
//!   seen, data not.
//! - SB: node 1 writes x then reads y; node 2 writes y then reads x. Forbidden: neither sees
//!   the other's write.
//! - IRIW: node 0 writes x, node 1 writes y; node 2 reads x then y, node 3 reads y then x.
//!   Forbidden: node 2 sees x but not y while node 3 sees y but not x (they disagree on the
//!   order of the two writes).

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use memlink_dsm::atomic::DsmAtomic;
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{LaunchError, NodeOutput, launch};
use memlink_dsm::{Backend, DsmError, ManagerKind, PAGE_SIZE};

const NODES: usize = 4;
/// Rounds per test and layout in one cluster run.
const ROUNDS: u64 = 500;
const DEADLINE: Duration = Duration::from_secs(120);
const START: u32 = 100;
const END: u32 = 101;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Test {
    Mp,
    Sb,
    Iriw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layout {
    /// x on one page, y on the next.
    TwoPages,
    /// x and y on the same page (different cache lines).
    OnePage,
}

const TESTS: [Test; 3] = [Test::Mp, Test::Sb, Test::Iriw];
const LAYOUTS: [Layout; 2] = [Layout::TwoPages, Layout::OnePage];

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::Mp => "mp",
            Test::Sb => "sb",
            Test::Iriw => "iriw",
        }
    }
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::TwoPages => "two-pages",
            Layout::OnePage => "one-page",
        }
    }

    /// Region offsets of x and y inside a page-aligned block of 3 pages at `base`.
    fn offsets(self, base: usize) -> (usize, usize) {
        match self {
            Layout::TwoPages => (base, base + PAGE_SIZE),
            Layout::OnePage => (base + 2 * PAGE_SIZE, base + 2 * PAGE_SIZE + 512),
        }
    }
}

/// One node's part of every test: returns its observation lines (`test layout round bits`).
fn litmus(dsm: &Dsm) -> Result<Vec<String>, DsmError> {
    if dsm.id() == 0 {
        let block = dsm.alloc(3 * PAGE_SIZE, PAGE_SIZE)?;
        dsm.publish(1, block as u64);
    }
    dsm.barrier(1)?;
    let block = dsm.lookup(1) as usize;
    let id = dsm.id();
    let mut lines = Vec::new();
    for test in TESTS {
        for layout in LAYOUTS {
            let (xo, yo) = layout.offsets(block);
            let (x, y) = (
                DsmAtomic::<u64>::attach(dsm, xo)?,
                DsmAtomic::<u64>::attach(dsm, yo)?,
            );
            let mut seen = String::with_capacity(ROUNDS as usize * 3);
            for r in 1..=ROUNDS {
                dsm.barrier(START)?;
                // Each reader records "1" when it sees round r's write, "0" when it does not.
                let bit = |v: u64| if v == r { '1' } else { '0' };
                match (test, id) {
                    // MP: x is the data, y the flag.
                    (Test::Mp, 1) => {
                        x.store(r, Ordering::SeqCst);
                        y.store(r, Ordering::SeqCst);
                    }
                    (Test::Mp, 2 | 3) => {
                        let flag = y.load(Ordering::SeqCst);
                        let data = x.load(Ordering::SeqCst);
                        seen.push(bit(flag));
                        seen.push(bit(data));
                        seen.push(' ');
                    }
                    (Test::Sb, 1) => {
                        x.store(r, Ordering::SeqCst);
                        seen.push(bit(y.load(Ordering::SeqCst)));
                        seen.push(' ');
                    }
                    (Test::Sb, 2) => {
                        y.store(r, Ordering::SeqCst);
                        seen.push(bit(x.load(Ordering::SeqCst)));
                        seen.push(' ');
                    }
                    (Test::Iriw, 0) => x.store(r, Ordering::SeqCst),
                    (Test::Iriw, 1) => y.store(r, Ordering::SeqCst),
                    (Test::Iriw, 2) => {
                        let a = x.load(Ordering::SeqCst);
                        let b = y.load(Ordering::SeqCst);
                        seen.push(bit(a));
                        seen.push(bit(b));
                        seen.push(' ');
                    }
                    (Test::Iriw, 3) => {
                        let a = y.load(Ordering::SeqCst);
                        let b = x.load(Ordering::SeqCst);
                        seen.push(bit(a));
                        seen.push(bit(b));
                        seen.push(' ');
                    }
                    _ => {}
                }
                dsm.barrier(END)?;
            }
            if !seen.is_empty() {
                lines.push(format!(
                    "litmus {} {} {}",
                    test.name(),
                    layout.name(),
                    seen.trim_end()
                ));
            }
        }
    }
    Ok(lines)
}

/// The node body: runs every test and prints the observations (the support module leaves
/// the cluster and exits).
fn litmus_node(dsm: &Dsm) -> Result<bool, DsmError> {
    let lines = litmus(dsm)?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    Ok(true)
}

/// In a node process: join, run the litmus body, leave, exit. In the test harness's own
/// run: nothing.
#[test]
fn node_main() {
    support::node_entry(&[("litmus", litmus_node)]);
}

/// Observations of one test and layout: per node, per round, the bits it saw.
type Observations = BTreeMap<(String, String), BTreeMap<u16, Vec<String>>>;

fn collect(outputs: &[NodeOutput]) -> Observations {
    let mut all = Observations::new();
    for o in outputs {
        for line in o.stdout.lines() {
            let mut f = line.split_whitespace();
            if f.next() != Some("litmus") {
                continue;
            }
            let (Some(test), Some(layout)) = (f.next(), f.next()) else {
                continue;
            };
            let rounds: Vec<String> = f.map(str::to_string).collect();
            all.entry((test.to_string(), layout.to_string()))
                .or_default()
                .insert(o.id, rounds);
        }
    }
    all
}

/// Counts the outcomes of one test and layout; the names of forbidden ones start with '!'.
fn outcomes(test: &str, per_node: &BTreeMap<u16, Vec<String>>) -> BTreeMap<String, u64> {
    let rounds = |n: u16| -> &[String] {
        let r = per_node
            .get(&n)
            .unwrap_or_else(|| panic!("{test}: node {n} reported nothing"));
        assert_eq!(r.len() as u64, ROUNDS, "{test}: node {n} missed rounds");
        r
    };
    let mut counts = BTreeMap::new();
    let mut count = |name: String| *counts.entry(name).or_insert(0u64) += 1;
    for i in 0..ROUNDS as usize {
        match test {
            "mp" => {
                for n in [2u16, 3] {
                    let s = &rounds(n)[i];
                    // s = flag, data.
                    let name = match s.as_str() {
                        "10" => "!flag=1,data=0".to_string(),
                        other => format!("flag={},data={}", &other[..1], &other[1..]),
                    };
                    count(name);
                }
            }
            "sb" => {
                let (r1, r2) = (&rounds(1)[i], &rounds(2)[i]);
                let name = if r1 == "0" && r2 == "0" {
                    "!r1=0,r2=0".to_string()
                } else {
                    format!("r1={r1},r2={r2}")
                };
                count(name);
            }
            "iriw" => {
                // Node 2 read x,y; node 3 read y,x.
                let (a, b) = (&rounds(2)[i], &rounds(3)[i]);
                let name = if a == "10" && b == "10" {
                    "!disagree(x,y=10;y,x=10)".to_string()
                } else {
                    format!("x,y={a};y,x={b}")
                };
                count(name);
            }
            other => panic!("unknown test {other}"),
        }
    }
    counts
}

fn run_combination(manager: ManagerKind, backend: Backend) {
    let outputs = match launch(NODES, DEADLINE, |slot| {
        support::node_command_with_manager(slot, "litmus", backend, manager)
    }) {
        Ok(o) => o,
        Err(e) => {
            if let LaunchError::NodeFailed { outputs, .. } | LaunchError::TimedOut { outputs, .. } =
                &e
            {
                for o in outputs {
                    eprintln!("node {} ({:?}):\n{}", o.id, o.status, o.stderr.trim());
                }
            }
            panic!("litmus cluster ({manager}, {backend}): {e}")
        }
    };
    let all = collect(&outputs);
    assert_eq!(
        all.len(),
        TESTS.len() * LAYOUTS.len(),
        "every test and layout reported"
    );
    let mut forbidden = Vec::new();
    for ((test, layout), per_node) in &all {
        let counts = outcomes(test, per_node);
        println!("litmus {manager}/{backend} {test} {layout}: {counts:?}");
        for (name, n) in &counts {
            if name.starts_with('!') {
                forbidden.push(format!("{test} {layout}: {name} x{n}"));
            }
        }
    }
    assert!(
        forbidden.is_empty(),
        "forbidden outcomes under sequential consistency ({manager}, {backend}): {forbidden:?}"
    );
}

#[test]
fn litmus_central_sigsegv() {
    run_combination(ManagerKind::Central, Backend::Sigsegv);
}

#[test]
fn litmus_central_uffd() {
    run_combination(ManagerKind::Central, Backend::Uffd);
}

#[test]
fn litmus_fixed_sigsegv() {
    run_combination(ManagerKind::Fixed, Backend::Sigsegv);
}

#[test]
fn litmus_fixed_uffd() {
    run_combination(ManagerKind::Fixed, Backend::Uffd);
}

#[test]
fn litmus_dynamic_sigsegv() {
    run_combination(ManagerKind::Dynamic, Backend::Sigsegv);
}

#[test]
fn litmus_dynamic_uffd() {
    run_combination(ManagerKind::Dynamic, Backend::Uffd);
}

#[test]
fn outcome_counting_flags_the_forbidden_ones() {
    let nodes = |rows: &[(u16, &str)]| -> BTreeMap<u16, Vec<String>> {
        rows.iter()
            .map(|(n, s)| (*n, vec![s.to_string(); ROUNDS as usize]))
            .collect()
    };
    let sb = outcomes("sb", &nodes(&[(1, "0"), (2, "0")]));
    assert_eq!(sb.get("!r1=0,r2=0"), Some(&ROUNDS));
    let sb = outcomes("sb", &nodes(&[(1, "1"), (2, "0")]));
    assert_eq!(sb.get("r1=1,r2=0"), Some(&ROUNDS));
    let mp = outcomes("mp", &nodes(&[(2, "10"), (3, "11")]));
    assert_eq!(mp.get("!flag=1,data=0"), Some(&ROUNDS));
    assert_eq!(mp.get("flag=1,data=1"), Some(&ROUNDS));
    let iriw = outcomes("iriw", &nodes(&[(2, "10"), (3, "10")]));
    assert!(iriw.keys().all(|k| k.starts_with('!')));
    let iriw = outcomes("iriw", &nodes(&[(2, "10"), (3, "01")]));
    assert!(iriw.keys().all(|k| !k.starts_with('!')));
}
