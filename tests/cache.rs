//! Remembered workers (`<home>/<ns>/peers/`): a cold client tries them
//! directly, and a stale entry never leads to a wrong or refused solve.

mod common;
use std::time::Duration;

use common::*;

fn entry(instance: &str, namespace: &str, addr: &str) -> serde_json::Value {
    serde_json::json!({
        "instance": instance,
        "namespace": namespace,
        "addrs": [addr],
        "solvers": [{"name": "microlp", "version": "0.7", "slots": 64}],
        "slots": 64,
        "ca_fingerprint": "00",
        "protocol": 1,
        "version": "0.1.0",
        "relay": null
    })
}

#[test]
fn stale_remembered_workers_never_cost_a_solve() {
    let mut other = Mesh::new("foreign");
    let foreign = other.start_worker(&["--slots", "1"]).addr.clone();
    let mut mesh = Mesh::new("stale");
    let real = mesh.start_worker(&["--slots", "1", "--name", "the-real-one"]).addr.clone();
    // A port where nothing answers, a closed port, another namespace's worker,
    // and a garbage file, all claiming to be workers of this namespace.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let peers = mesh.home_path().join(&mesh.ns).join("peers");
    std::fs::create_dir_all(&peers).unwrap();
    for (name, addr) in
        [("silent", silent.local_addr().unwrap().to_string()), ("closed", closed), ("foreign", foreign)]
    {
        let e = entry(name, &mesh.ns, &addr);
        std::fs::write(peers.join(format!("{name}.json")), serde_json::to_vec(&e).unwrap()).unwrap();
    }
    std::fs::write(peers.join("junk.json"), b"\x00\x01 not json").unwrap();
    let farmer = examples().join("farmer/farmer.lp");
    // Without mDNS the remembered entries are the only way to the worker.
    for _ in 0..3 {
        let out = mesh.run(&["--no-mdns", "--json", "--wait", "5s", farmer.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let v = json_of(&out);
        assert!(close(v["objective"].as_f64().unwrap(), -108390.0, 1e-6), "{v}");
        assert_eq!(v["worker"], "the-real-one", "only a worker that proved itself is used: {v}");
        assert_eq!(v["address"].as_str(), Some(real.as_str()));
    }
    // The worker listing shows only the real worker, too.
    let out = mesh.run(&["workers", "--json", "--no-mdns", "--wait", "2s"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 1, "{}", show(&out));
}

#[test]
fn a_restarted_worker_with_a_new_certificate_is_found_again() {
    let mut mesh = Mesh::new("restart");
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port().to_string()
    };
    let farmer = examples().join("farmer/farmer.lp");
    mesh.start_worker(&["--slots", "1", "--port", &port]);
    let out = mesh.run(&["--no-mdns", "--json", "--wait", "5s", farmer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Killed without a goodbye, then started again on the same port: a new leaf
    // certificate from the same namespace CA.
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGKILL);
    mesh.workers[0].wait_exit(Duration::from_secs(10)).expect("worker dies");
    mesh.start_worker(&["--slots", "1", "--port", &port]);
    let out = mesh.run(&["--no-mdns", "--json", "--wait", "5s", farmer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(close(json_of(&out)["objective"].as_f64().unwrap(), -108390.0, 1e-6));
}
