//! Progressive hedging over real workers: the farmer, its scalable version,
//! and a worker killed mid-run.

mod common;
use std::time::{Duration, Instant};

use common::*;

fn xbar_ok(v: &serde_json::Value) {
    let x = &v["xbar"];
    for (name, want) in [
        ("DevotedAcreage_WHEAT", 170.0),
        ("DevotedAcreage_CORN", 80.0),
        ("DevotedAcreage_SUGAR_BEETS", 250.0),
    ] {
        let got = x[name].as_f64().unwrap();
        assert!((got - want).abs() <= 0.5, "{name}: {got}, expected {want} ± 0.5");
    }
}

#[test]
fn farmer_three_scenarios_on_two_workers() {
    let mut mesh = Mesh::new("ph3");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    let spec = examples().join("farmer/farmer.toml");
    let out = mesh.run(&["ph", spec.to_str().unwrap(), "--ef", "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    let e = v["expected_cost"].as_f64().unwrap();
    assert!(close(e, -108390.0, 1e-4), "expected cost {e}");
    xbar_ok(&v);
    assert!(close(v["ef"]["objective"].as_f64().unwrap(), -108390.0, 1e-6), "{}", v["ef"]);
    assert!(close(v["trivial_bound"].as_f64().unwrap(), -115405.555556, 1e-6));
    let lb = v["lagrangian_bound"].as_f64().unwrap();
    assert!((-115405.6..=-108390.0 + 1e-3).contains(&lb), "Lagrangian bound {lb}");
    assert_eq!(v["converged"], true);
    // Later iterations send only W, xbar and rho: a few hundred bytes, not models.
    let hist = v["history"].as_array().unwrap();
    assert!(hist[1]["bytes"].as_u64().unwrap() < 1000, "{}", hist[1]);
    assert!(hist[0]["bytes"].as_u64().unwrap() > 1000, "{}", hist[0]);
    // Both workers held scenarios.
    let logs: Vec<String> = mesh.workers.iter().map(|w| w.log_text()).collect();
    assert!(logs.iter().all(|l| l.contains("scenario resident")), "{logs:?}");
}

#[test]
fn a_directory_of_scenarios_with_a_first_stage_pattern() {
    let mut mesh = Mesh::new("phdir");
    mesh.start_worker(&["--slots", "2"]);
    mesh.wait_for_workers(1);
    let dir = mesh.home_path().join("scen");
    std::fs::create_dir_all(&dir).unwrap();
    for k in 0..3 {
        std::fs::copy(examples().join(format!("farmer/scen{k}.lp")), dir.join(format!("scen{k}.lp")))
            .unwrap();
    }
    let out =
        mesh.run(&["ph", dir.to_str().unwrap(), "--first-stage", "DevotedAcreage_*", "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    xbar_ok(&json_of(&out));
    // Without the pattern the error says what to add.
    let out = mesh.run(&["ph", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--first-stage"), "{}", show(&out));
}

#[test]
fn farmer_thirty_scenarios_matches_the_extensive_form() {
    let mut mesh = Mesh::new("ph30");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("f30");
    meshsolve::ph::farmer::write(&dir, 30).unwrap();
    let out = mesh.run(&[
        "ph",
        dir.join("farmer.toml").to_str().unwrap(),
        "--ef",
        "--json",
        "--quiet",
        "--max-iters",
        "150",
    ]);
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let v = json_of(&out);
    let e = v["expected_cost"].as_f64().unwrap();
    assert!(close(e, -131722.2106, 1e-3), "PH expected cost {e}");
    assert!(close(v["ef"]["objective"].as_f64().unwrap(), -131722.2106, 1e-6), "{}", v["ef"]);
}

/// Three workers, PH on the 30-scenario farmer (`extra` flags), returned once
/// the second worker holds at least five resident scenarios.
fn ph_under_way(tag: &str, extra: &[&str]) -> (Mesh, std::process::Child) {
    let mut mesh = Mesh::new(tag);
    for _ in 0..3 {
        mesh.start_worker(&["--slots", "1"]);
    }
    mesh.wait_for_workers(3);
    let dir = mesh.home_path().join("f30");
    meshsolve::ph::farmer::write(&dir, 30).unwrap();
    let spec = dir.join("farmer.toml");
    let mut args = vec!["ph", spec.to_str().unwrap(), "--json", "--max-iters", "150"];
    args.extend_from_slice(extra);
    let child = mesh.spawn(&args);
    let victim = mesh.workers[1].pid();
    let t = Instant::now();
    while children_of(victim).is_empty()
        || mesh.workers[1].log_text().matches("scenario resident").count() < 5
    {
        assert!(t.elapsed() < Duration::from_secs(30), "no resident scenarios on the victim");
        std::thread::sleep(Duration::from_millis(20));
    }
    (mesh, child)
}

#[test]
fn a_worker_killed_mid_run_does_not_change_the_answer() {
    // Kill a worker once the run is under way (its resident scenarios are loaded).
    let (mesh, child) = ph_under_way("phkill", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    mesh.workers[1].signal(nix::sys::signal::Signal::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let v = json_of(&out);
    let e = v["expected_cost"].as_f64().unwrap();
    assert!(close(e, -131722.2106, 1e-3), "PH expected cost {e} after losing a worker");
    let reloaded: u64 =
        v["history"].as_array().unwrap().iter().skip(1).map(|h| h["loaded"].as_u64().unwrap()).sum();
    assert!(reloaded > 0, "the lost worker's scenarios must be loaded elsewhere");
}

/// `--bundle K` solves K scenarios together: the same answer as the extensive
/// form, reached in fewer iterations than without bundles; one bundle holding
/// every scenario is the extensive form itself (no iteration needed).
#[test]
fn bundles_give_the_same_answer_in_fewer_iterations() {
    let mut mesh = Mesh::new("phbundle");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("f30");
    meshsolve::ph::farmer::write(&dir, 30).unwrap();
    let spec = dir.join("farmer.toml");
    let attempt = |extra: &[&str]| {
        let mut args = vec!["ph", spec.to_str().unwrap(), "--json", "--quiet", "--max-iters", "500"];
        args.extend_from_slice(extra);
        mesh.run(&args)
    };
    let run = |extra: &[&str]| {
        let out = attempt(extra);
        assert_eq!(out.status.code(), Some(0), "converges: {}", show(&out));
        json_of(&out)
    };
    let plain = run(&[]);
    let bundled = run(&["--bundle", "5"]);
    // Adaptive rho converges in bundles with the pure-Rust solver, but with HiGHS's
    // quadratic term it can oscillate to the cap (README): the answer must still be right.
    let out = attempt(&["--bundle", "5", "--rho-strategy", "adaptive"]);
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let adaptive = json_of(&out);
    assert_eq!((bundled["scenarios"].as_u64(), bundled["bundles"].as_u64()), (Some(30), Some(6)));
    for (v, tol) in [(&plain, 1e-6), (&bundled, 1e-6), (&adaptive, 1e-5)] {
        let e = v["expected_cost"].as_f64().unwrap();
        assert!(close(e, -131722.2106, tol), "expected cost {e} against the extensive form");
        let lb = v["lagrangian_bound"].as_f64().unwrap();
        assert!(lb <= -131722.2106 + 1e-3 && close(lb, -131722.2106, 1e-4), "Lagrangian bound {lb}");
    }
    let (a, b) = (plain["iterations"].as_u64().unwrap(), bundled["iterations"].as_u64().unwrap());
    assert!(b < a, "bundles of 5 took {b} iterations, single scenarios {a}");
    let whole = run(&["--bundle", "30"]);
    assert_eq!(whole["iterations"].as_u64(), Some(0), "{whole}");
    assert!(close(whole["expected_cost"].as_f64().unwrap(), -131722.2106, 1e-6), "{whole}");
    // The report says what was solved.
    let out = mesh.run(&["ph", spec.to_str().unwrap(), "--quiet", "--bundle", "10"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("30 scenarios in 3 bundles"), "{}", show(&out));

    // --plot draws the run: a valid SVG and a valid PNG; another extension is a usage error.
    let out = mesh.run(&["ph", spec.to_str().unwrap(), "--plot", "run.pdf"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"), "{}", show(&out));
    if let Err(e) = meshsolve::ph::plot::check(std::path::Path::new("x.svg")) {
        prerequisite_missing(&format!("a TrueType font for the plot's labels: {e}"));
        return;
    }
    let svg = mesh.home_path().join("run.svg");
    let png = mesh.home_path().join("run.png");
    for file in [&svg, &png] {
        let out = mesh.run(&[
            "ph",
            spec.to_str().unwrap(),
            "--quiet",
            "--bundle",
            "10",
            "--plot",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"), "not an SVG");
    for label in ["convergence", "bounds", "relative gap", "30 scenarios in 3 bundles"] {
        assert!(text.contains(label), "the SVG says `{label}`");
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1000, 900));
}

/// A stochastic MIP (capacitated facility location, binary first stage): PH's
/// answer is a first stage every scenario can use, whose expected cost is
/// within 1 % of the extensive form's optimum, and its Lagrangian bound is below.
#[test]
fn a_stochastic_mip_is_solved_within_one_percent() {
    let mut mesh = Mesh::new("phmip");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("fac");
    let size = meshsolve::ph::facility::Size { facilities: 6, customers: 12, scenarios: 5, seed: 1 };
    meshsolve::ph::facility::write(&dir, size).unwrap();
    let spec = dir.join("facility.toml");
    let out = mesh.run(&["ph", spec.to_str().unwrap(), "--ef", "--json", "--quiet", "--max-iters", "100"]);
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let v = json_of(&out);
    let ef = v["ef"]["objective"].as_f64().unwrap();
    let upper = v["expected_cost"].as_f64().expect("a first stage every scenario can take");
    let lower = v["lagrangian_bound"].as_f64().unwrap();
    assert!(upper >= ef - 1e-6 && upper <= ef * 1.01, "PH {upper} against the extensive form {ef}");
    assert!(lower <= ef + 1e-6, "Lagrangian bound {lower} above the optimum {ef}");
    for (name, x) in v["xbar"].as_object().unwrap() {
        let x = x.as_f64().unwrap();
        assert!(x == 0.0 || x == 1.0, "{name} = {x}: the first stage is binary");
    }
}

/// A worker that stays connected but whose steps never come back (its solver
/// processes are stopped) is declared stuck after `--step-patience`, and its
/// scenarios move: the run ends with the same answer.
#[test]
fn a_stuck_worker_mid_run_does_not_hold_the_run() {
    let (mesh, child) = ph_under_way("phstuck", &["--step-patience", "2s"]);
    let victim = mesh.workers[1].pid();
    std::thread::sleep(Duration::from_millis(1000));
    // The worker keeps answering QUIC; its solver processes do not.
    let stopped = children_of(victim);
    for pid in &stopped {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGSTOP,
        );
    }
    let out = child.wait_with_output().unwrap();
    for pid in &stopped {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gave no answer to a step"), "the stuck worker is named: {stderr}");
    let v = json_of(&out);
    let e = v["expected_cost"].as_f64().unwrap();
    assert!(close(e, -131722.2106, 1e-3), "PH expected cost {e} after a worker got stuck");
    // Its scenarios moved (the stall may fall in a bound or final sweep, which
    // the iteration history does not always show).
    assert!(stderr.contains("moving it"), "the stuck worker's scenarios must be loaded elsewhere: {stderr}");
}

#[test]
fn nonsense_step_patience_is_refused() {
    let mesh = Mesh::new("phpatience");
    let dir = mesh.home_path().join("f3");
    meshsolve::ph::farmer::write(&dir, 3).unwrap();
    let out = mesh.run(&["ph", dir.join("farmer.toml").to_str().unwrap(), "--step-patience", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--step-patience"), "{}", show(&out));
}

#[test]
fn a_worker_that_joins_mid_run_takes_a_share() {
    let mut mesh = Mesh::new("phjoin");
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(1);
    let dir = mesh.home_path().join("f30");
    meshsolve::ph::farmer::write(&dir, 30).unwrap();
    let child =
        mesh.spawn(&["ph", dir.join("farmer.toml").to_str().unwrap(), "--json", "--max-iters", "120"]);
    let t = Instant::now();
    while mesh.workers[0].log_text().matches("scenario resident").count() < 30 {
        assert!(t.elapsed() < Duration::from_secs(30), "scenarios never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    mesh.start_worker(&["--slots", "1"]);
    let out = child.wait_with_output().unwrap();
    assert!(matches!(out.status.code(), Some(0) | Some(5)), "{}", show(&out));
    let took = mesh.workers[1].log_text().matches("scenario resident").count();
    assert!(took >= 5, "the newcomer should take a share of the 30 scenarios, took {took}");
    let e = json_of(&out)["expected_cost"].as_f64().unwrap();
    assert!(close(e, -131722.2106, 1e-3), "{e}");
}

/// Nonsense settings are refused before anything runs: a command-line mistake
/// exits 2, a spec's nonsense names the file and the value.
#[test]
fn nonsense_settings_are_refused() {
    let mesh = Mesh::new("phbad");
    let spec = examples().join("farmer/farmer.toml");
    for flags in [
        ["--rho", "NaN"],
        ["--rho", "-1"],
        ["--threshold", "-1"],
        ["--threshold", "inf"],
        ["--max-iters", "0"],
    ] {
        let out = mesh.run(&[&["ph", spec.to_str().unwrap()][..], &flags].concat());
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", show(&out));
    }
    let dir = tempfile::tempdir().unwrap();
    let farmer = examples().join("farmer");
    for (what, probs, rho) in [
        ("negative probability", ["-0.5", "1.5", "0"], "1.0"),
        ("NaN probability", ["nan", "0.5", "0.5"], "1.0"),
        ("NaN rho", ["0.25", "0.25", "0.5"], "nan"),
    ] {
        let mut text = format!("name = \"bad\"\nfirst_stage = [\"DevotedAcreage_*\"]\nrho = {rho}\n");
        for (i, p) in probs.iter().enumerate() {
            text.push_str(&format!(
                "[[scenario]]\nfile = \"{}\"\nprobability = {p}\n",
                farmer.join(format!("scen{i}.lp")).display()
            ));
        }
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = mesh.run(&["ph", path.to_str().unwrap(), "--wait", "1s"]);
        assert_ne!(out.status.code(), Some(0), "{what}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"), "{what}: {}", show(&out));
    }
}

/// Adaptive rho reaches the same answer on the farmer.
#[test]
fn adaptive_rho_converges_to_the_same_answer() {
    let mut mesh = Mesh::new("phadapt");
    mesh.start_worker(&["--slots", "2", "--no-python"]);
    mesh.wait_for_workers(1);
    let spec = examples().join("farmer/farmer.toml");
    let out = mesh.run(&["ph", spec.to_str().unwrap(), "--rho-strategy", "adaptive", "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert_eq!(v["converged"], true, "{v}");
    assert!(close(v["expected_cost"].as_f64().unwrap(), -108390.0, 1e-4), "{v}");
    xbar_ok(&v);
}
