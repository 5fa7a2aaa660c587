//! Runs one solve in a child process of the current executable.
//!
//! The worker starts `<own binary> --solve-child`, writes a [`ChildRequest`]
//! (CBOR) to its stdin and reads a [`ChildReply`] (CBOR) from its stdout. The
//! child sits in its own process group, gets SIGKILL when the worker dies
//! (`PR_SET_PDEATHSIG`), and is killed as a group on cancel or deadline, so no
//! solver process outlives its job or its worker, and a solver crash is a job
//! error, not a worker crash. [`Spares`] starts the children ahead of their
//! jobs (one per slot waits on its stdin), so a job does not pay for a process
//! start; a spare that died while waiting is replaced, never handed a job.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::proximal;
use super::{Available, Solution, SolveError, SolveOptions, Solver};
use crate::model::{self, Format};
use crate::protocol::frame::{read_msg_blocking, write_msg_blocking};
use crate::protocol::{Step, StepReply};

/// The first argument that turns a meshsolve binary into a solver child.
pub const CHILD_FLAG: &str = "--solve-child";

/// The process name (`comm`, as `ps` and `top` show it) of a solver child once
/// it has a job; a spare waiting for one keeps its executable's name.
pub const BUSY_NAME: &str = "meshsolve-job";

/// Largest request or host message a child accepts (a step over many first-stage variables fits).
const MAX_REQUEST: usize = crate::protocol::MAX_STEP;

/// Longest solver log line passed on to a client.
const MAX_LOG_LINE: usize = 4096;

/// Largest reply a child may write (values of a very large model fit).
const MAX_REPLY: usize = 1 << 30;

/// The line a solver child writes to stderr after each job's reply: what came
/// before it on stderr was that job's solver output.
const JOB_END: &str = "\u{1}meshsolve: end of job\u{1}";

/// Jobs one solver child runs before it is replaced (a long-lived process
/// could grow; a fresh one costs a millisecond once in a while).
const JOBS_PER_CHILD: u32 = 1000;

/// What the worker asks of the child.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The model: a file on the worker's disk, or its bytes.
    pub model: ModelSource,
    /// Its format.
    pub format: Format,
    /// Whether it is gzip-compressed.
    pub gzip: bool,
    /// The solver, and how to run it.
    pub solver: Available,
    /// Job options.
    pub options: SolveOptions,
    /// For a resident scenario (progressive hedging): the first-stage variable
    /// names. The child then stays up and answers [`Step`]s until stdin closes.
    #[serde(default)]
    pub resident: Option<Vec<String>>,
}

/// Where a solver child finds its model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ModelSource {
    /// A file on the worker's disk (large models, resident scenarios).
    File(PathBuf),
    /// The model's bytes, passed with the request (small models: no temporary
    /// file to write, read and remove).
    Inline(serde_bytes::ByteBuf),
}

/// First answer of a resident child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidentReady {
    /// First-stage variables found.
    pub nonants: usize,
    /// Whether the proximal term will be quadratic (else linearised).
    pub quadratic: bool,
}

/// What the child answers: a solution or why there is none.
pub type ChildReply = Result<Solution, ChildFailure>;

/// Why a child has no solution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChildFailure {
    /// The model or options are at fault (or exceed the solver's licence): do not retry.
    Rejected(String),
    /// The solver gave up; another worker or solver may succeed.
    SolverFailed(String),
    /// No licence was free: the job may run later or elsewhere.
    NoLicence(String),
    /// The solver is no longer installed on this box.
    Missing(String),
}

impl From<SolveError> for ChildFailure {
    fn from(e: SolveError) -> Self {
        let text = e.to_string();
        match e {
            SolveError::Failed { .. } => ChildFailure::SolverFailed(text),
            SolveError::NoLicence { .. } => ChildFailure::NoLicence(text),
            SolveError::Missing { .. } => ChildFailure::Missing(text),
            SolveError::Unknown(..) | SolveError::BadOption(_) | SolveError::SizeLimit { .. } => {
                ChildFailure::Rejected(text)
            }
        }
    }
}

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
    /// The solver gave up on this model; another solver or worker may succeed.
    #[error("{0}")]
    SolverFailed(String),
    /// No licence of the solver was free.
    #[error("{0}")]
    NoLicence(String),
    /// The solver is no longer installed on this box.
    #[error("{0}")]
    Missing(String),
    /// The child could not be started or talked to.
    #[error("cannot run solver process: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a solve in a child process; kills it on `cancel` or when it overruns.
/// `memory_limit` caps the child's address space (bytes): a solve that needs more
/// fails as a crash instead of starving the box.
///
/// # Errors
/// [`RunError`]: cancelled, overran its time limit, crashed, or refused the model.
pub async fn run(
    spares: &Arc<Spares>,
    req: &ChildRequest,
    cancel: &CancellationToken,
    log: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Solution, RunError> {
    let mut w = spares.take()?;
    let pid = w.child.id().map(|p| p as i32);
    let kill = move || kill_group(pid);
    let input = crate::protocol::encode(req).map_err(|e| RunError::Rejected(e.to_string()))?;
    let Warm { stdin, stdout, stderr, owed_ends, .. } = &mut w;
    let io = async {
        stdin.write_all(&input).await?;
        stdin.flush().await?;
        let reply = async {
            crate::protocol::read_msg::<ChildReply>(stdout, MAX_REPLY)
                .await
                .map_err(|e| format!("unreadable reply: {e}"))
        };
        // The solver's own output, line by line up to the child's end-of-job
        // line: passed on as it comes when the client asked for it (`--log`),
        // and the last of it kept for error messages.
        let err_r = async {
            // Earlier jobs' output, not read when they ended.
            while *owed_ends > 0 {
                match stderr.next_line().await? {
                    Some(line) if line.ends_with(JOB_END) => *owed_ends -= 1,
                    Some(_) => {}
                    None => break,
                }
            }
            let mut kept = std::collections::VecDeque::new();
            let mut kept_bytes = 0usize;
            let mut ended = false;
            while let Some(mut line) = stderr.next_line().await? {
                if let Some(last) = line.strip_suffix(JOB_END) {
                    ended = true;
                    if last.is_empty() {
                        break;
                    }
                    // The job's last output, printed without a newline.
                    line = last.to_string();
                }
                if let Some(log) = log {
                    let _ = log.send(line.chars().take(MAX_LOG_LINE).collect());
                }
                kept_bytes += line.len();
                kept.push_back(line);
                while kept.len() > 64 || kept_bytes > 1 << 16 {
                    kept_bytes -= kept.pop_front().map_or(0, |l| l.len());
                }
                if ended {
                    break;
                }
            }
            Ok::<_, std::io::Error>((Vec::from(kept).join("\n"), ended))
        };
        tokio::pin!(reply, err_r);
        let (mut got_reply, mut got_err) = (None, None);
        while got_reply.is_none() || got_err.is_none() {
            tokio::select! {
                r = &mut reply, if got_reply.is_none() => {
                    // A full answer with no log to pass on ends the job here:
                    // its stderr is read (and dropped) before the next job.
                    let answered = matches!(r, Ok(Some(_)));
                    got_reply = Some(r);
                    if answered && log.is_none() && got_err.is_none() {
                        break;
                    }
                }
                e = &mut err_r, if got_err.is_none() => got_err = Some(e?),
            }
        }
        // No stderr result: answered, and its end-of-job line is owed (lines
        // are read whole, so stopping between them loses nothing).
        Ok::<_, std::io::Error>((got_reply.unwrap_or(Ok(None)), got_err))
    };
    let deadline = req
        .options
        .time_limit
        .and_then(|t| Duration::try_from_secs_f64(t * 1.1 + 5.0).ok())
        .unwrap_or(Duration::MAX / 4);
    let ended = tokio::select! {
        r = io => r.map_err(RunError::from),
        _ = cancel.cancelled() => Err(RunError::Cancelled),
        _ = tokio::time::sleep(deadline) => Err(RunError::Overran(deadline.as_secs_f64())),
    };
    // A child that answered in full waits for the next job, when its solver ran
    // inside it (an external solver's process group is cleared after each job).
    let (reply, err) = match ended {
        Ok((Ok(Some(reply)), err @ (None | Some((_, true))))) => {
            if err.is_none() {
                w.owed_ends += 1;
            }
            if matches!(req.solver.backend, super::Backend::Builtin) {
                spares.put_back(w);
            } else {
                kill();
                spares.reap(w);
                spares.refill();
            }
            return finish(reply);
        }
        Ok((reply, err)) => (reply, err.map(|e| e.0).unwrap_or_default()),
        Err(e) => {
            kill();
            let _ = w.child.wait().await;
            spares.refill();
            return Err(e);
        }
    };
    // It died, or broke the protocol: reap it, clear its group, and say why.
    kill();
    let status = w.child.wait().await?;
    spares.refill();
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let stderr = if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" / ")) };
    let status = match (std::os::unix::process::ExitStatusExt::signal(&status), reply) {
        (Some(sig), _) => format!("killed by signal {sig}"),
        (None, Err(e)) => e,
        (None, _) if !status.success() => format!("exit code {}", status.code().unwrap_or(-1)),
        (None, _) => "it ended without an answer".to_string(),
    };
    Err(RunError::Crashed { status, stderr })
}

fn finish(reply: ChildReply) -> Result<Solution, RunError> {
    reply.map_err(|f| match f {
        ChildFailure::Rejected(m) => RunError::Rejected(m),
        ChildFailure::SolverFailed(m) => RunError::SolverFailed(m),
        ChildFailure::NoLicence(m) => RunError::NoLicence(m),
        ChildFailure::Missing(m) => RunError::Missing(m),
    })
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid {
        // The group id is the child's pid (process_group(0)). ESRCH (already gone) is fine.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
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
    // SAFETY: `pre_exec` runs between fork and exec, where only async-signal-safe
    // calls are allowed: prctl and setrlimit are plain syscalls that touch only
    // the child being set up, and the closure allocates nothing. A failure
    // aborts the spawn with that error instead of running an unguarded solver.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if let Some(bytes) = memory_limit {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes)?;
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// Solver children started ahead of their jobs, each waiting for its request on
/// stdin. Owned by the worker; [`Spares::shutdown`] kills the waiting ones.
pub struct Spares {
    exe: PathBuf,
    memory_limit: Option<u64>,
    /// How many wait at most (the worker's slots; 0 starts each child on demand).
    want: usize,
    ready: std::sync::Mutex<Vec<Warm>>,
    /// Background starts of replacements.
    tasks: TaskTracker,
}

impl Spares {
    /// Children of `exe` (memory capped at `memory_limit` bytes), `want` of them
    /// kept waiting. None is started before [`Spares::fill`] or the first job.
    pub fn new(exe: PathBuf, memory_limit: Option<u64>, want: usize) -> Arc<Spares> {
        Arc::new(Spares { exe, memory_limit, want, ready: Default::default(), tasks: TaskTracker::new() })
    }

    /// Starts children until `want` are waiting. Must run on a thread that lives
    /// as long as the worker (a runtime thread): a child's parent-death signal
    /// follows the thread that started it.
    pub fn fill(&self) {
        while self.start_one() {}
    }

    /// Starts one more waiting child if fewer than `want` wait; whether it did.
    fn start_one(&self) -> bool {
        let waiting = self.ready.lock().map(|r| r.len()).unwrap_or(usize::MAX);
        if waiting >= self.want || self.tasks.is_closed() {
            return false;
        }
        match Warm::start(&self.exe, self.memory_limit) {
            Ok(c) => self.ready.lock().map(|mut r| r.push(c)).is_ok(),
            Err(e) => {
                tracing::warn!("cannot start a spare solver process: {e}");
                false
            }
        }
    }

    /// A child for one job: a waiting one that is still alive, else a new one
    /// (and a replacement is started in the background).
    fn take(self: &Arc<Self>) -> Result<Warm, RunError> {
        let mut found = None;
        if let Ok(mut r) = self.ready.lock() {
            while let Some(mut c) = r.pop() {
                if matches!(c.child.try_wait(), Ok(None)) {
                    found = Some(c);
                    break;
                }
                kill_group(c.child.id().map(|p| p as i32));
            }
        }
        if let Some(c) = found {
            return Ok(c);
        }
        self.refill();
        Warm::start(&self.exe, self.memory_limit)
    }

    /// Starts the missing spares in the background (after one was used up),
    /// one at a time and each after the tasks already waiting: on the worker's
    /// one runtime thread a process start holds it for a millisecond or two, and
    /// the answer of the job that used the spare goes out first.
    fn refill(self: &Arc<Self>) {
        if self.want > 0 && !self.tasks.is_closed() {
            let me = self.clone();
            self.tasks.spawn(async move {
                loop {
                    tokio::task::yield_now().await;
                    if !me.start_one() {
                        return;
                    }
                }
            });
        }
    }

    /// Reaps a killed child in the background (its answer need not wait for that).
    fn reap(&self, mut w: Warm) {
        self.tasks.spawn(async move {
            let _ = w.child.wait().await;
        });
    }

    /// Takes back a child that finished its job cleanly, for the next one.
    fn put_back(&self, mut w: Warm) {
        w.jobs += 1;
        // The child names itself busy when a job arrives; it waits again now.
        if w.jobs < JOBS_PER_CHILD && !self.tasks.is_closed() {
            if let Ok(mut r) = self.ready.lock() {
                if r.len() < self.want {
                    r.push(w);
                    return;
                }
            }
        }
        kill_group(w.child.id().map(|p| p as i32));
        drop(w);
    }

    /// Stops starting children and kills the waiting ones.
    pub async fn shutdown(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        let waiting: Vec<Warm> = self.ready.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        for mut c in waiting {
            kill_group(c.child.id().map(|p| p as i32));
            let _ = c.child.wait().await;
        }
    }
}

/// A solver child and its pipes, between jobs or running one.
struct Warm {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    /// Jobs it has run.
    jobs: u32,
    /// Earlier jobs whose stderr, up to their [`JOB_END`], is still unread: a
    /// job answered without a log request is done at its reply, and the next
    /// job skips that output first.
    owed_ends: u32,
}

impl Warm {
    fn start(exe: &Path, memory_limit: Option<u64>) -> Result<Warm, RunError> {
        use tokio::io::AsyncBufReadExt;
        let mut child = spawn_child(exe, memory_limit, true)?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
        Ok(Warm {
            child,
            stdin,
            stdout: tokio::io::BufReader::new(stdout),
            stderr: tokio::io::BufReader::new(stderr).lines(),
            jobs: 0,
            owed_ends: 0,
        })
    }
}

/// Messages from the worker to a resident host process.
#[derive(Debug, Serialize, Deserialize)]
pub enum HostMsg {
    /// Load a scenario (its `resident` field names the first-stage variables).
    Load {
        /// Scenario id, chosen by the worker.
        id: u64,
        /// Where the model is and how to solve it.
        req: ChildRequest,
    },
    /// Solve one step of a loaded scenario.
    Step {
        /// Scenario id.
        id: u64,
        /// The step.
        step: Step,
    },
    /// Forget a scenario.
    Unload {
        /// Scenario id.
        id: u64,
    },
}

/// A resident host: one solver process per worker slot that keeps many
/// scenario models loaded (progressive hedging) and solves their steps one at a
/// time. Killed (with its process group) on drop.
pub struct ResidentHost {
    io: tokio::sync::Mutex<(
        tokio::process::Child,
        tokio::process::ChildStdin,
        tokio::io::BufReader<tokio::process::ChildStdout>,
    )>,
    pid: Option<i32>,
    /// Scenarios loaded on it.
    pub loaded: std::sync::atomic::AtomicUsize,
}

impl ResidentHost {
    /// Starts an empty host process.
    ///
    /// # Errors
    /// [`RunError::Io`] when the host process cannot be started.
    pub async fn start(exe: &Path, memory_limit: Option<u64>) -> Result<Self, RunError> {
        let mut child = spawn_child(exe, memory_limit, false)?;
        let pid = child.id().map(|p| p as i32);
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        // A request with `resident` set turns the child into a host.
        let hello = ChildRequest {
            model: ModelSource::Inline(Default::default()),
            format: Format::Lp,
            gzip: false,
            solver: Available::builtin().remove(0),
            options: SolveOptions::default(),
            resident: Some(Vec::new()),
        };
        crate::protocol::write_msg(&mut stdin, &hello)
            .await
            .map_err(|e| RunError::Io(std::io::Error::other(e.to_string())))?;
        Ok(ResidentHost {
            io: tokio::sync::Mutex::new((child, stdin, tokio::io::BufReader::new(stdout))),
            pid,
            loaded: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    async fn call<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        msg: &HostMsg,
        cancel: &CancellationToken,
    ) -> Result<T, RunError> {
        let mut io = self.io.lock().await;
        let exchange = async {
            crate::protocol::write_msg(&mut io.1, msg).await.map_err(|e| RunError::Crashed {
                status: format!("cannot write to solver: {e}"),
                stderr: String::new(),
            })?;
            match crate::protocol::read_msg::<T>(&mut io.2, crate::protocol::MAX_RESPONSE).await {
                Ok(Some(v)) => Ok(v),
                _ => {
                    let status =
                        match tokio::time::timeout(std::time::Duration::from_secs(1), io.0.wait()).await {
                            Ok(Ok(st)) => match std::os::unix::process::ExitStatusExt::signal(&st) {
                                Some(sig) => format!("killed by signal {sig}"),
                                None => format!("exit code {}", st.code().unwrap_or(-1)),
                            },
                            _ => "no answer".into(),
                        };
                    Err(RunError::Crashed { status, stderr: String::new() })
                }
            }
        };
        tokio::select! {
            r = exchange => r,
            _ = cancel.cancelled() => { kill_group(self.pid); Err(RunError::Cancelled) }
        }
    }

    /// Loads a scenario.
    ///
    /// # Errors
    /// [`RunError`]: the scenario is refused, or the host crashed or was cancelled.
    pub async fn load(
        &self,
        id: u64,
        req: ChildRequest,
        cancel: &CancellationToken,
    ) -> Result<ResidentReady, RunError> {
        let r: Result<ResidentReady, String> = self.call(&HostMsg::Load { id, req }, cancel).await?;
        let r = r.map_err(RunError::Rejected)?;
        self.loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(r)
    }

    /// Solves one step of scenario `id`.
    ///
    /// # Errors
    /// [`RunError`]: the step is refused, or the host crashed or was cancelled.
    pub async fn step(&self, id: u64, step: Step, cancel: &CancellationToken) -> Result<StepReply, RunError> {
        let r: Result<StepReply, String> = self.call(&HostMsg::Step { id, step }, cancel).await?;
        r.map_err(RunError::Rejected)
    }

    /// Forgets scenario `id`.
    pub async fn unload(&self, id: u64) {
        let none = CancellationToken::new();
        let _: Result<Result<(), String>, RunError> = self.call(&HostMsg::Unload { id }, &none).await;
        self.loaded.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the process has exited.
    pub fn dead(&self) -> bool {
        match self.io.try_lock() {
            Ok(mut io) => !matches!(io.0.try_wait(), Ok(None)),
            Err(_) => false,
        }
    }
}

impl Drop for ResidentHost {
    fn drop(&mut self) {
        kill_group(self.pid);
    }
}

struct Loaded {
    solver: Box<dyn Solver>,
    base: model::Model,
    idx: Vec<usize>,
    quadratic: bool,
    opts: SolveOptions,
    /// Last solution per step mode, for warm starts.
    last: std::collections::HashMap<String, Vec<f64>>,
}

/// The solver and the model a request names.
fn open_request(req: &ChildRequest) -> Result<(Box<dyn Solver>, model::Model), String> {
    let solver = req.solver.solver();
    let stream = match &req.model {
        ModelSource::File(path) => model::open_stream(path, req.gzip).map_err(|e| e.to_string())?,
        ModelSource::Inline(bytes) => {
            model::stream_of(Box::new(std::io::Cursor::new(bytes.to_vec())), req.gzip)
        }
    };
    let m = model::read_stream(stream, req.format, "model").map_err(|e| match e {
        model::StreamError::Io(e) => format!("cannot read model: {e}"),
        model::StreamError::Parse(p) if p.line == 0 => format!("model: {}", p.message),
        model::StreamError::Parse(p) => format!("model line {}: {}", p.line, p.message),
    })?;
    Ok((solver, m))
}

fn load_scenario(req: &ChildRequest) -> Result<Loaded, String> {
    let (solver, m) = open_request(req)?;
    let mut idx = Vec::new();
    for n in req.resident.as_deref().unwrap_or_default() {
        match m.cols.iter().position(|c| &c.name == n) {
            Some(j) => idx.push(j),
            None => return Err(format!("first-stage variable `{n}` is not in this scenario's model")),
        }
    }
    let quadratic = solver.supports_qp() && m.num_integers() == 0;
    Ok(Loaded { solver, base: m, idx, quadratic, opts: req.options.clone(), last: Default::default() })
}

/// The resident host loop: loads scenarios and solves their steps until stdin
/// closes, answering on `stdout` (the reply channel).
fn host_main(mut stdout: std::fs::File) -> i32 {
    let mut stdin = std::io::stdin().lock();
    let mut scenarios: std::collections::HashMap<u64, Loaded> = std::collections::HashMap::new();
    loop {
        let msg: HostMsg = match read_msg_blocking(&mut stdin, MAX_REQUEST) {
            Ok(Some(m)) => m,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("resident host: bad message: {e}");
                return 2;
            }
        };
        let written = match msg {
            HostMsg::Load { id, req } => {
                let r = load_scenario(&req).map(|l| {
                    let ready = ResidentReady { nonants: l.idx.len(), quadratic: l.quadratic };
                    scenarios.insert(id, l);
                    ready
                });
                write_msg_blocking(&mut stdout, &r)
            }
            HostMsg::Step { id, step } => {
                let r = match scenarios.get_mut(&id) {
                    None => Err(format!("scenario {id} is not loaded here")),
                    // A step that does not fit this scenario is refused; it never
                    // reaches the model builder (other scenarios live in this process).
                    Some(l) => match step.validate(l.idx.len()) {
                        Err(e) => Err(format!("bad step: {e}")),
                        Ok(()) => {
                            let m = proximal::build(&l.base, &l.idx, &step, l.quadratic);
                            let key = format!("{:?}", step.mode);
                            let mut opts = l.opts.clone();
                            opts.warm_start = l.last.get(&key).filter(|w| w.len() == m.cols.len()).cloned();
                            solve_step(l.solver.as_ref(), &l.base, &m, &l.idx, &opts, l.quadratic).map(
                                |(r, x)| {
                                    if !x.is_empty() {
                                        l.last.insert(key, x);
                                    }
                                    r
                                },
                            )
                        }
                    },
                };
                write_msg_blocking(&mut stdout, &r)
            }
            HostMsg::Unload { id } => {
                scenarios.remove(&id);
                write_msg_blocking(&mut stdout, &Ok::<(), String>(()))
            }
        };
        if written.is_err() {
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

/// Entry point of the child: reads a request from stdin, solves, writes the
/// reply (one frame) to stdout and [`JOB_END`] to stderr, and waits for the
/// next request until stdin closes. Returns the process exit code.
pub fn child_main() -> i32 {
    let mut replies = match reply_channel() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("solver child: cannot set up its reply channel: {e}");
            return 2;
        }
    };
    let mut first = true;
    loop {
        let req: ChildRequest = match read_msg_blocking(&mut std::io::stdin().lock(), MAX_REQUEST) {
            Ok(Some(r)) => r,
            Ok(None) if first => {
                eprintln!("solver child: no request on stdin");
                return 2;
            }
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("solver child: bad request: {e}");
                return 2;
            }
        };
        first = false;
        // Named apart from the spares waiting for a job.
        let _ = nix::sys::prctl::set_name(c"meshsolve-job");
        if req.resident.is_some() {
            return host_main(replies);
        }
        let reply = solve_request(&req);
        if write_msg_blocking(&mut replies, &reply).is_err() {
            return 3;
        }
        // The end-of-job line ends whatever the job printed last, even a line
        // without its newline (the worker matches it at the end of a line).
        let _ = std::io::stdout().flush();
        let mut err = std::io::stderr().lock();
        if writeln!(err, "{JOB_END}").and_then(|_| err.flush()).is_err() {
            return 3;
        }
        let _ = nix::sys::prctl::set_name(c"meshsolve-wait");
    }
}

/// The child's reply channel: its own copy of the stdout pipe, written in one
/// `write` per reply (the standard stdout is line-buffered, which would cut a
/// binary reply at every newline byte and wake the worker for each piece).
/// Standard output itself then goes to stderr, so a solver library that prints
/// (HiGHS with its output on) writes into the job's log, never into a reply.
fn reply_channel() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    // Close-on-exec: an external solver this child starts must not hold the
    // reply pipe open (a crash would then never look like one to the worker).
    let replies = std::io::stdout().as_fd().try_clone_to_owned()?;
    nix::unistd::dup2_stdout(std::io::stderr())?;
    Ok(std::fs::File::from(replies))
}

fn solve_request(req: &ChildRequest) -> ChildReply {
    let (solver, m) = open_request(req).map_err(ChildFailure::Rejected)?;
    Ok(solver.solve(&m, &req.options)?)
}
