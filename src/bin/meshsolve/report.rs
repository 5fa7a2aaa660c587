//! How results reach the user: tables, JSON, solution files, and live progress
//! (a bar on a terminal, one line per event otherwise).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::{Outcome, Record};
use meshsolve::client::JobResult;
use meshsolve::dispatch::{Event, JobError};

/// The record of one finished job.
pub fn record_of(path: &Path, outcome: &Result<JobResult, JobError>) -> Record {
    match outcome {
        Ok(r) => Record {
            model: path.to_string_lossy().into_owned(),
            status: r.solution.status.into(),
            objective: r.solution.objective,
            solver: r.solution.solver.clone(),
            worker: r.worker.clone(),
            address: Some(r.addr.to_string()),
            solve_seconds: r.solution.solve_seconds,
            wall_seconds: r.wall_seconds,
            attempts: r.attempts,
            error: None,
            values: r.solution.values.clone(),
        },
        Err(e) => Record {
            model: path.to_string_lossy().into_owned(),
            status: if matches!(e, JobError::NotStarted(_)) { Outcome::NotStarted } else { Outcome::Failed },
            objective: None,
            solver: String::new(),
            worker: String::new(),
            address: None,
            solve_seconds: 0.0,
            wall_seconds: 0.0,
            attempts: 0,
            error: Some(e.to_string()),
            values: Vec::new(),
        },
    }
}

/// A record as the JSON object `--json` prints.
pub fn record_json(r: &Record) -> serde_json::Value {
    let values: serde_json::Map<String, serde_json::Value> =
        r.values.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
    serde_json::json!({
        "model": r.model,
        "status": r.status.as_str(),
        "objective": r.objective,
        "solver": r.solver,
        "worker": r.worker,
        "address": r.address,
        "solve_seconds": r.solve_seconds,
        "wall_seconds": r.wall_seconds,
        "attempts": r.attempts,
        "error": r.error,
        "values": values,
    })
}

/// How to show results.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Print JSON.
    pub json: bool,
    /// List variables at zero too.
    pub zeros: bool,
    /// Also write the (single) solution to this file.
    pub output: Option<PathBuf>,
}

/// Prints results: a full table for one model, a line per model for several, or JSON.
pub fn report(a: &ReportOptions, models: &[PathBuf], records: &[Record]) -> std::io::Result<()> {
    if let Some(out) = &a.output {
        if let Some(r) = records.first() {
            write_output(out, r, &record_json(r))?;
        }
    }
    if a.json {
        return print_json(records.iter().map(record_json).collect());
    }
    if records.len() == 1 {
        print_record(&models[0], &records[0], a.zeros);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for r in records {
        let _ = match &r.error {
            Some(e) => writeln!(out, "{}: failed: {e}", r.model),
            None => writeln!(
                out,
                "{}: {}{} on {} ({:.3} s{})",
                r.model,
                r.status,
                r.objective.map(|o| format!(" {o}")).unwrap_or_default(),
                r.worker,
                r.solve_seconds,
                if r.attempts > 1 { format!(", {} attempts", r.attempts) } else { String::new() }
            ),
        };
    }
    let _ = writeln!(out, "{}", summary_line(records));
    Ok(())
}

/// [`Progress`] drawn by its own thread: drawing waits for the terminal (a
/// pager nobody reads, Ctrl-S), and that must never stop the runtime thread,
/// which keeps the workers' connections alive.
pub struct ProgressThread {
    tx: std::sync::mpsc::Sender<Shown>,
    thread: std::thread::JoinHandle<()>,
}

enum Shown {
    Event(Event),
    Note(String),
}

impl ProgressThread {
    /// Starts drawing `p`.
    pub fn start(mut p: Progress) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for m in rx {
                match m {
                    Shown::Event(ev) => p.event(&ev),
                    Shown::Note(text) => p.note(&text),
                }
            }
            p.finish();
        });
        ProgressThread { tx, thread }
    }

    /// Accounts for one dispatcher event.
    pub fn event(&self, ev: Event) {
        let _ = self.tx.send(Shown::Event(ev));
    }

    /// Prints a note without breaking the bar.
    pub fn note(&self, text: &str) {
        let _ = self.tx.send(Shown::Note(text.to_string()));
    }

    /// Draws what is left, clears the bar, and waits until that is on the terminal.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Live progress: a bar on a terminal, one line per event otherwise (on stderr).
pub struct Progress {
    bar: Option<ProgressBar>,
    names: HashMap<usize, String>,
    total: usize,
    done: usize,
    failed: usize,
    running: BTreeMap<String, u32>,
    quiet: bool,
}

impl Progress {
    /// A reporter for `total` jobs named by `names`.
    pub fn new(total: usize, names: HashMap<usize, String>, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress { bar, names, total, done: 0, failed: 0, running: BTreeMap::new(), quiet }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }

    /// Prints a note without breaking the bar.
    pub fn note(&self, text: &str) {
        self.line(format!("meshsolve: {text}"));
    }

    fn name(&self, job: usize) -> &str {
        self.names.get(&job).map(String::as_str).unwrap_or("?")
    }

    /// Accounts for one dispatcher event.
    pub fn event(&mut self, ev: &Event) {
        let dec = |m: &mut BTreeMap<String, u32>, w: &str| {
            if let Some(n) = m.get_mut(w) {
                *n = n.saturating_sub(1);
            }
        };
        match ev {
            Event::Started { job, worker, attempt } => {
                *self.running.entry(worker.clone()).or_default() += 1;
                if self.bar.is_none() && *attempt > 1 {
                    self.line(format!("retry   {} on {worker} (attempt {attempt})", self.name(*job)));
                }
            }
            Event::Log { job, line, .. } => {
                let prefix = if self.total > 1 { format!("{}: ", self.name(*job)) } else { String::new() };
                // Asked for with --log: shown even with --quiet.
                match &self.bar {
                    Some(b) => b.println(format!("{prefix}{line}")),
                    None => eprintln!("{prefix}{line}"),
                }
            }
            Event::Waiting { job, worker, reason } => {
                self.line(format!("waiting {} on {worker}: waiting for {reason}", self.name(*job)));
            }
            Event::Retrying { job, worker, reason } => {
                dec(&mut self.running, worker);
                self.line(format!("retry   {}: failed on {worker}: {reason}", self.name(*job)));
            }
            Event::Finished { job, result } => {
                dec(&mut self.running, &result.worker);
                self.done += 1;
                if self.bar.is_none() && self.total > 1 {
                    self.line(format!(
                        "[{}/{}] {}: {}{} on {}",
                        self.done + self.failed,
                        self.total,
                        self.name(*job),
                        result.solution.status,
                        result.solution.objective.map(|o| format!(" {o}")).unwrap_or_default(),
                        result.worker
                    ));
                }
            }
            Event::Failed { job, error } => {
                self.failed += 1;
                self.line(format!(
                    "[{}/{}] {}: failed: {error}",
                    self.done + self.failed,
                    self.total,
                    self.name(*job)
                ));
            }
            Event::WorkerUp(w) if self.total > 1 => self.line(format!("worker  {w} joined")),
            Event::WorkerUp(_) => {}
            Event::WorkerGone { worker, lost } => {
                if *lost {
                    self.running.remove(worker);
                }
                self.line(format!(
                    "worker  {worker} {}",
                    if *lost { "lost; its jobs go elsewhere" } else { "left" }
                ))
            }
        }
        if let Some(b) = &self.bar {
            b.set_position((self.done + self.failed) as u64);
            let running: u32 = self.running.values().sum();
            let queued = self.total.saturating_sub(self.done + self.failed + running as usize);
            let per: Vec<String> =
                self.running.iter().filter(|(_, n)| **n > 0).map(|(w, n)| format!("{w}:{n}")).collect();
            b.set_message(format!(
                "done {} running {running} queued {queued} failed {} [{}]",
                self.done,
                self.failed,
                per.join(" ")
            ));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Prints one object, or a list when there are several.
pub fn print_json(mut v: Vec<serde_json::Value>) -> std::io::Result<()> {
    let out = if v.len() == 1 { v.remove(0) } else { serde_json::Value::Array(v) };
    println!("{}", serde_json::to_string_pretty(&out).map_err(std::io::Error::other)?);
    Ok(())
}

/// The human-readable table of one result.
pub fn print_record(path: &Path, r: &Record, zeros: bool) {
    let mut out = std::io::stdout().lock();
    if let Some(e) = &r.error {
        let _ = writeln!(out, "{}: failed: {e}", path.display());
        return;
    }
    let _ = writeln!(out, "{}: {}", path.display(), r.status);
    if let Some(obj) = r.objective {
        let _ = writeln!(out, "  objective   {obj}");
    }
    let where_ =
        if r.worker == "local" { "this process".to_string() } else { format!("worker {}", r.worker) };
    let _ = writeln!(out, "  solved by   {where_}, {}", r.solver);
    let _ = writeln!(out, "  solve time  {:.3} s (wall {:.3} s)", r.solve_seconds, r.wall_seconds);
    if r.attempts > 1 {
        let _ = writeln!(out, "  attempts    {}", r.attempts);
    }
    if r.values.is_empty() {
        return;
    }
    let shown: Vec<&(String, f64)> = r.values.iter().filter(|(_, v)| zeros || v.abs() > 1e-9).collect();
    let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(8).max(8);
    let _ = writeln!(out, "  {:<width$}  value", "variable");
    for (n, v) in &shown {
        let _ = writeln!(out, "  {n:<width$}  {}", fmt_value(*v));
    }
    let hidden = r.values.len() - shown.len();
    if hidden > 0 {
        let _ = writeln!(out, "  ({hidden} variables at zero not shown; --zeros lists them)");
    }
}

/// A value as printed: integers without decimals.
pub fn fmt_value(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() <= 1e-9 * r.abs().max(1.0) && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{v:.6}")
    }
}

/// Writes a solution file: JSON when the name ends in `.json`, else `name value` lines.
pub fn write_output(out: &Path, r: &Record, json: &serde_json::Value) -> std::io::Result<()> {
    let text = if out.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(json).map_err(std::io::Error::other)?
    } else {
        let mut s = format!(
            "# model {}\n# status {}\n# objective {}\n",
            r.model,
            r.status,
            r.objective.map(|o| o.to_string()).unwrap_or_else(|| "none".into())
        );
        for (n, v) in &r.values {
            s.push_str(&format!("{n} {v}\n"));
        }
        s
    };
    std::fs::write(out, text)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot write {}: {e}", out.display())))
}

/// The counts of a batch, told apart: an answer (optimal, feasible, infeasible,
/// unbounded), a limit reached without a solution, a failure, never started.
pub fn summary_line(records: &[Record]) -> String {
    let count = |f: &dyn Fn(Outcome) -> bool| records.iter().filter(|r| f(r.status)).count();
    let solved = count(&|s| {
        matches!(s, Outcome::Optimal | Outcome::Feasible | Outcome::Infeasible | Outcome::Unbounded)
    });
    let no_solution = count(&|s| s == Outcome::TimeLimit);
    let failed = count(&|s| matches!(s, Outcome::Failed | Outcome::Queued | Outcome::Running));
    let not_started = count(&|s| s == Outcome::NotStarted);
    let mut parts = vec![format!("{solved} solved")];
    if no_solution > 0 {
        parts.push(format!("{no_solution} stopped by the time limit without a solution"));
    }
    parts.push(format!("{failed} failed"));
    if not_started > 0 {
        parts.push(format!("{not_started} not started"));
    }
    format!("{} model(s): {}", records.len(), parts.join(", "))
}
