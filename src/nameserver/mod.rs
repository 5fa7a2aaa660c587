//! The static name server (`meshns`) for networks where multicast is blocked,
//! found through `PYRO_NS_HOSTNAME` / `PYRO_NS_PORT` as Pyro's was.
//!
//! It speaks the mesh's QUIC + mutual-TLS protocol and serves many namespaces
//! at once: the TLS server name says which namespace a peer wants, and the
//! peer's certificate must be signed by that namespace's CA. Workers register
//! over an outbound connection and keep it alive (lease + refresh); a worker
//! whose connection drops or whose lease runs out disappears within seconds.
//! Clients list a namespace's workers, and reach the ones they cannot reach
//! directly through the name server, which relays a stream over the worker's
//! own outbound connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::certs::NamespaceCa;
use crate::discovery::WorkerAd;
use crate::protocol::{read_msg, write_msg, NsReply, Request, MAX_CONTROL};
use crate::transport;

pub mod queue;

pub use crate::discovery::registry::DEFAULT_PORT;

/// How long a registration lives without a refresh.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);

/// Why the name server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// A namespace CA could not be loaded or created.
    #[error("cannot load the CA of namespace `{namespace}`: {source}")]
    Ca {
        /// The namespace.
        namespace: String,
        /// Why.
        source: crate::certs::CertError,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// The UDP port could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The queue directory could not be opened.
    #[error("cannot open the queue directory {path}: {source}")]
    Queue {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

struct Entry {
    ad: WorkerAd,
    conn: quinn::Connection,
    expires: Instant,
    /// Whether the worker has answered a status request over its connection:
    /// until then it is neither listed nor given queued jobs (a namespace member
    /// could register a "worker" with 1000 slots that never answers).
    proven: bool,
}

#[derive(Default)]
struct Registry {
    /// (namespace, instance) → registration.
    entries: HashMap<(String, String), Entry>,
}

/// Name server settings.
#[derive(Debug, Clone)]
pub struct NsConfig {
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// Namespaces served (their CAs must be under `home`).
    pub namespaces: Vec<String>,
    /// Where namespace CAs live.
    pub home: std::path::PathBuf,
    /// Lease length.
    pub lease: Duration,
    /// Where queued (`--detach`) jobs and their results are kept.
    pub state_dir: std::path::PathBuf,
    /// How much the queue keeps per namespace, and for how long.
    pub queue_limits: queue::QueueLimits,
}

/// The namespaces found under `home` (directories holding `ca.key`).
pub fn namespaces_in(home: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(home)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("ca.key").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs the name server until `shutdown` fires. Every task it starts
/// (connections, streams, expiry, the queue's dispatcher) is cancelled and
/// awaited before it returns.
///
/// # Errors
/// [`NsError`] when it cannot start; once serving, it only returns on `shutdown`.
pub async fn run(
    cfg: NsConfig,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), NsError> {
    let mut cas = Vec::new();
    for ns in &cfg.namespaces {
        cas.push(
            NamespaceCa::load_or_create(&cfg.home, ns)
                .map_err(|source| NsError::Ca { namespace: ns.clone(), source })?,
        );
    }
    let cas = Arc::new(cas);
    let server = transport::name_server_config(&cas)?;
    let endpoint = quinn::Endpoint::server(server, cfg.bind)
        .map_err(|source| NsError::Bind { addr: cfg.bind, source })?;
    let local = endpoint.local_addr().map_err(|source| NsError::Bind { addr: cfg.bind, source })?;
    let queue = queue::Queue::open(&cfg.state_dir, cfg.queue_limits)
        .map_err(|source| NsError::Queue { path: cfg.state_dir.clone(), source })?;
    info!(addr = %local, namespaces = ?cfg.namespaces, "name server ready");
    on_ready(local);
    let reg = Arc::new(Mutex::new(Registry::default()));
    let lease = cfg.lease;
    let tasks = TaskTracker::new();
    let stop = shutdown.child_token();
    {
        let reg = reg.clone();
        tasks.spawn(queue::run_dispatcher(queue.clone(), move || registered_workers(&reg), stop.clone()));
    }
    {
        let (q, stop) = (queue.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => q.expire(),
                }
            }
        });
    }
    {
        let (reg, stop) = (reg.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => expire(&reg),
                }
            }
        });
    }
    // Failed handshakes logged (a flood from one stranger must not fill the log).
    let handshake_log = Arc::new(transport::LogBudget::new(5));
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let (reg, cas, queue, stop, t, budget) =
            (reg.clone(), cas.clone(), queue.clone(), stop.clone(), tasks.clone(), handshake_log.clone());
        tasks.spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(n) = budget.allow() {
                        let more = if n > 0 { format!(" ({n} more not logged)") } else { String::new() };
                        warn!(%remote, "refused connection: {e}{more}");
                    }
                    return;
                }
            };
            let Some(ns) = transport::client_namespace_ok(&conn, &cas) else {
                if let Some(n) = budget.allow() {
                    let more = if n > 0 { format!(" ({n} more not logged)") } else { String::new() };
                    warn!(%remote, "refused a peer whose certificate does not belong to the namespace it asked for{more}");
                }
                conn.close(2u32.into(), b"certificate not signed by the requested namespace's CA");
                return;
            };
            let peer = Peer { conn, ns: ns.clone(), reg, lease, queue, tasks: t };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = peer.serve().instrument(tracing::info_span!("peer", %remote, namespace = %ns)) => {}
            }
        });
    }
    stop.cancel();
    endpoint.close(0u32.into(), b"name server exiting");
    tasks.close();
    tasks.wait().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

/// The live registrations, as the queue's dispatcher sees them.
fn registered_workers(reg: &Mutex<Registry>) -> Vec<queue::QueueWorker> {
    let now = Instant::now();
    reg.lock()
        .map(|r| {
            r.entries
                .iter()
                .filter(|(_, e)| e.expires > now && e.proven && e.conn.close_reason().is_none())
                .map(|((ns, inst), e)| queue::QueueWorker {
                    namespace: ns.clone(),
                    instance: inst.clone(),
                    slots: e.ad.slots,
                    solvers: e.ad.solvers.clone(),
                    conn: e.conn.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asks a new registration's worker for its status over its own connection;
/// trusts it (and at most the slots and solvers it reports) once it answers,
/// and drops it if it does not within 3 s.
async fn prove_registration(reg: Arc<Mutex<Registry>>, conn: quinn::Connection, key: (String, String)) {
    let asked = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        write_msg(&mut send, &Request::Status).await.ok()?;
        let _ = send.finish();
        read_msg::<crate::protocol::WorkerStatus>(&mut recv, MAX_CONTROL).await.ok().flatten()
    };
    let status = tokio::time::timeout(Duration::from_secs(3), asked).await.ok().flatten();
    let Ok(mut r) = reg.lock() else { return };
    match status {
        Some(st) if st.name == key.1 => {
            if let Some(e) = r.entries.get_mut(&key) {
                e.proven = true;
                e.ad.slots = e.ad.slots.min(st.slots);
                e.ad.solvers = st.solvers;
            }
        }
        _ => {
            warn!(worker = %key.1, "a registration whose worker does not answer a status request is ignored");
            r.entries.remove(&key);
        }
    }
}

/// Drops registrations whose lease ran out or whose connection closed.
fn expire(reg: &Mutex<Registry>) {
    let now = Instant::now();
    if let Ok(mut r) = reg.lock() {
        r.entries.retain(|(ns, inst), e| {
            let keep = e.expires > now && e.conn.close_reason().is_none();
            if !keep {
                info!(namespace = %ns, worker = %inst, "registration expired");
            }
            keep
        });
    }
}

/// One authenticated peer connection (a worker or a client of namespace `ns`).
struct Peer {
    conn: quinn::Connection,
    ns: String,
    reg: Arc<Mutex<Registry>>,
    lease: Duration,
    queue: Arc<queue::Queue>,
    /// The name server's tracker: each stream's task is owned there.
    tasks: TaskTracker,
}

impl Peer {
    /// Serves the peer's streams until it goes; each stream is a task of the name server's tracker.
    async fn serve(self) {
        let peer = Arc::new(self);
        loop {
            let (send, recv) = match peer.conn.accept_bi().await {
                Ok(s) => s,
                Err(e) => {
                    debug!("peer gone: {e}");
                    break;
                }
            };
            let p = peer.clone();
            peer.tasks.spawn(async move { p.stream(send, recv).await });
        }
    }

    /// Answers one request.
    async fn stream(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let req: Request = match read_msg(&mut recv, MAX_CONTROL).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                warn!("bad message: {e}");
                let _ = write_msg(&mut send, &NsReply::Refused(format!("bad message: {e}"))).await;
                let _ = send.finish();
                return;
            }
        };
        let reply = match req {
            Request::Register(mut ad) => {
                if ad.namespace != self.ns {
                    warn!(claimed = %ad.namespace, "refused a registration for another namespace");
                    NsReply::Refused(format!(
                        "registration for namespace `{}` on a connection of namespace `{}`",
                        ad.namespace, self.ns
                    ))
                } else {
                    // Clients reach it at its own addresses or, failing that, through us.
                    ad.addrs.retain(|a| !a.ip().is_unspecified());
                    if ad.addrs.is_empty() || ad.addrs.iter().all(|a| a.ip().is_loopback()) {
                        let seen = self.conn.remote_address();
                        let port = ad.addrs.first().map(|a| a.port()).unwrap_or(seen.port());
                        ad.addrs.insert(0, SocketAddr::new(seen.ip(), port));
                    }
                    info!(worker = %ad.instance, addrs = ?ad.addrs, "registered");
                    let key = (self.ns.clone(), ad.instance.clone());
                    let proven = self
                        .reg
                        .lock()
                        .ok()
                        .and_then(|r| r.entries.get(&key).map(|e| e.proven))
                        .unwrap_or(false);
                    if let Ok(mut r) = self.reg.lock() {
                        r.entries.insert(
                            key.clone(),
                            Entry {
                                ad,
                                conn: self.conn.clone(),
                                expires: Instant::now() + self.lease,
                                proven,
                            },
                        );
                    }
                    if !proven {
                        let (reg, conn) = (self.reg.clone(), self.conn.clone());
                        self.tasks.spawn(prove_registration(reg, conn, key));
                    }
                    NsReply::Leased { seconds: self.lease.as_secs_f64() }
                }
            }
            Request::Refresh { instance } => {
                let mut r = match self.reg.lock() {
                    Ok(r) => r,
                    Err(_) => return,
                };
                match r.entries.get_mut(&(self.ns.clone(), instance.clone())) {
                    Some(e) if e.conn.stable_id() == self.conn.stable_id() => {
                        e.expires = Instant::now() + self.lease;
                        NsReply::Leased { seconds: self.lease.as_secs_f64() }
                    }
                    _ => {
                        warn!(%instance, "refused a lease refresh for a registration this peer does not hold");
                        NsReply::Refused(format!(
                            "no registration of `{instance}` on this connection; register again"
                        ))
                    }
                }
            }
            Request::List => {
                let now = Instant::now();
                let ads = self
                    .reg
                    .lock()
                    .map(|r| {
                        r.entries
                            .iter()
                            .filter(|((n, _), e)| *n == self.ns && e.expires > now && e.proven)
                            .map(|(_, e)| e.ad.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                NsReply::Workers(ads)
            }
            Request::Relay { instance } => {
                let target = self.reg.lock().ok().and_then(|r| {
                    r.entries.get(&(self.ns.clone(), instance.clone())).map(|e| e.conn.clone())
                });
                match target {
                    Some(wconn) => {
                        relay(send, recv, wconn, &instance).await;
                        return;
                    }
                    None => NsReply::Refused(format!(
                        "no worker `{instance}` registered in namespace `{}`",
                        self.ns
                    )),
                }
            }
            Request::Submit { batch, model } => {
                match self.queue.submit(&self.ns, &batch, model, &mut recv).await {
                    Ok(index) => NsReply::Queued { index },
                    Err(e) => NsReply::Refused(e.to_string()),
                }
            }
            Request::Collect { batch } => NsReply::Batch(self.queue.collect(&self.ns, &batch)),
            Request::Batches => NsReply::Batches(self.queue.batches(&self.ns)),
            Request::DeleteBatch { batch } => match self.queue.delete(&self.ns, &batch) {
                0 => NsReply::Refused(format!("no batch `{batch}` in namespace `{}`", self.ns)),
                n => {
                    info!(%batch, jobs = n, "batch deleted by its namespace");
                    NsReply::Deleted(n)
                }
            },
            other => NsReply::Refused(format!("a name server does not answer {}", request_name(&other))),
        };
        let _ = write_msg(&mut send, &reply).await;
        let _ = send.finish();
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Solve(_) => "solve requests (send those to a worker, or relay them)",
        Request::Status => "status requests",
        Request::Shutdown => "shutdown requests",
        Request::Resident(_) => "resident-scenario requests",
        Request::Discard { .. } => "discard requests",
        _ => "this request",
    }
}

/// Pipes a client stream to a new stream on the worker's connection, both ways.
async fn relay(
    mut csend: quinn::SendStream,
    mut crecv: quinn::RecvStream,
    wconn: quinn::Connection,
    instance: &str,
) {
    let (mut wsend, mut wrecv) = match wconn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            let _ = write_msg(&mut csend, &NsReply::Refused(format!("worker `{instance}` unreachable: {e}")))
                .await;
            let _ = csend.finish();
            return;
        }
    };
    debug!(%instance, "relaying a stream");
    let up = async {
        let _ = tokio::io::copy(&mut crecv, &mut wsend).await;
        let _ = wsend.finish();
    };
    let down = async {
        let _ = tokio::io::copy(&mut wrecv, &mut csend).await;
        let _ = csend.finish();
    };
    tokio::join!(up, down);
}
