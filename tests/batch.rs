//! Many models at once: spread over workers, each solved exactly once, retried
//! when a worker dies, cancelled by Ctrl-C, resumable.

mod common;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// `n` small, different models: knapsacks (MIP) and transport-like LPs.
fn small_models(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let p = dir.join(format!("m{i:04}.lp"));
            let cap = 10 + (i % 17);
            let text = if i % 2 == 0 {
                format!(
                    "Maximize\n v: {} a + {} b + 6 c + 4 d + 3 e\nSubject To\n w: 5 a + 7 b + 4 c + 3 d + 2 e <= {cap}\nBinary\n a b c d e\nEnd\n",
                    8 + i % 5,
                    11 + i % 3
                )
            } else {
                format!(
                    "Minimize\n cost: 2 x1 + 3 x2 + 4 x3 + {} x4\nSubject To\n d1: x1 + x2 >= {}\n d2: x3 + x4 >= {}\n s1: x1 + x3 <= 40\n s2: x2 + x4 <= 40\nEnd\n",
                    1 + i % 7,
                    i % 23,
                    5 + i % 11
                )
            };
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

/// Counts "solved" lines per model name in worker logs.
fn solved_counts(mesh: &Mesh) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for w in &mesh.workers {
        for line in w.log_text().lines().filter(|l| l.contains(": solved")) {
            if let Some(rest) = line.split("model=").nth(1) {
                let name: String =
                    rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
                *c.entry(name).or_default() += 1;
            }
        }
    }
    c
}

#[test]
fn two_hundred_models_over_three_workers_each_solved_once() {
    let mut mesh = Mesh::new("batch200");
    for _ in 0..3 {
        mesh.start_worker(&["--slots", "2"]);
    }
    mesh.wait_for_workers(3);
    let dir = mesh.home_path().join("models");
    let models = small_models(&dir, 200);
    let out = mesh.run(&["--json", "--quiet", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let mesh_results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mesh_results.len(), 200);

    // The same files solved one by one in this process.
    let args: Vec<&str> = models.iter().map(|p| p.to_str().unwrap()).collect();
    let local = mesh.cmd().args(["--local", "--json"]).args(&args).output().unwrap();
    let local: Vec<serde_json::Value> = serde_json::from_slice(&local.stdout).unwrap();
    for (m, l) in mesh_results.iter().zip(&local) {
        assert_eq!(m["model"], l["model"]);
        assert_eq!(m["status"], l["status"], "{m}");
        assert!(
            close(m["objective"].as_f64().unwrap(), l["objective"].as_f64().unwrap(), 1e-9),
            "{m} vs {l}"
        );
        assert_eq!(m["attempts"], 1);
    }
    // Every model was solved exactly once, and every worker took a share.
    let counts = solved_counts(&mesh);
    assert_eq!(counts.len(), 200, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for r in &mesh_results {
        *per_worker.entry(r["worker"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_worker.len(), 3, "{per_worker:?}");
}

/// `n` copies of a model that always takes its whole time limit.
fn slow_models(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let hard = hard_model(dir);
    let text = std::fs::read_to_string(&hard).unwrap();
    std::fs::remove_file(&hard).unwrap();
    (0..n)
        .map(|i| {
            let p = dir.join(format!("slow{i:03}.lp"));
            std::fs::write(&p, &text).unwrap();
            p
        })
        .collect()
}

#[test]
fn a_worker_killed_mid_batch_loses_no_job() {
    let mut mesh = Mesh::new("kill9");
    for _ in 0..3 {
        mesh.start_worker(&["--slots", "1"]);
    }
    mesh.wait_for_workers(3);
    let dir = mesh.home_path().join("slow");
    slow_models(&dir, 15);
    let outdir = mesh.home_path().join("out");
    let client =
        mesh.spawn(&["--time-limit", "700ms", "--out", outdir.to_str().unwrap(), dir.to_str().unwrap()]);
    // Kill one worker while it is solving.
    let victim = mesh.workers[1].pid();
    wait_until(20, "victim never got a job", || !children_of(victim).is_empty());
    std::thread::sleep(Duration::from_millis(1200));
    mesh.workers[1].signal(nix::sys::signal::Signal::SIGKILL);
    let out = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(0), "{}", show(&out));
    assert!(err.contains("lost"), "progress should report the lost worker: {err}");
    let summary: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(outdir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.len(), 15);
    assert!(summary.iter().all(|r| r["status"] == "feasible" || r["status"] == "time_limit"), "{summary:?}");
    let retried: Vec<&serde_json::Value> =
        summary.iter().filter(|r| r["attempts"].as_u64() > Some(1)).collect();
    assert!(!retried.is_empty(), "the killed worker's job must show a retry: {summary:?}");
    let csv = std::fs::read_to_string(outdir.join("summary.csv")).unwrap();
    assert!(csv.lines().count() == 16 && csv.starts_with("model,status"), "{csv}");
}

#[test]
fn ctrl_c_cancels_remote_solves_and_workers_keep_serving() {
    let mut mesh = Mesh::new("sigint");
    mesh.start_worker(&["--slots", "2"]);
    mesh.start_worker(&["--slots", "2"]);
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("forever");
    slow_models(&dir, 6);
    let client = mesh.spawn(&[dir.to_str().unwrap()]);
    let pids: Vec<u32> = mesh.workers.iter().map(|w| w.pid()).collect();
    let t = Instant::now();
    while pids.iter().map(|p| children_of(*p).len()).sum::<usize>() < 4 {
        assert!(t.elapsed() < Duration::from_secs(20), "solvers did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let t = Instant::now();
    while pids.iter().map(|p| children_of(*p).len()).sum::<usize>() > 0 {
        assert!(t.elapsed() < Duration::from_secs(3), "solver processes still running 3 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Four ran and were cancelled (failed); two never started, and the summary says so.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("6 model(s): 0 solved, 4 failed, 2 not started"), "{}", show(&out));
    let out = mesh.run(&["--json", examples().join("knapsack.lp").to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0), "{}", show(&out));
}

#[test]
fn an_interrupted_batch_resumes_with_only_the_missing_models() {
    let mut mesh = Mesh::new("resume");
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(1);
    let dir = mesh.home_path().join("slow");
    slow_models(&dir, 8);
    let outdir = mesh.home_path().join("out");
    let args = ["--time-limit", "500ms", "--out", outdir.to_str().unwrap(), dir.to_str().unwrap()];
    let mut client = mesh.cmd().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    let done = || {
        std::fs::read_dir(&outdir)
            .map(|d| {
                d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("slow")))
                    .count()
            })
            .unwrap_or(0)
    };
    while done() < 2 {
        assert!(t.elapsed() < Duration::from_secs(30), "no results landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(client.wait().unwrap().code(), Some(130));
    let first = done();
    assert!((2..8).contains(&first), "{first}");
    let before: usize = solved_counts(&mesh).values().sum();
    let out = mesh.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{first} of 8 model(s) already solved")),
        "{}",
        show(&out)
    );
    let after: usize = solved_counts(&mesh).values().sum();
    assert_eq!(after - before, 8 - first, "only the missing models are solved again");
    let summary: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(outdir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.len(), 8);
}

#[test]
fn a_model_that_crashes_every_worker_fails_without_stalling_the_batch() {
    let mut mesh = Mesh::new("crash");
    mesh.start_worker(&["--slots", "1", "--solver-memory", "64"]);
    mesh.start_worker(&["--slots", "1", "--solver-memory", "64"]);
    mesh.wait_for_workers(2);
    let dir = mesh.home_path().join("mixed");
    let mut models = small_models(&dir, 6);
    let big = dir.join("huge.lp");
    let n = 300_000;
    let mut text = String::from("min\n obj: ");
    text.push_str(&(0..n).map(|i| format!("x{i}")).collect::<Vec<_>>().join(" + "));
    text.push_str("\nst\n c0: ");
    text.push_str(&(0..n).map(|i| format!("x{i}")).collect::<Vec<_>>().join(" + "));
    text.push_str(" >= 1\nend\n");
    std::fs::write(&big, text).unwrap();
    models.push(big);
    let out = mesh.run(&["--json", "--quiet", "--attempts", "3", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 7);
    let huge = v.iter().find(|r| r["model"].as_str().unwrap().ends_with("huge.lp")).unwrap();
    assert_eq!(huge["status"], "failed");
    let e = huge["error"].as_str().unwrap();
    assert!(e.contains("3 attempts") && e.contains("solver process died"), "{e}");
    assert!(v.iter().filter(|r| r["status"] != "failed").count() == 6);
}

#[test]
fn a_new_worker_takes_jobs_and_a_stopped_one_drains() {
    let mut mesh = Mesh::new("elastic");
    mesh.start_worker(&["--slots", "1", "--grace", "20s"]);
    mesh.wait_for_workers(1);
    let dir = mesh.home_path().join("slow");
    slow_models(&dir, 12);
    let client = mesh.spawn(&["--json", "--time-limit", "500ms", dir.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1000));
    let newcomer = mesh.start_worker(&["--slots", "1"]).addr.clone();
    std::thread::sleep(Duration::from_millis(1500));
    // Stop the first worker gracefully while it is solving: it finishes its job and takes no more.
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 12);
    assert!(v.iter().any(|r| r["address"].as_str() == Some(newcomer.as_str())), "the new worker took no job");
    assert!(mesh.workers[0].wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let log = mesh.workers[0].log_text();
    let stop_at = log.find("shutting down").expect("worker logged its shutdown");
    assert!(!log[stop_at..].contains("solving"), "a draining worker started a new solve:\n{log}");
}

#[test]
fn results_resume_by_canonical_path_and_content() {
    let mut mesh = Mesh::new("resumekey");
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(1);
    let models = mesh.home_path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(examples().join("knapsack.lp"), models.join("ks.lp")).unwrap();
    std::fs::copy(examples().join("farmer/farmer.lp"), models.join("farmer.lp")).unwrap();
    let out_dir = mesh.home_path().join("res");
    let first = mesh.run(&["--quiet", "--out", out_dir.to_str().unwrap(), models.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    // The same directory typed another way: nothing is solved again.
    let other = format!("{}/./models/", mesh.home_path().display());
    let again = mesh.run(&["--quiet", "--out", out_dir.to_str().unwrap(), &other]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("2 of 2 model(s) already solved"),
        "{}",
        show(&again)
    );
    // An edited model is solved again; the other is not.
    let edited = std::fs::read_to_string(models.join("ks.lp")).unwrap().replace("<= 14", "<= 9");
    std::fs::write(models.join("ks.lp"), edited).unwrap();
    let third = mesh.run(&["--quiet", "--out", out_dir.to_str().unwrap(), models.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("1 of 2 model(s) already solved"),
        "{}",
        show(&third)
    );
    // Objectives read back exactly as they were written.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap()).unwrap();
    let farmer = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"].as_str().unwrap().ends_with("farmer.lp"))
        .unwrap();
    assert_eq!(farmer["objective"].as_f64(), Some(-108390.0));
}

#[test]
fn check_reads_models_without_solving() {
    let mesh = Mesh::new("check");
    let good = examples().join("knapsack.lp");
    let out = mesh.run(&["check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok: maximise, 1 rows, 4 columns (4 integer, 4 of them binary), 4 nonzeros"),
        "{text}"
    );
    let bad = mesh.home_path().join("bad.lp");
    std::fs::write(&bad, "Minimize\n obj: x +\nEnd\n").unwrap();
    let out = mesh.run(&["check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bad.lp:") && text.contains("2 model(s) read, 1 with errors"), "{text}");
    let out = mesh.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
