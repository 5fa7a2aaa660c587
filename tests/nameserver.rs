//! The static name server on loopback: workers and clients with mDNS off find
//! each other through it, a restart is survived, namespaces stay isolated,
//! and bad requests are refused while the daemon keeps serving.

mod common;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NS_EXE: &str = env!("CARGO_BIN_EXE_meshns");

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ns(home: &Path, port: u16, namespaces: &[&str], log: &Path) -> Proc {
    let mut c = Command::new(NS_EXE);
    c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
    for n in namespaces {
        c.args(["--namespace", n]);
    }
    let child = c
        .env("MESHSOLVE_HOME", home)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains("listening on") {
        assert!(t.elapsed() < Duration::from_secs(10), "meshns did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child)
}

fn start_worker(home: &Path, ns: &str, port: u16, log: &Path) -> Proc {
    Proc(
        Command::new(WORKER)
            .args(["--namespace", ns, "--no-mdns", "--ns", &format!("127.0.0.1:{port}"), "--slots", "1"])
            .env("MESHSOLVE_HOME", home)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn client(home: &Path, ns: &str, port: u16) -> Command {
    let mut c = Command::new(CLIENT);
    c.args(["--namespace", ns, "--no-mdns"])
        .env("MESHSOLVE_HOME", home)
        .env("PYRO_NS_HOSTNAME", "127.0.0.1")
        .env("PYRO_NS_PORT", port.to_string())
        .env_remove("RUST_LOG");
    c
}

fn listed(home: &Path, ns: &str, port: u16) -> Vec<serde_json::Value> {
    let out = client(home, ns, port).args(["workers", "--json", "--wait", "2s"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn wait_listed(home: &Path, ns: &str, port: u16, n: usize) -> Duration {
    let t = Instant::now();
    loop {
        if listed(home, ns, port).len() == n {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{n} workers of {ns} never listed");
    }
}

fn make_ca(home: &Path, ns: &str) {
    let out = Command::new(CLIENT)
        .args(["--namespace", ns, "certs", "show"])
        .env("MESHSOLVE_HOME", home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn multicast_free_mesh_through_the_name_server_survives_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("nsrv");
    make_ca(home.path(), &ns);
    let port = free_udp_port();
    let log = home.path().join("ns.log");
    let mut daemon = Some(start_ns(home.path(), port, &[&ns], &log));
    let _w1 = start_worker(home.path(), &ns, port, &home.path().join("w1.log"));
    let _w2 = start_worker(home.path(), &ns, port, &home.path().join("w2.log"));
    wait_listed(home.path(), &ns, port, 2);

    // A batch of slow models; the daemon is killed and restarted in the middle.
    let dir = home.path().join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    let hard = hard_model(&dir);
    for i in 0..10 {
        std::fs::copy(&hard, dir.join(format!("s{i}.lp"))).unwrap();
    }
    std::fs::remove_file(&hard).unwrap();
    let batch = client(home.path(), &ns, port)
        .args(["--json", "--quiet", "--time-limit", "400ms", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(daemon.take()); // SIGKILL
    std::thread::sleep(Duration::from_millis(500));
    daemon = Some(start_ns(home.path(), port, &[&ns], &log));
    let out = batch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 10);
    let workers: std::collections::HashSet<&str> = v.iter().map(|r| r["worker"].as_str().unwrap()).collect();
    assert_eq!(workers.len(), 2, "both workers took jobs: {workers:?}");
    // The workers registered again with the restarted daemon, without being restarted.
    let again = wait_listed(home.path(), &ns, port, 2);
    assert!(again < Duration::from_secs(15), "re-registration took {again:?}");
    drop(daemon);
}

#[test]
fn namespaces_through_one_daemon_are_isolated_and_bad_requests_refused() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (unique_ns("nsa"), unique_ns("nsb"));
    make_ca(home.path(), &a);
    make_ca(home.path(), &b);
    let port = free_udp_port();
    let _daemon = start_ns(home.path(), port, &[&a, &b], &home.path().join("ns.log"));
    let _wa = start_worker(home.path(), &a, port, &home.path().join("wa.log"));
    let _wb1 = start_worker(home.path(), &b, port, &home.path().join("wb1.log"));
    let _wb2 = start_worker(home.path(), &b, port, &home.path().join("wb2.log"));
    wait_listed(home.path(), &a, port, 1);
    wait_listed(home.path(), &b, port, 2);
    assert_eq!(listed(home.path(), &a, port).len(), 1, "namespace a sees only its own worker");

    // A stranger (own CA, same namespace name) is refused by the daemon.
    let stranger = tempfile::tempdir().unwrap();
    make_ca(stranger.path(), &a);
    let out = client(stranger.path(), &a, port).args(["workers", "--wait", "2s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // Raw protocol abuse through the library.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use meshsolve::certs::{NamespaceCa, CLIENT_NAME};
        use meshsolve::discovery::registry::call;
        use meshsolve::protocol::{NsReply, Request};
        let ca = NamespaceCa::load_or_create(home.path(), &a).unwrap();
        let ep = meshsolve::transport::client_endpoint(&ca.issue(CLIENT_NAME).unwrap()).unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let conn = ep.connect(addr, &meshsolve::transport::ns_server_name(&a)).unwrap().await.unwrap();
        let NsReply::Workers(ads) = call(&conn, &Request::List).await.unwrap() else { panic!("list") };
        assert_eq!(ads.len(), 1);
        // A registration claiming the other namespace.
        let mut fake = ads[0].clone();
        fake.namespace = b.clone();
        fake.instance = "intruder".into();
        assert!(matches!(call(&conn, &Request::Register(fake)).await.unwrap(), NsReply::Refused(m) if m.contains("namespace")));
        // A lease refresh for a registration this connection does not hold.
        let r = call(&conn, &Request::Refresh { instance: ads[0].instance.clone() }).await.unwrap();
        assert!(matches!(r, NsReply::Refused(_)), "{r:?}");
        // Garbage.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).await.unwrap();
        send.finish().unwrap();
        let r: Option<NsReply> = meshsolve::protocol::read_msg(&mut recv, 65536).await.unwrap();
        assert!(matches!(r, Some(NsReply::Refused(_))), "{r:?}");
        // Asking for namespace b's name with a's certificate: refused.
        let conn_b = ep.connect(addr, &meshsolve::transport::ns_server_name(&b)).unwrap().await;
        if let Ok(c) = conn_b {
            assert!(call(&c, &Request::List).await.is_err(), "a's certificate must not open b's namespace");
        }
        // Still serving.
        let NsReply::Workers(ads) = call(&conn, &Request::List).await.unwrap() else { panic!("list") };
        assert_eq!(ads.len(), 1);
    });
    // b's workers still solve for b.
    let out = client(home.path(), &b, port)
        .args(["--json", examples().join("knapsack.lp").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
}

#[test]
fn a_detached_batch_is_solved_while_the_client_is_away() {
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("detach");
    make_ca(home.path(), &ns);
    let port = free_udp_port();
    let log = home.path().join("ns.log");
    let daemon = start_ns(home.path(), port, &[&ns], &log);
    // Submit with no worker running at all.
    let dir = home.path().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        std::fs::copy(examples().join("knapsack.lp"), dir.join(format!("k{i}.lp"))).unwrap();
    }
    // Two models with one stem in different directories stay two models.
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(examples().join("knapsack.lp"), dir.join("sub/k0.lp")).unwrap();
    let out = client(home.path(), &ns, port).args(["--detach", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!batch.is_empty());
    let out = client(home.path(), &ns, port).args(["collect", &batch]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "nothing solved yet: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued"), "{}", show(&out));
    // The name server restarts: the queue is kept on its disk.
    drop(daemon);
    let _daemon = start_ns(home.path(), port, &[&ns], &log);
    // A worker comes up later and the queue drains without the client.
    let _w = start_worker(home.path(), &ns, port, &home.path().join("w.log"));
    let out = client(home.path(), &ns, port)
        .args([
            "collect",
            &batch,
            "--until-done",
            "--json",
            "--out",
            home.path().join("res").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 6);
    assert!(v.iter().all(|r| r["status"] == "optimal" && r["objective"].as_f64() == Some(21.0)), "{v:?}");
    assert!(v.iter().any(|r| r["model"].as_str().unwrap().ends_with("sub/k0.lp")), "{v:?}");
    assert!(home.path().join("res/summary.csv").exists());
    let results = std::fs::read_dir(home.path().join("res"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('k'))
        .count();
    assert_eq!(results, 6, "one result file per model, even with a shared stem");
    // Another namespace cannot collect it.
    let other = unique_ns("other");
    make_ca(home.path(), &other);
    let out = client(home.path(), &other, port).args(["collect", &batch]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// A namespace member registers a "worker" with 1000 slots that never answers:
/// the name server proves a registration with a status request before it lists
/// it or queues jobs to it, so a detached batch goes to the real worker.
#[test]
fn a_registration_that_never_answers_is_not_trusted() {
    use meshsolve::certs::{NamespaceCa, CLIENT_NAME};
    use meshsolve::discovery::{SolverInfo, WorkerAd};
    use meshsolve::protocol::{read_msg, write_msg, NsReply, Request};
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("nsfake");
    make_ca(home.path(), &ns);
    let port = free_udp_port();
    let _daemon = start_ns(home.path(), port, &[&ns], &home.path().join("ns.log"));
    let _w = start_worker(home.path(), &ns, port, &home.path().join("w.log"));
    wait_listed(home.path(), &ns, port, 1);
    // The fake: a valid certificate of the namespace, a registration, then silence.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _fake = rt.block_on(async {
        let ca = NamespaceCa::load_or_create(home.path(), &ns).unwrap();
        let ep = meshsolve::transport::client_endpoint(&ca.issue(CLIENT_NAME).unwrap()).unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let conn = ep.connect(addr, &meshsolve::transport::ns_server_name(&ns)).unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let ad = WorkerAd {
            instance: "fake-1000-slots".into(),
            namespace: ns.clone(),
            addrs: vec!["127.0.0.1:9".parse().unwrap()],
            solvers: vec![SolverInfo { name: "microlp".into(), version: "0.7".into(), slots: 1000 }],
            slots: 1000,
            ca_fingerprint: ca.fingerprint(),
            protocol: meshsolve::protocol::VERSION,
            version: "0.1.0".into(),
            relay: None,
            pools: Vec::new(),
            since: 0,
        };
        write_msg(&mut send, &Request::Register(ad)).await.unwrap();
        let reply: Option<NsReply> = read_msg(&mut recv, 1 << 16).await.unwrap();
        assert!(matches!(reply, Some(NsReply::Leased { .. })), "{reply:?}");
        (ep, conn)
    });
    std::thread::sleep(Duration::from_secs(4));
    let names: Vec<String> = listed(home.path(), &ns, port)
        .iter()
        .map(|w| w["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 1, "only the worker that answered is listed: {names:?}");
    assert!(!names[0].starts_with("fake"), "{names:?}");
    let dir = home.path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        std::fs::copy(examples().join("knapsack.lp"), dir.join(format!("k{i}.lp"))).unwrap();
    }
    let out = client(home.path(), &ns, port).args(["--detach", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out =
        client(home.path(), &ns, port).args(["collect", &batch, "--until-done", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 5);
    assert!(v.iter().all(|r| r["status"] == "optimal" && r["worker"] != "fake-1000-slots"), "{v:?}");
}

/// A namespace cannot fill the name server's disk: past its queue quota a
/// submit is refused with a message that says so, and what was queued before
/// still runs; a finished job's model is removed from the queue's disk.
#[test]
fn the_queue_quota_refuses_what_does_not_fit() {
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("nsquota");
    make_ca(home.path(), &ns);
    let port = free_udp_port();
    let log = home.path().join("ns.log");
    let state = home.path().join("queue");
    let _daemon = Proc(
        Command::new(NS_EXE)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--namespace",
                &ns,
                "--queue-quota",
                "1",
            ])
            .arg("--state-dir")
            .arg(&state)
            .env("MESHSOLVE_HOME", home.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening on") {
        assert!(t.elapsed() < Duration::from_secs(10), "meshns did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two models of 0.7 MB each: the second does not fit in 1 MiB.
    let dir = home.path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    let text = wide_lp(40_000);
    assert!(text.len() > 600_000 && text.len() < 1 << 20);
    std::fs::write(dir.join("a.lp"), &text).unwrap();
    std::fs::write(dir.join("b.lp"), &text).unwrap();
    let out = client(home.path(), &ns, port).args(["--detach", dir.to_str().unwrap()]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(show(&out).contains("--queue-quota"), "{}", show(&out));
    // The first model fitted and waits; once a worker solves it, its model leaves
    // the queue's disk (the answer is kept).
    assert_eq!(walk_models(&state).len(), 1);
    let _w = start_worker(home.path(), &ns, port, &home.path().join("w.log"));
    let t = Instant::now();
    while !walk_models(&state).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "solved models stay on the name server's disk");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn walk_models(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_models(&p));
        } else if p.extension().is_some_and(|x| x == "model") {
            out.push(p);
        }
    }
    out
}

/// `meshsolve batches` lists a namespace's detached batches; `--delete` forgets
/// one (its queued jobs never run, its files go).
#[test]
fn batches_are_listed_and_deleted() {
    let home = tempfile::tempdir().unwrap();
    let ns = unique_ns("nsbatches");
    make_ca(home.path(), &ns);
    let port = free_udp_port();
    let _daemon = start_ns(home.path(), port, &[&ns], &home.path().join("ns.log"));
    let dir = home.path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..2 {
        std::fs::copy(examples().join("knapsack.lp"), dir.join(format!("k{i}.lp"))).unwrap();
    }
    let out = client(home.path(), &ns, port).args(["--detach", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = client(home.path(), &ns, port).args(["batches", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!((v[0]["batch"].as_str(), v[0]["queued"].as_u64()), (Some(batch.as_str()), Some(2)), "{v:?}");
    let out = client(home.path(), &ns, port).args(["batches", "--delete", &batch]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 job(s)"), "{}", show(&out));
    let out = client(home.path(), &ns, port).args(["batches"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no detached batches"), "{}", show(&out));
    // Deleting it again says there is no such batch.
    let out = client(home.path(), &ns, port).args(["batches", "--delete", &batch]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}
