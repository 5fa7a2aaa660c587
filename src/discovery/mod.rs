//! How workers are found: one small trait, [`Discovery`], with an mDNS
//! implementation ([`mdns`], whose browse also asks once directly with a
//! query answered by unicast, `oneshot`), a static name-server lookup
//! ([`registry`]), the workers remembered from earlier runs ([`cache`]), and a
//! fan-out ([`Discoveries`]) that merges them, so a client does not care where
//! a worker came from.
//!
//! May import: `protocol`, `transport`, `certs`. Every task a back-end spawns
//! is owned by it and stopped by [`Discovery::shutdown`].

pub mod cache;
pub mod mdns;
mod oneshot;
pub mod registry;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::protocol::{SolverInfo, WorkerAd};

/// mDNS service type of meshsolve workers.
pub const SERVICE_TYPE: &str = "_meshsolve._udp.local.";

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

/// A boxed future, so the trait stays usable as `dyn Discovery`.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A way to announce workers and to watch them come and go.
pub trait Discovery: Send + Sync {
    /// Starts advertising this worker; returns at once.
    ///
    /// # Errors
    /// When the back-end cannot advertise (its daemon is down).
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError>;
    /// Workers as they appear and vanish, unfiltered. Must be called inside a
    /// tokio runtime; the back-end owns the tasks that feed the receiver.
    ///
    /// # Errors
    /// When the back-end cannot browse.
    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError>;
    /// Why this source currently finds nothing, if it knows (for error messages).
    fn problem(&self) -> Option<String> {
        None
    }
    /// Whether the first answers of [`Discovery::browse`] are all in (a source
    /// that keeps listening, like mDNS, is always settled).
    fn settled(&self) -> bool {
        true
    }
    /// Whether this source only replays what was seen before (remembered
    /// workers): a live source's goodbye then outweighs it.
    fn is_hint(&self) -> bool {
        false
    }
    /// Withdraws announcements (mDNS goodbye), stops browsing and awaits every
    /// task of the back-end.
    fn shutdown(&self) -> BoxFuture<'_>;
}

impl<T: Discovery + ?Sized> Discovery for Arc<T> {
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError> {
        (**self).announce(ad)
    }
    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        (**self).browse()
    }
    fn problem(&self) -> Option<String> {
        (**self).problem()
    }
    fn settled(&self) -> bool {
        (**self).settled()
    }
    fn is_hint(&self) -> bool {
        (**self).is_hint()
    }
    fn shutdown(&self) -> BoxFuture<'_> {
        (**self).shutdown()
    }
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
    fn shutdown(&self) -> BoxFuture<'_> {
        Box::pin(async {})
    }
}

/// Several back-ends as one: announces to all, and merges what they see. An
/// instance seen by several sources is one worker: the advert of the first
/// source (in the order given) that sees it, with the addresses of every source
/// (the first source's first) and a relay from any source that offers one; it is
/// down when every live source has lost it (a remembered worker counts only
/// until a live source says it left).
pub struct Discoveries {
    sources: Vec<Box<dyn Discovery>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Discoveries {
    /// Combines `sources`; earlier ones are preferred for addresses.
    pub fn new(sources: Vec<Box<dyn Discovery>>) -> Self {
        Discoveries { sources, cancel: CancellationToken::new(), tasks: TaskTracker::new() }
    }
}

/// Per instance, the advert of each source.
#[derive(Default)]
struct Merge {
    by_instance: HashMap<String, Vec<Option<WorkerAd>>>,
    /// Which sources are hints ([`Discovery::is_hint`]).
    hints: Vec<bool>,
}

impl Merge {
    /// Applies one source's event; returns the merged event to pass on.
    fn apply(&mut self, source: usize, n: usize, ev: DiscoveryEvent) -> DiscoveryEvent {
        let goodbye =
            matches!(ev, DiscoveryEvent::Down(_)) && !self.hints.get(source).copied().unwrap_or(false);
        let instance = match &ev {
            DiscoveryEvent::Up(ad) => ad.instance.clone(),
            DiscoveryEvent::Down(i) => i.clone(),
        };
        let slots = self.by_instance.entry(instance.clone()).or_insert_with(|| vec![None; n]);
        slots[source] = match ev {
            DiscoveryEvent::Up(ad) => Some(ad),
            DiscoveryEvent::Down(_) => None,
        };
        if goodbye {
            for (slot, hint) in slots.iter_mut().zip(&self.hints) {
                if *hint {
                    *slot = None;
                }
            }
        }
        let relay = slots.iter().flatten().find_map(|a| a.relay);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in slots.iter().flatten().flat_map(|ad| &ad.addrs) {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
        match slots.iter().flatten().next() {
            Some(first) => DiscoveryEvent::Up(WorkerAd { relay, addrs, ..first.clone() }),
            None => {
                self.by_instance.remove(&instance);
                DiscoveryEvent::Down(instance)
            }
        }
    }
}

impl Discovery for Discoveries {
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError> {
        self.sources.iter().try_for_each(|s| s.announce(ad))
    }

    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let n = self.sources.len();
        let hints: Vec<bool> = self.sources.iter().map(|s| s.is_hint()).collect();
        let (tagged_tx, mut tagged) = mpsc::unbounded_channel();
        for (i, s) in self.sources.iter().enumerate() {
            let mut rx = s.browse()?;
            let tx = tagged_tx.clone();
            let cancel = self.cancel.clone();
            self.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        ev = rx.recv() => {
                            let Some(ev) = ev else { break };
                            if tx.send((i, ev)).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(tagged_tx);
        let (tx, out) = mpsc::unbounded_channel();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let mut merge = Merge { hints, ..Merge::default() };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = tagged.recv() => {
                        let Some((i, ev)) = ev else { break };
                        if tx.send(merge.apply(i, n, ev)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(out)
    }

    fn problem(&self) -> Option<String> {
        let p: Vec<String> = self.sources.iter().filter_map(|s| s.problem()).collect();
        (!p.is_empty()).then(|| p.join("; "))
    }

    fn settled(&self) -> bool {
        self.sources.iter().all(|s| s.settled())
    }

    fn shutdown(&self) -> BoxFuture<'_> {
        Box::pin(async move {
            for s in &self.sources {
                s.shutdown().await;
            }
            self.cancel.cancel();
            self.tasks.close();
            self.tasks.wait().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(instance: &str, port: u16, relay: Option<u16>) -> WorkerAd {
        WorkerAd {
            instance: instance.into(),
            namespace: "ns".into(),
            addrs: vec![([127, 0, 0, 1], port).into()],
            solvers: Vec::new(),
            slots: 1,
            ca_fingerprint: "ca".into(),
            protocol: 1,
            version: String::new(),
            relay: relay.map(|p| ([127, 0, 0, 1], p).into()),
            pools: Vec::new(),
            since: 0,
        }
    }

    #[test]
    fn merge_prefers_first_source_and_keeps_a_relay() {
        let mut m = Merge::default();
        // The name server (source 1) sees it first: its advert, with its relay.
        let DiscoveryEvent::Up(a) = m.apply(1, 2, DiscoveryEvent::Up(ad("w", 2, Some(9)))) else { panic!() };
        assert_eq!(a.addrs[0].port(), 2);
        // mDNS (source 0) then sees it: mDNS addresses, the name server's relay.
        let DiscoveryEvent::Up(a) = m.apply(0, 2, DiscoveryEvent::Up(ad("w", 1, None))) else { panic!() };
        assert_eq!((a.addrs[0].port(), a.relay.map(|r| r.port())), (1, Some(9)));
        // ... and keeps the name server's addresses after its own.
        assert_eq!(a.addrs.iter().map(|a| a.port()).collect::<Vec<_>>(), [1, 2]);
        // One source loses it: still up.
        assert!(matches!(m.apply(0, 2, DiscoveryEvent::Down("w".into())), DiscoveryEvent::Up(_)));
        // Both lost it: down.
        assert!(matches!(m.apply(1, 2, DiscoveryEvent::Down("w".into())), DiscoveryEvent::Down(_)));
        assert!(m.by_instance.is_empty());
    }

    #[test]
    fn a_live_goodbye_outweighs_a_remembered_worker() {
        // Source 0 is mDNS, source 1 the remembered workers.
        let mut m = Merge { hints: vec![false, true], ..Merge::default() };
        let _ = m.apply(1, 2, DiscoveryEvent::Up(ad("w", 1, None)));
        let _ = m.apply(0, 2, DiscoveryEvent::Up(ad("w", 1, None)));
        assert!(matches!(m.apply(0, 2, DiscoveryEvent::Down("w".into())), DiscoveryEvent::Down(_)));
        // A remembered worker no live source has seen stays until one says it left.
        let _ = m.apply(1, 2, DiscoveryEvent::Up(ad("v", 2, None)));
        assert!(matches!(m.apply(1, 2, DiscoveryEvent::Up(ad("v", 2, None))), DiscoveryEvent::Up(_)));
    }

    #[test]
    fn a_link_local_advert_does_not_displace_a_routable_address() {
        let mut m = Merge::default();
        let _ = m.apply(
            1,
            2,
            DiscoveryEvent::Up(WorkerAd {
                addrs: vec!["10.0.0.2:7".parse().unwrap()],
                ..ad("w", 0, Some(9))
            }),
        );
        let ll: SocketAddr = "[fe80::1%3]:7".parse().unwrap();
        let DiscoveryEvent::Up(a) =
            m.apply(0, 2, DiscoveryEvent::Up(WorkerAd { addrs: vec![ll], ..ad("w", 0, None) }))
        else {
            panic!()
        };
        assert_eq!(a.best_addr(), Some("10.0.0.2:7".parse().unwrap()));
        assert_eq!(a.addrs_by_preference()[1], ll);
    }
}
