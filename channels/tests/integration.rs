//! The channels crate's integration tests, in one test binary: one module per file of
//! `channels/tests/` (declared below, and as the crate's only test binary in
//! `channels/Cargo.toml`, which turns cargo's one binary per file off). Each test binary
//! costs a link against the libraries and its own copies of their generic code.
//!
//! The tests that fork run in a process of their own through
//! [`isolated`](memlink_test_support::isolated), which starts this binary again with the
//! running test's path here (`module::test`), taken from its thread name.

mod fork;

mod attach_processes;
mod buffered_port_processes;
mod fuzz_corpus;
mod kill_processes;
mod layout_validation;
mod loan_processes;
mod named_processes;
mod proptest_processes;
mod sync_processes;

memlink_test_support::every_test_file_runs!();
