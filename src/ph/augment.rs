//! The extensive form of a two-stage stochastic program (all scenarios in one
//! model, first-stage variables shared); the per-step subproblems are built by
//! [`crate::solver::proximal`] where the scenarios are resident.

use crate::model::{Column, Model, Row, Sense};
pub use crate::protocol::{Step, StepMode, StepReply};

/// The extensive form: every scenario's variables (renamed `s<k>.<name>`), the
/// probability-weighted objective, and first-stage equality rows tying each
/// scenario to the first.
pub fn extensive_form(scenarios: &[(Model, f64)], nonants: &[Vec<usize>]) -> Model {
    let mut ef = Model::new("extensive_form");
    for (k, (m, p)) in scenarios.iter().enumerate() {
        let sign = if m.sense == Sense::Maximize { -1.0 } else { 1.0 };
        let base = ef.cols.len() as u32;
        for c in &m.cols {
            ef.cols.push(Column { name: format!("s{k}.{}", c.name), cost: sign * p * c.cost, ..c.clone() });
        }
        ef.offset += sign * p * m.offset;
        for r in &m.rows {
            ef.rows.push(Row {
                name: format!("s{k}.{}", r.name),
                lower: r.lower,
                upper: r.upper,
                coefs: r.coefs.iter().map(|&(j, v)| (j + base, v)).collect(),
            });
        }
        if k > 0 {
            let first: Vec<u32> = nonants[0].iter().map(|&j| j as u32).collect();
            for (i, &j) in nonants[k].iter().enumerate() {
                ef.rows.push(Row {
                    name: format!("nonant_s{k}_{i}"),
                    lower: 0.0,
                    upper: 0.0,
                    coefs: vec![(base + j as u32, 1.0), (first[i], -1.0)],
                });
            }
        }
    }
    ef
}
