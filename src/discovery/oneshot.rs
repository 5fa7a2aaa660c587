//! One-shot mDNS queries (RFC 6762 §5.1, answered as in §6.7): a plain UDP
//! socket on an ephemeral port asks the mDNS group once, on each chosen
//! interface, for the workers' service type. A responder answers such a
//! query at once and by unicast, with the service's SRV, TXT and address
//! records (those on the subnet the query came from): it skips the 20–120 ms
//! delay of a shared multicast answer and the rule that a record is multicast
//! at most once a second, which made a client started within a second of
//! another wait for the next second. Owned by [`super::mdns::Mdns::browse`],
//! whose `mdns-sd` browse keeps watching for workers that come and go and
//! outranks what this finds. A worker found only here (a host that hears no
//! multicast) gets no goodbye: a client drops it when its connection fails.
//!
//! IPv4 only: the browse finds IPv6-only workers. A reply is read whole or not
//! at all, and one that answers another query (its id) or does not come from
//! the mDNS port is dropped; this only sorts out unrelated traffic, since any
//! host on the LAN sees the query: what an advert claims is proved by the
//! worker's TLS certificate, as for every advert.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, TYPE};
use tokio::sync::mpsc;

use super::WorkerAd;

/// The mDNS group and port.
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// Largest reply read (an mDNS packet fits an Ethernet frame; jumbo frames allowed).
const MAX_REPLY: usize = 9000;

/// Most workers one query reports: a LAN flooding the port with made-up
/// adverts costs a bounded amount (the browse still reports what it sees).
const MAX_WORKERS: usize = 1024;

/// The IPv4 address to ask from on each interface: the named ones, or every
/// interface that is up and running, multicast-capable and neither loopback
/// nor point-to-point (as the `mdns-sd` daemon chooses) when none is named.
fn source_addrs(interfaces: &[String]) -> Vec<Ipv4Addr> {
    use nix::net::if_::InterfaceFlags as F;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut seen = HashSet::new();
    addrs
        .filter(|a| {
            if interfaces.is_empty() {
                a.flags.contains(F::IFF_UP | F::IFF_RUNNING | F::IFF_MULTICAST)
                    && !a.flags.intersects(F::IFF_LOOPBACK | F::IFF_POINTOPOINT)
            } else {
                interfaces.contains(&a.interface_name)
            }
        })
        .filter_map(|a| {
            let ip = a.address.and_then(|s| s.as_sockaddr_in().map(|v4| v4.ip()))?;
            seen.insert(a.interface_name).then_some(ip)
        })
        .collect()
}

/// The query: one PTR question for `service`, with a fresh id the replies must echo.
fn query(service: &str, id: u16) -> Option<Vec<u8>> {
    let mut p = Packet::new_query(id);
    let name = Name::new(service.trim_end_matches('.')).ok()?;
    p.questions.push(Question::new(name, TYPE::PTR.into(), CLASS::IN.into(), false));
    p.build_bytes_vec().ok()
}

/// Whether the section counts of a DNS header can fit in `len` bytes (the
/// parser reserves room for as many records as a header claims).
fn plausible(reply: &[u8]) -> bool {
    let count =
        |at: usize| reply.get(at..at + 2).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let needed = 12 + count(4) * 5 + (count(6) + count(8) + count(10)) * 11;
    reply.len() >= 12 && needed <= reply.len()
}

/// The records of the replies to one query, gathered across datagrams (a
/// responder splits a long answer), keyed by lowercase names (DNS names
/// compare without case); instance names keep their case.
#[derive(Default)]
struct Replies {
    /// Instance full names (as sent) from PTR answers for the service.
    instances: Vec<String>,
    srv: HashMap<String, (u16, String)>,
    txt: HashMap<String, HashMap<String, Option<String>>>,
    hosts: HashMap<String, Vec<Ipv4Addr>>,
    /// Instances already reported, lowercase.
    reported: HashSet<String>,
}

impl Replies {
    /// Adds one datagram; the workers it completes (reported once each).
    fn add(&mut self, reply: &[u8], service: &str, id: u16) -> Vec<WorkerAd> {
        if !plausible(reply) {
            return Vec::new();
        }
        let Ok(p) = Packet::parse(reply) else { return Vec::new() };
        if p.id() != id || !p.has_flags(PacketFlag::RESPONSE) {
            return Vec::new();
        }
        let lower = |n: &Name<'_>| n.to_string().to_ascii_lowercase();
        let service = service.trim_end_matches('.');
        // A record with TTL 0 is a goodbye; the first of duplicates wins.
        for r in p.answers.iter().chain(&p.additional_records).filter(|r| r.ttl > 0) {
            match &r.rdata {
                RData::PTR(ptr) if r.name.to_string().eq_ignore_ascii_case(service) => {
                    let full = ptr.0.to_string();
                    if self.instances.len() < MAX_WORKERS && !self.instances.contains(&full) {
                        self.instances.push(full);
                    }
                }
                RData::SRV(srv) => {
                    self.srv.entry(lower(&r.name)).or_insert((srv.port, lower(&srv.target)));
                }
                RData::TXT(t) => {
                    self.txt.entry(lower(&r.name)).or_insert_with(|| t.attributes());
                }
                RData::A(a) => {
                    let ips = self.hosts.entry(lower(&r.name)).or_default();
                    let ip = Ipv4Addr::from(a.address);
                    if ips.len() < 16 && !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for full in &self.instances {
            let key = full.to_ascii_lowercase();
            if self.reported.contains(&key) {
                continue;
            }
            // The instance is what precedes ".<service>", in the case it was sent in.
            let cut = full.len().saturating_sub(service.len() + 1);
            let (Some(instance), Some(tail)) = (full.get(..cut), full.get(cut..)) else { continue };
            if instance.is_empty() || !tail.strip_prefix('.').is_some_and(|t| t.eq_ignore_ascii_case(service))
            {
                continue;
            }
            let (Some((port, host)), Some(props)) = (self.srv.get(&key), self.txt.get(&key)) else {
                continue;
            };
            let Some(ips) = self.hosts.get(host) else { continue };
            if *port == 0 {
                continue;
            }
            let mut addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::from((*ip, *port))).collect();
            addrs.sort();
            let get = |k: &str| props.get(k).cloned().flatten();
            if let Some(ad) = super::mdns::decode(instance, addrs, get) {
                self.reported.insert(key);
                out.push(ad);
            }
        }
        out
    }
}

/// Asks once on each chosen interface and sends every worker that answers
/// within `wait` to `found`, each once. Silent when there is no IPv4 address
/// to ask from or the socket cannot be set up (the `mdns-sd` browse still
/// runs); returns early when `found` closes.
pub(crate) async fn ask(
    interfaces: Vec<String>,
    service: &'static str,
    wait: Duration,
    found: mpsc::UnboundedSender<WorkerAd>,
) {
    let id = query_id();
    let Some(q) = query(service, id) else { return };
    let sources = source_addrs(&interfaces);
    if sources.is_empty() {
        tracing::debug!(?interfaces, "one-shot mDNS query: no IPv4 address to ask from");
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
    let mut replies = Replies::default();
    let mut buf = vec![0u8; MAX_REPLY];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = tokio::select! {
            r = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)) => r,
            _ = found.closed() => return,
        };
        let Ok(Ok((n, from))) = got else { return };
        // Responders answer from the mDNS port (§6.7).
        if from.port() != GROUP.port() {
            continue;
        }
        for ad in replies.add(&buf[..n], service, id) {
            if found.send(ad).is_err() {
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

    /// A reply for `Box-4711` as `mdns-sd` sends it; `parts` picks its
    /// records: P(TR), S(RV), T(XT), A.
    fn reply(id: u16, port: u16, parts: &str) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        let inst = "Box-4711._meshsolve._udp.local";
        let rr =
            |name: &'static str, rdata| ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 10, rdata);
        if parts.contains('P') {
            p.answers.push(rr("_meshsolve._udp.local", RData::PTR(PTR(Name::new_unchecked(inst)))));
        }
        if parts.contains('S') {
            let target = Name::new_unchecked("Box-4711.local");
            p.additional_records.push(rr(inst, RData::SRV(SRV { priority: 0, weight: 0, port, target })));
        }
        if parts.contains('T') {
            let mut t = TXT::new();
            for kv in ["proto=1", "ns=alice", "ca=abcd", "solvers=highs:1.0:2", "slots=2", "ver=0.1.0"] {
                t.add_string(kv).unwrap();
            }
            p.additional_records.push(rr(inst, RData::TXT(t)));
        }
        if parts.contains('A') {
            let address = u32::from(Ipv4Addr::new(10, 1, 2, 3));
            p.additional_records.push(rr("box-4711.local", RData::A(A { address })));
        }
        p.build_bytes_vec().unwrap()
    }

    fn one(reply: &[u8], service: &str, id: u16) -> Vec<WorkerAd> {
        Replies::default().add(reply, service, id)
    }

    #[test]
    fn a_unicast_answer_becomes_a_worker_named_as_sent() {
        let ads = one(&reply(77, 4711, "PSTA"), SERVICE, 77);
        assert_eq!(ads.len(), 1);
        let ad = &ads[0];
        assert_eq!(ad.instance, "Box-4711", "the instance keeps its case, as the browse reports it");
        assert_eq!(ad.namespace, "alice");
        assert_eq!(ad.addrs, vec![SocketAddr::from(([10, 1, 2, 3], 4711))]);
        assert_eq!(ad.slots, 2);
        assert_eq!(ad.solvers[0].name, "highs");
    }

    #[test]
    fn an_answer_split_over_datagrams_is_put_together_and_reported_once() {
        let mut r = Replies::default();
        assert!(r.add(&reply(77, 4711, "PST"), SERVICE, 77).is_empty(), "no address yet");
        let ads = r.add(&reply(77, 4711, "A"), SERVICE, 77);
        assert_eq!(ads.len(), 1);
        assert!(r.add(&reply(77, 4711, "PSTA"), SERVICE, 77).is_empty(), "reported once");
    }

    #[test]
    fn incomplete_foreign_or_garbage_answers_are_ignored() {
        assert!(one(&reply(77, 4711, "PSTA"), SERVICE, 78).is_empty(), "another query's id");
        assert!(one(&reply(77, 4711, "PST"), SERVICE, 77).is_empty(), "no address");
        assert!(one(&reply(77, 4711, "PSA"), SERVICE, 77).is_empty(), "no TXT");
        assert!(one(&reply(77, 0, "PSTA"), SERVICE, 77).is_empty(), "port 0");
        assert!(one(&reply(77, 4711, "PSTA"), "_other._udp.local.", 77).is_empty(), "other service");
        let good = reply(77, 4711, "PSTA");
        for cut in 0..good.len() {
            let _ = one(&good[..cut], SERVICE, 77);
        }
        assert!(one(&[0xff; 600], SERVICE, 77).is_empty());
        // A header claiming 65535 records of each kind in a few bytes is not parsed.
        assert!(!plausible(&[0, 77, 0x84, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]));
        let q = query(SERVICE, 77).unwrap();
        assert!(one(&q, SERVICE, 77).is_empty(), "a query is not an answer");
    }
}
