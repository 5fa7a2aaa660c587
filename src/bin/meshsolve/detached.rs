//! `meshsolve --detach` and `meshsolve collect`: batches left with the name server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use meshsolve::client::{JobOptions, Mesh};
use meshsolve::protocol::JobPhase;

use crate::args::MeshConfig;
use crate::report::{print_json, record_json};
use crate::results::{Outcome, Record, ResultDir};

pub(crate) async fn detach(m: &MeshConfig, models: &[PathBuf], opts: &JobOptions) -> anyhow::Result<u8> {
    let mut cfg = m.client.clone();
    cfg.mdns = false;
    let mesh = Mesh::connect(cfg).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let batch = format!("b{}-{}", now.as_secs(), std::process::id());
    for p in models {
        let mut header = Mesh::header(p, opts)?;
        // The path as typed names the job, so `collect` tells apart models that share a stem.
        header.name = p.display().to_string();
        mesh.submit_detached(&batch, p, &header).await?;
    }
    println!("{batch}");
    eprintln!(
        "meshsolve: {} model(s) queued on the name server as batch {batch}; collect with `meshsolve collect {batch}` (add --until-done to wait)",
        models.len()
    );
    mesh.close().await;
    Ok(0)
}

/// `meshsolve batches [--delete BATCH]`.
pub(crate) async fn batches(m: &MeshConfig, delete: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let mut cfg = m.client.clone();
    cfg.mdns = false;
    let mesh = Mesh::connect(cfg).await?;
    let done = async {
        if let Some(b) = delete {
            let n = mesh.delete_batch(b).await?;
            crate::cli::stdout_line(format_args!("deleted batch {b} ({n} job(s))"));
            return anyhow::Ok(0u8);
        }
        let list = mesh.batches().await?;
        if json {
            crate::cli::stdout_line(format_args!("{}", serde_json::to_string_pretty(&list)?));
        } else if list.is_empty() {
            crate::cli::stdout_line(format_args!("no detached batches in namespace `{}`", mesh.namespace()));
        } else {
            crate::cli::stdout_line(format_args!(
                "{:<28} {:>7} {:>7} {:>7} {:>7} {:>12}",
                "batch", "queued", "running", "solved", "failed", "bytes held"
            ));
            for b in &list {
                crate::cli::stdout_line(format_args!(
                    "{:<28} {:>7} {:>7} {:>7} {:>7} {:>12}",
                    b.batch, b.queued, b.running, b.done, b.failed, b.bytes
                ));
            }
        }
        Ok(0)
    }
    .await;
    mesh.close().await;
    done
}

pub(crate) async fn collect(
    m: &MeshConfig,
    batch: &str,
    wait: bool,
    json: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let mut cfg = m.client.clone();
    cfg.mdns = false;
    let mesh = Mesh::connect(cfg).await?;
    let jobs = loop {
        let jobs = mesh.collect(batch).await?;
        if jobs.is_empty() {
            bail!("the name server has no batch `{batch}` in namespace `{}`", mesh.namespace());
        }
        let open = jobs.iter().filter(|j| j.state.is_open()).count();
        if !wait || open == 0 {
            break jobs;
        }
        eprintln!("meshsolve: batch {batch}: {open} of {} job(s) still queued or running", jobs.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    mesh.close().await;
    let records: Vec<Record> = jobs
        .iter()
        .map(|j| Record {
            model: j.name.clone(),
            status: match &j.solution {
                Some(s) => s.status.into(),
                None => j.state.into(),
            },
            objective: j.solution.as_ref().and_then(|s| s.objective),
            solver: j.solution.as_ref().map(|s| s.solver.clone()).unwrap_or_default(),
            worker: j.worker.clone().unwrap_or_default(),
            address: None,
            solve_seconds: j.solution.as_ref().map(|s| s.solve_seconds).unwrap_or(0.0),
            wall_seconds: 0.0,
            attempts: j.attempts,
            error: if j.state == JobPhase::Failed { j.error.clone() } else { None },
            values: j.solution.as_ref().map(|s| s.values.clone()).unwrap_or_default(),
        })
        .collect();
    if let Some(dir) = &out {
        let paths: Vec<PathBuf> = records.iter().map(|r| PathBuf::from(&r.model)).collect();
        let store = ResultDir::open(dir, &paths)?;
        for (p, r) in paths.iter().zip(&records) {
            if r.solver.is_empty() {
                continue;
            }
            store.write(p, r)?;
        }
        store.write_summary(&records)?;
    }
    if json {
        print_json(records.iter().map(record_json).collect())?;
    } else {
        for r in &records {
            match &r.error {
                Some(e) => println!("{}: failed: {e}", r.model),
                None => println!(
                    "{}: {}{}{}",
                    r.model,
                    r.status,
                    r.objective.map(|o| format!(" {o}")).unwrap_or_default(),
                    if r.worker.is_empty() { String::new() } else { format!(" on {}", r.worker) }
                ),
            }
        }
    }
    let open = records.iter().any(|r| r.status.is_open());
    let failed = records.iter().any(|r| r.status == Outcome::Failed);
    Ok(if failed {
        1
    } else if open {
        5
    } else {
        0
    })
}
