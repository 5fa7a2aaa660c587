//! Solvers behind one small trait, and the child-process runner that keeps a
//! solver crash or hang away from the worker.
//!
//! [`Solver`] is synchronous and in-process: it turns a [`Model`] into a
//! [`Solution`]. The worker never calls it directly; [`process`] runs it in a
//! child process of the worker's own binary so a solve can be cancelled, timed
//! out, or crash without taking the worker down.

#[cfg(feature = "highs")]
mod highs_backend;
mod microlp_backend;
pub mod process;

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// What a solve found. Infeasible and unbounded are answers, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proven optimal.
    Optimal,
    /// A feasible solution, optimality not proven (time limit or gap reached).
    Feasible,
    /// No feasible point exists.
    Infeasible,
    /// The objective improves without limit.
    Unbounded,
    /// The time limit ran out before any feasible point was found.
    TimeLimit,
}

impl Status {
    /// Lower-case name, as printed and written to JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Optimal => "optimal",
            Status::Feasible => "feasible",
            Status::Infeasible => "infeasible",
            Status::Unbounded => "unbounded",
            Status::TimeLimit => "time_limit",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of one solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// What was found.
    pub status: Status,
    /// Objective value in the model's own sense, with its offset; `None` without a solution.
    pub objective: Option<f64>,
    /// Variable values by name, in model order; empty without a solution.
    pub values: Vec<(String, f64)>,
    /// Solver name and version, e.g. `microlp 0.7`.
    pub solver: String,
    /// Seconds spent in the solver (excluding reading the model).
    pub solve_seconds: f64,
}

/// Per-job settings a solver honours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SolveOptions {
    /// Wall-clock limit for the solve, seconds.
    pub time_limit: Option<f64>,
    /// Relative MIP gap at which the search may stop.
    pub mip_gap: Option<f64>,
    /// Solver-specific `key=value` options, passed through.
    pub extra: Vec<(String, String)>,
    /// A starting point (one value per column) for solvers that can use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<Vec<f64>>,
}

/// Why a solve produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The solver gave up on numerical grounds. Another solver may succeed.
    #[error("{solver} failed: {message}")]
    Failed {
        /// Which solver.
        solver: String,
        /// What it said.
        message: String,
    },
    /// The requested solver does not exist in this build.
    #[error("unknown solver `{0}`; this build has: {1}")]
    Unknown(String, String),
    /// An option the solver does not accept.
    #[error("{0}")]
    BadOption(String),
}

/// An LP/MIP solver that runs in the calling thread.
pub trait Solver: Send + Sync {
    /// Short name used on the command line and in mDNS adverts (`microlp`, `highs`).
    fn name(&self) -> &'static str;
    /// Version string of the solver library.
    fn version(&self) -> String;
    /// Whether it solves convex QPs (a diagonal `quad` objective) of continuous models.
    fn supports_qp(&self) -> bool {
        false
    }
    /// Solves `model`. Blocks until done or the time limit is reached.
    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError>;
}

/// Every solver in this build, best first.
pub fn all() -> Vec<Box<dyn Solver>> {
    vec![
        #[cfg(feature = "highs")]
        Box::new(highs_backend::Highs),
        Box::new(microlp_backend::MicroLp),
    ]
}

/// Finds a solver by name (case-insensitive).
pub fn by_name(name: &str) -> Result<Box<dyn Solver>, SolveError> {
    all()
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| SolveError::Unknown(name.to_string(), names().join(", ")))
}

/// Names of the solvers in this build, best first.
pub fn names() -> Vec<String> {
    all().iter().map(|s| s.name().to_string()).collect()
}

/// The preferred solver of this build.
pub fn default_solver() -> Box<dyn Solver> {
    all().remove(0)
}
