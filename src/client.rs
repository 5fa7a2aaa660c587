//! The client side of the mesh, usable as a library: find workers, check
//! them, send models, collect solutions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meshsolve::client::ClientError> {
//! use meshsolve::client::{ClientConfig, JobOptions, Mesh};
//! let mesh = Mesh::connect(ClientConfig::from_env()).await?;
//! mesh.wait_for_workers(None, std::time::Duration::from_secs(3)).await?;
//! let result = mesh.solve_file("farmer.lp".as_ref(), &JobOptions::default()).await?;
//! println!("{:?} {:?}", result.solution.status, result.solution.objective);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::certs::{self, NamespaceCa, CLIENT_NAME};
use crate::discovery::mdns::Mdns;
use crate::discovery::{Discovery, DiscoveryEvent, WorkerAd};
use crate::model::{self, Format, ModelError};
use crate::protocol::{
    read_msg, write_msg, FailKind, Request, Response, ShutdownAck, SolveRequest, WorkerStatus, MAX_CONTROL,
    MAX_RESPONSE,
};
use crate::solver::{Solution, SolveOptions};
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
    /// Attempts on different workers before giving up on crashes and lost workers.
    pub max_attempts: Option<u32>,
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
    /// A worker could not be reached or refused us.
    #[error("{0}")]
    Connect(String),
    /// The worker refused the job (bad model or option); retrying elsewhere will not help.
    #[error("worker {worker} rejected the job: {message}")]
    Rejected {
        /// Worker instance.
        worker: String,
        /// Why.
        message: String,
    },
    /// Every attempt failed (crashes, lost workers).
    #[error("job failed after {attempts} attempt(s): {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        last: String,
    },
    /// Local set-up failed (certificates, sockets).
    #[error(transparent)]
    Setup(#[from] anyhow::Error),
}

impl From<certs::CertError> for ClientError {
    fn from(e: certs::CertError) -> Self {
        ClientError::Setup(e.into())
    }
}

impl From<transport::TransportError> for ClientError {
    fn from(e: transport::TransportError) -> Self {
        ClientError::Setup(e.into())
    }
}

/// A connection to the mesh of one namespace.
pub struct Mesh {
    cfg: ClientConfig,
    endpoint: quinn::Endpoint,
    ca_fingerprint: String,
    /// Workers of our namespace and CA, by instance name.
    workers: Arc<Mutex<HashMap<String, WorkerAd>>>,
    /// Adverts of other namespaces seen (count), for error messages.
    foreign: Arc<Mutex<u32>>,
    changed: watch::Receiver<u64>,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// Jobs this client has sent to each worker and not yet seen finish.
    inflight: Mutex<HashMap<String, u32>>,
    mdns: Option<Arc<Mdns>>,
}

impl Mesh {
    /// Loads (or creates) the namespace CA, binds a client endpoint and starts browsing.
    pub async fn connect(cfg: ClientConfig) -> Result<Mesh, ClientError> {
        let ca = NamespaceCa::load_or_create(&cfg.home, &cfg.namespace)?;
        let id = ca.issue(CLIENT_NAME)?;
        let endpoint = transport::client_endpoint(&id)?;
        let workers = Arc::new(Mutex::new(HashMap::new()));
        let foreign = Arc::new(Mutex::new(0));
        let (tx, changed) = watch::channel(0u64);
        let mut mdns = None;
        if cfg.static_workers.is_empty() {
            let m = Arc::new(Mdns::new(&cfg.interfaces).map_err(anyhow::Error::from)?);
            let rx = m.browse().map_err(anyhow::Error::from)?;
            tokio::spawn(track(
                rx,
                cfg.namespace.clone(),
                ca.fingerprint(),
                workers.clone(),
                foreign.clone(),
                tx,
            ));
            mdns = Some(m);
        }
        Ok(Mesh {
            cfg,
            endpoint,
            ca_fingerprint: ca.fingerprint(),
            workers,
            foreign,
            changed,
            conns: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            mdns,
        })
    }

    /// The namespace in use.
    pub fn namespace(&self) -> &str {
        &self.cfg.namespace
    }

    /// Workers currently visible (mDNS) or given statically.
    pub fn workers(&self) -> Vec<WorkerAd> {
        let mut v: Vec<WorkerAd> =
            self.workers.lock().map(|w| w.values().cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| a.instance.cmp(&b.instance));
        v
    }

    /// Waits until at least one worker with `solver` is known, then a short moment
    /// more for others to answer; at most `timeout`.
    pub async fn wait_for_workers(
        &self,
        solver: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<WorkerAd>, ClientError> {
        let start = Instant::now();
        if !self.cfg.static_workers.is_empty() {
            return self.resolve_static(solver).await;
        }
        let mut changed = self.changed.clone();
        let deadline = start + timeout;
        let mut first_seen: Option<Instant> = None;
        loop {
            let n = self.workers().iter().filter(|w| w.has_solver(solver)).count();
            if n > 0 && first_seen.is_none() {
                first_seen = Some(Instant::now());
            }
            // After the first answer, give the others 300 ms to answer too.
            let until = match first_seen {
                Some(t) => (t + Duration::from_millis(300)).min(deadline),
                None => deadline,
            };
            let now = Instant::now();
            if now >= until {
                break;
            }
            let _ = tokio::time::timeout(until - now, changed.changed()).await;
        }
        let found: Vec<WorkerAd> = self.workers().into_iter().filter(|w| w.has_solver(solver)).collect();
        if found.is_empty() {
            let foreign = self.foreign.lock().map(|f| *f).unwrap_or(0);
            return Err(ClientError::NoWorkers {
                namespace: self.cfg.namespace.clone(),
                solver: solver.map(|s| format!(" with solver `{s}`")).unwrap_or_default(),
                waited: start.elapsed().as_secs_f64(),
                seen: if foreign > 0 {
                    format!(" ({foreign} worker advert(s) of other namespaces or CAs were ignored)")
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

    async fn connection(&self, ad: &WorkerAd) -> Result<(quinn::Connection, SocketAddr), ClientError> {
        let mut last = String::from("worker has no address");
        let mut addrs: Vec<SocketAddr> = ad.best_addr().into_iter().collect();
        addrs.extend(ad.addrs.iter().filter(|a| Some(**a) != ad.best_addr()));
        for addr in addrs {
            if let Some(c) = self.conns.lock().ok().and_then(|m| m.get(&addr).cloned()) {
                if c.close_reason().is_none() {
                    return Ok((c, addr));
                }
            }
            let connecting = match self.endpoint.connect(addr, transport::server_name()) {
                Ok(c) => c,
                Err(e) => {
                    last = format!("cannot connect to {addr}: {e}");
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), connecting).await {
                Ok(Ok(conn)) => {
                    if let Ok(mut m) = self.conns.lock() {
                        m.insert(addr, conn.clone());
                    }
                    return Ok((conn, addr));
                }
                Ok(Err(e)) => last = transport::explain_connect_error(addr, &self.cfg.namespace, &e),
                Err(_) => last = format!("worker {addr} did not complete the handshake within 5 s"),
            }
        }
        Err(ClientError::Connect(last))
    }

    /// Asks a worker for its state.
    pub async fn status(&self, ad: &WorkerAd) -> Result<WorkerStatus, ClientError> {
        let (conn, addr) = self.connection(ad).await?;
        let io = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            write_msg(&mut send, &Request::Status).await?;
            send.finish()?;
            let st: Option<WorkerStatus> = read_msg(&mut recv, MAX_CONTROL).await?;
            st.ok_or_else(|| anyhow::anyhow!("worker closed the stream without an answer"))
        };
        tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .map_err(|_| {
                ClientError::Connect(format!("worker {addr} did not answer a status request within 5 s"))
            })?
            .map_err(|e| ClientError::Connect(format!("status request to {addr} failed: {e}")))
    }

    /// Asks a worker to exit.
    pub async fn shutdown_worker(&self, ad: &WorkerAd) -> Result<ShutdownAck, ClientError> {
        let (conn, addr) = self.connection(ad).await?;
        let io = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            write_msg(&mut send, &Request::Shutdown).await?;
            send.finish()?;
            let ack: Option<ShutdownAck> = read_msg(&mut recv, MAX_CONTROL).await?;
            ack.ok_or_else(|| anyhow::anyhow!("worker closed the stream without an answer"))
        };
        tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .map_err(|_| ClientError::Connect(format!("worker {addr} did not answer within 5 s")))?
            .map_err(|e| ClientError::Connect(format!("shutdown request to {addr} failed: {e}")))
    }

    /// Picks the worker with the most free slots for `solver`, asking each for its state.
    async fn pick(&self, solver: Option<&str>, exclude: &[String]) -> Option<WorkerAd> {
        let candidates: Vec<WorkerAd> = self
            .workers()
            .into_iter()
            .filter(|w| w.has_solver(solver) && !exclude.contains(&w.instance))
            .collect();
        let mut best: Option<(f64, WorkerAd)> = None;
        let statuses = futures_join_all(candidates.iter().map(|w| self.status(w))).await;
        for (w, st) in candidates.into_iter().zip(statuses) {
            let Ok(st) = st else { continue };
            if st.draining {
                continue;
            }
            // Our own jobs may not have reached the worker yet: count them too.
            let mine = self.inflight.lock().ok().and_then(|m| m.get(&w.instance).copied()).unwrap_or(0);
            let load = st.busy.max(mine) as f64 / st.slots.max(1) as f64;
            if best.as_ref().is_none_or(|(l, _)| load < *l) {
                best = Some((load, w));
            }
        }
        let chosen = best.map(|b| b.1)?;
        // Count the job at once, so concurrent picks see it.
        if let Ok(mut m) = self.inflight.lock() {
            *m.entry(chosen.instance.clone()).or_default() += 1;
        }
        Some(chosen)
    }

    /// Validates `path` locally, then solves it on the least busy suitable worker,
    /// retrying on another worker if one dies or crashes.
    pub async fn solve_file(&self, path: &Path, opts: &JobOptions) -> Result<JobResult, ClientError> {
        let (format, gzip) = match (opts.format, Format::from_path(path)) {
            (Some(f), g) => (f, g.map(|g| g.1).unwrap_or(false)),
            (None, Some(g)) => g,
            (None, None) => return Err(ModelError::UnknownFormat { path: path.to_path_buf() }.into()),
        };
        if !opts.prechecked {
            check_model(path, Some(format)).await?;
        }
        let size = std::fs::metadata(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?
            .len();
        let header = SolveRequest {
            name: model::model_stem(path),
            format,
            gzip,
            size,
            solver: opts.solver.clone(),
            options: opts.solve.clone(),
        };
        let max = opts.max_attempts.unwrap_or(3).max(1);
        let mut tried: Vec<String> = Vec::new();
        let mut last = String::new();
        for attempt in 1..=max {
            let picked = match self.pick(opts.solver.as_deref(), &tried).await {
                Some(ad) => Some(ad),
                // Every worker was tried once: allow repeats rather than give up early.
                None => self.pick(opts.solver.as_deref(), &[]).await,
            };
            let Some(ad) = picked else {
                return Err(ClientError::Exhausted {
                    attempts: attempt - 1,
                    last: if last.is_empty() { "no worker available".into() } else { last },
                });
            };
            tried.push(ad.instance.clone());
            let started = Instant::now();
            let outcome = self.send_job(&ad, path, &header).await;
            if let Ok(mut m) = self.inflight.lock() {
                if let Some(n) = m.get_mut(&ad.instance) {
                    *n = n.saturating_sub(1);
                }
            }
            match outcome {
                Ok((solution, addr)) => {
                    return Ok(JobResult {
                        solution,
                        worker: ad.instance.clone(),
                        addr,
                        wall_seconds: started.elapsed().as_secs_f64(),
                        attempts: attempt,
                    })
                }
                Err(JobFailure::Rejected(message)) => {
                    return Err(ClientError::Rejected { worker: ad.instance, message })
                }
                Err(JobFailure::Retry(m)) => {
                    info!(worker = %ad.instance, attempt, "job failed, will retry elsewhere: {m}");
                    last = format!("{}: {m}", ad.instance);
                }
            }
        }
        Err(ClientError::Exhausted { attempts: max, last })
    }

    async fn send_job(
        &self,
        ad: &WorkerAd,
        path: &Path,
        header: &SolveRequest,
    ) -> Result<(Solution, SocketAddr), JobFailure> {
        let (conn, addr) = self.connection(ad).await.map_err(|e| JobFailure::Retry(e.to_string()))?;
        let retry = |e: &dyn std::fmt::Display| JobFailure::Retry(format!("{e}"));
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| retry(&e))?;
        write_msg(&mut send, &Request::Solve(header.clone())).await.map_err(|e| retry(&e))?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| JobFailure::Rejected(format!("cannot open {}: {e}", path.display())))?;
        tokio::io::copy(&mut file, &mut send).await.map_err(|e| retry(&e))?;
        send.finish().map_err(|e| retry(&e))?;
        loop {
            match read_msg::<Response>(&mut recv, MAX_RESPONSE).await {
                Ok(Some(Response::Started)) => debug!(worker = %ad.instance, "job started"),
                Ok(Some(Response::Done(sol))) => return Ok((sol, addr)),
                Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                    return Err(JobFailure::Rejected(message))
                }
                Ok(Some(Response::Failed { message, .. })) => return Err(JobFailure::Retry(message)),
                Ok(None) => {
                    return Err(JobFailure::Retry("worker closed the stream without an answer".into()))
                }
                Err(e) => {
                    let why = conn.close_reason().map(|r| r.to_string()).unwrap_or_else(|| e.to_string());
                    return Err(JobFailure::Retry(format!("lost worker {addr}: {why}")));
                }
            }
        }
    }

    /// Closes connections politely and stops browsing.
    pub async fn close(self) {
        self.endpoint.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
        if let Some(m) = self.mdns {
            let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
        }
    }
}

/// Reads a model file (off the async threads) to check it, then drops it.
pub async fn check_model(path: &Path, format: Option<Format>) -> Result<(), ClientError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || model::read_file(&p, format).map(|_| ()))
        .await
        .map_err(|e| ClientError::Setup(anyhow::anyhow!("model check failed: {e}")))??;
    Ok(())
}

enum JobFailure {
    Rejected(String),
    Retry(String),
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<F> = futs.collect();
    let mut out = Vec::with_capacity(futs.len());
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    // Poll all concurrently.
    let results = futures_util_join(set).await;
    out.extend(results);
    out
}

async fn futures_util_join<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut results: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if results[i].is_none() {
                match std::pin::Pin::new(&mut *f).poll(cx) {
                    Poll::Ready(v) => results[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("every future completed")).collect()
}

async fn track(
    mut rx: mpsc::UnboundedReceiver<DiscoveryEvent>,
    namespace: String,
    ca: String,
    workers: Arc<Mutex<HashMap<String, WorkerAd>>>,
    foreign: Arc<Mutex<u32>>,
    tx: watch::Sender<u64>,
) {
    let mut seen_foreign = std::collections::HashSet::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            DiscoveryEvent::Up(ad) => {
                if ad.namespace != namespace
                    || ad.ca_fingerprint != ca
                    || ad.protocol != crate::protocol::VERSION
                {
                    if seen_foreign.insert(ad.instance.clone()) {
                        if let Ok(mut f) = foreign.lock() {
                            *f += 1;
                        }
                    }
                    continue;
                }
                debug!(instance = %ad.instance, addrs = ?ad.addrs, "worker up");
                if let Ok(mut w) = workers.lock() {
                    w.insert(ad.instance.clone(), ad);
                }
            }
            DiscoveryEvent::Down(instance) => {
                debug!(%instance, "worker down");
                if let Ok(mut w) = workers.lock() {
                    w.remove(&instance);
                }
            }
        }
        tx.send_modify(|v| *v += 1);
    }
}
