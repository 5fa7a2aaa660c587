//! Raw protocol abuse against a real worker over real QUIC + TLS: garbage,
//! truncated and oversized messages are errors on their stream; the worker
//! keeps serving.

mod common;
use common::*;
use meshsolve::certs::{NamespaceCa, CLIENT_NAME};
use meshsolve::protocol::{encode, read_msg, Request, Response, WorkerStatus, MAX_CONTROL};
use meshsolve::transport;

async fn open(mesh: &Mesh, addr: &str) -> quinn::Connection {
    let ca = NamespaceCa::load_or_create(mesh.home_path(), &mesh.ns).unwrap();
    let id = ca.issue(CLIENT_NAME).unwrap();
    let ep = transport::client_endpoint(&id).unwrap();
    ep.connect(addr.parse().unwrap(), transport::server_name()).unwrap().await.unwrap()
}

async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Option<Response>, String> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), read_msg::<Response>(&mut recv, MAX_CONTROL))
        .await
        .map_err(|_| "worker hung".to_string())?
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn garbage_truncated_and_oversized_messages_are_stream_errors() {
    let mut mesh = Mesh::new("proto");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let conn = open(&mesh, &addr).await;

    let garbage = [0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    match send_raw(&conn, &garbage).await {
        Ok(Some(Response::Failed { message, .. })) => assert!(message.contains("malformed"), "{message}"),
        other => panic!("garbage: {other:?}"),
    }
    let good = encode(&Request::Status).unwrap();
    match send_raw(&conn, &good[..good.len() - 1]).await {
        Ok(Some(Response::Failed { message, .. })) => assert!(message.contains("truncated"), "{message}"),
        other => panic!("truncated: {other:?}"),
    }
    match send_raw(&conn, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).await {
        Ok(Some(Response::Failed { message, .. })) => assert!(message.contains("exceeds"), "{message}"),
        other => panic!("oversized: {other:?}"),
    }
    // A solve header announcing more bytes than are sent: the job fails, the worker lives.
    let header = Request::Solve(meshsolve::protocol::SolveRequest {
        name: "short".into(),
        format: meshsolve::model::Format::Lp,
        gzip: false,
        size: 1000,
        solver: None,
        options: Default::default(),
        sender: None,
        attempt: 0,
    });
    let mut bytes = encode(&header).unwrap();
    bytes.extend_from_slice(b"min\n obj: x\n");
    match send_raw(&conn, &bytes).await {
        Ok(Some(Response::Failed { message, .. })) => assert!(message.contains("truncated"), "{message}"),
        other => panic!("short model: {other:?}"),
    }
    // Still serving, on the same connection and on a new one.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&good).await.unwrap();
    send.finish().unwrap();
    let st: WorkerStatus = read_msg(&mut recv, MAX_CONTROL).await.unwrap().unwrap();
    assert_eq!(st.namespace, mesh.ns);
    assert_eq!(st.busy, 0);
    let out = mesh.run(&["--json", "--worker", &addr, examples().join("knapsack.lp").to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
    assert!(mesh.workers[0].child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn absurd_solve_options_are_refused_and_the_worker_lives() {
    let mut mesh = Mesh::new("absurd");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let conn = open(&mesh, &addr).await;
    let model = b"Minimize\n obj: x\nSubject To\n c: x >= 1\nEnd\n";
    for t in [f64::NAN, f64::INFINITY, 1e300, -1.0] {
        let header = Request::Solve(meshsolve::protocol::SolveRequest {
            name: "m".into(),
            format: meshsolve::model::Format::Lp,
            gzip: false,
            size: model.len() as u64,
            solver: None,
            options: meshsolve::protocol::SolveOptions { time_limit: Some(t), ..Default::default() },
            sender: None,
            attempt: 0,
        });
        let mut bytes = encode(&header).unwrap();
        bytes.extend_from_slice(model);
        match send_raw(&conn, &bytes).await {
            Ok(Some(Response::Failed { kind, message })) => {
                assert_eq!(kind, meshsolve::protocol::FailKind::Rejected, "{message}");
                assert!(message.contains("time_limit"), "{message}");
            }
            other => panic!("time_limit {t}: {other:?}"),
        }
    }
    let out = mesh.run(&["--json", "--worker", &addr, examples().join("knapsack.lp").to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
    assert!(mesh.workers[0].child.try_wait().unwrap().is_none());
}

/// A PH step whose vectors do not fit the resident scenario is refused on its
/// stream; the scenario (and the process holding it) keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_does_not_fit_is_refused_and_the_scenario_lives() {
    use meshsolve::model::Format;
    use meshsolve::protocol::{write_msg, ResidentOpen, SolveOptions, SolveRequest, Step, StepMode};
    let mut mesh = Mesh::new("badstep");
    let addr = mesh.start_worker(&["--slots", "1", "--no-python"]).addr.clone();
    let conn = open(&mesh, &addr).await;
    let model = std::fs::read(examples().join("farmer/scen0.lp")).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let header = SolveRequest {
        name: "scen0".into(),
        format: Format::Lp,
        gzip: false,
        size: model.len() as u64,
        solver: None,
        options: SolveOptions::default(),
        sender: None,
        attempt: 0,
    };
    let nonants = vec![
        "DevotedAcreage_WHEAT".into(),
        "DevotedAcreage_CORN".into(),
        "DevotedAcreage_SUGAR_BEETS".into(),
    ];
    write_msg(&mut send, &Request::Resident(ResidentOpen { model: header, nonants })).await.unwrap();
    send.write_all(&model).await.unwrap();
    let ready =
        tokio::time::timeout(std::time::Duration::from_secs(20), read_msg::<Response>(&mut recv, 1 << 20))
            .await;
    assert!(matches!(ready, Ok(Ok(Some(Response::Ready { nonants: 3, .. })))), "{ready:?}");
    let short = Step { mode: StepMode::Plain, w: vec![0.0], xbar: vec![0.0], rho: vec![1.0] };
    write_msg(&mut send, &short).await.unwrap();
    let r =
        tokio::time::timeout(std::time::Duration::from_secs(20), read_msg::<Response>(&mut recv, 1 << 20))
            .await;
    assert!(
        matches!(&r, Ok(Ok(Some(Response::Failed { message, .. }))) if message.contains("bad step")),
        "{r:?}"
    );
    let good = Step { mode: StepMode::Plain, w: vec![0.0; 3], xbar: vec![0.0; 3], rho: vec![1.0; 3] };
    write_msg(&mut send, &good).await.unwrap();
    let r =
        tokio::time::timeout(std::time::Duration::from_secs(20), read_msg::<Response>(&mut recv, 1 << 20))
            .await;
    assert!(matches!(&r, Ok(Ok(Some(Response::Step(_))))), "the scenario still answers: {r:?}");
    let _ = send.finish();
}

/// A peer that opens a stream and never finishes its request is dropped after
/// the first-frame deadline (10 s), not served forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_stream_is_closed_by_the_worker() {
    let mut mesh = Mesh::new("silent");
    let addr = mesh.start_worker(&["--slots", "1", "--no-python"]).addr.clone();
    let conn = open(&mesh, &addr).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    // Half of a frame header, then silence.
    send.write_all(&[0, 0]).await.unwrap();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), send.stopped()).await;
    assert!(stopped.is_ok(), "the worker still holds a silent stream after 20 s");
    // And it keeps serving others.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode(&Request::Status).unwrap()).await.unwrap();
    send.finish().unwrap();
    let st = read_msg::<WorkerStatus>(&mut recv, MAX_CONTROL).await.unwrap().unwrap();
    assert_eq!(st.slots, 1);
}
