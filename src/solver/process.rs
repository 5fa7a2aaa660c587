//! Runs one solve in a child process of the current executable.
//!
//! The worker starts `<own binary> --solve-child`, writes a [`ChildRequest`]
//! (CBOR) to its stdin and reads a [`ChildReply`] (CBOR) from its stdout. The
//! child sits in its own process group, gets SIGKILL when the worker dies
//! (`PR_SET_PDEATHSIG`), and is killed as a group on cancel or deadline, so no
//! solver process outlives its job or its worker, and a solver crash is a job
//! error, not a worker crash.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{by_name, Solution, SolveOptions, Solver};
use crate::model::{self, Format};
use crate::ph::augment::{self, Step, StepReply};

/// The first argument that turns a meshsolve binary into a solver child.
pub const CHILD_FLAG: &str = "--solve-child";

/// Largest reply a child may write (values of a very large model fit).
const MAX_REPLY: u64 = 1 << 30;

/// What the worker asks of the child.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildRequest {
    /// Model file on the worker's disk.
    pub model_path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Whether it is gzip-compressed.
    pub gzip: bool,
    /// Solver name.
    pub solver: String,
    /// Job options.
    pub options: SolveOptions,
    /// For a resident scenario (progressive hedging): the first-stage variable
    /// names. The child then stays up and answers [`Step`]s until stdin closes.
    #[serde(default)]
    pub resident: Option<Vec<String>>,
}

/// First answer of a resident child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidentReady {
    /// First-stage variables found.
    pub nonants: usize,
    /// Whether the proximal term will be quadratic (else linearised).
    pub quadratic: bool,
}

/// What the child answers: a solution or a message.
pub type ChildReply = Result<Solution, String>;

/// Why a child run gave no solution.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job was cancelled (client asked, or the worker is shutting down).
    #[error("cancelled")]
    Cancelled,
    /// The solver went past its time limit and did not stop by itself; it was killed.
    #[error("solver did not stop {0:.1}s after its time limit and was killed")]
    Overran(f64),
    /// The solver process died (crash, abort, out of memory). Retrying elsewhere may help.
    #[error("solver process died ({status}){stderr}")]
    Crashed {
        /// Exit status text.
        status: String,
        /// Last lines of its stderr, prefixed with ": " when present.
        stderr: String,
    },
    /// The model could not be read, or the solver refused it. Retrying will not help.
    #[error("{0}")]
    Rejected(String),
    /// The child could not be started or talked to.
    #[error("cannot run solver process: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a solve in a child process; kills it on `cancel` or when it overruns.
/// `memory_limit` caps the child's address space (bytes): a solve that needs more
/// fails as a crash instead of starving the box.
pub async fn run(
    exe: &Path,
    req: &ChildRequest,
    cancel: &CancellationToken,
    memory_limit: Option<u64>,
) -> Result<Solution, RunError> {
    let mut child = spawn_child(exe, memory_limit, true)?;
    let pid = child.id().map(|p| p as i32);
    let kill = move || kill_group(pid);
    let input = crate::protocol::encode(req).map_err(|e| RunError::Rejected(e.to_string()))?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
    let io = async {
        stdin.write_all(&input).await?;
        drop(stdin);
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut out_r = (&mut stdout).take(MAX_REPLY);
        let mut err_r = (&mut stderr).take(1 << 20);
        let (a, b) = tokio::join!(out_r.read_to_end(&mut out), err_r.read_to_end(&mut err));
        a?;
        b?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let deadline =
        req.options.time_limit.map(|t| Duration::from_secs_f64(t * 1.1 + 5.0)).unwrap_or(Duration::MAX / 4);
    let (status, out, err) = tokio::select! {
        r = io => r?,
        _ = cancel.cancelled() => { kill(); return Err(RunError::Cancelled) }
        _ = tokio::time::sleep(deadline) => { kill(); return Err(RunError::Overran(deadline.as_secs_f64())) }
    };
    // The solver may have left grandchildren (it should not): clear the group anyway.
    kill();
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let status = match std::os::unix::process::ExitStatusExt::signal(&status) {
            Some(sig) => format!("killed by signal {sig}"),
            None => format!("exit code {}", status.code().unwrap_or(-1)),
        };
        return Err(RunError::Crashed {
            status,
            stderr: if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" / ")) },
        });
    }
    let reply: ChildReply = ciborium::from_reader(out.as_slice())
        .map_err(|e| RunError::Crashed { status: format!("unreadable reply: {e}"), stderr: String::new() })?;
    reply.map_err(RunError::Rejected)
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid {
        // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

fn spawn_child(
    exe: &Path,
    memory_limit: Option<u64>,
    capture_stderr: bool,
) -> Result<tokio::process::Child, RunError> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(CHILD_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if capture_stderr { Stdio::piped() } else { Stdio::null() })
        .env("RUST_BACKTRACE", "0")
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl and setrlimit are async-signal-safe and only affect the child being set up.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(bytes) = memory_limit {
                let lim = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
                libc::setrlimit(libc::RLIMIT_AS, &lim);
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// A resident scenario: a child process that keeps a scenario model loaded and
/// solves one [`Step`] after another. Killed (with its process group) on drop.
pub struct Resident {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    pid: Option<i32>,
}

impl Resident {
    /// Starts the child and loads the model; `req.resident` names the first-stage variables.
    pub async fn start(
        exe: &Path,
        req: &ChildRequest,
        memory_limit: Option<u64>,
    ) -> Result<(Self, ResidentReady), RunError> {
        let mut child = spawn_child(exe, memory_limit, false)?;
        let pid = child.id().map(|p| p as i32);
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        crate::protocol::write_msg(&mut stdin, req)
            .await
            .map_err(|e| RunError::Io(std::io::Error::other(e.to_string())))?;
        let mut r = Resident { child, stdin, stdout, pid };
        let ready: Result<ResidentReady, String> = r.read().await?;
        let ready = ready.map_err(RunError::Rejected)?;
        Ok((r, ready))
    }

    async fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RunError> {
        match crate::protocol::read_msg::<T>(&mut self.stdout, crate::protocol::MAX_RESPONSE).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) | Err(_) => {
                let status =
                    match tokio::time::timeout(std::time::Duration::from_secs(1), self.child.wait()).await {
                        Ok(Ok(st)) => match std::os::unix::process::ExitStatusExt::signal(&st) {
                            Some(sig) => format!("killed by signal {sig}"),
                            None => format!("exit code {}", st.code().unwrap_or(-1)),
                        },
                        _ => "no answer".into(),
                    };
                Err(RunError::Crashed { status, stderr: String::new() })
            }
        }
    }

    /// Solves one step; killed if `cancel` fires.
    pub async fn step(&mut self, step: &Step, cancel: &CancellationToken) -> Result<StepReply, RunError> {
        let io = async {
            crate::protocol::write_msg(&mut self.stdin, step).await.map_err(|e| RunError::Crashed {
                status: format!("cannot write to solver: {e}"),
                stderr: String::new(),
            })?;
            let reply: Result<StepReply, String> = self.read().await?;
            reply.map_err(RunError::Rejected)
        };
        tokio::select! {
            r = io => r,
            _ = cancel.cancelled() => { kill_group(self.pid); Err(RunError::Cancelled) }
        }
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        kill_group(self.pid);
    }
}

fn write_frame<T: Serialize>(out: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4];
    ciborium::into_writer(msg, &mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    out.write_all(&buf)?;
    out.flush()
}

fn read_frame<T: serde::de::DeserializeOwned>(inp: &mut impl Read) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match inp.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    inp.read_exact(&mut buf)?;
    ciborium::from_reader(buf.as_slice()).map(Some).map_err(|e| std::io::Error::other(e.to_string()))
}

fn resident_main(req: ChildRequest, nonant_names: Vec<String>) -> i32 {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let loaded = (|| -> Result<_, String> {
        let solver = by_name(&req.solver).map_err(|e| e.to_string())?;
        let stream = model::open_stream(&req.model_path, req.gzip).map_err(|e| e.to_string())?;
        let m = model::read_stream(stream, req.format, "model").map_err(|e| match e {
            model::StreamError::Io(e) => format!("cannot read model: {e}"),
            model::StreamError::Parse(p) => format!("model line {}: {}", p.line, p.message),
        })?;
        let mut idx = Vec::with_capacity(nonant_names.len());
        for n in &nonant_names {
            match m.cols.iter().position(|c| &c.name == n) {
                Some(j) => idx.push(j),
                None => return Err(format!("first-stage variable `{n}` is not in this scenario's model")),
            }
        }
        let quadratic = solver.supports_qp() && m.num_integers() == 0;
        Ok((solver, m, idx, quadratic))
    })();
    let (solver, base, idx, quadratic) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let _ = write_frame(&mut stdout, &Err::<ResidentReady, String>(e));
            return 0;
        }
    };
    if write_frame(&mut stdout, &Ok::<_, String>(ResidentReady { nonants: idx.len(), quadratic })).is_err() {
        return 3;
    }
    // Last solution per mode, for warm starts.
    let mut last: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    loop {
        let step: Step = match read_frame(&mut stdin) {
            Ok(Some(s)) => s,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("solver child: bad step: {e}");
                return 2;
            }
        };
        let m = augment::build(&base, &idx, &step, quadratic);
        let key = format!("{:?}", step.mode);
        let mut opts = req.options.clone();
        opts.warm_start = last.get(&key).filter(|w| w.len() == m.cols.len()).cloned();
        let reply = solve_step(solver.as_ref(), &base, &m, &idx, &opts, quadratic).map(|(r, x)| {
            if !x.is_empty() {
                last.insert(key, x);
            }
            r
        });
        if write_frame(&mut stdout, &reply).is_err() {
            return 3;
        }
    }
}

fn solve_step(
    solver: &dyn Solver,
    base: &model::Model,
    m: &model::Model,
    idx: &[usize],
    opts: &SolveOptions,
    quadratic: bool,
) -> Result<(StepReply, Vec<f64>), String> {
    let sol = solver.solve(m, opts).map_err(|e| e.to_string())?;
    let x: Vec<f64> = sol.values.iter().map(|v| v.1).collect();
    let (objective, nonant) = if x.len() >= base.cols.len() {
        let f = base.objective_of(&x[..base.cols.len()]);
        let f = if base.sense == model::Sense::Maximize { -f } else { f };
        (Some(f), idx.iter().map(|&j| x[j]).collect())
    } else {
        (None, Vec::new())
    };
    Ok((
        StepReply { status: sol.status, objective, x: nonant, solve_seconds: sol.solve_seconds, quadratic },
        x,
    ))
}

/// Entry point of the child: reads the request from stdin, solves, writes the reply.
/// Returns the process exit code.
pub fn child_main() -> i32 {
    let req: ChildRequest = match read_frame(&mut std::io::stdin().lock()) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!("solver child: no request on stdin");
            return 2;
        }
        Err(e) => {
            eprintln!("solver child: bad request: {e}");
            return 2;
        }
    };
    if let Some(names) = req.resident.clone() {
        return resident_main(req, names);
    }
    let reply = solve_request(&req);
    let mut out = Vec::new();
    if ciborium::into_writer(&reply, &mut out).is_err() {
        return 3;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
        return 3;
    }
    0
}

fn solve_request(req: &ChildRequest) -> ChildReply {
    let solver = by_name(&req.solver).map_err(|e| e.to_string())?;
    let stream = model::open_stream(&req.model_path, req.gzip).map_err(|e| e.to_string())?;
    let m = model::read_stream(stream, req.format, "model").map_err(|e| match e {
        model::StreamError::Io(e) => format!("cannot read model: {e}"),
        model::StreamError::Parse(p) => format!("model line {}: {}", p.line, p.message),
    })?;
    solver.solve(&m, &req.options).map_err(|e| e.to_string())
}
