//! Every app on 1, 2, 3 and 4 node processes (3: bands that share pages), with both fault
//! backends: each node checks the result against a sequential computation and prints
//! `verified: true`.

use crate::support;

use memlink_dsm::Backend;

#[test]
fn node_main() {
    support::node_entry(&[]);
}

fn verify_everywhere(app: &str) {
    for backend in [Backend::Sigsegv, Backend::Uffd] {
        for nodes in [1, 2, 3, 4] {
            support::assert_cluster_verifies(nodes, app, backend);
        }
    }
}

#[test]
fn jacobi_verifies_on_1_2_4_nodes() {
    verify_everywhere("jacobi");
}

#[test]
fn matmul_verifies_on_1_2_4_nodes() {
    verify_everywhere("matmul");
}

#[test]
fn counter_verifies_on_1_2_4_nodes() {
    verify_everywhere("counter");
}

#[test]
fn sort_verifies_on_1_2_4_nodes() {
    verify_everywhere("sort");
}
