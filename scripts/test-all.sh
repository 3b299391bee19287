#!/usr/bin/env bash
# Runs memlink's whole test suite: unit, integration, multi-process and doc tests, the
# README's commands, the stateright model of the coherence protocol, the API documentation
# build, then the loom models (a separate build with --cfg memlink_loom).
#
# Each step starts with the time since the start. Nothing is built twice: one debug build
# of every target (the dsm crate and stateright optimised, see Cargo.toml, so the model
# takes about a minute instead of five), which the tests then reuse; the loom models need
# their own release build, since --cfg memlink_loom changes the libraries. Steps that run
# over a minute print progress (cargo's per-crate lines, the test harness's per-test
# lines, the model's state counts every 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() {
  local t=$((SECONDS - started))
  printf '== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}

step "build (debug): libraries, binaries, examples, tests"
# --examples writes target/debug/examples/<name>, which the tests that run the examples
# (and the README's commands) need; cargo test alone leaves only hashed copies. The tests
# are built here in test mode, so the next step reuses them (and adds the benches).
cargo build --workspace --examples --tests

step "cargo test --workspace --all-targets (unit, integration, multi-process, README commands, model)"
cargo test --workspace --all-targets

step "doc tests (the READMEs' Rust snippets included)"
cargo test --workspace --doc

step "API documentation (broken or private intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "loom models (RUSTFLAGS=--cfg memlink_loom, release build in target/loom)"
RUSTFLAGS="--cfg memlink_loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  cargo test --release --target-dir "${CARGO_TARGET_DIR:-target}/loom" -p memlink-loom-tests

step "all passed"
