//! The DSM's integration tests that run in one test binary: one module per file of
//! `dsm/tests/` (declared below, and as the binary's only tests in `dsm/Cargo.toml`, which
//! turns cargo's one binary per file off). Each test binary costs a link against the
//! libraries and its own copies of their generic code: one binary instead of 21 saves that
//! work 20 times over in a cold build of the suite.
//!
//! Three files stay binaries of their own, declared beside this one in `dsm/Cargo.toml`:
//! `mapping_limit` exhausts its process's mapping count, and `fault_backends` and
//! `tasks_local` map DSM regions (and install the fault handlers) in the test process itself.
//!
//! The tests that re-run this binary as node or helper processes name the test the child
//! runs by its path here (`module::test`): [`support::node_command`] through the module of
//! the running test, the others through their `module_path!`.

mod node_support;
mod support;

mod admission;
mod apps_verified;
mod capability_cluster;
mod cluster_atomics;
mod cluster_counter;
mod cluster_failure;
mod cluster_prefetch;
mod example_launch_nodes;
mod file_pager;
mod fuzz_corpus;
mod litmus_message_passing;
mod litmus_sb_iriw;
mod memory_budget;
mod node_cluster;
mod node_kill;
mod node_leave;
mod node_local_failure;
mod pager_locks;
mod pager_process;
mod pager_write_fails;
mod remote_tcp;
mod tasks_carried_pages;
mod tasks_cluster;

memlink_test_support::every_test_file_runs!();
