//! Multi-host for real: three hosts built as network namespaces joined by a
//! bridge that lives in a fourth namespace. Workers on h1 and h2, the client
//! on h3, which finds both over mDNS alone. Needs root (CI runs as root) and
//! iproute2; otherwise the test says it was skipped. Traffic stays inside
//! the namespaces: they have no route anywhere else.

mod common;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Lab {
    prefix: String,
    hosts: usize,
    procs: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Lab {
    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    fn addr(i: usize) -> String {
        format!("10.231.0.{i}")
    }

    /// Builds `hosts` hosts on one bridge, multicast on.
    fn new(hosts: usize) -> Lab {
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let prefix =
            format!("ms{}n{}", std::process::id(), LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let lab = Lab { prefix: prefix.clone(), hosts, procs: Vec::new() };
        let br = format!("{prefix}br");
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 1..=hosts {
            let h = lab.host(i);
            ip(&["netns", "add", &h]);
            ip(&[
                "-n",
                &br,
                "link",
                "add",
                &format!("v{i}"),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &h,
            ]);
            ip(&["-n", &br, "link", "set", &format!("v{i}"), "master", "br0", "up"]);
            ip(&["-n", &h, "link", "set", "lo", "up"]);
            ip(&["-n", &h, "addr", "add", &format!("{}/24", Self::addr(i)), "dev", "eth0"]);
            ip(&["-n", &h, "link", "set", "eth0", "up", "multicast", "on"]);
        }
        lab
    }

    /// Starts `meshworker` on host `i` named `worker-h<i>`, logging to `home/h<i>.log`.
    fn worker(&mut self, i: usize, ns: &str, home: &std::path::Path, extra: &[&str], env: &[(&str, String)]) {
        let log = std::fs::File::create(home.join(format!("h{i}.log"))).unwrap();
        let mut c = self.exec(i, WORKER);
        c.args(["--namespace", ns, "--slots", "1", "--name", &format!("worker-h{i}")])
            .args(extra)
            .env("MESHSOLVE_HOME", home)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        self.procs.push(child);
    }

    fn exec(&self, i: usize, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(i), prog]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for i in 1..=self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &self.host(i)]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &format!("{}br", self.prefix)]).status();
    }
}

fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let has_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if !root || !has_ip {
        prerequisite_missing("multi-host test needs root and iproute2 (`ip`); CI runs it as root");
        return false;
    }
    true
}

#[test]
fn three_hosts_find_each_other_over_mdns_and_solve() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(3);
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("netns");
    for i in 1..=2 {
        lab.worker(i, &ns, home.path(), &["--interface", "eth0"], &[]);
    }
    let client = |args: &[&str]| -> Output {
        lab.exec(3, CLIENT)
            .args(["--namespace", &ns, "--interface", "eth0"])
            .args(args)
            .env("MESHSOLVE_HOME", home.path())
            .env_remove("MESHSOLVE_INTERFACE")
            .output()
            .unwrap()
    };
    let t = Instant::now();
    let listed = loop {
        let out = client(&["workers", "--json", "--wait", "2s"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.len() == 2 {
            break v;
        }
        let logs: String = (1..=2)
            .map(|i| std::fs::read_to_string(home.path().join(format!("h{i}.log"))).unwrap_or_default())
            .collect();
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "h3 does not see both workers: {}\nworker logs:\n{logs}",
            show(&out)
        );
    };
    let mut addrs: Vec<String> = listed
        .iter()
        .map(|w| w["address"].as_str().unwrap().rsplit_once(':').unwrap().0.to_string())
        .collect();
    addrs.sort();
    assert_eq!(addrs, vec![Lab::addr(1), Lab::addr(2)], "{listed:?}");

    // Solve two models at once: one lands on each host.
    let farmer = examples().join("farmer/farmer.lp");
    let ks = examples().join("knapsack.lp");
    let out = client(&["--json", farmer.to_str().unwrap(), ks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(close(v[0]["objective"].as_f64().unwrap(), -108390.0, 1e-6), "{v:?}");
    assert_eq!(v[1]["objective"].as_f64(), Some(21.0));
    for r in &v {
        let a = r["address"].as_str().unwrap();
        assert!(a.starts_with("10.231.0.1:") || a.starts_with("10.231.0.2:"), "{a}");
    }

    // A box that never saw the mesh (its home has the namespace's CA but no
    // remembered workers) finds them over mDNS alone. Printed as a figure (the
    // target is in the issue; timings are not asserted).
    // One first run from a home of its own; its time in ms.
    let first_run = |tag: usize| -> f64 {
        let h = home.path().join(format!("fresh{tag}"));
        copy_dir(&home.path().join(&ns), &h.join(&ns));
        let _ = std::fs::remove_dir_all(h.join(&ns).join("peers"));
        let t = Instant::now();
        let out = lab
            .exec(3, CLIENT)
            .args(["--namespace", &ns, "--interface", "eth0", farmer.to_str().unwrap()])
            .env("MESHSOLVE_HOME", &h)
            .env_remove("MESHSOLVE_INTERFACE")
            .output()
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(out.status.code(), Some(0), "a first run over mDNS alone solves: {}", show(&out));
        ms
    };
    let mut cold = Vec::new();
    for k in 0..7 {
        cold.push(first_run(k));
        std::thread::sleep(Duration::from_millis(1100));
    }
    // The same, started back to back: mDNS responders multicast an answer at
    // most once a second, so these rely on the unicast answers to the client's
    // one-shot query.
    let mut back_to_back: Vec<f64> = (7..14).map(first_run).collect();
    let mut warm = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let out = client(&[farmer.to_str().unwrap()]);
        warm.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "figure: `meshsolve farmer.lp` from a third host, process start to exit: first run (mDNS only) median {:.1} ms, first runs back to back median {:.1} ms, later runs (remembered workers) median {:.1} ms",
        median(&mut cold),
        median(&mut back_to_back),
        median(&mut warm)
    );
}

/// Copies a directory tree (a namespace's home: certificates and keys).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn has_iptables() -> bool {
    let ok = Command::new("iptables").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        prerequisite_missing("multi-host test needs iptables (CI installs it)");
    }
    ok
}

impl Lab {
    fn iptables(&self, i: usize, rule: &[&str]) {
        let out = self.exec(i, "iptables").args(rule).output().unwrap();
        assert!(out.status.success(), "iptables {rule:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Drops IPv4 multicast only, as many switches do: mDNS over IPv6 still
    /// flows and brings link-local addresses, which must not displace the
    /// IPv4 ones the name server knows.
    fn block_multicast(&self, i: usize) {
        self.iptables(i, &["-A", "OUTPUT", "-d", "224.0.0.0/4", "-j", "DROP"]);
        self.iptables(i, &["-A", "INPUT", "-d", "224.0.0.0/4", "-j", "DROP"]);
    }
}

/// h1 runs meshns; h2 and h3 run workers with multicast dropped; h4 is the client.
/// With `isolate_client`, h4 can reach only h1, so every job is relayed.
fn name_server_lab(isolate_client: bool) {
    if !can_run() || !has_iptables() {
        return;
    }
    let mut lab = Lab::new(4);
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("nslab");
    let out = Command::new(CLIENT)
        .args(["--namespace", &ns, "certs", "show"])
        .env("MESHSOLVE_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for i in 2..=4 {
        lab.block_multicast(i);
    }
    if isolate_client {
        for i in 2..=3 {
            lab.iptables(4, &["-A", "OUTPUT", "-d", &Lab::addr(i), "-j", "DROP"]);
            lab.iptables(4, &["-A", "INPUT", "-s", &Lab::addr(i), "-j", "DROP"]);
        }
    }
    let log = |name: &str| std::fs::File::create(home.path().join(name)).unwrap();
    let nsd = lab
        .exec(1, env!("CARGO_BIN_EXE_meshns"))
        .args(["--namespace", &ns])
        .env("MESHSOLVE_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(log("ns.log"))
        .spawn()
        .unwrap();
    lab.procs.push(nsd);
    for i in 2..=3 {
        lab.worker(i, &ns, home.path(), &["--interface", "eth0"], &[("PYRO_NS_HOSTNAME", Lab::addr(1))]);
    }
    let client = |args: &[&str]| -> Output {
        lab.exec(4, CLIENT)
            .args(["--namespace", &ns, "--interface", "eth0"])
            .args(args)
            .env("MESHSOLVE_HOME", home.path())
            .env("PYRO_NS_HOSTNAME", Lab::addr(1))
            .env_remove("MESHSOLVE_INTERFACE")
            .output()
            .unwrap()
    };
    let t = Instant::now();
    loop {
        let out = client(&["workers", "--json", "--wait", "2s"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.len() == 2 {
            break;
        }
        let logs: String = ["ns.log", "h2.log", "h3.log"]
            .iter()
            .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(home.path().join(f)).unwrap_or_default()))
            .collect();
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "h4 does not see both workers: {}\n{logs}",
            show(&out)
        );
    }
    let dir = home.path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..8 {
        std::fs::copy(examples().join("farmer/farmer.lp"), dir.join(format!("f{i}.lp"))).unwrap();
    }
    // A handshake that does not complete in 3 s sends a job through the relay
    // instead, which is also correct; a reachable worker must be used directly in
    // at least one of a few batches (each a new client process).
    let mut batches = Vec::new();
    for _ in 0..3 {
        let out = client(&["--json", "--quiet", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v.len(), 8);
        assert!(v.iter().all(|r| close(r["objective"].as_f64().unwrap(), -108390.0, 1e-6)));
        let workers: std::collections::HashSet<&str> =
            v.iter().map(|r| r["worker"].as_str().unwrap()).collect();
        assert_eq!(workers.len(), 2, "both workers solved: {workers:?}");
        let via_ns = v
            .iter()
            .filter(|r| r["address"].as_str().unwrap().starts_with(&format!("{}:", Lab::addr(1))))
            .count();
        if isolate_client {
            assert_eq!(via_ns, 8, "every job must go through the relay: {v:?}");
            return;
        }
        if via_ns < v.len() {
            return;
        }
        batches.push(v);
    }
    let logs: String = ["ns.log", "h2.log", "h3.log"]
        .iter()
        .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(home.path().join(f)).unwrap_or_default()))
        .collect();
    panic!("reachable workers must be used directly, in one batch of three at least: {batches:?}\n{logs}");
}

#[test]
fn name_server_when_multicast_is_blocked() {
    name_server_lab(false);
}

#[test]
fn name_server_relays_to_workers_the_client_cannot_reach() {
    name_server_lab(true);
}

#[test]
fn name_server_restart_and_two_namespaces_across_hosts() {
    if !can_run() || !has_iptables() {
        return;
    }
    let mut lab = Lab::new(4);
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (unique_ns("hosta"), unique_ns("hostb"));
    for ns in [&a, &b] {
        let out = Command::new(CLIENT)
            .args(["--namespace", ns, "certs", "show"])
            .env("MESHSOLVE_HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    for i in 2..=4 {
        lab.block_multicast(i);
    }
    let log = |name: &str| std::fs::File::create(home.path().join(name)).unwrap();
    let start_ns = |lab: &Lab| {
        lab.exec(1, env!("CARGO_BIN_EXE_meshns"))
            .args(["--namespace", &a, "--namespace", &b])
            .env("MESHSOLVE_HOME", home.path())
            .stdout(Stdio::null())
            .stderr(log("ns.log"))
            .spawn()
            .unwrap()
    };
    let mut nsd = KillOnDrop(start_ns(&lab));
    // a has a worker on h2; b has one on h3.
    for (i, ns) in [(2, &a), (3, &b)] {
        lab.worker(i, ns, home.path(), &["--no-mdns"], &[("PYRO_NS_HOSTNAME", Lab::addr(1))]);
    }
    let client = |ns: &str, args: &[&str]| -> Output {
        lab.exec(4, CLIENT)
            .args(["--namespace", ns, "--no-mdns"])
            .args(args)
            .env("MESHSOLVE_HOME", home.path())
            .env("PYRO_NS_HOSTNAME", Lab::addr(1))
            .env_remove("MESHSOLVE_INTERFACE")
            .output()
            .unwrap()
    };
    let names = |ns: &str| -> Vec<String> {
        let out = client(ns, &["workers", "--json", "--wait", "2s"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.iter().map(|w| w["name"].as_str().unwrap_or_default().to_string()).collect()
    };
    let t = Instant::now();
    while names(&a).len() != 1 || names(&b).len() != 1 {
        assert!(t.elapsed() < Duration::from_secs(40), "workers not registered");
    }
    assert_eq!(names(&a), vec!["worker-h2".to_string()], "namespace a sees only its worker");
    assert_eq!(names(&b), vec!["worker-h3".to_string()], "namespace b sees only its worker");

    // Kill the name server during a batch of a, restart it: the batch completes.
    let dir = home.path().join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    let hard = hard_model(&dir);
    for i in 0..6 {
        std::fs::copy(&hard, dir.join(format!("s{i}.lp"))).unwrap();
    }
    std::fs::remove_file(&hard).unwrap();
    let batch = lab
        .exec(4, CLIENT)
        .args([
            "--namespace",
            &a,
            "--no-mdns",
            "--json",
            "--quiet",
            "--time-limit",
            "500ms",
            dir.to_str().unwrap(),
        ])
        .env("MESHSOLVE_HOME", home.path())
        .env("PYRO_NS_HOSTNAME", Lab::addr(1))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let _ = nsd.0.kill();
    let _ = nsd.0.wait();
    std::thread::sleep(Duration::from_millis(300));
    nsd = KillOnDrop(start_ns(&lab));
    let out = batch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 6);
    let t = Instant::now();
    while names(&a).len() != 1 || names(&b).len() != 1 {
        assert!(t.elapsed() < Duration::from_secs(30), "workers did not register again after the restart");
    }
    drop(nsd);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `meshsolve doctor` on a host whose multicast is dropped (IPv4 and IPv6)
/// says that mDNS cannot work there, and what to do instead.
#[test]
fn doctor_names_blocked_multicast() {
    if !can_run() || !has_iptables() {
        return;
    }
    let lab = Lab::new(1);
    lab.block_multicast(1);
    for chain in ["OUTPUT", "INPUT"] {
        let out =
            lab.exec(1, "ip6tables").args(["-A", chain, "-d", "ff00::/8", "-j", "DROP"]).output().unwrap();
        assert!(out.status.success(), "ip6tables: {}", String::from_utf8_lossy(&out.stderr));
    }
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("doctormc");
    let client = |args: &[&str]| -> Output {
        lab.exec(1, CLIENT)
            .args(["--namespace", &ns, "--interface", "eth0"])
            .args(args)
            .env("MESHSOLVE_HOME", home.path())
            .env_remove("MESHSOLVE_INTERFACE")
            .env_remove("PYRO_NS_HOSTNAME")
            .output()
            .unwrap()
    };
    // The namespace exists on this box (its CA is created by a first run).
    let _ = client(&["workers", "--wait", "100ms"]);
    let out = client(&["doctor", "--wait", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mdns = text.lines().find(|l| l.split_whitespace().nth(1) == Some("mdns")).unwrap_or_default();
    assert!(mdns.starts_with('✗') && mdns.contains("blocked"), "{text}");
    assert!(text.contains("PYRO_NS_HOSTNAME"), "the fix offers a name server: {text}");
}

/// The client's one-shot mDNS query is answered by unicast: a client whose
/// incoming multicast is dropped (IPv4 and IPv6, as some host firewalls do)
/// and that remembers no worker still finds the worker on another host and
/// solves there. The browse alone hears nothing on such a host.
#[test]
fn a_client_deaf_to_multicast_finds_workers_by_their_unicast_answers() {
    if !can_run() || !has_iptables() {
        return;
    }
    let mut lab = Lab::new(2);
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("unicast");
    let client = |lab: &Lab, h: &std::path::Path, args: &[&str]| -> Output {
        lab.exec(2, CLIENT)
            .args(["--namespace", &ns, "--interface", "eth0"])
            .args(args)
            .env("MESHSOLVE_HOME", h)
            .env_remove("MESHSOLVE_INTERFACE")
            .env_remove("PYRO_NS_HOSTNAME")
            .output()
            .unwrap()
    };
    // The namespace's CA first, shared by worker and client (as `certs export` would).
    let _ = client(&lab, home.path(), &["workers", "--wait", "100ms"]);
    lab.worker(1, &ns, home.path(), &["--interface", "eth0"], &[]);
    lab.iptables(2, &["-A", "INPUT", "-d", "224.0.0.0/4", "-j", "DROP"]);
    let out =
        lab.exec(2, "ip6tables").args(["-A", "INPUT", "-d", "ff00::/8", "-j", "DROP"]).output().unwrap();
    assert!(out.status.success(), "ip6tables: {}", String::from_utf8_lossy(&out.stderr));
    let farmer = examples().join("farmer/farmer.lp");
    let t = Instant::now();
    let out = loop {
        // A fresh home each time: nothing remembered, mDNS is the only way.
        let fresh = tempfile::tempdir().unwrap();
        copy_dir(&home.path().join(&ns), &fresh.path().join(&ns));
        let _ = std::fs::remove_dir_all(fresh.path().join(&ns).join("peers"));
        let out = client(&lab, fresh.path(), &["--json", "--wait", "2s", farmer.to_str().unwrap()]);
        if out.status.code() == Some(0) || t.elapsed() > Duration::from_secs(30) {
            break out;
        }
    };
    assert_eq!(out.status.code(), Some(0), "the worker on h1 is found and solves: {}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(close(v["objective"].as_f64().unwrap(), -108390.0, 1e-6), "{v:?}");
    assert!(v["address"].as_str().unwrap().starts_with("10.231.0.1:"), "{v:?}");
}
