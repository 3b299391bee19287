//! A pager in its own process (`PagerServer` serving a file pager over a unix socket), used
//! by 2 node processes through `RemotePager` stores. Midway, node 0 kills the pager process
//! (SIGKILL), or stops it (SIGSTOP: it stays connected and never answers). Then (Mach's
//! `data_error`: a pager failure fails only the faults that need it):
//! - node 0's next fault that needs the pager fails with `PagerLost` (killed) or
//!   `PagerTimeout` (stopped), naming the pager, within the timeout: no hang; a later one
//!   fails the same way;
//! - node 1's fault on a page that node 0 must get from the pager fails with
//!   `PageUnavailable` naming node 0: neither node is lost;
//! - the pages each node held before stay readable and intact, and each node's fault on a
//!   page the other holds is served, with the right contents; both nodes meet at a barrier
//!   after all of it;
//! - the file holds the pages node 1 wrote and cleaned (`clean_request`) before the pager
//!   went, and every other page as it was.
//!
//! And a pager process that commands the nodes over its socket (`PagerCommands`): its
//! `clean_request` puts node 1's writes in the file while the nodes run (the parent reads
//! the file then), its `flush_request` makes node 1 give the pages up, its `data_lock`
//! takes node 0's access to the pages it read away (a read asks the pager again:
//! `data_unlock`), and `cache` reaches both nodes; each node then checks what the commands
//! did, and the file holds the writes at the end.

use crate::support;
use crate::support::paged_file::{check, file_bytes, file_page_is, page_is, scratch, write_page};

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memlink_dsm::cluster::Dsm;
use memlink_dsm::pager::commands::Command as PagerCommand;
use memlink_dsm::pager::{FilePager, PagerServer};
use memlink_dsm::{Access, Backend, DsmError, FaultResolver, ManagerKind, PAGE_SIZE, PageNo};

const NODES: usize = 2;
/// The file's pages; region page `1 + i` is the file's page `i`.
const FILE_PAGES: usize = 24;
/// Read by node 0 before the pager goes (fewer than its frames: they all stay).
const HELD: std::ops::Range<PageNo> = 1..5;
/// Faulted on by node 0 after the pager went (paged out, never read ahead).
const AFTER: PageNo = 12;
/// Faulted on by node 1 after the pager went (paged out at node 0, its owner).
const REMOTE_AFTER: PageNo = 15;
/// Written and cleaned by node 1 before the pager goes.
const WRITTEN: std::ops::Range<PageNo> = 18..25;
/// How long a node waits for each answer of the pager.
const PAGER_TIMEOUT: Duration = Duration::from_millis(1500);

/// `socket|file` in the pager process.
const SERVE_ENV: &str = "MEMLINK_DSM_TEST_PAGER_SERVE";
/// The pager process's pid, and how node 0 ends it (`kill` or `stop`), in the nodes.
const PAGER_PID_ENV: &str = "MEMLINK_DSM_TEST_PAGER_PID";
const PAGER_END_ENV: &str = "MEMLINK_DSM_TEST_PAGER_END";

#[test]
fn node_main() {
    support::node_entry(&[("pager_goes", pager_goes), ("commanded", commanded)]);
}

/// The pager process: serves the file until killed.
#[test]
fn pager_main() {
    let Some(server) = pager_of(SERVE_ENV) else {
        return;
    };
    let _ = server.serve.serve(server.listener);
    std::process::exit(1);
}

/// A pager process's server of the file, and its socket, from `env` (`<socket>|<file>`; the
/// file from region page 1 on); "pager ready" is printed. `None`: not a pager process.
struct Served {
    serve: PagerServer<FilePager>,
    listener: UnixListener,
}

fn pager_of(env: &str) -> Option<Served> {
    let spec = std::env::var(env).ok()?;
    let (socket, file) = spec.split_once('|').expect("socket|file");
    let pager = FilePager::open(file.as_ref(), 0, None, 1).expect("the pager's file");
    let listener = UnixListener::bind(socket).expect("the pager's socket");
    println!("pager ready");
    Some(Served {
        serve: PagerServer::new(pager),
        listener,
    })
}

/// A pager process (this binary's test `main`, with `env` set to `<socket>|<file>`), killed
/// and reaped at drop, once it listens; its stdin, and its stdout's lines after "pager ready".
struct PagerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl PagerProcess {
    fn start(main: &str, env: &str, socket: &Path, file: &Path) -> PagerProcess {
        let _ = std::fs::remove_file(socket);
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--exact", main, "--nocapture", "--test-threads=1", "-q"])
            .env(env, format!("{}|{}", socket.display(), file.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the pager process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The test harness prints its own lines first.
        loop {
            let line = lines
                .recv_timeout(support::DEADLINE)
                .expect("the pager process did not start");
            if line.trim() == "pager ready" {
                break;
            }
        }
        PagerProcess {
            child,
            stdin,
            lines,
        }
    }
}

impl Drop for PagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test `name` of this module as libtest names it in this binary (its path below the
/// crate).
fn test_name(path: &'static str) -> &'static str {
    path.split_once("::").map_or(path, |(_, test)| test)
}

/// Ends the node process here: its checks are printed, and leaving is impossible once the
/// cluster lost a node.
fn finish(ok: bool) -> ! {
    use std::io::Write;
    println!("verified: {ok}");
    let _ = std::io::stdout().flush();
    std::process::exit(if ok { 0 } else { 1 });
}

fn pager_goes(dsm: &Dsm) -> Result<bool, DsmError> {
    let rt = dsm.runtime();
    let mut ok = true;
    dsm.barrier(1)?;
    if dsm.id() == 1 {
        // From the pager through node 0 (the owner of every paged-out page), written here,
        // then written back to the pager by this node's own connection.
        for page in WRITTEN {
            write_page(dsm, page, 1);
        }
        ok &= check(
            rt.clean_request(WRITTEN)? == WRITTEN.len() as u32,
            "node 1 cleans every page it wrote",
        );
    }
    dsm.barrier(2)?;
    if dsm.id() == 0 {
        for page in HELD {
            ok &= check(page_is(dsm, page, 0), "node 0 reads the file before");
        }
    }
    dsm.barrier(3)?;
    let pid: i32 = std::env::var(PAGER_PID_ENV)
        .expect("the pager's pid")
        .parse()
        .expect("pid");
    let signal = match std::env::var(PAGER_END_ENV).as_deref() {
        Ok("stop") => libc::SIGSTOP,
        _ => libc::SIGKILL,
    };
    if dsm.id() == 0 {
        // SAFETY: kill(2) on the pager process the test started; no memory is involved.
        let sent = unsafe { libc::kill(pid, signal) };
        ok &= check(sent == 0, "the pager process was signalled");
        // kill(2) returns before the signal takes effect: wait until the pager is stopped
        // (T) or dead (Z: its parent has not reaped it), so the faults below need a pager
        // that is certainly gone or silent.
        ok &= check(
            reaches_state(pid, if signal == libc::SIGSTOP { 'T' } else { 'Z' }),
            "the pager process stopped or died",
        );
    }
    dsm.barrier(4)?;
    if dsm.id() == 1 {
        // A fault whose page node 0 must get from the pager: it fails, naming node 0.
        match rt.resolve_fault(REMOTE_AFTER, Access::Read) {
            Err(DsmError::PageUnavailable { page, owner: 0, .. }) if page == REMOTE_AFTER => {}
            other => ok &= check(false, &format!("node 1's fault ended with {other:?}")),
        }
        // The cluster goes on: a page node 0 holds is served, the pages held here stay.
        ok &= check(
            page_is(dsm, HELD.start, 0),
            "node 1 reads a page node 0 holds",
        );
        for page in WRITTEN {
            ok &= check(page_is(dsm, page, 1), "node 1's own pages are intact");
        }
    } else {
        let started = Instant::now();
        let fault = rt.resolve_fault(AFTER, Access::Read);
        let waited = started.elapsed();
        eprintln!("node 0 saw: {fault:?} after {waited:?}");
        ok &= check(
            match (&fault, signal) {
                (Err(DsmError::PagerLost { pager, .. }), libc::SIGKILL) => {
                    pager == support::PAGER_NAME
                }
                (Err(DsmError::PagerTimeout { pager, after }), libc::SIGSTOP) => {
                    pager == support::PAGER_NAME && *after == PAGER_TIMEOUT
                }
                _ => false,
            },
            "the fault fails with the pager's error",
        );
        ok &= check(
            waited < PAGER_TIMEOUT + Duration::from_secs(10),
            "the fault failed without hanging",
        );
        // A later fault that needs the pager fails the same way.
        ok &= check(
            matches!(
                rt.resolve_fault(AFTER + 1, Access::Read),
                Err(DsmError::PagerLost { .. } | DsmError::PagerTimeout { .. })
            ),
            "a later fault fails the same way",
        );
        // The pages held here are intact; a page node 1 holds is served from it.
        for page in HELD {
            ok &= check(page_is(dsm, page, 0), "node 0's pages are intact");
        }
        ok &= check(
            page_is(dsm, WRITTEN.start, 1),
            "node 0 reads a page node 1 holds",
        );
    }
    // Neither node was lost.
    dsm.barrier(5)?;
    finish(ok);
}

/// Whether process `pid` reaches `state` (the state letter of /proc/PID/stat) within 10 s,
/// looked at every millisecond.
fn reaches_state(pid: i32, state: char) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The state follows the command name, which is in parentheses and may hold any.
        let now = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        if now == Some(state) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn run(end: &str) {
    let file = scratch("pager-process", &format!("file-{end}"));
    let socket = scratch("pager-process", &format!("pager-{end}.sock"));
    let bytes = file_bytes(FILE_PAGES, |_| 0);
    std::fs::write(&file, &bytes).expect("write the file");
    let pager = PagerProcess::start(
        test_name(concat!(module_path!(), "::pager_main")),
        SERVE_ENV,
        &socket,
        &file,
    );
    let pid = pager.child.id().to_string();
    let outputs = support::launch_verified(end, NODES, |slot| {
        let mut cmd = support::node_command_with_manager(
            slot,
            "pager_goes",
            Backend::Sigsegv,
            ManagerKind::Central,
        );
        cmd.env(support::BUDGET_ENV, (8 * PAGE_SIZE).to_string())
            .env(support::PAGER_SOCKET_ENV, &socket)
            .env(
                support::PAGER_TIMEOUT_MS_ENV,
                PAGER_TIMEOUT.as_millis().to_string(),
            )
            .env(support::PAGES_ENV, (1 + FILE_PAGES).to_string())
            .env(PAGER_PID_ENV, &pid)
            .env(PAGER_END_ENV, end);
        cmd
    });
    // Ends the pager (it is stopped or dead by now).
    drop(pager);
    assert_eq!(outputs.len(), NODES, "{end}: the nodes' outputs");
    let after = std::fs::read(&file).expect("read the file back");
    assert_eq!(after.len(), bytes.len(), "{end}: the file's size");
    for page in 1..=FILE_PAGES as PageNo {
        let by = u64::from(WRITTEN.contains(&page));
        assert!(
            file_page_is(&after, page, by),
            "{end}: page {page} of the file"
        );
    }
    std::fs::remove_file(&file).ok();
    std::fs::remove_file(&socket).ok();
}

#[test]
fn a_killed_pager_fails_the_waiting_fault_with_pager_lost() {
    run("kill");
}

#[test]
fn a_stopped_pager_fails_the_waiting_fault_with_pager_timeout() {
    run("stop");
}

// ---- The pager's commands, over the socket ----

/// Pages node 1 writes, then the pager cleans (`clean_request`) and flushes
/// (`flush_request`) by command.
const COMMANDED: std::ops::Range<PageNo> = 18..22;
/// `<socket>|<file>` in a pager process that takes commands on its stdin.
const COMMAND_ENV: &str = "MEMLINK_DSM_TEST_PAGER_COMMANDS";

/// The pager process of the commands test: serves the file, and sends the nodes the
/// commands read from its stdin, one a line (`wait N`, `clean A B`, `flush A B`,
/// `lock A B none|read|write`, `cache on|off`), printing each one's result: the command's
/// name and the pages the nodes reported, or `error` and why.
#[test]
fn commanding_pager_main() {
    let Some(Served { serve, listener }) = pager_of(COMMAND_ENV) else {
        return;
    };
    let commands = serve.commands().with_timeout(support::DEADLINE);
    std::thread::spawn(move || serve.serve(listener));
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(n) = line.strip_prefix("wait ") {
            let linked = commands.wait_for_nodes(n.trim().parse().unwrap(), support::DEADLINE);
            println!("wait {}", linked.len());
            continue;
        }
        let cmd: PagerCommand = line
            .parse()
            .unwrap_or_else(|e| panic!("a command line: {e}"));
        let results = commands.send(&cmd);
        let mut total = 0;
        for (node, r) in results {
            match r {
                Ok(n) => total += n,
                Err(e) => println!("error at node {node}: {e}"),
            }
        }
        println!("{name} {total}");
    }
    std::process::exit(0);
}

/// A node of the commands test: node 1 writes `COMMANDED`, node 0 reads `HELD`; both say
/// `ready` and wait while the pager commands them; then each checks what the commands did
/// (node 0's `HELD` locked away but still readable once unlocked, node 1's `COMMANDED`
/// flushed but read back from the file as it wrote it) and leaves.
fn commanded(dsm: &Dsm) -> Result<bool, DsmError> {
    let rt = dsm.runtime();
    let socket = std::env::var_os(support::PAGER_SOCKET_ENV).expect("the pager's socket");
    let link = rt
        .take_pager_commands(socket.as_ref(), support::DEADLINE)
        .map_err(|e| DsmError::Config(e.to_string()))?;
    let mut ok = true;
    dsm.barrier(1)?;
    if dsm.id() == 1 {
        for page in COMMANDED {
            write_page(dsm, page, 1);
        }
    } else {
        for page in HELD {
            ok &= check(page_is(dsm, page, 0), "node 0 reads the file");
        }
    }
    dsm.barrier(2)?;
    {
        use std::io::Write;
        println!("ready");
        let _ = std::io::stdout().flush();
    }
    support::wait_for_stdin_line();
    // (Every access first: a read may bring the next pages in too.)
    if dsm.id() == 1 {
        for page in COMMANDED {
            ok &= check(rt.access(page) == Access::None, "node 1 gave the page up");
        }
        for page in COMMANDED {
            ok &= check(page_is(dsm, page, 1), "node 1 reads its write back");
        }
    } else {
        for page in HELD {
            ok &= check(rt.access(page) == Access::None, "node 0's page is locked");
        }
        for page in HELD {
            ok &= check(page_is(dsm, page, 0), "node 0 reads it once unlocked");
        }
    }
    drop(link);
    Ok(ok)
}

#[test]
fn a_pager_process_commands_the_nodes_over_its_socket() {
    let file = scratch("pager-process", "file-commands");
    let socket = scratch("pager-process", "pager-commands.sock");
    // The file's pages, `COMMANDED` as node 1 writes them or not yet.
    let file_with = |written: bool| {
        file_bytes(FILE_PAGES, |page| {
            u64::from(written && COMMANDED.contains(&page))
        })
    };
    std::fs::write(&file, file_with(false)).expect("write the file");
    let mut pager = PagerProcess::start(
        test_name(concat!(module_path!(), "::commanding_pager_main")),
        COMMAND_ENV,
        &socket,
        &file,
    );
    let mut to_pager = pager.stdin.take().expect("its stdin");
    let lines = &pager.lines;
    // The pager's answer to `command`: the line it prints for it (errors fail the test).
    let mut ask = |command: &str| -> String {
        use std::io::Write;
        writeln!(to_pager, "{command}").expect("write to the pager");
        let name = command.split_whitespace().next().unwrap_or_default();
        loop {
            let line = lines
                .recv_timeout(support::DEADLINE)
                .unwrap_or_else(|e| panic!("the pager never answered {command:?}: {e:?}"));
            assert!(!line.starts_with("error"), "{command}: {line}");
            if let Some(rest) = line.strip_prefix(name) {
                return rest.trim().to_string();
            }
        }
    };
    let mut nodes: Vec<support::NodeProcess> = support::slots(NODES)
        .into_iter()
        .map(|(slot, listener)| {
            let mut cmd = support::node_command_with_manager(
                &slot,
                "commanded",
                Backend::Sigsegv,
                ManagerKind::Central,
            );
            cmd.env(support::BUDGET_ENV, (8 * PAGE_SIZE).to_string())
                .env(support::PAGER_SOCKET_ENV, &socket)
                .env(support::PAGES_ENV, (1 + FILE_PAGES).to_string());
            support::NodeProcess::spawn_command(cmd, listener)
        })
        .collect();
    assert_eq!(ask("wait 2"), "2", "both nodes take commands");
    for node in &nodes {
        node.expect_line("ready");
    }
    // Before the commands, node 1's writes are only in its memory.
    assert_eq!(
        std::fs::read(&file).unwrap(),
        file_with(false),
        "the file before"
    );
    // clean_request: node 1 writes its dirty pages back (and keeps them, read-only).
    assert_eq!(
        ask(&format!("clean {} {}", COMMANDED.start, COMMANDED.end)),
        COMMANDED.len().to_string()
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        file_with(true),
        "the file after clean_request"
    );
    // flush_request: node 1 gives them up (clean now: nothing more is written).
    assert_eq!(
        ask(&format!("flush {} {}", COMMANDED.start, COMMANDED.end)),
        COMMANDED.len().to_string()
    );
    // data_lock: node 0's pages locked away (read again, they are unlocked by data_unlock).
    assert_eq!(
        ask(&format!("lock {} {} none", HELD.start, HELD.end)),
        (HELD.len() * NODES).to_string()
    );
    assert_eq!(ask("cache off"), "0");
    for node in &mut nodes {
        node.send_line("go");
    }
    for node in nodes {
        let (status, stderr) = node.wait_for(support::DEADLINE);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "a node failed: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        file_with(true),
        "the file at the end"
    );
    std::fs::remove_file(&file).ok();
    std::fs::remove_file(&socket).ok();
}
