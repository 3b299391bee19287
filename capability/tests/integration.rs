//! The capability crate's integration tests, in one test binary: one module per file of
//! `capability/tests/` (declared below, and as the crate's only test binary in
//! `capability/Cargo.toml`, which turns cargo's one binary per file off). Each test binary
//! costs a link against the library and its own copies of its generic code.
//!
//! Tests that start this binary again run a test by its path here (`module::test`):
//! [`isolated`](memlink_test_support::isolated) through the running test's thread name,
//! [`spawn_role`](memlink_test_support::spawn_role) through the module of the running test.

#![cfg(not(memlink_loom))]

mod child_process;

mod capability_processes;
mod compile_fail;
mod example_three_schemes;
mod fuzz_corpus;
mod primitives_multiprocess;
mod proptest_references;
mod rights_escalation;
mod scheme1_window;
mod scheme2_references;
mod segment_header;

memlink_test_support::every_test_file_runs!();
