//! Which solvers this box has, and how to run each: built in, a command-line
//! executable, or a Python module run through the shipped driver.
//!
//! [`detect`] looks once, at worker start, in parallel (a version probe per
//! executable on `PATH` and one Python run for every module), and keeps one way
//! per solver: built in, else the executable, else Python. [`Available`] is what
//! the worker advertises and hands to each solver child.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{command, python, Solver};

/// A solver, named by the solver (not by its executable or package), best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Gurobi (`gurobipy`).
    Gurobi,
    /// IBM CPLEX (`cplex`).
    Cplex,
    /// FICO Xpress (`xpress`).
    Xpress,
    /// HiGHS (built in, the `highs` executable, or `highspy`).
    Highs,
    /// SCIP (`pyscipopt`).
    Scip,
    /// COIN-OR CBC (the `cbc` executable).
    Cbc,
    /// GNU GLPK (the `glpsol` executable).
    Glpk,
    /// The pure-Rust default (built in).
    Microlp,
}

impl Kind {
    /// Every solver, best first.
    pub const ALL: [Kind; 8] = [
        Kind::Gurobi,
        Kind::Cplex,
        Kind::Xpress,
        Kind::Highs,
        Kind::Scip,
        Kind::Cbc,
        Kind::Glpk,
        Kind::Microlp,
    ];

    /// The name users type and workers advertise.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gurobi => "gurobi",
            Kind::Cplex => "cplex",
            Kind::Xpress => "xpress",
            Kind::Highs => "highs",
            Kind::Scip => "scip",
            Kind::Cbc => "cbc",
            Kind::Glpk => "glpk",
            Kind::Microlp => "microlp",
        }
    }

    /// Parses a solver name (case-insensitive; `glpsol` is GLPK).
    pub fn parse(name: &str) -> Option<Kind> {
        let n = name.trim().to_ascii_lowercase();
        if n == "glpsol" {
            return Some(Kind::Glpk);
        }
        Kind::ALL.into_iter().find(|k| k.as_str() == n)
    }

    /// The executable a command-line edition is called by, if meshsolve can drive one.
    pub fn executable(self) -> Option<&'static str> {
        match self {
            Kind::Cbc => Some("cbc"),
            Kind::Glpk => Some("glpsol"),
            Kind::Highs => Some("highs"),
            _ => None,
        }
    }

    /// The Python module of its Python edition, if meshsolve can drive one.
    pub fn module(self) -> Option<&'static str> {
        match self {
            Kind::Gurobi => Some("gurobipy"),
            Kind::Cplex => Some("cplex"),
            Kind::Xpress => Some("xpress"),
            Kind::Highs => Some("highspy"),
            Kind::Scip => Some("pyscipopt"),
            _ => None,
        }
    }

    /// Whether a model of `cols` columns and `rows` rows fits the free, size-limited
    /// edition of this solver (the limits its vendor states).
    pub fn fits_community_edition(self, cols: usize, rows: usize) -> bool {
        match self {
            Kind::Gurobi => cols <= 2000 && rows <= 2000,
            Kind::Cplex => cols <= 1000 && rows <= 1000,
            Kind::Xpress => cols + rows <= 5000,
            _ => true,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a solver is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    /// Compiled into this binary.
    Builtin,
    /// A command-line executable.
    Command(PathBuf),
    /// A module of this Python interpreter, through the shipped driver.
    Python(PathBuf),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Builtin => f.write_str("built in"),
            Backend::Command(p) => write!(f, "command {}", p.display()),
            Backend::Python(p) => write!(f, "python {}", p.display()),
        }
    }
}

/// A solver this box can run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Available {
    /// Which solver.
    pub kind: Kind,
    /// Its version, as the solver reports it.
    pub version: String,
    /// How it runs.
    pub backend: Backend,
    /// Whether only a size-limited edition is licensed (community or restricted
    /// licence): never the default, used only when asked for by name.
    pub size_limited: bool,
}

impl Available {
    /// The built-in solvers of this build, best first.
    pub fn builtin() -> Vec<Available> {
        super::builtin()
            .iter()
            .filter_map(|s| {
                Some(Available {
                    kind: Kind::parse(s.name())?,
                    version: s.version(),
                    backend: Backend::Builtin,
                    size_limited: false,
                })
            })
            .collect()
    }

    /// A solver object that runs it.
    pub fn solver(&self) -> Box<dyn Solver> {
        match &self.backend {
            Backend::Builtin => super::builtin()
                .into_iter()
                .find(|s| s.name() == self.kind.as_str())
                .unwrap_or_else(|| Box::new(super::Missing(self.kind))),
            Backend::Command(exe) => {
                Box::new(command::CommandSolver::new(self.kind, exe.clone(), &self.version))
            }
            Backend::Python(py) => Box::new(python::PythonSolver::new(self.kind, py.clone(), &self.version)),
        }
    }

    /// `name version`, with the edition when it is size-limited.
    pub fn label(&self) -> String {
        let limited = if self.size_limited { " (size-limited licence)" } else { "" };
        format!("{} {}{limited}", self.kind, self.version)
    }
}

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct DetectConfig {
    /// Executables named explicitly (`--solver-path cbc=/opt/cbc/bin/cbc`); they
    /// take precedence over `PATH`.
    pub paths: Vec<(Kind, PathBuf)>,
    /// The Python to look for solver modules in; `None`: `MESHSOLVE_PYTHON` if
    /// set, else the first `python3` on `PATH`. An empty path turns Python solvers off.
    pub python: Option<PathBuf>,
    /// Only these solvers (`--solvers cbc,gurobi`); empty means all found.
    pub only: Vec<Kind>,
}

/// What one probe found, for `meshworker --list-solvers`.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Which solver.
    pub kind: Kind,
    /// How it was looked for.
    pub how: String,
    /// Its version, or why it cannot be used.
    pub outcome: Result<Available, String>,
}

/// Every solver found, best first, and every probe made.
#[derive(Debug, Clone, Default)]
pub struct Detection {
    /// One way per solver, best solver first.
    pub found: Vec<Available>,
    /// Every probe, including the ones that found nothing.
    pub probes: Vec<Probe>,
    /// How long looking took.
    pub elapsed: Duration,
    /// The solvers asked for (`--solvers`); empty means all.
    pub only: Vec<Kind>,
}

impl Detection {
    /// The solver named `kind`, if found.
    pub fn get(&self, kind: Kind) -> Option<&Available> {
        self.found.iter().find(|a| a.kind == kind)
    }

    /// Why `kind` was not found (every probe's answer), for an error message.
    pub fn why_not(&self, kind: Kind) -> String {
        let reasons: Vec<String> = self
            .probes
            .iter()
            .filter(|p| p.kind == kind)
            .filter_map(|p| p.outcome.as_ref().err().map(|e| format!("{}: {e}", p.how)))
            .collect();
        if reasons.is_empty() {
            format!("meshsolve cannot drive {kind} on this box")
        } else {
            reasons.join("; ")
        }
    }

    /// A table of every solver: used, found another way, or why not found.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for kind in Kind::ALL.into_iter().filter(|k| self.only.is_empty() || self.only.contains(k)) {
            let used = self.get(kind);
            let probes = self.probes.iter().filter(|p| p.kind == kind);
            match used {
                Some(a) => out.push_str(&format!(
                    "✓ {:<8} {:<12} {}{}\n",
                    kind.as_str(),
                    a.version,
                    a.backend,
                    if a.size_limited {
                        "  (size-limited licence: used only when asked for by name)"
                    } else {
                        ""
                    }
                )),
                None => out.push_str(&format!("✗ {:<8} not found\n", kind.as_str())),
            }
            for p in probes {
                match &p.outcome {
                    Ok(a) if Some(a) == used => {}
                    Ok(a) => out.push_str(&format!("    also {} {} ({})\n", a.version, a.backend, p.how)),
                    Err(e) => out.push_str(&format!("    {}: {e}\n", p.how)),
                }
            }
        }
        out.push_str(&format!("(looked for {:.0} ms)\n", self.elapsed.as_secs_f64() * 1000.0));
        out
    }
}

/// How long a version probe may take before the solver counts as broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the solvers of this box (see the module documentation).
pub fn detect(cfg: &DetectConfig) -> Detection {
    let started = Instant::now();
    let wanted = |k: Kind| cfg.only.is_empty() || cfg.only.contains(&k);
    let mut probes: Vec<Probe> = Available::builtin()
        .into_iter()
        .map(|a| Probe { kind: a.kind, how: "built in".into(), outcome: Ok(a) })
        .collect();
    let python = match &cfg.python {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.clone()),
        None => match std::env::var_os("MESHSOLVE_PYTHON") {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(PathBuf::from(p)),
            None => which("python3"),
        },
    };
    let executables: Vec<(Kind, Option<PathBuf>, String)> = Kind::ALL
        .into_iter()
        .filter(|k| wanted(*k))
        .filter_map(|k| {
            let named = cfg.paths.iter().rev().find(|(n, _)| *n == k).map(|(_, p)| p.clone());
            if named.is_none() && k.executable().is_none() {
                return None;
            }
            let exe = named.clone().or_else(|| which(k.executable()?));
            let how = match (&named, k.executable()) {
                (Some(p), _) => format!("--solver-path {k}={}", p.display()),
                (None, Some(e)) => format!("`{e}` on PATH"),
                (None, None) => unreachable!("filtered above"),
            };
            Some((k, exe, how))
        })
        .collect();
    let modules: Vec<Kind> = Kind::ALL.into_iter().filter(|k| wanted(*k) && k.module().is_some()).collect();
    std::thread::scope(|s| {
        let py = s.spawn(|| match &python {
            Some(p) if !modules.is_empty() => python::detect(p, &modules, PROBE_TIMEOUT),
            Some(_) => Vec::new(),
            None => modules
                .iter()
                .map(|k| Probe {
                    kind: *k,
                    how: format!("module {}", k.module().unwrap_or_default()),
                    outcome: Err("no python3 on PATH (name one with --python)".into()),
                })
                .collect(),
        });
        let cli: Vec<_> = executables
            .iter()
            .map(|(k, exe, how)| {
                s.spawn(move || Probe {
                    kind: *k,
                    how: how.clone(),
                    outcome: match exe {
                        None => Err("not found".into()),
                        Some(exe) => command::probe(*k, exe, PROBE_TIMEOUT),
                    },
                })
            })
            .collect();
        for h in cli {
            if let Ok(p) = h.join() {
                probes.push(p);
            }
        }
        if let Ok(p) = py.join() {
            probes.extend(p);
        }
    });
    let mut found: Vec<Available> = Vec::new();
    // One way per solver: an explicit path, else built in, else a command, else Python.
    let rank = |p: &Probe| match p.outcome.as_ref().map(|a| &a.backend) {
        Ok(Backend::Command(_)) if p.how.starts_with("--solver-path") => 0,
        Ok(Backend::Builtin) => 1,
        Ok(Backend::Command(_)) => 2,
        Ok(Backend::Python(_)) => 3,
        Err(_) => 4,
    };
    let mut order: Vec<&Probe> = probes.iter().filter(|p| wanted(p.kind)).collect();
    order.sort_by_key(|p| (p.kind, rank(p)));
    for p in order {
        if let Ok(a) = &p.outcome {
            if !found.iter().any(|f| f.kind == a.kind) {
                found.push(a.clone());
            }
        }
    }
    // A size-limited edition comes after every full one: clients take the first
    // solver a worker advertises as its default.
    found.sort_by_key(|a| a.size_limited);
    Detection { found, probes, elapsed: started.elapsed(), only: cfg.only.clone() }
}

/// The first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    // Absolute, so it still names the same file when run from the job's directory.
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .map(|p| std::path::absolute(&p).unwrap_or(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a short probe command, killing it after `timeout`; its stdout and stderr.
pub(super) fn run_probe(cmd: &mut Command, timeout: Duration) -> Result<(String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut o = String::new();
        let mut e = String::new();
        if let Some(s) = out.as_mut() {
            let _ = s.take(1 << 20).read_to_string(&mut o);
        }
        if let Some(s) = err.as_mut() {
            let _ = s.take(1 << 20).read_to_string(&mut e);
        }
        (o, e)
    });
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not answer within {} s", timeout.as_secs()));
            }
        }
    }
    reader.join().map_err(|_| "probe reader failed".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_rank() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("GLPSOL"), Some(Kind::Glpk));
        assert_eq!(Kind::parse("cplexx"), None);
        assert!(Kind::Gurobi < Kind::Microlp);
    }

    #[test]
    fn builtin_is_found_without_python() {
        let d = detect(&DetectConfig {
            python: Some(PathBuf::new()),
            only: vec![Kind::Microlp],
            ..Default::default()
        });
        assert_eq!(d.found.len(), 1);
        assert_eq!(d.found[0].backend, Backend::Builtin);
    }
}
