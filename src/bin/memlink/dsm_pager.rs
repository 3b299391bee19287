//! `memlink dsm pager`: a file pager in its own process, served to the nodes over a unix
//! socket (the library's `PagerServer` around a `FilePager`), until every node that came has
//! left or the process is killed; what it served goes to stderr.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use memlink_dsm::pager::commands::Command;
use memlink_dsm::pager::{FilePager, PagerCommands, PagerServer, ServerStats};
use memlink_dsm::{PAGE_SIZE, PageNo};

const WHO: &str = "memlink dsm pager";

/// How often at most a progress line is printed while nodes are served.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Arguments of `memlink dsm pager`.
#[derive(Args)]
pub struct PagerArgs {
    /// The file whose pages are served (read and written in place; it never grows).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The unix socket to serve at (a new path; a stale socket of a pager that died is
    /// replaced, anything else there is refused).
    #[arg(long, value_name = "SOCKET")]
    socket: PathBuf,
    /// Serve the file from this byte on (a multiple of the 4 KiB page; sizes as 64K, 1M).
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_bytes)]
    offset: u64,
    /// Serve this many bytes of the file (default: to its end).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    length: Option<u64>,
    /// The region page the served range starts at (the pages before it, and past its end,
    /// read as zeros). 1 is where `memlink dsm run --app wordcount` maps its file.
    #[arg(long, value_name = "PAGE", default_value_t = 1)]
    first_page: PageNo,
    /// Keep serving after every node has left, until killed.
    #[arg(long)]
    keep_serving: bool,
    /// Read the pager's commands to the nodes from stdin, one a line, and answer each with
    /// one line on stdout (each node's pages changed, or its error): `clean FIRST END` and
    /// `flush FIRST END` (region pages FIRST..END written back, or given up), `lock FIRST
    /// END none|read|write` (data_lock), `cache on|off`, and `wait N` (until N nodes take
    /// commands, at most a minute).
    #[arg(long)]
    commands: bool,
}

/// A byte count as `bench ipc --sizes` takes them (64K, 1M), or 0.
fn parse_bytes(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    memlink::ipc_bench::size::parse_size(s)
        .map(|b| b as u64)
        .map_err(|e| e.to_string())
}

/// Why the socket path cannot be served at.
fn claim_socket(path: &Path) -> Result<UnixListener, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot look at --socket {}: {e}", path.display())),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!(
                "--socket {} exists and is not a socket: choose another path",
                path.display()
            ));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "another process serves at --socket {} already: stop it or choose another \
                     path",
                    path.display()
                ));
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                eprintln!(
                    "{WHO}: replacing the stale socket {} (nothing listens there)",
                    path.display()
                );
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
            }
            Err(e) => {
                return Err(format!("cannot check --socket {}: {e}", path.display()));
            }
        },
    }
    UnixListener::bind(path).map_err(|e| format!("cannot listen at {}: {e}", path.display()))
}

/// Carries out the commands read from stdin (see `--commands`), one result line each.
fn command_lines(commands: &PagerCommands) {
    use std::io::Write;
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let answer = if let Some(n) = line.strip_prefix("wait ") {
            match n.trim().parse::<usize>() {
                Ok(n) => {
                    let linked = commands.wait_for_nodes(n, Duration::from_secs(60));
                    format!("{line}: {} nodes take commands", linked.len())
                }
                Err(_) => format!("error: {line:?}: expected wait N, a number of nodes"),
            }
        } else {
            match line.parse::<Command>() {
                Ok(cmd) => {
                    let results = commands.send(&cmd);
                    let mut total = 0;
                    let mut each = Vec::with_capacity(results.len());
                    for (node, r) in results {
                        match r {
                            Ok(n) => {
                                total += n;
                                each.push(format!("node {node}: {n}"));
                            }
                            Err(e) => each.push(format!("node {node}: error: {e}")),
                        }
                    }
                    format!("{line}: {}; pages {total}", each.join("; "))
                }
                Err(e) => format!("error: {e}"),
            }
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Runs `memlink dsm pager ...`.
pub fn run(a: PagerArgs) -> ExitCode {
    let pager = match FilePager::open(&a.file, a.offset, a.length, a.first_page) {
        Ok(pager) => pager,
        Err(e) => {
            eprintln!("{WHO}: {e}");
            return ExitCode::from(2);
        }
    };
    let pages = pager.pages();
    let Some(last) = a.first_page.checked_add(pages) else {
        eprintln!(
            "{WHO}: {} pages from region page {} pass the last page number",
            pages, a.first_page
        );
        return ExitCode::from(2);
    };
    let listener = match claim_socket(&a.socket) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{WHO}: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = pager.len();
    let server = Arc::new(PagerServer::new(pager));
    let serving = Arc::clone(&server);
    let accepting = std::thread::spawn(move || serving.serve(listener));
    if a.commands {
        let commands = server.commands();
        std::thread::spawn(move || command_lines(&commands));
    }
    eprintln!(
        "{WHO}: serving {} ({bytes} bytes from byte {}: region pages {}..{last}, {} KiB \
         pages) at {}",
        a.file.display(),
        a.offset,
        a.first_page,
        PAGE_SIZE / 1024,
        a.socket.display()
    );
    // The latest stats, and the last ones printed (at most one line a PROGRESS_EVERY).
    let mut seen = ServerStats::default();
    let mut printed = seen;
    let mut next_line = Instant::now();
    let status = loop {
        seen = server.wait_for_change(seen, PROGRESS_EVERY);
        if accepting.is_finished() {
            let why = match accepting.join() {
                Ok(Err(e)) => e.to_string(),
                _ => "the accepting thread ended".into(),
            };
            eprintln!(
                "{WHO}: stopped accepting nodes at {}: {why}",
                a.socket.display()
            );
            break ExitCode::FAILURE;
        }
        if seen.nodes_seen > 0 && seen.connections_open == 0 && !a.keep_serving {
            eprintln!("{WHO}: every node has left; served: {seen}");
            break ExitCode::SUCCESS;
        }
        if seen != printed && Instant::now() >= next_line {
            eprintln!("{WHO}: {seen}");
            printed = seen;
            next_line = Instant::now() + PROGRESS_EVERY;
        }
    };
    let _ = std::fs::remove_file(&a.socket);
    status
}
