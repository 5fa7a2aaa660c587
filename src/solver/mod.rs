//! Solvers behind one small trait, what this box has, and the child-process
//! runner that keeps a solver crash or hang away from the worker.
//!
//! [`Solver`] is synchronous: it turns a [`Model`] into a [`Solution`], in
//! process (microlp, HiGHS linked in) or by running an external solver
//! ([`command`]: CBC, GLPK, the HiGHS executable; [`python`]: Gurobi, CPLEX,
//! Xpress, HiGHS, SCIP through their Python APIs). [`found`] finds which of
//! them this box has. The worker never calls a solver directly; [`process`]
//! runs it in a child process of the worker's own binary so a solve can be
//! cancelled, timed out, or crash without taking the worker down.

mod command;
mod duals;
pub mod found;
#[cfg(feature = "highs")]
mod highs_backend;
mod microlp_backend;
pub mod process;
pub mod proximal;
mod python;

use crate::model::Model;
pub use crate::protocol::{Solution, SolveOptions, Status};
pub use found::{detect, Available, Backend, DetectConfig, Detection, Kind};

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
    /// An option the solver does not accept, or a model it cannot take.
    #[error("{0}")]
    BadOption(String),
    /// The model is larger than this solver's licence allows (a community or
    /// restricted edition): no worker with the same edition will do better.
    #[error("{message}")]
    SizeLimit {
        /// Which solver.
        solver: String,
        /// The solver's own message.
        message: String,
    },
    /// No licence is free right now (every token in use, licence server down):
    /// the same job may run later, or elsewhere.
    #[error("{message}")]
    NoLicence {
        /// Which solver.
        solver: String,
        /// The solver's own message.
        message: String,
    },
    /// The solver's executable or interpreter is gone.
    #[error("{solver} is no longer installed here: {message}")]
    Missing {
        /// Which solver.
        solver: String,
        /// What happened.
        message: String,
    },
}

/// An LP/MIP solver that runs in the calling thread.
pub trait Solver: Send + Sync {
    /// Short name used on the command line and in mDNS adverts (`microlp`, `highs`).
    fn name(&self) -> &str;
    /// Version string of the solver library.
    fn version(&self) -> String;
    /// Whether it solves convex QPs (a diagonal `quad` objective) of continuous models.
    fn supports_qp(&self) -> bool {
        false
    }
    /// Solves `model`. Blocks until done or the time limit is reached.
    ///
    /// # Errors
    /// [`SolveError`] when the solver gives up or refuses an option; infeasible and unbounded are
    /// answers, not errors.
    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError>;
}

/// The solvers compiled into this build, best first.
pub fn builtin() -> Vec<Box<dyn Solver>> {
    vec![
        #[cfg(feature = "highs")]
        Box::new(highs_backend::Highs),
        Box::new(microlp_backend::MicroLp),
    ]
}

/// Finds a built-in solver by name (case-insensitive).
///
/// # Errors
/// [`SolveError::Unknown`] naming the solvers this build has.
pub fn by_name(name: &str) -> Result<Box<dyn Solver>, SolveError> {
    builtin()
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| SolveError::Unknown(name.to_string(), names().join(", ")))
}

/// Names of the solvers in this build, best first.
pub fn names() -> Vec<String> {
    builtin().iter().map(|s| s.name().to_string()).collect()
}

/// The preferred solver of this build.
pub fn default_solver() -> Box<dyn Solver> {
    builtin().remove(0)
}

/// Stands in for a built-in solver this build lacks: every solve says so.
struct Missing(Kind);

impl Solver for Missing {
    fn name(&self) -> &str {
        self.0.as_str()
    }
    fn version(&self) -> String {
        String::new()
    }
    fn solve(&self, _: &Model, _: &SolveOptions) -> Result<Solution, SolveError> {
        Err(SolveError::Unknown(self.0.to_string(), names().join(", ")))
    }
}
