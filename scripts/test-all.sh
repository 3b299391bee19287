#!/usr/bin/env bash
# Runs memlink's whole test suite: unit, integration, multi-process and doc tests, the
# API documentation build, then the loom models (a separate build with --cfg memlink_loom).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
# Tests that run examples find them at target/debug/examples/<name>, which only
# `cargo build --examples` produces (cargo test leaves hashed copies).
cargo build --workspace --examples
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "== API documentation (broken or private intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== loom models (RUSTFLAGS=--cfg memlink_loom)"
RUSTFLAGS="--cfg memlink_loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  cargo test --release --target-dir target/loom -p memlink-loom-tests
