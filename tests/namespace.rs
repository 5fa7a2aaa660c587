//! Two namespaces on one box: each sees only its own workers, and a
//! cross-namespace connection is refused by TLS.

mod common;
use common::*;

#[test]
fn namespaces_are_isolated() {
    let mut alice = Mesh::new("alice");
    let mut bob = Mesh::new("bob");
    let a_addr = alice.start_worker(&["--slots", "1"]).addr.clone();
    let b_addr = bob.start_worker(&["--slots", "1"]).addr.clone();
    bob.start_worker(&["--slots", "1"]);

    let a_list = alice.wait_for_workers(1);
    let b_list = bob.wait_for_workers(2);
    assert_eq!(a_list.len(), 1, "alice sees only her worker: {a_list:?}");
    assert_eq!(a_list[0]["address"].as_str(), Some(a_addr.as_str()));
    assert_eq!(b_list.len(), 2, "bob sees his two: {b_list:?}");
    assert!(b_list.iter().all(|w| w["namespace"] == bob.ns.as_str()));
    assert!(b_list.iter().all(|w| w["address"].as_str() != Some(a_addr.as_str())));

    // Alice pointing straight at Bob's worker is refused at the TLS handshake.
    let ks = examples().join("knapsack.lp");
    let out = alice.run(&["--worker", &b_addr, ks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not signed by namespace"), "{err}");
    // Bob's worker logs the refused handshake and keeps serving Bob.
    let out = bob.run(&["--json", "--worker", &b_addr, ks.to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
    // A flood of refused handshakes does not flood Bob's log (five lines per 10 s).
    for _ in 0..12 {
        let _ = alice.run(&["--worker", &b_addr, ks.to_str().unwrap()]);
    }
    let logged = bob.workers[0].log_text().matches("refused a client").count();
    assert!((1..=5).contains(&logged), "{logged} refusal lines in 10 s");

    // A stranger using Bob's namespace *name* but its own CA is refused too.
    let stranger = tempfile::tempdir().unwrap();
    let out = bob
        .cmd()
        .env("MESHSOLVE_HOME", stranger.path())
        .args(["--worker", &b_addr, ks.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed by namespace"), "{}", show(&out));
    // ... and does not see Bob's workers over mDNS either.
    let out = bob
        .cmd()
        .env("MESHSOLVE_HOME", stranger.path())
        .args(["workers", "--wait", "1500ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no meshsolve worker found"), "{}", show(&out));
}

#[test]
fn exported_ca_lets_a_second_box_join() {
    let mut mesh = Mesh::new("join");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let bundle = mesh.home_path().join("ns.pem");
    let out = mesh.run(&["certs", "export", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let other = tempfile::tempdir().unwrap();
    let out = mesh
        .cmd()
        .env("MESHSOLVE_HOME", other.path())
        .args(["certs", "import", bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let ks = examples().join("knapsack.lp");
    let out = mesh
        .cmd()
        .env("MESHSOLVE_HOME", other.path())
        .args(["--json", "--worker", &addr, ks.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
    // Both homes show the same fingerprint.
    let a = mesh.run(&["certs", "show"]);
    let b = mesh.cmd().env("MESHSOLVE_HOME", other.path()).args(["certs", "show"]).output().unwrap();
    let fp = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with("fingerprint")).map(str::to_string)
    };
    assert_eq!(fp(&a), fp(&b));
    assert!(fp(&a).is_some());
}

/// Anyone on the LAN can send mDNS adverts: twenty forged ones carrying the
/// namespace and its CA fingerprint (both public) and pointing at addresses that
/// never answer must not cost a batch anything. An advert is a hint; a worker is
/// used once its TLS handshake has proved the namespace CA.
#[test]
fn forged_adverts_cost_nothing() {
    use meshsolve::discovery::{mdns::Mdns, Discovery, SolverInfo, WorkerAd};
    let mut mesh = Mesh::new("forged");
    mesh.start_worker(&["--slots", "1", "--solvers", "microlp", "--no-python"]);
    mesh.start_worker(&["--slots", "1", "--solvers", "microlp", "--no-python"]);
    mesh.wait_for_workers(2);
    let ca = meshsolve::certs::NamespaceCa::load_or_create(mesh.home_path(), &mesh.ns).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let forger = rt.block_on(async { Mdns::new(&["lo".to_string()]).unwrap() });
    for i in 0..20 {
        // A UDP port nobody listens on.
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ad = WorkerAd {
            instance: format!("forged-{i}"),
            namespace: mesh.ns.clone(),
            addrs: vec![([127, 0, 0, 1], port).into()],
            solvers: vec![SolverInfo { name: "microlp".into(), version: "0.7".into(), slots: 8 }],
            slots: 8,
            ca_fingerprint: ca.fingerprint(),
            protocol: meshsolve::protocol::VERSION,
            version: "0.1.0".into(),
            relay: None,
            pools: Vec::new(),
            since: 0,
        };
        rt.block_on(async { forger.announce(&ad).unwrap() });
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dir = mesh.home_path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..10 {
        std::fs::copy(examples().join("farmer/farmer.lp"), dir.join(format!("f{i}.lp"))).unwrap();
    }
    let out = mesh.run(&["--json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    for r in v.as_array().unwrap() {
        assert_eq!(r["status"], "optimal", "{r}");
        assert_eq!(r["attempts"], 1, "no attempt burned on a forged advert: {r}");
        assert!(!r["worker"].as_str().unwrap().starts_with("forged"), "{r}");
    }
    // `meshsolve workers` lists only the workers that proved themselves.
    let out = mesh.run(&["workers", "--json", "--wait", "1s"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    rt.block_on(forger.shutdown());
}

/// A goodbye is as unauthenticated as an advert and names only an instance: a
/// box that advertises under a worker's name and then stops (a stranger, or a
/// worker of another namespace started with the same name) must not make
/// clients drop the real worker. A real goodbye still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_goodbye_under_a_workers_name_is_ignored() {
    use meshsolve::client::{JobOptions, Mesh as Client};
    use meshsolve::discovery::{mdns::Mdns, Discovery, SolverInfo, WorkerAd};
    use std::time::{Duration, Instant};
    let mut lab = Mesh::new("goodbye");
    lab.start_worker(&["--slots", "1", "--solvers", "microlp", "--no-python"]);
    let victim = lab.wait_for_workers(1)[0]["name"].as_str().unwrap().to_string();
    let client = Client::connect(lab.client_config()).await.unwrap();
    client.wait_for_workers(None, Duration::from_secs(10)).await.unwrap();
    let ca = meshsolve::certs::NamespaceCa::load_or_create(lab.home_path(), &lab.ns).unwrap();
    // The stranger's box uses the victim's port too (instance names embed it).
    let port: u16 = lab.workers[0].addr.rsplit(':').next().unwrap().parse().unwrap();
    // Twice as each kind of impostor: with the namespace's (public) CA fingerprint, and with another.
    for (round, fingerprint) in
        [ca.fingerprint(), "0".repeat(64), ca.fingerprint(), "1".repeat(64)].into_iter().enumerate()
    {
        let stranger = Mdns::new(&["lo".to_string()]).unwrap();
        let ad = WorkerAd {
            instance: victim.clone(),
            namespace: lab.ns.clone(),
            addrs: vec![([127, 0, 0, 1], port).into()],
            solvers: vec![SolverInfo { name: "microlp".into(), version: "0.7".into(), slots: 1 }],
            slots: 1,
            ca_fingerprint: fingerprint,
            protocol: meshsolve::protocol::VERSION,
            version: "0.1.0".into(),
            relay: None,
            pools: Vec::new(),
            since: 0,
        };
        stranger.announce(&ad).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Goodbye packets under the victim's name.
        stranger.shutdown().await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let names: Vec<String> = client.workers().into_iter().map(|w| w.instance).collect();
        assert_eq!(names, std::slice::from_ref(&victim), "round {round}: the real worker is still listed");
        let ks = examples().join("knapsack.lp");
        let header = Client::header(&ks, &JobOptions::default()).unwrap();
        let (solution, _) = client.send_job(&client.workers()[0], &ks, &header, &|_| {}).await.unwrap();
        assert_eq!(solution.objective, Some(21.0), "round {round}");
    }
    // The real worker's own goodbye is believed.
    lab.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    while !client.workers().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a real goodbye drops the worker: {}",
            lab.workers[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
}
