//! `memlink doctor` as a user runs it: every check the README names, one verdict line last.

use std::process::{Command, Output};

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("the memlink binary runs")
}

#[test]
fn doctor_checks_what_the_readme_says_memlink_needs_and_ends_with_a_verdict() {
    let out = doctor(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for check in [
        "Linux 5.11 or newer",
        "4 KiB pages",
        "vm.max_map_count",
        "memfd_create + seals",
        "MAP_FIXED_NOREPLACE",
        "futex",
        "pidfd_open",
        "userfaultfd",
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no line checks {check:?}: {stdout}"));
        let tag = line.split_whitespace().next().unwrap();
        assert!(
            ["ok", "MISSING", "WARN", "fallback"].contains(&tag),
            "{line}"
        );
    }
    let verdicts: Vec<&&str> = lines.iter().filter(|l| l.starts_with("verdict:")).collect();
    assert_eq!(verdicts.len(), 1, "{stdout}");
    let last = *lines.last().unwrap();
    assert!(
        last.starts_with("verdict: "),
        "the verdict is not last: {stdout}"
    );
    // The exit status agrees with the verdict. The CI machine runs memlink's whole suite,
    // so memlink can run there.
    assert_eq!(
        out.status.success(),
        last.starts_with("verdict: memlink can run here"),
        "{stdout}"
    );
    assert!(out.status.success(), "{stdout}");
    // The userfaultfd line says which backend the DSM falls back to when it is missing.
    let uffd = lines.iter().find(|l| l.contains("userfaultfd")).unwrap();
    assert!(
        uffd.starts_with("ok") || uffd.contains("--backend sigsegv"),
        "{uffd}"
    );
}

#[test]
fn a_region_too_large_for_the_mapping_limit_is_a_warning_in_the_verdict() {
    // 2^31 pages: more mappings than any vm.max_map_count (at most INT_MAX) allows.
    let out = doctor(&["--region", "8192G"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("vm.max_map_count"))
        .unwrap();
    assert!(line.starts_with("WARN"), "{line}");
    assert!(
        line.contains("2147483648 pages") && line.contains("smaller region"),
        "{line}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("verdict: ") && last.contains("warning"),
        "{stdout}"
    );
}

#[test]
fn a_bad_region_is_refused_with_a_message() {
    for (region, expect) in [("32768G", "at most 2^32 pages"), ("lots", "--region")] {
        let out = doctor(&["--region", region]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--region {region} was accepted");
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
