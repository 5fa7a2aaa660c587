//! Local worker processes for `meshsolve demo` and `meshsolve bench`: started
//! in a throw-away namespace and CA directory, stopped (and cleaned up) after.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use meshsolve::client::ClientConfig;

/// Worker processes started by this process.
pub struct LocalWorkers {
    exe: PathBuf,
    /// Namespace they serve.
    pub namespace: String,
    /// CA directory they use (removed on drop).
    pub home: PathBuf,
    /// mDNS interfaces.
    pub interfaces: Vec<String>,
    slots: u32,
    /// Extra flags for every worker started from now on.
    pub extra_args: Vec<String>,
    /// Offer only this solver (`--solvers`); default every solver the box has.
    pub solver: Option<String>,
    children: Vec<tokio::process::Child>,
}

impl LocalWorkers {
    /// Finds `meshworker` next to the running executable.
    pub fn worker_exe() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let w = exe.with_file_name("meshworker");
        if !w.exists() {
            bail!("{} not found; build both binaries first: `cargo build --release`", w.display());
        }
        Ok(w)
    }

    /// Prepares a namespace for local workers (none started yet).
    pub fn new(slots: u32, interfaces: Vec<String>) -> anyhow::Result<Self> {
        let exe = Self::worker_exe()?;
        let tag = format!("{}-{}", std::process::id(), nonce());
        let home = std::env::temp_dir().join(format!("meshsolve-local-{tag}"));
        std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
        let interfaces = if interfaces.is_empty() { vec!["lo".to_string()] } else { interfaces };
        Ok(LocalWorkers {
            exe,
            namespace: format!("local-{tag}"),
            home,
            interfaces,
            slots,
            extra_args: Vec::new(),
            solver: None,
            children: Vec::new(),
        })
    }

    /// Starts one more worker; returns its index.
    pub fn spawn(&mut self) -> anyhow::Result<usize> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        // If this process dies (even by a signal), the worker gets SIGTERM and stops cleanly.
        die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGTERM);
        let name = self.name_of(self.children.len());
        let child = cmd
            .args(["--namespace", &self.namespace, "--interface", &self.interfaces.join(",")])
            .args(["--name", &name])
            .args(["--slots", &self.slots.to_string(), "--log-level", "warn"])
            .args(&self.extra_args)
            .args(self.solver.iter().flat_map(|s| ["--solvers", s.as_str()]))
            .env("MESHSOLVE_HOME", &self.home)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start meshworker")?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// Instance name of worker `i`.
    pub fn name_of(&self, i: usize) -> String {
        format!("{}-w{i}", self.namespace)
    }

    /// Index of the worker with instance name `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.children.len()).find(|&i| self.name_of(i) == name)
    }

    /// Starts `n` workers.
    pub fn spawn_many(&mut self, n: u32) -> anyhow::Result<()> {
        for _ in 0..n {
            self.spawn()?;
        }
        Ok(())
    }

    /// A client configuration for their namespace.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            namespace: self.namespace.clone(),
            home: self.home.clone(),
            interfaces: self.interfaces.clone(),
            static_workers: Vec::new(),
            name_server: None,
            mdns: true,
            via_name_server: false,
        }
    }

    /// Sends SIGKILL to worker `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(c) = self.children.get_mut(i) {
            let _ = c.kill().await;
        }
    }

    /// Sends SIGTERM to every worker and waits for them (killing any that linger).
    pub async fn stop(mut self) {
        for c in &self.children {
            if let Some(pid) = c.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(15), c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
    }

    /// The CA directory.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn nonce() -> u32 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_le_bytes(b) % 100_000
}

/// Makes a child started by this binary get `signal` when this process dies,
/// however it dies (a helper worker must not outlive `meshsolve demo`).
pub fn die_with_parent(cmd: &mut tokio::process::Command, signal: nix::sys::signal::Signal) {
    // SAFETY: `pre_exec` runs between fork and exec; prctl is a plain syscall that
    // touches only the child being set up, and the closure allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || Ok(nix::sys::prctl::set_pdeathsig(signal)?));
    }
}
