//! `meshworker`: the solver daemon. Thin: parse flags, call `meshsolve::worker::run`.

#[path = "cli/mod.rs"]
mod cli;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use meshsolve::discovery::mdns::{hostname, Mdns};
use meshsolve::{certs, solver, worker};
use tokio_util::sync::CancellationToken;

/// Serve LP/MIP solves to the meshsolve clients of your namespace on this LAN.
///
/// The worker picks a free UDP port, loads (or creates) your namespace's certificate
/// authority, advertises itself over mDNS as `_meshsolve._udp.local.` and runs up to
/// --slots solves at once, each in its own child process. Ctrl-C or SIGTERM stops
/// advertising at once, lets running solves finish within --grace, then exits;
/// a second Ctrl-C exits immediately. No solver process outlives the worker.
#[derive(Parser, Debug)]
#[command(name = "meshworker", version, max_term_width = 100)]
struct Opts {
    /// Namespace to serve [default: your login name]. Only clients holding the same
    /// namespace CA can see and use this worker.
    #[arg(long, short = 'n', env = "MESHSOLVE_NAMESPACE")]
    namespace: Option<String>,
    /// Solves to run at once [default: number of cores].
    #[arg(long, short = 's')]
    slots: Option<u32>,
    /// UDP port to listen on (0 picks a free one).
    #[arg(long, short = 'p', default_value_t = 0)]
    port: u16,
    /// Address to bind (0.0.0.0 for every IPv4 interface, :: for IPv6 too).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Advertise over mDNS only on these network interfaces (repeatable or comma-separated,
    /// e.g. `--interface eth0`); default every interface.
    #[arg(long = "interface", short = 'i', env = "MESHSOLVE_INTERFACE", value_delimiter = ',')]
    interfaces: Vec<String>,
    /// Offer only these solvers (repeatable or comma-separated), e.g. `--solvers cbc,gurobi`
    /// [default: every solver this box has; see --list-solvers]. Names: gurobi, cplex,
    /// xpress, highs, scip, cbc, glpk, microlp.
    #[arg(long = "solvers", alias = "solver", value_delimiter = ',', value_name = "NAMES")]
    solvers: Vec<String>,
    /// Run solver NAME from this executable instead of looking on PATH (repeatable),
    /// e.g. `--solver-path cbc=/opt/coin/bin/cbc`. Command-line editions meshsolve
    /// drives: cbc, glpk (glpsol), highs.
    #[arg(long = "solver-path", value_name = "NAME=EXE", value_parser = parse_solver_path)]
    solver_paths: Vec<(solver::Kind, PathBuf)>,
    /// The Python whose solver modules (gurobipy, cplex, xpress, highspy, pyscipopt)
    /// this worker uses [default: the first python3 on PATH].
    #[arg(long, value_name = "PATH", env = "MESHSOLVE_PYTHON")]
    python: Option<PathBuf>,
    /// Do not look for Python solver modules (saves the Python start, ~0.1 s).
    #[arg(long, conflicts_with = "python")]
    no_python: bool,
    /// Print the solvers this box has, how each is run and why others were not
    /// found, then exit.
    #[arg(long)]
    list_solvers: bool,
    /// Limit a solver to fewer slots than the worker has, NAME=N (repeatable or comma-separated),
    /// e.g. `--solver-slots cplex=2` on a box with 8 cores and 2 CPLEX licences.
    #[arg(long = "solver-slots", value_delimiter = ',', value_parser = parse_solver_slots)]
    solver_slots: Vec<(String, u32)>,
    /// A licence shared with other boxes, SOLVER=SERVER/SEATS (repeatable), e.g.
    /// `--licence-pool gurobi=tok1.lan:41954/10`: across every worker of the namespace
    /// that names the same solver and server, at most SEATS solves run at once; a job
    /// waits for a free seat (its client is told so).
    #[arg(long = "licence-pool", alias = "license-pool", value_name = "SOLVER=SERVER/SEATS", value_parser = parse_pool)]
    pools: Vec<meshsolve::protocol::PoolInfo>,
    /// Largest model accepted, in MiB [default: 4096].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    max_model: Option<u64>,
    /// Where models in transit are kept [default: $TMPDIR, else /tmp]; the worker makes a
    /// private directory in it and removes it on exit.
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Disk space for models in transit or waiting here, in MiB [default: 8192]: an upload
    /// waits for room, and a model larger than this is refused.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    disk_budget: Option<u64>,
    /// Memory limit of each solver process in MiB (address space); a solve that needs
    /// more fails like a crash and is retried elsewhere, instead of starving the box.
    #[arg(long, value_name = "MIB")]
    solver_memory: Option<u64>,
    /// Longest any job may solve here (e.g. `2h`): a job asking for more, or for no time
    /// limit, gets this one and reports its best solution when it runs out. Default: no limit.
    #[arg(long, value_name = "DURATION", value_parser = cli::parse_duration)]
    max_time_limit: Option<Duration>,
    /// Register with this static name server (`meshns`), HOST[:PORT], as well as (or,
    /// with --no-mdns, instead of) advertising over mDNS. Defaults to PYRO_NS_HOSTNAME
    /// and PYRO_NS_PORT when set.
    #[arg(long = "ns", value_name = "HOST[:PORT]")]
    name_server: Option<String>,
    /// Do not advertise over mDNS (multicast blocked); use --ns.
    #[arg(long)]
    no_mdns: bool,
    /// Instance name to advertise [default: HOST-PORT].
    #[arg(long)]
    name: Option<String>,
    /// How long running solves may finish after a stop request before they are cancelled.
    #[arg(long, default_value = "10s", value_parser = cli::parse_duration)]
    grace: Duration,
    /// Exit after this long without any job (e.g. `30m`); default never.
    #[arg(long, value_parser = cli::parse_duration)]
    idle_exit: Option<Duration>,
    /// Directory holding namespace CAs [default: ~/.config/meshsolve].
    #[arg(long, env = "MESHSOLVE_HOME")]
    home: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn parse_solver_slots(s: &str) -> Result<(String, u32), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=N"))?;
    let n: u32 = v.trim().parse().map_err(|_| format!("`{v}` is not a number of slots"))?;
    Ok((k.trim().to_ascii_lowercase(), n))
}

fn parse_solver_path(s: &str) -> Result<(solver::Kind, PathBuf), String> {
    let (k, v) =
        s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=EXE (e.g. cbc=/opt/coin/bin/cbc)"))?;
    let kind = solver::Kind::parse(k).ok_or_else(|| format!("`{k}` is not a solver meshsolve knows"))?;
    if kind.executable().is_none() {
        return Err(format!(
            "meshsolve runs {kind} through its Python module, not an executable (see --python)"
        ));
    }
    Ok((kind, PathBuf::from(v)))
}

fn parse_pool(s: &str) -> Result<meshsolve::protocol::PoolInfo, String> {
    let bad = || format!("`{s}` is not SOLVER=SERVER/SEATS (e.g. gurobi=tok1.lan:41954/10)");
    let (solver, rest) = s.split_once('=').ok_or_else(bad)?;
    let kind =
        solver::Kind::parse(solver).ok_or_else(|| format!("`{solver}` is not a solver meshsolve knows"))?;
    let (server, seats) = rest.rsplit_once('/').ok_or_else(bad)?;
    let size: u32 = seats.trim().parse().map_err(|_| bad())?;
    let pool =
        meshsolve::protocol::PoolInfo { solver: kind.to_string(), server: server.trim().to_string(), size };
    pool.validate().map_err(|e| format!("{e}: {}", bad()))?;
    Ok(pool)
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == solver::process::CHILD_FLAG) {
        return ExitCode::from(solver::process::child_main() as u8);
    }
    let opts = Opts::parse();
    cli::init_tracing(&opts.log_level);
    match cli::runtime().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(opts))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshworker: error: {e:#}");
            ExitCode::from(if e.downcast_ref::<cli::Usage>().is_some() { 2 } else { 1 })
        }
    }
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let namespace = opts.namespace.unwrap_or_else(certs::default_namespace);
    certs::validate_namespace(&namespace).map_err(|e| cli::Usage(format!("{e} (--namespace NAME)")))?;
    let slots = opts.slots.unwrap_or_else(worker::default_slots);
    if slots == 0 {
        return Err(cli::Usage("--slots must be at least 1 (e.g. --slots 4)".into()).into());
    }
    let mut only = Vec::new();
    for s in &opts.solvers {
        only.push(solver::Kind::parse(s).ok_or_else(|| {
            cli::Usage(format!(
                "unknown solver `{s}` (--solvers takes: {})",
                solver::Kind::ALL.map(|k| k.as_str()).join(", ")
            ))
        })?);
    }
    let found = solver::detect(&solver::DetectConfig {
        paths: opts.solver_paths,
        python: opts.python,
        only: only.clone(),
    });
    if opts.list_solvers {
        print!("{}", found.report());
        return Ok(());
    }
    for k in &only {
        if found.get(*k).is_none() {
            anyhow::bail!("solver {k} is not usable on this box: {}", found.why_not(*k));
        }
    }
    if found.found.is_empty() {
        anyhow::bail!("no solver found on this box (see meshworker --list-solvers)");
    }
    tracing::debug!(ms = found.elapsed.as_secs_f64() * 1000.0, "solvers detected");
    let solvers = found.found;
    for p in &opts.pools {
        if !solvers.iter().any(|a| a.kind.as_str() == p.solver) {
            return Err(cli::Usage(format!(
                "--licence-pool {}: this worker offers no {} (see --list-solvers)",
                p.spec(),
                p.solver
            ))
            .into());
        }
    }
    let bind = SocketAddr::new(opts.bind, opts.port);
    let probe = std::net::UdpSocket::bind(bind)
        .with_context(|| format!("cannot bind UDP {bind}; is the port in use?"))?;
    let port = probe.local_addr()?.port();
    drop(probe);
    let cfg = worker::WorkerConfig {
        instance: opts.name.unwrap_or_else(|| format!("{}-{port}", hostname())),
        namespace,
        home: opts.home.unwrap_or_else(certs::default_home),
        bind: SocketAddr::new(opts.bind, port),
        slots,
        solver_slots: opts.solver_slots.into_iter().collect(),
        solvers,
        grace: opts.grace,
        idle_exit: opts.idle_exit,
        solver_exe: std::env::current_exe().context("cannot find my own executable")?,
        max_model: opts.max_model.map_or(worker::DEFAULT_MAX_MODEL, |m| m << 20),
        temp_dir: opts.temp_dir.unwrap_or_else(std::env::temp_dir),
        disk_budget: opts.disk_budget.map_or(worker::DEFAULT_DISK_BUDGET, |m| m << 20),
        solver_memory: opts.solver_memory.map(|m| m << 20),
        max_time_limit: opts.max_time_limit,
        name_server: opts.name_server.or_else(meshsolve::discovery::registry::from_env),
        pools: opts.pools,
    };
    let discovery: Arc<dyn meshsolve::discovery::Discovery> = if opts.no_mdns {
        if cfg.name_server.is_none() {
            eprintln!("meshworker: warning: --no-mdns without --ns or PYRO_NS_HOSTNAME: clients can only reach this worker with --worker ADDRESS");
        }
        Arc::new(meshsolve::discovery::Off)
    } else {
        Arc::new(Mdns::new(&opts.interfaces).context("cannot start mDNS")?)
    };
    let shutdown = CancellationToken::new();
    let _signals = cli::on_signals(shutdown.clone(), "meshworker");
    worker::run(cfg, discovery, shutdown, |addr| {
        eprintln!("meshworker: listening on {addr}");
    })
    .await?;
    Ok(())
}
