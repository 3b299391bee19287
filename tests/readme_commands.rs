//! Runs the shell commands of README.md, dsm/README.md and docs/*.md as a newcomer would,
//! and fails if one does not work as written.
//!
//! The convention, for everyone who edits those files:
//! - Every fenced block tagged `sh` or `bash` is a list of commands. This test runs each
//!   such block as one bash script (`set -euo pipefail`) from the repository root, so loops
//!   and `\` continuations work, and the block must exit 0 within [`BLOCK_DEADLINE`].
//!   Output that is shown, not run, goes in a `text` block.
//! - A line that cannot run on its own here ends with a comment that says what must run
//!   beside it: `# needs: <what>` (another shell, a second host, root, the whole suite).
//!   The test leaves such lines out and runs the rest of the block.
//! - `memlink` is on PATH, as after `cargo install --path .`: it is the binary cargo built
//!   for this test.
//! - `cargo` runs what the suite has already built instead of building again: `cargo run
//!   --release -- ARGS` runs `memlink ARGS`; `cargo run -p CRATE --example NAME [-- ARGS]`
//!   runs the example `cargo build --examples` built (scripts/test-all.sh does that first);
//!   `cargo build ...` and `cargo install ...` do nothing. Any other cargo command fails
//!   here: mark its line `# needs:`.
//! - Sizes stay as a user would type them; memlink runs here with them made small: the
//!   values of `--size`, `--sizes`, `--iters` and `--rounds` are replaced with small ones,
//!   `demo` gets `--quick`, and `bench ipc` and `dsm bench` get few iterations.
//! - A command may write files only under `target/` (or a fresh temporary directory), never
//!   over tracked files.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The longest one block may run (with the small sizes) before it counts as hanging.
const BLOCK_DEADLINE: Duration = Duration::from_secs(180);

/// The files whose shell blocks are run.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md"), root.join("dsm/README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

/// The contents of every file under docs/ (the published figures and their pages), which no
/// README command may overwrite.
fn tracked_docs(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// One shell block: where it starts, and the lines that run.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    script: String,
    left_out: usize,
}

/// Whether a line says what must run beside it (`# needs: ...` in its comment).
fn needs_something_beside(line: &str) -> bool {
    let comment = if line.trim_start().starts_with('#') {
        Some(line)
    } else {
        line.find(" #").map(|i| &line[i..])
    };
    comment.is_some_and(|c| c.contains("needs:"))
}

/// The `sh`/`bash` blocks of `text`.
fn shell_blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(info)) => {
                let lang = info.split_whitespace().next().unwrap_or("");
                if matches!(lang, "sh" | "bash") {
                    current = Some(Block {
                        file: file.to_path_buf(),
                        line: i + 1,
                        script: String::new(),
                        left_out: 0,
                    });
                } else {
                    // Another kind of block (rust, text, none): skip to its end.
                    current = Some(Block {
                        file: PathBuf::new(),
                        line: 0,
                        script: String::new(),
                        left_out: 0,
                    });
                }
            }
            (Some(block), Some(_)) => {
                if block.line > 0 {
                    blocks.push(current.take().unwrap());
                }
                current = None;
            }
            (Some(block), None) if block.line > 0 => {
                if needs_something_beside(line) {
                    block.left_out += 1;
                } else {
                    block.script.push_str(line);
                    block.script.push('\n');
                }
            }
            _ => {}
        }
    }
    blocks
}

/// `target/<profile>`, from this test's own path (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf()
}

/// Writes the `memlink` and `cargo` stand-ins (see the module documentation) into `bin`.
fn write_stand_ins(bin: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let memlink = env!("CARGO_BIN_EXE_memlink");
    let examples = profile_dir().join("examples");
    let memlink_script = format!(
        r#"#!/usr/bin/env bash
# memlink with the sizes of a README line made small (see tests/readme_commands.rs).
args=()
prev=""
for a in "$@"; do
  case "$prev" in
    --size) a=64 ;;
    --sizes) a=8,4K ;;
    --iters) a=3 ;;
    --rounds) a=1 ;;
  esac
  case "$a" in
    --size=*) a=--size=64 ;;
    --sizes=*) a=--sizes=8,4K ;;
    --iters=*) a=--iters=3 ;;
    --rounds=*) a=--rounds=1 ;;
  esac
  args+=("$a")
  prev="$a"
done
all=" ${{args[*]}} "
case "$all" in
  " demo "*) [[ "$all" == *" --quick "* ]] || args+=(--quick) ;;
  " bench ipc "*)
    [[ "$all" == *" --iters"* ]] || args+=(--iters 20)
    [[ "$all" == *" --sizes"* ]] || args+=(--sizes 8,4K) ;;
  " dsm bench "*) [[ "$all" == *" --iters"* ]] || args+=(--iters 5) ;;
  " dsm scale "*)
    [[ "$all" == *" --size"* ]] || args+=(--size 64)
    [[ "$all" == *" --iters"* ]] || args+=(--iters 3)
    [[ "$all" == *" --rounds"* ]] || args+=(--rounds 1) ;;
esac
exec "{memlink}" "${{args[@]}}"
"#
    );
    let cargo_script = format!(
        r#"#!/usr/bin/env bash
# cargo for README lines: runs what the suite built (see tests/readme_commands.rs).
case "$1" in
  build|install) exit 0 ;;
  run) ;;
  *) echo "cargo $*: not run by tests/readme_commands.rs; mark the line '# needs: ...'" >&2; exit 97 ;;
esac
shift
example=""
release=""
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --example) example="$2"; shift ;;
    -p|--package|--features|--bin|--target-dir) shift ;;
    --release|-q|--quiet) ;;
    *) echo "cargo run: option $1 is not known to tests/readme_commands.rs" >&2; exit 97 ;;
  esac
  shift
done
[[ "${{1:-}}" == "--" ]] && shift
if [[ -n "$example" ]]; then
  exe="{examples}/$example"
  [[ -x "$exe" ]] || {{ echo "example $example is not built: run cargo build --workspace --examples first" >&2; exit 97; }}
  exec "$exe" "$@"
fi
exec memlink "$@"
"#,
        examples = examples.display()
    );
    for (name, script) in [("memlink", memlink_script), ("cargo", cargo_script)] {
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Runs `block` with the stand-ins first on PATH; None on success, else what went wrong.
fn run_block(root: &Path, bin: &Path, scratch: &Path, block: &Block) -> Option<String> {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_path = scratch.join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block.script])
        .current_dir(root)
        .env("PATH", path)
        .env("TMPDIR", scratch)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let status = memlink_test_support::wait_process(&mut child, BLOCK_DEADLINE);
    if status.is_none() {
        // SAFETY: kill takes no memory; the group is the one bash led, started above.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    }
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("exited with {s}; its output ends:\n{tail}")),
        None => Some(format!(
            "did not finish within {BLOCK_DEADLINE:?}; its output ends:\n{tail}"
        )),
    }
}

#[test]
fn every_shell_command_in_the_readmes_and_docs_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = std::env::temp_dir().join(format!("memlink-readme-{}", std::process::id()));
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_stand_ins(&bin);
    let mut blocks = Vec::new();
    for doc in documents(root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        blocks.extend(shell_blocks(doc.strip_prefix(root).unwrap(), &text));
    }
    assert!(
        blocks.iter().any(|b| b.file == Path::new("README.md")),
        "found no shell block in README.md"
    );
    let tracked_before = tracked_docs(root);
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in &blocks {
        if block.script.trim().is_empty() {
            continue;
        }
        ran += 1;
        println!(
            "{}:{}: running {} line(s), {} left out (needs: ...)",
            block.file.display(),
            block.line,
            block.script.lines().count(),
            block.left_out
        );
        if let Some(why) = run_block(root, &bin, &scratch, block) {
            failures.push(format!(
                "{}:{}: the block\n{}{why}",
                block.file.display(),
                block.line,
                block.script
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(ran >= 3, "only {ran} blocks ran: {blocks:#?}");
    let tracked_after = tracked_docs(root);
    for (path, before) in &tracked_before {
        assert!(
            tracked_after.get(path) == Some(before),
            "a README command changed {}: write results under target/ or a path the user names",
            path.display()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} shell blocks failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_convention_leaves_out_only_lines_that_say_what_they_need() {
    let text = "intro\n```sh\nmemlink demo   # the demo\nmemlink dsm node --id 1  # needs: node 0 on a second host\n# needs: root\nsudo true\n```\n```text\nnot run\n```\n```rust\nfn main() {}\n```\n";
    let blocks = shell_blocks(Path::new("x.md"), text);
    assert_eq!(blocks.len(), 1, "{blocks:#?}");
    assert_eq!(blocks[0].line, 2);
    assert_eq!(blocks[0].script, "memlink demo   # the demo\nsudo true\n");
    assert_eq!(blocks[0].left_out, 2);
}

/// The Rust blocks of a README, each with its info string and the three lines before it.
fn rust_blocks(text: &str) -> Vec<(usize, String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut inside = false;
    for (i, line) in lines.iter().enumerate() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if !inside && info.starts_with("rust") {
            let before = lines[i.saturating_sub(3)..i].join("\n");
            blocks.push((i + 1, info.to_string(), before));
        }
        inside = !inside;
    }
    blocks
}

/// Every Rust snippet in README.md runs to completion as a doctest (the facade crate compiles
/// README.md as doctests: `rust` blocks run, `no_run` ones only compile), or the lines just
/// before it say what must run beside it (with the word "beside"). dsm/README.md is not a
/// doctest, so each of its snippets says what runs beside it or where it runs.
#[test]
fn every_rust_snippet_runs_or_says_what_must_run_beside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains(r#"include_str!("../README.md")"#),
        "src/lib.rs no longer compiles README.md as doctests"
    );
    let mut bad = Vec::new();
    for (doc, is_doctest) in [("README.md", true), ("dsm/README.md", false)] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (line, info, before) in rust_blocks(&text) {
            let runs = is_doctest && !info.contains("no_run") && !info.contains("ignore");
            if !runs && !before.contains("beside") {
                bad.push(format!(
                    "{doc}:{line}: a ```{info} snippet that does not run to completion as a doctest, \
                     and the lines before it do not say what must run beside it"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
