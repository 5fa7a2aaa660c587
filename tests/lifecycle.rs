//! Worker lifecycle: mDNS goodbye on exit, grace period, no solver process
//! left behind, time limits, `meshsolve shutdown`.

mod common;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_withdraws_the_advert_and_exits_cleanly() {
    let mut mesh = Mesh::new("bye");
    mesh.start_worker(&["--slots", "1"]);
    mesh.start_worker(&["--slots", "1"]);
    mesh.wait_for_workers(2);
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let st = mesh.workers[0].wait_exit(Duration::from_secs(10)).expect("worker exits on SIGTERM");
    assert!(st.success(), "exit status {st:?}\n{}", mesh.workers[0].log_text());
    // The goodbye packet removes it at once, not after the record's TTL.
    let t = Instant::now();
    loop {
        let out = mesh.run(&["workers", "--json", "--wait", "1s"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.len() == 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "stopped worker still listed: {}", show(&out));
    }
}

#[test]
fn stopping_a_busy_worker_kills_its_solver_and_leaves_nothing_behind() {
    let mut mesh = Mesh::new("grace");
    let addr = mesh.start_worker(&["--slots", "1", "--grace", "1s"]).addr.clone();
    let model = hard_model(mesh.home_path());
    let client = mesh.spawn(&["--worker", &addr, model.to_str().unwrap()]);
    // Wait until the solver child runs.
    let solver_pid = first_child(mesh.workers[0].pid());
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(solver_pid));
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let st = mesh.workers[0].wait_exit(Duration::from_secs(15)).expect("worker exits after its grace period");
    assert!(st.success(), "{st:?}\n{}", mesh.workers[0].log_text());
    let t = Instant::now();
    while alive(solver_pid) {
        assert!(t.elapsed() < Duration::from_secs(3), "solver process {solver_pid} outlived its worker");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = mesh.workers[0].log_text();
    assert!(log.contains("grace period over"), "{log}");
    // The client is told, and exits with an error rather than hanging.
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed"), "{}", show(&out));
}

#[test]
fn a_killed_worker_takes_its_solver_with_it() {
    let mut mesh = Mesh::new("kill");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let model = hard_model(mesh.home_path());
    let mut client = mesh.spawn(&["--worker", &addr, model.to_str().unwrap()]);
    let solver_pid = first_child(mesh.workers[0].pid());
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGKILL);
    mesh.workers[0].wait_exit(Duration::from_secs(5)).expect("killed");
    let t = Instant::now();
    while alive(solver_pid) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "solver process {solver_pid} outlived a SIGKILLed worker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The client notices the lost worker within the QUIC idle timeout, waits a
    // bounded time (10 s) for another worker, then fails.
    let t = Instant::now();
    loop {
        if let Some(st) = client.try_wait().unwrap() {
            assert_eq!(st.code(), Some(1));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "client hangs after its worker died");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn time_limit_stops_a_long_solve() {
    let mut mesh = Mesh::new("limit");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let model = hard_model(mesh.home_path());
    let t = Instant::now();
    let out = mesh.run(&["--json", "--time-limit", "2s", "--worker", &addr, model.to_str().unwrap()]);
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    let v = json_of(&out);
    let status = v["status"].as_str().unwrap();
    assert!(status == "feasible" || status == "time_limit", "{v}");
    assert_eq!(out.status.code(), Some(if status == "feasible" { 0 } else { 5 }));
    // The worker is free again for the next job.
    let ks = examples().join("knapsack.lp");
    let out = mesh.run(&["--json", "--worker", &addr, ks.to_str().unwrap()]);
    assert_eq!(json_of(&out)["objective"].as_f64(), Some(21.0));
}

#[test]
fn shutdown_stops_this_namespace_only() {
    let mut mine = Mesh::new("sd-mine");
    let mut theirs = Mesh::new("sd-theirs");
    mine.start_worker(&["--slots", "1"]);
    mine.start_worker(&["--slots", "1"]);
    theirs.start_worker(&["--slots", "1"]);
    mine.wait_for_workers(2);
    theirs.wait_for_workers(1);
    let out = mine.run(&["shutdown"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("stopping").count(), 2, "{}", show(&out));
    for w in &mut mine.workers {
        assert!(w.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", w.log_text());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        theirs.workers[0].child.try_wait().unwrap().is_none(),
        "the other namespace's worker must keep running"
    );
    assert_eq!(theirs.wait_for_workers(1).len(), 1);
}

#[test]
fn idle_exit() {
    let mut mesh = Mesh::new("idle");
    mesh.start_worker(&["--slots", "1", "--idle-exit", "1s"]);
    let st = mesh.workers[0].wait_exit(Duration::from_secs(10)).expect("worker exits when idle");
    assert!(st.success());
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

#[test]
fn a_client_waiting_on_a_long_solve_does_not_spin() {
    let mut mesh = Mesh::new("spin");
    let addr = mesh.start_worker(&["--slots", "1"]).addr.clone();
    let model = hard_model(mesh.home_path());
    // Workers given by address: no discovery at all, the case that used to spin a core.
    let mut client = mesh.spawn(&["--worker", &addr, "--time-limit", "6s", model.to_str().unwrap()]);
    first_child(mesh.workers[0].pid());
    let before = cpu_seconds(client.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(client.id()) - before;
    let _ = client.kill();
    let _ = client.wait();
    // Waiting is free: a spinning loop would burn close to 3 s here.
    assert!(used < 0.5, "the client used {used:.2} s of CPU in 3 s of waiting");
}

#[test]
fn an_idle_client_connection_does_not_delay_a_worker_exit() {
    let mut mesh = Mesh::new("idleconn");
    let addr = mesh.start_worker(&["--slots", "1", "--grace", "10s"]).addr.clone();
    // A library client that asked for the status and keeps its connection open.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = meshsolve::client::ClientConfig {
        namespace: mesh.ns.clone(),
        home: mesh.home_path().to_path_buf(),
        interfaces: vec!["lo".into()],
        static_workers: vec![addr],
        name_server: None,
        mdns: false,
        via_name_server: false,
    };
    let client = rt.block_on(async {
        let m = meshsolve::client::Mesh::connect(cfg).await.unwrap();
        let ads = m.wait_for_workers(None, Duration::from_secs(5)).await.unwrap();
        m.status(&ads[0]).await.unwrap();
        m
    });
    let t = Instant::now();
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let st = mesh.workers[0].wait_exit(Duration::from_secs(20)).expect("worker exits");
    let took = t.elapsed();
    assert!(st.success(), "{st:?}\n{}", mesh.workers[0].log_text());
    // With no job running, neither the grace period (10 s) nor the idle connection holds it.
    assert!(took < Duration::from_secs(3), "exit took {took:?} with an idle client connection open");
    rt.block_on(client.close());
}

#[test]
fn a_worker_saturated_by_solves_is_not_declared_dead() {
    // The idle timeout is sized for a LAN (1.2 s); keep-alives must still get
    // through while every core of the box runs a solver.
    let mut mesh = Mesh::new("busy");
    mesh.start_worker(&["--slots", "2"]);
    mesh.wait_for_workers(1);
    let dir = mesh.home_path().join("hard");
    std::fs::create_dir_all(&dir).unwrap();
    let model = hard_model(&dir);
    for i in 0..3 {
        std::fs::copy(&model, dir.join(format!("h{i}.lp"))).unwrap();
    }
    std::fs::remove_file(&model).unwrap();
    let out = mesh.run(&["--json", "--time-limit", "5s", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("lost"), "a busy worker was taken for dead:\n{}", show(&out));
    let v = json_of(&out);
    let runs = v.as_array().expect("a list of results");
    assert_eq!(runs.len(), 3, "{}", show(&out));
    for r in runs {
        assert_eq!(r["attempts"], 1, "retried: {r}");
        assert!(matches!(r["status"].as_str(), Some("feasible" | "time_limit" | "optimal")), "{r}");
    }
}

#[test]
fn a_worker_caps_the_time_of_jobs_that_ask_for_none() {
    let mut mesh = Mesh::new("maxtime");
    let addr = mesh.start_worker(&["--slots", "1", "--max-time-limit", "1s"]).addr.clone();
    let model = hard_model(mesh.home_path());
    // No --time-limit: without the worker's cap this runs forever.
    let out = mesh.run(&["--json", "--worker", &addr, model.to_str().unwrap()]);
    let v = json_of(&out);
    assert!(matches!(v["status"].as_str(), Some("feasible" | "time_limit")), "{}", show(&out));
    assert!(v["solve_seconds"].as_f64().unwrap() < 30.0, "{v}");
}

#[test]
fn temp_dirs_are_private_and_a_dead_workers_are_cleaned_up() {
    use std::os::unix::fs::PermissionsExt;
    // A directory left by a worker that was SIGKILLed: its process is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = std::env::temp_dir().join(format!("meshworker-{dead_pid}-65000"));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("partial.lp"), "Minimize\n obj: x\n").unwrap();
    let mut mesh = Mesh::new("tmpdirs");
    let port = mesh.start_worker(&["--slots", "1"]).addr.rsplit(':').next().unwrap().to_string();
    let pid = mesh.workers[0].pid();
    assert!(!stale.exists(), "the dead worker's directory was left behind");
    let own = std::env::temp_dir().join(format!("meshworker-{pid}-{port}"));
    let mode = std::fs::metadata(&own).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "models in transit must be private");
}

#[test]
fn a_worker_whose_log_reader_went_away_still_stops_on_sigterm() {
    // `meshworker 2>&1 | head -1`: the reader of stderr exits after one line.
    let mesh = Mesh::new("closedlog");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshworker"))
        .args(["--namespace", &mesh.ns, "--interface", "lo", "--slots", "1"])
        .env("MESHSOLVE_HOME", mesh.home_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    } // The pipe's read end is closed here.
    std::thread::sleep(Duration::from_millis(200));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success() || st.code().is_some(), "{st:?}");
            break;
        }
        if t.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("meshworker ignored SIGTERM after its log reader went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `meshsolve ps` shows a running job (worker, model, client); `meshsolve kill`
/// cancels it, its client hears so at once, no solver process is left, and
/// `ps --all` shows it finished.
#[test]
fn ps_lists_and_kill_cancels_a_running_job() {
    let mut mesh = Mesh::new("ps");
    let pid = mesh.start_worker(&["--slots", "1", "--no-python", "--solvers", "microlp"]).pid();
    mesh.wait_for_workers(1);
    let hard = hard_model(mesh.home_path());
    let mut job = mesh.spawn(&["--json", hard.to_str().unwrap()]);
    let t = std::time::Instant::now();
    let listed = loop {
        let out = mesh.run(&["ps", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        if v.iter().any(|j| j["phase"] == "running") {
            break v;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "the job never showed as running: {v:?}");
    };
    let j = &listed[0];
    assert_eq!(j["model"], "marketsplit", "{j}");
    // Who sent it: host, process id and address; and which attempt this is.
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let client = j["client"].as_str().unwrap();
    assert!(client.starts_with(&format!("{host} pid {} (127.0.0.1:", job.id())), "{j}");
    assert_eq!(j["attempt"], 1, "{j}");
    let name = j["job"].as_str().unwrap().to_string();
    let out = mesh.run(&["kill", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The client hears of it: the job is not retried into a hang.
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the killed job's client still waits");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_ne!(status.code(), Some(0));
    wait_until(10, "no solver process left", || children_of(pid).is_empty());
    let out = mesh.run(&["ps", "--all", "--json"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.iter().any(|j| j["job"] == name.as_str() && j["phase"] == "failed"), "{v:?}");
    // A job that does not exist, and a malformed name.
    assert_eq!(
        mesh.run(&["kill", &format!("{}:999999", j["worker"].as_str().unwrap())]).status.code(),
        Some(1)
    );
    assert_eq!(mesh.run(&["kill", "nonsense"]).status.code(), Some(2));
}

/// A worker keeps one solver process per slot started and waiting for a job.
/// They die with the worker (SIGTERM or SIGKILL), and a spare that died while
/// waiting is never handed a job: it costs nothing.
#[test]
fn spare_solver_processes_die_with_the_worker_and_a_dead_one_costs_nothing() {
    let mut mesh = Mesh::new("spares");
    let addr = mesh.start_worker(&["--slots", "2", "--solvers", "microlp", "--no-python"]).addr.clone();
    let wpid = mesh.workers[0].pid();
    wait_until(10, "two spare solver processes", || all_children_of(wpid).len() == 2);
    assert!(children_of(wpid).is_empty(), "spares are not counted as solving");
    // Kill both spares: the next jobs still run, on fresh processes, first time.
    for pid in all_children_of(wpid) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    let dir = mesh.home_path().join("ks");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..6 {
        std::fs::copy(examples().join("knapsack.lp"), dir.join(format!("k{i}.lp"))).unwrap();
    }
    let out = mesh.run(&["--worker", &addr, "--json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for r in json_of(&out).as_array().unwrap() {
        assert_eq!((r["status"].as_str(), r["attempts"].as_u64()), (Some("optimal"), Some(1)), "{r}");
    }
    wait_until(10, "spares started again", || all_children_of(wpid).len() == 2);
    // A solver process that dies during a job (after serving others) costs that
    // job one attempt, and nothing else.
    let hard = hard_model(mesh.home_path());
    let client = mesh.spawn(&["--worker", &addr, "--json", "--time-limit", "2s", hard.to_str().unwrap()]);
    let busy = first_child(wpid);
    let _ =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(busy as i32), nix::sys::signal::Signal::SIGKILL);
    let out = client.wait_with_output().unwrap();
    let v = json_of(&out);
    assert_eq!(v["attempts"].as_u64(), Some(2), "one attempt lost to the crash: {}", show(&out));
    let out = mesh.run(&["--worker", &addr, "--json", dir.to_str().unwrap()]);
    for r in json_of(&out).as_array().unwrap() {
        assert_eq!((r["status"].as_str(), r["attempts"].as_u64()), (Some("optimal"), Some(1)), "{r}");
    }
    wait_until(10, "spares started again", || all_children_of(wpid).len() == 2);
    // SIGTERM: the waiting spares go with the worker.
    let spares = all_children_of(wpid);
    mesh.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    mesh.workers[0].wait_exit(Duration::from_secs(10)).expect("worker exits on SIGTERM");
    wait_until(5, "spares gone after SIGTERM", || spares.iter().all(|p| !alive(*p)));
    // SIGKILL: the parent-death signal takes them.
    mesh.start_worker(&["--slots", "2", "--solvers", "microlp", "--no-python"]);
    let wpid = mesh.workers[1].pid();
    wait_until(10, "two spare solver processes", || all_children_of(wpid).len() == 2);
    let spares = all_children_of(wpid);
    mesh.workers[1].signal(nix::sys::signal::Signal::SIGKILL);
    wait_until(5, "spares gone after SIGKILL", || spares.iter().all(|p| !alive(*p)));
}

/// `meshsolve top` in a real pseudo-terminal (tmux): it shows the workers and
/// the job running on them, follows a worker that joins, and leaves on `q`
/// with exit code 0.
#[test]
fn top_shows_workers_and_jobs_live_and_quits_on_q() {
    let Some(tmux) = which("tmux") else {
        prerequisite_missing("tmux, to run `meshsolve top` in a pseudo-terminal");
        return;
    };
    let mut mesh = Mesh::new("top");
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    let first = mesh.wait_for_workers(1)[0]["name"].as_str().unwrap().to_string();
    let hard = hard_model(mesh.home_path());
    let mut solve = mesh.spawn(&["--time-limit", "30s", hard.to_str().unwrap()]);
    let socket = format!("meshsolve-{}", mesh.ns);
    let exit_file = mesh.home_path().join("top.exit");
    let script = format!(
        "env MESHSOLVE_HOME='{}' MESHSOLVE_NAMESPACE='{}' MESHSOLVE_INTERFACE=lo '{}' top --interval 300ms; echo EXIT=$? > '{}'; sleep 60",
        mesh.home_path().display(),
        mesh.ns,
        env!("CARGO_BIN_EXE_meshsolve"),
        exit_file.display()
    );
    let tm = |args: &[&str]| {
        std::process::Command::new(&tmux).arg("-L").arg(&socket).args(args).output().expect("run tmux")
    };
    struct Server(Box<dyn Fn()>);
    impl Drop for Server {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let (t2, s2) = (tmux.clone(), socket.clone());
    let _server = Server(Box::new(move || {
        let _ = std::process::Command::new(&t2).args(["-L", &s2, "kill-server"]).output();
    }));
    let out = tm(&["new-session", "-d", "-s", "top", "-x", "160", "-y", "30", &script]);
    assert!(out.status.success(), "tmux: {}", show(&out));
    let pane = || String::from_utf8_lossy(&tm(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned();
    let mut last = String::new();
    wait_until(20, "top shows the worker and its running job", || {
        last = pane();
        last.contains(&first) && last.contains("running") && last.contains("1/1")
    });
    assert!(last.contains("1 worker(s)"), "{last}");
    // A worker that joins appears.
    mesh.start_worker(&["--slots", "1", "--no-python"]);
    wait_until(20, "top shows the second worker", || {
        last = pane();
        last.contains("2 worker(s)")
    });
    tm(&["send-keys", "-t", "top", "q"]);
    wait_until(10, "top exits on q", || {
        std::fs::read_to_string(&exit_file).is_ok_and(|s| s.contains("EXIT="))
    });
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "EXIT=0");
    // The terminal is given back: the alternate screen is gone.
    assert!(!pane().contains("meshsolve top"), "{}", pane());
    let _ = solve.kill();
    let _ = solve.wait();
    // Without a terminal it says what to use instead.
    let out = mesh.run(&["top"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("meshsolve ps --json"), "{}", show(&out));
}
