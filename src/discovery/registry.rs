//! The client side of a static name server (`meshns`, found through
//! `PYRO_NS_HOSTNAME`): where it is, one request/reply exchange, and
//! [`NameServerLookup`], which lists a namespace's registered workers as a
//! [`Discovery`] source.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::{BoxFuture, Discovery, DiscoveryError, DiscoveryEvent, WorkerAd};
use crate::protocol::{read_msg, write_msg, FrameError, NsReply, Request, MAX_RESPONSE};
use crate::transport;

/// Default UDP port of the name server (Pyro's name server used 9090 too).
pub const DEFAULT_PORT: u16 = 9090;

/// How long one exchange with a name server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a client asks the name server for the namespace's workers.
const POLL_EVERY: Duration = Duration::from_millis(700);

/// Why an exchange with a name server failed. All of these may pass on a retry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The host name does not resolve.
    #[error("cannot resolve name server `{spec}`: {source}")]
    Resolve {
        /// `HOST[:PORT]` as given.
        spec: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The host name resolves to no address.
    #[error("name server `{0}` resolves to nothing")]
    NoAddress(String),
    /// The connection could not be started.
    #[error("cannot connect to the name server: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("name server connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream could not be finished.
    #[error("name server stream: {0}")]
    Stream(#[from] quinn::ClosedStream),
    /// A message could not be read or written.
    #[error("name server message: {0}")]
    Frame(#[from] FrameError),
    /// No answer in time.
    #[error("name server did not answer within {0:?}")]
    Timeout(Duration),
    /// The stream closed without an answer.
    #[error("name server closed the stream without an answer")]
    Closed,
    /// The name server refused the request (wrong namespace, unknown registration).
    #[error("name server refused: {0}")]
    Refused(String),
    /// The name server answered with something else than expected.
    #[error("unexpected reply from the name server: {0}")]
    Unexpected(String),
}

/// The name server address from `PYRO_NS_HOSTNAME` and `PYRO_NS_PORT`, if set.
pub fn from_env() -> Option<String> {
    let host = std::env::var("PYRO_NS_HOSTNAME").ok().filter(|h| !h.is_empty())?;
    let port = std::env::var("PYRO_NS_PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(DEFAULT_PORT);
    Some(if host.contains(':') && !host.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_err() {
        host
    } else {
        format!("{host}:{port}")
    })
}

/// Resolves `HOST[:PORT]` (default port [`DEFAULT_PORT`]).
///
/// # Errors
/// [`RegistryError::Resolve`] or [`RegistryError::NoAddress`].
pub async fn resolve(spec: &str) -> Result<SocketAddr, RegistryError> {
    let with_port =
        if spec.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !spec.ends_with(']') {
            spec.to_string()
        } else {
            format!("{spec}:{DEFAULT_PORT}")
        };
    let mut addrs = tokio::net::lookup_host(with_port.as_str())
        .await
        .map_err(|source| RegistryError::Resolve { spec: spec.to_string(), source })?;
    addrs.next().ok_or_else(|| RegistryError::NoAddress(spec.to_string()))
}

/// One request/reply exchange with a name server.
///
/// # Errors
/// Any [`RegistryError`] but the resolver's.
pub async fn call(conn: &quinn::Connection, req: &Request) -> Result<NsReply, RegistryError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        write_msg(&mut send, req).await?;
        send.finish()?;
        read_msg::<NsReply>(&mut recv, MAX_RESPONSE).await?.ok_or(RegistryError::Closed)
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange).await.map_err(|_| RegistryError::Timeout(CALL_TIMEOUT))?
}

/// The workers a name server lists for one namespace, polled, as a discovery
/// source. Each advert carries the name server as its relay.
pub struct NameServerLookup {
    endpoint: quinn::Endpoint,
    spec: String,
    namespace: String,
    /// Why the last poll failed, if it did.
    problem: Arc<Mutex<Option<String>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl NameServerLookup {
    /// A lookup through `endpoint` (a client endpoint of `namespace`) at `spec` (`HOST[:PORT]`).
    pub fn new(endpoint: quinn::Endpoint, spec: String, namespace: String) -> Self {
        NameServerLookup {
            endpoint,
            spec,
            namespace,
            problem: Arc::new(Mutex::new(None)),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

impl Discovery for NameServerLookup {
    fn announce(&self, _ad: &WorkerAd) -> Result<(), DiscoveryError> {
        // Workers register over their own connection (`worker::registration`).
        Ok(())
    }

    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let poller = Poller {
            endpoint: self.endpoint.clone(),
            spec: self.spec.clone(),
            server_name: transport::ns_server_name(&self.namespace),
            problem: self.problem.clone(),
            conn: None,
            known: HashSet::new(),
        };
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = poller.run(tx) => {}
            }
        });
        Ok(rx)
    }

    fn problem(&self) -> Option<String> {
        let p = self.problem.lock().ok()?.clone()?;
        Some(format!("name server {} unreachable: {p}", self.spec))
    }

    fn shutdown(&self) -> BoxFuture<'_> {
        Box::pin(async move {
            self.cancel.cancel();
            self.tasks.close();
            self.tasks.wait().await;
        })
    }
}

/// The state of one browse of a name server.
struct Poller {
    endpoint: quinn::Endpoint,
    spec: String,
    server_name: String,
    problem: Arc<Mutex<Option<String>>>,
    conn: Option<quinn::Connection>,
    /// Instances listed by the last answer.
    known: HashSet<String>,
}

impl Poller {
    async fn run(mut self, tx: mpsc::UnboundedSender<DiscoveryEvent>) {
        loop {
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, self.list()).await {
                Ok(r) => r,
                Err(_) => Err(RegistryError::Timeout(CALL_TIMEOUT)),
            };
            match outcome {
                Ok((addr, ads)) => {
                    self.set_problem(None);
                    let now: HashSet<String> = ads.iter().map(|a| a.instance.clone()).collect();
                    for mut ad in ads {
                        ad.relay = Some(addr);
                        if tx.send(DiscoveryEvent::Up(ad)).is_err() {
                            return;
                        }
                    }
                    for gone in self.known.difference(&now) {
                        let _ = tx.send(DiscoveryEvent::Down(gone.clone()));
                    }
                    self.known = now;
                }
                Err(e) => {
                    debug!("name server {}: {e}", self.spec);
                    self.set_problem(Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }

    async fn list(&mut self) -> Result<(SocketAddr, Vec<WorkerAd>), RegistryError> {
        let addr = resolve(&self.spec).await?;
        let conn = match self.conn.take().filter(|c| c.close_reason().is_none()) {
            Some(c) => c,
            None => self.endpoint.connect(addr, &self.server_name)?.await?,
        };
        let reply = call(&conn, &Request::List).await?;
        self.conn = Some(conn);
        match reply {
            NsReply::Workers(ads) => Ok((addr, ads)),
            other => Err(RegistryError::Unexpected(format!("{other:?}"))),
        }
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut s) = self.problem.lock() {
            *s = p;
        }
    }
}
