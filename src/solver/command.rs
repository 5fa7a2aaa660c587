//! Solvers run as a command-line executable (CBC, GLPK's `glpsol`, the HiGHS
//! executable), and what every external solver shares: the model written as a
//! renamed minimisation MPS in a private directory, the solver process tied to
//! its parent, and the answer mapped back to the model's names and sense.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::found::{run_probe, Available, Backend, Kind};
use super::{Solution, SolveError, SolveOptions, Solver, Status};
use crate::model::Model;

/// A model written for an external solver, and how to read its answer back.
pub(super) struct Prepared {
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The MPS file.
    pub mps: PathBuf,
    sign: f64,
    offset: f64,
    names: Vec<String>,
    rows: usize,
    integer: bool,
}

/// "Unbounded" from a solver says only that an improving ray exists (Gurobi and
/// CPLEX document it so); it is the answer only if the model has a feasible
/// point. On that rare answer, the model is solved again without objective to
/// tell which it is.
pub(super) fn confirm_unbounded(
    solver: &dyn Solver,
    model: &Model,
    opts: &SolveOptions,
    sol: Solution,
) -> Result<Solution, SolveError> {
    if sol.status != Status::Unbounded {
        return Ok(sol);
    }
    let mut feasibility = model.clone();
    for c in &mut feasibility.cols {
        c.cost = 0.0;
    }
    feasibility.quad.clear();
    feasibility.offset = 0.0;
    let check = solver.solve(&feasibility, &SolveOptions { duals: false, log: false, ..opts.clone() })?;
    Ok(if check.status == Status::Infeasible { Solution { status: Status::Infeasible, ..sol } } else { sol })
}

/// The answer for a model whose own bounds contradict each other (a side above
/// the other): infeasible, without asking a solver (MPS cannot even say it).
pub(super) fn contradictory(model: &Model, solver: String) -> Option<Solution> {
    let bad = model.rows.iter().any(|r| r.lower > r.upper) || model.cols.iter().any(|c| c.lower > c.upper);
    bad.then(|| Solution {
        status: Status::Infeasible,
        objective: None,
        values: Vec::new(),
        solver,
        solve_seconds: 0.0,
        duals: None,
    })
}

impl Prepared {
    /// Writes `model` (see [`Model::for_external`]).
    pub fn new(model: &Model) -> Result<Prepared, SolveError> {
        let (copy, sign) = model.for_external();
        let (dir, mps) = copy.write_temp_mps("model").map_err(|e| SolveError::Failed {
            solver: "meshsolve".into(),
            message: format!("cannot write the model for the solver: {e}"),
        })?;
        Ok(Prepared {
            dir,
            mps,
            sign,
            offset: model.offset,
            names: model.cols.iter().map(|c| c.name.clone()).collect(),
            rows: model.rows.len(),
            integer: model.num_integers() > 0,
        })
    }

    /// A file next to the model.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The answer in the model's own terms: `values` and `duals` are keyed by the
    /// renamed columns (`C0…`) and rows (`R0…`); missing ones are 0.
    pub fn solution(
        &self,
        status: Status,
        objective: Option<f64>,
        values: &HashMap<String, f64>,
        duals: Option<&HashMap<String, f64>>,
        solver: String,
        started: Instant,
    ) -> Solution {
        let solved = matches!(status, Status::Optimal | Status::Feasible);
        Solution {
            status,
            objective: objective.filter(|_| solved).map(|o| self.sign * o + self.offset),
            values: if solved {
                self.names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| (n.clone(), values.get(&format!("C{j}")).copied().unwrap_or(0.0)))
                    .collect()
            } else {
                Vec::new()
            },
            solver,
            solve_seconds: started.elapsed().as_secs_f64(),
            duals: duals.filter(|_| status == Status::Optimal && !self.integer).map(|d| {
                (0..self.rows).map(|i| self.sign * d.get(&format!("R{i}")).copied().unwrap_or(0.0)).collect()
            }),
        }
    }
}

/// Threads a solve may use: `threads=N` from the options, else 1 (a worker runs
/// one solve per slot, so a solver that took every core would overrun the box).
pub(super) fn threads(opts: &SolveOptions) -> Result<u32, SolveError> {
    match opts.extra.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case("threads")) {
        None => Ok(1),
        Some((_, v)) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(SolveError::BadOption(format!("threads={v}: expected a whole number from 1 to 1024"))),
        },
    }
}

/// The options other than `threads`, which [`threads`] handles.
pub(super) fn passthrough(opts: &SolveOptions) -> impl Iterator<Item = &(String, String)> {
    opts.extra.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("threads"))
}

/// Which of an external solver's outputs is its log, to show as it comes when
/// the job asked for it (`meshsolve --log`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Echo {
    /// Neither (no log asked for).
    Off,
    /// Standard error (standard output is the answer).
    Stderr,
    /// Both.
    Both,
}

/// Runs an external solver to completion; it dies with its parent (the solver
/// child), and shares its process group, so cancelling the job kills it too.
/// What `echo` names is copied line by line to this process's standard error
/// as it comes (the worker passes it on to the client).
pub(super) fn run_guarded(
    cmd: &mut Command,
    kind: Kind,
    echo: Echo,
    dir: &Path,
) -> Result<std::process::Output, SolveError> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Whatever the solver writes beside its answer (HiGHS's `Highs.log`, CPLEX's
    // clone logs) lands in the job's directory and goes with it, not in the
    // worker's working directory. Only with absolute paths: a relative program
    // or model path (a relative PATH entry or TMPDIR) is relative to the
    // worker's directory, so it keeps that one.
    if Path::new(cmd.get_program()).is_absolute() && dir.is_absolute() {
        cmd.current_dir(dir);
    }
    // SAFETY: `pre_exec` runs between fork and exec, where only async-signal-safe
    // calls are allowed: prctl is a plain syscall on the process being set up and
    // the closure allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let missing = |e: std::io::Error| SolveError::Missing {
        solver: kind.to_string(),
        message: format!("cannot run {program}: {e}"),
    };
    if echo == Echo::Off {
        return cmd.output().map_err(missing);
    }
    let mut child = cmd.spawn().map_err(missing)?;
    let copy = |stream: Option<Box<dyn std::io::Read + Send>>, show: bool| {
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut kept = Vec::new();
            let Some(stream) = stream else { return kept };
            let mut reader = std::io::BufReader::new(stream);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if show {
                    let _ = std::io::stderr().write_all(&line);
                }
                kept.extend_from_slice(&line);
                line.clear();
            }
            kept
        })
    };
    let out =
        copy(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), echo == Echo::Both);
    let err = copy(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), true);
    let status = child.wait().map_err(missing)?;
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// A command-line solver's log is its standard output and error.
fn echo(opts: &SolveOptions) -> Echo {
    if opts.log {
        Echo::Both
    } else {
        Echo::Off
    }
}

/// The last lines of a solver's output, for error messages.
pub(super) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" / ")
}

/// Asks an executable for its version.
pub(super) fn probe(kind: Kind, exe: &Path, timeout: Duration) -> Result<Available, String> {
    let arg = match kind {
        Kind::Cbc => "-quit",
        _ => "--version",
    };
    let (out, err) = run_probe(Command::new(exe).arg(arg), timeout)?;
    let text = format!("{out}\n{err}");
    let version = match kind {
        // "Version: 2.10.8"
        Kind::Cbc => {
            text.lines().find_map(|l| l.trim().strip_prefix("Version:")).map(|v| v.trim().to_string())
        }
        // "GLPSOL--GLPK LP/MIP Solver 5.0"
        Kind::Glpk => text
            .lines()
            .find(|l| l.contains("GLPK"))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string),
        // "HiGHS version 1.15.1 Githash …"
        Kind::Highs => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("HiGHS version"))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string),
        _ => None,
    };
    match version {
        Some(v) if !v.is_empty() => Ok(Available {
            kind,
            version: v,
            backend: Backend::Command(exe.to_path_buf()),
            size_limited: false,
        }),
        _ => Err(format!("{} does not look like {kind}: {}", exe.display(), tail(text.as_bytes()))),
    }
}

/// A command-line solver as a [`Solver`].
pub struct CommandSolver {
    kind: Kind,
    exe: PathBuf,
    version: String,
}

impl CommandSolver {
    /// Runs `exe`, an edition of `kind` of `version`.
    pub fn new(kind: Kind, exe: PathBuf, version: &str) -> Self {
        CommandSolver { kind, exe, version: version.to_string() }
    }
}

impl Solver for CommandSolver {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn supports_qp(&self) -> bool {
        self.kind == Kind::Highs
    }

    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        let sol = self.solve_once(model, opts)?;
        confirm_unbounded(self, model, opts, sol)
    }
}

impl CommandSolver {
    fn solve_once(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError> {
        if !model.quad.is_empty() && !self.supports_qp() {
            return Err(SolveError::BadOption(format!(
                "{} solves linear models only (no quadratic terms)",
                self.kind
            )));
        }
        let threads = threads(opts)?;
        let label = format!("{} {}", self.kind, self.version);
        if let Some(sol) = contradictory(model, label.clone()) {
            return Ok(sol);
        }
        let p = Prepared::new(model)?;
        let started = Instant::now();
        let (status, objective, values, duals) = match self.kind {
            Kind::Cbc => cbc(&self.exe, &p, opts, threads)?,
            Kind::Glpk => glpk(&self.exe, &p, opts)?,
            Kind::Highs => highs(&self.exe, &p, opts, threads)?,
            other => {
                return Err(SolveError::Unknown(other.to_string(), "cbc, glpk, highs as commands".into()));
            }
        };
        Ok(p.solution(status, objective, &values, duals.as_ref(), label, started))
    }
}

type Answer = (Status, Option<f64>, HashMap<String, f64>, Option<HashMap<String, f64>>);

fn failed(kind: Kind, out: &std::process::Output, what: &str) -> SolveError {
    let mut both = out.stdout.clone();
    both.extend_from_slice(&out.stderr);
    SolveError::Failed {
        solver: kind.to_string(),
        message: format!("{what} ({}): {}", out.status, tail(&both)),
    }
}

fn read_answer(kind: Kind, path: &Path, out: &std::process::Output) -> Result<String, SolveError> {
    std::fs::read_to_string(path).map_err(|_| failed(kind, out, "wrote no solution"))
}

fn cbc(exe: &Path, p: &Prepared, opts: &SolveOptions, threads: u32) -> Result<Answer, SolveError> {
    let sol = p.file("cbc.sol");
    let mut cmd = Command::new(exe);
    cmd.arg(&p.mps);
    if let Some(t) = opts.time_limit {
        cmd.args(["-sec", &t.to_string(), "-timeMode", "elapsed"]);
    }
    if let Some(g) = opts.mip_gap {
        cmd.args(["-ratio", &g.to_string()]);
    }
    if threads > 1 {
        cmd.args(["-threads", &threads.to_string()]);
    }
    for (k, v) in passthrough(opts) {
        cmd.arg(format!("-{}", k.trim_start_matches('-')));
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    cmd.args(["-solve", "-printingOptions", "all", "-solution"]).arg(&sol);
    let out = run_guarded(&mut cmd, Kind::Cbc, echo(opts), p.dir.path())?;
    // CBC skips a parameter it does not know ("No match for X") and solves anyway.
    let log = String::from_utf8_lossy(&out.stdout);
    if let Some((k, _)) =
        passthrough(opts).find(|(k, _)| log.contains(&format!("No match for {}", k.trim_start_matches('-'))))
    {
        return Err(SolveError::BadOption(format!("cbc has no parameter `{k}` (cbc then `?` lists them)")));
    }
    let text = read_answer(Kind::Cbc, &sol, &out)?;
    parse_cbc(&text).ok_or_else(|| failed(Kind::Cbc, &out, "wrote a solution meshsolve cannot read"))
}

/// Reads CBC's solution file: a status line, then `index name value dual` for
/// every row and then every column (`**` marks an infeasibility).
fn parse_cbc(text: &str) -> Option<Answer> {
    let mut lines = text.lines();
    let head = lines.next()?.trim();
    let objective = head.split("objective value").nth(1).and_then(|v| v.trim().parse::<f64>().ok());
    let status = if head.starts_with("Optimal") {
        Status::Optimal
    } else if head.starts_with("Infeasible") || head.starts_with("Integer infeasible") {
        Status::Infeasible
    } else if head.starts_with("Unbounded") {
        Status::Unbounded
    } else if head.starts_with("Stopped") && !head.contains("no integer solution") && objective.is_some() {
        Status::Feasible
    } else if head.starts_with("Stopped") {
        Status::TimeLimit
    } else {
        return None;
    };
    let mut values = HashMap::new();
    let mut duals = HashMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "**").collect();
        let fields: Vec<&str> = fields.iter().map(|f| f.trim_start_matches("**")).collect();
        if fields.len() < 3 {
            continue;
        }
        let (name, value) = (fields[1], fields[2].parse::<f64>().ok()?);
        if name.starts_with('C') {
            values.insert(name.to_string(), value);
        } else if name.starts_with('R') {
            if let Some(d) = fields.get(3).and_then(|d| d.parse::<f64>().ok()) {
                duals.insert(name.to_string(), d);
            }
        }
    }
    Some((status, objective, values, Some(duals)))
}

fn glpk(exe: &Path, p: &Prepared, opts: &SolveOptions) -> Result<Answer, SolveError> {
    let (answer, undecided) = glpk_once(exe, p, opts, false)?;
    // GLPK's presolver can only say "no dual feasible solution" (unbounded or
    // infeasible) and then writes no status: the simplex without it says which.
    if answer.0 == Status::TimeLimit && undecided {
        return Ok(glpk_once(exe, p, opts, true)?.0);
    }
    Ok(answer)
}

fn glpk_once(
    exe: &Path,
    p: &Prepared,
    opts: &SolveOptions,
    no_presolve: bool,
) -> Result<(Answer, bool), SolveError> {
    let sol = p.file("glpk.sol");
    let mut cmd = Command::new(exe);
    cmd.arg("--freemps").arg(&p.mps);
    if no_presolve {
        cmd.arg("--nopresol");
    }
    if let Some(t) = opts.time_limit {
        // glpsol takes whole seconds.
        cmd.args(["--tmlim", &(t.ceil().max(1.0) as u64).to_string()]);
    }
    if let Some(g) = opts.mip_gap {
        cmd.args(["--mipgap", &g.to_string()]);
    }
    for (k, v) in passthrough(opts) {
        cmd.arg(format!("--{}", k.trim_start_matches('-')));
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    cmd.arg("-w").arg(&sol);
    let out = run_guarded(&mut cmd, Kind::Glpk, echo(opts), p.dir.path())?;
    let log = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = log.lines().find(|l| l.starts_with("Invalid option")) {
        return Err(SolveError::BadOption(format!("glpk: {line}")));
    }
    let text = read_answer(Kind::Glpk, &sol, &out)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let undecided = stdout.contains("NO DUAL FEASIBLE SOLUTION") && !no_presolve;
    let answer = parse_glpk(&text, &stdout)
        .ok_or_else(|| failed(Kind::Glpk, &out, "wrote a solution meshsolve cannot read"))?;
    Ok((answer, undecided))
}

/// Reads GLPK's raw solution (`-w`): `s bas ROWS COLS PST DST OBJ` or
/// `s mip ROWS COLS STATUS OBJ`, then `i` (row) and `j` (column) lines.
fn parse_glpk(text: &str, log: &str) -> Option<Answer> {
    let mut status = None;
    let mut objective = None;
    let mut mip = false;
    let mut values = HashMap::new();
    let mut duals = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("s") if f.get(1) == Some(&"bas") && f.len() >= 7 => {
                objective = f[6].parse().ok();
                status = Some(match (f[4], f[5]) {
                    ("f", "f") => Status::Optimal,
                    ("n", _) | ("i", _) => Status::Infeasible,
                    ("f", "n") => Status::Unbounded,
                    ("f", _) => Status::Feasible,
                    _ => Status::TimeLimit,
                });
            }
            Some("s") if f.get(1) == Some(&"mip") && f.len() >= 6 => {
                mip = true;
                objective = f[5].parse().ok();
                status = Some(match f[4] {
                    "o" => Status::Optimal,
                    "f" => Status::Feasible,
                    "n" => Status::Infeasible,
                    _ => Status::TimeLimit,
                });
            }
            // LP: `j COL STAT PRIM DUAL`; MIP: `j COL VAL`.
            Some("j") if f.len() >= 3 => {
                let v = if mip { f[2] } else { f.get(3)? };
                values.insert(format!("C{}", f[1].parse::<usize>().ok()?.checked_sub(1)?), v.parse().ok()?);
            }
            Some("i") if !mip && f.len() >= 5 => {
                duals.insert(format!("R{}", f[1].parse::<usize>().ok()?.checked_sub(1)?), f[4].parse().ok()?);
            }
            _ => {}
        }
    }
    let mut status = status?;
    // The simplex reports "undefined" for an LP it stopped; the MIP search for a
    // problem whose relaxation has no primal feasible solution says so in the log.
    if status == Status::TimeLimit && log.contains("NO PRIMAL FEASIBLE SOLUTION") {
        status = Status::Infeasible;
    }
    if status == Status::TimeLimit && log.contains("HAS UNBOUNDED SOLUTION") {
        status = Status::Unbounded;
    }
    Some((status, objective, values, (!mip).then_some(duals)))
}

fn highs(exe: &Path, p: &Prepared, opts: &SolveOptions, threads: u32) -> Result<Answer, SolveError> {
    let sol = p.file("highs.sol");
    let options = p.file("highs.opt");
    let mut text = format!("write_solution_style = 0\nlog_to_console = {}\nthreads = {threads}\n", opts.log);
    if let Some(t) = opts.time_limit {
        text.push_str(&format!("time_limit = {t}\n"));
    }
    if let Some(g) = opts.mip_gap {
        text.push_str(&format!("mip_rel_gap = {g}\n"));
    }
    for (k, v) in passthrough(opts) {
        if k.contains(['\n', '=']) || v.contains('\n') {
            return Err(SolveError::BadOption(format!("highs option `{k}` is not a plain key=value")));
        }
        text.push_str(&format!("{k} = {v}\n"));
    }
    std::fs::write(&options, text).map_err(|e| SolveError::Failed {
        solver: "highs".into(),
        message: format!("cannot write options: {e}"),
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("--model_file").arg(&p.mps).arg("--options_file").arg(&options).arg("--solution_file").arg(&sol);
    let out = run_guarded(&mut cmd, Kind::Highs, echo(opts), p.dir.path())?;
    let log = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = log.lines().find(|l| l.contains("is unknown") || l.contains("Cannot read value")) {
        return Err(SolveError::BadOption(format!("highs: {}", line.trim_start_matches("ERROR:").trim())));
    }
    let text = read_answer(Kind::Highs, &sol, &out)?;
    parse_highs(&text).ok_or_else(|| failed(Kind::Highs, &out, "wrote a solution meshsolve cannot read"))
}

/// Reads the HiGHS solution file (style 0): the model status, then primal and
/// dual sections of `# Columns N` and `# Rows M` name-value lines.
fn parse_highs(text: &str) -> Option<Answer> {
    let mut lines = text.lines().map(str::trim);
    if lines.next()? != "Model status" {
        return None;
    }
    let model_status = lines.next()?.to_string();
    let mut objective = None;
    let mut values = HashMap::new();
    let mut duals: Option<HashMap<String, f64>> = None;
    let mut section = "";
    let mut target = "";
    for line in lines {
        if line.starts_with("# Primal solution values") {
            section = "primal";
        } else if line.starts_with("# Dual solution values") {
            section = "dual";
        } else if line.starts_with("# Basis") {
            break;
        } else if line.starts_with("# Columns") {
            target = "cols";
        } else if line.starts_with("# Rows") {
            target = "rows";
            if section == "dual" {
                duals.get_or_insert_with(HashMap::new);
            }
        } else if let Some(v) = line.strip_prefix("Objective ") {
            objective = v.trim().parse().ok();
        } else if let Some((name, v)) = line.split_once(' ') {
            let Ok(v) = v.trim().parse::<f64>() else { continue };
            match (section, target) {
                ("primal", "cols") => {
                    values.insert(name.to_string(), v);
                }
                ("dual", "rows") => {
                    duals.get_or_insert_with(HashMap::new).insert(name.to_string(), v);
                }
                _ => {}
            }
        }
    }
    let has = objective.is_some() && !values.is_empty();
    let status = match model_status.as_str() {
        "Optimal" => Status::Optimal,
        "Infeasible" => Status::Infeasible,
        "Unbounded" => Status::Unbounded,
        // Presolve could not tell which: an unbounded ray needs a feasible point.
        s if s.contains("infeasible or unbounded") => Status::Infeasible,
        _ if has => Status::Feasible,
        _ => Status::TimeLimit,
    };
    Some((status, objective, values, duals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbc_statuses_and_marks() {
        let (s, o, v, d) = parse_cbc(
            "Optimal - objective value 3.5\n      0 R0   4.7   -0.5\n      0 C0   2.5   0\n** 1 C1  1e-12 3\n",
        )
        .unwrap();
        assert_eq!((s, o), (Status::Optimal, Some(3.5)));
        assert_eq!((v["C0"], v["C1"], d.unwrap()["R0"]), (2.5, 1e-12, -0.5));
        let stopped = |h: &str| parse_cbc(h).unwrap().0;
        assert_eq!(stopped("Stopped on time - objective value 12\n"), Status::Feasible);
        assert_eq!(
            stopped("Stopped on time (no integer solution - continuous used) - objective value 1\n"),
            Status::TimeLimit
        );
        assert_eq!(stopped("Integer infeasible - objective value 0\n"), Status::Infeasible);
        assert!(parse_cbc("garbage\n").is_none());
    }

    #[test]
    fn glpk_lp_and_mip() {
        let (s, o, v, d) =
            parse_glpk("c x\ns bas 2 2 f f 7.5\ni 1 b 3 0.5\ni 2 u 1 -1\nj 1 b 2 0\nj 2 l 0 1\ne o f\n", "")
                .unwrap();
        assert_eq!((s, o, v["C0"], v["C1"]), (Status::Optimal, Some(7.5), 2.0, 0.0));
        assert_eq!(d.unwrap()["R1"], -1.0);
        let (s, _, v, d) = parse_glpk("s mip 1 1 o 4\ni 1 4\nj 1 4\ne o f\n", "").unwrap();
        assert_eq!((s, v["C0"], d.is_none()), (Status::Optimal, 4.0, true));
        assert_eq!(parse_glpk("s mip 1 1 n 0\ne o f\n", "").unwrap().0, Status::Infeasible);
    }

    #[test]
    fn highs_solution_file() {
        let text = "Model status\nOptimal\n\n# Primal solution values\nFeasible\nObjective 3\n# Columns 2\nC0 1\nC1 2\n# Rows 1\nR0 3\n\n# Dual solution values\nFeasible\n# Columns 2\nC0 0\nC1 0\n# Rows 1\nR0 -1.5\n\n# Basis\nHiGHS_basis_file v2\n";
        let (s, o, v, d) = parse_highs(text).unwrap();
        assert_eq!((s, o, v["C1"], d.unwrap()["R0"]), (Status::Optimal, Some(3.0), 2.0, -1.5));
        let (s, o, ..) = parse_highs("Model status\nInfeasible\n\n# Primal solution values\nNone\n").unwrap();
        assert_eq!((s, o), (Status::Infeasible, None));
    }
}
