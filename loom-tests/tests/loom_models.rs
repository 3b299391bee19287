//! The loom models, one module per file of `loom-tests/tests/`, in one test binary (declared
//! as the package's only test in its Cargo.toml, which turns cargo's one binary per file off):
//! each binary of this release build linked the libraries and generated their generic code,
//! and loom's, again. The models compile only under `RUSTFLAGS="--cfg memlink_loom"` (each
//! file is `#![cfg(memlink_loom)]`); `scripts/test-all.sh` runs them one at a time.

mod capability_guard_count;
mod capability_process_descriptor;
mod capability_revocation;
mod channels_buffered;
mod channels_loan;
mod channels_pcb;
mod channels_port;
mod channels_rendezvous;
mod dsm_fault_slots;

/// Every file of `loom-tests/tests/` is a module of this binary (cargo no longer finds them by
/// itself, so a new file left out would silently never run).
#[test]
fn every_model_file_runs() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let modules = include_str!("loom_models.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read loom-tests/tests") {
        let name = entry.expect("a directory entry").file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".rs")) else {
            continue;
        };
        if stem != "loom_models" && !modules.contains(&format!("\nmod {stem};\n")) {
            missing.push(stem.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "loom-tests/tests/{{{}}}.rs: not a module of loom-tests/tests/loom_models.rs (add \
         `mod <name>;` there)",
        missing.join(",")
    );
}
