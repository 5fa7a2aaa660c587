//! Subproblems with a proximal term, built from a base model for one step of
//! a decomposition method (progressive hedging): plain (W only), proximal (W and
//! ρ/2·(x − x̄)², quadratic or linearised by tangents) and fixed (first stage at
//! x̄). The solver layer owns this because whether the term can be quadratic
//! depends on the solver.

use crate::model::{Column, Model, Row, Sense};
use crate::protocol::{Step, StepMode};

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
                // (clamp would panic on an empty range: that column stays infeasible.)
                let v = if c.lower <= c.upper { v.clamp(c.lower, c.upper) } else { v };
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
                    m.quad.push((j as u32, j as u32, rho));
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
