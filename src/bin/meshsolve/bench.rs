//! `meshsolve bench`: what the mesh costs and gains, measured against solving
//! locally in the same run. Every figure is the median of repeated runs with
//! its min and max; every comparison is a ratio of two figures of this run.
//! Models are generated, so no data files are needed. Tests call [`run`] with
//! small sizes to check that it works (not how fast).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::local::LocalWorkers;
use meshsolve::client::{ClientConfig, JobOptions, Mesh};
use meshsolve::dispatch::{wait_all, Queue, QueueOptions};
use meshsolve::model::{self, Format};
use meshsolve::solver::{self, SolveOptions};

/// Tiny jobs sent before the per-job figures are measured, for at least this
/// long: right after the cold-start figures a job costs up to half as much
/// again for its first hundreds (caches, the machine's idle states), and the
/// per-job figures are about the steady state.
const DISPATCH_WARM_UP: Duration = Duration::from_millis(300);

/// What to measure and how much.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Start this many local workers (loopback) instead of using the namespace's.
    pub local: Option<u32>,
    /// Slots per local worker.
    pub slots: u32,
    /// Repeats per figure.
    pub repeats: usize,
    /// Tiny models in the throughput run.
    pub tiny: usize,
    /// Size of the generated transfer model, MB (0 skips the transfer figures).
    pub transfer_mb: u64,
    /// Seed of the generated models.
    pub seed: u64,
    /// The `meshsolve` executable, for the process-per-file baselines.
    pub exe: PathBuf,
    /// Scenarios of the farmer progressive-hedging run (0 skips it).
    pub ph_scenarios: usize,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Group (dispatch, throughput, transfer, discovery, overhead).
    pub group: &'static str,
    /// What was measured.
    pub name: String,
    /// Unit of median/min/max.
    pub unit: &'static str,
    /// Median of the repeats.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Repeats.
    pub n: usize,
    /// Comparison with a baseline of this run, e.g. "x3.2 vs in-process".
    pub ratio: Option<String>,
}

pub(crate) fn figure(
    group: &'static str,
    name: impl Into<String>,
    unit: &'static str,
    mut xs: Vec<f64>,
) -> Figure {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Figure {
        group,
        name: name.into(),
        unit,
        median,
        min: xs.first().copied().unwrap_or(f64::NAN),
        max: xs.last().copied().unwrap_or(f64::NAN),
        n,
        ratio: None,
    }
}

pub(crate) fn ratio(f: &mut Figure, base: &Figure, what: &str) {
    f.ratio = Some(format!("x{:.2} vs {what}", f.median / base.median));
}

/// A tiny knapsack MIP, different for each `i`.
pub fn tiny_model(seed: u64, i: usize) -> String {
    let k = (seed as usize).wrapping_add(i);
    format!(
        "Maximize\n v: {} a + {} b + 6 c + 4 d + 3 e\nSubject To\n w: 5 a + 7 b + 4 c + 3 d + 2 e <= {}\nBinary\n a b c d e\nEnd\n",
        8 + k % 5,
        11 + k % 3,
        10 + k % 17
    )
}

/// Writes an LP in free MPS of about `mb` megabytes (a transportation-like model).
pub fn write_big_mps(path: &Path, mb: u64) -> std::io::Result<u64> {
    use std::io::Write;
    let target = mb * 1_000_000;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let rows = 1000usize;
    writeln!(out, "NAME big\nROWS\n N cost")?;
    for r in 0..rows {
        writeln!(out, " G d{r}")?;
    }
    writeln!(out, "COLUMNS")?;
    let mut written = 0u64;
    let mut j = 0usize;
    while written < target {
        let line = format!(" x{j} cost {} d{} 1 d{} 1\n", 1 + j % 97, j % rows, (j * 7 + 3) % rows);
        written += line.len() as u64;
        out.write_all(line.as_bytes())?;
        j += 1;
    }
    writeln!(out, "RHS")?;
    for r in 0..rows {
        writeln!(out, " rhs d{r} 1")?;
    }
    writeln!(out, "ENDATA")?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Runs the benchmark; `cfg` is used when `opts.local` is `None`.
pub async fn run(
    opts: &BenchOptions,
    cfg: ClientConfig,
    mut log: impl FnMut(&str),
) -> anyhow::Result<Vec<Figure>> {
    let dir = std::env::temp_dir().join(format!("meshsolve-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(opts, cfg, &dir, &mut log).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What every figure group needs: the options, the mesh and the models.
struct Ctx<'a> {
    opts: &'a BenchOptions,
    cfg: ClientConfig,
    dir: &'a Path,
    reps: usize,
    mesh: Arc<Mesh>,
    workers: Vec<meshsolve::protocol::WorkerAd>,
    total_slots: u32,
    solver_name: String,
    solver: Box<dyn meshsolve::solver::Solver>,
    /// A tiny model file, and the job options that send it to the workers' solver.
    tiny: PathBuf,
    job: JobOptions,
}

async fn run_in(
    opts: &BenchOptions,
    cfg: ClientConfig,
    dir: &Path,
    log: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<Figure>> {
    let reps = opts.repeats.max(1);
    let mut figs = Vec::new();
    let mut local = match opts.local {
        Some(n) => {
            let mut l = LocalWorkers::new(opts.slots, cfg.interfaces.clone())?;
            // Overheads are measured against the built-in solver run in this process.
            l.solver = Some(solver::default_solver().name().to_string());
            l.spawn_many(n)?;
            Some(l)
        }
        None => None,
    };
    let cfg = local.as_ref().map(|l| l.client_config()).unwrap_or(cfg);

    // Discovery, cold: a new client finding the workers.
    log("discovery: cold client finding workers");
    let mut cold = Vec::new();
    for _ in 0..reps.min(3) {
        let t = Instant::now();
        let m = Mesh::connect(cfg.clone()).await?;
        m.wait_for_workers(None, Duration::from_secs(10)).await?;
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        m.close().await;
    }
    figs.push(figure(
        "overhead",
        "discovery: client start to workers listed (incl. 0.3 s settle)",
        "ms",
        cold,
    ));
    let mesh = Arc::new(Mesh::connect(cfg.clone()).await?);
    let workers = mesh.wait_for_workers(None, Duration::from_secs(10)).await?;
    let total_slots: u32 = workers.iter().map(|w| w.slots).sum();
    let solver_name = workers[0].solvers.first().map(|s| s.name.clone()).unwrap_or_else(|| "microlp".into());
    let solver = solver::by_name(&solver_name).context("the workers' solver is not in this build")?;
    log(&format!("{} worker(s), {total_slots} slot(s), solver {solver_name}", workers.len()));
    let tiny = dir.join("tiny.lp");
    std::fs::write(&tiny, tiny_model(opts.seed, 0))?;
    let job = JobOptions { solver: Some(solver_name.clone()), prechecked: true, ..Default::default() };
    let c = Ctx { opts, cfg, dir, reps, mesh, workers, total_slots, solver_name, solver, tiny, job };
    figs.extend(cold_start(&c).await?);
    figs.extend(dispatch(&c).await?);
    log(&format!("throughput: {} tiny models", opts.tiny.max(1)));
    figs.extend(throughput(&c).await?);
    if opts.transfer_mb > 0 {
        log(&format!("transfer: generating a {} MB model", opts.transfer_mb));
        figs.extend(transfer(&c).await?);
    }
    if let Some(l) = local.as_mut() {
        log("discovery: new workers appearing, killed workers dropping");
        figs.extend(discovery(&c, l).await?);
    }
    if opts.ph_scenarios > 0 {
        log(&format!("progressive hedging: farmer with {} scenarios", opts.ph_scenarios));
        figs.extend(ph_figures(&c.mesh, dir, opts.ph_scenarios, reps).await?);
    }
    c.mesh.close().await;
    if let Some(l) = local.as_mut() {
        match name_server_figures(l, &c.tiny, reps, log).await {
            Ok(f) => figs.extend(f),
            Err(e) => log(&format!("name server figures skipped: {e:#}")),
        }
    }
    if let Some(l) = local {
        l.stop().await;
    }
    Ok(figs)
}

/// Farmer PH with `n` scenarios: wall time and iterations, beside the extensive form.
async fn ph_figures(mesh: &Arc<Mesh>, dir: &Path, n: usize, reps: usize) -> anyhow::Result<Vec<Figure>> {
    let pdir = dir.join(format!("farmer{n}"));
    meshsolve::ph::farmer::write(&pdir, n)?;
    let spec = meshsolve::ph::PhSpec::load(&pdir.join("farmer.toml"), &[])?;
    let (mut wall, mut iters, mut bytes, mut ef) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps.min(3) {
        let t = Instant::now();
        let r = meshsolve::ph::run(mesh.clone(), &spec, &meshsolve::ph::PhOptions::default(), |_| {}).await?;
        wall.push(t.elapsed().as_secs_f64() * 1000.0);
        iters.push(r.iterations as f64);
        let later: Vec<f64> = r.history.iter().skip(1).map(|h| h.bytes as f64).collect();
        if !later.is_empty() {
            bytes.push(later.iter().sum::<f64>() / later.len() as f64);
        }
        let r = meshsolve::ph::extensive::solve_extensive(mesh, &spec, None).await?;
        ef.push(r.seconds * 1000.0);
    }
    let base = figure("ph", format!("farmer {n} scenarios: extensive form on one worker"), "ms", ef);
    let mut f =
        figure("ph", format!("farmer {n} scenarios: PH wall time (rho 1, threshold 1e-4)"), "ms", wall);
    ratio(&mut f, &base, "extensive form");
    Ok(vec![
        f,
        base,
        figure("ph", format!("farmer {n} scenarios: PH iterations"), "iter", iters),
        figure(
            "ph",
            format!("farmer {n} scenarios: bytes sent per iteration after the first"),
            "bytes",
            bytes,
        ),
    ])
}

/// Starts `meshns` next to this executable on a free loopback port.
fn start_meshns(l: &LocalWorkers, port: u16) -> anyhow::Result<tokio::process::Child> {
    let exe = LocalWorkers::worker_exe()?.with_file_name("meshns");
    let mut cmd = tokio::process::Command::new(&exe);
    // If this process dies (even by a signal), the child gets SIGTERM and stops cleanly.
    crate::local::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    cmd.args([
        "--namespace",
        &l.namespace,
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--log-level",
        "warn",
    ])
    .env("MESHSOLVE_HOME", l.home())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .with_context(|| format!("cannot start {}", exe.display()))
}

/// Relay against direct per job, and how fast workers re-register after a name-server restart.
async fn name_server_figures(
    l: &mut LocalWorkers,
    tiny: &Path,
    reps: usize,
    log: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<Figure>> {
    log("name server: relay against direct, re-registration after a restart");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let ns_addr = format!("127.0.0.1:{port}");
    let mut ns = start_meshns(l, port)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    l.extra_args = vec!["--no-mdns".into(), "--ns".into(), ns_addr.clone()];
    l.spawn()?;
    l.extra_args.clear();
    let mut cfg = l.client_config();
    cfg.mdns = false;
    cfg.name_server = Some(ns_addr.clone());
    let direct = Arc::new(Mesh::connect(cfg.clone()).await?);
    direct.wait_for_workers(None, Duration::from_secs(10)).await?;
    cfg.via_name_server = true;
    let relayed = Arc::new(Mesh::connect(cfg).await?);
    relayed.wait_for_workers(None, Duration::from_secs(10)).await?;
    let job = JobOptions { prechecked: true, ..Default::default() };
    let (qd, qr) =
        (Queue::new(&direct, QueueOptions::default()), Queue::new(&relayed, QueueOptions::default()));
    let (mut d, mut r) = (Vec::new(), Vec::new());
    for _ in 0..reps * 10 {
        let t = Instant::now();
        qd.submit(tiny, &job).await?.wait().await?;
        d.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        qr.submit(tiny, &job).await?.wait().await?;
        r.push(t.elapsed().as_secs_f64() * 1e6);
    }
    qd.close().await;
    qr.close().await;
    let base = figure("nameserver", "one tiny model, worker reached directly", "us", d);
    let mut f = figure("nameserver", "one tiny model relayed by the name server", "us", r);
    ratio(&mut f, &base, "direct");
    // Restart the name server; time until the worker is registered again.
    let mut back = Vec::new();
    for _ in 0..reps.min(3) {
        let _ = ns.kill().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        ns = start_meshns(l, port)?;
        loop {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the worker did not register again within 30 s");
            }
            if direct.name_server_workers().await.is_ok_and(|w| !w.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        back.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = ns.kill().await;
    for m in [direct, relayed] {
        m.close().await;
    }
    Ok(vec![
        f,
        base,
        figure("nameserver", "name server restart until the worker is listed again", "ms", back),
    ])
}

async fn client_process(exe: &Path, cfg: &ClientConfig, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let st = tokio::process::Command::new(exe)
        .args(["--quiet", "--namespace", &cfg.namespace])
        .args(args)
        .env("MESHSOLVE_HOME", &cfg.home)
        .env("MESHSOLVE_INTERFACE", cfg.interfaces.join(","))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    if !st.success() {
        bail!("`meshsolve {:?}` failed", args);
    }
    Ok(())
}

async fn local_process(
    exe: impl AsRef<Path>,
    file: impl AsRef<Path>,
    solver: impl AsRef<str>,
) -> anyhow::Result<()> {
    let st = tokio::process::Command::new(exe.as_ref())
        .args(["--local", "--quiet", "--solver", solver.as_ref()])
        .arg(file.as_ref())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    if !st.success() {
        bail!("local solve of {} failed", file.as_ref().display());
    }
    Ok(())
}

/// Formats figures as a table.
pub fn table(figs: &[Figure]) -> String {
    let mut s = format!(
        "{:<11} {:<70} {:>12} {:>12} {:>12} {:<9} {}\n",
        "group", "measurement", "median", "min", "max", "unit", "comparison"
    );
    for f in figs {
        s.push_str(&format!(
            "{:<11} {:<70} {:>12.1} {:>12.1} {:>12.1} {:<9} {}\n",
            f.group,
            f.name,
            f.median,
            f.min,
            f.max,
            f.unit,
            f.ratio.as_deref().unwrap_or("")
        ));
    }
    s
}

/// `meshsolve bench`: flags to options, run, print.
pub(crate) async fn command(m: &crate::args::MeshConfig, b: crate::args::BenchArgs) -> anyhow::Result<u8> {
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
    let figs = if b.backends {
        let (models, repeats) = (b.models.clone(), b.repeats);
        tokio::task::spawn_blocking(move || {
            crate::bench_backends::run(models.as_deref(), repeats, |s| eprintln!("bench: {s}"))
        })
        .await??
    } else {
        run(&opts, m.client.clone(), |s| eprintln!("bench: {s}")).await?
    };
    if b.json {
        println!("{}", serde_json::to_string_pretty(&figs)?);
    } else {
        print!("{}", crate::bench::table(&figs));
        println!("({:.0} s in all)", t.elapsed().as_secs_f64());
    }
    Ok(0)
}

/// Cold end to end: a `meshsolve MODEL` process against `meshsolve --local MODEL`.
async fn cold_start(c: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    // Cold end to end: a `meshsolve MODEL` process against `meshsolve --local MODEL`.
    let farmer = c.dir.join("farmer.lp");
    std::fs::write(&farmer, crate::examples::FARMER_LP)?;
    let mut cold_mesh = Vec::new();
    let mut cold_local = Vec::new();
    for _ in 0..c.reps {
        let t = Instant::now();
        client_process(&c.opts.exe, &c.cfg, &[farmer.as_os_str()]).await?;
        cold_mesh.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client_process(&c.opts.exe, &c.cfg, &["--local".as_ref(), farmer.as_os_str()]).await?;
        cold_local.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let base = figure("overhead", "`meshsolve --local farmer.lp`, process start to exit", "ms", cold_local);
    let mut f =
        figure("overhead", "`meshsolve farmer.lp` on the mesh, process start to exit", "ms", cold_mesh);
    ratio(&mut f, &base, "local");
    figs.push(f);
    figs.push(base);
    Ok(figs)
}

/// Dispatch overhead: one tiny model in-process and through the mesh, and where the time goes.
async fn dispatch(c: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    // Dispatch overhead: one tiny model, in-process vs through the c.mesh.
    let mut inproc = Vec::new();
    for _ in 0..c.reps * 5 {
        let t = Instant::now();
        let m = model::read_file(&c.tiny, Some(Format::Lp))?;
        let _ = c.solver.solve(&m, &SolveOptions::default())?;
        inproc.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let queue = Queue::new(&c.mesh, QueueOptions::default());
    // Warm-up (see DISPATCH_WARM_UP).
    let t = Instant::now();
    let mut warm = 0;
    while t.elapsed() < DISPATCH_WARM_UP || warm < 50 {
        queue.submit(&c.tiny, &c.job).await?.wait().await?;
        warm += 1;
    }
    let mut via = Vec::new();
    let mut worker_side = Vec::new();
    let mut above = Vec::new();
    for _ in 0..c.reps * 20 {
        let t = Instant::now();
        let r = queue.submit(&c.tiny, &c.job).await?.wait().await?;
        let total = t.elapsed().as_secs_f64() * 1e6;
        via.push(total);
        worker_side.push(r.solution.solve_seconds * 1e6);
        above.push(total - r.solution.solve_seconds * 1e6);
    }
    // The same job sent straight to one worker: what the queue adds.
    let mut direct = Vec::new();
    let header = Mesh::header(&c.tiny, &c.job)?;
    for _ in 0..c.reps * 20 {
        let t = Instant::now();
        let (sol, _) = c
            .mesh
            .send_job(&c.workers[0], &c.tiny, &header, &|_| {})
            .await
            .map_err(|e| anyhow::anyhow!("tiny job failed: {e:?}"))?;
        direct.push(t.elapsed().as_secs_f64() * 1e6 - sol.solve_seconds * 1e6);
    }
    let mut rtt = Vec::new();
    for _ in 0..c.reps * 5 {
        let t = Instant::now();
        c.mesh.status(&c.workers[0]).await?;
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let base = figure("dispatch", "one tiny model, read + solve in this process", "us", inproc);
    let mut f = figure("dispatch", "one tiny model through the mesh (warm connection)", "us", via);
    ratio(&mut f, &base, "in-process");
    figs.push(base);
    figs.push(f);
    figs.push(figure("dispatch", "solver time inside the worker's solver process", "us", worker_side));
    figs.push(figure(
        "dispatch",
        "one tiny model through the mesh, above the solver's own time",
        "us",
        above,
    ));
    figs.push(figure(
        "dispatch",
        "same, sent straight to one worker (no queue), above the solver's own time",
        "us",
        direct,
    ));
    figs.push(figure("dispatch", "request round trip on an established connection", "us", rtt));

    // Where the per-job time goes.
    let mut spawn = Vec::new();
    for _ in 0..c.reps * 3 {
        let t = Instant::now();
        let st = std::process::Command::new(&c.opts.exe).arg("--version").stdout(Stdio::null()).status()?;
        if !st.success() {
            bail!("cannot run {}", c.opts.exe.display());
        }
        spawn.push(t.elapsed().as_secs_f64() * 1e6);
    }
    figs.push(figure(
        "dispatch",
        "process start (not paid per job: solver processes are started ahead and reused)",
        "us",
        spawn,
    ));
    let mut handshake = Vec::new();
    for _ in 0..c.reps.min(5) {
        let mut direct = c.cfg.clone();
        direct.static_workers = vec![c.workers[0].best_addr().map(|a| a.to_string()).unwrap_or_default()];
        let m = Mesh::connect(direct).await?;
        let t = Instant::now();
        m.status(&c.workers[0]).await?;
        handshake.push(t.elapsed().as_secs_f64() * 1e6);
        m.close().await;
    }
    figs.push(figure("dispatch", "new QUIC + mutual-TLS connection and first request", "us", handshake));
    let sol = queue.submit(&c.tiny, &c.job).await?.wait().await?.solution;
    let mut ser = Vec::new();
    for _ in 0..c.reps * 20 {
        let t = Instant::now();
        let bytes = meshsolve::protocol::encode(&meshsolve::protocol::Response::Done(sol.clone()))?;
        let _: meshsolve::protocol::Response = ciborium::from_reader(&bytes[4..])?;
        ser.push(t.elapsed().as_secs_f64() * 1e6);
    }
    figs.push(figure("dispatch", "CBOR encode + decode of the solution message", "us", ser));

    queue.close().await;
    Ok(figs)
}

/// Throughput: many tiny models over the mesh against local processes.
async fn throughput(c: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let queue = Queue::new(&c.mesh, QueueOptions::default());
    // Throughput: K tiny models.
    let k = c.opts.tiny.max(1);
    let tdir = c.dir.join("tiny");
    std::fs::create_dir_all(&tdir)?;
    let files: Vec<PathBuf> = (0..k)
        .map(|i| {
            let p = tdir.join(format!("t{i:05}.lp"));
            std::fs::write(&p, tiny_model(c.opts.seed, i)).map(|_| p)
        })
        .collect::<Result<_, _>>()?;
    let mut mesh_rate = Vec::new();
    let mut seq_inproc = Vec::new();
    let mut seq_proc = Vec::new();
    let mut par_proc = Vec::new();
    for _ in 0..c.reps {
        let t = Instant::now();
        let mut hs = Vec::with_capacity(k);
        for f in &files {
            hs.push(queue.submit(f, &c.job).await?);
        }
        for r in wait_all(hs).await {
            r?;
        }
        mesh_rate.push(k as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        for f in &files {
            let m = model::read_file(f, Some(Format::Lp))?;
            c.solver.solve(&m, &SolveOptions::default())?;
        }
        seq_inproc.push(k as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        for f in &files {
            local_process(&c.opts.exe, f, &c.solver_name).await?;
        }
        seq_proc.push(k as f64 / t.elapsed().as_secs_f64());

        let p = c.total_slots.max(1) as usize;
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let mut it = files.iter();
        for f in it.by_ref().take(p) {
            set.spawn(local_process(c.opts.exe.clone(), f.clone(), c.solver_name.clone()));
        }
        while let Some(r) = set.join_next().await {
            r??;
            if let Some(f) = it.next() {
                set.spawn(local_process(c.opts.exe.clone(), f.clone(), c.solver_name.clone()));
            }
        }
        par_proc.push(k as f64 / t.elapsed().as_secs_f64());
    }
    let mut fm = figure(
        "throughput",
        format!("{k} tiny models over the mesh ({} slots)", c.total_slots),
        "models/s",
        mesh_rate,
    );
    let b1 = figure("throughput", "same files, one after another in one process", "models/s", seq_inproc);
    let b2 = figure("throughput", "same files, one `meshsolve --local` process each", "models/s", seq_proc);
    let b3 = figure(
        "throughput",
        format!("same files, {} local processes at a time (xargs -P)", c.total_slots),
        "models/s",
        par_proc,
    );
    let mut fm2 = fm.clone();
    let mut fm3 = fm.clone();
    ratio(&mut fm, &b1, "one process");
    ratio(&mut fm2, &b2, "process per file");
    ratio(&mut fm3, &b3, "xargs -P");
    fm.ratio = Some(format!(
        "{}; {}; {}",
        fm.ratio.take().unwrap_or_default(),
        fm2.ratio.unwrap_or_default(),
        fm3.ratio.unwrap_or_default()
    ));
    figs.extend([fm, b1, b2, b3]);

    queue.close().await;
    Ok(figs)
}

/// Transfer: a large model file against the raw QUIC stream.
async fn transfer(c: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    // Transfer.
    let big = c.dir.join("big.mps");
    let (path, mb) = (big.clone(), c.opts.transfer_mb);
    let size = tokio::task::spawn_blocking(move || write_big_mps(&path, mb)).await??;
    let header = Mesh::header(&big, &JobOptions::default())?;
    let mut up = Vec::new();
    let mut raw = Vec::new();
    // Three pairs per repeat: a single upload's rate moves by a quarter
    // between runs on a busy box; the median of more of them much less.
    for _ in 0..c.reps * 3 {
        let t = Instant::now();
        c.mesh.upload(&c.workers[0], &big, &header).await?;
        up.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        c.mesh.discard(&c.workers[0], size).await?;
        raw.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    let base = figure("transfer", "raw QUIC stream, same endpoints", "MB/s", raw);
    let mut f = figure(
        "transfer",
        format!("{:.0} MB model file to a worker (on its disk)", size as f64 / 1e6),
        "MB/s",
        up,
    );
    ratio(&mut f, &base, "raw QUIC");
    figs.push(f);
    figs.push(base);
    Ok(figs)
}

/// Discovery of new workers, loss of killed ones, and re-dispatch of a killed worker's job.
async fn discovery(c: &Ctx<'_>, l: &mut LocalWorkers) -> anyhow::Result<Vec<Figure>> {
    let mut figs = Vec::new();
    // Discovery of a new worker, and loss of a killed one (local workers only).
    let mut appear = Vec::new();
    let mut lost = Vec::new();
    for _ in 0..c.reps.min(3) {
        let before: Vec<String> = c.mesh.workers().into_iter().map(|w| w.instance).collect();
        let t = Instant::now();
        let idx = l.spawn()?;
        let ad = loop {
            if let Some(w) = c.mesh.workers().into_iter().find(|w| !before.contains(&w.instance)) {
                break w;
            }
            if t.elapsed() > Duration::from_secs(20) {
                bail!("a new local worker did not appear within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        appear.push(t.elapsed().as_secs_f64() * 1000.0);
        c.mesh.status(&ad).await?;
        let addr = ad.best_addr().context("worker without address")?;
        let t = Instant::now();
        l.kill(idx).await;
        while !c.mesh.connection_lost(addr) {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("a killed worker was not noticed within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lost.push(t.elapsed().as_secs_f64() * 1000.0);
        c.mesh.mark_lost(&ad.instance);
    }
    figs.push(figure("discovery", "worker process start until the client lists it (mDNS)", "ms", appear));
    if c.mesh.workers().len() >= 2 {
        let mut moved = Vec::new();
        let slow = c.dir.join("slow.lp");
        std::fs::write(&slow, crate::examples::MARKET_SPLIT_LP)?;
        for _ in 0..c.reps.min(3) {
            // Make sure a spare worker is up, run one slow job, kill whichever worker runs it.
            let spare = l.spawn()?;
            let spare_name = l.name_of(spare);
            let t = Instant::now();
            while !c.mesh.workers().iter().any(|w| w.instance == spare_name) {
                if t.elapsed() > Duration::from_secs(10) {
                    bail!("spare worker did not appear");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (queue, mut events) = Queue::with_events(&c.mesh, QueueOptions::default());
            let slow_job = JobOptions {
                solve: SolveOptions { time_limit: Some(30.0), ..Default::default() },
                prechecked: true,
                ..Default::default()
            };
            let h = queue.submit(&slow, &slow_job).await?;
            let victim = loop {
                match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                    Ok(Some(meshsolve::dispatch::Event::Started { worker, .. })) => break worker,
                    Ok(Some(_)) => continue,
                    _ => bail!("the slow job did not start"),
                }
            };
            let idx = l.index_of(&victim).context("the job ran on a worker this benchmark did not start")?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            l.kill(idx).await;
            loop {
                match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                    Ok(Some(meshsolve::dispatch::Event::Started { attempt, .. })) if attempt > 1 => break,
                    Ok(Some(_)) => continue,
                    _ => bail!("the job of a killed worker was not re-dispatched within 30 s"),
                }
            }
            moved.push(t.elapsed().as_secs_f64() * 1000.0);
            h.cancel();
            queue.close().await;
        }
        figs.push(figure("discovery", "SIGKILL of a busy worker until its job runs elsewhere", "ms", moved));
    }
    figs.push(figure(
        "discovery",
        "SIGKILL of a worker until the client drops it (QUIC idle timeout)",
        "ms",
        lost,
    ));
    Ok(figs)
}
