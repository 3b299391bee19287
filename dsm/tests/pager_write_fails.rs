//! A pager whose writes fail, then work again (Mach's `data_write` answered with an error, as
//! a full disk would), in its own process (`PagerServer` over a unix socket), used by 2 node
//! processes under a budget of 4 frames each through `RemotePager` stores. The pager fails
//! every `data_write` while a flag file exists; node 0 creates and removes it.
//! - While writes fail, node 0 writes more pages than both nodes' frames hold: each
//!   write-back that fails keeps its page in node 0's memory (counted in
//!   `write_backs_failed`) and the eviction goes on to another victim; once every frame
//!   holds such a page, only the fault that needed a frame fails, with
//!   `DsmError::WriteBackFailed` naming a page node 0 wrote and the pager's error; a later
//!   fault fails the same way (no hang), and both nodes meet at a barrier (neither is lost).
//! - Once the pager's writes work again, node 0's next faults write the kept pages, and
//!   every page reads as written on both nodes.
//! - After the nodes leave, the file holds every page node 0 wrote, and the others as they
//!   were.

use crate::support;
use crate::support::paged_file::{check, file_bytes, file_page_is, page_is, scratch, write_page};

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use memlink_dsm::cluster::Dsm;
use memlink_dsm::pager::{FilePager, Pager, PagerError, PagerServer, Supply};
use memlink_dsm::{Access, Backend, DsmError, FaultResolver, ManagerKind, PAGE_SIZE, PageNo};

const NODES: usize = 2;
/// The file's pages: region pages `1..=FILE_PAGES`.
const FILE_PAGES: usize = 16;
/// Each node's frames.
const FRAMES: usize = 4;
/// `<socket>|<file>|<flag>` in the pager process.
const SERVE_ENV: &str = "MEMLINK_DSM_TEST_FAILING_PAGER";
/// The flag file, in the nodes: the pager fails writes while it exists.
const FLAG_ENV: &str = "MEMLINK_DSM_TEST_WRITES_FAIL_FLAG";
/// What the pager says when it fails a write.
const DISK_FULL: &str = "no space left on the pager's disk";
/// The directory slot where node 0 publishes the first page it could not write.
const SLOT_STOPPED_AT: usize = 3;

#[test]
fn node_main() {
    support::node_entry(&[("writes_fail", writes_fail)]);
}

/// A file pager whose `data_write`s fail while `flag` exists.
struct FailingWrites {
    file: FilePager,
    flag: PathBuf,
}

impl Pager for FailingWrites {
    fn data_request(&mut self, first: PageNo, out: &mut [u8]) -> Result<Supply, PagerError> {
        self.file.data_request(first, out)
    }

    fn data_write(&mut self, page: PageNo, data: &[u8]) -> Result<(), PagerError> {
        if self.flag.exists() {
            return Err(PagerError::Flush(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                DISK_FULL,
            )));
        }
        self.file.data_write(page, data)
    }

    fn sync(&mut self) -> Result<(), PagerError> {
        self.file.sync()
    }
}

/// The pager process: serves the file until killed.
#[test]
fn failing_pager_main() {
    let Ok(spec) = std::env::var(SERVE_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(socket), Some(file), Some(flag)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad {SERVE_ENV}: {spec}");
    };
    let file = FilePager::open(file.as_ref(), 0, None, 1).expect("the pager's file");
    let listener = UnixListener::bind(socket).expect("the pager's socket");
    println!("pager ready");
    let pager = FailingWrites {
        file,
        flag: flag.into(),
    };
    let _ = PagerServer::new(pager).serve(listener);
    std::process::exit(1);
}

/// Node 0 writes pages until a fault fails for want of a frame (writes failing), checks the
/// failure, lets the pager recover, and both nodes check every page.
fn writes_fail(dsm: &Dsm) -> Result<bool, DsmError> {
    let rt = dsm.runtime();
    let flag = PathBuf::from(std::env::var_os(FLAG_ENV).expect("the flag's path"));
    let mut ok = true;
    dsm.barrier(1)?;
    if dsm.id() == 0 {
        std::fs::write(&flag, b"writes fail").expect("the flag");
        let mut stopped_at = None;
        for page in 1..=FILE_PAGES as PageNo {
            match rt.resolve_fault(page, Access::Write) {
                // (No other thread here faults: the page stays writable while it is written.)
                Ok(()) => write_page(dsm, page, 1),
                Err(DsmError::WriteBackFailed { page: kept, reason }) => {
                    eprintln!("node 0: fault on page {page}: page {kept} not written: {reason}");
                    ok &= check(
                        (1..page).contains(&kept),
                        "the error names a page node 0 wrote",
                    );
                    ok &= check(reason.contains(DISK_FULL), "the error says the pager's");
                    stopped_at = Some(page);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let Some(stopped_at) = stopped_at else {
            eprintln!("node 0 wrote every page: no fault failed");
            return Ok(false);
        };
        ok &= check(
            rt.eviction_stats().write_backs_failed >= FRAMES as u64,
            "the failed write-backs are counted",
        );
        // A later fault fails the same way, at once.
        ok &= check(
            matches!(
                rt.resolve_fault(stopped_at, Access::Read),
                Err(DsmError::WriteBackFailed { .. })
            ),
            "a later fault fails the same way",
        );
        // Neither node was lost.
        dsm.barrier(2)?;
        std::fs::remove_file(&flag).expect("the flag goes");
        // (The directory is a page of the region too: it needs a frame, written now.)
        dsm.publish(SLOT_STOPPED_AT, stopped_at as u64);
    } else {
        dsm.barrier(2)?;
    }
    dsm.barrier(3)?;
    let stopped_at = dsm.lookup(SLOT_STOPPED_AT) as PageNo;
    // Node 0 first: its faults write what it kept.
    for node in 0..NODES as u16 {
        if dsm.id() == node {
            for page in 1..=FILE_PAGES as PageNo {
                let by = if page < stopped_at { 1 } else { 0 };
                ok &= check(page_is(dsm, page, by), &format!("page {page} as written"));
            }
        }
        dsm.barrier(4 + node as u32)?;
    }
    Ok(ok)
}

/// The pager process, killed at drop.
struct PagerProcess(Child);

impl Drop for PagerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the pager process on `file` at `socket`, failing writes while `flag` exists;
/// returns once it listens.
fn start_pager(socket: &Path, file: &Path, flag: &Path) -> PagerProcess {
    let _ = std::fs::remove_file(socket);
    let test = concat!(module_path!(), "::failing_pager_main");
    let test = test.split_once("::").map_or(test, |(_, t)| t);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .env(
            SERVE_ENV,
            format!("{}|{}|{}", socket.display(), file.display(), flag.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("the pager process");
    let stdout = child.stdout.take().expect("its stdout");
    let pager = PagerProcess(child);
    // The test harness prints its own lines first.
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.trim() == "pager ready");
    assert!(ready, "the pager process did not start");
    pager
}

#[test]
fn a_failed_write_back_keeps_the_page_and_fails_only_the_fault() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        for backend in [Backend::Sigsegv, Backend::Uffd] {
            run(manager, backend);
        }
    }
}

fn run(manager: ManagerKind, backend: Backend) {
    let what = format!("pager-write-fails-{manager}-{backend}");
    let file = scratch(&what, "file");
    let socket = scratch(&what, "pager.sock");
    let flag = scratch(&what, "writes-fail");
    let _ = std::fs::remove_file(&flag);
    std::fs::write(&file, file_bytes(FILE_PAGES, |_| 0)).expect("write the file");
    let pager = start_pager(&socket, &file, &flag);
    let outputs = support::launch_verified(&what, NODES, |slot| {
        let mut cmd = support::node_command_with_manager(slot, "writes_fail", backend, manager);
        cmd.env(support::BUDGET_ENV, (FRAMES * PAGE_SIZE).to_string())
            .env(support::PAGER_SOCKET_ENV, &socket)
            .env(support::PAGES_ENV, (1 + FILE_PAGES).to_string())
            .env(FLAG_ENV, &flag);
        cmd
    });
    drop(pager);
    assert_eq!(outputs.len(), NODES);
    // Shown with --nocapture: where node 0 stopped, and what page replacement did.
    for out in &outputs {
        let evictions = support::line_after(&what, out, "evictions: ");
        println!(
            "{what}: node {}: evictions {evictions}; {}",
            out.id,
            out.stderr.trim()
        );
    }
    // The file: pages 1.. as node 0 wrote them, up to the first it did not, the rest as
    // they were.
    let after = std::fs::read(&file).expect("read the file back");
    let written = (1..=FILE_PAGES as PageNo)
        .take_while(|&p| file_page_is(&after, p, 1))
        .count();
    assert!(
        (FRAMES..FILE_PAGES).contains(&written),
        "{what}: {written} pages of the file as node 0 wrote them"
    );
    for page in written as PageNo + 1..=FILE_PAGES as PageNo {
        assert!(
            file_page_is(&after, page, 0),
            "{what}: page {page} of the file"
        );
    }
    let _ = std::fs::remove_dir_all(file.parent().expect("the scratch directory"));
}
