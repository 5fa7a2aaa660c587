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
        let prefix = format!("ms{}", std::process::id());
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
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if !root || !has_ip {
        eprintln!("skipped: multi-host test needs root and iproute2 (`ip`); CI runs it as root");
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
        let log = home.path().join(format!("h{i}.log"));
        let child = lab
            .exec(i, WORKER)
            .args([
                "--namespace",
                &ns,
                "--interface",
                "eth0",
                "--slots",
                "1",
                "--name",
                &format!("worker-h{i}"),
            ])
            .env("MESHSOLVE_HOME", home.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        lab.procs.push(child);
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
}
