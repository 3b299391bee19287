#!/usr/bin/env bash
# Runs memlink's whole test suite: unit, integration, multi-process and doc tests, the
# README's commands, the stateright models of the protocols (crate memlink-models), the API
# documentation build, and the loom models (a separate build with --cfg memlink_loom).
#
# Each step starts with the time since the start. Nothing is built twice: one debug build
# of every target (the models and stateright optimised, the dsm crate lightly, see
# Cargo.toml), which the tests then reuse. The three CPU-bound parts run in the background
# beside the other tests, which mostly wait on processes, sockets and timers: the stateright
# models (their test binaries, run directly), the loom models (their own optimised build, since
# --cfg memlink_loom changes the libraries) and the API documentation. Their output is kept in
# a log each and printed, with its result, when they are done. Steps that run over a minute print progress (cargo's
# per-crate lines, the test harness's per-test lines; the models' state counts every 20 s
# go to their log).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() {
  local t=$((SECONDS - started))
  printf '== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}

# Absolute, since the models' subshell below runs in models/ and writes its logs here.
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"

step "build (debug): libraries, binaries, examples, tests"
# --examples writes target/debug/examples/<name>, which the tests that run the examples
# (and the README's commands) need; cargo test alone leaves only hashed copies. The tests
# are built here in test mode, so the next step reuses them (and adds the benches).
cargo build --workspace --examples --tests

mkdir -p "$target"
# The background parts and their children are stopped if the suite ends early.
background=()
stop_background() {
  local pid
  for pid in "${background[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
}
trap stop_background EXIT

# The stateright models (crate memlink-models, tests marked #[ignore] so that the step below
# leaves them out): their test binaries, built above, run here directly with --ignored. (A
# cargo selecting only that crate would unify the dependencies' features differently from
# the workspace build and build them again.)
models_log="$target/stateright-models.log"
step "stateright models: started beside the tests, output in $models_log"
mapfile -t model_binaries < <(cargo test --workspace --no-run --message-format=json 2>/dev/null |
  grep '"manifest_path":"[^"]*/models/Cargo.toml"' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
if [ "${#model_binaries[@]}" -eq 0 ]; then
  echo "no stateright model binaries were built" >&2
  exit 1
fi
# The binaries run at once, each with its own log, so that the longest does not run alone at
# the end. Their state spaces are sets of cloned states, so most of their time is spent in
# malloc and free. jemalloc (Debian's libjemalloc2, which .ci/run installs) takes 19-28% less
# CPU than glibc's malloc on them; without it, glibc's per-thread caches, made larger, cut about
# a quarter of glibc's time.
jemalloc="$({ ldconfig -p || /sbin/ldconfig -p || true; } 2>/dev/null |
  awk '/libjemalloc\.so\.2 /{ if (!found) print $NF; found = 1 }')"
(
  cd models # where cargo test would run them
  if [ -n "$jemalloc" ]; then
    export LD_PRELOAD="$jemalloc"
  else
    echo "libjemalloc.so.2 not found (apt-get install libjemalloc2): the models use glibc's malloc"
    export GLIBC_TUNABLES=glibc.malloc.tcache_count=1000:glibc.malloc.mxfast=160
  fi
  pids=()
  for binary in "${model_binaries[@]}"; do
    "$binary" --ignored >"$models_log.$(basename "$binary")" 2>&1 &
    pids+=($!)
  done
  status=0
  for i in "${!pids[@]}"; do
    code=0
    wait "${pids[$i]}" || code=$?
    echo "== ${model_binaries[$i]} --ignored: exit $code"
    cat "$models_log.$(basename "${model_binaries[$i]}")"
    [ "$code" = 0 ] || status=$code
  done
  exit "$status"
) >"$models_log" 2>&1 &
models_pid=$!
background+=("$models_pid")

# The loom models need their own optimised build (--cfg memlink_loom changes the libraries). It
# is CPU-bound, while much of the next step waits on processes, sockets and timers, so it runs
# beside the tests; its output is kept and shown, with its result, at the end.
loom_log="$target/loom-models.log"
step "loom models: started beside the tests (optimised build in $target/loom), output in $loom_log"
# Profile loom (Cargo.toml): a release build without debug information, and loom's
# dependencies that the models never run unoptimised. One test at a time: loom maps and unmaps
# a stack for every modelled thread of every interleaving, and unmapping in a process whose
# threads run on both cores costs a TLB shoot-down each time; two test threads took 2.5 times
# the CPU.
RUSTFLAGS="--cfg memlink_loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  cargo test --profile loom --target-dir "$target/loom" -p memlink-loom-tests \
  -- --test-threads 1 >"$loom_log" 2>&1 &
loom_pid=$!
background+=("$loom_pid")

# The API documentation (broken or private intra-doc links fail). rustdoc needs a check build
# of every dependency, CPU work the build above did not do, so it too runs beside the tests, in
# its own target directory so that it never waits for the tests' build lock.
docs_log="$target/api-docs.log"
step "API documentation: started beside the tests (check build in $target/doc-check), output in $docs_log"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet --target-dir "$target/doc-check" \
  >"$docs_log" 2>&1 &
docs_pid=$!
background+=("$docs_pid")

step "cargo test --workspace --all-targets (unit, integration, multi-process, README commands; the models run beside)"
cargo test --workspace --all-targets

step "doc tests (the READMEs' Rust snippets included)"
cargo test --workspace --doc

# Waits for a background part, prints its log, and stops the suite if it failed.
finish() {
  local name=$1 pid=$2 log=$3 status=0
  step "$name: waiting for them to finish"
  wait "$pid" || status=$?
  cat "$log"
  if [ "$status" != 0 ]; then
    echo "$name failed (exit $status); output above, also in $log" >&2
    exit "$status"
  fi
}
finish "API documentation" "$docs_pid" "$docs_log"
finish "stateright models" "$models_pid" "$models_log"
finish "loom models (RUSTFLAGS=--cfg memlink_loom)" "$loom_pid" "$loom_log"
trap - EXIT

step "all passed"
