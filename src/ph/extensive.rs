//! Solving the extensive form of a PH spec on the mesh: every scenario in one
//! model, for comparison with progressive hedging (`meshsolve ph --ef`, the
//! benchmark).

use std::sync::Arc;
use std::time::Instant;

use super::augment::extensive_form;
use super::spec::PhSpec;
use crate::client::{JobOptions, Mesh};
use crate::dispatch::{solve_file, SolveFileError};
use crate::model::{self, ModelError, Sense};
use crate::protocol::Status;

/// Why the extensive form could not be solved.
#[derive(Debug, thiserror::Error)]
pub enum ExtensiveError {
    /// A scenario file could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The extensive form could not be written to a temporary file.
    #[error("cannot write the extensive form: {0}")]
    Io(#[from] std::io::Error),
    /// The solve failed.
    #[error(transparent)]
    Solve(#[from] SolveFileError),
}

/// The answer for the extensive form.
#[derive(Debug, Clone)]
pub struct ExtensiveResult {
    /// What the solver found.
    pub status: Status,
    /// The optimal expected objective, in the scenarios' own sense.
    pub objective: Option<f64>,
    /// Seconds from building it to the answer.
    pub seconds: f64,
    /// Worker that solved it.
    pub worker: String,
}

/// Builds the extensive form of `spec` (first-stage variables: those named by
/// the spec's patterns in each scenario) and solves it on one worker.
///
/// # Errors
/// [`ExtensiveError`] when a scenario cannot be read or the solve fails.
pub async fn solve_extensive(
    mesh: &Arc<Mesh>,
    spec: &PhSpec,
    solver: Option<String>,
) -> Result<ExtensiveResult, ExtensiveError> {
    let t = Instant::now();
    // Reading every scenario and writing their union is long for a big spec:
    // off the runtime thread, which keeps the workers' connections alive.
    let owned = spec.clone();
    let (maximize, _dir, path) = tokio::task::spawn_blocking(move || write_extensive(&owned))
        .await
        .map_err(|e| ExtensiveError::Io(std::io::Error::other(e.to_string())))??;
    let job = JobOptions { solver, prechecked: true, ..Default::default() };
    let solved = solve_file(mesh, &path, &job).await.map_err(ExtensiveError::from);
    let r = solved?;
    // The extensive form minimises; report in the scenarios' own sense.
    let sign = if maximize { -1.0 } else { 1.0 };
    Ok(ExtensiveResult {
        status: r.solution.status,
        objective: r.solution.objective.map(|o| sign * o),
        seconds: t.elapsed().as_secs_f64(),
        worker: r.worker,
    })
}

/// Reads the scenarios of `spec` and writes their extensive form as MPS into a
/// temporary directory: whether the scenarios maximise, the directory (removed
/// on drop) and the file.
fn write_extensive(spec: &PhSpec) -> Result<(bool, tempfile::TempDir, std::path::PathBuf), ExtensiveError> {
    let models = spec
        .scenarios
        .iter()
        .map(|(p, prob)| model::read_file(p, None).map(|m| (m, *prob)))
        .collect::<Result<Vec<_>, _>>()?;
    let nonants: Vec<Vec<usize>> = models
        .iter()
        .map(|(m, _)| {
            let names = spec.first_stage_of(m.cols.iter().map(|c| c.name.as_str()));
            names.iter().filter_map(|n| m.cols.iter().position(|c| &c.name == n)).collect()
        })
        .collect();
    let ef = extensive_form(&models, &nonants);
    let (dir, path) = ef.write_temp_mps(&format!("{}-ef", spec.name))?;
    let maximize = models.first().is_some_and(|(m, _)| m.sense == Sense::Maximize);
    Ok((maximize, dir, path))
}
