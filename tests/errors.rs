//! Bad input gets a clear error and the documented exit code, never a panic or a hang.

mod common;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn malformed_models_are_refused_before_sending() {
    let mesh = Mesh::new("bad");
    let dir = mesh.home_path();
    let bad_lp = dir.join("bad.lp");
    std::fs::write(&bad_lp, "min\n obj: x + y\nst\n c1: x + <= 4\nend\n").unwrap();
    let bad_mps = dir.join("bad.mps");
    std::fs::write(&bad_mps, "NAME x\nROWS\n N obj\n L c1\nCOLUMNS\n x obj 1 c1 oops\nRHS\nENDATA\n")
        .unwrap();
    let truncated = dir.join("trunc.mps");
    std::fs::write(&truncated, "NAME x\nROWS\n N obj\n L c1\nCOLUMNS\n x obj 1 c1 1\n").unwrap();
    let binary = dir.join("junk.mps.gz");
    std::fs::write(&binary, b"\x1f\x8b\x08\x00garbage that is not gzip").unwrap();
    // No worker is running: the check happens at the client, before discovery.
    for (file, needle) in [
        (&bad_lp, "bad.lp:4:"),
        (&bad_mps, "bad.mps:6: expected a number"),
        (&truncated, "ENDATA"),
        (&binary, "junk.mps.gz"),
    ] {
        let out = mesh.run(&["--wait", "200ms", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A model that does not exist is a command-line mistake: exit 2.
    let out = mesh.run(&["unknown.xyz"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"), "{}", show(&out));
    let odd = dir.join("model.txt");
    std::fs::write(&odd, "min\n obj: x\nend\n").unwrap();
    let out = mesh.run(&["--wait", "200ms", odd.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model format"), "{}", show(&out));
}

#[test]
fn no_worker_says_what_to_do() {
    let mesh = Mesh::new("none");
    let ks = examples().join("knapsack.lp");
    let t = Instant::now();
    let out = mesh.run(&["--wait", "1s", ks.to_str().unwrap()]);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["no meshsolve worker found", &mesh.ns, "meshworker", "PYRO_NS_HOSTNAME"] {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
}

#[test]
fn a_dead_worker_gives_a_clear_error_not_a_hang() {
    let mut mesh = Mesh::new("dead");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGKILL);
    mesh.workers[0].wait_exit(Duration::from_secs(5)).expect("worker died");
    let ks = examples().join("knapsack.lp");
    let t = Instant::now();
    let out = mesh.run(&["--worker", &addr, ks.to_str().unwrap()]);
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && (err.contains("did not answer") || err.contains("within")), "{err}");
}

#[test]
fn bad_flags_exit_2_and_help_teaches() {
    let mesh = Mesh::new("help");
    let out = mesh.run(&["--time-limit", "soon", "x.lp"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = mesh.run(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["Exit codes", "infeasible", "--worker", "--json", "workers", "certs"] {
        assert!(text.contains(needle), "`{needle}` missing from --help:\n{text}");
    }
    for sub in ["workers", "shutdown", "certs", "demo", "bench", "ph", "collect"] {
        let out = mesh.run(&[sub, "--help"]);
        assert!(out.status.success(), "meshsolve {sub} --help: {}", show(&out));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshns")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("PYRO_NS_HOSTNAME"));
    let out = std::process::Command::new(WORKER).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["--namespace", "--slots", "--port", "--bind", "--interface", "--solver", "--log-level", "--grace"]
    {
        assert!(text.contains(needle), "`{needle}` missing from meshworker --help:\n{text}");
    }
}
