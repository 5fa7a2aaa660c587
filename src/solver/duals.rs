//! Row duals of a linear program for solvers that do not report them
//! (microlp): the dual LP, solved with microlp itself.
//!
//! For `min c'x` subject to `l ≤ Ax ≤ u` and `lx ≤ x ≤ ux`, the dual is
//! `max l'y⁺ − u'y⁻ + lx'z⁺ − ux'z⁻` subject to `A'(y⁺ − y⁻) + z⁺ − z⁻ = c`,
//! all parts ≥ 0 and present only where the matching bound is finite (one free
//! variable where a row or column is fixed). The row dual `y⁺ − y⁻` is then the
//! derivative of the objective by the row's bound; a maximisation is solved as
//! `min −c'x` and its duals negated, so the sign convention is the one HiGHS
//! and AMPL solvers use: the derivative of the objective in its own sense.

use std::time::Duration;

use microlp::{ComparisonOp, OptimizationDirection, Problem, Variable};

use crate::model::{Model, Sense};

/// The row duals of the continuous `model`, or `None` when the dual LP could
/// not be solved (within `time_limit`, seconds).
pub(crate) fn lp_duals(model: &Model, time_limit: Option<f64>) -> Option<Vec<f64>> {
    let sign = if model.sense == Sense::Maximize { -1.0 } else { 1.0 };
    let mut p = Problem::new(OptimizationDirection::Maximize);
    // Per row: (plus part, minus part) or one free part for an equality.
    let mut ys: Vec<(Option<Variable>, Option<Variable>)> = Vec::with_capacity(model.rows.len());
    let mut column_terms: Vec<Vec<(Variable, f64)>> = vec![Vec::new(); model.cols.len()];
    for r in &model.rows {
        let (plus, minus) = if r.lower == r.upper && r.lower.is_finite() {
            (Some(p.add_var(r.lower, (f64::NEG_INFINITY, f64::INFINITY))), None)
        } else {
            let plus = r.lower.is_finite().then(|| p.add_var(r.lower, (0.0, f64::INFINITY)));
            let minus = r.upper.is_finite().then(|| p.add_var(-r.upper, (0.0, f64::INFINITY)));
            (plus, minus)
        };
        for &(j, a) in &r.coefs {
            if let Some(v) = plus {
                column_terms[j as usize].push((v, a));
            }
            if let Some(v) = minus {
                column_terms[j as usize].push((v, -a));
            }
        }
        ys.push((plus, minus));
    }
    for (c, mut terms) in model.cols.iter().zip(column_terms) {
        if c.lower == c.upper && c.lower.is_finite() {
            terms.push((p.add_var(c.lower, (f64::NEG_INFINITY, f64::INFINITY)), 1.0));
        } else {
            if c.lower.is_finite() {
                terms.push((p.add_var(c.lower, (0.0, f64::INFINITY)), 1.0));
            }
            if c.upper.is_finite() {
                terms.push((p.add_var(-c.upper, (0.0, f64::INFINITY)), -1.0));
            }
        }
        p.add_constraint(terms, ComparisonOp::Eq, sign * c.cost);
    }
    let mut o = microlp::SolveOptions::default();
    o.time_limit = time_limit.and_then(|t| Duration::try_from_secs_f64(t).ok());
    let outcome = p.solve_with(o).ok()?;
    if !outcome.is_optimal() {
        return None;
    }
    let sol = outcome.into_solution().ok()?;
    let part = |v: Option<Variable>| v.map(|v| sol.var_value(v)).unwrap_or(0.0);
    Some(ys.into_iter().map(|(plus, minus)| sign * (part(plus) - part(minus))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_str, Format};

    #[test]
    fn duals_of_a_small_lp_in_both_senses() {
        // min x + y  s.t.  x + 2y >= 2,  3x + y >= 3: duals 2/5 and 1/5.
        let m = parse_str(
            "minimize\n obj: x + y\nsubject to\n c0: x + 2 y >= 2\n c1: 3 x + y >= 3\nend\n",
            Format::Lp,
        )
        .unwrap();
        let d = lp_duals(&m, None).unwrap();
        assert!((d[0] - 0.4).abs() < 1e-9 && (d[1] - 0.2).abs() < 1e-9, "{d:?}");
        // The same as max -x - y: the derivative of the objective flips sign.
        let m = parse_str(
            "maximize\n obj: - x - y\nsubject to\n c0: x + 2 y >= 2\n c1: 3 x + y >= 3\nend\n",
            Format::Lp,
        )
        .unwrap();
        let d = lp_duals(&m, None).unwrap();
        assert!((d[0] + 0.4).abs() < 1e-9 && (d[1] + 0.2).abs() < 1e-9, "{d:?}");
        // A slack row has a zero dual; an equality row may take either sign.
        let m = parse_str(
            "minimize\n obj: x + y\nsubject to\n c0: x + y >= 1\n c1: x <= 10\n c2: x - y = 0\nend\n",
            Format::Lp,
        )
        .unwrap();
        let d = lp_duals(&m, None).unwrap();
        assert!((d[0] - 1.0).abs() < 1e-9 && d[1].abs() < 1e-9 && d[2].abs() < 1e-9, "{d:?}");
    }
}
