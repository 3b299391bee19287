//! The kernel's mapping limit, for real: a region whose pages alternate between two
//! protections needs one kernel mapping (VMA) per page, and past `vm.max_map_count` mprotect
//! fails with ENOMEM. The mapping returns that error (no panic), leaves the page as it was in
//! its page table, and keeps working for changes that need no new mapping. Its own test
//! binary, so that no other test shares the exhausted mapping count.

use memlink_dsm::mapping::{DEFAULT_BASE, Mapping};
use memlink_dsm::{Access, Backend, LocalPages, PageNo};

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("read /proc/sys/vm/max_map_count")
        .trim()
        .parse()
        .expect("a number in max_map_count")
}

#[test]
fn a_protection_change_past_the_mapping_limit_is_an_error_not_a_panic() {
    let limit = max_map_count();
    // One page per mapping, plus headroom for the process's other mappings; the region is
    // sparse (a memfd nobody writes), so this costs address space, not memory.
    let pages = (limit + 16_384) as PageNo;
    assert!(
        pages <= 4_000_000,
        "vm.max_map_count is {limit}: a region large enough to pass it would take more than \
         16 GiB of address space"
    );
    let mapping = Mapping::create(DEFAULT_BASE, pages, Backend::Sigsegv).expect("map region");
    // Every other page readable: each page becomes a mapping of its own.
    let refused = (0..pages).step_by(2).find_map(|page| {
        mapping
            .set_access(page, Access::Read)
            .err()
            .map(|e| (page, e))
    });
    let (page, error) = refused.expect("the mapping limit was never reached");
    assert_eq!(error.raw_os_error(), Some(libc::ENOMEM), "{error}");
    assert_eq!(
        mapping.access(page),
        Access::None,
        "the refused page's table entry"
    );
    assert_eq!(mapping.access(page - 2), Access::Read, "the page before it");
    // Taking a page back to no access merges mappings again: that change still works.
    mapping
        .set_access(page - 2, Access::None)
        .expect("a change that frees a mapping");
    assert_eq!(mapping.access(page - 2), Access::None);
}
