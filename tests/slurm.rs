//! The HPC path for real: a one-machine Slurm cluster (munged, slurmctld and
//! slurmd started by the test, on loopback, with its own configuration and
//! ports), `deploy/slurm-meshsolve.sbatch` submitted with `sbatch`, the models
//! solved to their optima by the name server and worker it starts, and nothing
//! of the job left running afterwards. Also: the systemd units pass
//! `systemd-analyze verify`.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Daemons started by the test, killed when it ends.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tools() -> Option<Vec<PathBuf>> {
    ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol"]
        .iter()
        .map(|t| which(t))
        .collect()
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn conf(dir: &Path, host: &str) -> String {
    let d = dir.display();
    format!(
        "ClusterName=meshsolvetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={}
SlurmdPort={}
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
",
        free_tcp_port(),
        free_tcp_port(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

/// Command lines of live processes that mention `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

#[test]
fn the_slurm_script_solves_a_batch_and_leaves_nothing_running() {
    if !nix::unistd::geteuid().is_root() {
        prerequisite_missing("root, to start a one-machine Slurm cluster (CI runs as root)");
        return;
    }
    let Some(_) = tools() else {
        prerequisite_missing(
            "Slurm and munge (apt install slurmctld slurmd slurm-client munge; CI installs them)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["state", "spool", "work/models", "work/home"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    std::fs::write(d.join("slurm.conf"), conf(d, &host)).unwrap();
    let key = d.join("munge.key");
    run_ok(
        Command::new("mungekey").arg("--create").arg(format!("--keyfile={}", key.display())).arg("--force"),
    );
    let mut daemons = Daemons(Vec::new());
    let spawn = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    daemons.0.push(spawn(
        Command::new("munged")
            .arg("--foreground")
            .arg("--force")
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", d.join("munge.sock").display()))
            .arg(format!("--pid-file={}", d.join("munged.pid").display()))
            .arg(format!("--log-file={}", d.join("munged.log").display()))
            .arg(format!("--seed-file={}", d.join("munged.seed").display())),
    ));
    wait_until(10, "munged did not start", || d.join("munge.sock").exists());
    let slurm_conf = d.join("slurm.conf");
    let slurm = |prog: &str| {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &slurm_conf);
        c
    };
    daemons.0.push(spawn(slurm("slurmctld").args(["-D", "-f"]).arg(&slurm_conf)));
    daemons.0.push(spawn(slurm("slurmd").args(["-D", "-f"]).arg(&slurm_conf)));
    let t = Instant::now();
    loop {
        let out = slurm("sinfo").args(["-h", "-o", "%T"]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
            break;
        }
        let logs = ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "Slurm could not start a one-node cluster here: {}\n{logs}",
            show(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A batch with known optima.
    let work = d.join("work");
    std::fs::copy(examples().join("farmer/farmer.lp"), work.join("models/farmer.lp")).unwrap();
    std::fs::copy(examples().join("knapsack.lp"), work.join("models/knapsack.lp")).unwrap();
    std::fs::write(work.join("models/wide.lp"), wide_lp(50)).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_meshsolve")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slurm-meshsolve.sbatch");
    let job = run_ok(
        slurm("sbatch")
            .current_dir(&work)
            .args(["--parsable", "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1", "--time=5", "-o"])
            .arg(work.join("job.out"))
            .arg(&script)
            .arg("models/")
            .env("PATH", &path)
            .env("MESHSOLVE_HOME", work.join("home"))
            .env("PYRO_NS_PORT", free_tcp_port().to_string())
            .env_remove("MESHSOLVE_NAMESPACE")
            .env_remove("PYRO_NS_HOSTNAME"),
    );
    let job = job.trim().split(';').next().unwrap().to_string();
    let mut state = String::new();
    let t = Instant::now();
    while !["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"].iter().any(|s| state.contains(s)) {
        assert!(t.elapsed() < Duration::from_secs(180), "job {job} still {state}");
        std::thread::sleep(Duration::from_millis(300));
        let out = slurm("scontrol").args(["show", "job", &job]).output().unwrap();
        state = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("JobState="))
            .unwrap_or_default()
            .to_string();
    }
    let log = std::fs::read_to_string(work.join("job.out")).unwrap_or_default();
    assert!(state.contains("COMPLETED"), "job {job}: {state}\n{log}");
    assert!(log.contains("3 model(s): 3 solved, 0 failed"), "{log}");
    let csv = std::fs::read_to_string(work.join(format!("results-{job}/summary.csv"))).unwrap();
    for (model, objective) in [("farmer.lp", "-108390"), ("knapsack.lp", "21")] {
        let row = csv.lines().find(|l| l.contains(model)).unwrap_or_else(|| panic!("{model} in {csv}"));
        assert!(row.contains(",optimal,") && row.contains(&format!(",{objective},")), "{row}");
    }
    // Nothing of the job is left: its namespace names every process it started.
    let ns = format!("-job{job}");
    let t = Instant::now();
    while !processes_with(&ns).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "left running after the job: {:?}",
            processes_with(&ns)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = which("systemd-analyze") else {
        prerequisite_missing("systemd-analyze (apt install systemd; CI installs it)");
        return;
    };
    // The units start `%h/.cargo/bin/...` (what `cargo install` writes): a home that has them.
    let home = tempfile::tempdir().unwrap();
    let cargo_bin = home.path().join(".cargo/bin");
    std::fs::create_dir_all(&cargo_bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meshworker"), cargo_bin.join("meshworker")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meshns"), cargo_bin.join("meshns")).unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = Command::new(analyze)
        .args(["--user", "verify"])
        .arg(deploy.join("meshworker.service"))
        .arg(deploy.join("meshns.service"))
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", show(&out));
}
