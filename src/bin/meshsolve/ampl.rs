//! The AMPL solver protocol: `meshsolve STUB[.nl] -AMPL [key=value ...]`
//! reads `STUB.nl`, solves it on the mesh and writes `STUB.sol` in the ASL
//! layout that Pyomo, JuMP and AMPL read. Options come from the arguments and
//! from `meshsolve_options`. Exit 0 whenever a `.sol` was written.

use std::io::Write;
use std::path::{Path, PathBuf};

use meshsolve::model::nl::{self, NlProblem};
use meshsolve::model::{Model, Row};
use meshsolve::protocol::Status;

use crate::dropin::{self, apply_option, num, DropIn, Failure, VERSION_LINE};

/// `solve_result_num` codes (AMPL book §14.2 ranges).
mod code {
    pub const SOLVED: i32 = 0;
    pub const INFEASIBLE: i32 = 200;
    pub const UNBOUNDED: i32 = 300;
    pub const LIMIT_FEASIBLE: i32 = 403;
    pub const LIMIT_NO_SOLUTION: i32 = 413;
    pub const FAILURE: i32 = 500;
    pub const NO_WORKER: i32 = 501;
    pub const BAD_MODEL: i32 = 502;
    pub const INTERRUPTED: i32 = 503;
}

/// What goes into a `.sol` file.
struct Sol<'a> {
    message: String,
    options: &'a [i64],
    cons: usize,
    vars: usize,
    duals: Option<Vec<f64>>,
    primals: Option<Vec<f64>>,
    code: i32,
}

fn write_sol(path: &Path, s: &Sol) -> std::io::Result<()> {
    let mut out = String::new();
    for line in s.message.lines() {
        out.push_str(if line.is_empty() { " " } else { line });
        out.push('\n');
    }
    out.push('\n');
    out.push_str("Options\n");
    out.push_str(&format!("{}\n", s.options.len()));
    for o in s.options {
        out.push_str(&format!("{o}\n"));
    }
    let duals = s.duals.as_ref().filter(|d| d.len() == s.cons);
    let primals = s.primals.as_ref().filter(|p| p.len() == s.vars);
    out.push_str(&format!(
        "{}\n{}\n{}\n{}\n",
        s.cons,
        duals.map_or(0, |d| d.len()),
        s.vars,
        primals.map_or(0, |p| p.len())
    ));
    for v in duals.into_iter().flatten().chain(primals.into_iter().flatten()) {
        out.push_str(&num(*v));
        out.push('\n');
    }
    out.push_str(&format!("objno 0 {}\n", s.code));
    let tmp = path.with_extension("sol.tmp");
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(out.as_bytes()))?;
    std::fs::rename(&tmp, path)
}

/// Names of a Pyomo `.row`/`.col` file, when present and usable as MPS names
/// (non-empty, no blanks, unique, not the objective row's name).
fn labels(path: &Path, n: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text.lines().take(n).map(str::to_string).collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    let ok = names.len() == n
        && unique.len() == n
        && names
            .iter()
            .all(|s| !s.is_empty() && s.len() < 256 && !s.chars().any(char::is_whitespace) && s != "obj");
    ok.then_some(names)
}

/// Runs the AMPL dialect; returns the exit code.
pub(crate) fn run(args: &[String]) -> u8 {
    let mut stub: Option<&str> = None;
    let mut d = DropIn::default();
    d.job.solve.duals = true;
    let mut pairs = dropin::split_options(&std::env::var("meshsolve_options").unwrap_or_default());
    for a in args {
        if a == "-AMPL" {
            continue;
        }
        if a.contains('=') {
            pairs.extend(dropin::split_options(a));
        } else if stub.is_none() && !a.starts_with('-') {
            stub = Some(a);
        }
    }
    let Some(stub) = stub else {
        crate::cli::stderr_line(format_args!(
            "meshsolve: -AMPL needs the stub of an .nl file: meshsolve STUB.nl -AMPL [key=value ...]"
        ));
        return 2;
    };
    let base = stub.strip_suffix(".nl").unwrap_or(stub);
    let nl_path = PathBuf::from(format!("{base}.nl"));
    let sol_path = PathBuf::from(format!("{base}.sol"));
    let data = match std::fs::read(&nl_path) {
        Ok(d) => d,
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: cannot read {}: {e}", nl_path.display()));
            return 1;
        }
    };
    let name =
        nl_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let problem = match nl::read_on_big_stack(data.clone(), name) {
        Ok(p) => p,
        Err(e) => return refuse(&nl_path, &sol_path, &data, &e.to_string()),
    };
    for (k, v) in &pairs {
        if let Err(m) = apply_option(&mut d, k, v) {
            return finish(&sol_path, &problem, &format!("meshsolve: bad option {m}"), None, code::FAILURE);
        }
    }
    let rt = match crate::cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: cannot start: {e}"));
            return 1;
        }
    };
    let outcome = rt.block_on(solve(&problem, base, &d));
    match outcome {
        Ok((message, answer, code)) => finish(&sol_path, &problem, &message, answer, code),
        Err(f) => {
            let hint = match &f {
                Failure::NoWorker(_) => {
                    "\n  nothing was solved locally; start `meshworker` on a box of this namespace (or set wait=SECONDS in meshsolve_options)"
                }
                _ => "",
            };
            crate::cli::stderr_line(format_args!("meshsolve: {f}{hint}"));
            let code = match f {
                Failure::NoWorker(_) => code::NO_WORKER,
                Failure::Interrupted => code::INTERRUPTED,
                Failure::Job(_) | Failure::Setup(_) => code::FAILURE,
            };
            let rc = finish(&sol_path, &problem, &format!("meshsolve: {f}"), None, code);
            if code == code::INTERRUPTED {
                130
            } else {
                rc
            }
        }
    }
}

/// A malformed or unsupported `.nl`: a `.sol` saying so when the header gives
/// the sizes, else only the message and exit 1.
fn refuse(nl_path: &Path, sol_path: &Path, data: &[u8], why: &str) -> u8 {
    let message = format!("meshsolve: {}: {why}", nl_path.display());
    crate::cli::stderr_line(format_args!("{message}"));
    match nl::peek_header(data) {
        Some((options, vars, cons)) => {
            let sol = Sol {
                message,
                options: &options,
                cons,
                vars,
                duals: None,
                primals: None,
                code: code::BAD_MODEL,
            };
            match write_sol(sol_path, &sol) {
                Ok(()) => 0,
                Err(e) => {
                    crate::cli::stderr_line(format_args!(
                        "meshsolve: cannot write {}: {e}",
                        sol_path.display()
                    ));
                    1
                }
            }
        }
        None => 1,
    }
}

/// Primal and dual values to report.
type Answer = (Vec<f64>, Option<Vec<f64>>);

fn finish(sol_path: &Path, p: &NlProblem, message: &str, answer: Option<Answer>, code: i32) -> u8 {
    let (primals, duals) = match answer {
        Some((x, y)) => (Some(x), y),
        None => (None, None),
    };
    let sol = Sol {
        message: message.to_string(),
        options: &p.options,
        cons: p.model.rows.len(),
        vars: p.model.cols.len(),
        duals,
        primals,
        code,
    };
    match write_sol(sol_path, &sol) {
        Ok(()) => {
            crate::cli::stdout_line(format_args!("{}", message.lines().next().unwrap_or_default()));
            0
        }
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: cannot write {}: {e}", sol_path.display()));
            1
        }
    }
}

/// The model sent to the worker: free rows dropped (an MPS N row is another
/// objective), labels as names when they are usable.
fn transport_model(p: &NlProblem, base: &str) -> (Model, Vec<Option<usize>>) {
    let mut m = p.model.clone();
    if let Some(cols) = labels(Path::new(&format!("{base}.col")), m.cols.len()) {
        for (c, n) in m.cols.iter_mut().zip(cols) {
            c.name = n;
        }
    }
    let row_labels = labels(Path::new(&format!("{base}.row")), m.rows.len());
    let mut map = Vec::with_capacity(m.rows.len());
    let mut rows: Vec<Row> = Vec::with_capacity(m.rows.len());
    for (i, mut r) in std::mem::take(&mut m.rows).into_iter().enumerate() {
        if r.lower == f64::NEG_INFINITY && r.upper == f64::INFINITY {
            map.push(None);
            continue;
        }
        if let Some(l) = &row_labels {
            r.name = l[i].clone();
        }
        map.push(Some(rows.len()));
        rows.push(r);
    }
    m.rows = rows;
    (m, map)
}

/// Solves the problem on the mesh: the `.sol` message, the values and the code.
async fn solve(p: &NlProblem, base: &str, d: &DropIn) -> Result<(String, Option<Answer>, i32), Failure> {
    let m = &p.model;
    // Bounds that contradict each other: infeasible, without asking anyone.
    let bad_col = m.cols.iter().position(|c| c.lower > c.upper);
    let bad_row = m.rows.iter().position(|r| r.lower > r.upper);
    if bad_col.is_some() || bad_row.is_some() {
        let what = match (bad_col, bad_row) {
            (Some(j), _) => format!("variable {j} has lower bound above its upper bound"),
            (_, Some(i)) => format!("constraint {i} has lower bound above its upper bound"),
            _ => unreachable!(),
        };
        return Ok((format!("{VERSION_LINE}: infeasible problem ({what})"), None, code::INFEASIBLE));
    }
    let (tm, row_map) = transport_model(p, base);
    // A quadratic objective needs a QP solver: ask for HiGHS unless told otherwise.
    let mut d = d.clone();
    if !tm.quad.is_empty() && d.job.solver.is_none() {
        d.job.solver = Some("highs".into());
    }
    let d = &d;
    let result = match tm.write_temp_mps(&tm.name) {
        // The directory lives until the solve has answered.
        Ok((_dir, path)) => dropin::solve_one(&path, d).await,
        Err(e) => Err(Failure::Setup(format!("cannot write the model for the worker: {e}"))),
    };
    let r = result?;
    let sol = &r.solution;
    let where_ = format!("{} on worker {} in {:.3} s", sol.solver, r.worker, sol.solve_seconds);
    let objective = sol.objective.map(num).unwrap_or_default();
    let primals = (!sol.values.is_empty() && sol.values.len() == m.cols.len())
        .then(|| sol.values.iter().map(|(_, v)| *v).collect::<Vec<f64>>());
    let duals = sol
        .duals
        .as_ref()
        .filter(|y| y.len() == tm.rows.len())
        .map(|y| row_map.iter().map(|i| i.map(|i| y[i]).unwrap_or(0.0)).collect::<Vec<f64>>());
    // Primals and duals are all present or all absent; duals only with primals.
    let answer = primals.map(|x| (x, duals));
    let gap_stop = d.job.solve.mip_gap.is_some_and(|g| g > 0.0)
        && d.job.solve.time_limit.is_none_or(|t| sol.solve_seconds < 0.95 * t);
    let (text, code) = match sol.status {
        Status::Optimal => (format!("optimal solution; objective {objective}"), code::SOLVED),
        Status::Feasible if gap_stop => {
            (format!("solution within the relative gap; objective {objective}"), code::SOLVED)
        }
        Status::Feasible => (
            format!("time limit reached with a feasible solution; objective {objective}"),
            code::LIMIT_FEASIBLE,
        ),
        Status::Infeasible => ("infeasible problem".to_string(), code::INFEASIBLE),
        Status::Unbounded => ("unbounded problem".to_string(), code::UNBOUNDED),
        Status::TimeLimit => {
            ("time limit reached without a feasible solution".to_string(), code::LIMIT_NO_SOLUTION)
        }
    };
    Ok((format!("{VERSION_LINE}: {text}\n{where_}"), answer, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sol_layout_follows_asl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sol");
        let sol = Sol {
            message: "meshsolve 0.1.0: optimal solution; objective 12\nsolved".into(),
            options: &[1, 1, 0],
            cons: 2,
            vars: 3,
            duals: Some(vec![0.5, 0.0]),
            primals: Some(vec![1.0, 0.0, 2.5]),
            code: 0,
        };
        write_sol(&path, &sol).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "meshsolve 0.1.0: optimal solution; objective 12\nsolved\n\nOptions\n3\n1\n1\n0\n2\n2\n3\n3\n0.5\n0\n1\n0\n2.5\nobjno 0 0\n"
        );
        // Wrong-length values are left out, never written half.
        let sol = Sol { duals: Some(vec![1.0]), primals: None, ..sol };
        write_sol(&path, &sol).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("2\n0\n3\n0\nobjno 0 0\n"), "{text}");
    }
}
