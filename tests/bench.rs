//! `meshsolve bench` runs end to end with small sizes (CI checks that it works, not how fast).

mod common;
use common::*;

#[test]
fn bench_runs_with_local_workers_and_reports_every_group() {
    let mesh = Mesh::new("bench");
    let out = mesh.run(&[
        "bench",
        "--local",
        "2",
        "--tiny",
        "10",
        "--transfer-mb",
        "1",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let figs: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    for group in ["dispatch", "throughput", "transfer", "discovery", "overhead", "ph", "nameserver"] {
        assert!(figs.iter().any(|f| f["group"] == group), "no {group} figure: {figs:?}");
    }
    for f in &figs {
        let m = f["median"].as_f64().unwrap();
        assert!(m.is_finite() && m > 0.0, "{f}");
        assert!(f["min"].as_f64().unwrap() <= m && m <= f["max"].as_f64().unwrap(), "{f}");
    }
    assert!(figs.iter().any(|f| f["ratio"].as_str().is_some_and(|r| r.contains("vs in-process"))));
    // The local workers are gone afterwards.
    let listed = mesh.run(&["workers", "--wait", "500ms"]);
    assert_eq!(listed.status.code(), Some(1));
}
