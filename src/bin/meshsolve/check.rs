//! `meshsolve check MODEL...`: read and validate models without solving them,
//! with the reader's errors and a one-line summary of each.

use std::path::PathBuf;

use meshsolve::inputs::expand_inputs;
use meshsolve::model::{self, Sense};

use crate::args::Usage;

/// Checks every model; returns 0 when all read, 1 when any did not.
pub(crate) fn check(inputs: &[PathBuf]) -> anyhow::Result<u8> {
    if inputs.is_empty() {
        return Err(Usage("no model given.\n  usage: meshsolve check MODEL.lp [MORE...]".into()).into());
    }
    let models = expand_inputs(inputs).map_err(|e| Usage(e.to_string()))?;
    let mut bad = 0;
    for p in &models {
        match model::read_file(p, None) {
            Ok(m) => {
                let binaries =
                    m.cols.iter().filter(|c| c.integer && c.lower >= 0.0 && c.upper <= 1.0).count();
                println!(
                    "{}: ok: {} {} rows, {} columns ({} integer, {} of them binary), {} nonzeros{}",
                    p.display(),
                    if m.sense == Sense::Maximize { "maximise," } else { "minimise," },
                    m.rows.len(),
                    m.cols.len(),
                    m.num_integers(),
                    binaries,
                    m.nnz(),
                    if m.quad.is_empty() {
                        String::new()
                    } else {
                        format!(", {} quadratic terms", m.quad.len())
                    }
                );
            }
            Err(e) => {
                bad += 1;
                println!("{e}");
            }
        }
    }
    if models.len() > 1 {
        println!("{} model(s) read, {bad} with errors", models.len());
    }
    Ok(if bad > 0 { 1 } else { 0 })
}
