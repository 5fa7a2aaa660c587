//! The scenario subproblems of progressive hedging, built from a scenario's
//! base model: plain (W only), proximal (W and ρ/2·(x − x̄)², quadratic or
//! linearised) and fixed (first stage at x̄); and the extensive form.

use serde::{Deserialize, Serialize};

use crate::model::{Column, Model, Row, Sense};

/// What one PH step solves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepMode {
    /// `f(x) + W·x`: iteration 0 (W = 0) and the Lagrangian bound.
    Plain,
    /// `f(x) + W·x + Σ ρ/2 (x − x̄)²`: a PH iteration.
    Prox,
    /// `f(x)` with the first stage fixed at x̄: the expected cost of x̄.
    Fixed,
}

/// One step's data for one scenario: only what changes between iterations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// Which subproblem.
    pub mode: StepMode,
    /// The scenario's weights, one per first-stage variable.
    pub w: Vec<f64>,
    /// Consensus x̄.
    pub xbar: Vec<f64>,
    /// Penalties ρ.
    pub rho: Vec<f64>,
}

/// A step's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReply {
    /// Solver status (`optimal`, `infeasible`, ...).
    pub status: crate::solver::Status,
    /// `f(x)`: the scenario's own objective at the solution (no W, no proximal term).
    pub objective: Option<f64>,
    /// First-stage values.
    pub x: Vec<f64>,
    /// Seconds in the solver.
    pub solve_seconds: f64,
    /// Whether the proximal term was quadratic (else linearised).
    pub quadratic: bool,
}

/// Tangent offsets of the linearised proximal term, relative to a variable's scale.
fn tangents(scale: f64) -> Vec<f64> {
    let mut d = vec![0.0];
    for i in -30..=7 {
        let v = scale * 2f64.powi(i);
        d.push(v);
        d.push(-v);
    }
    d
}

/// Builds the subproblem of `step` from `base`. `nonants` are column indices of
/// the first-stage variables. The result minimises; its first `base.cols.len()`
/// columns are the base model's.
pub fn build(base: &Model, nonants: &[usize], step: &Step, quadratic: bool) -> Model {
    let mut m = base.clone();
    // Work in minimisation form.
    if m.sense == Sense::Maximize {
        for c in &mut m.cols {
            c.cost = -c.cost;
        }
        m.offset = -m.offset;
        m.sense = Sense::Minimize;
    }
    match step.mode {
        StepMode::Fixed => {
            for (k, &j) in nonants.iter().enumerate() {
                let c = &mut m.cols[j];
                let v = if c.integer { step.xbar[k].round() } else { step.xbar[k] };
                let v = v.clamp(c.lower, c.upper);
                c.lower = v;
                c.upper = v;
            }
        }
        StepMode::Plain => {
            for (k, &j) in nonants.iter().enumerate() {
                m.cols[j].cost += step.w[k];
            }
        }
        StepMode::Prox => {
            for (k, &j) in nonants.iter().enumerate() {
                let (w, xb, rho) = (step.w[k], step.xbar[k], step.rho[k]);
                m.cols[j].cost += w;
                if quadratic {
                    m.cols[j].cost -= rho * xb;
                    m.quad.push((j as u32, rho));
                    m.offset += 0.5 * rho * xb * xb;
                    continue;
                }
                // t >= (x - x̄)², outer-approximated by tangents at x - x̄ = d.
                let c = &base.cols[j];
                let range = c.upper - c.lower;
                let scale =
                    if range.is_finite() && range > 0.0 { range / 2.0 } else { xb.abs().max(1.0) * 2.0 };
                let t = m.cols.len() as u32;
                m.cols.push(Column {
                    name: format!("__prox_{}", c.name),
                    lower: 0.0,
                    upper: f64::INFINITY,
                    cost: rho / 2.0,
                    integer: false,
                });
                for d in tangents(scale) {
                    m.rows.push(Row {
                        name: format!("__tan_{}_{}", c.name, m.rows.len()),
                        lower: -2.0 * d * xb - d * d,
                        upper: f64::INFINITY,
                        coefs: if d == 0.0 { vec![(t, 1.0)] } else { vec![(j as u32, -2.0 * d), (t, 1.0)] },
                    });
                }
            }
        }
    }
    m
}

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
