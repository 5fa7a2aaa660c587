//! Batch outputs: the `--out DIR` result store that makes an interrupted
//! batch resumable, and the summaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use meshsolve::protocol::{JobPhase, Status};
use serde::{Deserialize, Serialize};

/// Errors writing results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io { path: path.to_path_buf(), source }
}

/// What came of one model: a solver's answer, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Proven optimal.
    Optimal,
    /// Feasible, optimality not proven.
    Feasible,
    /// No feasible point.
    Infeasible,
    /// Unbounded.
    Unbounded,
    /// The time limit ran out without a feasible point.
    TimeLimit,
    /// No answer: the job failed.
    Failed,
    /// Never started: cancelled (Ctrl-C, deadline) while it waited for a slot.
    NotStarted,
    /// Still waiting in the name server's queue.
    Queued,
    /// Still running on a worker of the name server.
    Running,
}

impl From<Status> for Outcome {
    fn from(s: Status) -> Self {
        match s {
            Status::Optimal => Outcome::Optimal,
            Status::Feasible => Outcome::Feasible,
            Status::Infeasible => Outcome::Infeasible,
            Status::Unbounded => Outcome::Unbounded,
            Status::TimeLimit => Outcome::TimeLimit,
        }
    }
}

impl From<JobPhase> for Outcome {
    fn from(p: JobPhase) -> Self {
        match p {
            JobPhase::Queued => Outcome::Queued,
            JobPhase::Running => Outcome::Running,
            // A done job carries a solution, whose status is used instead.
            JobPhase::Done | JobPhase::Failed => Outcome::Failed,
        }
    }
}

impl Outcome {
    /// Lower-case name, as printed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Optimal => "optimal",
            Outcome::Feasible => "feasible",
            Outcome::Infeasible => "infeasible",
            Outcome::Unbounded => "unbounded",
            Outcome::TimeLimit => "time_limit",
            Outcome::Failed => "failed",
            Outcome::NotStarted => "not_started",
            Outcome::Queued => "queued",
            Outcome::Running => "running",
        }
    }

    /// The process exit code this outcome asks for (the README's table).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Optimal | Outcome::Feasible => 0,
            Outcome::Failed | Outcome::NotStarted | Outcome::Queued | Outcome::Running => 1,
            Outcome::Infeasible => 3,
            Outcome::Unbounded => 4,
            Outcome::TimeLimit => 5,
        }
    }

    /// Whether the name server may still change it.
    pub fn is_open(self) -> bool {
        matches!(self, Outcome::Queued | Outcome::Running)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model's result as stored in `--out DIR` and in the summaries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The model file as given.
    pub model: String,
    /// What came of it.
    pub status: Outcome,
    /// Objective value, when there is a solution.
    pub objective: Option<f64>,
    /// Solver and version.
    pub solver: String,
    /// Worker instance (or `local`).
    pub worker: String,
    /// Worker address it was reached at.
    #[serde(default)]
    pub address: Option<String>,
    /// Seconds in the solver.
    pub solve_seconds: f64,
    /// Seconds from submission to the answer.
    pub wall_seconds: f64,
    /// Runs it took.
    pub attempts: u32,
    /// Why it failed, for `failed`.
    pub error: Option<String>,
    /// Variable values.
    #[serde(default)]
    pub values: Vec<(String, f64)>,
}

/// The `--out DIR` store: one `<name>.json` per model, plus `summary.csv` and `summary.json`.
pub struct ResultDir {
    dir: PathBuf,
    names: HashMap<PathBuf, String>,
    /// Per model: its canonical path and a hash of its content, so `models/` and
    /// `./models` find the same results and an edited model is solved again.
    keys: HashMap<PathBuf, String>,
}

/// The resume key of a model file: canonical path and content hash.
fn key_of(model: &Path) -> String {
    let canonical = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if let Ok(mut f) = std::fs::File::open(model) {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = std::io::Read::read(&mut f, &mut buf) {
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
    }
    let h: String = ctx.finish().as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}#{h}", canonical.display())
}

impl ResultDir {
    /// Opens (creating) `dir` and assigns each model a result file name: its stem, made
    /// unique with a short hash of its path when two models share a stem.
    pub fn open(dir: &Path, models: &[PathBuf]) -> Result<Self, ResultsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let keys: HashMap<PathBuf, String> = models.iter().map(|m| (m.clone(), key_of(m))).collect();
        let mut by_stem: HashMap<String, usize> = HashMap::new();
        for m in models {
            *by_stem.entry(meshsolve::model::model_stem(m)).or_default() += 1;
        }
        let names = models
            .iter()
            .map(|m| {
                let stem = meshsolve::model::model_stem(m);
                let name = if by_stem[&stem] > 1 {
                    let canonical = std::fs::canonicalize(m).unwrap_or_else(|_| m.clone());
                    let d =
                        ring::digest::digest(&ring::digest::SHA256, canonical.to_string_lossy().as_bytes());
                    let h: String = d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
                    format!("{stem}-{h}")
                } else {
                    stem
                };
                (m.clone(), name)
            })
            .collect();
        Ok(ResultDir { dir: dir.to_path_buf(), names, keys })
    }

    fn file_for(&self, model: &Path) -> PathBuf {
        let name = self.names.get(model).cloned().unwrap_or_else(|| meshsolve::model::model_stem(model));
        self.dir.join(format!("{name}.json"))
    }

    /// The stored result of `model`, if a previous run finished it (failures are retried).
    /// It matches by canonical path and content (or, for results written before keys, by the
    /// path as typed).
    pub fn existing(&self, model: &Path) -> Option<Record> {
        let text = std::fs::read_to_string(self.file_for(model)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let same = match v.get("key").and_then(|k| k.as_str()) {
            Some(k) => Some(k) == self.keys.get(model).map(String::as_str),
            None => v.get("model").and_then(|m| m.as_str()) == Some(&*model.to_string_lossy()),
        };
        let mut r: Record = serde_json::from_value(v).ok()?;
        r.model = model.to_string_lossy().into_owned();
        (same && !matches!(r.status, Outcome::Failed | Outcome::NotStarted)).then_some(r)
    }

    /// Writes one model's result (atomically: a temporary file, then a rename).
    pub fn write(&self, model: &Path, r: &Record) -> Result<(), ResultsError> {
        let path = self.file_for(model);
        let tmp = path.with_extension("json.tmp");
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if let (Some(o), Some(k)) = (v.as_object_mut(), self.keys.get(model)) {
            o.insert("key".into(), serde_json::Value::String(k.clone()));
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Writes `summary.json` and `summary.csv` (no variable values) for `records`.
    pub fn write_summary(&self, records: &[Record]) -> Result<(), ResultsError> {
        let slim: Vec<Record> = records.iter().map(|r| Record { values: Vec::new(), ..r.clone() }).collect();
        let json = self.dir.join("summary.json");
        std::fs::write(&json, serde_json::to_string_pretty(&slim).unwrap_or_default()).map_err(io(&json))?;
        let mut csv = String::from(
            "model,status,objective,solver,worker,address,solve_seconds,wall_seconds,attempts,error\n",
        );
        for r in records {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            csv.push_str(&format!(
                "{},{},{},{},{},{},{:.6},{:.6},{},{}\n",
                q(&r.model),
                r.status,
                r.objective.map(|o| o.to_string()).unwrap_or_default(),
                q(&r.solver),
                q(&r.worker),
                r.address.as_deref().unwrap_or(""),
                r.solve_seconds,
                r.wall_seconds,
                r.attempts,
                q(r.error.as_deref().unwrap_or("")),
            ));
        }
        let path = self.dir.join("summary.csv");
        std::fs::write(&path, csv).map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_exactly_through_result_files() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.lp");
        std::fs::write(&model, "Minimize\n obj: x\nEnd\n").unwrap();
        let store = ResultDir::open(&d.path().join("out"), std::slice::from_ref(&model)).unwrap();
        let r = Record {
            model: model.to_string_lossy().into_owned(),
            status: Outcome::Optimal,
            objective: Some(-464.75314285714285),
            solver: "microlp 0.7".into(),
            worker: "w".into(),
            address: None,
            solve_seconds: 0.1,
            wall_seconds: 0.2,
            attempts: 1,
            error: None,
            values: vec![("x".into(), 0.1 + 0.2)],
        };
        store.write(&model, &r).unwrap();
        let back = store.existing(&model).unwrap();
        assert_eq!(back.objective, Some(-464.75314285714285));
        assert_eq!(back.values[0].1, 0.1 + 0.2);
    }

    #[test]
    fn result_dir_round_trip_and_unique_names() {
        let d = tempfile::tempdir().unwrap();
        let models = vec![PathBuf::from("x/a.lp"), PathBuf::from("y/a.lp"), PathBuf::from("b.mps")];
        let rd = ResultDir::open(d.path(), &models).unwrap();
        let r = Record {
            model: "x/a.lp".into(),
            status: Outcome::Optimal,
            objective: Some(1.0),
            solver: "s".into(),
            worker: "w".into(),
            address: None,
            solve_seconds: 0.1,
            wall_seconds: 0.2,
            attempts: 1,
            error: None,
            values: vec![("x".into(), 1.0)],
        };
        rd.write(&models[0], &r).unwrap();
        assert_eq!(rd.existing(&models[0]), Some(r.clone()));
        assert_eq!(rd.existing(&models[1]), None);
        rd.write_summary(&[r]).unwrap();
        assert!(std::fs::read_to_string(d.path().join("summary.csv"))
            .unwrap()
            .contains("\"x/a.lp\",optimal,1,"));
    }
}
