//! The counter app across 4 node processes, with each fault backend: lock-protected
//! increments must add up exactly.

use crate::support;

use memlink_dsm::Backend;

#[test]
fn node_main() {
    support::node_entry(&[]);
}

#[test]
fn counter_is_exact_on_4_nodes_with_sigsegv() {
    support::assert_cluster_verifies(4, "counter", Backend::Sigsegv);
}

#[test]
fn counter_is_exact_on_4_nodes_with_uffd() {
    support::assert_cluster_verifies(4, "counter", Backend::Uffd);
}
