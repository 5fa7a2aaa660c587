//! HiGHS through the `highs` crate (cargo feature `highs`): the preferred
//! solver when built in.

use std::time::Instant;

use highs::{ColProblem, HighsModelStatus, Sense as HSense};

use super::{Solution, SolveError, SolveOptions, Solver, Status};
use crate::model::{Model, Sense};

/// HiGHS as a [`Solver`].
pub struct Highs;

/// The HiGHS release that `highs-sys` builds.
const VERSION: &str = "1.16.0";

impl Solver for Highs {
    fn name(&self) -> &str {
        "highs"
    }

    fn version(&self) -> String {
        VERSION.into()
    }

    fn supports_qp(&self) -> bool {
        true
    }

    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        self.run(model, opts, true)
    }
}

impl Highs {
    /// Solves once; with presolve, a model presolve finds "infeasible or
    /// unbounded" is solved again without it, to say which.
    fn run(&self, model: &Model, opts: &SolveOptions, presolve: bool) -> Result<Solution, SolveError> {
        let started = Instant::now();
        let solver = format!("highs {VERSION}");
        let mut p = ColProblem::new();
        let rows: Vec<_> = model.rows.iter().map(|r| p.add_row(r.lower..=r.upper)).collect();
        let mut by_col: Vec<Vec<(highs::Row, f64)>> = vec![Vec::new(); model.cols.len()];
        for (i, r) in model.rows.iter().enumerate() {
            for &(j, v) in &r.coefs {
                by_col[j as usize].push((rows[i], v));
            }
        }
        for (c, factors) in model.cols.iter().zip(by_col) {
            p.add_column_with_integrality(c.cost, c.lower..=c.upper, factors, c.integer);
        }
        let sense = match model.sense {
            Sense::Minimize => HSense::Minimise,
            Sense::Maximize => HSense::Maximise,
        };
        let mut m = p.optimise(sense);
        m.make_quiet();
        if !model.quad.is_empty() {
            if model.num_integers() > 0 {
                return Err(SolveError::BadOption("HiGHS does not solve mixed-integer QPs".into()));
            }
            // Lower triangle by column: entry (i, j), i <= j, of the upper triangle
            // is row j of column i.
            let mut cols: Vec<Vec<(usize, f64)>> = vec![Vec::new(); model.cols.len()];
            for &(i, j, q) in &model.quad {
                cols[i as usize].push((j as usize, q));
            }
            for c in &mut cols {
                c.sort_by_key(|e| e.0);
                c.dedup_by(|b, a| {
                    if a.0 == b.0 {
                        a.1 += b.1;
                        true
                    } else {
                        false
                    }
                });
            }
            m.try_pass_hessian(highs::HessianFormat::Triangular, cols).map_err(|e| SolveError::Failed {
                solver: solver.clone(),
                message: format!("cannot pass the quadratic objective: {e}"),
            })?;
        }
        if let Some(ws) = &opts.warm_start {
            if ws.len() == model.cols.len() {
                let _ = m.try_set_solution(Some(ws), None, None, None);
            }
        }
        m.set_option("threads", 1);
        if !presolve {
            m.set_option("presolve", "off");
        }
        m.set_option("mip_rel_gap", opts.mip_gap.unwrap_or(0.0));
        m.set_option("mip_abs_gap", 0.0);
        if let Some(t) = opts.time_limit {
            m.set_option("time_limit", t);
        }
        for (k, v) in &opts.extra {
            let ok = if let Ok(i) = v.parse::<i32>() {
                m.try_set_option(k.as_str(), i).is_ok()
            } else if let Ok(f) = v.parse::<f64>() {
                m.try_set_option(k.as_str(), f).is_ok()
            } else if let Ok(b) = v.parse::<bool>() {
                m.try_set_option(k.as_str(), b).is_ok()
            } else {
                m.try_set_option(k.as_str(), v.as_str()).is_ok()
            };
            if !ok {
                return Err(SolveError::BadOption(format!("HiGHS rejected option {k}={v}")));
            }
        }
        let solved = m
            .try_solve()
            .map_err(|e| SolveError::Failed { solver: solver.clone(), message: format!("{e:?}") })?;
        let with_values = |status| {
            let sol = solved.get_solution();
            let x = sol.columns();
            let values = model
                .cols
                .iter()
                .zip(x)
                .map(|(c, &v)| (c.name.clone(), if c.integer { v.round() } else { v }))
                .collect();
            (status, Some(model.objective_of(x)), values)
        };
        let duals = (opts.duals && model.num_integers() == 0 && model.quad.is_empty())
            .then(|| solved.get_solution().dual_rows().to_vec());
        let (status, objective, values) = match solved.status() {
            HighsModelStatus::Optimal | HighsModelStatus::ModelEmpty => with_values(Status::Optimal),
            HighsModelStatus::Infeasible => (Status::Infeasible, None, Vec::new()),
            HighsModelStatus::Unbounded => (Status::Unbounded, None, Vec::new()),
            HighsModelStatus::UnboundedOrInfeasible if presolve => return self.run(model, opts, false),
            // Even the simplex could not tell: no feasible point was found, which is what is known.
            HighsModelStatus::UnboundedOrInfeasible => (Status::Infeasible, None, Vec::new()),
            HighsModelStatus::ReachedTimeLimit | HighsModelStatus::ReachedIterationLimit => {
                if solved.primal_solution_status() == highs::HighsSolutionStatus::Feasible {
                    with_values(Status::Feasible)
                } else {
                    (Status::TimeLimit, None, Vec::new())
                }
            }
            other => return Err(SolveError::Failed { solver, message: format!("model status {other:?}") }),
        };
        let duals = duals.filter(|_| status == Status::Optimal && !values.is_empty());
        Ok(Solution {
            status,
            objective,
            values,
            solver,
            solve_seconds: started.elapsed().as_secs_f64(),
            duals,
        })
    }
}
