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
    // Every command-line mistake exits 2 and says what to type.
    let ks = examples().join("knapsack.lp");
    let ks = ks.to_str().unwrap();
    for args in [
        vec!["no-such-model.lp"],
        vec!["--output", "x.txt", ks, ks.trim_end_matches("knapsack.lp")],
        vec!["--namespace", "../etc", ks],
        vec!["--time-limit", "99999999999999999999h", ks],
        vec!["--mip-gap", "-1", ks],
        vec!["check"],
    ] {
        let out = mesh.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", show(&out));
    }
    let out = std::process::Command::new(WORKER)
        .args(["--slots", "0", "--namespace", &mesh.ns])
        .env("MESHSOLVE_HOME", mesh.home_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "meshworker --slots 0: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--slots 4"), "{}", show(&out));
    // An empty model file is reported at line 1, not 0.
    let empty = mesh.home_path().join("empty.mps");
    std::fs::write(&empty, "").unwrap();
    let out = mesh.run(&["check", empty.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("empty.mps:1:"), "{}", show(&out));
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

#[test]
fn models_that_would_give_a_wrong_answer_or_a_panic_are_answered_right_or_refused() {
    let mut mesh = Mesh::new("hostile");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let dir = mesh.home_path().to_path_buf();
    // An integer optimum beyond 2^31: HiGHS finds it; microlp must refuse, never answer 2^31 - 1.
    let big = dir.join("big.lp");
    std::fs::write(&big, "Maximize\n obj: x\nSubject To\n c: x <= 3000000000\nGeneral\n x\nEnd\n").unwrap();
    let bounded = dir.join("bounded.lp");
    std::fs::write(
        &bounded,
        "Maximize\n obj: x\nSubject To\n c: x + y <= 5\nBounds\n x <= 3e9\nGeneral\n x\nEnd\n",
    )
    .unwrap();
    for model in [&big, &bounded] {
        for how in [vec!["--local"], vec!["--worker", &addr]] {
            let mut args = how.clone();
            args.extend(["--json", model.to_str().unwrap()]);
            let out = mesh.run(&args);
            let text =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!text.contains("2147483647"), "a clamped, wrong optimum: {}", show(&out));
            assert!(!text.contains("panicked"), "{}", show(&out));
            if out.status.code() == Some(0) {
                let v = json_of(&out);
                let want = if model == &big { 3e9 } else { 5.0 };
                assert!(close(v["objective"].as_f64().unwrap(), want, 1e-9), "{}", show(&out));
            } else {
                assert!(text.contains("HiGHS"), "the refusal says what to use: {}", show(&out));
            }
        }
    }
    // Repeated (column, row) entries in MPS are merged, not a solver panic.
    let dup = dir.join("dup.mps");
    std::fs::write(
        &dup,
        "NAME dup\nROWS\n N obj\n G c1\nCOLUMNS\n    x obj 1 c1 1\n    x c1 2\nRHS\n    rhs c1 6\nENDATA\n",
    )
    .unwrap();
    let out = mesh.run(&["--json", "--worker", &addr, dup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(close(json_of(&out)["objective"].as_f64().unwrap(), 2.0, 1e-9), "3x >= 6: {}", show(&out));
    // A number beyond f64 is a reader error with the file and line, before anything is sent.
    let huge = dir.join("huge.lp");
    std::fs::write(&huge, "Minimize\n obj: x\nSubject To\n c: x >= 1e400\nEnd\n").unwrap();
    let out = mesh.run(&["--worker", &addr, huge.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("huge.lp:4: number `1e400` out of range"),
        "{}",
        show(&out)
    );
}

#[test]
fn asking_for_a_solver_no_worker_has_says_what_they_have() {
    let mut mesh = Mesh::new("nosolver");
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(1);
    let ks = examples().join("knapsack.lp");
    let out = mesh.run(&["--solver", "gurobi", "--wait", "1s", ks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 worker(s) found, none has solver `gurobi`"), "{err}");
    assert!(err.contains("they have microlp") || err.contains("highs"), "{err}");
}

#[test]
fn an_exported_ca_is_owner_only_even_over_an_existing_file() {
    use std::os::unix::fs::PermissionsExt;
    let mesh = Mesh::new("export");
    let file = mesh.home_path().join("ns.pem");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mesh.run(&["certs", "export", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // Importing it under another namespace name warns that the two are now one.
    let out =
        mesh.cmd().args(["--namespace", "someone-else", "certs", "import"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("security boundary"), "{}", show(&out));
}

/// A small gzip file that unfolds into one enormous line is refused at that
/// line, quickly and in little memory, with a message that says which limit.
#[test]
fn an_endless_line_is_refused_not_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.lp.gz");
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::best());
    gz.write_all(b"Minimize\n obj: ").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..4 {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap();
    let out = std::process::Command::new(CLIENT)
        .args(["--local", path.to_str().unwrap()])
        .env("MESHSOLVE_MAX_LINE_MB", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bomb.lp.gz:2") && err.contains("longer than 2 MiB"), "{err}");
}

/// A worker whose disk is full says so, by name and directory, instead of
/// "sending stopped by peer".
#[test]
fn a_full_disk_on_a_worker_is_named() {
    if !nix::unistd::Uid::effective().is_root() {
        prerequisite_missing("root, to mount a small tmpfs as the worker's temporary directory");
        return;
    }
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(tmp.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        prerequisite_missing("mount -t tmpfs (a small disk for the worker)");
        return;
    }
    let _mount = Mount(tmp.path().to_path_buf());
    let mut mesh = Mesh::new("diskfull");
    mesh.start_worker_env(&["--slots", "1", "--no-python"], &[("TMPDIR", tmp.path())]);
    mesh.wait_for_workers(1);
    // Over 1 MiB: a model that small would go to the solver in memory.
    let big = mesh.home_path().join("big.lp");
    std::fs::write(&big, wide_lp(120_000)).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 1 << 20);
    let out = mesh.run(&["--json", "--wait", "3s", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = json_of(&out)["error"].as_str().unwrap().to_string();
    assert!(err.contains("no space left in") && err.contains(&tmp.path().display().to_string()), "{err}");
}

/// A model larger than a worker's disk budget is refused at once, with the flag
/// that sets it; smaller ones still solve.
#[test]
fn the_disk_budget_bounds_what_a_worker_takes() {
    let mut mesh = Mesh::new("diskbudget");
    mesh.start_worker(&["--slots", "1", "--no-python", "--disk-budget", "1"]);
    mesh.wait_for_workers(1);
    let big = mesh.home_path().join("big.lp");
    std::fs::write(&big, wide_lp(120_000)).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 1 << 20);
    let out = mesh.run(&["--json", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(json_of(&out)["error"].as_str().unwrap().contains("--disk-budget"), "{}", show(&out));
    let out = mesh.run(&["--json", examples().join("knapsack.lp").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// A model over 1 MiB travels to the worker's disk in pieces (read ahead on the
/// client, written while the next piece arrives) and arrives whole: its last
/// line, the right-hand side, decides the answer.
#[test]
fn a_model_over_1_mib_arrives_whole() {
    let mut mesh = Mesh::new("bigmodel");
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    mesh.wait_for_workers(1);
    let big = mesh.home_path().join("big.lp");
    let text = wide_lp(200_000).replace(">= 1\n", ">= 7\n");
    std::fs::write(&big, &text).unwrap();
    assert!(text.len() > 2 << 20);
    let out = mesh.run(&["--json", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "optimal", "{}", show(&out));
    assert!((v["objective"].as_f64().unwrap() - 7.0).abs() < 1e-6, "{}", show(&out));
}
