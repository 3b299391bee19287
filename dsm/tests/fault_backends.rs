//! The fault backends, each served by a local resolver that keeps the "remote" copy of every
//! page in memory: first-touch read and write faults, invalidation and refetch, concurrent
//! faulting threads, a child process, and a real segmentation fault that must still crash.

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use memlink_dsm::fault::FaultService;
use memlink_dsm::mapping::{DEFAULT_BASE, MapError, Mapping};
use memlink_dsm::{Access, Backend, DsmError, FaultResolver, LocalPages, PAGE_SIZE, PageNo};

/// Serves pages from an in-memory store, as a remote owner would: a read fault installs a
/// read-only copy, a write fault installs (or upgrades to) a writable one.
struct MemoryResolver {
    mapping: Arc<Mapping>,
    store: Mutex<HashMap<PageNo, Vec<u8>>>,
    read_faults: AtomicU64,
    write_faults: AtomicU64,
}

impl MemoryResolver {
    fn new(mapping: Arc<Mapping>) -> Arc<MemoryResolver> {
        Arc::new(MemoryResolver {
            mapping,
            store: Mutex::new(HashMap::new()),
            read_faults: AtomicU64::new(0),
            write_faults: AtomicU64::new(0),
        })
    }

    /// What the "remote owner" holds for `page`: its own contents, else a pattern.
    fn remote(&self, page: PageNo) -> Vec<u8> {
        self.store
            .lock()
            .unwrap()
            .entry(page)
            .or_insert_with(|| pattern(page, 0))
            .clone()
    }

    /// A "remote write": take the page back (contents included) and invalidate it here.
    fn take_back(&self, page: PageNo, generation: u8) {
        let mut local = vec![0u8; PAGE_SIZE];
        self.mapping.read_page(page, &mut local);
        self.mapping
            .set_access(page, Access::None)
            .expect("invalidate");
        for b in &mut local[..8] {
            *b = generation;
        }
        self.store.lock().unwrap().insert(page, local);
    }
}

impl FaultResolver for MemoryResolver {
    fn resolve_fault(&self, page: PageNo, access: Access) -> Result<(), DsmError> {
        if self.mapping.access(page) >= access {
            // Served by an earlier fault of another thread.
            return Ok(());
        }
        match access {
            Access::Write => {
                self.write_faults.fetch_add(1, Ordering::Relaxed);
                if self.mapping.access(page) == Access::Read {
                    self.mapping.set_access(page, Access::Write)?;
                } else {
                    let data = self.remote(page);
                    self.mapping.install_page(page, &data, Access::Write)?;
                }
            }
            _ => {
                self.read_faults.fetch_add(1, Ordering::Relaxed);
                let data = self.remote(page);
                self.mapping.install_page(page, &data, Access::Read)?;
            }
        }
        Ok(())
    }
}

fn pattern(page: PageNo, salt: u8) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| (i as u8).wrapping_mul(31) ^ (page as u8) ^ salt)
        .collect()
}

/// Each test maps its own region at its own base, so tests can run in parallel threads.
fn base(slot: usize) -> usize {
    DEFAULT_BASE + slot * (1 << 30)
}

fn setup(
    slot: usize,
    pages: u32,
    backend: Backend,
) -> (Arc<Mapping>, Arc<MemoryResolver>, FaultService) {
    let mapping = Mapping::create(base(slot), pages, backend).expect("map region");
    let resolver = MemoryResolver::new(mapping.clone());
    let service = FaultService::start(mapping.clone(), resolver.clone()).expect("start faults");
    (mapping, resolver, service)
}

fn byte(mapping: &Mapping, offset: usize) -> u8 {
    // SAFETY: offset is inside the region; the fault backend makes it readable.
    unsafe { std::ptr::read_volatile(mapping.base().add(offset)) }
}

fn write_byte(mapping: &Mapping, offset: usize, value: u8) {
    // SAFETY: offset is inside the region; the fault backend makes it writable.
    unsafe { std::ptr::write_volatile(mapping.base().add(offset), value) }
}

fn read_then_write(slot: usize, backend: Backend) {
    let (mapping, resolver, service) = setup(slot, 8, backend);
    for page in 0..8u32 {
        let expect = pattern(page, 0);
        for i in [0, 1, 1000, PAGE_SIZE - 1] {
            assert_eq!(byte(&mapping, page as usize * PAGE_SIZE + i), expect[i]);
        }
    }
    assert_eq!(resolver.read_faults.load(Ordering::Relaxed), 8);
    assert_eq!(resolver.write_faults.load(Ordering::Relaxed), 0);
    for page in 0..8u32 {
        write_byte(&mapping, page as usize * PAGE_SIZE + 5, 200);
        assert_eq!(mapping.access(page), Access::Write);
    }
    assert_eq!(resolver.write_faults.load(Ordering::Relaxed), 8);
    // A write fault on an untouched page after invalidation installs a writable copy at once.
    resolver.take_back(3, 9);
    write_byte(&mapping, 3 * PAGE_SIZE + 6, 77);
    assert_eq!(byte(&mapping, 3 * PAGE_SIZE), 9, "remote contents arrived");
    assert_eq!(byte(&mapping, 3 * PAGE_SIZE + 6), 77);
    assert_eq!(resolver.write_faults.load(Ordering::Relaxed), 9);
    drop(service);
}

#[test]
fn sigsegv_read_then_write_faults() {
    read_then_write(0, Backend::Sigsegv);
}

#[test]
fn uffd_read_then_write_faults() {
    read_then_write(1, Backend::Uffd);
}

fn invalidate_and_refetch(slot: usize, backend: Backend) {
    let (mapping, resolver, _service) = setup(slot, 4, backend);
    write_byte(&mapping, 100, 1);
    for generation in 2..20u8 {
        resolver.take_back(0, generation);
        // The remote side changed the page: the next read sees its data, not the old copy.
        assert_eq!(byte(&mapping, 0), generation);
        assert_eq!(
            byte(&mapping, 100),
            1,
            "our own earlier write travelled with the page"
        );
    }
    assert_eq!(resolver.read_faults.load(Ordering::Relaxed), 18);
}

#[test]
fn sigsegv_invalidate_and_refetch() {
    invalidate_and_refetch(2, Backend::Sigsegv);
}

#[test]
fn uffd_invalidate_and_refetch() {
    invalidate_and_refetch(3, Backend::Uffd);
}

fn threads_fault_concurrently(slot: usize, backend: Backend) {
    const THREADS: usize = 4;
    const PAGES: u32 = 32;
    let (mapping, resolver, _service) = setup(slot, PAGES, backend);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let mapping = &mapping;
            s.spawn(move || {
                for page in 0..PAGES {
                    let expect = pattern(page, 0);
                    assert_eq!(byte(mapping, page as usize * PAGE_SIZE + 17), expect[17]);
                }
                // Each thread writes its own byte of every page.
                for page in 0..PAGES {
                    write_byte(mapping, page as usize * PAGE_SIZE + 2000 + t, t as u8 + 1);
                }
            });
        }
    });
    for page in 0..PAGES {
        for t in 0..THREADS {
            assert_eq!(
                byte(&mapping, page as usize * PAGE_SIZE + 2000 + t),
                t as u8 + 1
            );
        }
    }
    let reads = resolver.read_faults.load(Ordering::Relaxed);
    assert!(
        reads >= PAGES as u64,
        "every page faulted at least once: {reads}"
    );
}

#[test]
fn sigsegv_threads_fault_concurrently() {
    threads_fault_concurrently(4, Backend::Sigsegv);
}

#[test]
fn uffd_threads_fault_concurrently() {
    threads_fault_concurrently(5, Backend::Uffd);
}

/// The environment variable that makes this test binary a child process: the test's name.
const CHILD_ENV: &str = "MEMLINK_DSM_FAULT_TEST_CHILD";

/// Runs `work` in a child process and returns how it ended. The child is this test binary
/// started afresh with only the calling test (never a fork of the multithreaded test harness,
/// whose other threads may hold locks the child would need). In that child, the same call runs
/// `work` and exits: 0 if it returned true, 1 otherwise (so one test starts at most one child).
/// A child that runs past the deadline is killed and fails the test.
fn in_child(work: impl FnOnce() -> bool) -> std::process::ExitStatus {
    let test = std::thread::current()
        .name()
        .expect("libtest names the test thread after the test")
        .to_string();
    if std::env::var(CHILD_ENV).ok().as_deref() == Some(test.as_str()) {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(false);
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", &test, "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ENV, &test)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the child process");
    support::wait_within(&mut child, support::DEADLINE).unwrap_or_else(|| {
        panic!(
            "{test}: the child did not end within {:?}",
            support::DEADLINE
        )
    })
}

fn child_process_serves_faults(slot: usize, backend: Backend) {
    let status = in_child(move || {
        let (mapping, resolver, _service) = setup(slot, 16, backend);
        let mut sum = 0u64;
        for page in 0..16u32 {
            write_byte(&mapping, page as usize * PAGE_SIZE + 1, 42);
            sum += byte(&mapping, page as usize * PAGE_SIZE + 3) as u64;
        }
        let expect: u64 = (0..16).map(|p| pattern(p, 0)[3] as u64).sum();
        sum == expect && resolver.write_faults.load(Ordering::Relaxed) == 16
    });
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigsegv_child_process_serves_faults() {
    child_process_serves_faults(6, Backend::Sigsegv);
}

#[test]
fn uffd_child_process_serves_faults() {
    child_process_serves_faults(7, Backend::Uffd);
}

#[test]
fn sigsegv_real_segfault_outside_the_region_still_crashes() {
    let status = in_child(|| {
        let (mapping, _resolver, _service) = setup(8, 2, Backend::Sigsegv);
        write_byte(&mapping, 0, 1);
        // Just past the region: no page of ours. This must kill the child with SIGSEGV.
        // SAFETY: deliberately invalid: the test checks that the fault is not swallowed.
        unsafe { std::ptr::write_volatile(mapping.base().add(2 * PAGE_SIZE + 8), 1u8) };
        true
    });
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "the child should die of SIGSEGV, {status:?}"
    );
}

fn unservable_fault_exits_the_process_with_a_message(slot: usize, backend: Backend) {
    struct Lost;
    impl FaultResolver for Lost {
        fn resolve_fault(&self, _: PageNo, _: Access) -> Result<(), DsmError> {
            Err(DsmError::NodeLost {
                node: 1,
                reason: "test".into(),
            })
        }
    }
    let status = in_child(move || {
        let mapping = Mapping::create(base(slot), 2, backend).unwrap();
        let _service = FaultService::start(mapping.clone(), Arc::new(Lost)).unwrap();
        byte(&mapping, 0);
        true
    });
    assert_eq!(
        status.code(),
        Some(memlink_dsm::fault::UNSERVABLE_FAULT_EXIT),
        "{backend}: {status:?}"
    );
}

#[test]
fn sigsegv_unservable_fault_exits_the_process_with_a_message() {
    unservable_fault_exits_the_process_with_a_message(9, Backend::Sigsegv);
}

#[test]
fn uffd_unservable_fault_exits_the_process_with_a_message() {
    unservable_fault_exits_the_process_with_a_message(10, Backend::Uffd);
}

#[test]
fn a_clash_at_the_base_is_a_clear_error() {
    let first = Mapping::create(base(11), 4, Backend::Sigsegv).unwrap();
    let err = Mapping::create(base(11) + PAGE_SIZE, 4, Backend::Sigsegv).unwrap_err();
    assert!(matches!(err, MapError::AddressInUse { .. }), "{err}");
    assert!(err.to_string().contains("MEMLINK_DSM_BASE"));
    drop(first);
    Mapping::create(base(11), 4, Backend::Sigsegv).expect("free again after unmap");
}

fn invalidated_contents_stay_readable_by_the_runtime(slot: usize, backend: Backend) {
    let (mapping, _resolver, _service) = setup(slot, 2, backend);
    write_byte(&mapping, 10, 123);
    // The protocol invalidates before it reads the page to send it on.
    mapping.set_access(0, Access::None).expect("invalidate");
    let mut out = vec![0u8; PAGE_SIZE];
    mapping.read_page(0, &mut out);
    assert_eq!(out[10], 123);
    // Ownership coming back without data: the old contents are current again.
    mapping.set_access(0, Access::Write).expect("upgrade");
    assert_eq!(byte(&mapping, 10), 123);
}

#[test]
fn sigsegv_invalidated_contents_stay_readable_by_the_runtime() {
    invalidated_contents_stay_readable_by_the_runtime(12, Backend::Sigsegv);
}

#[test]
fn uffd_invalidated_contents_stay_readable_by_the_runtime() {
    invalidated_contents_stay_readable_by_the_runtime(13, Backend::Uffd);
}

/// A run of a file mapped over the region (a file pager's clean pages read ahead) shows the
/// file's bytes without a copy; the runtime reads them; a write gives the page its own memory
/// (the file's bytes in it, the file unchanged); an invalidation keeps the contents; a
/// release gives the pages back to the memfd, where the next fault fills them.
#[test]
fn sigsegv_a_file_run_shows_the_file_until_the_page_changes() {
    use std::os::fd::AsFd;
    let dir = std::env::temp_dir().join(format!("memlink-map-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join("pages");
    let bytes: Vec<u8> = (0..8).flat_map(|p| pattern(p, 7)).collect();
    std::fs::write(&path, &bytes).expect("write the file");
    let file = std::fs::File::open(&path).expect("open the file");
    let (mapping, resolver, _service) = setup(14, 8, Backend::Sigsegv);
    // Region pages 2..6 show the file's pages 1..5.
    let mapped = mapping
        .map_file_run(2, 4, file.as_fd(), PAGE_SIZE as u64)
        .expect("map the run");
    assert!(mapped);
    for page in 2..6u32 {
        assert_eq!(mapping.access(page), Access::Read);
        let expect = pattern(page - 1, 7);
        for i in [0, 777, PAGE_SIZE - 1] {
            assert_eq!(byte(&mapping, page as usize * PAGE_SIZE + i), expect[i]);
        }
    }
    assert_eq!(resolver.read_faults.load(Ordering::Relaxed), 0);
    assert_eq!(
        mapping.resident_bytes().expect("resident"),
        0,
        "nothing copied"
    );
    let mut out = vec![0u8; PAGE_SIZE];
    mapping.read_page(3, &mut out);
    assert_eq!(out, pattern(2, 7), "the runtime reads the file's page");
    // A write: the page gets its own memory with the file's bytes; the file stays as it was.
    write_byte(&mapping, 3 * PAGE_SIZE + 9, 0xEE);
    assert_eq!(mapping.access(3), Access::Write);
    let mut expect = pattern(2, 7);
    expect[9] = 0xEE;
    mapping.read_page(3, &mut out);
    assert_eq!(out, expect);
    assert_eq!(byte(&mapping, 3 * PAGE_SIZE + 100), expect[100]);
    assert_eq!(std::fs::read(&path).expect("read the file"), bytes);
    // An invalidation keeps the contents for the runtime.
    mapping.set_access(4, Access::None).expect("invalidate");
    assert_eq!(mapping.access(4), Access::None);
    mapping.read_page(4, &mut out);
    assert_eq!(out, pattern(3, 7));
    // Filled again (the contents that came with a write elsewhere): the application sees
    // them, not the file's.
    mapping
        .install_page(4, &pattern(4, 9), Access::Read)
        .expect("install");
    assert_eq!(byte(&mapping, 4 * PAGE_SIZE + 5), pattern(4, 9)[5]);
    // Released: the next read faults and gets the resolver's contents, not the file's.
    mapping.release_run(2, 4).expect("release");
    assert_eq!(byte(&mapping, 5 * PAGE_SIZE + 1), pattern(5, 0)[1]);
    assert_eq!(byte(&mapping, 2 * PAGE_SIZE + 1), pattern(2, 0)[1]);
    assert_eq!(resolver.read_faults.load(Ordering::Relaxed), 2);
    // userfaultfd cannot: the caller copies.
    let uffd = Mapping::create(base(15), 4, Backend::Uffd).expect("map region");
    assert!(!uffd.map_file_run(0, 2, file.as_fd(), 0).expect("no error"));
    std::fs::remove_dir_all(&dir).ok();
}
