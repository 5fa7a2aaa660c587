//! The main job: solve models on the mesh (or `--local`), with progress, resume and a report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshsolve::client::{JobOptions, Mesh};
use meshsolve::dispatch::{wait_any, QueueOptions};
use meshsolve::model::{self};
use meshsolve::solver::{self};
use tokio_util::sync::CancellationToken;

use crate::args::{MeshConfig, SolveConfig};
use crate::cli;
use crate::report::{record_of, report, Progress, ProgressThread};
use crate::results::{Record, ResultDir};

/// After this long without a time limit, the user is told how to bound the solves.
const LONG_SOLVE: Duration = Duration::from_secs(30);

/// The exit code of a run: the highest of its models' codes.
pub(crate) fn exit_code(records: &[Record]) -> u8 {
    records.iter().map(|r| r.status.exit_code()).max().unwrap_or(0)
}

/// Solves every model of `a` on the mesh of `m` (or here, with `--local`).
pub(crate) async fn solve(m: &MeshConfig, a: &SolveConfig) -> anyhow::Result<u8> {
    let (models, opts) = (&a.models, &a.job);
    if a.local {
        return solve_local(a, models, opts);
    }
    // Check every model here, before looking for workers: a typo is reported at once.
    for p in models {
        meshsolve::client::check_model(p, opts.format).await?;
    }
    if a.detach {
        return crate::detached::detach(m, models, opts).await;
    }
    if !a.race.is_empty() {
        return crate::race::race(m, a).await;
    }
    let store = a.out.as_ref().map(|d| ResultDir::open(d, models)).transpose()?;
    let mut records: Vec<Option<Record>> = vec![None; models.len()];
    let mut todo = Vec::new();
    for (i, p) in models.iter().enumerate() {
        match store.as_ref().filter(|_| !a.force).and_then(|s| s.existing(p)) {
            Some(r) => records[i] = Some(r),
            None => todo.push(i),
        }
    }
    let skipped = models.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "meshsolve: {skipped} of {} model(s) already solved in {} (--force re-solves them)",
            models.len(),
            a.out.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    let mut interrupted = false;
    if !todo.is_empty() {
        let mesh = Arc::new(Mesh::connect(m.client.clone()).await?);
        // One model: go as soon as a worker answers; a batch waits a moment for all.
        let found = if todo.len() == 1 {
            mesh.wait_for_any(opts.solver.as_deref(), m.wait).await?
        } else {
            mesh.wait_for_workers(opts.solver.as_deref(), m.wait).await?
        };
        tracing::info!(workers = found.len(), "workers found");
        let (queue, mut events) = meshsolve::dispatch::Queue::with_events(
            &mesh,
            QueueOptions { max_attempts: a.attempts.max(1), patience: m.wait.max(Duration::from_secs(10)) },
        );
        let mut handles = Vec::new();
        let mut model_of = HashMap::new();
        for &i in &todo {
            let h = queue.submit(&models[i], opts).await?;
            model_of.insert(h.id, i);
            handles.push(h);
        }
        let names: HashMap<usize, String> =
            model_of.iter().map(|(j, i)| (*j, models[*i].display().to_string())).collect();
        let progress = ProgressThread::start(Progress::new(todo.len(), names, a.quiet));
        let stop = CancellationToken::new();
        let _signals = cli::on_signals(stop.clone(), "meshsolve");
        let deadline = async {
            match a.deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut deadline_hit = false;
        // Without a time limit some models never finish (market split with microlp):
        // say so once, after half a minute, and how to stop or bound them.
        let long_note = tokio::time::sleep(LONG_SOLVE);
        tokio::pin!(long_note);
        let mut noted = opts.solve.time_limit.is_some();
        while !handles.is_empty() {
            tokio::select! {
                Some(ev) = events.recv() => progress.event(ev),
                _ = stop.cancelled(), if !interrupted => {
                    interrupted = true;
                    progress.note("interrupted: cancelling running solves (Ctrl-C again to exit at once)");
                    queue.cancel_all("interrupted");
                }
                _ = &mut long_note, if !noted => {
                    noted = true;
                    progress.note(&format!(
                        "note: still solving after {} s with no time limit; Ctrl-C stops, --time-limit 5m bounds each solve",
                        LONG_SOLVE.as_secs()
                    ));
                }
                _ = &mut deadline, if !deadline_hit => {
                    deadline_hit = true;
                    progress.note("batch deadline reached: cancelling the rest");
                    queue.cancel_all("batch deadline reached");
                }
                Some((job, outcome)) = wait_any(&mut handles) => {
                    let i = model_of[&job];
                    let rec = record_of(&models[i], &outcome);
                    if let (Some(store), Ok(_)) = (&store, &outcome) {
                        store.write(&models[i], &rec)?;
                    }
                    records[i] = Some(rec);
                }
            }
        }
        while let Ok(ev) = events.try_recv() {
            progress.event(ev);
        }
        progress.finish();
        queue.close().await;
        mesh.close().await;
    }
    let records: Vec<Record> = records.into_iter().map(|r| r.expect("every model has a record")).collect();
    if let Some(store) = &store {
        store.write_summary(&records)?;
    }
    report(&a.report, models, &records)?;
    Ok(if interrupted { 130 } else { exit_code(&records) })
}

/// Solves every model in this process, one after another.
pub(crate) fn solve_local(a: &SolveConfig, models: &[PathBuf], opts: &JobOptions) -> anyhow::Result<u8> {
    let s = match &opts.solver {
        // A built-in solver needs no search; any other is looked for on this box.
        Some(n) => match solver::by_name(n) {
            Ok(s) => s,
            Err(_) => {
                let kind = solver::Kind::parse(n).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown solver `{n}` (known: {})",
                        solver::Kind::ALL.map(|k| k.as_str()).join(", ")
                    )
                })?;
                let found = solver::detect(&solver::DetectConfig { only: vec![kind], ..Default::default() });
                match found.get(kind) {
                    Some(a) => a.solver(),
                    None => anyhow::bail!("solver {kind} is not usable on this box: {}", found.why_not(kind)),
                }
            }
        },
        None => solver::default_solver(),
    };
    let mut records = Vec::new();
    for p in models {
        let t = Instant::now();
        let model = model::read_file(p, opts.format)?;
        let sol = s.solve(&model, &opts.solve)?;
        records.push(Record {
            model: p.to_string_lossy().into_owned(),
            status: sol.status.into(),
            objective: sol.objective,
            solver: sol.solver,
            worker: "local".into(),
            address: None,
            solve_seconds: sol.solve_seconds,
            wall_seconds: t.elapsed().as_secs_f64(),
            attempts: 1,
            error: None,
            values: sol.values,
        });
    }
    report(&a.report, models, &records)?;
    Ok(exit_code(&records))
}
