//! Solvers behind one small trait, and the child-process runner that keeps a
//! solver crash or hang away from the worker.
//!
//! [`Solver`] is synchronous and in-process: it turns a [`Model`] into a
//! [`Solution`]. The worker never calls it directly; [`process`] runs it in a
//! child process of the worker's own binary so a solve can be cancelled, timed
//! out, or crash without taking the worker down.

mod duals;
#[cfg(feature = "highs")]
mod highs_backend;
mod microlp_backend;
pub mod process;
pub mod proximal;

use crate::model::Model;
pub use crate::protocol::{Solution, SolveOptions, Status};

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
    ///
    /// # Errors
    /// [`SolveError`] when the solver gives up or refuses an option; infeasible and unbounded are
    /// answers, not errors.
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
///
/// # Errors
/// [`SolveError::Unknown`] naming the solvers this build has.
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
