//! The default, pure-Rust solver: `microlp` (dual simplex with LU updates, and
//! branch and bound for integer columns).

use std::time::{Duration, Instant};

use microlp::{ComparisonOp, Error, OptimizationDirection, Problem, TerminationReason};

use super::{Solution, SolveError, SolveOptions, Solver, Status};
use crate::model::{Model, Sense};

/// microlp as a [`Solver`].
pub struct MicroLp;

const VERSION: &str = "0.7";

impl Solver for MicroLp {
    fn name(&self) -> &str {
        "microlp"
    }

    fn version(&self) -> String {
        VERSION.into()
    }

    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        if let Some((k, _)) = opts.extra.first() {
            return Err(SolveError::BadOption(format!(
                "microlp takes no solver options (got `{k}`); use --time-limit or --mip-gap"
            )));
        }
        if !model.quad.is_empty() {
            return Err(SolveError::BadOption(
                "microlp solves linear models only (no quadratic terms)".into(),
            ));
        }
        let started = Instant::now();
        let solver = format!("microlp {VERSION}");
        let answer = |status, objective, values| Solution {
            status,
            objective,
            values,
            solver: solver.clone(),
            solve_seconds: started.elapsed().as_secs_f64(),
            duals: None,
        };
        let dir = match model.sense {
            Sense::Minimize => OptimizationDirection::Minimize,
            Sense::Maximize => OptimizationDirection::Maximize,
        };
        let mut p = Problem::new(dir);
        let mut vars = Vec::with_capacity(model.cols.len());
        for c in &model.cols {
            if c.lower > c.upper {
                return Ok(answer(Status::Infeasible, None, Vec::new()));
            }
            let v = if c.integer {
                // microlp keeps integer bounds in i32: a finite bound beyond it would be
                // silently clamped (a wrong optimum), so refuse the model instead.
                let range = (i32::MIN as f64)..=(i32::MAX as f64);
                if (c.lower.is_finite() && !range.contains(&c.lower.ceil()))
                    || (c.upper.is_finite() && !range.contains(&c.upper.floor()))
                {
                    return Err(SolveError::BadOption(format!(
                        "integer variable `{}` has a bound beyond ±2^31 ([{}, {}]), which microlp cannot represent; solve it with HiGHS (--solver highs)",
                        c.name, c.lower, c.upper
                    )));
                }
                let lo = if c.lower.is_finite() { c.lower.ceil() as i32 } else { i32::MIN };
                let hi = if c.upper.is_finite() { c.upper.floor() as i32 } else { i32::MAX };
                if lo > hi {
                    return Ok(answer(Status::Infeasible, None, Vec::new()));
                }
                p.add_integer_var(c.cost, (lo, hi))
            } else {
                p.add_var(c.cost, (c.lower, c.upper))
            };
            vars.push(v);
        }
        for r in &model.rows {
            if r.coefs.is_empty() {
                if r.lower > 1e-9 || r.upper < -1e-9 {
                    return Ok(answer(Status::Infeasible, None, Vec::new()));
                }
                continue;
            }
            let expr: Vec<(microlp::Variable, f64)> =
                r.coefs.iter().map(|&(j, v)| (vars[j as usize], v)).collect();
            if r.lower == r.upper {
                p.add_constraint(expr, ComparisonOp::Eq, r.lower);
                continue;
            }
            if r.lower.is_finite() {
                p.add_constraint(expr.clone(), ComparisonOp::Ge, r.lower);
            }
            if r.upper.is_finite() {
                p.add_constraint(expr, ComparisonOp::Le, r.upper);
            }
        }
        let mut o = microlp::SolveOptions::default();
        o.time_limit = opts.time_limit.map(Duration::from_secs_f64);
        if let Some(g) = opts.mip_gap {
            o.mip_gap = g;
        }
        if let Some(ws) = &opts.warm_start {
            if p.has_integer_vars() && ws.len() == vars.len() && ws.iter().all(|v| v.is_finite()) {
                o.warm_start = Some(vars.iter().copied().zip(ws.iter().copied()).collect());
            }
        }
        match p.solve_with(o) {
            Ok(outcome) => {
                let proven = outcome.is_optimal();
                let reason = outcome.termination_reason();
                match outcome.into_solution() {
                    Ok(sol) => {
                        let values: Vec<(String, f64)> = model
                            .cols
                            .iter()
                            .zip(&vars)
                            .map(|(c, &v)| {
                                let x = sol.var_value(v);
                                (c.name.clone(), if c.integer { x.round() } else { x })
                            })
                            .collect();
                        // An unbounded integer variable is held within i32 by microlp: a
                        // value at that edge may be the clamp, not the optimum.
                        if let Some((name, _)) = values
                            .iter()
                            .zip(&model.cols)
                            .find(|((_, v), c)| c.integer && v.abs() >= i32::MAX as f64 - 0.5)
                            .map(|(v, _)| v)
                        {
                            return Err(SolveError::BadOption(format!(
                                "integer variable `{name}` reached microlp's limit of ±2^31; the answer could be wrong, so it is refused: solve it with HiGHS (--solver highs)"
                            )));
                        }
                        let x: Vec<f64> = values.iter().map(|v| v.1).collect();
                        let status = if proven && reason == TerminationReason::ProvenOptimal {
                            Status::Optimal
                        } else {
                            Status::Feasible
                        };
                        let mut a = answer(status, Some(model.objective_of(&x)), values);
                        if opts.duals && status == Status::Optimal && model.num_integers() == 0 {
                            a.duals = super::duals::lp_duals(model, opts.time_limit);
                            a.solve_seconds = started.elapsed().as_secs_f64();
                        }
                        Ok(a)
                    }
                    Err(_) => Ok(answer(Status::TimeLimit, None, Vec::new())),
                }
            }
            Err(Error::Infeasible) => Ok(answer(Status::Infeasible, None, Vec::new())),
            Err(Error::Unbounded) => Ok(answer(Status::Unbounded, None, Vec::new())),
            Err(e) => Err(SolveError::Failed { solver, message: e.to_string() }),
        }
    }
}
