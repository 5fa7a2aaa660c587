//! The worker service: accepts jobs over QUIC, runs at most `slots` solves at
//! once in child processes, advertises itself, and shuts down cleanly.
//!
//! Shutdown order: refuse new jobs (a status says `draining`), withdraw the
//! advert (mDNS goodbye), stop accepting connections and streams, let
//! running jobs finish within the grace period, cancel the rest (killing
//! their solver processes), close connections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

mod board;
mod pools;
mod registration;

use crate::certs::{NamespaceCa, WORKER_NAME};
use crate::discovery::{Discovery, WorkerAd};
use crate::protocol::{
    read_msg, write_msg, FailKind, FrameError, KillAck, Request, Response, ShutdownAck, SolveRequest,
    SolverInfo, WorkerJobs, WorkerStatus, MAX_CONTROL,
};
use crate::solver::process::{self, ChildRequest, ModelSource, RunError};
use crate::solver::Available;

/// When a solver finds no licence free, the job waits this long before it
/// tries again, twice as long each time up to [`NO_LICENCE_MAX_PAUSE`], for at
/// most [`NO_LICENCE_PATIENCE`] in all; then another worker may try.
const NO_LICENCE_FIRST_PAUSE: Duration = Duration::from_secs(2);
const NO_LICENCE_MAX_PAUSE: Duration = Duration::from_secs(60);
const NO_LICENCE_PATIENCE: Duration = Duration::from_secs(15 * 60);

/// How long a new stream may take to send its request frame.
const FIRST_FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// How long an upload may stop moving before it is given up.
const UPLOAD_STALL: Duration = Duration::from_secs(30);
/// Answers with more values than this are encoded off the async thread.
const ENCODE_INLINE_VALUES: usize = 50_000;

/// Models in transit or waiting on a worker's disk at once, by default.
pub const DEFAULT_DISK_BUDGET: u64 = 8 << 30;

/// Largest model a worker accepts by default.
pub const DEFAULT_MAX_MODEL: u64 = 4 << 30;

/// A validated worker configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Namespace served.
    pub namespace: String,
    /// Where namespace CAs live.
    pub home: PathBuf,
    /// UDP address to bind (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Concurrent solves.
    pub slots: u32,
    /// Solvers offered, best first ([`crate::solver::detect`] finds them). A job
    /// that names none gets the first one without a size-limited licence.
    pub solvers: Vec<Available>,
    /// Per-solver slot limits (licences); a solver not listed may use every slot.
    pub solver_slots: std::collections::HashMap<String, u32>,
    /// Instance name advertised.
    pub instance: String,
    /// Time running jobs get to finish on shutdown before they are cancelled.
    pub grace: Duration,
    /// Exit after this long without jobs.
    pub idle_exit: Option<Duration>,
    /// The executable started for each solve (normally the worker's own binary).
    pub solver_exe: PathBuf,
    /// Largest model accepted, bytes.
    pub max_model: u64,
    /// Where models in transit are kept (a private directory is made in it).
    pub temp_dir: PathBuf,
    /// Bytes of models in transit or waiting on disk at once: an upload waits
    /// for room (many clients at a one-slot worker must not fill its disk).
    pub disk_budget: u64,
    /// Address-space limit of each solver process, bytes.
    pub solver_memory: Option<u64>,
    /// Longest a job may solve on this worker: a job asking for more, or for no
    /// limit, gets this one (its owner's policy).
    pub max_time_limit: Option<Duration>,
    /// A static name server to register with, `HOST[:PORT]`.
    pub name_server: Option<String>,
    /// Licence pools shared with other workers (see [`pools`]).
    pub pools: Vec<crate::protocol::PoolInfo>,
}

struct Shared {
    cfg: WorkerConfig,
    /// The solvers still offered: one whose executable disappears is dropped.
    solvers: std::sync::RwLock<Vec<Available>>,
    /// Where the advert lives, to withdraw a solver that disappeared.
    discovery: Arc<dyn Discovery>,
    ad: std::sync::Mutex<WorkerAd>,
    /// Licence pools: seats this worker takes, and lends when it is a keeper.
    pools: Arc<pools::Pools>,
    /// Failed handshakes logged (a flood from one stranger must not fill the log).
    handshake_log: crate::transport::LogBudget,
    /// The disk budget for models, in MiB.
    disk: Arc<Semaphore>,
    /// Jobs running, waiting and lately finished (`meshsolve ps`, `kill`).
    board: board::Board,
    slots: Arc<Semaphore>,
    /// Solver processes started ahead of their jobs, one per slot.
    spares: Arc<process::Spares>,
    /// Resident hosts for progressive hedging, at most one per slot.
    hosts: tokio::sync::Mutex<Vec<Arc<process::ResidentHost>>>,
    /// One semaphore per solver with a licence limit.
    per_solver: std::collections::HashMap<String, Arc<Semaphore>>,
    /// Jobs get a child of this token: cancelled after the grace period on shutdown.
    jobs: CancellationToken,
    /// Set when the worker is shutting down (no new jobs).
    stop: CancellationToken,
    /// Set when draining starts, after the goodbye: connections stop taking
    /// streams. Until then a stream is answered (a status says `draining`, a job
    /// is refused), so a client that checks a goodbye hears it from the worker.
    closing: CancellationToken,
    tmp: PathBuf,
    next_job: AtomicU64,
    last_activity: std::sync::Mutex<Instant>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The namespace CA could not be loaded or created, or no certificate issued.
    #[error("namespace `{namespace}`: {source}")]
    Ca {
        /// The namespace.
        namespace: String,
        /// Why.
        source: crate::certs::CertError,
    },
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// A local resource (socket address, temporary directory) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Advertising failed.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
}

/// Runs a worker until `shutdown` fires or a client asks it to exit.
/// `on_ready` receives the bound address once it accepts connections.
///
/// # Errors
/// [`WorkerError`] when it cannot start; once serving it returns `Ok` at shutdown.
pub async fn run(
    cfg: WorkerConfig,
    discovery: Arc<dyn Discovery>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), WorkerError> {
    let ca_err = |source| WorkerError::Ca { namespace: cfg.namespace.clone(), source };
    let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace).map_err(ca_err)?;
    let id = ca.issue(WORKER_NAME).map_err(ca_err)?;
    let mut endpoint = crate::transport::server_endpoint(&id, cfg.bind)?;
    // The same socket dials out to a name server, if any (one UDP port in all).
    endpoint.set_default_client_config(crate::transport::client_config(&id)?);
    let local =
        endpoint.local_addr().map_err(|source| WorkerError::Io { what: "local address".into(), source })?;
    remove_stale_temp_dirs(&cfg.temp_dir);
    let tmp = cfg.temp_dir.join(format!("meshworker-{}-{}", std::process::id(), local.port()));
    {
        use std::os::unix::fs::DirBuilderExt;
        // Models in transit are readable by this user only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
            .map_err(|source| WorkerError::Io { what: format!("cannot create {}", tmp.display()), source })?;
    }

    let infos = solver_infos(&cfg, &cfg.solvers);
    let ad = WorkerAd {
        instance: cfg.instance.clone(),
        namespace: cfg.namespace.clone(),
        addrs: vec![local],
        solvers: infos.clone(),
        slots: cfg.slots,
        ca_fingerprint: ca.fingerprint(),
        protocol: crate::protocol::VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        relay: None,
        pools: cfg.pools.clone(),
        since: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    discovery.announce(&ad)?;
    let peers = remember_locally(&ca, &ad);
    let offered: Vec<String> = cfg.solvers.iter().map(Available::label).collect();
    info!(instance = %cfg.instance, namespace = %cfg.namespace, addr = %local, slots = cfg.slots,
          solvers = ?offered, ca = %ad.ca_fingerprint, "worker ready");
    on_ready(local);

    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(cfg.slots as usize)),
        spares: process::Spares::new(cfg.solver_exe.clone(), cfg.solver_memory, cfg.slots as usize),
        hosts: tokio::sync::Mutex::new(Vec::new()),
        per_solver: infos
            .iter()
            .map(|i| (i.name.clone(), Arc::new(Semaphore::new(i.slots as usize))))
            .collect(),
        jobs: CancellationToken::new(),
        stop: shutdown.child_token(),
        closing: CancellationToken::new(),
        tmp: tmp.clone(),
        next_job: AtomicU64::new(1),
        last_activity: std::sync::Mutex::new(Instant::now()),
        solvers: std::sync::RwLock::new(cfg.solvers.clone()),
        discovery: discovery.clone(),
        ad: std::sync::Mutex::new(ad.clone()),
        handshake_log: crate::transport::LogBudget::new(5),
        board: board::Board::default(),
        disk: Arc::new(Semaphore::new((cfg.disk_budget >> 20).clamp(1, u64::from(u32::MAX >> 3)) as usize)),
        pools: pools::Pools::new(cfg.instance.clone(), ad.since, cfg.pools.clone(), endpoint.clone()),
        cfg,
    });
    // Started on this thread, which lives as long as the worker (their
    // parent-death signal follows it).
    shared.spares.fill();
    let tracker = TaskTracker::new();
    if shared.pools.any() {
        watch_pool_peers(&shared, &endpoint, &tracker)?;
    }
    if let Some(ns) = shared.cfg.name_server.clone() {
        let (sh, tr) = (shared.clone(), tracker.clone());
        tracker.spawn(registration::keep_registered(
            endpoint.clone(),
            ns,
            shared.cfg.namespace.clone(),
            ad.clone(),
            shared.stop.clone(),
            move |conn| handle_connection(conn, sh.clone(), tr.clone()),
        ));
    }
    serve(&endpoint, &shared, &tracker).await;
    // Draining from here (also after --idle-exit): statuses say so, jobs are refused.
    shared.stop.cancel();
    info!("shutting down: withdrawing advert");
    crate::discovery::cache::forget(&peers, &shared.cfg.instance);
    discovery.shutdown().await;
    drain(&endpoint, &shared, tracker).await;
    let _ = std::fs::remove_dir_all(&tmp);
    info!("worker stopped");
    Ok(())
}

/// Removes the temporary directories of workers that died without cleaning up
/// (SIGKILL): `meshworker-PID-PORT` of this user whose process is gone.
fn remove_stale_temp_dirs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let me = nix::unistd::getuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("meshworker-").and_then(|r| r.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        let ours = std::os::unix::fs::MetadataExt::uid(&match e.metadata() {
            Ok(m) => m,
            Err(_) => continue,
        }) == me;
        // Signal 0 probes for the process without touching it.
        let alive = !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if ours && !alive && pid != std::process::id() as i32 {
            debug!(dir = %name, "removing the temporary directory of a worker that is gone");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Remembers this worker for the next cold start of a client on this box (at
/// an address a client there can dial: the wildcard bind becomes loopback);
/// returns the directory, to forget it on exit.
fn remember_locally(ca: &NamespaceCa, ad: &WorkerAd) -> PathBuf {
    let peers = crate::discovery::cache::dir(&ca.dir);
    let mut local_ad = ad.clone();
    for a in &mut local_ad.addrs {
        if a.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            a.set_ip(loopback);
        }
    }
    crate::discovery::cache::remember(&peers, &local_ad);
    peers
}

/// The accept loop: runs until the worker is told to stop or has been idle for `--idle-exit`.
async fn serve(endpoint: &quinn::Endpoint, shared: &Arc<Shared>, tracker: &TaskTracker) {
    let idle_check = async {
        match shared.cfg.idle_exit {
            Some(limit) => loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let busy = shared.cfg.slots as usize - shared.slots.available_permits();
                let last = shared.last_activity.lock().map(|t| *t).unwrap_or_else(|_| Instant::now());
                if busy == 0 && last.elapsed() >= limit {
                    info!("idle for {:?}; exiting (--idle-exit)", limit);
                    return;
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(idle_check);
    loop {
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            _ = &mut idle_check => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let shared = shared.clone();
                let t2 = tracker.clone();
                tracker.spawn(async move {
                    let remote = incoming.remote_address();
                    match incoming.await {
                        Ok(conn) => handle_connection(conn, shared, t2).instrument(tracing::info_span!("conn", %remote)).await,
                        Err(e) => {
                            let Some(left_out) = shared.handshake_log.allow() else { return };
                            let more = if left_out > 0 { format!(" ({left_out} more not logged)") } else { String::new() };
                            let text = e.to_string();
                            if text.contains("UnknownIssuer") || text.contains("certificate") {
                                warn!(%remote, "refused a client whose certificate is not signed by namespace `{}`'s CA (another namespace, or a box without this namespace's CA): {text}{more}", shared.cfg.namespace);
                            } else {
                                warn!(%remote, "connection failed during handshake: {text}{more}");
                            }
                        }
                    }
                });
            }
        }
    }
}

/// The shutdown order after the advert is withdrawn: stop accepting, let running
/// jobs finish within the grace period, cancel the rest, close connections.
async fn drain(endpoint: &quinn::Endpoint, shared: &Shared, tracker: TaskTracker) {
    shared.stop.cancel();
    shared.closing.cancel();
    endpoint.set_server_config(None);
    // Connection tasks stop accepting streams at `stop` and end at once; the
    // tracker then waits only for streams (running jobs) and the registration.
    tracker.close();
    let running = shared.cfg.slots as usize - shared.slots.available_permits();
    if running > 0 {
        info!(running, grace = ?shared.cfg.grace, "waiting for running jobs");
    }
    if tokio::time::timeout(shared.cfg.grace, tracker.wait()).await.is_err() {
        warn!("grace period over: cancelling running jobs");
        shared.jobs.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
    shared.jobs.cancel();
    shared.spares.shutdown().await;
    endpoint.close(0u32.into(), b"worker exiting");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn handle_connection(conn: quinn::Connection, shared: Arc<Shared>, tracker: TaskTracker) {
    debug!("client connected");
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            // Streams already open keep being served (their tasks are tracked);
            // an idle connection must not hold the worker's exit.
            _ = shared.closing.cancelled() => return,
        };
        let (send, recv) = match stream {
            Ok(s) => s,
            Err(e) => {
                debug!("connection ended: {e}");
                return;
            }
        };
        let shared = shared.clone();
        let client = conn.remote_address().to_string();
        tracker.spawn(async move {
            if let Err(e) = handle_stream(send, recv, &shared, &client).await {
                debug!("stream failed: {e}");
            }
        });
    }
}

async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: &Shared,
    client: &str,
) -> Result<(), FrameError> {
    // A peer that opens a stream and then says nothing costs a task for 10 s, not forever.
    let first = tokio::time::timeout(FIRST_FRAME_DEADLINE, read_msg(&mut recv, MAX_CONTROL)).await;
    let Ok(first) = first else {
        debug!("no request within {} s; closing the stream", FIRST_FRAME_DEADLINE.as_secs());
        let _ = recv.stop(0u32.into());
        return Ok(());
    };
    let req: Request = match first {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(()),
        Err(e) => {
            warn!("bad request: {e}");
            let _ = write_msg(
                &mut send,
                &Response::Failed { kind: FailKind::Rejected, message: format!("bad request: {e}") },
            )
            .await;
            let _ = send.finish();
            return Err(e);
        }
    };
    match req {
        Request::Status => {
            let (done, failed) = shared.board.counts();
            let st = WorkerStatus {
                name: shared.cfg.instance.clone(),
                namespace: shared.cfg.namespace.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                solvers: shared.solver_infos(),
                slots: shared.cfg.slots,
                busy: (shared.cfg.slots as usize - shared.slots.available_permits()) as u32,
                draining: shared.stop.is_cancelled(),
                done,
                failed,
                pools: shared.ad.lock().map(|a| a.pools.clone()).unwrap_or_default(),
                unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            };
            write_msg(&mut send, &st).await?;
        }
        Request::Shutdown => {
            let running = (shared.cfg.slots as usize - shared.slots.available_permits()) as u32;
            info!("shutdown requested by a client of this namespace");
            write_msg(&mut send, &ShutdownAck { name: shared.cfg.instance.clone(), running }).await?;
            shared.stop.cancel();
        }
        Request::Resident(open) => {
            if let Err(r) = resident(open, &mut send, &mut recv, shared).await {
                write_msg(&mut send, &r).await?;
            }
        }
        Request::Register(_)
        | Request::Refresh { .. }
        | Request::List
        | Request::Relay { .. }
        | Request::Submit { .. }
        | Request::Collect { .. }
        | Request::Batches
        | Request::DeleteBatch { .. } => {
            let msg = "this is a meshworker, not a name server (meshns)";
            write_msg(&mut send, &crate::protocol::NsReply::Refused(msg.into())).await?;
        }
        Request::Lease(req) => {
            if let Err(e) = req.validate() {
                write_msg(&mut send, &failed(FailKind::Rejected, format!("bad lease request: {e}"))).await?;
            } else {
                shared.pools.serve(req, &mut send, &mut recv).await;
            }
        }
        Request::Discard { size } => {
            let mut limited = tokio::io::AsyncReadExt::take(&mut recv, size);
            let n = tokio::io::copy(&mut limited, &mut tokio::io::sink()).await?;
            write_msg(&mut send, &Response::Received(n)).await?;
        }
        Request::Solve(req) => {
            let reply = solve(req, &mut send, &mut recv, shared, client).await;
            match &reply {
                // Millions of values take a while to encode: off the async thread.
                Response::Done(sol) if sol.values.len() > ENCODE_INLINE_VALUES => {
                    let frame = tokio::task::spawn_blocking(move || crate::protocol::encode(&reply))
                        .await
                        .map_err(|e| FrameError::Garbage(e.to_string()))??;
                    tokio::io::AsyncWriteExt::write_all(&mut send, &frame).await?;
                }
                _ => write_msg(&mut send, &reply).await?,
            }
        }
        Request::Jobs { all } => {
            let jobs = WorkerJobs { name: shared.cfg.instance.clone(), jobs: shared.board.snapshot(all) };
            write_msg(&mut send, &jobs).await?;
        }
        Request::Kill { id } => {
            let found = shared.board.kill(id);
            if found {
                info!(job = id, "cancelled by a client of this namespace (meshsolve kill)");
            }
            write_msg(&mut send, &KillAck { found }).await?;
        }
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    Ok(())
}

/// The job's options with the worker's time-limit policy applied.
fn capped(options: &crate::protocol::SolveOptions, max: Option<Duration>) -> crate::protocol::SolveOptions {
    let mut o = options.clone();
    if let Some(max) = max.map(|m| m.as_secs_f64()) {
        o.time_limit = Some(o.time_limit.map_or(max, |t| t.min(max)));
    }
    o
}

fn failed(kind: FailKind, message: impl Into<String>) -> Response {
    Response::Failed { kind, message: message.into() }
}

/// Checks a model header: worker running, solver available, size allowed.
/// Returns the solver to use.
fn admit(req: &SolveRequest, shared: &Shared) -> Result<Available, Response> {
    if shared.stop.is_cancelled() {
        return Err(failed(FailKind::Unavailable, "worker is shutting down"));
    }
    if let Ok(mut t) = shared.last_activity.lock() {
        *t = Instant::now();
    }
    // Every field from the wire is checked here, before anything uses it.
    req.validate().map_err(|e| failed(FailKind::Rejected, format!("bad request: {e}")))?;
    let solvers = shared.solvers.read().map(|s| s.clone()).unwrap_or_default();
    let names = || solvers.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>().join(", ");
    let solver = match &req.solver {
        Some(s) => match crate::solver::Kind::parse(s).and_then(|k| solvers.iter().find(|a| a.kind == k)) {
            Some(a) => a.clone(),
            None => {
                return Err(failed(
                    FailKind::Unavailable,
                    format!("this worker has no solver `{s}` (it has {})", names()),
                ))
            }
        },
        None => match solvers.iter().find(|a| !a.size_limited).or_else(|| solvers.first()) {
            Some(a) => a.clone(),
            None => return Err(failed(FailKind::Unavailable, "this worker has no solver left")),
        },
    };
    let max_threads = (default_slots() / shared.cfg.slots.max(1)).max(1);
    if let Err(e) = crate::solver::check_job_options(solver.kind, &req.options, max_threads) {
        return Err(failed(FailKind::Rejected, e.to_string()));
    }
    if req.size > shared.cfg.disk_budget {
        return Err(failed(
            FailKind::Rejected,
            format!(
                "model of {} bytes exceeds this worker's disk budget of {} bytes (meshworker --disk-budget)",
                req.size, shared.cfg.disk_budget
            ),
        ));
    }
    if req.size > shared.cfg.max_model {
        return Err(failed(
            FailKind::Rejected,
            format!(
                "model of {} bytes exceeds this worker's limit of {} bytes",
                req.size, shared.cfg.max_model
            ),
        ));
    }
    Ok(solver)
}

/// Receives the model bytes that follow a header straight to a temporary file.
/// Models up to this size go to the solver process in its request, not through
/// a temporary file.
const INLINE_MODEL: u64 = 1 << 20;

/// Receives a job's model: into memory when it is small and `inline` allows
/// it, else into a private temporary file (removed when the guard drops).
async fn receive_model(
    req: &SolveRequest,
    job: u64,
    recv: &mut quinn::RecvStream,
    shared: &Shared,
    inline: bool,
) -> Result<(ModelSource, Option<TempFile>), Response> {
    if inline && req.size <= INLINE_MODEL {
        let mut bytes = vec![0u8; req.size as usize];
        return match tokio::time::timeout(UPLOAD_STALL, recv.read_exact(&mut bytes)).await {
            Ok(Ok(())) => Ok((ModelSource::Inline(serde_bytes::ByteBuf::from(bytes)), None)),
            Ok(Err(quinn::ReadExactError::FinishedEarly(n))) => {
                Err(failed(FailKind::Cancelled, format!("model truncated: got {n} of {} bytes", req.size)))
            }
            Ok(Err(e)) => Err(failed(FailKind::Cancelled, format!("model transfer failed: {e}"))),
            Err(_) => Err(failed(
                FailKind::Cancelled,
                format!("model transfer failed: no model bytes for {} s", UPLOAD_STALL.as_secs()),
            )),
        };
    }
    let ext = match (req.format, req.gzip) {
        (crate::model::Format::Lp, false) => "lp",
        (crate::model::Format::Lp, true) => "lp.gz",
        (crate::model::Format::Mps, false) => "mps",
        (crate::model::Format::Mps, true) => "mps.gz",
    };
    let path = shared.tmp.join(format!("job{job}.{ext}"));
    let received = crate::transport::receive_file(recv, req.size, &path, UPLOAD_STALL).await;
    let guard = TempFile(path);
    match received {
        Ok(n) if n == req.size => Ok((ModelSource::File(guard.0.clone()), Some(guard))),
        Ok(n) => Err(failed(FailKind::Cancelled, format!("model truncated: got {n} of {} bytes", req.size))),
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            let msg = format!(
                "worker {}: no space left in {} for the model",
                shared.cfg.instance,
                shared.tmp.display()
            );
            warn!("{msg}");
            // Unavailable: this client sends it nothing more; the job goes elsewhere.
            Err(failed(FailKind::Unavailable, msg))
        }
        Err(e) => Err(failed(FailKind::Cancelled, format!("model transfer failed: {e}"))),
    }
}

/// Takes a seat of a licence pool, telling the client while it waits; `None`
/// when the client goes away or the worker stops first.
async fn take_seat(
    pool: &crate::protocol::PoolInfo,
    send: &mut quinn::SendStream,
    shared: &Shared,
) -> Option<pools::Lease> {
    let (waits, mut told) = tokio::sync::mpsc::unbounded_channel();
    let lease = shared.pools.lease(pool, waits);
    tokio::pin!(lease);
    loop {
        tokio::select! {
            l = &mut lease => return Some(l),
            Some(w) = told.recv() => {
                if let crate::protocol::LeaseState::Waiting { in_use, size } = w {
                    let reason = format!("{} licence ({in_use}/{size} in use)", pool.solver);
                    info!("waiting for {reason}");
                    if write_msg(send, &Response::Waiting { reason }).await.is_err() {
                        return None;
                    }
                }
            }
            _ = shared.jobs.cancelled() => return None,
        }
    }
}

/// Feeds the adverts of the namespace's workers to the pools, to agree on keepers:
/// from this worker's discovery, and from the name server when it has one.
fn watch_pool_peers(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    tracker: &TaskTracker,
) -> Result<(), WorkerError> {
    let mut sources = vec![shared.discovery.browse()?];
    let lookup = shared.cfg.name_server.clone().map(|spec| {
        Arc::new(crate::discovery::registry::NameServerLookup::new(
            endpoint.clone(),
            spec,
            shared.cfg.namespace.clone(),
        ))
    });
    if let Some(l) = &lookup {
        sources.push(crate::discovery::Discovery::browse(l.as_ref())?);
    }
    for mut rx in sources {
        let (sh, lookup) = (shared.clone(), lookup.clone());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = sh.stop.cancelled() => break,
                    ev = rx.recv() => match ev {
                        Some(ev) => sh.pools.seen(ev),
                        None => break,
                    },
                }
            }
            if let Some(l) = lookup {
                crate::discovery::Discovery::shutdown(l.as_ref()).await;
            }
        });
    }
    Ok(())
}

/// Takes a solver licence (if limited) and a slot; `None` when the worker stops.
async fn take_slot(
    solver: &str,
    shared: &Shared,
) -> Option<(Option<tokio::sync::OwnedSemaphorePermit>, tokio::sync::OwnedSemaphorePermit)> {
    let licence = shared.per_solver.get(solver).cloned();
    let permits = async {
        let l = match licence {
            Some(l) => Some(l.acquire_owned().await.ok()?),
            None => None,
        };
        let p = shared.slots.clone().acquire_owned().await.ok()?;
        Some((l, p))
    };
    tokio::select! {
        p = permits => p,
        _ = shared.stop.cancelled() => None,
    }
}

async fn solve(
    req: SolveRequest,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    shared: &Shared,
    client: &str,
) -> Response {
    let solver = match admit(&req, shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let solver_name = solver.kind.to_string();
    let job = shared.next_job.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("job", id = job, model = %req.name);
    let cancel = shared.jobs.child_token();
    shared.board.arrived(job, &req, &solver.label(), client, cancel.clone());
    let reply = async {
        // Room on disk first: the upload waits while others' models fill the budget.
        let mib = (req.size >> 20).max(1).min(u64::from(u32::MAX)) as u32;
        let room = tokio::select! {
            r = shared.disk.clone().acquire_many_owned(mib) => r.ok(),
            _ = shared.stop.cancelled() => None,
        };
        let Some(_room) = room else {
            return failed(FailKind::Unavailable, "worker is shutting down");
        };
        let (model, guard) = match receive_model(&req, job, recv, shared, true).await {
            Ok(g) => g,
            Err(r) => return r,
        };
        let Some(permit) = take_slot(&solver_name, shared).await else {
            return failed(FailKind::Unavailable, "worker is shutting down");
        };
        let _seat = match shared.pools.pool_of(&solver_name) {
            Some(pool) => match take_seat(&pool, send, shared).await {
                Some(seat) => Some(seat),
                None => return failed(FailKind::Cancelled, "cancelled while waiting for a licence"),
            },
            None => None,
        };
        if write_msg(send, &Response::Started).await.is_err() {
            return failed(FailKind::Cancelled, "client went away");
        }
        info!(solver = %solver.label(), "solving");
        shared.board.running(job);
        let child = ChildRequest {
            model,
            format: req.format,
            gzip: req.gzip,
            solver,
            options: capped(&req.options, shared.cfg.max_time_limit),
            resident: None,
        };
        let started = Instant::now();
        let mut pause = NO_LICENCE_FIRST_PAUSE;
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
        let log = child.options.log.then_some(&log_tx);
        let result = loop {
            let r = {
                let run = process::run(&shared.spares, &child, &cancel, log);
                tokio::pin!(run);
                let stopped = send.stopped();
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        r = &mut run => break r,
                        // The client reset or dropped the stream: cancel the solve.
                        _ = &mut stopped => { cancel.cancel(); break Err(RunError::Cancelled) }
                        // The solver's own log, as it comes (`meshsolve --log`).
                        Some(line) = log_rx.recv() => { let _ = write_msg(send, &Response::Log(line)).await; }
                    }
                }
            };
            while let Ok(line) = log_rx.try_recv() {
                let _ = write_msg(send, &Response::Log(line)).await;
            }
            // No licence free right now (every token taken): not the job's fault.
            // Wait and try again, longer each time, and tell the client why.
            let Err(RunError::NoLicence(m)) = &r else { break r };
            if started.elapsed() + pause > NO_LICENCE_PATIENCE {
                break r;
            }
            let reason = format!("{solver_name} licence ({m}); trying again in {} s", pause.as_secs());
            info!("waiting for {reason}");
            if write_msg(send, &Response::Waiting { reason }).await.is_err() {
                break Err(RunError::Cancelled);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = send.stopped() => break Err(RunError::Cancelled),
                _ = cancel.cancelled() => break Err(RunError::Cancelled),
            }
            pause = (pause * 2).min(NO_LICENCE_MAX_PAUSE);
        };
        drop(permit);
        drop(guard);
        if let Ok(mut t) = shared.last_activity.lock() {
            *t = Instant::now();
        }
        match result {
            Ok(sol) => {
                info!(status = %sol.status, objective = ?sol.objective, secs = started.elapsed().as_secs_f64(), "solved");
                Response::Done(sol)
            }
            Err(RunError::Rejected(m)) => {
                info!("rejected: {m}");
                failed(FailKind::Rejected, m)
            }
            Err(RunError::Cancelled) if shared.board.killed(job) => {
                info!("cancelled with meshsolve kill");
                // Final: the user stopped it; its client must not run it again.
                failed(FailKind::Rejected, "cancelled with `meshsolve kill`")
            }
            Err(RunError::Cancelled) => {
                info!("cancelled");
                failed(FailKind::Cancelled, "solve cancelled")
            }
            Err(RunError::NoLicence(m)) => {
                warn!("no licence free after waiting: {m}");
                failed(FailKind::Crashed, format!("no {solver_name} licence free for {} min: {m}", NO_LICENCE_PATIENCE.as_secs() / 60))
            }
            Err(RunError::Missing(m)) => {
                warn!("{m}; no longer offering {solver_name}");
                shared.withdraw(&solver_name);
                failed(FailKind::Crashed, m)
            }
            Err(e) => {
                warn!("solve failed: {e}");
                failed(FailKind::Crashed, e.to_string())
            }
        }
    }
    .instrument(span)
    .await;
    let (ok, outcome) = match &reply {
        Response::Done(sol) => (true, sol.status.to_string()),
        Response::Failed { message, .. } => (false, message.clone()),
        _ => (false, "ended".to_string()),
    };
    shared.board.ended(job, ok, outcome);
    reply
}

/// Serves a resident scenario: loads it into a long-lived solver process, then
/// answers step after step until the client finishes the stream.
async fn resident(
    open: crate::protocol::ResidentOpen,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    shared: &Shared,
) -> Result<(), Response> {
    let mut solver = admit(&open.model, shared)?;
    if open.model.solver.is_none() {
        // A resident scenario solves hundreds of small steps: an in-process solver
        // (no process start per step, warm starts) beats a better external one.
        let offered = shared.solvers.read().map(|s| s.clone()).unwrap_or_default();
        if let Some(a) = offered.into_iter().find(|a| a.backend == crate::solver::Backend::Builtin) {
            solver = a;
        }
    }
    let solver_name = solver.kind.to_string();
    let job = shared.next_job.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("scenario", id = job, model = %open.model.name);
    async {
        let (model, guard) = receive_model(&open.model, job, recv, shared, false).await?;
        let child = ChildRequest {
            model,
            format: open.model.format,
            gzip: open.model.gzip,
            solver,
            options: open.model.options.clone(),
            resident: Some(open.nonants.clone()),
        };
        let host = match host_for(shared).await {
            Ok(h) => h,
            Err(e) => return Err(failed(FailKind::Crashed, e.to_string())),
        };
        let id = job;
        let loaded = {
            let Some(permit) = take_slot(&solver_name, shared).await else {
                return Err(failed(FailKind::Unavailable, "worker is shutting down"));
            };
            let r = host.load(id, child, &shared.jobs.child_token()).await;
            drop(permit);
            r
        };
        let ready = match loaded {
            Ok(r) => r,
            Err(RunError::Rejected(m)) => return Err(failed(FailKind::Rejected, m)),
            Err(e) => return Err(failed(FailKind::Crashed, e.to_string())),
        };
        drop(guard);
        info!(solver = %solver_name, nonants = ready.nonants, quadratic = ready.quadratic, "scenario resident");
        let served = async {
            write_msg(send, &Response::Ready { nonants: ready.nonants as u32, quadratic: ready.quadratic })
                .await
                .map_err(|e| failed(FailKind::Cancelled, e.to_string()))?;
            let mut steps = 0u64;
            loop {
                let step: crate::protocol::Step = tokio::select! {
                    s = read_msg(recv, crate::protocol::MAX_STEP) => match s {
                        Ok(Some(s)) => s,
                        Ok(None) => break,
                        Err(e) => return Err(failed(FailKind::Rejected, format!("bad step: {e}"))),
                    },
                    _ = shared.jobs.cancelled() => return Err(failed(FailKind::Cancelled, "worker is shutting down")),
                };
                let Some(permit) = take_slot(&solver_name, shared).await else {
                    return Err(failed(FailKind::Unavailable, "worker is shutting down"));
                };
                // Only shutdown interrupts a step: the host holds other scenarios too.
                let reply = host.step(id, step, &shared.jobs.child_token()).await;
                drop(permit);
                if let Ok(mut t) = shared.last_activity.lock() {
                    *t = Instant::now();
                }
                steps += 1;
                let msg = match reply {
                    Ok(r) => Response::Step(r),
                    Err(RunError::Rejected(m)) => failed(FailKind::Rejected, m),
                    Err(RunError::Cancelled) => return Err(failed(FailKind::Cancelled, "step cancelled")),
                    Err(e) => {
                        warn!("resident solver failed: {e}");
                        return Err(failed(FailKind::Crashed, e.to_string()));
                    }
                };
                write_msg(send, &msg).await.map_err(|e| failed(FailKind::Cancelled, e.to_string()))?;
            }
            Ok(steps)
        }
        .await;
        if !host.dead() {
            host.unload(id).await;
        }
        let steps = served?;
        info!(steps, "scenario released");
        Ok(())
    }
    .instrument(span)
    .await
}

/// A resident host with room: a new one while there are fewer than `slots`,
/// else the one holding the fewest scenarios. Dead hosts are dropped.
async fn host_for(shared: &Shared) -> Result<Arc<process::ResidentHost>, RunError> {
    let mut hosts = shared.hosts.lock().await;
    hosts.retain(|h| !h.dead());
    if hosts.len() < shared.cfg.slots as usize {
        let h =
            Arc::new(process::ResidentHost::start(&shared.cfg.solver_exe, shared.cfg.solver_memory).await?);
        hosts.push(h.clone());
        return Ok(h);
    }
    Ok(hosts
        .iter()
        .min_by_key(|h| h.loaded.load(Ordering::Relaxed))
        .cloned()
        .expect("at least one host when slots >= 1"))
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn solver_infos(cfg: &WorkerConfig, solvers: &[Available]) -> Vec<SolverInfo> {
    solvers
        .iter()
        .map(|a| SolverInfo {
            name: a.kind.to_string(),
            version: a.version.clone(),
            slots: cfg.solver_slots.get(a.kind.as_str()).copied().unwrap_or(cfg.slots).min(cfg.slots),
        })
        .collect()
}

impl Shared {
    fn solver_infos(&self) -> Vec<SolverInfo> {
        let solvers = self.solvers.read().map(|s| s.clone()).unwrap_or_default();
        solver_infos(&self.cfg, &solvers)
    }

    /// Stops offering `name` (its executable disappeared) and says so in the advert.
    fn withdraw(&self, name: &str) {
        if let Ok(mut s) = self.solvers.write() {
            s.retain(|a| a.kind.as_str() != name);
        }
        let infos = self.solver_infos();
        let ad = match self.ad.lock() {
            Ok(mut ad) => {
                ad.solvers = infos;
                ad.clone()
            }
            Err(_) => return,
        };
        if let Err(e) = self.discovery.announce(&ad) {
            warn!("cannot update the advert: {e}");
        }
    }
}

/// Default slot count: the number of cores (asked once: the answer comes from
/// cgroup files, and every job's thread cap uses it).
pub fn default_slots() -> u32 {
    static CORES: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1))
}
