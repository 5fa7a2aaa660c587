//! The description of a two-stage stochastic program for `meshsolve ph`.
//!
//! A TOML file beside the scenario files:
//!
//! ```toml
//! name = "farmer"
//! first_stage = ["DevotedAcreage_*"]   # names or patterns (* and ?)
//! rho = 1.0                            # default penalty (optional)
//! [rho_overrides]                      # per-variable penalties (optional)
//! "DevotedAcreage_SUGAR_BEETS" = 0.5
//! [[scenario]]
//! file = "scen0.lp"                    # relative to the TOML file
//! probability = 0.3333333333333333     # optional: equal when every one is omitted
//! ```
//!
//! Or a directory of scenario files with equal probabilities, plus
//! `--first-stage PATTERN`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::inputs::{expand_inputs, glob_match};

/// Errors reading a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The spec is malformed or inconsistent; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: Option<String>,
    first_stage: Vec<String>,
    rho: Option<f64>,
    #[serde(default)]
    rho_overrides: std::collections::BTreeMap<String, f64>,
    scenario: Vec<ScenarioEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioEntry {
    file: PathBuf,
    probability: Option<f64>,
}

/// A validated spec.
#[derive(Debug, Clone)]
pub struct PhSpec {
    /// Name for reports.
    pub name: String,
    /// Scenario files and probabilities (summing to 1).
    pub scenarios: Vec<(PathBuf, f64)>,
    /// First-stage variable names or patterns.
    pub first_stage: Vec<String>,
    /// Default ρ from the spec.
    pub rho: Option<f64>,
    /// Per-variable ρ (names or patterns).
    pub rho_overrides: Vec<(String, f64)>,
}

impl PhSpec {
    /// Reads a TOML spec, or a directory of scenarios with `first_stage` patterns.
    ///
    /// # Errors
    /// [`SpecError`] when the file is unreadable, not valid TOML, or names no scenario or first-
    /// stage variable.
    pub fn load(path: &Path, first_stage: &[String]) -> Result<Self, SpecError> {
        if path.is_dir() {
            if first_stage.is_empty() {
                return Err(SpecError::Invalid(format!(
                    "{} is a directory: say which variables are first-stage with --first-stage PATTERN",
                    path.display()
                )));
            }
            let files =
                expand_inputs(&[path.to_path_buf()]).map_err(|e| SpecError::Invalid(e.to_string()))?;
            let p = 1.0 / files.len() as f64;
            return Ok(PhSpec {
                name: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                scenarios: files.into_iter().map(|f| (f, p)).collect(),
                first_stage: first_stage.to_vec(),
                rho: None,
                rho_overrides: Vec::new(),
            });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Io { path: path.to_path_buf(), source })?;
        let f: SpecFile =
            toml::from_str(&text).map_err(|e| SpecError::Invalid(format!("{}: {e}", path.display())))?;
        if f.scenario.is_empty() {
            return Err(SpecError::Invalid(format!("{}: no [[scenario]] entries", path.display())));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let given = f.scenario.iter().filter(|s| s.probability.is_some()).count();
        if given != 0 && given != f.scenario.len() {
            return Err(SpecError::Invalid(format!(
                "{}: give a probability for every scenario or for none (then they are equal)",
                path.display()
            )));
        }
        let n = f.scenario.len() as f64;
        let scenarios: Vec<(PathBuf, f64)> =
            f.scenario.iter().map(|s| (dir.join(&s.file), s.probability.unwrap_or(1.0 / n))).collect();
        let total: f64 = scenarios.iter().map(|s| s.1).sum();
        let near_one = (total - 1.0).abs() <= 1e-6;
        if !near_one || scenarios.iter().any(|s| !(s.1 > 0.0 && s.1 <= 1.0)) {
            return Err(SpecError::Invalid(format!(
                "{}: probabilities must be positive and sum to 1 (they sum to {total})",
                path.display()
            )));
        }
        for (file, _) in &scenarios {
            if !file.is_file() {
                return Err(SpecError::Invalid(format!(
                    "{}: scenario file {} not found",
                    path.display(),
                    file.display()
                )));
            }
        }
        let bad_rho = |r: f64| !(r.is_finite() && r > 0.0);
        if let Some(r) = f.rho.filter(|r| bad_rho(*r)) {
            return Err(SpecError::Invalid(format!(
                "{}: rho = {r}: a penalty is a positive number",
                path.display()
            )));
        }
        if let Some((p, r)) = f.rho_overrides.iter().find(|(_, r)| bad_rho(**r)) {
            return Err(SpecError::Invalid(format!(
                "{}: rho for `{p}` = {r}: a penalty is a positive number",
                path.display()
            )));
        }
        let mut first = f.first_stage;
        first.extend(first_stage.iter().cloned());
        if first.is_empty() {
            return Err(SpecError::Invalid(format!("{}: first_stage lists no variable", path.display())));
        }
        Ok(PhSpec {
            name: f.name.unwrap_or_else(|| crate::model::model_stem(path)),
            scenarios,
            first_stage: first,
            rho: f.rho,
            rho_overrides: f.rho_overrides.into_iter().collect(),
        })
    }

    /// Column names of `names` (in model order) matching the first-stage patterns.
    pub fn first_stage_of<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<String> {
        names.filter(|n| self.first_stage.iter().any(|p| glob_match(p, n))).map(str::to_string).collect()
    }

    /// ρ of variable `name`: an override, else `default`.
    pub fn rho_of(&self, name: &str, default: f64) -> f64 {
        self.rho_overrides.iter().find(|(p, _)| glob_match(p, name)).map(|o| o.1).unwrap_or(default)
    }
}
