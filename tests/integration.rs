//! memlink's own integration tests (the CLI, the launchers, the README's commands), in one
//! test binary: one module per file of `tests/` (declared below, and as the crate's only test
//! binary in `Cargo.toml`, which turns cargo's one binary per file off). Each test binary costs
//! a link against every memlink crate and its own copies of their generic code.

mod cli_support;

mod cli_bench_ipc;
mod cli_doctor;
mod cli_dsm;
mod cli_dsm_admission;
mod cli_dsm_bench;
mod cli_dsm_errors;
mod cli_dsm_hosts;
mod cli_dsm_launcher;
mod cli_dsm_pager;
mod cli_dsm_tasks;
mod cluster_launchers;
mod ipc_peer_death;
mod ipc_round_trips;
mod netns_cluster;
mod readme_commands;

memlink_test_support::every_test_file_runs!();
