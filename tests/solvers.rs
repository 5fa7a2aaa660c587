//! Every solver back-end this machine has, held to the same conformance suite,
//! and workers that offer them: placement by `--solver`, a model over a
//! community edition's size limit, a solver that disappears mid-life.
//!
//! Back-ends come from the machine: `cbc` and `glpsol` on PATH (Debian's
//! `coinor-cbc`, `glpk-utils`), and the Python modules of `MESHSOLVE_TEST_PYTHON`
//! (`tests/solvers-requirements.txt`: gurobipy, cplex, xpress, highspy,
//! pyscipopt and highsbox, whose HiGHS executable serves as the command-line
//! HiGHS). Under CI every one of them must be present.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use meshsolve::model;
use meshsolve::solver::{detect, Available, Backend, DetectConfig, Kind, SolveError, SolveOptions, Status};

fn test_python() -> Option<PathBuf> {
    std::env::var_os("MESHSOLVE_TEST_PYTHON").map(PathBuf::from)
}

/// A wrapper that runs highsbox's HiGHS executable (it needs its library path).
fn highs_executable(py: &Path, dir: &Path) -> Option<PathBuf> {
    let out =
        Command::new(py).args(["-c", "import highsbox; print(highsbox.highs_dist_dir())"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dist = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let wrapper = dir.join("highs");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nLD_LIBRARY_PATH='{dist}/lib' exec '{dist}/bin/highs' \"$@\"\n"),
    )
    .ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(wrapper)
}

/// Every way this machine can run every solver, one entry per (solver, way).
fn every_backend(dir: &Path) -> Vec<Available> {
    let py = test_python();
    let mut paths = Vec::new();
    if let Some(h) = py.as_deref().and_then(|p| highs_executable(p, dir)) {
        paths.push((Kind::Highs, h));
    }
    let d = detect(&DetectConfig { paths, python: py, only: Vec::new() });
    println!("{}", d.report());
    let mut all: Vec<Available> = d.probes.iter().filter_map(|p| p.outcome.clone().ok()).collect();
    all.dedup_by(|a, b| a.kind == b.kind && a.backend == b.backend);
    let wanted: &[(Kind, &str)] = &[
        (Kind::Cbc, "command"),
        (Kind::Glpk, "command"),
        (Kind::Highs, "command"),
        (Kind::Highs, "python"),
        (Kind::Gurobi, "python"),
        (Kind::Cplex, "python"),
        (Kind::Xpress, "python"),
        (Kind::Scip, "python"),
    ];
    for (k, how) in wanted {
        let has = all.iter().any(|a| {
            a.kind == *k
                && matches!(
                    (&a.backend, *how),
                    (Backend::Command(_), "command") | (Backend::Python(_), "python")
                )
        });
        if !has {
            prerequisite_missing(&format!(
                "{k} ({how}) is not on this machine: apt-get install coinor-cbc glpk-utils; \
                 python3 -m venv .venv && .venv/bin/pip install -r tests/solvers-requirements.txt; \
                 MESHSOLVE_TEST_PYTHON=.venv/bin/python cargo test --test solvers. Why: {}",
                d.why_not(*k)
            ));
        }
    }
    all
}

#[derive(serde::Deserialize)]
struct Instance {
    file: String,
    status: String,
    objective: Option<f64>,
    kind: String,
}

/// The public instances and the shipped examples, each solved by every back-end
/// to its listed status and optimum; a size-limited edition gets only the ones
/// within its limits, and refuses a larger one with its own message.
#[test]
fn every_backend_solves_the_conformance_suite() {
    let Some(public) = public_models() else {
        prerequisite_missing("../shared/models/public (the conformance instances)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backends = every_backend(dir.path());
    // Solvers write their side files (HiGHS's Highs.log, ...) in the job's own
    // directory, never in the working directory of the process running them.
    let entries = || -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(".").unwrap().map(|e| e.unwrap().file_name()).collect()
    };
    let cwd_before = entries();
    let manifest: Vec<Instance> =
        serde_json::from_str(&std::fs::read_to_string(public.join("manifest.json")).unwrap()).unwrap();
    let mut cases: Vec<(PathBuf, Instance)> =
        manifest.into_iter().map(|i| (public.join(&i.file), i)).collect();
    cases.push((
        examples().join("knapsack.lp"),
        Instance {
            file: "knapsack.lp".into(),
            status: "optimal".into(),
            objective: Some(21.0),
            kind: "mip".into(),
        },
    ));
    cases.push((
        examples().join("farmer/farmer.lp"),
        Instance {
            file: "farmer.lp".into(),
            status: "optimal".into(),
            objective: Some(-108390.0),
            kind: "lp".into(),
        },
    ));
    // Unbounded, and both primal and dual infeasible (presolvers say "infeasible or
    // unbounded", and some simplex codes "unbounded" without a feasible point).
    for (name, text, status) in [
        ("unbounded.lp", "Minimize\n obj: - x - y\nSubject To\n c1: x - y >= 1\nEnd\n", "unbounded"),
        (
            "both-infeasible.lp",
            "Minimize\n obj: - x - y\nSubject To\n c1: x - y >= 1\n c2: - x + y >= 1\nEnd\n",
            "infeasible",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        cases.push((
            path,
            Instance { file: name.into(), status: status.into(), objective: None, kind: "lp".into() },
        ));
    }
    // Larger than every community edition allows (Gurobi 2000 columns, CPLEX 1000,
    // Xpress 5000 rows and columns together).
    let big = dir.path().join("over-limit.lp");
    let n = 2600;
    let mut text = String::from("Minimize\n obj:");
    for j in 0..n {
        text.push_str(&format!(" + x{j}"));
    }
    text.push_str("\nSubject To\n");
    for j in 0..n {
        text.push_str(&format!(" r{j}: x{j} + x{} >= 1\n", (j + 1) % n));
    }
    text.push_str("End\n");
    std::fs::write(&big, text).unwrap();
    cases.push((
        big,
        Instance {
            file: "over-limit.lp".into(),
            status: "optimal".into(),
            objective: Some(1300.0),
            kind: "lp".into(),
        },
    ));
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        // The built-in solvers have their own tests (microlp would need minutes on two of these MIPs).
        for a in backends.iter().filter(|a| a.backend != Backend::Builtin) {
            let (cases, failures) = (&cases, &failures);
            s.spawn(move || {
                let solver = a.solver();
                let mut refused_over_limit = false;
                for (path, want) in cases {
                    let m = model::read_file(path, None).unwrap();
                    let opts = SolveOptions { time_limit: Some(120.0), ..Default::default() };
                    let fits = !a.size_limited || a.kind.fits_community_edition(m.cols.len(), m.rows.len());
                    let got = solver.solve(&m, &opts);
                    let who = format!("{} ({}) on {}", a.label(), a.backend, want.file);
                    if !fits {
                        match got {
                            Err(SolveError::SizeLimit { message, .. }) => {
                                refused_over_limit |= !message.is_empty()
                            }
                            other => failures
                                .lock()
                                .unwrap()
                                .push(format!("{who}: over the size limit, got {other:?}")),
                        }
                        continue;
                    }
                    let sol = match got {
                        Ok(s) => s,
                        Err(e) => {
                            failures.lock().unwrap().push(format!("{who}: {e}"));
                            continue;
                        }
                    };
                    let status_ok = sol.status.as_str() == want.status;
                    // MIPs: every solver stops at its default relative gap (1e-4).
                    let tol = if want.kind == "mip" { 1e-4 } else { 1e-6 };
                    let obj_ok = match (want.objective, sol.objective) {
                        (Some(w), Some(g)) => close(g, w, tol),
                        (None, _) => true,
                        _ => false,
                    };
                    if !status_ok || !obj_ok {
                        failures.lock().unwrap().push(format!(
                            "{who}: {} {:?}, expected {} {:?}",
                            sol.status, sol.objective, want.status, want.objective
                        ));
                    }
                    if status_ok && sol.status == Status::Optimal {
                        // The values are a solution of the model itself, at the objective reported.
                        let x: Vec<f64> = m
                            .cols
                            .iter()
                            .map(|c| sol.values.iter().find(|v| v.0 == c.name).map_or(f64::NAN, |v| v.1))
                            .collect();
                        let f = m.objective_of(&x);
                        if !close(f, sol.objective.unwrap(), 1e-5) {
                            failures.lock().unwrap().push(format!(
                                "{who}: values give objective {f}, reported {:?}",
                                sol.objective
                            ));
                        }
                    }
                }
                if a.size_limited && !refused_over_limit {
                    failures.lock().unwrap().push(format!(
                        "{}: no instance over its size limit was refused with the solver's message",
                        a.label()
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
    let left: Vec<_> = entries().difference(&cwd_before).cloned().collect();
    assert!(left.is_empty(), "solvers left files in the working directory: {left:?}");
}

/// Row duals agree with the built-in solver's, in a minimisation and in a
/// maximisation, from every back-end that gives them.
#[test]
fn duals_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let backends = every_backend(dir.path());
    let lp = dir.path().join("max.lp");
    std::fs::write(
        &lp,
        // Wyndor Glass (a unique primal and dual optimum: duals 0, 1.5, 1), plus an
        // equality row and an inactive >= row.
        "Maximize\n obj: 3 x + 5 y + 0 s\nSubject To\n a: x <= 4\n b: 2 y <= 12\n c: 3 x + 2 y <= 18\n d: x + y >= 1\n e: s - x = 0\nEnd\n",
    )
    .unwrap();
    // Its dual, as a minimisation (duals 2 and 6), with a free column in an equality row.
    let min = dir.path().join("min.lp");
    std::fs::write(
        &min,
        "Minimize\n obj: 4 a + 12 b + 18 c\nSubject To\n r1: a + 3 c >= 3\n r2: 2 b + 2 c >= 5\n r3: a + b + c - t = 0\nBounds\n t free\nEnd\n",
    )
    .unwrap();
    let models = [model::read_file(&lp, None).unwrap(), model::read_file(&min, None).unwrap()];
    let opts = SolveOptions { duals: true, ..Default::default() };
    let reference = meshsolve::solver::by_name("microlp").unwrap();
    let mut checked = 0;
    for m in &models {
        let want = reference.solve(m, &opts).unwrap().duals.expect("microlp gives duals");
        for a in &backends {
            let sol = a.solver().solve(m, &opts).unwrap_or_else(|e| panic!("{}: {e}", a.label()));
            let Some(got) = sol.duals else { continue };
            assert_eq!(got.len(), want.len(), "{}", a.label());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{} row {i} of {}: dual {g}, expected {w}",
                    a.label(),
                    m.name
                );
            }
            checked += 1;
        }
    }
    if checked == 0 {
        prerequisite_missing("no external back-end that gives duals");
    }
}

/// A worker offers what `--solvers` keeps, `--solver` sends a job only where that
/// solver is, and `--list-solvers` says what was found and how.
#[test]
fn solver_placement_and_listing() {
    let mut mesh = Mesh::new("solvers");
    let out = Command::new(WORKER).args(["--list-solvers", "--no-python"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("✓ microlp") && text.contains("looked for"), "{text}");
    if common::which("cbc").is_none() || common::which("glpsol").is_none() {
        prerequisite_missing("cbc and glpsol on PATH (apt-get install coinor-cbc glpk-utils)");
        return;
    }
    mesh.start_worker(&["--slots", "1", "--solvers", "cbc,microlp", "--no-python", "--name", "w-cbc"]);
    mesh.start_worker(&["--slots", "1", "--solvers", "glpk", "--no-python", "--name", "w-glpk"]);
    let listed = mesh.wait_for_workers(2);
    let solvers_of = |name: &str| -> Vec<String> {
        let w = listed.iter().find(|w| w["name"] == name).unwrap_or_else(|| panic!("{name} in {listed:?}"));
        w["solvers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(solvers_of("w-cbc"), ["cbc", "microlp"]);
    assert_eq!(solvers_of("w-glpk"), ["glpk"]);
    let knapsack = examples().join("knapsack.lp");
    for (solver, worker) in [("glpk", "w-glpk"), ("cbc", "w-cbc"), ("microlp", "w-cbc")] {
        let out = mesh.run(&["--solver", solver, "--json", knapsack.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let v = json_of(&out);
        assert_eq!(v["worker"], worker, "{v}");
        assert!(v["solver"].as_str().unwrap().starts_with(solver), "{v}");
        assert!(close(v["objective"].as_f64().unwrap(), 21.0, 1e-9), "{v}");
    }
    // --log streams the solver's own log; without it, the solver keeps quiet.
    let out = mesh.run(&["--solver", "cbc", "--log", knapsack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Welcome to the CBC MILP Solver"),
        "{}",
        show(&out)
    );
    let out = mesh.run(&["--solver", "glpk", "--log", knapsack.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("GLPK Integer Optimizer"), "{}", show(&out));
    let out = mesh.run(&["--solver", "cbc", knapsack.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("CBC MILP"), "{}", show(&out));
    // A job may tune a solver, never make it write files on the worker or take more
    // threads than the worker's cores per slot; it fails at once, not retried.
    let stolen = mesh.home_path().join("stolen.sol");
    for opt in [format!("solution={}", stolen.display()), "solu=x".into(), "threads=64".into()] {
        let out = mesh.run(&["--solver", "cbc", "--option", &opt, "--json", knapsack.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{opt}: {}", show(&out));
        assert!(json_of(&out)["error"].as_str().unwrap().contains("rejected"), "{opt}: {}", show(&out));
    }
    assert!(!stolen.exists());
    let out = mesh.run(&["--solver", "cbc", "--option", "cuts=off", knapsack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "tuning passes: {}", show(&out));
    // Nobody has it: a clear error, at once.
    let out = mesh.run(&["--solver", "scip", "--wait", "1s", knapsack.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scip"), "{}", show(&out));
    // A typo in --solvers is a command-line mistake.
    let out = Command::new(WORKER).args(["--solvers", "cbcc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A model over the community edition's limit fails once, with the solver's own
/// message, and is not retried elsewhere.
#[test]
fn over_the_size_limit_fails_once_with_the_solvers_message() {
    let (Some(py), Some(public)) = (test_python(), public_models()) else {
        prerequisite_missing("MESHSOLVE_TEST_PYTHON with the solver modules, and ../shared/models/public");
        return;
    };
    let mut mesh = Mesh::new("sizelimit");
    let py = py.to_string_lossy().to_string();
    mesh.start_worker(&["--slots", "1", "--solvers", "cplex,microlp", "--python", &py]);
    mesh.start_worker(&["--slots", "1", "--solvers", "cplex,microlp", "--python", &py]);
    let listed = mesh.wait_for_workers(2);
    if !listed.iter().all(|w| w["solvers"].as_array().unwrap().iter().any(|s| s["name"] == "cplex")) {
        prerequisite_missing("the cplex module in MESHSOLVE_TEST_PYTHON");
        return;
    }
    let big = public.join("scrs8.mps.gz");
    let out = mesh.run(&["--solver", "cplex", "--json", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v = json_of(&out);
    assert!(v["error"].as_str().unwrap().contains("1016"), "the solver's own message: {v}");
    let runs: usize = mesh.workers.iter().map(|w| w.log_text().matches("solving").count()).sum();
    assert_eq!(runs, 1, "one run, no retry elsewhere");
    // Within the limit, the same edition solves.
    let small = public.join("afiro.mps");
    let out = mesh.run(&["--solver", "cplex", "--json", small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(close(json_of(&out)["objective"].as_f64().unwrap(), -464.753142857, 1e-6));
    // Without --solver, a size-limited edition is not the default.
    let out = mesh.run(&["--json", small.to_str().unwrap()]);
    assert!(json_of(&out)["solver"].as_str().unwrap().starts_with("microlp"), "{}", show(&out));
}

/// A solver whose executable disappears: the job fails with a message that says
/// so, and the worker stops advertising that solver.
#[test]
fn a_solver_that_disappears_is_withdrawn() {
    let Some(cbc) = common::which("cbc") else {
        prerequisite_missing("cbc on PATH (apt-get install coinor-cbc)");
        return;
    };
    let mut mesh = Mesh::new("vanish");
    let copy = mesh.home_path().join("cbc-copy");
    std::fs::copy(&cbc, &copy).unwrap();
    let spec = format!("cbc={}", copy.display());
    mesh.start_worker(&["--slots", "1", "--solvers", "cbc,microlp", "--no-python", "--solver-path", &spec]);
    let listed = mesh.wait_for_workers(1);
    assert_eq!(listed[0]["solvers"][0]["name"], "cbc", "{listed:?}");
    std::fs::remove_file(&copy).unwrap();
    let knapsack = examples().join("knapsack.lp");
    let out = mesh.run(&["--solver", "cbc", "--json", knapsack.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(show(&out).contains("no longer installed"), "{}", show(&out));
    wait_until(10, "the advert drops cbc", || {
        let out = mesh.run(&["workers", "--json", "--wait", "1s"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.len() == 1 && v[0]["solvers"].as_array().unwrap().iter().all(|s| s["name"] != "cbc")
    });
    // The worker still serves what it has.
    let out = mesh.run(&["--json", knapsack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// An option a back-end does not know fails the solve as the model's fault
/// (not retried), naming the option; `threads` is understood by every one.
#[test]
fn unknown_options_are_refused_and_threads_understood() {
    let dir = tempfile::tempdir().unwrap();
    let m = model::read_file(&examples().join("knapsack.lp"), None).unwrap();
    for a in every_backend(dir.path()).iter().filter(|a| a.backend != Backend::Builtin) {
        let bad = SolveOptions { extra: vec![("no_such_option".into(), "1".into())], ..Default::default() };
        match a.solver().solve(&m, &bad) {
            Err(SolveError::BadOption(msg)) => {
                assert!(msg.contains("no_such_option"), "{}: {msg}", a.label())
            }
            other => panic!("{}: expected the option refused, got {other:?}", a.label()),
        }
        let two = SolveOptions { extra: vec![("threads".into(), "2".into())], ..Default::default() };
        let sol = a.solver().solve(&m, &two).unwrap_or_else(|e| panic!("{}: {e}", a.label()));
        assert!(close(sol.objective.unwrap(), 21.0, 1e-9), "{}: {:?}", a.label(), sol.objective);
    }
}

/// `--race`: every solver starts at once, the first definitive answer wins, the
/// losers are cancelled and leave no process behind.
#[test]
fn racing_takes_the_first_answer_and_cancels_the_rest() {
    let (Some(public), Some(_), Some(_)) = (public_models(), common::which("cbc"), common::which("glpsol"))
    else {
        prerequisite_missing("cbc, glpsol and ../shared/models/public");
        return;
    };
    let mut mesh = Mesh::new("race");
    mesh.start_worker(&["--slots", "2", "--solvers", "cbc,glpk", "--no-python"]);
    mesh.start_worker(&["--slots", "1", "--solvers", "microlp", "--no-python"]);
    mesh.wait_for_workers(2);
    // CBC proves p0548 optimal in a fraction of a second; GLPK needs about 15 s and microlp minutes.
    let model = public.join("p0548.mps");
    let out = mesh.run(&["--race", "glpk,microlp,cbc", "--json", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert!(close(v["objective"].as_f64().unwrap(), 8691.0, 1e-6), "{v}");
    assert!(v["solver"].as_str().unwrap().starts_with("cbc"), "{v}");
    let race = v["race"].as_array().unwrap();
    assert_eq!(race.len(), 3);
    for r in race {
        let (won, status) = (r["won"].as_bool().unwrap(), r["status"].as_str().unwrap());
        assert_eq!(won, r["solver"] == "cbc", "{r}");
        assert!(won || status == "cancelled", "a loser is cancelled: {r}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("cbc won"), "{}", show(&out));
    // The losers' solver processes are gone.
    for w in &mesh.workers {
        wait_until(10, "no solver process left", || children_of(w.pid()).is_empty());
    }
    // A race needs two solvers; one is a command-line mistake.
    let out = mesh.run(&["--race", "cbc", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// Seconds since midnight of a worker log line's timestamp (`2026-11-27T11:23:33.811032Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut f = t.split(':');
    let (h, m, s): (f64, f64, f64) =
        (f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Solve intervals (start, end) from a worker's log.
fn solve_intervals(log: &str) -> Vec<(f64, f64)> {
    let mut open: std::collections::HashMap<String, f64> = Default::default();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(job) = line.split("job{").nth(1).and_then(|r| r.split('}').next()) else { continue };
        let Some(t) = log_time(line) else { continue };
        if line.contains(": solving ") {
            open.insert(job.to_string(), t);
        } else if line.contains(": solved ") {
            if let Some(s) = open.remove(job) {
                out.push((s, t));
            }
        }
    }
    out
}

/// A licence pool of one seat shared by two workers: never two solves at once
/// (seen from the workers' own logs), the jobs wait their turn and the client
/// is told why.
#[test]
fn a_licence_pool_of_one_seat_is_never_exceeded() {
    if common::which("cbc").is_none() {
        prerequisite_missing("cbc on PATH (apt-get install coinor-cbc)");
        return;
    }
    let mut mesh = Mesh::new("pool");
    let pool = ["--licence-pool", "cbc=lic.test:27000/1"];
    mesh.start_worker(
        &[&["--slots", "2", "--solvers", "cbc", "--no-python", "--name", "pool-a"][..], &pool].concat(),
    );
    mesh.start_worker(
        &[&["--slots", "2", "--solvers", "cbc", "--no-python", "--name", "pool-b"][..], &pool].concat(),
    );
    let listed = mesh.wait_for_workers(2);
    assert!(listed.iter().all(|w| w["solvers"][0]["name"] == "cbc"), "{listed:?}");
    let dir = mesh.home_path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    // Market split stops at its time limit: each solve holds the seat for 1 s.
    for i in 0..4 {
        std::fs::copy(examples().join("marketsplit.lp"), dir.join(format!("ms{i}.lp"))).unwrap();
    }
    let out = mesh.run(&["--time-limit", "1s", "--json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    let workers: std::collections::HashSet<&str> =
        v.as_array().unwrap().iter().map(|r| r["worker"].as_str().unwrap()).collect();
    assert_eq!(workers.len(), 2, "both workers took jobs: {v}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for cbc licence (1/1 in use)"),
        "{}",
        show(&out)
    );
    let mut all: Vec<(f64, f64)> = mesh.workers.iter().flat_map(|w| solve_intervals(&w.log_text())).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in all.windows(2) {
        assert!(w[1].0 >= w[0].1, "two solves overlapped on a pool of one seat: {all:?}");
    }
}

/// No licence free (a Gurobi token server that does not answer): the job is not
/// burned through its attempts; it waits, the client is told why, and Ctrl-C
/// ends the wait with no process left behind.
#[test]
fn no_free_licence_waits_and_says_so() {
    let Some(py) = test_python() else {
        prerequisite_missing("MESHSOLVE_TEST_PYTHON with gurobipy");
        return;
    };
    let mut mesh = Mesh::new("nolicence");
    // A licence file naming a token server on a loopback port where nothing listens.
    let lic = mesh.home_path().join("gurobi.lic");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&lic, format!("TOKENSERVER=127.0.0.1\nPORT={port}\n")).unwrap();
    mesh.start_worker_env(
        &["--slots", "1", "--solvers", "gurobi", "--python", py.to_str().unwrap()],
        &[("GRB_LICENSE_FILE", &lic)],
    );
    let listed = mesh.wait_for_workers(1);
    if listed[0]["solvers"].as_array().unwrap().is_empty() {
        prerequisite_missing("gurobipy in MESHSOLVE_TEST_PYTHON");
        return;
    }
    let knapsack = examples().join("knapsack.lp");
    let mut child = mesh
        .cmd()
        .args(["--solver", "gurobi", knapsack.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let t = std::time::Instant::now();
    let waiting = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(l) if l.contains("waiting for gurobi licence") => break l,
            Ok(l) => seen.push(l),
            Err(_) => assert!(t.elapsed().as_secs() < 30, "no waiting note: {seen:?}"),
        }
    };
    assert!(waiting.contains("token server"), "the solver's own reason: {waiting}");
    assert!(child.try_wait().unwrap().is_none(), "still waiting, not failed");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    let w = &mesh.workers[0];
    wait_until(10, "no solver process left", || children_of(w.pid()).is_empty());
}

/// The keeper of a pool dies mid-batch: the other worker takes the count over
/// and every job still finishes (those of the dead worker elsewhere).
#[test]
fn a_pool_outlives_its_keeper() {
    if common::which("cbc").is_none() {
        prerequisite_missing("cbc on PATH (apt-get install coinor-cbc)");
        return;
    }
    let mut mesh = Mesh::new("poolkeeper");
    let pool = ["--licence-pool", "cbc=lic.test:27000/1"];
    // The first worker is the older one: the keeper.
    mesh.start_worker(
        &[&["--slots", "1", "--solvers", "cbc", "--no-python", "--name", "keeper"][..], &pool].concat(),
    );
    mesh.start_worker(
        &[&["--slots", "1", "--solvers", "cbc", "--no-python", "--name", "other"][..], &pool].concat(),
    );
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..4 {
        std::fs::copy(examples().join("marketsplit.lp"), dir.join(format!("ms{i}.lp"))).unwrap();
    }
    let child = mesh.spawn(&["--time-limit", "1s", "--json", dir.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = json_of(&out);
    assert_eq!(v.as_array().unwrap().len(), 4);
    let log = mesh.workers[1].log_text();
    assert!(log.contains("keeper gone") || log.contains("keeper unreachable"), "{log}");
    // After the keeper died, the survivor's solves never overlap.
    let mut mine = solve_intervals(&log);
    mine.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in mine.windows(2) {
        assert!(w[1].0 >= w[0].1, "{mine:?}");
    }
}
