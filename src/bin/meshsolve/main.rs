//! `meshsolve`: solve LP/MIP models on the workers of your namespace.

mod bench;
#[path = "../cli/mod.rs"]
mod cli;
mod examples;
mod local;
mod report;
mod results;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use meshsolve::certs::{self, NamespaceCa};
use std::collections::HashMap;

use crate::local::LocalWorkers;
use crate::report::{
    fmt_value, print_json, print_record, record_json, record_of, report, Progress, ReportOptions,
};
use crate::results::{Outcome, Record, ResultDir};
use meshsolve::client::{ClientConfig, JobOptions, Mesh};
use meshsolve::dispatch::{wait_any, JobError, QueueOptions};
use meshsolve::inputs::expand_inputs;
use meshsolve::model::{self, Format};
use meshsolve::protocol::JobPhase;
use meshsolve::solver::{self, SolveOptions};
use tokio_util::sync::CancellationToken;

const EXIT_HELP: &str = "\
Exit codes:
  0  optimal (or a feasible solution when a time limit stopped the search)
  1  error (bad model, no worker found, worker failure, bad certificate...)
  2  bad command line
  3  infeasible
  4  unbounded
  5  time limit reached without a feasible solution
  130 interrupted (Ctrl-C)
With several models, the highest code among them is returned.

Examples:
  meshsolve farmer.lp                     solve on the best free worker of your namespace
  meshsolve --json model.mps.gz           machine-readable result
  meshsolve --worker 10.0.0.5:4433 a.lp   skip discovery
  meshsolve workers                       list the workers you can use
  meshsolve certs export ns.pem           copy your namespace CA to another box";

/// Solve linear and mixed-integer programs on the meshsolve workers of your LAN.
///
/// Workers (`meshworker`) advertise themselves over mDNS; meshsolve finds those of your
/// namespace, sends each model over QUIC with mutual TLS, and prints the solution.
/// Models are CPLEX LP or MPS (fixed or free), optionally gzip-compressed (.gz); they are
/// checked locally before anything is sent.
#[derive(Parser, Debug)]
#[command(name = "meshsolve", version, max_term_width = 100, after_help = EXIT_HELP)]
struct Opts {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    solve: SolveArgs,
    #[command(flatten)]
    mesh: MeshArgs,
}

#[derive(Args, Debug, Clone)]
struct MeshArgs {
    /// Namespace to use [default: your login name].
    #[arg(long, short = 'n', env = "MESHSOLVE_NAMESPACE", global = true)]
    namespace: Option<String>,
    /// Use this worker instead of mDNS discovery (HOST:PORT, repeatable).
    #[arg(long = "worker", short = 'w', global = true)]
    workers: Vec<String>,
    /// How long to wait for workers to answer discovery.
    #[arg(long, default_value = "3s", value_parser = cli::parse_duration, global = true)]
    wait: Duration,
    /// Browse mDNS only on these interfaces (comma-separated) [default: all].
    #[arg(
        long = "interface",
        short = 'i',
        env = "MESHSOLVE_INTERFACE",
        value_delimiter = ',',
        global = true
    )]
    interfaces: Vec<String>,
    /// Directory holding namespace CAs [default: ~/.config/meshsolve].
    #[arg(long, env = "MESHSOLVE_HOME", global = true)]
    home: Option<PathBuf>,
    /// Also ask this static name server (`meshns`), HOST[:PORT], for workers; defaults to
    /// PYRO_NS_HOSTNAME and PYRO_NS_PORT when set. Workers found both ways are merged.
    #[arg(long = "ns", value_name = "HOST[:PORT]", global = true)]
    name_server: Option<String>,
    /// Do not browse mDNS (multicast blocked); rely on --ns or --worker.
    #[arg(long, global = true)]
    no_mdns: bool,
    /// Reach workers only through the name server's relay (firewall debugging).
    #[arg(long, global = true)]
    via_ns: bool,
    /// Log level (error, warn, info, debug); RUST_LOG overrides it.
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
}

#[derive(Args, Debug, Clone)]
struct SolveArgs {
    /// Model files, directories (searched recursively) or patterns like 'runs/*.lp'
    /// (.lp, .mps, optionally .gz).
    models: Vec<PathBuf>,
    /// Solver to use [default: the best each worker has]. `meshsolve workers` shows them.
    #[arg(long)]
    solver: Option<String>,
    /// Time limit per solve (e.g. 30s, 5m). A solve stopped by it reports its best solution.
    #[arg(long, value_parser = cli::parse_duration)]
    time_limit: Option<Duration>,
    /// Relative MIP gap at which a solve may stop (default 0: prove optimality).
    #[arg(long)]
    mip_gap: Option<f64>,
    /// Solver option passed through, KEY=VALUE (repeatable; HiGHS option names).
    #[arg(long = "option", value_parser = parse_kv)]
    options: Vec<(String, String)>,
    /// Force the model format instead of guessing from the file name.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Print results as JSON (one object per model, in a list when several).
    #[arg(long)]
    json: bool,
    /// Write the solution to FILE (JSON when FILE ends in .json, else `name value` lines).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Also list variables whose value is zero.
    #[arg(long)]
    zeros: bool,
    /// Solve here in this process instead of on the mesh (for comparison or offline use).
    #[arg(long)]
    local: bool,
    /// Write each model's result to DIR/<name>.json as it finishes, plus summary.csv and
    /// summary.json; re-running skips models already solved there (resume).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: solve again models whose result is already in DIR.
    #[arg(long)]
    force: bool,
    /// Runs per model before it is marked failed (lost workers, solver crashes).
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Stop the whole batch after this long (e.g. 2h); unfinished models are marked failed.
    #[arg(long, value_parser = cli::parse_duration)]
    deadline: Option<Duration>,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Leave the models in the name server's queue and exit; its workers solve them
    /// while you are away. Prints a batch id for `meshsolve collect`.
    #[arg(long)]
    detach: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum FormatArg {
    Lp,
    Mps,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the workers of your namespace: address, solvers, slots, busy slots.
    Workers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask every worker of your namespace to exit, and report which did.
    Shutdown,
    /// Fetch the results of a batch submitted with --detach.
    Collect {
        /// The batch id `--detach` printed.
        batch: String,
        /// Wait until every job of the batch is done or failed.
        #[arg(long)]
        until_done: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Write results to DIR as `--out` does.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Show, export or import your namespace's certificate authority.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Start two local workers, solve the shipped farmer model on them, stop them.
    Demo,
    /// Progressive hedging of a two-stage stochastic program over the mesh.
    ///
    /// SPEC is a TOML file naming the scenario files, their probabilities and the
    /// first-stage variables (see README), or a directory of scenario files with
    /// equal probabilities plus --first-stage. Each scenario stays loaded on the
    /// worker that first solved it; later iterations send only W, x̄ and rho.
    Ph(PhArgs),
    /// Measure the mesh against solving locally: dispatch overhead, throughput,
    /// transfer, discovery. Medians of repeated runs, with min, max and ratios.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct PhArgs {
    /// The TOML spec, or a directory of scenario files.
    spec: PathBuf,
    /// First-stage variables: names or patterns with * and ? (repeatable).
    #[arg(long = "first-stage")]
    first_stage: Vec<String>,
    /// Default penalty rho (the spec's `rho` otherwise, else 1).
    #[arg(long)]
    rho: Option<f64>,
    /// Converged when the mean |x_s - xbar| falls below this.
    #[arg(long, default_value_t = 1e-4)]
    threshold: f64,
    /// Iteration cap.
    #[arg(long, default_value_t = 300)]
    max_iters: usize,
    /// Compute the Lagrangian lower bound every N iterations (0: only at the end).
    #[arg(long, default_value_t = 10)]
    bound_every: usize,
    /// Solver for the subproblems [default: each worker's best].
    #[arg(long)]
    solver: Option<String>,
    /// Time limit per subproblem solve.
    #[arg(long, value_parser = cli::parse_duration)]
    time_limit: Option<Duration>,
    /// Also solve the extensive form of the same SPEC on the mesh, for comparison.
    #[arg(long)]
    ef: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No per-iteration lines on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Start N local workers (mDNS on loopback) instead of using your namespace's workers.
    #[arg(long, value_name = "N")]
    local: Option<u32>,
    /// Slots per local worker.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Repeats per figure.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Tiny models in the throughput run.
    #[arg(long, default_value_t = 1000)]
    tiny: usize,
    /// Size of the generated transfer model in MB (0 skips it).
    #[arg(long, default_value_t = 100)]
    transfer_mb: u64,
    /// Seed of the generated models.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scenarios of the farmer progressive-hedging figure (0 skips it).
    #[arg(long, default_value_t = 30)]
    ph_scenarios: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum CertsCmd {
    /// Show where the namespace CA lives and its fingerprint (created on first use).
    Show,
    /// Write the namespace CA (certificate and private key) to FILE, to copy to another box.
    Export {
        /// Destination file (created with mode 600).
        file: PathBuf,
    },
    /// Install a CA exported from another box, so this box joins that namespace.
    Import {
        /// File made by `meshsolve certs export`.
        file: PathBuf,
        /// Replace a different CA already present for this namespace.
        #[arg(long)]
        force: bool,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(solver::process::CHILD_FLAG) {
        return ExitCode::from(solver::process::child_main() as u8);
    }
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    // SAFETY: setting a signal disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let opts = Opts::parse();
    cli::init_tracing(&opts.mesh.log_level);
    match run(opts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meshsolve: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn client_config(m: &MeshArgs) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::from_env();
    if let Some(ns) = &m.namespace {
        c.namespace = ns.clone();
    }
    certs::validate_namespace(&c.namespace)?;
    if let Some(h) = &m.home {
        c.home = h.clone();
    }
    c.interfaces = m.interfaces.clone();
    c.static_workers = m.workers.clone();
    if m.name_server.is_some() {
        c.name_server = m.name_server.clone();
    }
    c.mdns = !m.no_mdns;
    c.via_name_server = m.via_ns;
    Ok(c)
}

#[tokio::main]
async fn run(opts: Opts) -> anyhow::Result<u8> {
    match opts.cmd {
        Some(Cmd::Workers { json }) => workers(&opts.mesh, json).await,
        Some(Cmd::Shutdown) => shutdown(&opts.mesh).await,
        Some(Cmd::Certs(c)) => certs_cmd(&opts.mesh, c),
        Some(Cmd::Demo) => demo(&opts.mesh).await,
        Some(Cmd::Collect { batch, until_done, json, out }) => {
            collect(&opts.mesh, &batch, until_done, json, out).await
        }
        Some(Cmd::Bench(b)) => bench(&opts.mesh, b).await,
        Some(Cmd::Ph(p)) => ph(&opts.mesh, p).await,
        None => solve(&opts.mesh, &opts.solve).await,
    }
}

/// The exit code of a run: the highest of its models' codes.
fn exit_code(records: &[Record]) -> u8 {
    records.iter().map(|r| r.status.exit_code()).max().unwrap_or(0)
}

async fn solve(m: &MeshArgs, a: &SolveArgs) -> anyhow::Result<u8> {
    if a.models.is_empty() {
        bail!("no model given.\n  usage: meshsolve MODEL.lp [MORE...]   (see `meshsolve --help`; `meshsolve demo` runs a complete example)");
    }
    let models = expand_inputs(&a.models)?;
    if a.output.is_some() && models.len() > 1 {
        bail!(
            "--output takes one model; for several, use --out DIR (one result file per model plus a summary)"
        );
    }
    let opts = JobOptions {
        solver: a.solver.clone(),
        solve: SolveOptions {
            time_limit: a.time_limit.map(|d| d.as_secs_f64()),
            mip_gap: a.mip_gap,
            extra: a.options.clone(),
            warm_start: None,
        },
        format: a.format.map(|f| match f {
            FormatArg::Lp => Format::Lp,
            FormatArg::Mps => Format::Mps,
        }),
        prechecked: true,
    };
    if a.local {
        return solve_local(a, &models, &opts);
    }
    // Check every model here, before looking for workers: a typo is reported at once.
    for p in &models {
        meshsolve::client::check_model(p, opts.format).await?;
    }
    if a.detach {
        return detach(m, &models, &opts).await;
    }
    let store = a.out.as_ref().map(|d| ResultDir::open(d, &models)).transpose()?;
    let mut records: Vec<Option<Record>> = vec![None; models.len()];
    let mut todo = Vec::new();
    for (i, p) in models.iter().enumerate() {
        match store.as_ref().filter(|_| !a.force).and_then(|s| s.existing(p)) {
            Some(r) => records[i] = Some(r),
            None => todo.push(i),
        }
    }
    let skipped = models.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "meshsolve: {skipped} of {} model(s) already solved in {} (--force re-solves them)",
            models.len(),
            a.out.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    let mut interrupted = false;
    if !todo.is_empty() {
        let mesh = Arc::new(Mesh::connect(client_config(m)?).await?);
        let found = mesh.wait_for_workers(a.solver.as_deref(), m.wait).await?;
        tracing::info!(workers = found.len(), "workers found");
        let (queue, mut events) = meshsolve::dispatch::Queue::with_events(
            &mesh,
            QueueOptions { max_attempts: a.attempts.max(1), patience: m.wait.max(Duration::from_secs(10)) },
        );
        let mut handles = Vec::new();
        let mut model_of = HashMap::new();
        for &i in &todo {
            let h = queue.submit(&models[i], &opts).await?;
            model_of.insert(h.id, i);
            handles.push(h);
        }
        let names: HashMap<usize, String> =
            model_of.iter().map(|(j, i)| (*j, models[*i].display().to_string())).collect();
        let mut progress = Progress::new(todo.len(), names, a.quiet);
        let stop = CancellationToken::new();
        cli::on_signals(stop.clone(), "meshsolve");
        let deadline = async {
            match a.deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut deadline_hit = false;
        while !handles.is_empty() {
            tokio::select! {
                Some(ev) = events.recv() => progress.event(&ev),
                _ = stop.cancelled(), if !interrupted => {
                    interrupted = true;
                    progress.note("interrupted: cancelling running solves (Ctrl-C again to exit at once)");
                    queue.cancel_all("interrupted");
                }
                _ = &mut deadline, if !deadline_hit => {
                    deadline_hit = true;
                    progress.note("batch deadline reached: cancelling the rest");
                    queue.cancel_all("batch deadline reached");
                }
                Some((job, outcome)) = wait_any(&mut handles) => {
                    let i = model_of[&job];
                    let rec = record_of(&models[i], &outcome);
                    if let (Some(store), Ok(_)) = (&store, &outcome) {
                        store.write(&models[i], &rec)?;
                    }
                    records[i] = Some(rec);
                }
            }
        }
        while let Ok(ev) = events.try_recv() {
            progress.event(&ev);
        }
        progress.finish();
        queue.close().await;
        mesh.close().await;
    }
    let records: Vec<Record> = records.into_iter().map(|r| r.expect("every model has a record")).collect();
    if let Some(store) = &store {
        store.write_summary(&records)?;
    }
    report(&report_options(a), &models, &records)?;
    Ok(if interrupted { 130 } else { exit_code(&records) })
}

fn report_options(a: &SolveArgs) -> ReportOptions {
    ReportOptions { json: a.json, zeros: a.zeros, output: a.output.clone() }
}

fn solve_local(a: &SolveArgs, models: &[PathBuf], opts: &JobOptions) -> anyhow::Result<u8> {
    let s = match &a.solver {
        Some(n) => solver::by_name(n)?,
        None => solver::default_solver(),
    };
    let mut records = Vec::new();
    for p in models {
        let t = Instant::now();
        let model = model::read_file(p, opts.format)?;
        let sol = s.solve(&model, &opts.solve)?;
        records.push(Record {
            model: p.to_string_lossy().into_owned(),
            status: sol.status.into(),
            objective: sol.objective,
            solver: sol.solver,
            worker: "local".into(),
            address: None,
            solve_seconds: sol.solve_seconds,
            wall_seconds: t.elapsed().as_secs_f64(),
            attempts: 1,
            error: None,
            values: sol.values,
        });
    }
    report(&report_options(a), models, &records)?;
    Ok(exit_code(&records))
}

async fn workers(m: &MeshArgs, json: bool) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(client_config(m)?).await?;
    let found = mesh.wait_for_workers(None, m.wait).await?;
    let mut rows = Vec::new();
    for w in &found {
        let st = mesh.status(w).await;
        rows.push((w.clone(), st));
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(w, st)| {
                serde_json::json!({
                    "name": w.instance,
                    "address": w.best_addr().map(|a| a.to_string()),
                    "addresses": w.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "namespace": w.namespace,
                    "solvers": w.solvers.iter().map(|s| serde_json::json!({"name": s.name, "version": s.version, "slots": s.slots})).collect::<Vec<_>>(),
                    "slots": w.slots,
                    "busy": st.as_ref().ok().map(|s| s.busy),
                    "reachable": st.is_ok(),
                    "error": st.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<28} {:<22} {:<28} {:>5} {:>5}", "WORKER", "ADDRESS", "SOLVERS", "SLOTS", "BUSY");
        for (w, st) in &rows {
            let solvers = w
                .solvers
                .iter()
                .map(|s| {
                    if s.slots < w.slots {
                        format!("{} {} ({} slots)", s.name, s.version, s.slots)
                    } else {
                        format!("{} {}", s.name, s.version)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let addr = w.best_addr().map(|a| a.to_string()).unwrap_or_default();
            let busy = match st {
                Ok(s) => s.busy.to_string(),
                Err(_) => "?".into(),
            };
            println!("{:<28} {:<22} {:<28} {:>5} {:>5}", w.instance, addr, solvers, w.slots, busy);
            if let Err(e) = st {
                println!("  unreachable: {e}");
            }
        }
    }
    mesh.close().await;
    Ok(0)
}

async fn shutdown(m: &MeshArgs) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(client_config(m)?).await?;
    let found = mesh.wait_for_workers(None, m.wait).await?;
    let mut code = 0;
    for w in &found {
        match mesh.shutdown_worker(w).await {
            Ok(ack) => println!(
                "{}: stopping ({} job(s) still running will finish or be cancelled)",
                ack.name, ack.running
            ),
            Err(e) => {
                code = 1;
                println!("{}: not stopped: {e}", w.instance);
            }
        }
    }
    mesh.close().await;
    Ok(code)
}

fn certs_cmd(m: &MeshArgs, c: CertsCmd) -> anyhow::Result<u8> {
    let cfg = client_config(m)?;
    match c {
        CertsCmd::Show => {
            let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
            println!("namespace    {}", ca.namespace);
            println!("directory    {}", ca.dir.display());
            println!("certificate  {}", ca.dir.join("ca.pem").display());
            println!("private key  {} (owner-only)", ca.dir.join("ca.key").display());
            println!("fingerprint  {}", ca.fingerprint());
        }
        CertsCmd::Export { file } => {
            let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            f.write_all(ca.export_pem().as_bytes())?;
            println!(
                "wrote namespace `{}` CA (fingerprint {}) to {}",
                ca.namespace,
                ca.fingerprint(),
                file.display()
            );
            println!("it holds the CA private key: copy it only to boxes you trust, then run `meshsolve certs import {}` there", file.display());
        }
        CertsCmd::Import { file, force } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let ca = NamespaceCa::import_pem(&cfg.home, &cfg.namespace, &text, force)?;
            println!("namespace `{}` now uses CA {} ({})", ca.namespace, ca.fingerprint(), ca.dir.display());
        }
    }
    Ok(0)
}

async fn detach(m: &MeshArgs, models: &[PathBuf], opts: &JobOptions) -> anyhow::Result<u8> {
    let mut cfg = client_config(m)?;
    cfg.mdns = false;
    let mesh = Mesh::connect(cfg).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let batch = format!("b{}-{}", now.as_secs(), std::process::id());
    for p in models {
        let header = Mesh::header(p, opts)?;
        mesh.submit_detached(&batch, p, &header).await?;
    }
    println!("{batch}");
    eprintln!(
        "meshsolve: {} model(s) queued on the name server as batch {batch}; collect with `meshsolve collect {batch}` (add --until-done to wait)",
        models.len()
    );
    mesh.close().await;
    Ok(0)
}

async fn collect(
    m: &MeshArgs,
    batch: &str,
    wait: bool,
    json: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let mut cfg = client_config(m)?;
    cfg.mdns = false;
    let mesh = Mesh::connect(cfg).await?;
    let jobs = loop {
        let jobs = mesh.collect(batch).await?;
        if jobs.is_empty() {
            bail!("the name server has no batch `{batch}` in namespace `{}`", mesh.namespace());
        }
        let open = jobs.iter().filter(|j| j.state.is_open()).count();
        if !wait || open == 0 {
            break jobs;
        }
        eprintln!("meshsolve: batch {batch}: {open} of {} job(s) still queued or running", jobs.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    mesh.close().await;
    let records: Vec<Record> = jobs
        .iter()
        .map(|j| Record {
            model: j.name.clone(),
            status: match &j.solution {
                Some(s) => s.status.into(),
                None => j.state.into(),
            },
            objective: j.solution.as_ref().and_then(|s| s.objective),
            solver: j.solution.as_ref().map(|s| s.solver.clone()).unwrap_or_default(),
            worker: j.worker.clone().unwrap_or_default(),
            address: None,
            solve_seconds: j.solution.as_ref().map(|s| s.solve_seconds).unwrap_or(0.0),
            wall_seconds: 0.0,
            attempts: j.attempts,
            error: if j.state == JobPhase::Failed { j.error.clone() } else { None },
            values: j.solution.as_ref().map(|s| s.values.clone()).unwrap_or_default(),
        })
        .collect();
    if let Some(dir) = &out {
        let paths: Vec<PathBuf> = records.iter().map(|r| PathBuf::from(&r.model)).collect();
        let store = ResultDir::open(dir, &paths)?;
        for (p, r) in paths.iter().zip(&records) {
            if r.solver.is_empty() {
                continue;
            }
            store.write(p, r)?;
        }
        store.write_summary(&records)?;
    }
    if json {
        print_json(records.iter().map(record_json).collect())?;
    } else {
        for r in &records {
            match &r.error {
                Some(e) => println!("{}: failed: {e}", r.model),
                None => println!(
                    "{}: {}{}{}",
                    r.model,
                    r.status,
                    r.objective.map(|o| format!(" {o}")).unwrap_or_default(),
                    if r.worker.is_empty() { String::new() } else { format!(" on {}", r.worker) }
                ),
            }
        }
    }
    let open = records.iter().any(|r| r.status.is_open());
    let failed = records.iter().any(|r| r.status == Outcome::Failed);
    Ok(if failed {
        1
    } else if open {
        5
    } else {
        0
    })
}

async fn ph(m: &MeshArgs, a: PhArgs) -> anyhow::Result<u8> {
    use meshsolve::ph::{self, PhOptions, PhSpec};
    let spec = PhSpec::load(&a.spec, &a.first_stage)?;
    let opts = PhOptions {
        rho: a.rho,
        threshold: a.threshold,
        max_iters: a.max_iters,
        bound_every: a.bound_every,
        solver: a.solver.clone(),
        time_limit: a.time_limit.map(|d| d.as_secs_f64()),
        ..Default::default()
    };
    let mesh = Arc::new(Mesh::connect(client_config(m)?).await?);
    let found = mesh.wait_for_workers(a.solver.as_deref(), m.wait).await?;
    let slots: u32 = found.iter().map(|w| w.slots).sum();
    if !a.quiet {
        eprintln!(
            "ph: {} scenarios of `{}` on {} worker(s), {slots} slot(s)",
            spec.scenarios.len(),
            spec.name,
            found.len()
        );
        eprintln!("{:>5} {:>14} {:>18} {:>9} {:>10}", "iter", "conv", "bound", "seconds", "bytes");
    }
    let quiet = a.quiet;
    let result = ph::run(mesh.clone(), &spec, &opts, |it| {
        if !quiet {
            eprintln!(
                "{:>5} {:>14.6e} {:>18.6} {:>9.2} {:>10}",
                it.iter, it.conv, it.bound, it.seconds, it.bytes
            );
        }
    })
    .await?;
    let ef = if a.ef {
        let t = Instant::now();
        let models = spec
            .scenarios
            .iter()
            .map(|(p, prob)| model::read_file(p, None).map(|m| (m, *prob)))
            .collect::<Result<Vec<_>, _>>()?;
        let nonants: Vec<Vec<usize>> = models
            .iter()
            .map(|(m, _)| {
                result.xbar.iter().filter_map(|(n, _)| m.cols.iter().position(|c| &c.name == n)).collect()
            })
            .collect();
        let ef = meshsolve::ph::augment::extensive_form(&models, &nonants);
        let dir = std::env::temp_dir().join(format!("meshsolve-ef-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-ef.mps", spec.name));
        ef.write_mps(&mut std::io::BufWriter::new(std::fs::File::create(&path)?))?;
        let job = JobOptions { solver: a.solver.clone(), prechecked: true, ..Default::default() };
        let r = meshsolve::dispatch::solve_file(&mesh, &path, &job).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        let sign = if models.first().is_some_and(|(m, _)| m.sense == meshsolve::model::Sense::Maximize) {
            -1.0
        } else {
            1.0
        };
        Some((r.solution.status, r.solution.objective.map(|o| sign * o), t.elapsed().as_secs_f64(), r.worker))
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&result)?;
        v["xbar"] = serde_json::Value::Object(
            result.xbar.iter().map(|(n, x)| (n.clone(), serde_json::json!(x))).collect(),
        );
        if let Some((st, obj, secs, worker)) = &ef {
            v["ef"] = serde_json::json!({"status": st.as_str(), "objective": obj, "seconds": secs, "worker": worker});
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: progressive hedging, {} scenarios", result.name, result.scenarios);
        println!(
            "  {} after {} iterations ({:.2} s), proximal term {}",
            if result.converged { "converged" } else { "stopped at the iteration cap" },
            result.iterations,
            result.seconds,
            if result.quadratic { "quadratic" } else { "linearised" }
        );
        match result.expected_cost {
            Some(e) => println!("  expected cost of xbar   {e:.6}   (first stage fixed in every scenario)"),
            None => println!("  expected cost of xbar   infeasible for some scenario"),
        }
        println!("  trivial bound           {:.6}   (wait-and-see)", result.trivial_bound);
        println!("  Lagrangian bound        {:.6}", result.lagrangian_bound);
        if let Some(g) = result.gap {
            println!("  gap                     {:.4} %", 100.0 * g);
        }
        if let Some((st, obj, secs, worker)) = &ef {
            println!(
                "  extensive form          {} {}   ({secs:.2} s on {worker})",
                obj.map(|o| format!("{o:.6}")).unwrap_or_default(),
                st
            );
        }
        let width = result.xbar.iter().map(|(n, _)| n.len()).max().unwrap_or(8).max(8);
        println!("  {:<width$}  xbar", "variable");
        for (n, x) in &result.xbar {
            println!("  {n:<width$}  {}", fmt_value(*x));
        }
    }
    mesh.close().await;
    Ok(if result.converged { 0 } else { 5 })
}

async fn bench(m: &MeshArgs, b: BenchArgs) -> anyhow::Result<u8> {
    let opts = crate::bench::BenchOptions {
        local: b.local,
        slots: b.slots,
        repeats: b.repeats,
        tiny: b.tiny,
        transfer_mb: b.transfer_mb,
        seed: b.seed,
        exe: std::env::current_exe()?,
        ph_scenarios: b.ph_scenarios,
    };
    let t = Instant::now();
    let figs = crate::bench::run(&opts, client_config(m)?, |s| eprintln!("bench: {s}")).await?;
    if b.json {
        println!("{}", serde_json::to_string_pretty(&figs)?);
    } else {
        print!("{}", crate::bench::table(&figs));
        println!("({:.0} s in all)", t.elapsed().as_secs_f64());
    }
    Ok(0)
}

async fn demo(m: &MeshArgs) -> anyhow::Result<u8> {
    let mut local = LocalWorkers::new(1, m.interfaces.clone())?;
    let model = local.home().join("farmer.lp");
    std::fs::write(&model, crate::examples::FARMER_LP)?;
    println!(
        "demo: starting 2 workers in namespace `{}` (mDNS on {})",
        local.namespace,
        local.interfaces.join(",")
    );
    let t0 = Instant::now();
    local.spawn_many(2)?;
    let cfg = local.client_config();
    let result = async {
        let mesh = Arc::new(Mesh::connect(cfg).await?);
        let found = mesh.wait_for_workers(None, Duration::from_secs(10)).await?;
        println!(
            "demo: found {} worker(s) in {:.2}s: {}",
            found.len(),
            t0.elapsed().as_secs_f64(),
            found.iter().map(|w| w.instance.as_str()).collect::<Vec<_>>().join(", ")
        );
        let res = meshsolve::dispatch::solve_file(&mesh, &model, &JobOptions::default()).await;
        let rec = record_of(&model, &res.as_ref().map_err(|e| JobError::Failed(e.to_string())).cloned());
        let res = res?;
        print_record(&model, &rec, false);
        println!(
            "demo: expected objective -108390 (profit 108,390: wheat 170, corn 80, sugar beets 250 acres)"
        );
        mesh.close().await;
        Ok::<_, anyhow::Error>(Outcome::from(res.solution.status).exit_code())
    }
    .await;
    local.stop().await;
    println!("demo: workers stopped");
    result
}
