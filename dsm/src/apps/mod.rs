//! The demonstration applications of `memlink dsm run --app APP`. Each node does its share of
//! the work in the shared region, then checks the result against a sequential computation of
//! its own: `verified` is true only if every element matches.
//!
//! - [`counter`]: lock-protected increments of one shared counter;
//! - [`jacobi`]: a 2-D Jacobi stencil, bands of rows per node, barriers between sweeps;
//! - [`matmul`]: C = A x B with A and B written once by node 0 and read-shared by all;
//! - [`sort`]: every node sorts a chunk, node 0 merges;
//! - [`wordcount`]: the words of a file mapped into the region by the file pager;
//! - [`capabilities`]: a table minted, granted, restricted, refused beyond the rights and
//!   revoked across 4 nodes, each step checked;
//! - [`nqueens`]: the solutions of n queens, one task per placement of the first rows, all
//!   spawned on node 0 (tasks: see [`tasks`]);
//! - [`quicksort`]: an array in the region sorted by tasks that spawn tasks.
//!
//! [`run_node`] joins a cluster, runs one app and leaves: the body of a node process.

pub mod capabilities;
pub mod counter;
pub mod jacobi;
pub mod matmul;
pub mod nqueens;
pub mod quicksort;
pub mod sort;
pub mod tasks;
pub mod wordcount;

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use crate::cluster::Dsm;
use crate::types::{Backend, DsmError, NodeConfig, NodeId, NodeStats, PAGE_SIZE};

/// The number of pages every app's cluster is started with (each app fits in it).
pub const APP_PAGES: u32 = 64;

/// One of the demonstration apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum App {
    /// Lock-protected increments of a shared counter.
    Counter,
    /// A Jacobi stencil with barriers.
    Jacobi,
    /// Matrix multiplication with read-shared inputs.
    Matmul,
    /// Chunked sort and merge.
    Sort,
    /// The words of a file (`--file`), through the file pager, under a memory budget.
    Wordcount,
    /// Capabilities across nodes: grant, restrict, refusal, revocation (4 nodes).
    Capabilities,
    /// N-queens solutions counted by tasks spawned on node 0.
    Nqueens,
    /// An array sorted by tasks that spawn tasks.
    Quicksort,
}

impl App {
    /// Every app, in the order of `--help`.
    pub const ALL: [App; 8] = [
        App::Counter,
        App::Jacobi,
        App::Matmul,
        App::Sort,
        App::Wordcount,
        App::Capabilities,
        App::Nqueens,
        App::Quicksort,
    ];

    /// The app's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            App::Counter => "counter",
            App::Jacobi => "jacobi",
            App::Matmul => "matmul",
            App::Sort => "sort",
            App::Wordcount => "wordcount",
            App::Capabilities => "capabilities",
            App::Nqueens => "nqueens",
            App::Quicksort => "quicksort",
        }
    }

    /// The shared pages a cluster running this app with `params` needs.
    pub fn pages(self, params: &AppParams) -> u32 {
        match (self, params.size, &params.file) {
            (App::Jacobi, Some(n), _) => jacobi::pages_for(n).max(APP_PAGES),
            (App::Wordcount, _, Some(file)) => std::fs::metadata(file)
                .map_or(APP_PAGES, |m| wordcount::pages_for(m.len()).max(APP_PAGES)),
            (App::Nqueens, n, _) => nqueens::pages_for(n.unwrap_or(nqueens::N)).max(APP_PAGES),
            (App::Quicksort, n, _) => {
                quicksort::pages_for(n.unwrap_or(quicksort::LEN)).max(APP_PAGES)
            }
            _ => APP_PAGES,
        }
    }

    /// Whether this app uses `param` (jacobi, nqueens and quicksort have a size; only jacobi
    /// has sweeps and a prefetch to turn off; only wordcount reads a file; only the task apps
    /// have workers and hints).
    pub fn uses(self, param: AppParam) -> bool {
        match param {
            AppParam::Size => matches!(self, App::Jacobi | App::Nqueens | App::Quicksort),
            AppParam::Iters | AppParam::NoPrefetch => self == App::Jacobi,
            AppParam::File | AppParam::PagerSocket => self == App::Wordcount,
            AppParam::Workers | AppParam::NoHints => self.runs_tasks(),
        }
    }

    /// Whether the app runs as tasks on every node's task pool.
    pub fn runs_tasks(self) -> bool {
        matches!(self, App::Nqueens | App::Quicksort)
    }

    /// The bytes of memory one node of this app may need with `params` and `backend`, from
    /// the app's own working set (the shared pages it holds, what the backend keeps aside and
    /// what its check allocates) and a fixed allowance for the process (code, threads,
    /// buffers).
    pub fn memory_per_node(self, params: &AppParams, backend: Backend) -> u64 {
        const PROCESS: u64 = 32 << 20;
        let app = match self {
            App::Jacobi => jacobi::working_set_bytes(params.size.unwrap_or(jacobi::N), backend),
            // The whole region, a copy kept aside, and a private copy for the check.
            App::Counter | App::Matmul | App::Sort | App::Capabilities => {
                3 * APP_PAGES as u64 * PAGE_SIZE as u64
            }
            // The region, a copy kept aside, and the sequential check's copy.
            App::Nqueens | App::Quicksort => 3 * u64::from(self.pages(params)) * PAGE_SIZE as u64,
            // The budget's frames (and with uffd as much kept aside) and a read buffer; the
            // file itself is in the page cache, shared by the nodes.
            App::Wordcount => 2 * params.memory_budget.unwrap_or(0) + (1 << 20),
        };
        PROCESS.saturating_add(app)
    }

    /// Runs this node's share of the app with `params` (only jacobi takes them: `params.size`
    /// is the grid's side, `params.iters` the sweeps); returns whether the result checked, and for
    /// jacobi how long its parallel part and its sweeps took (without the check).
    pub fn run_sized(
        self,
        dsm: &Dsm,
        params: &AppParams,
    ) -> Result<(bool, Option<jacobi::Timing>), DsmError> {
        match self {
            App::Jacobi => {
                let n = params.size.unwrap_or(jacobi::N);
                let sweeps = params.iters.unwrap_or(jacobi::SWEEPS);
                jacobi::run_sized(dsm, n, sweeps, params.prefetch)
                    .map(|(ok, took)| (ok, Some(took)))
            }
            App::Wordcount => {
                let Some(file) = &params.file else {
                    return self.run(dsm).map(|ok| (ok, None));
                };
                let len = std::fs::metadata(file)?.len() as usize;
                wordcount::run(dsm, file, len).map(|ok| (ok, None))
            }
            _ => self.run(dsm).map(|ok| (ok, None)),
        }
    }

    /// Runs this node's part of a task app (nqueens, quicksort) with `params`; returns
    /// whether it checked, the parallel part's time and what the node's scheduler did.
    pub fn run_tasks(
        self,
        dsm: &Dsm,
        params: &AppParams,
    ) -> Result<(bool, std::time::Duration, tasks::TaskCounts), DsmError> {
        let settings = params.pool_settings();
        match self {
            App::Nqueens => {
                let o = nqueens::run(dsm, params.size.unwrap_or(nqueens::N), settings)?;
                Ok((o.verified, o.parallel, o.counts))
            }
            App::Quicksort => {
                let o = quicksort::run(dsm, params.size.unwrap_or(quicksort::LEN), settings)?;
                Ok((o.verified, o.parallel, o.counts))
            }
            other => Err(DsmError::Config(format!("{other} does not run as tasks"))),
        }
    }

    /// Runs this node's share of the app and checks the result; `Ok(false)` if it is wrong.
    pub fn run(self, dsm: &Dsm) -> Result<bool, DsmError> {
        match self {
            App::Counter => counter::run(dsm),
            App::Jacobi => jacobi::run(dsm),
            App::Matmul => matmul::run(dsm),
            App::Sort => sort::run(dsm),
            App::Wordcount => Err(DsmError::Config(
                "wordcount needs the file it counts: run it with run_sized and AppParams::file"
                    .into(),
            )),
            App::Capabilities => capabilities::run(dsm),
            App::Nqueens | App::Quicksort => self
                .run_tasks(dsm, &AppParams::default())
                .map(|(ok, _, _)| ok),
        }
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an app runs: its problem size (`None` fields take the app's defaults), whether it
/// prefetches the pages it knows it will need, and the file it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppParams {
    /// The problem's side (jacobi: the grid is size x size).
    pub size: Option<usize>,
    /// The iterations (jacobi: sweeps).
    pub iters: Option<usize>,
    /// Fetch pages ahead with [`Dsm::prefetch`] (jacobi: each sweep's edge rows in one
    /// round); false leaves every page to its fault.
    pub prefetch: bool,
    /// The file the app reads (wordcount: mapped into the region by the file pager).
    pub file: Option<std::path::PathBuf>,
    /// The unix socket of a pager process that serves the app's file (`memlink dsm pager`),
    /// asked instead of a file pager in the node's own process.
    pub pager_socket: Option<std::path::PathBuf>,
    /// The node's memory budget in bytes, for the app's memory estimate (wordcount needs
    /// one: a pager supplies the pages of a node with a budget).
    pub memory_budget: Option<u64>,
    /// Task worker threads per node (the task apps; default 1).
    pub workers: Option<u16>,
    /// Whether the task schedulers use hints (the task apps; off: an idle node asks the
    /// others in turn).
    pub hints: bool,
}

/// A setting of [`AppParams`] that only some apps use, by its `memlink dsm` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppParam {
    /// `--size`: [`AppParams::size`].
    Size,
    /// `--iters`: [`AppParams::iters`].
    Iters,
    /// `--no-prefetch`: [`AppParams::prefetch`] false.
    NoPrefetch,
    /// `--file`: [`AppParams::file`].
    File,
    /// `--pager-socket`: [`AppParams::pager_socket`].
    PagerSocket,
    /// `--workers`: [`AppParams::workers`].
    Workers,
    /// `--no-hints`: [`AppParams::hints`] false.
    NoHints,
}

impl AppParam {
    /// Every setting.
    pub const ALL: [AppParam; 7] = [
        AppParam::Size,
        AppParam::Iters,
        AppParam::NoPrefetch,
        AppParam::File,
        AppParam::PagerSocket,
        AppParam::Workers,
        AppParam::NoHints,
    ];

    /// Its command-line flag.
    pub fn flag(self) -> &'static str {
        match self {
            AppParam::Size => "--size",
            AppParam::Iters => "--iters",
            AppParam::NoPrefetch => "--no-prefetch",
            AppParam::File => "--file",
            AppParam::PagerSocket => "--pager-socket",
            AppParam::Workers => "--workers",
            AppParam::NoHints => "--no-hints",
        }
    }
}

/// A setting given to an app that does not use it (it would be silently ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnusedParam {
    /// The app.
    pub app: App,
    /// The setting it does not use.
    pub param: AppParam,
}

impl fmt::Display for UnusedParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = App::ALL
            .into_iter()
            .filter(|a| a.uses(self.param))
            .map(App::name)
            .collect();
        write!(
            f,
            "{} does not use {}: it applies to {} only",
            self.app,
            self.param.flag(),
            users.join(", ")
        )
    }
}

impl std::error::Error for UnusedParam {}

impl AppParams {
    /// The settings given, i.e. not left at their defaults.
    pub fn given(&self) -> Vec<AppParam> {
        let mut given = Vec::new();
        if self.size.is_some() {
            given.push(AppParam::Size);
        }
        if self.iters.is_some() {
            given.push(AppParam::Iters);
        }
        if !self.prefetch {
            given.push(AppParam::NoPrefetch);
        }
        if self.file.is_some() {
            given.push(AppParam::File);
        }
        if self.pager_socket.is_some() {
            given.push(AppParam::PagerSocket);
        }
        if self.workers.is_some() {
            given.push(AppParam::Workers);
        }
        if !self.hints {
            given.push(AppParam::NoHints);
        }
        given
    }

    /// Refuses a setting that `app` does not use.
    pub fn check_for(&self, app: App) -> Result<(), UnusedParam> {
        match self.given().into_iter().find(|p| !app.uses(*p)) {
            Some(param) => Err(UnusedParam { app, param }),
            None => Ok(()),
        }
    }

    /// The task pools' settings (the task apps).
    pub fn pool_settings(&self) -> tasks::PoolSettings {
        tasks::PoolSettings {
            workers: self.workers.unwrap_or(1).max(1),
            hints: self.hints,
        }
    }

    /// What `app` needs and is not given (wordcount: a file and a memory budget), or a size
    /// it cannot take, said as the user can fix it.
    pub fn missing_for(&self, app: App) -> Option<String> {
        let size_error = match (app, self.size) {
            (App::Nqueens, Some(n)) => nqueens::check_size(n).err(),
            (App::Quicksort, Some(n)) => quicksort::check_size(n).err(),
            (App::Jacobi, Some(n)) if !(3..=jacobi::MAX_N).contains(&n) => Some(format!(
                "jacobi --size is the grid side, 3 to {}; {n} is not",
                jacobi::MAX_N
            )),
            _ => None,
        };
        if size_error.is_some() {
            return size_error;
        }
        match (app, &self.file, self.memory_budget) {
            (App::Wordcount, None, _) => {
                Some("wordcount needs --file FILE, the file to count".into())
            }
            (App::Wordcount, Some(_), None) => Some(
                "wordcount maps the file into the region through the file pager, which supplies \
                 the pages of nodes with a memory budget: add --memory-budget (e.g. 16M)"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl Default for AppParams {
    fn default() -> Self {
        AppParams {
            size: None,
            iters: None,
            prefetch: true,
            file: None,
            pager_socket: None,
            memory_budget: None,
            workers: None,
            hints: true,
        }
    }
}

/// An app name that is not one of [`App::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownApp(pub String);

impl fmt::Display for UnknownApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = App::ALL.into_iter().map(App::name).collect();
        write!(
            f,
            "unknown app {:?}: expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownApp {}

impl FromStr for App {
    type Err = UnknownApp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        App::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownApp(s.to_string()))
    }
}

/// What one node did: the line a node process prints for its launcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The node.
    pub id: NodeId,
    /// The app it ran.
    pub app: App,
    /// Whether its check against the sequential computation passed.
    pub verified: bool,
    /// Microseconds from joined to done (the app itself, not the start-up; for jacobi the
    /// parallel part only, not the sequential check).
    pub wall_us: u64,
    /// Its faults, messages and bytes.
    pub stats: NodeStats,
    /// Microseconds of the app's steady phase, where it has one (jacobi: the sweeps).
    pub steady_us: Option<u64>,
    /// What the node's task scheduler did (the task apps).
    pub tasks: Option<tasks::TaskCounts>,
}

const REPORT_PREFIX: &str = "memlink-dsm-report";

impl NodeReport {
    /// The report as one line of `key=value` fields.
    pub fn to_line(&self) -> String {
        let evictions: String = self
            .stats
            .evictions
            .named()
            .iter()
            .map(|(name, value)| format!(" {name}={value}"))
            .collect();
        format!(
            "{REPORT_PREFIX} id={} app={} verified={} wall_us={} read_faults={} write_faults={} \
             messages={} bytes={}{evictions}{}",
            self.id,
            self.app,
            self.verified,
            self.wall_us,
            self.stats.read_faults,
            self.stats.write_faults,
            self.stats.messages,
            self.stats.bytes,
            self.steady_us
                .map(|us| format!(" steady_us={us}"))
                .unwrap_or_default()
        ) + &self
            .tasks
            .map(|t| {
                t.named()
                    .iter()
                    .map(|(name, value)| format!(" {name}={value}"))
                    .collect::<String>()
            })
            .unwrap_or_default()
    }

    /// Parses a line written by [`NodeReport::to_line`]; `None` for any other line.
    pub fn parse_line(line: &str) -> Option<NodeReport> {
        let rest = line.trim().strip_prefix(REPORT_PREFIX)?;
        let mut report = NodeReport {
            id: 0,
            app: App::Counter,
            verified: false,
            wall_us: 0,
            stats: NodeStats::default(),
            steady_us: None,
            tasks: None,
        };
        let mut seen = 0;
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "id" => report.id = value.parse().ok()?,
                "app" => report.app = value.parse().ok()?,
                "verified" => report.verified = value.parse().ok()?,
                "wall_us" => report.wall_us = value.parse().ok()?,
                "read_faults" => report.stats.read_faults = value.parse().ok()?,
                "write_faults" => report.stats.write_faults = value.parse().ok()?,
                "messages" => report.stats.messages = value.parse().ok()?,
                "bytes" => report.stats.bytes = value.parse().ok()?,
                "steady_us" => {
                    report.steady_us = Some(value.parse().ok()?);
                    continue;
                }
                counter => {
                    let value = value.parse().ok()?;
                    if !report.stats.evictions.set(counter, value) {
                        // The task apps' counters: optional, not among the fields counted.
                        let tasks = report.tasks.get_or_insert_with(Default::default);
                        if !tasks.set(counter, value) {
                            return None;
                        }
                        continue;
                    }
                }
            }
            seen += 1;
        }
        (seen == 8 + report.stats.evictions.named().len()).then_some(report)
    }

    /// Finds the report line in a node process's output.
    pub fn find_in(output: &str) -> Option<NodeReport> {
        output.lines().find_map(NodeReport::parse_line)
    }
}

/// Exit status of a node process whose app ran but was not verified.
pub const EXIT_NOT_VERIFIED: i32 = 1;
/// Exit status of a node process that lost a peer (also [`crate::fault::UNSERVABLE_FAULT_EXIT`]).
pub const EXIT_NODE_LOST: i32 = crate::fault::UNSERVABLE_FAULT_EXIT;
/// Exit status of a node process that could not join or hit another DSM error.
pub const EXIT_DSM_ERROR: i32 = 4;

/// Joins the cluster, runs `app`, leaves in order; the body of a node process.
pub fn run_node(config: NodeConfig, backend: Backend, app: App) -> Result<NodeReport, DsmError> {
    run_node_sized(config, backend, app, &AppParams::default())
}

/// As [`run_node`], with `params` (`config.pages` should be at least [`App::pages`]).
pub fn run_node_sized(
    config: NodeConfig,
    backend: Backend,
    app: App,
    params: &AppParams,
) -> Result<NodeReport, DsmError> {
    params
        .check_for(app)
        .map_err(|e| DsmError::Config(e.to_string()))?;
    let params = AppParams {
        memory_budget: config.memory_budget,
        ..params.clone()
    };
    if let Some(missing) = params.missing_for(app) {
        return Err(DsmError::Config(missing));
    }
    let id = config.id;
    let dsm = match pager_store(app, &params, config.connect_timeout)? {
        Some(store) => Dsm::join_with_store(config, backend, store)?,
        None => Dsm::join(config, backend)?,
    };
    // A pager process commands the node too (clean, flush, lock, cache) while the app runs.
    let commands = match &params.pager_socket {
        Some(socket) => Some(
            dsm.runtime()
                .take_pager_commands(socket, crate::pager::DEFAULT_TIMEOUT)
                .map_err(|e| DsmError::Config(format!("the pager's command link: {e}")))?,
        ),
        None => None,
    };
    let params = &params;
    let start = Instant::now();
    let (verified, wall_us, steady_us, tasks) = if app.runs_tasks() {
        let (verified, parallel, counts) = app.run_tasks(&dsm, params)?;
        (verified, parallel.as_micros() as u64, None, Some(counts))
    } else {
        let (verified, timing) = app.run_sized(&dsm, params)?;
        let wall_us = timing
            .map_or_else(|| start.elapsed(), |t| t.total)
            .as_micros() as u64;
        (
            verified,
            wall_us,
            timing.map(|t| t.sweeps.as_micros() as u64),
            None,
        )
    };
    drop(commands);
    let stats = dsm.leave()?;
    Ok(NodeReport {
        id,
        app,
        verified,
        wall_us,
        stats,
        steady_us,
        tasks,
    })
}

/// The backing store of a node that runs `app` with `params`, if it has one: wordcount's
/// file through a file pager in this process, or through the pager process serving at
/// `params.pager_socket` (waited for at most `within` if it does not listen yet).
fn pager_store(
    app: App,
    params: &AppParams,
    within: std::time::Duration,
) -> Result<Option<Box<dyn crate::replacement::BackingStore>>, DsmError> {
    use crate::pager::{FilePager, PagerStore, RemotePager};
    let (App::Wordcount, Some(file)) = (app, &params.file) else {
        return Ok(None);
    };
    let Some(socket) = &params.pager_socket else {
        let pager = FilePager::open(file, 0, None, wordcount::FIRST_PAGE)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        return Ok(Some(Box::new(PagerStore::new(pager))));
    };
    let name = socket.display().to_string();
    let pager = RemotePager::connect_within(socket, &name, crate::pager::DEFAULT_TIMEOUT, within)
        .map_err(|e| {
        DsmError::Config(format!(
            "{e}; start the pager first: memlink dsm pager --file {} --socket {name}",
            file.display()
        ))
    })?;
    Ok(Some(Box::new(PagerStore::new(pager))))
}

/// Runs [`run_node`], prints the report line (or the error) and returns the process exit
/// status: 0 verified, [`EXIT_NOT_VERIFIED`], [`EXIT_NODE_LOST`] or [`EXIT_DSM_ERROR`].
pub fn node_main(config: NodeConfig, backend: Backend, app: App) -> i32 {
    let id = config.id;
    match run_node(config, backend, app) {
        Ok(report) => {
            println!("{}", report.to_line());
            if report.verified {
                0
            } else {
                EXIT_NOT_VERIFIED
            }
        }
        Err(e) => {
            eprintln!("memlink-dsm node {id}: {e}");
            match e {
                DsmError::NodeLost { .. } => EXIT_NODE_LOST,
                _ => EXIT_DSM_ERROR,
            }
        }
    }
}

/// The half-open range of `0..total` that node `id` of `nodes` works on.
pub fn share(total: usize, id: NodeId, nodes: usize) -> std::ops::Range<usize> {
    let id = id as usize;
    (total * id / nodes)..(total * (id + 1) / nodes)
}

/// A small deterministic pseudo-random sequence (xorshift), the same on every node.
pub(crate) fn pseudo_random(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_round_trip() {
        let r = NodeReport {
            id: 3,
            app: App::Jacobi,
            verified: true,
            wall_us: 1234,
            stats: NodeStats {
                read_faults: 1,
                write_faults: 2,
                messages: 3,
                bytes: 4,
                evictions: crate::types::EvictionStats {
                    dropped_copies: 5,
                    passed_ownership: 6,
                    handed_off: 7,
                    written_back: 8,
                    dropped_clean: 12,
                    hand_offs_accepted: 9,
                    hand_offs_refused: 10,
                    paged_in: 11,
                    write_backs_failed: 13,
                },
            },
            steady_us: None,
            tasks: None,
        };
        let text = format!("noise\n{}\nmore\n", r.to_line());
        assert_eq!(NodeReport::find_in(&text), Some(r.clone()));
        let jacobi = NodeReport {
            steady_us: Some(999),
            ..r
        };
        assert_eq!(
            NodeReport::parse_line(&jacobi.to_line()),
            Some(jacobi.clone())
        );
        let tasks = NodeReport {
            app: App::Nqueens,
            steady_us: None,
            tasks: Some(tasks::TaskCounts {
                tasks_run: 1,
                migrated_in: 2,
                migrated_out: 3,
                requests: 4,
                refused: 5,
                hints: 6,
            }),
            ..jacobi
        };
        assert_eq!(NodeReport::parse_line(&tasks.to_line()), Some(tasks));
        assert_eq!(NodeReport::parse_line("memlink-dsm-report id=x"), None);
    }

    #[test]
    fn settings_an_app_ignores_are_refused() {
        let sized = AppParams {
            size: Some(100),
            ..AppParams::default()
        };
        assert_eq!(sized.check_for(App::Jacobi), Ok(()));
        let e = sized.check_for(App::Counter).unwrap_err();
        assert_eq!(e.param, AppParam::Size);
        assert_eq!(
            e.to_string(),
            "counter does not use --size: it applies to jacobi, nqueens, quicksort only"
        );
        let no_prefetch = AppParams {
            prefetch: false,
            ..AppParams::default()
        };
        let e = no_prefetch.check_for(App::Sort).unwrap_err();
        assert_eq!(e.param, AppParam::NoPrefetch);
        assert_eq!(AppParams::default().check_for(App::Matmul), Ok(()));
    }

    #[test]
    fn jacobi_memory_grows_with_the_grid() {
        let at = |n, backend| {
            let params = AppParams {
                size: Some(n),
                ..AppParams::default()
            };
            App::Jacobi.memory_per_node(&params, backend)
        };
        // Four grids of n x n doubles (8 GiB at 16384), six with uffd.
        assert!(at(16384, Backend::Sigsegv) >= 8 << 30);
        assert!(at(16384, Backend::Uffd) >= 12 << 30);
        assert!(at(512, Backend::Uffd) < 64 << 20);
    }

    #[test]
    fn shares_cover_everything_once() {
        for nodes in 1..6 {
            let mut next = 0;
            for id in 0..nodes {
                let r = share(100, id as NodeId, nodes);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, 100);
        }
        assert_eq!("sort".parse::<App>(), Ok(App::Sort));
        assert!(
            "qsort"
                .parse::<App>()
                .unwrap_err()
                .to_string()
                .contains("jacobi")
        );
    }
}
