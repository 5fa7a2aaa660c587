//! How workers are found: a small trait with an mDNS implementation (and, on
//! firewalled clusters, a static name server later).

pub mod mdns;

use std::net::SocketAddr;

use tokio::sync::mpsc;

pub use crate::protocol::SolverInfo;

/// mDNS service type of meshsolve workers.
pub const SERVICE_TYPE: &str = "_meshsolve._udp.local.";

/// What a worker advertises.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
        self.addrs.iter().find(|a| a.is_ipv4()).or_else(|| self.addrs.first()).copied()
    }
}

/// A change in the set of visible workers.
#[derive(Debug, Clone)]
pub enum DiscoveryEvent {
    /// A worker appeared or changed its advert.
    Up(WorkerAd),
    /// A worker withdrew (goodbye) or expired; the instance name.
    Down(String),
}

/// Errors of discovery back-ends.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon failed; multicast may be blocked. Retrying rarely helps.
    #[error("mDNS: {0}")]
    Mdns(String),
}

/// A way to announce workers and to watch them come and go.
pub trait Discovery: Send + Sync {
    /// Starts advertising this worker; returns at once.
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError>;
    /// Workers as they appear and vanish, unfiltered. Dropping the receiver stops browsing.
    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError>;
    /// Withdraws announcements (mDNS goodbye) and stops the back-end.
    fn shutdown(&self);
}

/// No discovery at all (`--no-mdns` without a name server, or workers given by address).
pub struct Off;

impl Discovery for Off {
    fn announce(&self, _ad: &WorkerAd) -> Result<(), DiscoveryError> {
        Ok(())
    }
    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        Ok(mpsc::unbounded_channel().1)
    }
    fn shutdown(&self) {}
}
