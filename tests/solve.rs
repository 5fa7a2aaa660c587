//! End to end: real workers, real mDNS on loopback, real QUIC + TLS, real solver.

mod common;
use common::*;

#[test]
fn farmer_on_two_workers() {
    let mut mesh = Mesh::new("farmer");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    let listed = mesh.wait_for_workers(2);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let farmer = examples().join("farmer/farmer.lp");
    let out = mesh.run(&["--json", farmer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "optimal");
    let obj = v["objective"].as_f64().unwrap();
    assert!(close(obj, -108390.0, 1e-6), "objective {obj}");
    assert!(close(v["values"]["scen0_DevotedAcreage_WHEAT"].as_f64().unwrap(), 170.0, 1e-6));
    assert!(v["worker"].as_str().is_some_and(|w| !w.is_empty()));
    assert!(v["solve_seconds"].as_f64().is_some());

    // The human-readable table names the worker and the values.
    let out = mesh.run(&[farmer.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("optimal") && text.contains("-108390") && text.contains("solved by   worker"),
        "{text}"
    );
    assert!(text.contains("scen0_DevotedAcreage_CORN"), "{text}");

    // --output writes the solution file.
    let sol = mesh.home_path().join("farmer.sol");
    let out = mesh.run(&["--output", sol.to_str().unwrap(), farmer.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let written = std::fs::read_to_string(&sol).unwrap();
    assert!(written.contains("scen0_DevotedAcreage_SUGAR_BEETS 250"), "{written}");
}

#[test]
fn knapsack_mip_and_gzip_and_direct_worker() {
    let mut mesh = Mesh::new("mip");
    let addr = mesh.start_worker(&["--slots", "2"]).addr.clone();
    let ks = examples().join("knapsack.lp");
    // --worker skips discovery entirely.
    let out = mesh.run(&["--json", "--worker", &addr, ks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert_eq!(v["objective"].as_f64(), Some(21.0));
    assert_eq!(v["values"]["x"].as_f64(), Some(0.0));

    // A gzip-compressed copy solves the same.
    let gz = mesh.home_path().join("knapsack.lp.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(&ks).unwrap()).unwrap();
    enc.finish().unwrap();
    let out = mesh.run(&["--json", "--worker", &addr, gz.to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
}

#[test]
fn infeasible_and_unbounded_are_answers_with_their_exit_codes() {
    let mut mesh = Mesh::new("status");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let dir = mesh.home_path().to_path_buf();
    let inf = dir.join("inf.lp");
    std::fs::write(&inf, "min\n obj: x\nst\n c1: x >= 5\n c2: x <= 3\nend\n").unwrap();
    let unb = dir.join("unb.lp");
    std::fs::write(&unb, "min\n obj: -x\nst\n c1: x >= 0\nend\n").unwrap();
    let out = mesh.run(&["--json", "--worker", &addr, inf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(json_of(&out)["status"], "infeasible");
    let out = mesh.run(&["--json", "--worker", &addr, unb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert_eq!(json_of(&out)["status"], "unbounded");
}

/// Instances the pure-Rust default solver cannot finish in reasonable time.
const SLOW_FOR_MICROLP: &[&str] = &["bell5.mps", "p0548.mps"];

#[test]
fn public_instances_match_their_known_optima() {
    let Some(dir) = public_models() else {
        prerequisite_missing(
            "../shared/models/public (public instances with known optima) is not beside this checkout",
        );
        return;
    };
    let manifest: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut mesh = Mesh::new("public");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    let highs = cfg!(feature = "highs");
    let mut files = Vec::new();
    for m in &manifest {
        let f = m["file"].as_str().unwrap();
        if !highs && SLOW_FOR_MICROLP.contains(&f) {
            eprintln!("skipped with the default solver (too slow for microlp): {f}");
            continue;
        }
        files.push(dir.join(f).to_string_lossy().into_owned());
    }
    let mut args = vec!["--json", "--time-limit", "300s"];
    args.extend(files.iter().map(String::as_str));
    let out = mesh.run(&args);
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(results.len(), files.len(), "{}", show(&out));
    let mut workers = std::collections::HashSet::new();
    for (m, r) in manifest
        .iter()
        .filter(|m| files.iter().any(|f| f.ends_with(m["file"].as_str().unwrap())))
        .zip(&results)
    {
        let name = m["file"].as_str().unwrap();
        assert!(r["model"].as_str().unwrap().ends_with(name));
        assert_eq!(r["status"], m["status"], "{name}: {r}");
        if let Some(want) = m["objective"].as_f64() {
            let got = r["objective"].as_f64().unwrap();
            assert!(close(got, want, 1e-6), "{name}: objective {got}, expected {want}");
        }
        workers.insert(r["worker"].as_str().unwrap().to_string());
    }
    assert_eq!(workers.len(), 2, "jobs should spread over both workers: {workers:?}");
}

#[test]
fn the_demo_finds_both_workers_and_solves_the_farmer() {
    let out = std::process::Command::new(CLIENT).arg("demo").env_remove("RUST_LOG").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo: starting 2 workers"), "{text}");
    assert!(text.contains("demo: found 2 worker(s)"), "both started workers are found: {text}");
    assert!(text.contains("-108390"), "{text}");
    assert!(text.contains("demo: workers stopped"), "{text}");
}
