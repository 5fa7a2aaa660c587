//! Test harness: real `meshworker` processes on loopback, a private namespace
//! and CA directory per test, and `meshsolve` runs with readable failures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WORKER: &str = env!("CARGO_BIN_EXE_meshworker");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_meshsolve");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique namespace name for this test process.
pub fn unique_ns(tag: &str) -> String {
    format!("t{}-{}-{}", std::process::id(), tag, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The project's shipped examples.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// `../shared/models/public`, when present (CI and developer machines; not a user's clone).
pub fn public_models() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/public");
    p.join("manifest.json").exists().then_some(p)
}

/// A namespace with its own CA directory, and the workers started in it.
pub struct Mesh {
    pub ns: String,
    pub home: tempfile::TempDir,
    pub workers: Vec<Worker>,
}

pub struct Worker {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the worker process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Waits for the worker to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mesh {
    pub fn new(tag: &str) -> Mesh {
        Mesh { ns: unique_ns(tag), home: tempfile::tempdir().expect("temp dir"), workers: Vec::new() }
    }

    /// A second namespace sharing nothing with this one.
    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    /// Starts a worker with extra flags and waits until it listens.
    pub fn start_worker(&mut self, extra: &[&str]) -> &Worker {
        self.start_worker_env(extra, &[])
    }

    /// Starts a worker with extra flags and environment variables.
    pub fn start_worker_env(&mut self, extra: &[&str], env: &[(&str, &Path)]) -> &Worker {
        let log = self.home.path().join(format!("worker{}.log", self.workers.len()));
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(WORKER)
            .args(["--namespace", &self.ns, "--interface", "lo", "--log-level", "info"])
            .args(extra)
            .envs(env.iter().copied())
            .env("MESHSOLVE_HOME", self.home.path())
            .env_remove("RUST_LOG")
            .env_remove("MESHSOLVE_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start meshworker");
        let t = Instant::now();
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("meshworker: listening on ")) {
                let port = line.rsplit(':').next().unwrap().trim().to_string();
                break format!("127.0.0.1:{port}");
            }
            assert!(t.elapsed() < Duration::from_secs(20), "worker did not start; log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        self.workers.push(Worker { child, addr, log });
        self.workers.last().unwrap()
    }

    /// A `meshsolve` command in this namespace (mDNS on loopback only).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(CLIENT);
        c.env("MESHSOLVE_HOME", self.home.path())
            .env("MESHSOLVE_NAMESPACE", &self.ns)
            .env("MESHSOLVE_INTERFACE", "lo")
            .env_remove("RUST_LOG");
        c
    }

    /// Starts `meshsolve ARGS` in the background, stdout and stderr captured.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start meshsolve")
    }

    /// Runs `meshsolve ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run meshsolve")
    }

    /// A library client of this namespace (mDNS on loopback only).
    pub fn client_config(&self) -> meshsolve::client::ClientConfig {
        meshsolve::client::ClientConfig {
            namespace: self.ns.clone(),
            home: self.home.path().to_path_buf(),
            interfaces: vec!["lo".into()],
            static_workers: Vec::new(),
            name_server: None,
            mdns: true,
            via_name_server: false,
        }
    }

    /// Polls `meshsolve workers --json` until `n` workers are listed.
    pub fn wait_for_workers(&self, n: usize) -> Vec<serde_json::Value> {
        let t = Instant::now();
        loop {
            let out = self.run(&["workers", "--json", "--wait", "1s"]);
            if out.status.success() {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("workers --json");
                if v.len() >= n {
                    return v;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "only some workers visible after 30 s: {}",
                show(&out)
            );
        }
    }
}

/// Formats a command's output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses `--json` output of a single model.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(out)))
}

/// `|got - want| <= tol * max(1, |want|)`.
pub fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

/// Pids of the direct children of `pid` that are solving (a worker's spare
/// solver processes, waiting for a job, are left out).
pub fn children_of(pid: u32) -> Vec<u32> {
    children_named(pid, Some(meshsolve::solver::process::BUSY_NAME))
}

/// Pids of every direct child of `pid` (waiting spares included).
pub fn all_children_of(pid: u32) -> Vec<u32> {
    children_named(pid, None)
}

fn children_named(pid: u32, name: Option<&str>) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // `pid (comm) state ppid ...`
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
                let comm = &stat[open + 1..close];
                let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
                if f.get(1).and_then(|x| x.parse::<u32>().ok()) == Some(pid) && name.is_none_or(|n| n == comm)
                {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Polls `cond` every 20 ms; fails the test with `what` after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(secs), "{what} (waited {secs} s)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first child process of `pid` (a worker's solver), waiting up to 20 s for one.
pub fn first_child(pid: u32) -> u32 {
    let mut found = None;
    wait_until(20, "no solver process appeared", || {
        found = children_of(pid).into_iter().next();
        found.is_some()
    });
    found.expect("set by wait_until")
}

/// Whether `pid` is alive (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// A 0-1 "market split" model (Cornuéjols & Dawande): tiny, and far beyond
/// plain branch and bound, so its solve runs until it is cancelled.
pub fn hard_model(dir: &Path) -> PathBuf {
    let (m, n) = (4, 36);
    let mut seed: u64 = 12345;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % 100) as i64
    };
    let mut s = String::from("Minimize\n obj: ");
    for i in 0..m {
        s.push_str(&format!("{} sp{i} + {} sn{i} ", if i > 0 { "+" } else { "" }, 1));
    }
    s.push_str("\nSubject To\n");
    for i in 0..m {
        let coefs: Vec<i64> = (0..n).map(|_| rnd()).collect();
        let rhs: i64 = coefs.iter().sum::<i64>() / 2;
        let terms: Vec<String> = coefs.iter().enumerate().map(|(j, c)| format!("{c} x{j}")).collect();
        s.push_str(&format!(" r{i}: {} + sp{i} - sn{i} = {rhs}\n", terms.join(" + ")));
    }
    s.push_str("Binary\n");
    for j in 0..n {
        s.push_str(&format!(" x{j}"));
    }
    s.push_str("\nEnd\n");
    let p = dir.join("marketsplit.lp");
    std::fs::write(&p, s).unwrap();
    p
}

/// A test that cannot run on this machine. Under CI (`CI=true`) that is a
/// failure; elsewhere a line on the terminal says so (written past libtest's
/// capture, so a plain `cargo test` shows it).
pub fn prerequisite_missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("a prerequisite is missing under CI, so this test would test nothing: {what}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOT RUN (prerequisite missing): {what}");
}

/// The first executable called `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    meshsolve::solver::found::which(name)
}

/// A valid LP of `n` columns and one row over all of them (about 18 bytes per
/// column): a model of a chosen size for limits and disks.
pub fn wide_lp(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|j| format!("x{j}")).collect();
    format!("Minimize\n obj: {}\nSubject To\n c: {} >= 1\nEnd\n", terms.join(" + "), terms.join(" + "))
}
