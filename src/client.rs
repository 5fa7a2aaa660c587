//! The client side of the mesh, usable as a library: find workers (through
//! any [`Discovery`] source), reach them directly or through a relay, and send
//! them requests. Queues, retries and batches live one layer up, in
//! [`crate::dispatch`]. May import: `certs`, `discovery`, `model`, `protocol`,
//! `transport`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meshsolve::client::ClientError> {
//! use meshsolve::client::{ClientConfig, JobOptions, Mesh};
//! let mesh = std::sync::Arc::new(Mesh::connect(ClientConfig::from_env()).await?);
//! let ads = mesh.wait_for_workers(None, std::time::Duration::from_secs(3)).await?;
//! println!("{} worker(s), first: {}", ads.len(), ads[0].instance);
//! mesh.close().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::certs::{self, NamespaceCa, CLIENT_NAME};
use crate::discovery::cache::{self, Remembered};
use crate::discovery::mdns::Mdns;
use crate::discovery::registry::{self, NameServerLookup};
use crate::discovery::{Discoveries, Discovery, DiscoveryError, DiscoveryEvent, WorkerAd};
use crate::model::{self, Format, ModelError};
use crate::protocol::{
    read_msg, write_msg, FailKind, NsReply, QueuedJob, Request, Response, ShutdownAck, Solution,
    SolveOptions, SolveRequest, WorkerStatus, MAX_CONTROL, MAX_RESPONSE,
};
use crate::transport;

/// How a client finds and reaches workers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Namespace to use.
    pub namespace: String,
    /// Where namespace CAs live.
    pub home: PathBuf,
    /// Restrict mDNS to these interfaces (empty: all).
    pub interfaces: Vec<String>,
    /// Workers given by address; when non-empty, mDNS is not used.
    pub static_workers: Vec<String>,
    /// A static name server, `HOST[:PORT]` (from `PYRO_NS_HOSTNAME` / `PYRO_NS_PORT`).
    pub name_server: Option<String>,
    /// Browse mDNS (turn off where multicast is blocked).
    pub mdns: bool,
    /// Reach workers only through the name server's relay, even when they are
    /// directly reachable (firewall debugging, and the relay benchmark).
    pub via_name_server: bool,
}

impl ClientConfig {
    /// Defaults from the environment (`MESHSOLVE_NAMESPACE`, `MESHSOLVE_HOME`, `MESHSOLVE_INTERFACE`).
    pub fn from_env() -> Self {
        ClientConfig {
            namespace: certs::default_namespace(),
            home: certs::default_home(),
            interfaces: std::env::var("MESHSOLVE_INTERFACE")
                .map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
            static_workers: Vec::new(),
            name_server: registry::from_env(),
            mdns: true,
            via_name_server: false,
        }
    }
}

/// Per-job settings.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Solver to use (`None`: each worker's best).
    pub solver: Option<String>,
    /// Time limit, gap, pass-through options.
    pub solve: SolveOptions,
    /// Force the model format instead of guessing from the file name.
    pub format: Option<Format>,
    /// Skip the local syntax check (the caller already read the model).
    pub prechecked: bool,
}

/// A finished job.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The answer.
    pub solution: Solution,
    /// Instance name of the worker that solved it.
    pub worker: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Wall-clock seconds from sending to the answer.
    pub wall_seconds: f64,
    /// Attempts it took (1 unless a worker failed).
    pub attempts: u32,
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The model file is unreadable or malformed; fix it.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// No worker of the namespace answered in time.
    #[error("no meshsolve worker{solver} found in namespace `{namespace}` after {waited:.1}s{seen}.\n  hint: start one with `meshworker` (same user, or `meshworker --namespace {namespace}`), \
             check that both sides use the same namespace and CA (`meshsolve certs show`), \
             give workers directly with `--worker HOST:PORT`, or, if multicast is blocked, use a static name server via PYRO_NS_HOSTNAME")]
    NoWorkers {
        /// Namespace searched.
        namespace: String,
        /// Text about the required solver.
        solver: String,
        /// Seconds waited.
        waited: f64,
        /// Text about adverts seen from other namespaces.
        seen: String,
    },
    /// Workers answered, but none has the solver asked for.
    #[error("{workers} worker(s) found, none has solver `{solver}` (they have {have}).\n  hint: choose one of those with --solver, or start a worker that has `{solver}` (HiGHS: build with `cargo build --release --features highs`)")]
    NoSolver {
        /// The solver asked for.
        solver: String,
        /// Workers seen.
        workers: usize,
        /// The solvers they have.
        have: String,
    },
    /// A worker could not be reached or refused us.
    #[error("{0}")]
    Connect(String),
    /// The namespace CA or a certificate could not be loaded or made.
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    /// The client endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// Discovery could not start (mDNS daemon).
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A background task of the client died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A connection to the mesh of one namespace. Owns its discovery sources and
/// the task that follows them; [`Mesh::close`] stops and awaits them.
pub struct Mesh {
    cfg: ClientConfig,
    endpoint: quinn::Endpoint,
    ca_fingerprint: String,
    /// Workers of our namespace and CA, by instance name.
    workers: Arc<Mutex<HashMap<String, WorkerAd>>>,
    /// Adverts of other namespaces seen (count), for error messages.
    foreign: Arc<Mutex<Vec<Ignored>>>,
    /// Adverts whose worker did not complete a handshake, and why (quarantined).
    unproven: Arc<Mutex<HashMap<String, (Instant, String)>>>,
    changed: watch::Receiver<u64>,
    /// Kept so that [`Mesh::subscribe`]rs never see a closed channel (and spin).
    _changed_tx: Arc<watch::Sender<u64>>,
    conns: Arc<ConnCache>,
    /// Connections to name servers (a different TLS server name than workers).
    ns_conns: ConnCache,
    /// Workers reached only through a name server's relay.
    relayed: Mutex<std::collections::HashSet<String>>,
    /// Workers that stopped answering, and since when (cleared by a new advert).
    lost: Arc<Mutex<HashMap<String, Instant>>>,
    /// Busy slots each worker reported in its last status answer.
    observed: Mutex<HashMap<String, u32>>,
    /// Where workers come from (mDNS, the name server); `None` with static workers.
    discovery: Option<Discoveries>,
    /// Stops the tracking task.
    cancel: CancellationToken,
    /// The tracking task.
    tasks: TaskTracker,
}

impl Mesh {
    /// Loads (or creates) the namespace CA, binds a client endpoint and starts browsing.
    ///
    /// # Errors
    /// When the CA cannot be loaded or created, the endpoint cannot be bound, or
    /// mDNS cannot start.
    pub async fn connect(cfg: ClientConfig) -> Result<Mesh, ClientError> {
        let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
        let id = ca.issue(CLIENT_NAME)?;
        let endpoint = transport::client_endpoint(&id)?;
        let workers = Arc::new(Mutex::new(HashMap::new()));
        let foreign = Arc::new(Mutex::new(Vec::new()));
        let unproven = Arc::new(Mutex::new(HashMap::new()));
        let (tx, changed) = watch::channel(0u64);
        let changed_tx = Arc::new(tx);
        let lost = Arc::new(Mutex::new(HashMap::new()));
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let conns = Arc::new(ConnCache::default());
        let mut discovery = None;
        if cfg.static_workers.is_empty() {
            let mut sources: Vec<Box<dyn Discovery>> = Vec::new();
            if cfg.mdns {
                sources.push(Box::new(Mdns::new(&cfg.interfaces)?));
            }
            // Workers seen before are tried directly, alongside mDNS (a cold start
            // then costs one handshake, not an mDNS round).
            sources.push(Box::new(Remembered::new(endpoint.clone(), cache::dir(&ca.dir))));
            if let Some(spec) = &cfg.name_server {
                sources.push(Box::new(NameServerLookup::new(
                    endpoint.clone(),
                    spec.clone(),
                    cfg.namespace.clone(),
                )));
            }
            let d = Discoveries::new(sources);
            let rx = d.browse()?;
            let tracker = Tracker {
                peers: cache::dir(&ca.dir),
                namespace: cfg.namespace.clone(),
                ca: ca.fingerprint(),
                workers: workers.clone(),
                foreign: foreign.clone(),
                lost: lost.clone(),
                tx: changed_tx.clone(),
                endpoint: endpoint.clone(),
                conns: conns.clone(),
                unproven: unproven.clone(),
            };
            let c = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = c.cancelled() => {}
                    _ = tracker.run(rx) => {}
                }
            });
            discovery = Some(d);
        }
        Ok(Mesh {
            cfg,
            endpoint,
            ca_fingerprint: ca.fingerprint(),
            workers,
            foreign,
            unproven,
            changed,
            _changed_tx: changed_tx,
            conns,
            ns_conns: ConnCache::default(),
            relayed: Mutex::new(Default::default()),
            lost,
            observed: Mutex::new(HashMap::new()),
            discovery,
            cancel,
            tasks,
        })
    }

    /// The namespace in use.
    pub fn namespace(&self) -> &str {
        &self.cfg.namespace
    }

    /// Workers currently visible (mDNS, name server) or given statically, less those
    /// that stopped answering and have not announced themselves since.
    pub fn workers(&self) -> Vec<WorkerAd> {
        let lost = self.lost.lock().map(|l| l.clone()).unwrap_or_default();
        let mut v: Vec<WorkerAd> = self
            .workers
            .lock()
            .map(|w| w.values().filter(|ad| !lost.contains_key(&ad.instance)).cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.instance.cmp(&b.instance));
        v
    }

    /// The adverts of other namespaces, CAs or protocol versions seen and left
    /// out, one per instance, and why.
    pub fn ignored_adverts(&self) -> Vec<Ignored> {
        self.foreign.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Records that a worker stopped answering. A worker killed without a goodbye
    /// stays advertised over mDNS until its records expire; [`Mesh::workers`] leaves
    /// it out until it announces itself again, so new queues and PH runs do not wait on it.
    pub fn mark_lost(&self, instance: &str) {
        if let Ok(mut l) = self.lost.lock() {
            l.insert(instance.to_string(), Instant::now());
        }
    }

    /// Waits until at least one worker with `solver` is known, then a short moment
    /// more for others to answer; at most `timeout`.
    ///
    /// # Errors
    /// [`ClientError::NoWorkers`] when no suitable worker answered in time (the message says what
    /// to check); [`ClientError::Connect`] when a worker given by address cannot be reached.
    pub async fn wait_for_workers(
        &self,
        solver: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<WorkerAd>, ClientError> {
        self.wait_settled(solver, timeout, Duration::from_millis(300), false).await
    }

    /// Like [`Mesh::wait_for_workers`], for a single job: returns almost as soon
    /// as one worker with `solver` is known (a few milliseconds more let workers
    /// answering at the same moment be seen too).
    ///
    /// # Errors
    /// As [`Mesh::wait_for_workers`].
    pub async fn wait_for_any(
        &self,
        solver: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<WorkerAd>, ClientError> {
        self.wait_settled(solver, timeout, Duration::from_millis(10), true).await
    }

    async fn wait_settled(
        &self,
        solver: Option<&str>,
        timeout: Duration,
        settle: Duration,
        early: bool,
    ) -> Result<Vec<WorkerAd>, ClientError> {
        let start = Instant::now();
        if !self.cfg.static_workers.is_empty() {
            return self.resolve_static(solver).await;
        }
        let mut changed = self.changed.clone();
        let deadline = start + timeout;
        let mut first_seen: Option<Instant> = None;
        let settled = || early && self.discovery.as_ref().is_none_or(|d| d.settled());
        loop {
            let n = self.workers().iter().filter(|w| w.has_solver(solver)).count();
            if n > 0 && first_seen.is_none() {
                first_seen = Some(Instant::now());
            }
            // After the first answer, give the others `settle` to answer too; stop
            // early once every source that answers once (remembered workers) is in.
            let until = match first_seen {
                Some(t) => (t + settle).min(deadline),
                None => deadline,
            };
            let now = Instant::now();
            if now >= until || (first_seen.is_some() && settled()) {
                break;
            }
            // Re-check at least every millisecond while answers are pending.
            let step = if first_seen.is_some() { Duration::from_millis(1) } else { until - now };
            let _ = tokio::time::timeout(step.min(until - now), changed.changed()).await;
        }
        let found: Vec<WorkerAd> = self.workers().into_iter().filter(|w| w.has_solver(solver)).collect();
        let visible = self.workers();
        if let (true, Some(s), false) = (found.is_empty(), solver, visible.is_empty()) {
            let mut have: Vec<String> =
                visible.iter().flat_map(|w| w.solvers.iter().map(|x| x.name.clone())).collect();
            have.sort();
            have.dedup();
            return Err(ClientError::NoSolver {
                solver: s.to_string(),
                workers: visible.len(),
                have: have.join(", "),
            });
        }
        if found.is_empty() {
            let foreign = self.foreign.lock().map(|f| f.len()).unwrap_or(0);
            let problem = self.discovery.as_ref().and_then(|d| d.problem());
            let unproven = self.unproven.lock().map(|u| u.clone()).unwrap_or_default();
            let problem = problem.or_else(|| {
                unproven.iter().next().map(|(w, (_, why))| {
                    format!(
                        "{} advert(s) of workers that did not answer a handshake, e.g. {w}: {why}",
                        unproven.len()
                    )
                })
            });
            let ns_note = match (&self.cfg.name_server, problem) {
                (_, Some(p)) => format!("; {p}"),
                (Some(ns), None) => format!("; name server {ns} lists none"),
                (None, None) => String::new(),
            };
            return Err(ClientError::NoWorkers {
                namespace: self.cfg.namespace.clone(),
                solver: solver.map(|s| format!(" with solver `{s}`")).unwrap_or_default(),
                waited: start.elapsed().as_secs_f64(),
                seen: if foreign > 0 {
                    format!(" ({foreign} worker advert(s) of other namespaces or CAs were ignored{ns_note})")
                } else if !ns_note.is_empty() {
                    format!(" ({})", ns_note.trim_start_matches("; "))
                } else {
                    String::new()
                },
            });
        }
        Ok(found)
    }

    async fn resolve_static(&self, solver: Option<&str>) -> Result<Vec<WorkerAd>, ClientError> {
        let mut out = Vec::new();
        for spec in &self.cfg.static_workers {
            let addr = tokio::net::lookup_host(spec.as_str())
                .await
                .map_err(|e| {
                    ClientError::Connect(format!(
                        "cannot resolve worker address `{spec}`: {e} (expected HOST:PORT)"
                    ))
                })?
                .next()
                .ok_or_else(|| {
                    ClientError::Connect(format!("worker address `{spec}` resolves to nothing"))
                })?;
            let probe = WorkerAd {
                instance: spec.clone(),
                namespace: self.cfg.namespace.clone(),
                addrs: vec![addr],
                solvers: Vec::new(),
                slots: 1,
                ca_fingerprint: self.ca_fingerprint.clone(),
                protocol: crate::protocol::VERSION,
                version: String::new(),
                relay: None,
                pools: Vec::new(),
                since: 0,
            };
            let st = self.status(&probe).await?;
            let ad = WorkerAd {
                instance: st.name.clone(),
                solvers: st.solvers.clone(),
                slots: st.slots,
                version: st.version.clone(),
                ..probe
            };
            if let Ok(mut w) = self.workers.lock() {
                w.insert(ad.instance.clone(), ad.clone());
            }
            out.push(ad);
        }
        let found: Vec<WorkerAd> = out.into_iter().filter(|w| w.has_solver(solver)).collect();
        if found.is_empty() {
            return Err(ClientError::Connect(format!(
                "none of the workers given with --worker has solver `{}`",
                solver.unwrap_or("?")
            )));
        }
        Ok(found)
    }

    /// Opens a stream to a worker: directly, or through the name server that
    /// relays to it when it cannot be reached directly.
    pub(crate) async fn open(&self, ad: &WorkerAd) -> Result<Stream, ClientError> {
        let relay_only = self.cfg.via_name_server
            || self.relayed.lock().map(|r| r.contains(&ad.instance)).unwrap_or(false);
        if !relay_only || ad.relay.is_none() {
            let patience = if ad.relay.is_some() { Duration::from_secs(3) } else { Duration::from_secs(5) };
            match self.connection(ad, patience).await {
                Ok((conn, addr)) => {
                    let (send, recv) = conn
                        .open_bi()
                        .await
                        .map_err(|e| ClientError::Connect(format!("cannot open a stream to {addr}: {e}")))?;
                    return Ok(Stream { send, recv, conn, addr });
                }
                Err(e) if ad.relay.is_none() => {
                    self.mark_lost(&ad.instance);
                    return Err(e);
                }
                Err(e) => {
                    info!(worker = %ad.instance, "not reachable directly ({e}); using the name server's relay");
                    if let Ok(mut r) = self.relayed.lock() {
                        r.insert(ad.instance.clone());
                    }
                }
            }
        }
        let ns = ad.relay.expect("checked above");
        let conn = self.ns_connection(ns).await?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Connect(format!("cannot open a stream to name server {ns}: {e}")))?;
        write_msg(&mut send, &Request::Relay { instance: ad.instance.clone() })
            .await
            .map_err(|e| ClientError::Connect(format!("relay through {ns} failed: {e}")))?;
        Ok(Stream { send, recv, conn, addr: ns })
    }

    /// A (cached) connection to the name server at `addr`.
    pub(crate) async fn ns_connection(&self, addr: SocketAddr) -> Result<quinn::Connection, ClientError> {
        let name = transport::ns_server_name(&self.cfg.namespace);
        self.ns_conns
            .get_or_connect(addr, || async {
                let connecting = self.endpoint.connect(addr, &name).map_err(|e| {
                    ClientError::Connect(format!("cannot connect to name server {addr}: {e}"))
                })?;
                tokio::time::timeout(Duration::from_secs(5), connecting)
                    .await
                    .map_err(|_| {
                        ClientError::Connect(format!("name server {addr} did not answer within 5 s"))
                    })?
                    .map_err(|e| {
                        ClientError::Connect(transport::explain_connect_error(addr, &self.cfg.namespace, &e))
                    })
            })
            .await
    }

    pub(crate) async fn connection(
        &self,
        ad: &WorkerAd,
        patience: Duration,
    ) -> Result<(quinn::Connection, SocketAddr), ClientError> {
        dial(&self.endpoint, &self.conns, &self.cfg.namespace, ad, patience).await
    }

    /// Asks a worker for its state.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or does not answer in 5 s.
    pub async fn status(&self, ad: &WorkerAd) -> Result<WorkerStatus, ClientError> {
        let st: WorkerStatus = self.control(ad, &Request::Status, "status request").await?;
        if let Ok(mut o) = self.observed.lock() {
            o.insert(ad.instance.clone(), st.busy);
        }
        Ok(st)
    }

    /// Busy slots `instance` reported in its last status answer (0 if never asked):
    /// a hint for spreading jobs from independent clients.
    pub fn observed_load(&self, instance: &str) -> u32 {
        self.observed.lock().ok().and_then(|o| o.get(instance).copied()).unwrap_or(0)
    }

    /// Asks a worker to exit.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or does not answer in 5 s.
    pub async fn shutdown_worker(&self, ad: &WorkerAd) -> Result<ShutdownAck, ClientError> {
        self.control(ad, &Request::Shutdown, "shutdown request").await
    }

    /// The jobs a worker runs and waits for (with `all`, also its last finished ones).
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or does not answer in 5 s.
    pub async fn jobs(&self, ad: &WorkerAd, all: bool) -> Result<crate::protocol::WorkerJobs, ClientError> {
        self.control(ad, &Request::Jobs { all }, "job list request").await
    }

    /// Cancels job `id` on a worker; whether the worker had it.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or does not answer in 5 s.
    pub async fn kill(&self, ad: &WorkerAd, id: u64) -> Result<bool, ClientError> {
        let ack: crate::protocol::KillAck = self.control(ad, &Request::Kill { id }, "kill request").await?;
        Ok(ack.found)
    }

    /// One control request (no payload) and its one-frame answer, within 5 s.
    async fn control<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        ad: &WorkerAd,
        req: &Request,
        what: &str,
    ) -> Result<T, ClientError> {
        let Stream { mut send, mut recv, addr, .. } = self.open(ad).await?;
        let io = async {
            write_msg(&mut send, req).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            match read_msg::<T>(&mut recv, MAX_CONTROL).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err("worker closed the stream without an answer".to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .map_err(|_| ClientError::Connect(format!("worker {addr} did not answer a {what} within 5 s")))?
            .map_err(|e| ClientError::Connect(format!("{what} to {addr} failed: {e}")))
    }

    /// Builds the request header for a model file (format from the options or the name).
    ///
    /// # Errors
    /// [`ClientError::Model`] when the format is unknown or the file unreadable.
    pub fn header(path: &Path, opts: &JobOptions) -> Result<SolveRequest, ClientError> {
        let (format, gzip) = match (opts.format, Format::from_path(path)) {
            (Some(f), g) => (f, g.map(|g| g.1).unwrap_or(false)),
            (None, Some(g)) => g,
            (None, None) => return Err(ModelError::UnknownFormat { path: path.to_path_buf() }.into()),
        };
        let size = std::fs::metadata(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?
            .len();
        Ok(SolveRequest {
            name: model::model_stem(path),
            format,
            gzip,
            size,
            solver: opts.solver.clone(),
            options: opts.solve.clone(),
            sender: Some(crate::protocol::Sender::this_process()),
            attempt: 1,
        })
    }

    /// A receiver that changes whenever the set of visible workers changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Sends one job to one worker and waits for its answer.
    ///
    /// # Errors
    /// A [`JobFailure`] that says whether to retry elsewhere (`Retry`, `Lost`, `Unavailable`) or
    /// not (`Rejected`).
    pub async fn send_job(
        &self,
        ad: &WorkerAd,
        path: &Path,
        header: &SolveRequest,
        on_note: &(dyn Fn(JobNote) + Send + Sync),
    ) -> Result<(Solution, SocketAddr), JobFailure> {
        let Stream { mut send, mut recv, conn, addr } =
            self.open(ad).await.map_err(|e| JobFailure::Unreached(e.to_string()))?;
        let retry = |e: &dyn std::fmt::Display| JobFailure::Retry(format!("{e}"));
        write_msg(&mut send, &Request::Solve(header.clone())).await.map_err(|e| retry(&e))?;
        let file = std::fs::File::open(path)
            .map_err(|e| JobFailure::Rejected(format!("cannot open {}: {e}", path.display())))?;
        if let Err(e) = transport::send_file(file, &mut send).await {
            // The worker may have stopped the upload itself (no space left, too
            // large): its answer says why, and whether to go elsewhere.
            let answer =
                tokio::time::timeout(Duration::from_secs(2), read_msg::<Response>(&mut recv, MAX_RESPONSE))
                    .await;
            return Err(match answer {
                Ok(Ok(Some(Response::Failed { kind: FailKind::Rejected, message }))) => {
                    JobFailure::Rejected(message)
                }
                Ok(Ok(Some(Response::Failed { kind: FailKind::Unavailable, message }))) => {
                    JobFailure::Unavailable(message)
                }
                Ok(Ok(Some(Response::Failed { message, .. }))) => JobFailure::Retry(message),
                _ => retry(&e),
            });
        }
        send.finish().map_err(|e| retry(&e))?;
        // With a time limit, the worker answers by limit × 1.1 + 5 s (it stops an
        // overrunning solver then); a worker still silent well after that is stuck.
        let patience = header
            .options
            .time_limit
            .and_then(|t| Duration::try_from_secs_f64(t * 1.1 + 60.0).ok())
            .unwrap_or(Duration::MAX / 4);
        let mut deadline = tokio::time::Instant::now() + patience;
        loop {
            let next = tokio::time::timeout_at(deadline, read_msg::<Response>(&mut recv, MAX_RESPONSE)).await;
            let Ok(next) = next else {
                return Err(JobFailure::Lost(format!(
                    "worker {} gave no answer {:.0} s after the job's time limit",
                    ad.instance,
                    patience.as_secs_f64() - header.options.time_limit.unwrap_or(0.0)
                )));
            };
            match next {
                Ok(Some(Response::Started)) => {
                    debug!(worker = %ad.instance, "job started");
                    deadline = tokio::time::Instant::now() + patience;
                }
                Ok(Some(Response::Waiting { reason })) => {
                    debug!(worker = %ad.instance, "waiting for {reason}");
                    // Waiting in line (a licence seat) is not being stuck.
                    deadline = tokio::time::Instant::now() + patience;
                    on_note(JobNote::Waiting(reason));
                }
                Ok(Some(Response::Log(line))) => on_note(JobNote::Log(line)),
                Ok(Some(
                    Response::Received(_) | Response::Ready { .. } | Response::Step(_) | Response::Lease(_),
                )) => return Err(JobFailure::Retry("worker sent an unexpected reply".into())),
                Ok(Some(Response::Done(sol))) => {
                    // The worker's end of stream came with the answer: reading it
                    // now means dropping the stream has nothing to tell the peer.
                    let _ = futures_util::FutureExt::now_or_never(recv.read_chunk(1, true));
                    return Ok((sol, addr));
                }
                Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                    return Err(JobFailure::Rejected(message))
                }
                Ok(Some(Response::Failed { kind: FailKind::Unavailable, message })) => {
                    return Err(JobFailure::Unavailable(message))
                }
                Ok(Some(Response::Failed { message, .. })) => return Err(JobFailure::Retry(message)),
                Ok(None) => {
                    return Err(JobFailure::Retry("worker closed the stream without an answer".into()))
                }
                Err(e) => {
                    return Err(match conn.close_reason() {
                        Some(why) => JobFailure::Lost(format!("lost worker {addr}: {why}")),
                        None => JobFailure::Retry(format!("stream to {addr} failed: {e}")),
                    });
                }
            }
        }
    }

    async fn name_server_addr(&self) -> Result<SocketAddr, ClientError> {
        let spec = self.cfg.name_server.as_deref().ok_or_else(|| {
            ClientError::Connect(
                "no name server: set PYRO_NS_HOSTNAME (and PYRO_NS_PORT) or pass --ns HOST[:PORT]".into(),
            )
        })?;
        registry::resolve(spec).await.map_err(|e| ClientError::Connect(e.to_string()))
    }

    /// Leaves a model in the name server's queue as part of `batch` (`--detach`).
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no name server is set, it cannot be reached, or it refuses the
    /// model.
    pub async fn submit_detached(
        &self,
        batch: &str,
        path: &Path,
        header: &SolveRequest,
    ) -> Result<usize, ClientError> {
        let addr = self.name_server_addr().await?;
        let conn = self.ns_connection(addr).await?;
        let fail = |e: &dyn std::fmt::Display| {
            ClientError::Connect(format!("submit to name server {addr} failed: {e}"))
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(&e))?;
        write_msg(&mut send, &Request::Submit { batch: batch.to_string(), model: header.clone() })
            .await
            .map_err(|e| fail(&e))?;
        let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
        if let Err(e) = transport::send_file(file, &mut send).await {
            // The name server may have refused it mid-upload (its quota): its answer says why.
            let answer =
                tokio::time::timeout(Duration::from_secs(2), read_msg::<NsReply>(&mut recv, MAX_CONTROL))
                    .await;
            return Err(match answer {
                Ok(Ok(Some(NsReply::Refused(m)))) => fail(&m),
                _ => fail(&e),
            });
        }
        send.finish().map_err(|e| fail(&e))?;
        match read_msg::<NsReply>(&mut recv, MAX_CONTROL).await {
            Ok(Some(NsReply::Queued { index })) => Ok(index),
            Ok(Some(NsReply::Refused(m))) => Err(fail(&m)),
            other => Err(fail(&format!("unexpected reply {other:?}"))),
        }
    }

    /// The detached batches of this namespace on the name server.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no name server is set or it does not answer.
    pub async fn batches(&self) -> Result<Vec<crate::protocol::BatchSummary>, ClientError> {
        let addr = self.name_server_addr().await?;
        let conn = self.ns_connection(addr).await?;
        match registry::call(&conn, &Request::Batches).await {
            Ok(NsReply::Batches(b)) => Ok(b),
            Ok(other) => Err(ClientError::Connect(format!("unexpected reply {other:?}"))),
            Err(e) => Err(ClientError::Connect(format!("name server {addr}: {e}"))),
        }
    }

    /// Forgets a detached batch on the name server; how many jobs it had.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no name server is set, it does not answer, or has no such batch.
    pub async fn delete_batch(&self, batch: &str) -> Result<usize, ClientError> {
        let addr = self.name_server_addr().await?;
        let conn = self.ns_connection(addr).await?;
        match registry::call(&conn, &Request::DeleteBatch { batch: batch.to_string() }).await {
            Ok(NsReply::Deleted(n)) => Ok(n),
            Ok(NsReply::Refused(m)) => Err(ClientError::Connect(m)),
            Ok(other) => Err(ClientError::Connect(format!("unexpected reply {other:?}"))),
            Err(e) => Err(ClientError::Connect(format!("name server {addr}: {e}"))),
        }
    }

    /// The jobs of a detached batch, as the name server holds them.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no name server is set or it does not answer.
    pub async fn collect(&self, batch: &str) -> Result<Vec<QueuedJob>, ClientError> {
        let addr = self.name_server_addr().await?;
        let conn = self.ns_connection(addr).await?;
        match registry::call(&conn, &Request::Collect { batch: batch.to_string() }).await {
            Ok(NsReply::Batch(jobs)) => Ok(jobs),
            Ok(other) => Err(ClientError::Connect(format!("unexpected reply {other:?}"))),
            Err(e) => Err(ClientError::Connect(format!("name server {addr}: {e}"))),
        }
    }

    /// The workers the name server lists for this namespace now.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when no name server is set or it does not answer.
    pub async fn name_server_workers(&self) -> Result<Vec<WorkerAd>, ClientError> {
        let addr = self.name_server_addr().await?;
        let conn = self.ns_connection(addr).await?;
        match registry::call(&conn, &Request::List).await {
            Ok(NsReply::Workers(ads)) => Ok(ads),
            Ok(other) => Err(ClientError::Connect(format!("unexpected reply {other:?}"))),
            Err(e) => Err(ClientError::Connect(format!("name server {addr}: {e}"))),
        }
    }

    /// Sends a model and returns once the worker has it and a solver slot (its
    /// `Started` reply); the solve is then cancelled. For transfer benchmarks.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or refuses the model.
    pub async fn upload(&self, ad: &WorkerAd, path: &Path, header: &SolveRequest) -> Result<(), ClientError> {
        let Stream { mut send, mut recv, addr, .. } = self.open(ad).await?;
        let fail = |e: &dyn std::fmt::Display| ClientError::Connect(format!("upload to {addr} failed: {e}"));
        write_msg(&mut send, &Request::Solve(header.clone())).await.map_err(|e| fail(&e))?;
        let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
        transport::send_file(file, &mut send).await.map_err(|e| fail(&e))?;
        send.finish().map_err(|e| fail(&e))?;
        match read_msg::<Response>(&mut recv, MAX_RESPONSE).await {
            Ok(Some(Response::Started)) => {
                let _ = recv.stop(0u32.into());
                Ok(())
            }
            other => Err(fail(&format!("unexpected reply {other:?}"))),
        }
    }

    /// Streams `size` bytes to a worker, which discards them: raw QUIC throughput.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the worker cannot be reached or counts other than `size`
    /// bytes.
    pub async fn discard(&self, ad: &WorkerAd, size: u64) -> Result<(), ClientError> {
        let Stream { mut send, mut recv, addr, .. } = self.open(ad).await?;
        let fail = |e: &dyn std::fmt::Display| ClientError::Connect(format!("stream to {addr} failed: {e}"));
        write_msg(&mut send, &Request::Discard { size }).await.map_err(|e| fail(&e))?;
        let chunk = vec![0x5au8; 1 << 16];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            send.write_all(&chunk[..n]).await.map_err(|e| fail(&e))?;
            left -= n as u64;
        }
        send.finish().map_err(|e| fail(&e))?;
        match read_msg::<Response>(&mut recv, MAX_CONTROL).await {
            Ok(Some(Response::Received(n))) if n == size => Ok(()),
            other => Err(fail(&format!("unexpected reply {other:?}"))),
        }
    }

    /// Whether the QUIC connection to `addr` (if any) has been closed or timed out.
    pub fn connection_lost(&self, addr: SocketAddr) -> bool {
        self.conns.get(addr).is_none_or(|c| c.close_reason().is_some())
    }

    /// Closes connections politely, stops browsing and awaits the mesh's tasks.
    /// Safe to call with clones of an `Arc<Mesh>` outstanding, and more than once.
    pub async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.endpoint.close(0u32.into(), b"done");
        // Long enough for the close frames to leave (peers then stop at once);
        // the rest of QUIC's draining period (three probe timeouts, about 80 ms
        // here) only matters on a lossy path, and a short-lived client must not pay it.
        let _ = tokio::time::timeout(Duration::from_millis(3), self.endpoint.wait_idle()).await;
        if let Some(d) = &self.discovery {
            d.shutdown().await;
        }
    }
}

/// Reads a model file to check it, then drops it: off the async threads,
/// unless it is small enough to read in a few microseconds (a trip to the
/// blocking pool would cost more).
///
/// # Errors
/// [`ClientError::Model`] with the file, line and what was expected.
pub async fn check_model(path: &Path, format: Option<Format>) -> Result<(), ClientError> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= transport::INLINE_READ) {
        return Ok(model::read_file(path, format).map(|_| ())?);
    }
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || model::read_file(&p, format).map(|_| ()))
        .await
        .map_err(|e| ClientError::Internal(format!("model check failed: {e}")))??;
    Ok(())
}

/// Connects to a worker (or reuses the connection `conns` holds): its addresses
/// in order of preference, each started 250 ms after the one before unless that
/// one already failed ("happy eyeballs"). The mutual TLS handshake proves that
/// the worker holds a certificate of the namespace's CA.
async fn dial(
    endpoint: &quinn::Endpoint,
    conns: &ConnCache,
    namespace: &str,
    ad: &WorkerAd,
    patience: Duration,
) -> Result<(quinn::Connection, SocketAddr), ClientError> {
    // Every address in order of preference, each started 250 ms after the one
    // before unless that one already failed ("happy eyeballs"): an address that
    // does not route (a container bridge, a link-local one) costs a quarter
    // second, not the whole patience.
    let addrs = ad.addrs_by_preference();
    if addrs.is_empty() {
        return Err(ClientError::Connect(format!("worker {} advertises no address", ad.instance)));
    }
    let attempt = |addr: SocketAddr| async move {
        conns
            .get_or_connect(addr, || async {
                let connecting = endpoint
                    .connect(addr, transport::server_name())
                    .map_err(|e| ClientError::Connect(format!("cannot connect to {addr}: {e}")))?;
                match tokio::time::timeout(patience, connecting).await {
                    Ok(Ok(conn)) => Ok(conn),
                    Ok(Err(e)) => {
                        Err(ClientError::Connect(transport::explain_connect_error(addr, namespace, &e)))
                    }
                    Err(_) => Err(ClientError::Connect(format!(
                        "worker {addr} did not complete the handshake within {:.1} s",
                        patience.as_secs_f64()
                    ))),
                }
            })
            .await
            .map(|c| (c, addr))
    };
    use futures_util::StreamExt;
    let mut pending = addrs.into_iter();
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut last = None;
    loop {
        if let Some(addr) = pending.next() {
            running.push(attempt(addr));
        }
        let more = pending.len() > 0;
        let next = if more {
            match tokio::time::timeout(Duration::from_millis(250), running.next()).await {
                Ok(next) => next,
                Err(_) => continue,
            }
        } else {
            running.next().await
        };
        match next {
            Some(Ok(made)) => return Ok(made),
            Some(Err(e)) => last = Some(e),
            None if !more => break,
            None => {}
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Connect(format!("worker {} could not be reached", ad.instance))))
}

/// The connection to the worker of `ad` if it still serves: it answers a status
/// request (within about a second) over a connection that proves the namespace
/// CA, and is not draining.
async fn serving(
    endpoint: &quinn::Endpoint,
    conns: &ConnCache,
    namespace: &str,
    ad: &WorkerAd,
) -> Option<quinn::Connection> {
    let patience = Duration::from_secs(1);
    let ask = async {
        let (conn, _) = dial(endpoint, conns, namespace, ad, patience).await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        write_msg(&mut send, &Request::Status).await.ok()?;
        send.finish().ok()?;
        let st = read_msg::<WorkerStatus>(&mut recv, MAX_CONTROL).await.ok()??;
        (st.name == ad.instance && !st.draining).then_some(conn)
    };
    tokio::time::timeout(patience * 2, ask).await.ok().flatten()
}

/// Open connections by address. Concurrent callers for the same address wait for
/// one handshake and share its connection, instead of racing several.
#[derive(Default)]
struct ConnCache {
    slots: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<quinn::Connection>>>>>,
}

impl ConnCache {
    fn get(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let slot = self.slots.lock().ok()?.get(&addr)?.clone();
        let c = slot.try_lock().ok()?.clone();
        c
    }

    async fn get_or_connect<F, Fut>(
        &self,
        addr: SocketAddr,
        connect: F,
    ) -> Result<quinn::Connection, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<quinn::Connection, ClientError>>,
    {
        let slot = self.slots.lock().map(|mut m| m.entry(addr).or_default().clone()).ok();
        let Some(slot) = slot else { return connect().await };
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let c = connect().await?;
        *held = Some(c.clone());
        Ok(c)
    }
}

/// A stream to a worker, direct or relayed.
pub(crate) struct Stream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// The connection carrying it (to the worker, or to the relaying name server).
    pub conn: quinn::Connection,
    /// Where it goes.
    pub addr: SocketAddr,
}

/// What a worker says about a running job before its answer.
#[derive(Debug, Clone)]
pub enum JobNote {
    /// It waits before it can start (a licence seat), and why.
    Waiting(String),
    /// A line of the solver's own log (when the job asked for it).
    Log(String),
}

/// How a single run of a job failed.
#[derive(Debug)]
pub enum JobFailure {
    /// The worker refused the model or options: do not retry.
    Rejected(String),
    /// The solver crashed or the stream failed: retry elsewhere.
    Retry(String),
    /// The worker died while it had the job: retry elsewhere and stop using it.
    Lost(String),
    /// The worker could not be reached at all (the job never got there): retry
    /// elsewhere, stop using it, and do not count the attempt.
    Unreached(String),
    /// The worker is draining: retry elsewhere, give it no more jobs.
    Unavailable(String),
}

/// An advert left out of the namespace's workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignored {
    /// The advert's instance name.
    pub instance: String,
    /// Why it was left out.
    pub why: IgnoredWhy,
}

/// Why an advert was left out.
#[derive(Debug, Clone, PartialEq)]
pub enum IgnoredWhy {
    /// It belongs to another namespace (named).
    OtherNamespace(String),
    /// Same namespace name, another CA (its fingerprint): another box's namespace of that name.
    OtherCa(String),
    /// A meshsolve speaking another protocol version.
    OtherProtocol(u32),
}

impl std::fmt::Display for IgnoredWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IgnoredWhy::OtherNamespace(ns) => write!(f, "namespace `{ns}`"),
            IgnoredWhy::OtherCa(fp) => write!(f, "another CA ({fp})"),
            IgnoredWhy::OtherProtocol(v) => {
                write!(
                    f,
                    "protocol {v} (this meshsolve speaks {}): upgrade one side",
                    crate::protocol::VERSION
                )
            }
        }
    }
}

/// Follows the merged discovery events and keeps [`Mesh`]'s view of the
/// namespace's workers: adverts of other namespaces, CAs or protocol versions
/// are counted (for error messages) and left out.
struct Tracker {
    /// Where the workers seen are remembered for the next cold start.
    peers: PathBuf,
    namespace: String,
    ca: String,
    workers: Arc<Mutex<HashMap<String, WorkerAd>>>,
    foreign: Arc<Mutex<Vec<Ignored>>>,
    lost: Arc<Mutex<HashMap<String, Instant>>>,
    tx: Arc<watch::Sender<u64>>,
    endpoint: quinn::Endpoint,
    conns: Arc<ConnCache>,
    unproven: Arc<Mutex<HashMap<String, (Instant, String)>>>,
}

/// How long a new advert's worker has to complete a handshake before it is left out.
const PROOF_PATIENCE: Duration = Duration::from_secs(3);

/// How long an advert that failed its handshake is ignored (unless its addresses change).
const QUARANTINE: Duration = Duration::from_secs(30);

impl Tracker {
    /// Adds (or updates) a worker that proved itself.
    fn admit(workers: &Mutex<HashMap<String, WorkerAd>>, peers: &Path, ad: WorkerAd) -> bool {
        let changed = workers.lock().is_ok_and(|mut w| {
            let changed = w.get(&ad.instance) != Some(&ad);
            w.insert(ad.instance.clone(), ad.clone());
            changed
        });
        if changed && ad.relay.is_none() {
            cache::remember(peers, &ad);
        }
        changed
    }

    /// Forgets a worker that left.
    fn drop_worker(workers: &Mutex<HashMap<String, WorkerAd>>, peers: &Path, instance: &str) {
        debug!(%instance, "worker down");
        if let Ok(mut w) = workers.lock() {
            w.remove(instance);
        }
        cache::forget(peers, instance);
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<DiscoveryEvent>) {
        let mut seen_foreign = std::collections::HashSet::new();
        // Handshakes with new adverts' workers; aborted with the tracker.
        let mut proofs = tokio::task::JoinSet::new();
        let mut proving: HashMap<String, Vec<SocketAddr>> = HashMap::new();
        // Checks that a worker said goodbye itself; aborted with the tracker.
        let mut goodbyes = tokio::task::JoinSet::new();
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => match ev { Some(ev) => ev, None => break },
                Some(_) = goodbyes.join_next(), if !goodbyes.is_empty() => continue,
                Some(done) = proofs.join_next(), if !proofs.is_empty() => {
                    if let Ok(instance) = done {
                        proving.remove(&instance);
                    }
                    continue;
                }
            };
            match ev {
                DiscoveryEvent::Up(ad) => {
                    let why = if ad.namespace != self.namespace {
                        Some(IgnoredWhy::OtherNamespace(ad.namespace.clone()))
                    } else if ad.ca_fingerprint != self.ca {
                        Some(IgnoredWhy::OtherCa(ad.ca_fingerprint.clone()))
                    } else if ad.protocol != crate::protocol::VERSION {
                        Some(IgnoredWhy::OtherProtocol(ad.protocol))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        if seen_foreign.insert(ad.instance.clone()) {
                            if let Ok(mut f) = self.foreign.lock() {
                                f.push(Ignored { instance: ad.instance.clone(), why });
                            }
                        }
                        continue;
                    }
                    debug!(instance = %ad.instance, addrs = ?ad.addrs, relay = ?ad.relay, "worker up");
                    // An advert is a hint, not a worker: anyone on the LAN can send one.
                    // A worker is used once a mutual TLS handshake has proved it holds
                    // the namespace CA's certificate (that connection then carries its
                    // first job). Adverts through a name server were proved by it.
                    // A known worker's new advert is taken as it comes, unless it adds
                    // addresses (which anyone could send under its name).
                    let known = self.workers.lock().is_ok_and(|w| {
                        w.get(&ad.instance).is_some_and(|old| ad.addrs.iter().all(|a| old.addrs.contains(a)))
                    }) && !self.lost.lock().is_ok_and(|l| l.contains_key(&ad.instance));
                    if known || ad.relay.is_some() {
                        if let Ok(mut l) = self.lost.lock() {
                            l.remove(&ad.instance);
                        }
                        Self::admit(&self.workers, &self.peers, ad);
                    } else {
                        let quarantined = self.unproven.lock().is_ok_and(|u| {
                            u.get(&ad.instance).is_some_and(|(t, _)| t.elapsed() < QUARANTINE)
                        }) && proving.get(&ad.instance).is_none_or(|a| *a == ad.addrs);
                        if quarantined || proving.get(&ad.instance) == Some(&ad.addrs) {
                            continue;
                        }
                        proving.insert(ad.instance.clone(), ad.addrs.clone());
                        let (endpoint, conns, namespace) =
                            (self.endpoint.clone(), self.conns.clone(), self.namespace.clone());
                        let (workers, lost, unproven, peers, tx) = (
                            self.workers.clone(),
                            self.lost.clone(),
                            self.unproven.clone(),
                            self.peers.clone(),
                            self.tx.clone(),
                        );
                        proofs.spawn(async move {
                            match dial(&endpoint, &conns, &namespace, &ad, PROOF_PATIENCE).await {
                                Ok((_, proved)) => {
                                    if let Ok(mut u) = unproven.lock() {
                                        u.remove(&ad.instance);
                                    }
                                    if let Ok(mut l) = lost.lock() {
                                        l.remove(&ad.instance);
                                    }
                                    // The address that answered is tried first from now on.
                                    let mut ad = ad.clone();
                                    ad.addrs.retain(|a| *a != proved);
                                    ad.addrs.insert(0, proved);
                                    Self::admit(&workers, &peers, ad);
                                    tx.send_modify(|v| *v += 1);
                                }
                                Err(e) => {
                                    debug!(instance = %ad.instance, "advert not proved, ignored for {} s: {e}", QUARANTINE.as_secs());
                                    if let Ok(mut u) = unproven.lock() {
                                        u.insert(ad.instance.clone(), (Instant::now(), e.to_string()));
                                    }
                                    tx.send_modify(|v| *v += 1);
                                }
                            }
                            ad.instance
                        });
                        continue;
                    }
                }
                DiscoveryEvent::Down(instance) => {
                    // A goodbye is as unauthenticated as an advert, and carries only a
                    // name: a box advertising under a worker's name (another
                    // namespace's, or a stranger's) says goodbye for it when it stops.
                    // A worker we proved is dropped only once it no longer serves.
                    let proved = self
                        .workers
                        .lock()
                        .ok()
                        .and_then(|w| w.get(&instance).cloned())
                        .filter(|ad| ad.relay.is_none());
                    let Some(ad) = proved else {
                        Self::drop_worker(&self.workers, &self.peers, &instance);
                        self.tx.send_modify(|v| *v += 1);
                        continue;
                    };
                    let (endpoint, conns, namespace, workers, peers, tx) = (
                        self.endpoint.clone(),
                        self.conns.clone(),
                        self.namespace.clone(),
                        self.workers.clone(),
                        self.peers.clone(),
                        self.tx.clone(),
                    );
                    goodbyes.spawn(async move {
                        let mut warned = false;
                        // Discovery may not report this worker's own goodbye any more (its
                        // record went with the impostor's): its connection closing is the sign.
                        let mut ad = ad;
                        while let Some(conn) = serving(&endpoint, &conns, &namespace, &ad).await {
                            if !std::mem::replace(&mut warned, true) {
                                info!(
                                    worker = %instance,
                                    "a goodbye under the name of a worker that still serves: ignored \
                                     (another box advertises under its name?)"
                                );
                            }
                            conn.closed().await;
                            match workers.lock().ok().and_then(|w| w.get(&instance).cloned()) {
                                Some(now) => ad = now,
                                None => return,
                            }
                        }
                        Self::drop_worker(&workers, &peers, &instance);
                        tx.send_modify(|v| *v += 1);
                    });
                    continue;
                }
            }
            self.tx.send_modify(|v| *v += 1);
        }
        // Every source has finished (e.g. only remembered workers, all probed):
        // the handshakes under way still decide which of them are used.
        while proofs.join_next().await.is_some() {}
    }
}
