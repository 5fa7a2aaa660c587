//! Every message type of the crate's vocabulary: what goes over the wire
//! between clients, workers and name servers, what a solve answers, and what a
//! worker advertises. Serde types only: no I/O, no sockets.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::Format;

/// A client's request; the first frame of every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Solve a model whose bytes follow the frame.
    Solve(SolveRequest),
    /// Report the worker's state.
    Status,
    /// Ask the worker to exit (graceful: running jobs finish within the grace period).
    Shutdown,
    /// Load a scenario for progressive hedging and keep it resident: the model
    /// bytes follow, then [`Step`] frames, each answered by
    /// [`Response::Step`], until the client finishes the stream.
    Resident(ResidentOpen),
    /// Name server: register the calling worker (on this connection) for a lease.
    Register(WorkerAd),
    /// Name server: extend the calling worker's lease.
    Refresh {
        /// Instance registered on this connection.
        instance: String,
    },
    /// Name server: the workers registered in the caller's namespace.
    List,
    /// Name server: pipe the rest of this stream to a registered worker (relay).
    Relay {
        /// Worker instance.
        instance: String,
    },
    /// Name server: keep this model (its bytes follow) in the namespace's queue,
    /// as part of `batch`; workers registered with the name server solve it.
    Submit {
        /// Batch id chosen by the client.
        batch: String,
        /// The model header.
        model: SolveRequest,
    },
    /// Name server: the state and results of a queued batch.
    Collect {
        /// Batch id.
        batch: String,
    },
    /// Name server: the caller's namespace's detached batches.
    Batches,
    /// Name server: forget a batch (its queued jobs are not run; its results go).
    DeleteBatch {
        /// Batch id.
        batch: String,
    },
    /// Read and discard `size` bytes that follow the frame, then answer
    /// [`Response::Received`]: raw stream throughput, for `meshsolve bench`.
    Discard {
        /// Bytes that follow.
        size: u64,
    },
    /// The jobs a worker runs (and, with `all`, the last ones it finished): `meshsolve ps`.
    Jobs {
        /// Also the recently finished ones.
        all: bool,
    },
    /// Cancel job `id` on this worker (its solver process is killed): `meshsolve kill`.
    Kill {
        /// The worker's job id, as `meshsolve ps` shows it.
        id: u64,
    },
    /// Worker to the keeper of a licence pool: one seat, held until this stream
    /// ends (the holder finishes it, or its connection dies). Answered by
    /// [`Response::Lease`] frames.
    Lease(LeaseRequest),
}

/// A request for one seat of a licence pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The pool.
    pub pool: PoolInfo,
    /// Who asks (worker instance), for logs.
    pub holder: String,
    /// The seat is already in use (its keeper went away mid-solve): count it at once.
    pub running: bool,
}

impl LeaseRequest {
    /// Checks every field from the wire.
    ///
    /// # Errors
    /// [`Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_text("holder", &self.holder, 256)?;
        self.pool.validate()
    }
}

/// A licence shared by several boxes (a Gurobi token server, a FlexLM server):
/// at most `size` solves of `solver` at once, across every worker that names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolInfo {
    /// The solver it licenses.
    pub solver: String,
    /// The licence server, as the workers name it (`tok1.lan:41954`).
    pub server: String,
    /// Seats.
    pub size: u32,
}

impl PoolInfo {
    /// `solver@server/size`, as written in flags and adverts.
    pub fn spec(&self) -> String {
        format!("{}@{}/{}", self.solver, self.server, self.size)
    }

    /// Parses [`PoolInfo::spec`].
    pub fn parse(spec: &str) -> Option<PoolInfo> {
        let (solver, rest) = spec.split_once('@')?;
        let (server, size) = rest.rsplit_once('/')?;
        let p = PoolInfo { solver: solver.to_string(), server: server.to_string(), size: size.parse().ok()? };
        p.validate().is_ok().then_some(p)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_text("pool solver", &self.solver, 64)?;
        check_text("pool server", &self.server, 255)?;
        if self.solver.is_empty()
            || self.server.is_empty()
            || self.solver.contains(['@', ','])
            || self.server.contains(',')
        {
            return Err(Invalid::BadText { field: "pool", why: "expected SOLVER@SERVER/SEATS" });
        }
        if !(1..=100_000).contains(&self.size) {
            return Err(Invalid::OutOfRange {
                field: "pool size",
                value: self.size as f64,
                range: "1 to 100000",
            });
        }
        Ok(())
    }
}

/// The keeper's answers on a lease stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaseState {
    /// Every seat is taken; the request waits in line.
    Waiting {
        /// Seats in use.
        in_use: u32,
        /// Seats in all.
        size: u32,
    },
    /// The seat is the holder's until it ends the stream.
    Granted,
}

/// Header of a solve stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SolveRequest {
    /// Model name for logs and results (the file stem).
    pub name: String,
    /// Model format.
    pub format: Format,
    /// Whether the bytes are gzip-compressed.
    pub gzip: bool,
    /// Exact number of model bytes after the frame.
    pub size: u64,
    /// Solver to use; `None` means the worker's best.
    pub solver: Option<String>,
    /// Time limit, gap and pass-through options.
    pub options: SolveOptions,
    /// Who sends it (for `meshsolve ps`).
    #[serde(default)]
    pub sender: Option<Sender>,
    /// Which attempt at the job this is (1 for the first; 0: not said).
    #[serde(default)]
    pub attempt: u32,
}

/// The client process behind a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
}

impl Sender {
    /// This process (the host name is asked once: every job's header carries it).
    pub fn this_process() -> Sender {
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        });
        Sender { host: host.clone(), pid: std::process::id() }
    }
}

/// Longest time limit a request may carry (ten years, in seconds).
pub const MAX_TIME_LIMIT: f64 = 3.2e8;

/// Why a message from the wire was refused (each field is checked where it enters).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// A number that must be finite and within a range is not.
    #[error("{field} = {value} is out of range ({range})")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value, as received.
        value: f64,
        /// What is allowed.
        range: &'static str,
    },
    /// A text field is empty, too long or not printable.
    #[error("{field} is not a usable name ({why})")]
    BadText {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(Invalid::BadText { field, why: "too long" });
    }
    if s.chars().any(char::is_control) {
        return Err(Invalid::BadText { field, why: "control characters" });
    }
    Ok(())
}

impl SolveOptions {
    /// Checks every field: finite, non-negative limits and gaps, sane option pairs.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(t) = self.time_limit {
            if !(t.is_finite() && (0.0..=MAX_TIME_LIMIT).contains(&t)) {
                return Err(Invalid::OutOfRange {
                    field: "time_limit",
                    value: t,
                    range: "0 to 3.2e8 seconds",
                });
            }
        }
        if let Some(g) = self.mip_gap {
            if !(g.is_finite() && g >= 0.0) {
                return Err(Invalid::OutOfRange {
                    field: "mip_gap",
                    value: g,
                    range: "a finite number >= 0",
                });
            }
        }
        if self.extra.len() > 256 {
            return Err(Invalid::BadText { field: "options", why: "more than 256 of them" });
        }
        for (k, v) in &self.extra {
            if k.is_empty() {
                return Err(Invalid::BadText { field: "option name", why: "empty" });
            }
            check_text("option name", k, 256)?;
            check_text("option value", v, 4096)?;
        }
        if let Some(w) = &self.warm_start {
            if let Some(v) = w.iter().find(|v| !v.is_finite()) {
                return Err(Invalid::OutOfRange { field: "warm_start", value: *v, range: "finite values" });
            }
        }
        Ok(())
    }
}

impl SolveRequest {
    /// Checks the header and its options.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_text("model name", &self.name, 1024)?;
        if let Some(s) = &self.solver {
            check_text("solver", s, 64)?;
        }
        if let Some(s) = &self.sender {
            check_text("sender host", &s.host, 255)?;
        }
        if self.attempt > 1000 {
            return Err(Invalid::OutOfRange {
                field: "attempt",
                value: f64::from(self.attempt),
                range: "0..=1000",
            });
        }
        self.options.validate()
    }
}

/// Header of a resident-scenario stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidentOpen {
    /// The scenario model, as for a solve.
    pub model: SolveRequest,
    /// Names of its first-stage (nonanticipative) variables.
    pub nonants: Vec<String>,
}

/// Why a job failed on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailKind {
    /// The model or options were refused; retrying elsewhere will not help.
    Rejected,
    /// The solver process crashed or overran; another worker may succeed.
    Crashed,
    /// Cancelled by the client or by worker shutdown; may be retried elsewhere.
    Cancelled,
    /// The worker could not take the job (shutting down, unknown solver); try another worker.
    Unavailable,
}

/// A worker's reply frames on a solve stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The model arrived and a solver slot was taken.
    Started,
    /// The solve finished with an answer (which may be infeasible or unbounded).
    Done(Solution),
    /// Reply to [`Request::Discard`]: how many bytes arrived.
    Received(u64),
    /// A resident scenario is loaded.
    Ready {
        /// First-stage variables found in it.
        nonants: u32,
        /// Whether its proximal term is quadratic (else linearised).
        quadratic: bool,
    },
    /// Answer to one PH step.
    Step(StepReply),
    /// The job waits before it can start (a licence seat); sent again when it changes.
    Waiting {
        /// What it waits for, e.g. `gurobi licence (10/10 in use)`.
        reason: String,
    },
    /// On a lease stream: the keeper's answer.
    Lease(LeaseState),
    /// A line of the solver's own log (when the job asked for it).
    Log(String),
    /// The job failed.
    Failed {
        /// Category, which tells the client whether to retry.
        kind: FailKind,
        /// Human-readable reason.
        message: String,
    },
}

/// One solver a worker can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverInfo {
    /// Name (`microlp`, `highs`).
    pub name: String,
    /// Version.
    pub version: String,
    /// Concurrent solves allowed with this solver (fewer than the worker's slots
    /// when licences are scarce).
    pub slots: u32,
}

/// Reply to [`Request::Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Worker instance name.
    pub name: String,
    /// Namespace it serves.
    pub namespace: String,
    /// meshsolve version.
    pub version: String,
    /// Solvers, best first.
    pub solvers: Vec<SolverInfo>,
    /// Solves it runs at once.
    pub slots: u32,
    /// Slots in use now.
    pub busy: u32,
    /// Whether it is draining (shutting down, taking no new jobs).
    pub draining: bool,
    /// Jobs it answered since it started (a solution, or infeasible, unbounded...).
    #[serde(default)]
    pub done: u64,
    /// Jobs that ended without an answer since it started (failed, cancelled).
    #[serde(default)]
    pub failed: u64,
    /// Its licence pools (solver, server, seats), as in its advert.
    #[serde(default)]
    pub pools: Vec<PoolInfo>,
    /// Its clock when it answered, milliseconds since 1970 (0: not said): a
    /// large skew breaks certificate checks (`meshsolve doctor`).
    #[serde(default)]
    pub unix_ms: u64,
}

/// Name server replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NsReply {
    /// Registered or refreshed; refresh again within this many seconds.
    Leased {
        /// Lease length, seconds.
        seconds: f64,
    },
    /// The registered workers of the caller's namespace.
    Workers(Vec<WorkerAd>),
    /// Refused, with the reason (wrong namespace, unknown registration, no such worker).
    Refused(String),
    /// A submitted model is queued at this position of its batch.
    Queued {
        /// Index in the batch.
        index: usize,
    },
    /// A batch's jobs, in submission order.
    Batch(Vec<QueuedJob>),
    /// The namespace's batches.
    Batches(Vec<BatchSummary>),
    /// A batch was forgotten: how many of its jobs.
    Deleted(usize),
}

/// One detached batch, as `meshsolve batches` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Batch id.
    pub batch: String,
    /// Jobs waiting, running, solved and failed.
    pub queued: usize,
    /// Running now.
    pub running: usize,
    /// Solved.
    pub done: usize,
    /// Failed.
    pub failed: usize,
    /// Bytes of its models still on the name server's disk.
    pub bytes: u64,
}

/// Where a job of a detached batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Waiting for a worker.
    Queued,
    /// Running on a worker.
    Running,
    /// Finished with an answer (which may be infeasible or unbounded).
    Done,
    /// Finished without an answer.
    Failed,
}

impl JobPhase {
    /// Whether the job may still change.
    pub fn is_open(self) -> bool {
        matches!(self, JobPhase::Queued | JobPhase::Running)
    }
}

/// One job of a batch held by the name server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedJob {
    /// Model name.
    pub name: String,
    /// Where it stands.
    pub state: JobPhase,
    /// The answer, when done.
    pub solution: Option<Solution>,
    /// Why it failed, when failed.
    pub error: Option<String>,
    /// Worker that solved it.
    pub worker: Option<String>,
    /// Runs so far.
    pub attempts: u32,
}

/// One job as `meshsolve ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The worker's job id.
    pub id: u64,
    /// Model name.
    pub model: String,
    /// Solver (name and version).
    pub solver: String,
    /// Who sent it: the client's host and process when it said, and its address.
    pub client: String,
    /// Which attempt at the job this is (1 for the first; 0: not said).
    #[serde(default)]
    pub attempt: u32,
    /// Waiting (upload, slot, licence), running, or finished.
    pub phase: JobPhase,
    /// Seconds since it arrived (running) or that it took (finished).
    pub seconds: f64,
    /// How it ended, for a finished one (`optimal`, `cancelled`, the failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Reply to [`Request::Jobs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJobs {
    /// Worker instance name.
    pub name: String,
    /// Running and waiting jobs, then (with `all`) the last finished ones, newest first.
    pub jobs: Vec<JobView>,
}

/// Reply to [`Request::Kill`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillAck {
    /// Whether a job with that id was running or waiting here.
    pub found: bool,
}

/// Reply to [`Request::Shutdown`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownAck {
    /// Worker instance name.
    pub name: String,
    /// Jobs still running, which it will finish or cancel within its grace period.
    pub running: u32,
}

/// What a solve found. Infeasible and unbounded are answers, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proven optimal.
    Optimal,
    /// A feasible solution, optimality not proven (time limit or gap reached).
    Feasible,
    /// No feasible point exists.
    Infeasible,
    /// The objective improves without limit.
    Unbounded,
    /// The time limit ran out before any feasible point was found.
    TimeLimit,
}

impl Status {
    /// Lower-case name, as printed and written to JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Optimal => "optimal",
            Status::Feasible => "feasible",
            Status::Infeasible => "infeasible",
            Status::Unbounded => "unbounded",
            Status::TimeLimit => "time_limit",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of one solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// What was found.
    pub status: Status,
    /// Objective value in the model's own sense, with its offset; `None` without a solution.
    pub objective: Option<f64>,
    /// Variable values by name, in model order; empty without a solution.
    pub values: Vec<(String, f64)>,
    /// Solver name and version, e.g. `microlp 0.7`.
    pub solver: String,
    /// Seconds spent in the solver (excluding reading the model).
    pub solve_seconds: f64,
    /// Row duals of a continuous model solved to optimality, in row order, as
    /// the derivative of the objective (in its own sense) by the row's bound;
    /// present only when asked for ([`SolveOptions::duals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duals: Option<Vec<f64>>,
}

/// Per-job settings a solver honours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SolveOptions {
    /// Wall-clock limit for the solve, seconds.
    pub time_limit: Option<f64>,
    /// Relative MIP gap at which the search may stop.
    pub mip_gap: Option<f64>,
    /// Solver-specific `key=value` options, passed through.
    pub extra: Vec<(String, String)>,
    /// A starting point (one value per column) for solvers that can use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<Vec<f64>>,
    /// Also compute row duals when the model is continuous and solved to optimality.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duals: bool,
    /// Stream the solver's own log to the client ([`Response::Log`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
}

/// What a worker advertises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerAd {
    /// Unique instance name (`<host>-<port>` by default).
    pub instance: String,
    /// Namespace served.
    pub namespace: String,
    /// Addresses to reach it (QUIC over UDP).
    pub addrs: Vec<SocketAddr>,
    /// Its solvers, best first.
    pub solvers: Vec<SolverInfo>,
    /// Concurrent solves it runs.
    pub slots: u32,
    /// Fingerprint of its namespace CA.
    pub ca_fingerprint: String,
    /// Protocol version.
    pub protocol: u32,
    /// meshsolve version.
    pub version: String,
    /// A name server that relays to this worker, for clients that cannot reach it directly.
    #[serde(default)]
    pub relay: Option<SocketAddr>,
    /// Licence pools it draws on (the workers naming a pool agree on its keeper).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolInfo>,
    /// When it started (Unix milliseconds), with pools only: the oldest worker of a
    /// pool keeps its count, so a worker that joins never displaces the keeper.
    #[serde(default)]
    pub since: u64,
}

impl WorkerAd {
    /// Whether it can run `solver` (any solver when `None`).
    pub fn has_solver(&self, solver: Option<&str>) -> bool {
        match solver {
            None => !self.solvers.is_empty(),
            Some(s) => self.solvers.iter().any(|x| x.name.eq_ignore_ascii_case(s)),
        }
    }

    /// Address to dial: IPv4 first (loopback and LANs), then IPv6.
    pub fn best_addr(&self) -> Option<SocketAddr> {
        self.addrs_by_preference().into_iter().next()
    }

    /// Every address, best first: IPv4, then routable IPv6, then link-local IPv6
    /// (usable only with its scope), each group in advertised order.
    pub fn addrs_by_preference(&self) -> Vec<SocketAddr> {
        let rank = |a: &SocketAddr| match a {
            SocketAddr::V4(_) => 0,
            SocketAddr::V6(v6) if v6.ip().segments()[0] & 0xffc0 != 0xfe80 => 1,
            SocketAddr::V6(v6) if v6.scope_id() != 0 => 2,
            SocketAddr::V6(_) => 3,
        };
        let mut out = self.addrs.clone();
        out.sort_by_key(rank);
        out
    }
}

/// What one PH step solves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepMode {
    /// `f(x) + W·x`: iteration 0 (W = 0) and the Lagrangian bound.
    Plain,
    /// `f(x) + W·x + Σ ρ/2 (x − x̄)²`: a PH iteration.
    Prox,
    /// `f(x)` with the first stage fixed at x̄: the expected cost of x̄.
    Fixed,
}

/// One step's data for one scenario: only what changes between iterations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// Which subproblem.
    pub mode: StepMode,
    /// The scenario's weights, one per first-stage variable.
    pub w: Vec<f64>,
    /// Consensus x̄.
    pub xbar: Vec<f64>,
    /// Penalties ρ.
    pub rho: Vec<f64>,
}

impl Step {
    /// Checks a step for a scenario with `nonants` first-stage variables: one
    /// finite weight, x̄ and positive ρ per variable.
    ///
    /// # Errors
    /// [`Invalid`] naming the first bad field.
    pub fn validate(&self, nonants: usize) -> Result<(), Invalid> {
        for (field, v) in [("w", &self.w), ("xbar", &self.xbar), ("rho", &self.rho)] {
            if v.len() != nonants {
                return Err(Invalid::BadText { field, why: "not one value per first-stage variable" });
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(Invalid::OutOfRange { field, value: *x, range: "finite numbers" });
            }
        }
        if let Some(r) = self.rho.iter().find(|r| **r <= 0.0) {
            return Err(Invalid::OutOfRange { field: "rho", value: *r, range: "positive numbers" });
        }
        Ok(())
    }
}

/// A step's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReply {
    /// Solver status (`optimal`, `infeasible`, ...).
    pub status: Status,
    /// `f(x)`: the scenario's own objective at the solution (no W, no proximal term).
    pub objective: Option<f64>,
    /// First-stage values.
    pub x: Vec<f64>,
    /// Seconds in the solver.
    pub solve_seconds: f64,
    /// Whether the proximal term was quadratic (else linearised).
    pub quadratic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_options_from_the_wire_are_refused() {
        let ok = SolveOptions { time_limit: Some(10.0), mip_gap: Some(0.01), ..Default::default() };
        assert!(ok.validate().is_ok());
        for t in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1.0] {
            let o = SolveOptions { time_limit: Some(t), ..Default::default() };
            assert!(o.validate().is_err(), "time_limit {t}");
        }
        for g in [f64::NAN, -0.5, f64::INFINITY] {
            assert!(SolveOptions { mip_gap: Some(g), ..Default::default() }.validate().is_err());
        }
        let o = SolveOptions { warm_start: Some(vec![1.0, f64::NAN]), ..Default::default() };
        assert!(o.validate().is_err());
        let o = SolveOptions { extra: vec![("k\u{1b}[2J".into(), "v".into())], ..Default::default() };
        assert!(o.validate().is_err());
    }
}
