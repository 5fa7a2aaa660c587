//! `meshsolve --race highs,cbc MODEL...`: every model solved by several solvers
//! at once; the first definitive answer wins, the others are cancelled.

use std::sync::Arc;
use std::time::Duration;

use meshsolve::client::Mesh;
use meshsolve::dispatch::{JobError, Queue, QueueOptions};

use crate::args::{MeshConfig, SolveConfig};
use crate::report::{print_json, record_json, record_of, report};
use crate::solve::exit_code;

/// Races `a.race` on each model of `a`, one model after another.
pub(crate) async fn race(m: &MeshConfig, a: &SolveConfig) -> anyhow::Result<u8> {
    let mesh = Arc::new(Mesh::connect(m.client.clone()).await?);
    let workers = mesh.wait_for_workers(None, m.wait).await?;
    let has = |s: &str| workers.iter().any(|w| w.has_solver(Some(s)));
    let (present, absent): (Vec<String>, Vec<String>) = a.race.iter().cloned().partition(|s| has(s));
    if !absent.is_empty() {
        eprintln!("meshsolve: race: no worker has {} (left out)", absent.join(", "));
    }
    if present.is_empty() {
        mesh.close().await;
        anyhow::bail!(
            "none of the racing solvers ({}) is on any worker; `meshsolve workers` lists what they have",
            a.race.join(", ")
        );
    }
    let queue = Queue::new(
        &mesh,
        QueueOptions { max_attempts: a.attempts.max(1), patience: m.wait.max(Duration::from_secs(10)) },
    );
    let mut records = Vec::new();
    let mut json = Vec::new();
    for path in &a.models {
        let race = meshsolve::dispatch::race(&queue, path, &a.job, &present).await?;
        let mut line = Vec::new();
        for (i, e) in race.entrants.iter().enumerate() {
            let what = match &e.outcome {
                _ if Some(i) == race.winner => "won".to_string(),
                Ok(r) => r.solution.status.to_string(),
                Err(JobError::Cancelled(_)) | Err(JobError::NotStarted(_)) => "cancelled".into(),
                Err(err) => format!("failed ({err})"),
            };
            line.push(format!("{} {what} after {:.2} s", e.solver, e.seconds));
        }
        if !a.quiet {
            eprintln!("race {}: {}", path.display(), line.join("; "));
        }
        let outcome = match race.winner {
            Some(w) => race.entrants[w].outcome.clone(),
            None => Err(JobError::Failed(format!("no solver answered: {}", line.join("; ")))),
        };
        let rec = record_of(path, &outcome);
        let mut v = record_json(&rec);
        v["race"] = race
            .entrants
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::json!({
                    "solver": e.solver,
                    "won": Some(i) == race.winner,
                    "status": match &e.outcome {
                        Ok(r) => r.solution.status.to_string(),
                        Err(JobError::Cancelled(_)) | Err(JobError::NotStarted(_)) => "cancelled".into(),
                        Err(_) => "failed".to_string(),
                    },
                    "seconds": e.seconds,
                })
            })
            .collect();
        json.push(v);
        records.push(rec);
    }
    queue.close().await;
    mesh.close().await;
    if a.report.json {
        print_json(json)?;
    } else {
        report(&a.report, &a.models, &records)?;
    }
    Ok(exit_code(&records))
}
