//! `meshsolve doctor`: a checklist of what the mesh needs on this box, each
//! line ✓ or ✗ with what to do — the namespace's CA and key, the interfaces
//! mDNS uses and whether an advert sent on them comes back, the name server,
//! the workers seen (and adverts left out), each worker over TLS and its clock,
//! and the solvers of this box. Exit 0 when nothing is wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshsolve::certs::NamespaceCa;
use meshsolve::client::Mesh;
use meshsolve::discovery::{mdns::Mdns, Discovery, DiscoveryEvent, WorkerAd};
use serde::Serialize;

use crate::args::MeshConfig;

/// A clock further off than this from a worker's makes certificates look not yet valid or expired.
const SKEW: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct Check {
    check: &'static str,
    /// `true` ✓, `false` ✗, `None` for information only.
    ok: Option<bool>,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn good(check: &'static str, detail: impl Into<String>) -> Check {
    Check { check, ok: Some(true), detail: detail.into(), fix: None }
}

fn bad(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { check, ok: Some(false), detail: detail.into(), fix: Some(fix.into()) }
}

fn info(check: &'static str, detail: impl Into<String>) -> Check {
    Check { check, ok: None, detail: detail.into(), fix: None }
}

pub(crate) async fn doctor(m: &MeshConfig, json: bool) -> anyhow::Result<u8> {
    let cfg = &m.client;
    let ns = &cfg.namespace;
    let mut checks = Vec::new();

    // The namespace's CA: present, readable, private.
    let ca_ok = if !NamespaceCa::exists(&cfg.home, ns) {
        checks.push(bad(
            "namespace",
            format!("no CA for namespace `{ns}` in {}", cfg.home.display()),
            "it is created by the first `meshworker` or `meshsolve` run on this box; to join workers elsewhere, copy their CA: `meshsolve certs export > ns.pem` there, `meshsolve certs import ns.pem` here",
        ));
        false
    } else {
        match NamespaceCa::load_or_create(&cfg.home, ns) {
            Ok(ca) => {
                checks.push(good(
                    "namespace",
                    format!("namespace `{ns}`, CA fingerprint {} ({})", ca.fingerprint(), ca.dir.display()),
                ));
                true
            }
            Err(e) => {
                checks.push(bad("namespace", e.to_string(), "fix the file as the message says (or restore it from the box that created the namespace)"));
                false
            }
        }
    };

    // The interfaces mDNS uses.
    // Loopback counts only when asked for: mDNS between boxes needs a real interface.
    let ifaces: Vec<(String, String)> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(
            |i| if cfg.interfaces.is_empty() { !i.is_loopback() } else { cfg.interfaces.contains(&i.name) },
        )
        .filter(|i| i.ip().is_ipv4())
        .map(|i| (i.name.clone(), i.ip().to_string()))
        .collect();
    if !cfg.mdns {
        checks.push(info("mdns", "mDNS is off (--no-mdns): workers come from the name server or --worker"));
    } else if ifaces.is_empty() {
        checks.push(bad(
            "interfaces",
            format!(
                "no IPv4 address on {}",
                if cfg.interfaces.is_empty() {
                    "any interface".to_string()
                } else {
                    cfg.interfaces.join(", ")
                }
            ),
            "check MESHSOLVE_INTERFACE / --interface, or bring the interface up",
        ));
    } else {
        let list: Vec<String> = ifaces.iter().map(|(n, a)| format!("{n} {a}")).collect();
        checks.push(good("interfaces", format!("mDNS uses {}", list.join(", "))));
        // One probe per interface, at once.
        let mut names: Vec<String> = ifaces.iter().map(|(n, _)| n.clone()).collect();
        names.dedup();
        checks.extend(futures_util::future::join_all(names.iter().map(|n| mdns_self_test(n))).await);
    }

    // The name server.
    let mesh = if ca_ok { Some(Mesh::connect(cfg.clone()).await?) } else { None };
    match (&cfg.name_server, &mesh) {
        (None, _) => checks.push(info("name server", "none set (PYRO_NS_HOSTNAME is unset): workers are found over mDNS")),
        (Some(ns_addr), Some(mesh)) => match mesh.name_server_workers().await {
            Ok(w) => checks.push(good(
                "name server",
                format!("{ns_addr} answers over TLS for namespace `{ns}`; {} worker(s) registered", w.len()),
            )),
            Err(e) => checks.push(bad(
                "name server",
                format!("{ns_addr}: {e}"),
                "start `meshns` there (same namespace CA), or unset PYRO_NS_HOSTNAME if it points at something else (an old Pyro name server)",
            )),
        },
        (Some(ns_addr), None) => checks.push(info("name server", format!("{ns_addr}: not checked without the namespace's CA"))),
    }

    // Workers: seen, reachable over TLS, clocks.
    if let Some(mesh) = &mesh {
        let found = mesh.wait_for_workers(None, m.wait).await.unwrap_or_default();
        let left_out = mesh.ignored_adverts();
        let ignored = left_out.len();
        let other_ca = left_out.iter().any(|i| matches!(i.why, meshsolve::client::IgnoredWhy::OtherCa(_)));
        if found.is_empty() {
            checks.push(bad(
                "workers",
                format!(
                    "no worker of namespace `{ns}` answered within {:.0} s{}",
                    m.wait.as_secs_f64(),
                    if ignored > 0 { format!("; {ignored} advert(s) of other namespaces or CAs were left out") } else { String::new() }
                ),
                if other_ca {
                    "a worker with this namespace's name but another CA was seen: copy this box's CA there (`meshsolve certs export` here, `meshsolve certs import` there) and restart it"
                } else {
                    "start `meshworker` on a box of this LAN (same namespace), or set PYRO_NS_HOSTNAME to your name server"
                },
            ));
        } else {
            checks.push(good(
                "workers",
                format!(
                    "{} worker(s) of namespace `{ns}`{}",
                    found.len(),
                    if ignored > 0 {
                        format!("; {ignored} advert(s) of other namespaces or CAs left out")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        for w in &found {
            checks.push(worker_check(mesh, w).await);
        }
        for i in &left_out {
            checks.push(info("left out", format!("advert of {}: {}", i.instance, i.why)));
        }
    }

    // Solvers of this box (for local solves and a worker started here).
    let detection = tokio::task::spawn_blocking(|| meshsolve::solver::detect(&Default::default())).await?;
    let names: Vec<String> = detection.found.iter().map(|a| a.label()).collect();
    checks.push(info("solvers", format!("on this box: {}", names.join(", "))));

    if let Some(mesh) = mesh {
        mesh.close().await;
    }
    let failed = checks.iter().filter(|c| c.ok == Some(false)).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let mark = match c.ok {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "·",
            };
            println!("{mark} {:<12} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("  {:<12} fix: {fix}", "");
            }
        }
        if failed == 0 {
            println!("all well");
        } else {
            println!("{failed} problem(s)");
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Sends a probe advert on interface `iface` and browses for it there with a
/// second daemon: multicast that leaves and comes back on this box.
async fn mdns_self_test(iface: &str) -> Check {
    let only = [iface.to_string()];
    let instance = format!(
        "doctor-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    );
    let probe = WorkerAd {
        instance: instance.clone(),
        namespace: "meshsolve-doctor".into(),
        addrs: vec![([127, 0, 0, 1], 9).into()],
        solvers: Vec::new(),
        slots: 0,
        ca_fingerprint: "probe".into(),
        protocol: meshsolve::protocol::VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        relay: None,
        pools: Vec::new(),
        since: 0,
    };
    // The listener hears multicast only: a unicast answer would pass on a box deaf to multicast.
    let (Ok(sender), Ok(listener)) = (Mdns::new(&only), Mdns::new(&only).map(Mdns::multicast_only)) else {
        return bad(
            "mdns",
            "cannot start an mDNS daemon (UDP 5353)",
            "another program may hold UDP 5353 exclusively; check `ss -ulpn sport = 5353`",
        );
    };
    let seen = async {
        let mut rx = listener.browse().ok()?;
        sender.announce(&probe).ok()?;
        while let Some(ev) = rx.recv().await {
            if matches!(&ev, DiscoveryEvent::Up(ad) if ad.instance == instance) {
                return Some(());
            }
        }
        None
    };
    let got = tokio::time::timeout(Duration::from_secs(3), seen).await.ok().flatten();
    sender.shutdown().await;
    listener.shutdown().await;
    match got {
        Some(()) => good("mdns", format!("{iface}: a probe advert sent there came back (multicast works)")),
        None => bad(
            "mdns",
            format!("{iface}: a probe advert sent there did not come back within 3 s: multicast (UDP 5353) is blocked"),
            "allow UDP 5353 to and from 224.0.0.251 (firewall), or run a name server (`meshns`) and set PYRO_NS_HOSTNAME",
        ),
    }
}

/// One worker: a status over TLS, and how far its clock is from ours.
async fn worker_check(mesh: &Mesh, w: &WorkerAd) -> Check {
    let addr = w.best_addr().map(|a| a.to_string()).unwrap_or_default();
    match mesh.status(w).await {
        Err(e) => bad(
            "worker",
            format!("{} at {addr}: {e}", w.instance),
            format!(
                "check that UDP port {} is open on its box and that it runs this namespace's CA",
                w.best_addr().map_or(0, |a| a.port())
            ),
        ),
        Ok(st) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let skew = if st.unix_ms > 0 {
                Some(Duration::from_millis((now - st.unix_ms as i64).unsigned_abs()))
            } else {
                None
            };
            let solvers: Vec<String> = st.solvers.iter().map(|s| s.name.clone()).collect();
            let detail = format!(
                "{} at {addr}: TLS ok, {}/{} slots busy, solvers {}{}",
                w.instance,
                st.busy,
                st.slots,
                solvers.join(", "),
                skew.map(|s| format!(", clock {:.1} s apart", s.as_secs_f64())).unwrap_or_default()
            );
            match skew {
                Some(s) if s > SKEW => bad(
                    "worker",
                    detail,
                    "the clocks differ by more than a minute: certificates may look expired or not yet valid; enable NTP on both boxes (`timedatectl set-ntp true`)",
                ),
                _ => good("worker", detail),
            }
        }
    }
}
