//! Solvers with a Python API (Gurobi, CPLEX, Xpress, HiGHS, SCIP), run through
//! one small driver script that ships inside the binary (`driver.py`): the
//! worker's Python reads the renamed MPS, solves it with the module's API and
//! answers with one JSON document. Many sites have only `pip install gurobipy`
//! and a licence file, so this is a first-class way to run a solver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::command::{
    confirm_unbounded, contradictory, passthrough, run_guarded, tail, threads, Echo, Prepared,
};
use super::found::{run_probe, Available, Backend, Kind, Probe};
use super::{Solution, SolveError, SolveOptions, Solver, Status};
use crate::model::Model;

/// The driver script.
const DRIVER: &str = include_str!("driver.py");

/// A Python-API solver as a [`Solver`].
pub struct PythonSolver {
    kind: Kind,
    python: PathBuf,
    version: String,
}

impl PythonSolver {
    /// Runs `kind`'s module of `version` in `python`.
    pub fn new(kind: Kind, python: PathBuf, version: &str) -> Self {
        PythonSolver { kind, python, version: version.to_string() }
    }
}

fn driver(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    // -I: ignore the user's site directory and PYTHON* variables, so what the
    // worker found at start is what runs.
    cmd.args(["-I", "-c", DRIVER]);
    cmd
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Detected {
    Found { version: String, limited: bool },
    Missing { missing: String },
    Broken { error: String },
}

/// Looks for `kinds`' modules in `python`, in one run of the driver.
pub(super) fn detect(python: &Path, kinds: &[Kind], timeout: Duration) -> Vec<Probe> {
    let how = |k: Kind| format!("module {} in {}", k.module().unwrap_or_default(), python.display());
    let mut cmd = driver(python);
    cmd.arg("detect").args(kinds.iter().map(|k| k.as_str()));
    let answer = run_probe(&mut cmd, timeout).and_then(|(out, err)| {
        serde_json::from_str::<HashMap<String, Detected>>(&out)
            .map_err(|e| format!("the solver driver failed ({e}): {}", tail(err.as_bytes())))
    });
    kinds
        .iter()
        .map(|&kind| Probe {
            kind,
            how: how(kind),
            outcome: match &answer {
                Err(e) => Err(e.clone()),
                Ok(map) => match map.get(kind.as_str()) {
                    Some(Detected::Found { version, limited }) => Ok(Available {
                        kind,
                        version: version.clone(),
                        backend: Backend::Python(python.to_path_buf()),
                        size_limited: *limited,
                    }),
                    Some(Detected::Missing { missing }) => Err(missing.clone()),
                    Some(Detected::Broken { error }) => Err(error.clone()),
                    None => Err("the driver did not report it".into()),
                },
            },
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Solved {
        status: Status,
        objective: Option<f64>,
        values: HashMap<String, f64>,
        duals: Option<HashMap<String, f64>>,
    },
    Refused {
        error: String,
        kind: Refusal,
    },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Refusal {
    LicenceSize,
    LicenceUnavailable,
    Model,
    Solver,
}

impl Solver for PythonSolver {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn supports_qp(&self) -> bool {
        self.kind != Kind::Scip
    }

    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        let sol = self.solve_once(model, opts)?;
        confirm_unbounded(self, model, opts, sol)
    }
}

impl PythonSolver {
    fn solve_once(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        if !model.quad.is_empty() && !self.supports_qp() {
            return Err(SolveError::BadOption(format!(
                "{} through meshsolve solves linear models only (no quadratic terms)",
                self.kind
            )));
        }
        let threads = threads(opts)?;
        if let Some(sol) = contradictory(model, format!("{} {}", self.kind, self.version)) {
            return Ok(sol);
        }
        let p = Prepared::new(model)?;
        let started = Instant::now();
        let options = serde_json::json!({
            "time_limit": opts.time_limit,
            "mip_gap": opts.mip_gap,
            "threads": threads,
            "extra": passthrough(opts).map(|(k, v)| (k.clone(), option_value(v))).collect::<Vec<_>>(),
            "duals": opts.duals,
            "log": opts.log,
        });
        let mut cmd = driver(&self.python);
        cmd.arg("solve").arg(self.kind.as_str()).arg(&p.mps).arg(options.to_string());
        let out =
            run_guarded(&mut cmd, self.kind, if opts.log { Echo::Stderr } else { Echo::Off }, p.dir.path())?;
        let solver = self.kind.to_string();
        let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| SolveError::Failed {
            solver: solver.clone(),
            message: format!("the solver driver gave no answer ({}): {}", out.status, tail(&out.stderr)),
        })?;
        match answer {
            Answer::Solved { status, objective, values, duals } => Ok(p.solution(
                status,
                objective,
                &values,
                duals.as_ref(),
                format!("{} {}", self.kind, self.version),
                started,
            )),
            Answer::Refused { error, kind } => Err(match kind {
                Refusal::LicenceSize => SolveError::SizeLimit { solver, message: error },
                Refusal::LicenceUnavailable => SolveError::NoLicence { solver, message: error },
                Refusal::Model => SolveError::BadOption(error),
                Refusal::Solver => SolveError::Failed { solver, message: error },
            }),
        }
    }
}

/// An option value as the solver's API wants it: a number when it reads as one.
fn option_value(v: &str) -> serde_json::Value {
    if let Ok(i) = v.trim().parse::<i64>() {
        return i.into();
    }
    match v.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => f.into(),
        _ => v.into(),
    }
}
