//! `memlink dsm`: run the distributed shared memory, as a local cluster of node processes
//! (`run`) or as one node of a cluster spread over hosts (`node`); `bench` and `scale` measure
//! it (their own modules).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Args, Subcommand};
use memlink_dsm::admission::{Admission, ClusterKey, KEY_FILE_ENV};
use memlink_dsm::apps::{self, App, NodeReport};
use memlink_dsm::init::{LaunchError, launch};
use memlink_dsm::launcher_env::LaunchEnv;
use memlink_dsm::rendezvous;
use memlink_dsm::{Backend, ManagerKind, NodeConfig, NodeId};

/// Arguments of `memlink dsm`.
#[derive(Args)]
pub struct DsmArgs {
    #[command(subcommand)]
    command: DsmCommand,
}

#[derive(Subcommand)]
enum DsmCommand {
    /// Start N node processes on this host (loopback), run an app on all of them, check the
    /// result against a sequential run and print what it cost.
    ///
    /// Example: memlink dsm run --nodes 4 --app jacobi --backend uffd --json
    Run(RunArgs),
    /// Run one node of a cluster; start the same command on every host, each with its own
    /// --id and --listen and the same --peers list (index = node id; host:port, names allowed)
    /// and the same --key-file (`memlink dsm keygen`). Under mpirun or srun, --from-env takes
    /// the id and node count from the launcher and finds the peers through a rendezvous at
    /// node 0 (--coordinator host:port, or under Slurm the step's first host).
    ///
    /// Who can join: only nodes that prove the cluster key on every connection (a mutual
    /// HMAC-SHA256 challenge-response, under the id the --peers list gives them). Traffic is
    /// authenticated, not encrypted: across networks you do not trust, run inside a VPN such
    /// as WireGuard. A node whose host vanishes (no FIN, no RST) is reported lost, by id,
    /// within 10 s (TCP keepalive and user timeout; about 5 s in practice).
    ///
    /// Examples (two hosts):
    ///   host A: memlink dsm node --id 0 --listen 0.0.0.0:7700 --peers hosta:7700,hostb:7700 --app matmul --key-file k
    ///   host B: memlink dsm node --id 1 --listen 0.0.0.0:7700 --peers hosta:7700,hostb:7700 --app matmul --key-file k
    /// Under a launcher:
    ///   mpirun -n 4 --host a,b memlink dsm node --from-env --coordinator a:7700 --key-file k --app jacobi
    ///   srun -N 2 -n 4 memlink dsm node --from-env --key-file k --app jacobi
    #[command(verbatim_doc_comment)]
    Node(NodeArgs),
    /// Measure remote read and write misses, invalidations, a prefetch of 8 pages, locks and
    /// barriers next to a raw TCP 4 KiB round trip and a locally served fault (medians in
    /// microseconds).
    ///
    /// Example: memlink dsm bench --nodes 3 --manager dynamic --backend uffd --json
    Bench(crate::dsm_bench::BenchArgs),
    /// Write a new random cluster key to FILE (mode 0600; never overwrites). Copy it to every
    /// host (e.g. `scp -p`) and start every node with --key-file FILE: only holders of the key
    /// can join the cluster.
    ///
    /// Example: memlink dsm keygen ~/.memlink/cluster.key
    Keygen(KeygenArgs),
    /// Time jacobi's sweeps on 1 node and on N nodes (with prefetch, and with faults only),
    /// interleaved for several rounds in one run, and print the speed-ups of the medians.
    ///
    /// Example: memlink dsm scale --nodes 2 --size 4096 --iters 60 --rounds 5
    Scale(crate::dsm_scale::ScaleArgs),
    /// Time nqueens with every task spawned on node 0 on 1 node with one worker and on N
    /// nodes with one worker each, with hints and without, interleaved for several rounds in
    /// one run; print the speed-ups of the medians and the work requests refused.
    ///
    /// Example: memlink dsm scale-tasks --nodes 2 --size 13 --rounds 3
    ScaleTasks(crate::dsm_scale_tasks::ScaleTasksArgs),
    /// Serve a file to the nodes as their external pager (Mach's data manager), in its own
    /// process, over a unix socket: the nodes of `dsm run` or `dsm node` started with
    /// --pager-socket SOCKET get the file's pages from it (data_request), write their dirty
    /// pages back to it (data_write) and ask it for access (data_unlock); it can command
    /// them over the same socket. It serves until every node that came has left (or until
    /// killed, with --keep-serving), printing what it served on stderr.
    ///
    /// The file's first page is region page --first-page (1: where `dsm run --app
    /// wordcount` maps its file). A node that breaks the protocol loses its connection (said
    /// on stderr); the others go on. A stale socket left by a pager that died is replaced.
    ///
    /// Example (two shells, or the first one in the background):
    ///   memlink dsm pager --file words.txt --socket /tmp/words.sock
    ///   memlink dsm run --nodes 3 --app wordcount --file words.txt --memory-budget 16M --pager-socket /tmp/words.sock
    #[command(verbatim_doc_comment)]
    Pager(crate::dsm_pager::PagerArgs),
}

/// What every node of a cluster must agree on.
#[derive(Args, Clone)]
pub(crate) struct ClusterArgs {
    /// The app: counter (lock-protected increments), jacobi (stencil with barriers), matmul
    /// (read-shared inputs), sort (chunk sort and merge), wordcount (the words of --file,
    /// mapped into the region by the file pager; needs --memory-budget), capabilities
    /// (grant, restrict, refuse, revoke; 4 nodes or more), nqueens (solutions counted by
    /// tasks spawned on node 0, spread by the nodes' null tasks) or quicksort (an array in
    /// the region sorted by tasks that spawn tasks).
    #[arg(long, value_parser = parse_app)]
    pub(crate) app: App,
    /// How page faults are caught: sigsegv (mprotect + signal handler, works everywhere) or
    /// uffd (userfaultfd, user-mode faults; see `memlink doctor`).
    #[arg(long, default_value = "sigsegv", value_parser = parse_backend)]
    pub(crate) backend: Backend,
    /// Which page manager locates page owners: central (node 0), fixed (page % nodes) or
    /// dynamic (probable owners).
    #[arg(long, default_value = "central", value_parser = parse_manager)]
    pub(crate) manager: ManagerKind,
    /// Problem size: jacobi's grid side (3 to 16384; a multiple of 512 gives every row its
    /// own pages), nqueens' board side (1 to 16) or quicksort's elements (up to 16777216).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub(crate) size: Option<u32>,
    /// Iterations: jacobi's sweeps.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) iters: Option<u32>,
    /// Leave every page to its fault: jacobi then does not prefetch each sweep's edge rows
    /// (one round for all of them) but faults them in one page at a time.
    #[arg(long)]
    pub(crate) no_prefetch: bool,
    /// At most this much of the shared region on each node, e.g. 16M (binary suffixes K, M,
    /// G; whole pages, at least 16K); past it, pages are evicted in the seed's order: read
    /// copies dropped, ownership of replicated pages passed on, only copies handed off to a
    /// node with room or written back to the node's store. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_budget)]
    pub(crate) memory_budget: Option<u64>,
    /// The Δt hold, in microseconds: a page that arrives at a node stays there at least this
    /// long before another node's request takes it away (0: off). Default: the library's
    /// DEFAULT_HOLD.
    #[arg(long, value_name = "MICROSECONDS",
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub(crate) hold_us: Option<u64>,
    /// wordcount: the file whose words are counted (every node maps it through the file
    /// pager; the same path on every node).
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// wordcount: get the file's pages from the pager process serving at this unix socket
    /// (`memlink dsm pager --file FILE --socket SOCKET`) instead of a file pager in each
    /// node; a node waits for it as long as for its peers, and fails the faults that need it
    /// with a clear error if it dies.
    #[arg(long, value_name = "SOCKET")]
    pub(crate) pager_socket: Option<PathBuf>,
    /// nqueens, quicksort: task worker threads per node (default 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) workers: Option<u16>,
    /// nqueens, quicksort: no hints; an idle node asks the other nodes for work in turn
    /// instead of the one whose hint says it has a surplus.
    #[arg(long)]
    pub(crate) no_hints: bool,
}

impl ClusterArgs {
    /// Sets this node's memory budget and Δt hold in `config` as the flags say.
    pub(crate) fn apply_memory(&self, config: &mut NodeConfig) {
        config.memory_budget = self.memory_budget;
        config.hold = self
            .hold_us
            .map_or(memlink_dsm::config::DEFAULT_HOLD, Duration::from_micros);
    }

    pub(crate) fn app_params(&self) -> apps::AppParams {
        apps::AppParams {
            size: self.size.map(|v| v as usize),
            iters: self.iters.map(|v| v as usize),
            prefetch: !self.no_prefetch,
            file: self.file.clone(),
            pager_socket: self.pager_socket.clone(),
            memory_budget: self.memory_budget,
            workers: self.workers,
            hints: !self.no_hints,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// The number of node processes (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Print one JSON object (app, nodes, manager, backend, verified, wall_ms, read_faults,
    /// write_faults, messages, bytes) instead of the table.
    #[arg(long)]
    json: bool,
    /// Give up (and kill every node) after this many seconds (default: 120 plus an estimate
    /// of the app's work, said when that is long).
    #[arg(long)]
    timeout: Option<u64>,
}

#[derive(Args)]
struct NodeArgs {
    /// This node's id: its index in --peers.
    #[arg(
        long,
        required_unless_present = "from_env",
        conflicts_with = "from_env"
    )]
    id: Option<NodeId>,
    /// The address to listen on for the other nodes, host:port, e.g. 0.0.0.0:7700 (with
    /// --from-env: default 0.0.0.0, on the coordinator's port for node 0, any port for the rest).
    #[arg(long, required_unless_present = "from_env", value_parser = parse_addr)]
    listen: Option<SocketAddr>,
    /// Every node's address (host:port), this one included, comma-separated, in node-id order.
    #[arg(long, value_delimiter = ',', value_parser = parse_addr,
          required_unless_present = "from_env", conflicts_with = "from_env")]
    peers: Vec<SocketAddr>,
    /// Take the node id and count from the launcher (mpirun: OMPI_COMM_WORLD_RANK/SIZE; MPICH
    /// and PMI: PMI_RANK/SIZE; srun: SLURM_PROCID, SLURM_NTASKS) and meet the peers at node 0.
    #[arg(long)]
    from_env: bool,
    /// With --from-env: node 0's rendezvous address, host:port (default under srun: the
    /// step's first host, on a port drawn from the job id).
    #[arg(long)]
    coordinator: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How long to keep trying to reach the peers at start, in seconds (1 to 86400: a day).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    connect_timeout: u64,
    /// The cluster key file (made by `memlink dsm keygen`, mode 0600, the same on every node);
    /// default: the file named by MEMLINK_DSM_KEY_FILE. Every connection between nodes
    /// proves this key before anything else is read (authenticated, not encrypted: use a
    /// VPN such as WireGuard across untrusted networks).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Run without a cluster key on a non-loopback address: anyone who can reach the port
    /// joins the cluster. Without a key a node refuses to listen or dial off loopback.
    #[arg(long, conflicts_with = "key_file")]
    insecure: bool,
    /// Print the machine-readable report line (used by `memlink dsm run`).
    #[arg(long, hide = true)]
    report: bool,
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the key (a new file).
    file: PathBuf,
}

fn parse_app(s: &str) -> Result<App, String> {
    s.parse::<App>().map_err(|e| e.to_string())
}

/// A memory budget: a size as `bench ipc --sizes` takes them, of at least
/// [`memlink_dsm::replacement::MIN_FRAMES`] pages.
fn parse_budget(s: &str) -> Result<u64, String> {
    let bytes = memlink::ipc_bench::size::parse_size(s).map_err(|e| e.to_string())? as u64;
    memlink_dsm::replacement::frames_for(bytes)?;
    Ok(bytes)
}

pub(crate) fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

pub(crate) fn parse_manager(s: &str) -> Result<ManagerKind, String> {
    s.parse::<ManagerKind>().map_err(|e| e.to_string())
}

/// Runs `memlink dsm ...`.
pub fn run(args: DsmArgs) -> ExitCode {
    match args.command {
        DsmCommand::Run(a) => run_local(a),
        DsmCommand::Node(a) => run_node(a),
        DsmCommand::Bench(a) => crate::dsm_bench::run(a),
        DsmCommand::Scale(a) => crate::dsm_scale::run(a),
        DsmCommand::ScaleTasks(a) => crate::dsm_scale_tasks::run(a),
        DsmCommand::Pager(a) => crate::dsm_pager::run(a),
        DsmCommand::Keygen(a) => keygen(a),
    }
}

fn keygen(a: KeygenArgs) -> ExitCode {
    match ClusterKey::generate().and_then(|key| key.write_new(&a.file)) {
        Ok(()) => {
            println!(
                "wrote a new cluster key to {} (mode 0600); copy it to every node and start \
                 each with --key-file {}",
                a.file.display(),
                a.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memlink dsm keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Who may join, from --key-file, MEMLINK_DSM_KEY_FILE or --insecure.
fn admission(a: &NodeArgs) -> Result<Admission, String> {
    if let Some(path) = &a.key_file {
        return ClusterKey::from_file(path)
            .map(Admission::Key)
            .map_err(|e| e.to_string());
    }
    if a.insecure {
        return Ok(Admission::Insecure);
    }
    Admission::from_env().map_err(|e| format!("{e} (named by {KEY_FILE_ENV})"))
}

/// A `host:port` argument, resolved now (names allowed).
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    memlink_dsm::peer_addr::resolve(s).map_err(|e| e.to_string())
}

/// The node's configuration from --id/--listen/--peers, or from the launcher's environment
/// and the rendezvous at node 0 (--from-env).
fn node_config(a: &NodeArgs) -> Result<NodeConfig, String> {
    let pages = a.cluster.app.pages(&a.cluster.app_params());
    let connect_timeout = Duration::from_secs(a.connect_timeout);
    let admission = admission(a)?;
    if a.from_env {
        let env = LaunchEnv::from_process().map_err(|e| e.to_string())?;
        let bootstrap = rendezvous::Bootstrap {
            coordinator: a.coordinator.clone(),
            listen: a.listen,
            pages,
            manager: a.cluster.manager,
            connect_timeout,
            admission,
        };
        let mut config = rendezvous::node_config(&env, &bootstrap)
            .map_err(|e| format!("node {} of {} ({}): {e}", env.rank, env.size, env.launcher))?;
        a.cluster.apply_memory(&mut config);
        return Ok(config);
    }
    if a.coordinator.is_some() {
        return Err("--coordinator is for --from-env (a launcher's nodes)".into());
    }
    let (Some(id), Some(listen)) = (a.id, a.listen) else {
        return Err("--id and --listen are needed (or --from-env)".into());
    };
    memlink_dsm::peer_addr::check_distinct(&a.peers).map_err(|e| format!("--peers: {e}"))?;
    if id as usize >= a.peers.len() {
        return Err(format!(
            "--id {id} is not an index of --peers (which lists {} nodes, ids 0..{})",
            a.peers.len(),
            a.peers.len()
        ));
    }
    let mut config = NodeConfig {
        id,
        listen,
        peers: a.peers.clone(),
        pages,
        manager: a.cluster.manager,
        connect_timeout,
        admission,
        memory_budget: None,
        hold: memlink_dsm::config::DEFAULT_HOLD,
    };
    a.cluster.apply_memory(&mut config);
    Ok(config)
}

fn run_node(a: NodeArgs) -> ExitCode {
    // The same code at the same address on every node, for tasks that migrate: re-executes
    // this process once with address-space randomisation off (see process::identity).
    use memlink_dsm::process::identity::{
        KEEP_RANDOMISATION_ENV, Randomisation, run_without_randomisation,
    };
    match run_without_randomisation() {
        Randomisation::Off => {}
        Randomisation::KeptOn => eprintln!(
            "memlink dsm node: address-space randomisation kept on ({KEEP_RANDOMISATION_ENV}=1): \
             tasks will not migrate between this node and the others"
        ),
        Randomisation::StillOn(why) => eprintln!(
            "memlink dsm node: address-space randomisation stays on ({why}): tasks will not \
             migrate between this node and the others"
        ),
    }
    if let Err(code) = crate::dsm_plan::check("memlink dsm node", 1, &a.cluster, Some(0)) {
        return code;
    }
    let config = match node_config(&a) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("memlink dsm node: {e}");
            return ExitCode::from(2);
        }
    };
    let id = config.id;
    let app = a.cluster.app;
    match apps::run_node_sized(config, a.cluster.backend, app, &a.cluster.app_params()) {
        Ok(report) => {
            if a.report {
                println!("{}", report.to_line());
            } else {
                println!(
                    "node {}: {app} done in {:.1} ms; read faults {}, write faults {}, \
                     messages {}, bytes {}",
                    report.id,
                    report.wall_us as f64 / 1000.0,
                    report.stats.read_faults,
                    report.stats.write_faults,
                    report.stats.messages,
                    report.stats.bytes
                );
                let e = report.stats.evictions;
                if e != memlink_dsm::EvictionStats::default() {
                    println!("node {}: evictions: {e}", report.id);
                }
                if let Some(t) = report.tasks {
                    println!("node {}: {t}", report.id);
                }
                println!("verified: {}", report.verified);
            }
            if report.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(apps::EXIT_NOT_VERIFIED as u8)
            }
        }
        Err(e) => {
            eprintln!("memlink dsm node {id}: {e}");
            let code = match e {
                memlink_dsm::DsmError::NodeLost { .. } => apps::EXIT_NODE_LOST,
                _ => apps::EXIT_DSM_ERROR,
            };
            ExitCode::from(code as u8)
        }
    }
}

/// Starts `nodes` node processes of this executable on loopback running `c`, and returns
/// each node's report; on failure, says what went wrong on stderr (`who` names the command)
/// and returns the exit status to end with.
pub(crate) fn run_cluster(
    who: &str,
    nodes: u16,
    c: &ClusterArgs,
    timeout: Duration,
) -> Result<Vec<NodeReport>, ExitCode> {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{who}: cannot find my own executable to start the nodes: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let launched = launch(nodes as usize, timeout, |slot| {
        let mut cmd = Command::new(&exe);
        cmd.args(["dsm", "node", "--report"])
            .args(["--id", &slot.id.to_string()])
            .args(["--listen", &slot.listen.to_string()])
            .args(["--peers", &slot.peers_arg()])
            .args(["--app", c.app.name()])
            .args(["--backend", &c.backend.to_string()])
            .args(["--manager", &c.manager.to_string()]);
        if let Some(size) = c.size {
            cmd.args(["--size", &size.to_string()]);
        }
        if let Some(iters) = c.iters {
            cmd.args(["--iters", &iters.to_string()]);
        }
        if c.no_prefetch {
            cmd.arg("--no-prefetch");
        }
        if let Some(bytes) = c.memory_budget {
            cmd.args(["--memory-budget", &bytes.to_string()]);
        }
        if let Some(us) = c.hold_us {
            cmd.args(["--hold-us", &us.to_string()]);
        }
        if let Some(file) = &c.file {
            cmd.arg("--file").arg(file);
        }
        if let Some(socket) = &c.pager_socket {
            cmd.arg("--pager-socket").arg(socket);
        }
        if let Some(workers) = c.workers {
            cmd.args(["--workers", &workers.to_string()]);
        }
        if c.no_hints {
            cmd.arg("--no-hints");
        }
        cmd
    });
    let outputs = match launched {
        Ok(outputs) => outputs,
        Err(e) => {
            // The error names the failed node and quotes every node's last lines.
            eprintln!("{who}: {e}");
            return Err(launch_failure_status(&e));
        }
    };
    // The steps an app prints as it checks them ("node N: ..."; the capabilities app), on
    // stderr so that --json output stays one document.
    for o in &outputs {
        let prefix = format!("node {}: ", o.id);
        for line in o.stdout.lines().filter(|l| l.starts_with(&prefix)) {
            eprintln!("{line}");
        }
    }
    let mut reports = Vec::with_capacity(outputs.len());
    for o in &outputs {
        match NodeReport::find_in(&o.stdout) {
            Some(r) => reports.push(r),
            None => {
                eprintln!(
                    "{who}: node {} ended without a report; its output:\n{}{}",
                    o.id, o.stdout, o.stderr
                );
                return Err(ExitCode::FAILURE);
            }
        }
    }
    Ok(reports)
}

/// The exit status of a launcher whose cluster did not complete: 128 + the signal when it was
/// stopped by SIGINT or SIGTERM (as a shell reports a process that signal ended), else 1.
pub(crate) fn launch_failure_status(e: &LaunchError) -> ExitCode {
    match e {
        LaunchError::Interrupted { signal, .. } => ExitCode::from((128 + signal) as u8),
        _ => ExitCode::FAILURE,
    }
}

fn run_local(a: RunArgs) -> ExitCode {
    let c = a.cluster.clone();
    let timeout = match crate::dsm_plan::check("memlink dsm run", a.nodes, &c, a.timeout) {
        Ok(timeout) => timeout,
        Err(code) => return code,
    };
    let reports = match run_cluster("memlink dsm run", a.nodes, &c, timeout) {
        Ok(reports) => reports,
        Err(code) => return code,
    };
    let verified = reports.iter().all(|r| r.verified);
    let wall_ms = reports.iter().map(|r| r.wall_us).max().unwrap_or(0) as f64 / 1000.0;
    let sum = |f: fn(&NodeReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (read_faults, write_faults) = (sum(|r| r.stats.read_faults), sum(|r| r.stats.write_faults));
    let (messages, bytes) = (sum(|r| r.stats.messages), sum(|r| r.stats.bytes));
    if a.json {
        let mut obj = serde_json::json!({
            "app": c.app.name(),
            "nodes": a.nodes,
            "manager": c.manager.to_string(),
            "backend": c.backend.to_string(),
            "verified": verified,
            "wall_ms": wall_ms,
            "read_faults": read_faults,
            "write_faults": write_faults,
            "messages": messages,
            "bytes": bytes,
        });
        if c.memory_budget.is_some() {
            let per_node: Vec<_> = reports.iter().map(eviction_json).collect();
            obj["memory_budget"] = serde_json::json!(c.memory_budget);
            obj["evictions"] = serde_json::json!(per_node);
        }
        if reports.iter().any(|r| r.tasks.is_some()) {
            let per_node: Vec<_> = reports.iter().map(task_json).collect();
            obj["tasks"] = serde_json::json!(per_node);
        }
        if let Some(steady) = reports.iter().filter_map(|r| r.steady_us).max() {
            // jacobi: the sweeps alone (wall_ms also counts moving each band to its node).
            obj["steady_ms"] = serde_json::json!(steady as f64 / 1000.0);
        }
        println!("{obj}");
    } else {
        println!(
            "{} on {} nodes (manager {}, backend {})",
            c.app, a.nodes, c.manager, c.backend
        );
        println!(
            "{:>6} {:>9} {:>10} {:>12} {:>13} {:>9} {:>10}",
            "node", "verified", "wall ms", "read faults", "write faults", "messages", "bytes"
        );
        for r in &reports {
            println!(
                "{:>6} {:>9} {:>10.1} {:>12} {:>13} {:>9} {:>10}",
                r.id,
                r.verified,
                r.wall_us as f64 / 1000.0,
                r.stats.read_faults,
                r.stats.write_faults,
                r.stats.messages,
                r.stats.bytes
            );
        }
        println!(
            "{:>6} {:>9} {:>10.1} {:>12} {:>13} {:>9} {:>10}",
            "all", verified, wall_ms, read_faults, write_faults, messages, bytes
        );
        if let Some(budget) = c.memory_budget {
            print_evictions(budget, &reports);
        }
        if reports.iter().any(|r| r.tasks.is_some()) {
            print_tasks(&reports);
        }
        println!("verified: {verified}");
    }
    if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(apps::EXIT_NOT_VERIFIED as u8)
    }
}

/// One node's eviction counters as JSON.
fn eviction_json(r: &NodeReport) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    fields.insert("node".into(), r.id.into());
    for (name, value) in r.stats.evictions.named() {
        fields.insert(name.into(), value.into());
    }
    serde_json::Value::Object(fields)
}

/// One node's task counters as JSON.
fn task_json(r: &NodeReport) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    fields.insert("node".into(), r.id.into());
    for (name, value) in r.tasks.unwrap_or_default().named() {
        fields.insert(name.into(), value.into());
    }
    serde_json::Value::Object(fields)
}

/// The table of what each node's task scheduler did.
fn print_tasks(reports: &[NodeReport]) {
    println!(
        "tasks (all spawned on node 0): run, migrated in and out, work requests sent and \
         refused, hints broadcast"
    );
    println!(
        "{:>6} {:>9} {:>12} {:>13} {:>9} {:>8} {:>6}",
        "node", "tasks run", "migrated in", "migrated out", "requests", "refused", "hints"
    );
    for r in reports {
        let t = r.tasks.unwrap_or_default();
        println!(
            "{:>6} {:>9} {:>12} {:>13} {:>9} {:>8} {:>6}",
            r.id, t.tasks_run, t.migrated_in, t.migrated_out, t.requests, t.refused, t.hints
        );
    }
}

/// The table of what page replacement did on each node.
fn print_evictions(budget: u64, reports: &[NodeReport]) {
    println!(
        "page replacement (memory budget {} KiB per node): evictions by class, hand-offs \
         offered to the node, pages read back from its store",
        budget / 1024
    );
    println!(
        "{:>6} {:>8} {:>9} {:>10} {:>12} {:>13} {:>9} {:>8} {:>9} {:>12}",
        "node",
        "dropped",
        "passed",
        "handed off",
        "written back",
        "dropped clean",
        "accepted",
        "refused",
        "paged in",
        "write failed"
    );
    for r in reports {
        let [
            dropped,
            passed,
            handed_off,
            written_back,
            dropped_clean,
            accepted,
            refused,
            paged_in,
            write_failed,
        ] = r.stats.evictions.named().map(|(_, value)| value);
        println!(
            "{:>6} {dropped:>8} {passed:>9} {handed_off:>10} {written_back:>12} {dropped_clean:>13} {accepted:>9} \
             {refused:>8} {paged_in:>9} {write_failed:>12}",
            r.id
        );
    }
}
