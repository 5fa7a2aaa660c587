//! The CBC command line as PuLP's `COIN_CMD` and linopy write it:
//! `meshsolve MODEL.mps [-max] [-sec N] [-ratio G] [-allow A] [-threads N]
//! [-timeMode elapsed] [-mips START] ... -solve -printingOptions all
//! -solution FILE`, answered with CBC's solution file (status line, then rows
//! and columns: index, name, value, dual or reduced cost). Exit 0 whenever the
//! solution file was written.

use std::io::Write;
use std::path::{Path, PathBuf};

use meshsolve::model::{self, Format, Model, Sense};
use meshsolve::protocol::{Solution, Status};

use crate::dropin::{self, apply_option, num, DropIn, Failure, VERSION_LINE};

/// What the command line asked for.
#[derive(Debug, Default)]
struct CbcCall {
    model: Option<PathBuf>,
    solution: Option<PathBuf>,
    maximize: bool,
    drop_in: DropIn,
}

/// Flags that take one value and mean nothing for a remote solve.
const IGNORED_WITH_VALUE: &[&str] = &[
    "-timemode",
    "-mips",
    "-presolve",
    "-gomory",
    "-knapsack",
    "-probing",
    "-cuts",
    "-strong",
    "-maxnodes",
    "-printingoptions",
    "-log",
    "-slog",
    "-preprocess",
    "-heuristics",
    "-feas",
    "-passc",
    "-passf",
    "-randomseed",
    "-randomcbcseed",
];

fn parse(args: &[String]) -> Result<CbcCall, String> {
    let mut c = CbcCall::default();
    c.drop_in.job.solve.duals = true;
    for (k, v) in dropin::split_options(&std::env::var("meshsolve_options").unwrap_or_default()) {
        apply_option(&mut c.drop_in, &k, &v)?;
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a.to_ascii_lowercase();
        let mut value = |what: &str| it.next().cloned().ok_or_else(|| format!("{a} needs {what}"));
        match flag.as_str() {
            "-max" | "-maximize" => c.maximize = true,
            "-min" | "-minimize" => c.maximize = false,
            "-solve" | "-initialsolve" | "-branchandcut" | "-quit" | "-stop" => {}
            "-sec" | "-seconds" => {
                apply_option(&mut c.drop_in, "time_limit", &value("a number of seconds")?)?
            }
            "-ratio" | "-ratiogap" => apply_option(&mut c.drop_in, "mip_gap", &value("a relative gap")?)?,
            "-allow" | "-allowablegap" => {
                // An absolute gap: keep the solver's default relative gap.
                value("an absolute gap")?;
            }
            "-threads" => apply_option(&mut c.drop_in, "threads", &value("a number of threads")?)?,
            "-solution" => c.solution = Some(PathBuf::from(value("a file name")?)),
            f if IGNORED_WITH_VALUE.contains(&f) => {
                value("a value")?;
            }
            f if f.starts_with('-') => return Err(format!("unknown CBC option {a}")),
            _ if c.model.is_none() => c.model = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    Ok(c)
}

/// Runs the CBC dialect; returns the exit code.
pub(crate) fn run(args: &[String]) -> u8 {
    if args.len() == 1 && args[0] == "-stop" {
        // The probe some tools make: say who we are, like CBC's banner.
        crate::cli::stdout_line(format_args!(
            "Welcome to {VERSION_LINE} (CBC command-line dialect)\nVersion: {}",
            env!("CARGO_PKG_VERSION")
        ));
        return 0;
    }
    let call = match parse(args) {
        Ok(c) => c,
        Err(m) => {
            crate::cli::stderr_line(format_args!("meshsolve: {m}"));
            return 2;
        }
    };
    let (Some(model_path), Some(sol_path)) = (&call.model, &call.solution) else {
        crate::cli::stderr_line(format_args!("meshsolve: the CBC dialect needs a model and -solution FILE: meshsolve MODEL.mps -solve -solution OUT.sol"));
        return 2;
    };
    let format = Format::from_path(model_path).map(|f| f.0);
    let mut model = match model::read_file(model_path, format.or(Some(Format::Mps))) {
        Ok(m) => m,
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: {e}"));
            return write(sol_path, &format!("Error - {e}"), None).map_or(1, |_| 0);
        }
    };
    let mut to_send = model_path.clone();
    let mut temp = None;
    if call.maximize && model.sense != Sense::Maximize {
        // `-max` on a file written as a minimisation: send the flipped model.
        model.sense = Sense::Maximize;
        match model.write_temp_mps("model") {
            Ok((dir, path)) => {
                to_send = path;
                temp = Some(dir);
            }
            Err(e) => {
                crate::cli::stderr_line(format_args!("meshsolve: cannot write a temporary model: {e}"));
                return 1;
            }
        }
    }
    let rt = match crate::cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: cannot start: {e}"));
            return 1;
        }
    };
    let outcome = rt.block_on(dropin::solve_one(&to_send, &call.drop_in));
    drop(temp);
    let (status_line, sol) = match &outcome {
        Ok(r) => (status_line(&r.solution), Some((&model, &r.solution))),
        Err(f) => {
            let hint = if matches!(f, Failure::NoWorker(_)) {
                "\n  nothing was solved locally; start `meshworker` on a box of this namespace"
            } else {
                ""
            };
            crate::cli::stderr_line(format_args!("meshsolve: {f}{hint}"));
            (format!("Error - {}", f.to_string().lines().next().unwrap_or_default()), None)
        }
    };
    if let Ok(r) = &outcome {
        crate::cli::stdout_line(format_args!("{}: {} on worker {}", VERSION_LINE, status_line, r.worker));
    }
    match write(sol_path, &status_line, sol) {
        Ok(()) if matches!(outcome, Err(Failure::Interrupted)) => 130,
        Ok(()) => 0,
        Err(e) => {
            crate::cli::stderr_line(format_args!("meshsolve: cannot write {}: {e}", sol_path.display()));
            1
        }
    }
}

fn status_line(s: &Solution) -> String {
    let obj = s.objective.map(num).unwrap_or_else(|| "0".into());
    match s.status {
        Status::Optimal => format!("Optimal - objective value {obj}"),
        Status::Feasible => format!("Stopped on time - objective value {obj}"),
        Status::Infeasible => "Infeasible - objective value 0".into(),
        Status::Unbounded => "Unbounded - objective value 0".into(),
        Status::TimeLimit => "Stopped on time - no solution found".into(),
    }
}

/// Writes the CBC solution file: the status line, then every row (activity,
/// dual) and every column (value, reduced cost), as `-printingOptions all` does.
fn write(path: &Path, status: &str, sol: Option<(&Model, &Solution)>) -> std::io::Result<()> {
    let mut out = format!("{status}\n");
    if let Some((m, s)) = sol.filter(|(m, s)| s.values.len() == m.cols.len()) {
        let x: Vec<f64> = s.values.iter().map(|v| v.1).collect();
        let y = s.duals.as_ref().filter(|y| y.len() == m.rows.len());
        for (i, r) in m.rows.iter().enumerate() {
            let activity: f64 = r.coefs.iter().map(|&(j, a)| a * x[j as usize]).sum();
            let dual = y.map(|y| y[i]).unwrap_or(0.0);
            out.push_str(&format!("{i:>7} {:<15} {:>15} {:>23}\n", r.name, num(activity), num(dual)));
        }
        // Reduced costs: c_j − Σ_i a_ij y_i, in the objective's own sense.
        let aty = y.map(|y| {
            let mut v = vec![0.0; m.cols.len()];
            for (i, r) in m.rows.iter().enumerate() {
                for &(j, a) in &r.coefs {
                    v[j as usize] += a * y[i];
                }
            }
            v
        });
        for (j, c) in m.cols.iter().enumerate() {
            let rc = aty.as_ref().map(|v| c.cost - v[j]).unwrap_or(0.0);
            out.push_str(&format!("{j:>7} {:<15} {:>15} {:>23}\n", c.name, num(x[j]), num(rc)));
        }
    }
    let tmp = path.with_extension("sol.tmp");
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(out.as_bytes()))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_argument_lists_pulp_writes() {
        let a: Vec<String> = "/tmp/x-pulp.mps -max -sec 60 -timeMode elapsed -ratio 0.01 -threads 2 -solve -printingOptions all -solution /tmp/x-pulp.sol"
            .split(' ')
            .map(str::to_string)
            .collect();
        let c = parse(&a).unwrap();
        assert!(c.maximize);
        assert_eq!(c.model.unwrap(), PathBuf::from("/tmp/x-pulp.mps"));
        assert_eq!(c.solution.unwrap(), PathBuf::from("/tmp/x-pulp.sol"));
        assert_eq!(c.drop_in.job.solve.time_limit, Some(60.0));
        assert_eq!(c.drop_in.job.solve.mip_gap, Some(0.01));
        assert!(parse(&["m.mps".into(), "-sec".into()]).is_err());
        assert!(parse(&["m.mps".into(), "-bogus".into()]).is_err());
    }
}
