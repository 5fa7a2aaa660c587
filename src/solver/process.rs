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

use super::{by_name, Solution, SolveOptions};
use crate::model::{self, Format};

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
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(CHILD_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and only affects the child being set up.
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
    let mut child = cmd.spawn()?;
    let pid = child.id().map(|p| p as i32);
    let kill_group = move || {
        if let Some(pid) = pid {
            // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    };
    let mut input = Vec::new();
    ciborium::into_writer(req, &mut input).map_err(|e| RunError::Rejected(e.to_string()))?;
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
        _ = cancel.cancelled() => { kill_group(); return Err(RunError::Cancelled) }
        _ = tokio::time::sleep(deadline) => { kill_group(); return Err(RunError::Overran(deadline.as_secs_f64())) }
    };
    // The solver may have left grandchildren (it should not): clear the group anyway.
    kill_group();
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

/// Entry point of the child: reads the request from stdin, solves, writes the reply.
/// Returns the process exit code.
pub fn child_main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("solver child: cannot read request: {e}");
        return 2;
    }
    let req: ChildRequest = match ciborium::from_reader(input.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("solver child: bad request: {e}");
            return 2;
        }
    };
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
