//! loom models of memlink's lock-free protocols. The models live in `tests/` and only
//! compile under `RUSTFLAGS="--cfg memlink_loom"`; `scripts/test-all.sh` runs them.
