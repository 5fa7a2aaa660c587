//! One-shot mDNS queries (RFC 6762 §5.1, answered as in §6.7): a plain UDP
//! socket on an ephemeral port asks the mDNS group once, on each chosen
//! interface, for the workers' service type. A responder answers such a
//! query at once and by unicast, with the service's SRV, TXT and address
//! records: it skips the 20–120 ms delay of a shared multicast answer and the
//! rule that a record is multicast at most once a second, which made a client
//! started within a second of another wait for the next second. Used by
//! [`super::mdns::Mdns::browse`] beside the `mdns-sd` browse, which keeps
//! watching for workers that come and go; what this finds is reported once.
//!
//! IPv4 only: the browse finds IPv6-only workers. Everything a reply holds is
//! checked here (its port, its id, its records, the advert's fields).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, TYPE};
use tokio::sync::mpsc;

use super::{DiscoveryEvent, WorkerAd};

/// The mDNS group and port.
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// Largest reply read (an mDNS packet fits an Ethernet frame; jumbo frames allowed).
const MAX_REPLY: usize = 9000;

/// The IPv4 addresses to ask from: those of the named interfaces, or of every
/// interface that is up and neither loopback nor point-to-point (as the
/// `mdns-sd` daemon chooses) when none is named.
fn source_addrs(interfaces: &[String]) -> Vec<Ipv4Addr> {
    use nix::net::if_::InterfaceFlags as F;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out: Vec<Ipv4Addr> = addrs
        .filter(|a| {
            if interfaces.is_empty() {
                a.flags.contains(F::IFF_UP) && !a.flags.intersects(F::IFF_LOOPBACK | F::IFF_POINTOPOINT)
            } else {
                interfaces.contains(&a.interface_name)
            }
        })
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|v4| v4.ip())))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The query: one PTR question for `service`, with a fresh id the replies must echo.
fn query(service: &str, id: u16) -> Option<Vec<u8>> {
    let mut p = Packet::new_query(id);
    let name = Name::new(service.trim_end_matches('.')).ok()?;
    p.questions.push(Question::new(name, TYPE::PTR.into(), CLASS::IN.into(), false));
    p.build_bytes_vec().ok()
}

/// The workers one reply advertises: each PTR answer for `service` whose
/// instance has an SRV record (port, host), a TXT record, and an A record of
/// that host in the reply. Anything else in the reply is ignored.
pub(crate) fn workers_in(reply: &[u8], service: &str, id: u16) -> Vec<WorkerAd> {
    let Ok(p) = Packet::parse(reply) else { return Vec::new() };
    if p.id() != id || !p.has_flags(PacketFlag::RESPONSE) {
        return Vec::new();
    }
    let lower = |n: &Name<'_>| n.to_string().to_ascii_lowercase();
    let service = service.trim_end_matches('.').to_ascii_lowercase();
    let suffix = format!(".{service}");
    let records: Vec<_> = p.answers.iter().chain(&p.additional_records).collect();
    let mut srv: HashMap<String, (u16, String)> = HashMap::new();
    let mut txt: HashMap<String, HashMap<String, Option<String>>> = HashMap::new();
    let mut hosts: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    let mut instances = Vec::new();
    for r in &records {
        match &r.rdata {
            RData::PTR(ptr) if lower(&r.name) == service => instances.push(lower(&ptr.0)),
            RData::SRV(s) => {
                srv.insert(lower(&r.name), (s.port, lower(&s.target)));
            }
            RData::TXT(t) => {
                txt.insert(lower(&r.name), t.attributes());
            }
            RData::A(a) => hosts.entry(lower(&r.name)).or_default().push(Ipv4Addr::from(a.address)),
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for fullname in instances {
        let Some(instance) = fullname.strip_suffix(&suffix) else { continue };
        if instance.is_empty() || !seen.insert(fullname.clone()) {
            continue;
        }
        let (Some((port, host)), Some(props)) = (srv.get(&fullname), txt.get(&fullname)) else { continue };
        let Some(ips) = hosts.get(host) else { continue };
        if *port == 0 {
            continue;
        }
        let mut addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::from((*ip, *port))).collect();
        addrs.sort();
        addrs.dedup();
        let get = |k: &str| props.get(k).cloned().flatten();
        if let Some(ad) = super::mdns::decode(instance, addrs, get) {
            out.push(ad);
        }
    }
    out
}

/// Asks once on each chosen interface and reports every worker that answers
/// within `wait`, each once. Silent when the socket cannot be set up or sent
/// from (the `mdns-sd` browse still runs); returns early when `events` closes.
pub(crate) async fn ask(
    interfaces: Vec<String>,
    service: &'static str,
    wait: Duration,
    events: mpsc::UnboundedSender<DiscoveryEvent>,
) {
    let id = query_id();
    let Some(q) = query(service, id) else { return };
    let sources = source_addrs(&interfaces);
    if sources.is_empty() {
        return;
    }
    let socket = match open() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("one-shot mDNS query: no socket: {e}");
            return;
        }
    };
    for src in &sources {
        let sent = socket2::SockRef::from(&socket).set_multicast_if_v4(src);
        if let Err(e) = sent {
            tracing::debug!(%src, "one-shot mDNS query: cannot send from here: {e}");
            continue;
        }
        if let Err(e) = socket.send_to(&q, GROUP).await {
            tracing::debug!(%src, "one-shot mDNS query not sent: {e}");
        }
    }
    let mut reported = HashSet::new();
    let mut buf = vec![0u8; MAX_REPLY];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = tokio::select! {
            r = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)) => r,
            _ = events.closed() => return,
        };
        let Ok(Ok((n, from))) = got else { return };
        // Responders answer from the mDNS port (§6.7); anything else is not an answer.
        if from.port() != GROUP.port() {
            continue;
        }
        for ad in workers_in(&buf[..n], service, id) {
            if reported.insert(ad.instance.clone()) && events.send(DiscoveryEvent::Up(ad)).is_err() {
                return;
            }
        }
    }
}

/// A UDP socket on an ephemeral port, multicasting with the TTL of mDNS (255)
/// and to this host's own responders too.
fn open() -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.set_multicast_ttl_v4(255)?;
    s.set_multicast_loop_v4(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// A query id that differs between runs and processes (never 0, which some
/// responders treat as "no id").
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = nanos ^ std::process::id().rotate_left(16);
    ((mixed ^ (mixed >> 16)) as u16).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, PTR, SRV, TXT};
    use simple_dns::ResourceRecord;

    const SERVICE: &str = "_meshsolve._udp.local.";

    fn reply(id: u16, port: u16, with_a: bool) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        let inst = "box-4711._meshsolve._udp.local";
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked("_meshsolve._udp.local"),
            CLASS::IN,
            10,
            RData::PTR(PTR(Name::new_unchecked(inst))),
        ));
        p.additional_records.push(ResourceRecord::new(
            Name::new_unchecked(inst),
            CLASS::IN,
            10,
            RData::SRV(SRV { priority: 0, weight: 0, port, target: Name::new_unchecked("box-4711.local") }),
        ));
        let mut t = TXT::new();
        for kv in ["proto=1", "ns=alice", "ca=abcd", "solvers=highs:1.0:2", "slots=2", "ver=0.1.0"] {
            t.add_string(kv).unwrap();
        }
        p.additional_records.push(ResourceRecord::new(
            Name::new_unchecked(inst),
            CLASS::IN,
            10,
            RData::TXT(t),
        ));
        if with_a {
            p.additional_records.push(ResourceRecord::new(
                Name::new_unchecked("box-4711.local"),
                CLASS::IN,
                10,
                RData::A(A { address: u32::from(Ipv4Addr::new(10, 1, 2, 3)) }),
            ));
        }
        p.build_bytes_vec().unwrap()
    }

    #[test]
    fn a_unicast_answer_becomes_a_worker() {
        let ads = workers_in(&reply(77, 4711, true), SERVICE, 77);
        assert_eq!(ads.len(), 1);
        let ad = &ads[0];
        assert_eq!(ad.instance, "box-4711");
        assert_eq!(ad.namespace, "alice");
        assert_eq!(ad.addrs, vec![SocketAddr::from(([10, 1, 2, 3], 4711))]);
        assert_eq!(ad.slots, 2);
        assert_eq!(ad.solvers[0].name, "highs");
    }

    #[test]
    fn incomplete_foreign_or_garbage_answers_are_ignored() {
        assert!(workers_in(&reply(77, 4711, true), SERVICE, 78).is_empty(), "another query's id");
        assert!(workers_in(&reply(77, 4711, false), SERVICE, 77).is_empty(), "no address");
        assert!(workers_in(&reply(77, 0, true), SERVICE, 77).is_empty(), "port 0");
        assert!(workers_in(&reply(77, 4711, true), "_other._udp.local.", 77).is_empty(), "other service");
        let good = reply(77, 4711, true);
        for cut in 0..good.len() {
            let _ = workers_in(&good[..cut], SERVICE, 77);
        }
        assert!(workers_in(&[0xff; 600], SERVICE, 77).is_empty());
        let q = query(SERVICE, 77).unwrap();
        assert!(workers_in(&q, SERVICE, 77).is_empty(), "a query is not an answer");
    }
}
