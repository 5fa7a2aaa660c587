//! `meshsolve` as a drop-in solver executable for modelling tools: the AMPL
//! protocol (`STUB.nl -AMPL`: Pyomo, JuMP, AMPL; see [`crate::ampl`]) and the
//! CBC command line (`MODEL.mps ... -solve -solution FILE`: PuLP, linopy; see
//! [`crate::cbc`]). The dialect is sniffed on the raw arguments before clap
//! parses them, so the native command line is untouched.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshsolve::client::{ClientConfig, ClientError, JobOptions, JobResult, Mesh};
use meshsolve::dispatch::{JobError, Queue, QueueOptions};
use tokio_util::sync::CancellationToken;

use crate::cli;

/// The version line modelling tools parse (`meshsolve X.Y.Z`).
pub(crate) const VERSION_LINE: &str = concat!("meshsolve ", env!("CARGO_PKG_VERSION"));

/// How `meshsolve` was called.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `meshsolve -v`: the AMPL-style version probe.
    Version,
    /// `meshsolve STUB[.nl] -AMPL [key=value ...]`.
    Ampl,
    /// `meshsolve MODEL ... -solve ... -solution FILE`, or the `-stop` probe.
    Cbc,
}

/// Recognises a modelling tool's call; `None` for the native command line.
pub(crate) fn sniff(args: &[String]) -> Option<Dialect> {
    if args.len() == 1 && args[0] == "-v" {
        return Some(Dialect::Version);
    }
    if args.iter().any(|a| a == "-AMPL") {
        return Some(Dialect::Ampl);
    }
    const CBC: [&str; 5] = ["-solve", "-initialSolve", "-solution", "-printingOptions", "-stop"];
    if args.iter().any(|a| CBC.contains(&a.as_str())) {
        return Some(Dialect::Cbc);
    }
    None
}

/// Settings a modelling tool passes, in either dialect.
#[derive(Debug, Clone)]
pub(crate) struct DropIn {
    /// Solver, limits, duals.
    pub(crate) job: JobOptions,
    /// How long to look for a worker.
    pub(crate) wait: Duration,
    /// Workers given by address (skip discovery).
    pub(crate) workers: Vec<String>,
}

impl Default for DropIn {
    fn default() -> Self {
        DropIn {
            job: JobOptions { prechecked: true, ..Default::default() },
            wait: Duration::from_secs(3),
            workers: Vec::new(),
        }
    }
}

/// Why no answer came back.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No worker with the solver was found; the text says what to do.
    NoWorker(String),
    /// Ctrl-C or SIGTERM: the remote solve was cancelled.
    Interrupted,
    /// The job failed (rejected model, crashes on every attempt).
    Job(String),
    /// The mesh could not be reached at all (certificates, sockets).
    Setup(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoWorker(m) | Failure::Job(m) | Failure::Setup(m) => f.write_str(m),
            Failure::Interrupted => f.write_str("interrupted: the remote solve was cancelled"),
        }
    }
}

/// Solves one model file on the mesh: finds a worker, runs the job with
/// retries, and cancels the remote solve on Ctrl-C or SIGTERM. Never solves
/// in this process.
pub(crate) async fn solve_one(path: &Path, d: &DropIn) -> Result<JobResult, Failure> {
    let mut cfg = ClientConfig::from_env();
    cfg.static_workers = d.workers.clone();
    let mesh = Arc::new(Mesh::connect(cfg).await.map_err(|e| Failure::Setup(e.to_string()))?);
    let stop = CancellationToken::new();
    let _signals = cli::on_signals(stop.clone(), "meshsolve");
    let result = async {
        let found = tokio::select! {
            r = mesh.wait_for_any(d.job.solver.as_deref(), d.wait) => r,
            _ = stop.cancelled() => return Err(Failure::Interrupted),
        };
        let found = match found {
            Ok(f) => f,
            Err(e @ (ClientError::NoWorkers { .. } | ClientError::NoSolver { .. })) => {
                return Err(Failure::NoWorker(e.to_string()))
            }
            Err(e) => return Err(Failure::Setup(e.to_string())),
        };
        // Many single-model calls run at once (a script's threads): ask each worker
        // how busy it is, so they spread; this also opens the connection the job uses.
        let probes = found.iter().map(|ad| tokio::time::timeout(Duration::from_secs(1), mesh.status(ad)));
        futures_util::future::join_all(probes).await;
        let queue = Queue::new(
            &mesh,
            QueueOptions { max_attempts: 3, patience: d.wait.max(Duration::from_secs(10)) },
        );
        let handle = queue.submit(path, &d.job).await.map_err(|e| Failure::Job(e.to_string()))?;
        let out = tokio::select! {
            r = handle.wait() => r.map_err(|e| match e {
                JobError::NoWorker(m) => Failure::NoWorker(m),
                other => Failure::Job(other.to_string()),
            }),
            _ = stop.cancelled() => {
                queue.cancel_all("interrupted");
                Err(Failure::Interrupted)
            }
        };
        queue.close().await;
        out
    }
    .await;
    mesh.close().await;
    result
}

/// Parses a `key=value` option list as AMPL tools write it (values may be
/// quoted: `k="a b"`), e.g. the `meshsolve_options` environment variable.
pub(crate) fn split_options(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => token.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None => token.push(c),
            }
            chars.next();
        }
        match token.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_ascii_lowercase(), v.trim().to_string())),
            None => out.push((token.to_ascii_lowercase(), String::new())),
        }
    }
    out
}

/// Applies one option; unknown keys go to the solver as its own options.
///
/// # Errors
/// A message naming the option when its value is not usable.
pub(crate) fn apply_option(d: &mut DropIn, key: &str, value: &str) -> Result<(), String> {
    let secs = |v: &str| -> Result<f64, String> {
        let s: f64 = v.parse().map_err(|_| format!("{key}={v}: expected a number of seconds"))?;
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("{key}={v}: expected a non-negative number of seconds"));
        }
        Ok(s)
    };
    match key {
        "time_limit" | "timelim" | "timelimit" | "timelimit_s" | "sec" | "seconds" => {
            d.job.solve.time_limit = Some(secs(value)?)
        }
        "mip_gap" | "mip_rel_gap" | "mipgap" | "ratio" | "ratiogap" => {
            let g: f64 = value.parse().map_err(|_| format!("{key}={value}: expected a relative gap"))?;
            if !(g.is_finite() && g >= 0.0) {
                return Err(format!("{key}={value}: expected a non-negative relative gap"));
            }
            d.job.solve.mip_gap = Some(g);
        }
        "threads" => {
            value.parse::<u32>().map_err(|_| format!("{key}={value}: expected a number of threads"))?;
            // The worker gives each solve one slot; the slot decides the threads.
        }
        "solver" | "subsolver" => d.job.solver = Some(value.to_ascii_lowercase()).filter(|s| !s.is_empty()),
        "wait" => d.wait = Duration::from_secs_f64(secs(value)?),
        "worker" | "workers" => {
            d.workers.extend(value.split(',').filter(|w| !w.is_empty()).map(str::to_string))
        }
        "" => {}
        // Tool-side switches that change nothing for a remote solve.
        "wantsol" | "outlev" | "timing" | "logfile" | "log_file" | "version" => {}
        _ => d.job.solve.extra.push((key.to_string(), value.to_string())),
    }
    Ok(())
}

/// Formats a number so that it reads back exactly and stays short.
pub(crate) fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e16 || v.abs() < 1e-5) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_are_sniffed_on_raw_arguments() {
        let s = |a: &[&str]| sniff(&a.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["-v"]), Some(Dialect::Version));
        assert_eq!(s(&["/tmp/x.pyomo.nl", "-AMPL", "time_limit=3"]), Some(Dialect::Ampl));
        assert_eq!(
            s(&["/tmp/a-pulp.mps", "-max", "-solve", "-printingOptions", "all", "-solution", "/tmp/a.sol"]),
            Some(Dialect::Cbc)
        );
        assert_eq!(s(&["-stop"]), Some(Dialect::Cbc));
        assert_eq!(s(&["model.lp", "--json"]), None);
        assert_eq!(s(&["workers"]), None);
    }

    #[test]
    fn options_parse_with_quotes_and_map_to_the_job() {
        let o = split_options("time_limit=30 mip_rel_gap=0.01 solver=highs k=\"a b\"");
        assert_eq!(o[3], ("k".into(), "a b".into()));
        let mut d = DropIn::default();
        for (k, v) in &o {
            apply_option(&mut d, k, v).unwrap();
        }
        assert_eq!(d.job.solve.time_limit, Some(30.0));
        assert_eq!(d.job.solve.mip_gap, Some(0.01));
        assert_eq!(d.job.solver.as_deref(), Some("highs"));
        assert_eq!(d.job.solve.extra, vec![("k".to_string(), "a b".to_string())]);
        assert!(apply_option(&mut d, "time_limit", "NaN").is_err());
        assert!(apply_option(&mut d, "mip_gap", "-1").is_err());
    }

    #[test]
    fn numbers_round_trip() {
        for v in [0.0, 1.0, -12.5, 1e300, 2.5e-9, 0.1, 1.0 / 3.0, -1e-5] {
            assert_eq!(num(v).parse::<f64>().unwrap(), v, "{}", num(v));
        }
    }
}
