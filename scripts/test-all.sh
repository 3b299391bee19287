#!/usr/bin/env bash
# Runs memlink's whole test suite: unit, integration, multi-process and doc tests, the
# README's commands, the stateright models of the protocols, the API documentation build, and
# the loom models (a separate build with --cfg memlink_loom, run beside the tests).
#
# Each step starts with the time since the start. Nothing is built twice: one debug build
# of every target (the dsm crate and stateright optimised, see Cargo.toml, so the model
# takes about a minute instead of five), which the tests then reuse; the loom models need
# their own release build, since --cfg memlink_loom changes the libraries; it runs in the
# background while the tests (which mostly wait on processes and sockets) run, and its
# output is printed when it is done. Steps that run over a minute print progress (cargo's per-crate lines, the test harness's per-test
# lines, the model's state counts every 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() {
  local t=$((SECONDS - started))
  printf '== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}

target="${CARGO_TARGET_DIR:-target}"

step "build (debug): libraries, binaries, examples, tests"
# --examples writes target/debug/examples/<name>, which the tests that run the examples
# (and the README's commands) need; cargo test alone leaves only hashed copies. The tests
# are built here in test mode, so the next step reuses them (and adds the benches).
cargo build --workspace --examples --tests

# The loom models need their own release build (--cfg memlink_loom changes the libraries). It
# is CPU-bound, while much of the next step waits on processes, sockets and timers, so it runs
# beside the tests; its output is kept and shown, with its result, at the end.
mkdir -p "$target"
loom_log="$target/loom-models.log"
step "loom models: started beside the tests (release build in $target/loom), output in $loom_log"
RUSTFLAGS="--cfg memlink_loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  cargo test --release --target-dir "$target/loom" -p memlink-loom-tests >"$loom_log" 2>&1 &
loom_pid=$!
trap 'kill "$loom_pid" 2>/dev/null || true' EXIT

step "cargo test --workspace --all-targets (unit, integration, multi-process, README commands, model)"
cargo test --workspace --all-targets

step "doc tests (the READMEs' Rust snippets included)"
cargo test --workspace --doc

step "API documentation (broken or private intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "loom models (RUSTFLAGS=--cfg memlink_loom): waiting for them to finish"
loom_status=0
wait "$loom_pid" || loom_status=$?
trap - EXIT
cat "$loom_log"
if [ "$loom_status" != 0 ]; then
  echo "loom models failed (exit $loom_status); output above, also in $loom_log" >&2
  exit "$loom_status"
fi

step "all passed"
