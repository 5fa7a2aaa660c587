//! mDNS discovery on top of `mdns-sd`: adverts as TXT records, browsing as a
//! task owned by [`Mdns`]. No `mdns_sd` type leaves this file.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BoxFuture, Discovery, DiscoveryError, DiscoveryEvent, SolverInfo, WorkerAd, SERVICE_TYPE};
use crate::protocol::PoolInfo;

/// How long the one-shot query of a browse listens for answers (they come at once).
const ONE_SHOT_WAIT: Duration = Duration::from_secs(1);

/// mDNS announcer and browser.
pub struct Mdns {
    daemon: ServiceDaemon,
    /// The interfaces it is restricted to; empty for all.
    interfaces: Vec<String>,
    /// Whether a browse also asks once directly (see `oneshot`).
    ask_once: bool,
    registered: Mutex<Vec<String>>,
    /// Stops the browse tasks.
    cancel: CancellationToken,
    /// The browse tasks, awaited by [`Discovery::shutdown`].
    tasks: TaskTracker,
}

fn err(e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Mdns(e.to_string())
}

impl Mdns {
    /// Starts an mDNS daemon. `interfaces` restricts it to the named network
    /// interfaces (e.g. `lo`); empty means every interface.
    ///
    /// # Errors
    /// [`DiscoveryError::Mdns`] when the mDNS daemon cannot start or an interface name is unknown.
    pub fn new(interfaces: &[String]) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new().map_err(err)?;
        if !interfaces.is_empty() {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            for name in interfaces {
                daemon.enable_interface(IfKind::Name(name.clone())).map_err(err)?;
            }
        }
        Ok(Mdns {
            daemon,
            interfaces: interfaces.to_vec(),
            ask_once: true,
            registered: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// Browses by multicast alone, without the one-shot query answered by
    /// unicast: for checking that multicast itself flows (`meshsolve doctor`).
    #[must_use]
    pub fn multicast_only(mut self) -> Self {
        self.ask_once = false;
        self
    }
}

fn host_label() -> String {
    let name =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "host".into());
    let label: String = name
        .split('.')
        .next()
        .unwrap_or("host")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    if label.is_empty() {
        "host".into()
    } else {
        label
    }
}

/// This machine's short host name, used in worker instance names.
pub fn hostname() -> String {
    host_label()
}

fn encode(ad: &WorkerAd) -> Vec<(String, String)> {
    let solvers = ad
        .solvers
        .iter()
        .map(|s| format!("{}:{}:{}", s.name, s.version, s.slots))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        ("proto".into(), ad.protocol.to_string()),
        ("ns".into(), ad.namespace.clone()),
        ("ca".into(), ad.ca_fingerprint.clone()),
        ("solvers".into(), solvers),
        ("slots".into(), ad.slots.to_string()),
        ("ver".into(), ad.version.clone()),
    ]
    .into_iter()
    .chain(
        (!ad.pools.is_empty()).then(|| {
            ("pools".to_string(), ad.pools.iter().map(PoolInfo::spec).collect::<Vec<_>>().join(","))
        }),
    )
    .chain((!ad.pools.is_empty()).then(|| ("since".to_string(), ad.since.to_string())))
    .collect()
}

/// Where to reach an advertised address. A link-local IPv6 address means
/// nothing without the interface it was seen on, so it keeps that as its scope.
fn socket_addr(a: &mdns_sd::ScopedIp, port: u16) -> SocketAddr {
    match a {
        mdns_sd::ScopedIp::V6(v6) if v6.addr().segments()[0] & 0xffc0 == 0xfe80 => {
            SocketAddr::V6(std::net::SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
        }
        other => SocketAddr::new(other.to_ip_addr(), port),
    }
}

/// Decodes TXT properties; `None` when a required one is missing or malformed.
pub fn decode(
    instance: &str,
    addrs: Vec<SocketAddr>,
    get: impl Fn(&str) -> Option<String>,
) -> Option<WorkerAd> {
    let slots: u32 = get("slots")?.parse().ok()?;
    let solvers = get("solvers")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut f = s.split(':');
            let name = f.next().unwrap_or_default().to_string();
            let version = f.next().unwrap_or_default().to_string();
            let n = f.next().and_then(|x| x.parse().ok()).unwrap_or(slots);
            SolverInfo { name, version, slots: n.min(slots) }
        })
        .collect();
    Some(WorkerAd {
        instance: instance.to_string(),
        namespace: get("ns")?,
        addrs,
        solvers,
        slots,
        ca_fingerprint: get("ca")?,
        protocol: get("proto")?.parse().ok()?,
        version: get("ver").unwrap_or_default(),
        relay: None,
        pools: get("pools").map(|p| p.split(',').filter_map(PoolInfo::parse).collect()).unwrap_or_default(),
        since: get("since").and_then(|s| s.parse().ok()).unwrap_or(0),
    })
}

impl Discovery for Mdns {
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError> {
        let port = ad.addrs.first().map(|a| a.port()).unwrap_or(0);
        // A host record per worker, not per machine: cloned machines (or network
        // namespaces) often share a host name, and merged address records would
        // send clients to the wrong box.
        let label: String = ad
            .instance
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
            .collect();
        let host = format!("{label}.local.");
        let props = encode(ad);
        let mut info = ServiceInfo::new(SERVICE_TYPE, &ad.instance, &host, "", port, &props[..])
            .map_err(err)?
            .enable_addr_auto();
        // Instance names embed the host and the UDP port, which only one process can hold:
        // skip the 750 ms of conflict probing so workers are visible at once.
        info.set_requires_probe(false);
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info).map_err(err)?;
        if let Ok(mut r) = self.registered.lock() {
            r.push(fullname);
        }
        Ok(())
    }

    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let rx = self.daemon.browse(SERVICE_TYPE).map_err(err)?;
        let (tx, out) = mpsc::unbounded_channel();
        // Asked once more directly, for answers without mDNS's waits (see `oneshot`).
        let (found_tx, mut found) = mpsc::unbounded_channel::<WorkerAd>();
        if self.ask_once {
            let ask = super::oneshot::ask(self.interfaces.clone(), SERVICE_TYPE, ONE_SHOT_WAIT, found_tx);
            let cancel = self.cancel.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = ask => {}
                    _ = cancel.cancelled() => {}
                }
            });
        }
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            // Instances the browse has resolved or seen leave (lowercase): it
            // knows them better than a one-shot answer, which is then dropped
            // (it may be older, or have fewer addresses).
            let mut browsed: std::collections::HashSet<String> = std::collections::HashSet::new();
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tx.closed() => break,
                    Some(ad) = found.recv() => {
                        if browsed.contains(&ad.instance.to_ascii_lowercase()) {
                            continue;
                        }
                        DiscoveryEvent::Up(ad)
                    }
                    ev = rx.recv_async() => {
                        let Ok(ev) = ev else { break };
                        let Some(ev) = browse_event(ev) else { continue };
                        let instance = match &ev {
                            DiscoveryEvent::Up(ad) => &ad.instance,
                            DiscoveryEvent::Down(i) => i,
                        };
                        browsed.insert(instance.to_ascii_lowercase());
                        ev
                    }
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        Ok(out)
    }

    fn shutdown(&self) -> BoxFuture<'_> {
        Box::pin(async move {
            self.cancel.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            let names: Vec<String> =
                self.registered.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
            let daemon = self.daemon.clone();
            // The daemon's replies are blocking channels: wait for them off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                for name in names {
                    if let Ok(rx) = daemon.unregister(&name) {
                        // Wait for the goodbye packets to be sent.
                        let _ = rx.recv_timeout(Duration::from_secs(1));
                    }
                }
                if let Ok(rx) = daemon.shutdown() {
                    let _ = rx.recv_timeout(Duration::from_secs(1));
                }
            })
            .await;
        })
    }
}

/// What an `mdns-sd` browse event means here; `None` for the events that
/// matter not, and for adverts with missing fields.
fn browse_event(ev: ServiceEvent) -> Option<DiscoveryEvent> {
    match ev {
        ServiceEvent::ServiceResolved(svc) => {
            let instance = instance_of(&svc.fullname);
            let mut addrs: Vec<SocketAddr> = svc.addresses.iter().map(|a| socket_addr(a, svc.port)).collect();
            addrs.sort();
            let props = &svc.txt_properties;
            let ad = decode(&instance, addrs, |k| props.get_property_val_str(k).map(str::to_string));
            if ad.is_none() {
                tracing::debug!(%instance, "ignoring mDNS advert with missing fields");
            }
            ad.map(DiscoveryEvent::Up)
        }
        ServiceEvent::ServiceRemoved(_, fullname) => Some(DiscoveryEvent::Down(instance_of(&fullname))),
        _ => None,
    }
}

/// The instance name of a full service name.
fn instance_of(fullname: &str) -> String {
    fullname.strip_suffix(&format!(".{SERVICE_TYPE}")).unwrap_or(fullname).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adverts_round_trip_through_txt_records() {
        let ad = WorkerAd {
            instance: "w1".into(),
            namespace: "ns".into(),
            addrs: vec![([127, 0, 0, 1], 9).into()],
            solvers: vec![SolverInfo { name: "gurobi".into(), version: "13.0.3".into(), slots: 2 }],
            slots: 4,
            ca_fingerprint: "ca".into(),
            protocol: crate::protocol::VERSION,
            version: "0.1.0".into(),
            relay: None,
            pools: vec![PoolInfo { solver: "gurobi".into(), server: "tok1.lan:41954".into(), size: 10 }],
            since: 1_700_000_000_000,
        };
        let txt: std::collections::HashMap<String, String> = encode(&ad).into_iter().collect();
        assert!(txt.values().all(|v| v.len() <= 255), "TXT strings fit");
        let back = decode("w1", ad.addrs.clone(), |k| txt.get(k).cloned()).unwrap();
        assert_eq!(back, ad);
        assert_eq!(PoolInfo::parse("gurobi@tok1.lan:41954/10"), Some(ad.pools[0].clone()));
        for bad in ["gurobi@x/0", "gurobi/3", "@x/1", "g@x/abc"] {
            assert_eq!(PoolInfo::parse(bad), None, "{bad}");
        }
    }
}
