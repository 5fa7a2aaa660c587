//! `meshsolve`: solve LP/MIP models on the workers of your namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use meshsolve::certs::{self, NamespaceCa};
use meshsolve::cli;
use meshsolve::client::{ClientConfig, JobOptions, JobResult, Mesh};
use meshsolve::model::{self, Format};
use meshsolve::solver::{self, Solution, SolveOptions, Status};

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
    /// Log level (error, warn, info, debug); RUST_LOG overrides it.
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
}

#[derive(Args, Debug, Clone)]
struct SolveArgs {
    /// Model files (.lp, .mps, .mps.gz, ...).
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
    /// Show, export or import your namespace's certificate authority.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Start two local workers, solve the shipped farmer model on them, stop them.
    Demo,
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
    Ok(c)
}

#[tokio::main]
async fn run(opts: Opts) -> anyhow::Result<u8> {
    match opts.cmd {
        Some(Cmd::Workers { json }) => workers(&opts.mesh, json).await,
        Some(Cmd::Shutdown) => shutdown(&opts.mesh).await,
        Some(Cmd::Certs(c)) => certs_cmd(&opts.mesh, c),
        Some(Cmd::Demo) => demo(&opts.mesh).await,
        None => solve(&opts.mesh, &opts.solve).await,
    }
}

fn exit_code(status: Status) -> u8 {
    match status {
        Status::Optimal | Status::Feasible => 0,
        Status::Infeasible => 3,
        Status::Unbounded => 4,
        Status::TimeLimit => 5,
    }
}

async fn solve(m: &MeshArgs, a: &SolveArgs) -> anyhow::Result<u8> {
    if a.models.is_empty() {
        bail!("no model given.\n  usage: meshsolve MODEL.lp [MORE...]   (see `meshsolve --help`; `meshsolve demo` runs a complete example)");
    }
    for p in &a.models {
        if !p.exists() {
            bail!("{}: no such file", p.display());
        }
    }
    let opts = JobOptions {
        solver: a.solver.clone(),
        solve: SolveOptions {
            time_limit: a.time_limit.map(|d| d.as_secs_f64()),
            mip_gap: a.mip_gap,
            extra: a.options.clone(),
        },
        format: a.format.map(|f| match f {
            FormatArg::Lp => Format::Lp,
            FormatArg::Mps => Format::Mps,
        }),
        max_attempts: None,
        prechecked: true,
    };
    if a.local {
        return solve_local(a, &opts);
    }
    // Check every model here, before looking for workers: a typo is reported at once.
    for p in &a.models {
        meshsolve::client::check_model(p, opts.format).await?;
    }
    let mesh = Arc::new(Mesh::connect(client_config(m)?).await?);
    let found = mesh.wait_for_workers(a.solver.as_deref(), m.wait).await?;
    tracing::info!(workers = found.len(), "workers found");
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in a.models.iter().enumerate() {
        let mesh = mesh.clone();
        let p = p.clone();
        let opts = opts.clone();
        set.spawn(async move { (i, mesh.solve_file(&p, &opts).await) });
    }
    let mut results: Vec<Option<Result<JobResult, meshsolve::client::ClientError>>> =
        a.models.iter().map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.context("a job task panicked")?;
        results[i] = Some(r);
    }
    let mut code = 0u8;
    let mut json_out = Vec::new();
    for (p, r) in a.models.iter().zip(results) {
        match r.expect("every job reported") {
            Ok(res) => {
                code = code.max(exit_code(res.solution.status));
                let v = result_json(p, &res.solution, Some(&res));
                if let Some(out) = &a.output {
                    write_output(out, &res.solution, &v)?;
                }
                if a.json {
                    json_out.push(v);
                } else {
                    print_solution(p, &res.solution, Some(&res), a.zeros);
                }
            }
            Err(e) => {
                code = code.max(1);
                eprintln!("meshsolve: error: {e}");
            }
        }
    }
    if a.json {
        print_json(json_out)?;
    }
    if let Ok(mesh) = Arc::try_unwrap(mesh) {
        mesh.close().await;
    }
    Ok(code)
}

fn solve_local(a: &SolveArgs, opts: &JobOptions) -> anyhow::Result<u8> {
    let s = match &a.solver {
        Some(n) => solver::by_name(n)?,
        None => solver::default_solver(),
    };
    let mut code = 0;
    let mut json_out = Vec::new();
    for p in &a.models {
        let model = model::read_file(p, opts.format)?;
        let sol = s.solve(&model, &opts.solve)?;
        code = code.max(exit_code(sol.status));
        let v = result_json(p, &sol, None);
        if let Some(out) = &a.output {
            write_output(out, &sol, &v)?;
        }
        if a.json {
            json_out.push(v);
        } else {
            print_solution(p, &sol, None, a.zeros);
        }
    }
    if a.json {
        print_json(json_out)?;
    }
    Ok(code)
}

fn print_json(mut v: Vec<serde_json::Value>) -> anyhow::Result<()> {
    let out = if v.len() == 1 { v.remove(0) } else { serde_json::Value::Array(v) };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn result_json(path: &Path, sol: &Solution, res: Option<&JobResult>) -> serde_json::Value {
    let values: serde_json::Map<String, serde_json::Value> =
        sol.values.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
    serde_json::json!({
        "model": path.display().to_string(),
        "status": sol.status.as_str(),
        "objective": sol.objective,
        "solver": sol.solver,
        "solve_seconds": sol.solve_seconds,
        "worker": res.map(|r| r.worker.clone()).unwrap_or_else(|| "local".into()),
        "address": res.map(|r| r.addr.to_string()),
        "wall_seconds": res.map(|r| r.wall_seconds),
        "attempts": res.map(|r| r.attempts).unwrap_or(1),
        "values": values,
    })
}

fn print_solution(path: &Path, sol: &Solution, res: Option<&JobResult>, zeros: bool) {
    let mut out = std::io::stdout().lock();
    let where_ = match res {
        Some(r) => format!("worker {} ({})", r.worker, r.addr),
        None => "this process".into(),
    };
    let _ = writeln!(out, "{}: {}", path.display(), sol.status);
    if let Some(obj) = sol.objective {
        let _ = writeln!(out, "  objective   {obj}");
    }
    let _ = writeln!(out, "  solved by   {where_}, {}", sol.solver);
    let _ = writeln!(out, "  solve time  {:.3} s", sol.solve_seconds);
    if let Some(r) = res {
        if r.attempts > 1 {
            let _ = writeln!(out, "  attempts    {}", r.attempts);
        }
    }
    if sol.values.is_empty() {
        return;
    }
    let shown: Vec<&(String, f64)> = sol.values.iter().filter(|(_, v)| zeros || v.abs() > 1e-9).collect();
    let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(8).max(8);
    let _ = writeln!(out, "  {:<width$}  value", "variable");
    for (n, v) in &shown {
        let _ = writeln!(out, "  {n:<width$}  {}", fmt_value(*v));
    }
    let hidden = sol.values.len() - shown.len();
    if hidden > 0 {
        let _ = writeln!(out, "  ({hidden} variables at zero not shown; --zeros lists them)");
    }
}

fn fmt_value(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() <= 1e-9 * r.abs().max(1.0) && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{v:.6}")
    }
}

fn write_output(out: &Path, sol: &Solution, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = if out.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(json)?
    } else {
        let mut s = format!(
            "# status {}\n# objective {}\n",
            sol.status,
            sol.objective.map(|o| o.to_string()).unwrap_or_else(|| "none".into())
        );
        for (n, v) in &sol.values {
            s.push_str(&format!("{n} {v}\n"));
        }
        s
    };
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))
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

/// The shipped farmer model, so the demo needs no files.
const FARMER_LP: &str = include_str!("../../examples/farmer/farmer.lp");

async fn demo(m: &MeshArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe()?;
    let worker_exe = exe.with_file_name("meshworker");
    if !worker_exe.exists() {
        bail!("{} not found; build both binaries first: `cargo build --release`", worker_exe.display());
    }
    let dir = std::env::temp_dir().join(format!("meshsolve-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let home = dir.join("home");
    let ns = format!("demo-{}", std::process::id());
    let ifaces = if m.interfaces.is_empty() { vec!["lo".to_string()] } else { m.interfaces.clone() };
    let model = dir.join("farmer.lp");
    std::fs::write(&model, FARMER_LP)?;
    println!("demo: starting 2 workers in namespace `{ns}` (mDNS on {})", ifaces.join(","));
    let mut children = Vec::new();
    for _ in 0..2 {
        let child = tokio::process::Command::new(&worker_exe)
            .args([
                "--namespace",
                &ns,
                "--slots",
                "1",
                "--interface",
                &ifaces.join(","),
                "--log-level",
                "warn",
            ])
            .env("MESHSOLVE_HOME", &home)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start meshworker")?;
        children.push(child);
    }
    let mut cfg = ClientConfig::from_env();
    cfg.namespace = ns.clone();
    cfg.home = home.clone();
    cfg.interfaces = ifaces;
    let t0 = Instant::now();
    let result = async {
        // Both workers create the CA at once; give them a moment so the client loads the same one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mesh = Mesh::connect(cfg).await?;
        let found = mesh.wait_for_workers(None, Duration::from_secs(10)).await?;
        println!(
            "demo: found {} worker(s) in {:.2}s: {}",
            found.len(),
            t0.elapsed().as_secs_f64(),
            found.iter().map(|w| w.instance.as_str()).collect::<Vec<_>>().join(", ")
        );
        let res = mesh.solve_file(&model, &JobOptions::default()).await?;
        print_solution(&model, &res.solution, Some(&res), false);
        println!(
            "demo: expected objective -108390 (profit 108,390: wheat 170, corn 80, sugar beets 250 acres)"
        );
        for w in &found {
            let _ = mesh.shutdown_worker(w).await;
        }
        mesh.close().await;
        Ok::<_, anyhow::Error>(exit_code(res.solution.status))
    }
    .await;
    for mut c in children {
        if tokio::time::timeout(Duration::from_secs(15), c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }
    println!("demo: workers stopped");
    let _ = std::fs::remove_dir_all(&dir);
    result
}
