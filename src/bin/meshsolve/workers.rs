//! `meshsolve workers`, `ps`, `kill` and `shutdown`: see the namespace's workers and their jobs, and stop them.

use meshsolve::client::Mesh;

use crate::args::MeshConfig;

pub(crate) async fn workers(m: &MeshConfig, json: bool) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(m.client.clone()).await?;
    let found = mesh.wait_for_workers(None, m.wait).await?;
    let mut rows = Vec::new();
    for w in &found {
        let st = mesh.status(w).await;
        rows.push((w.clone(), st));
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(w, st)| {
                serde_json::json!({
                    "name": w.instance,
                    "address": w.best_addr().map(|a| a.to_string()),
                    "addresses": w.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "namespace": w.namespace,
                    "solvers": w.solvers.iter().map(|s| serde_json::json!({"name": s.name, "version": s.version, "slots": s.slots})).collect::<Vec<_>>(),
                    "slots": w.slots,
                    "busy": st.as_ref().ok().map(|s| s.busy),
                    "reachable": st.is_ok(),
                    "error": st.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<28} {:<22} {:<28} {:>5} {:>5}", "WORKER", "ADDRESS", "SOLVERS", "SLOTS", "BUSY");
        for (w, st) in &rows {
            let solvers = w
                .solvers
                .iter()
                .map(|s| {
                    if s.slots < w.slots {
                        format!("{} {} ({} slots)", s.name, s.version, s.slots)
                    } else {
                        format!("{} {}", s.name, s.version)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let addr = w.best_addr().map(|a| a.to_string()).unwrap_or_default();
            let busy = match st {
                Ok(s) => s.busy.to_string(),
                Err(_) => "?".into(),
            };
            println!("{:<28} {:<22} {:<28} {:>5} {:>5}", w.instance, addr, solvers, w.slots, busy);
            if let Err(e) = st {
                println!("  unreachable: {e}");
            }
        }
    }
    mesh.close().await;
    Ok(0)
}

pub(crate) async fn shutdown(m: &MeshConfig) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(m.client.clone()).await?;
    let found = mesh.wait_for_workers(None, m.wait).await?;
    let mut code = 0;
    for w in &found {
        match mesh.shutdown_worker(w).await {
            Ok(ack) => println!(
                "{}: stopping ({} job(s) still running will finish or be cancelled)",
                ack.name, ack.running
            ),
            Err(e) => {
                code = 1;
                println!("{}: not stopped: {e}", w.instance);
            }
        }
    }
    mesh.close().await;
    Ok(code)
}

/// `meshsolve ps`: every job running or waiting on the namespace's workers.
pub(crate) async fn ps(m: &MeshConfig, all: bool, json: bool) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(m.client.clone()).await?;
    let found = mesh.wait_for_workers(None, m.wait).await;
    let mut rows = Vec::new();
    let mut unreachable = Vec::new();
    for w in found.iter().flatten() {
        match mesh.jobs(w, all).await {
            Ok(j) => rows.extend(j.jobs.into_iter().map(|v| (w.instance.clone(), v))),
            Err(e) => unreachable.push(format!("{}: {e}", w.instance)),
        }
    }
    mesh.close().await;
    let found = found?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(w, j)| {
                let mut v = serde_json::to_value(j).unwrap_or_default();
                v["worker"] = serde_json::Value::from(w.as_str());
                v["job"] = serde_json::Value::from(format!("{w}:{}", j.id));
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if rows.is_empty() {
        println!("no jobs on {} worker(s)", found.len());
    } else {
        println!(
            "{:<34} {:<20} {:<16} {:<36} {:>7} {:>9}  STATE",
            "JOB", "MODEL", "SOLVER", "CLIENT", "ATTEMPT", "SECONDS"
        );
        for (w, j) in &rows {
            let state = match &j.outcome {
                Some(o) => o.clone(),
                None => format!("{:?}", j.phase).to_lowercase(),
            };
            println!(
                "{:<34} {:<20} {:<16} {:<36} {:>7} {:>9.1}  {state}",
                format!("{w}:{}", j.id),
                j.model,
                j.solver,
                j.client,
                if j.attempt > 0 { j.attempt.to_string() } else { "-".into() },
                j.seconds
            );
        }
    }
    for u in unreachable {
        eprintln!("meshsolve: could not ask {u}");
    }
    Ok(0)
}

/// `meshsolve kill WORKER:ID`.
pub(crate) async fn kill(m: &MeshConfig, job: &str) -> anyhow::Result<u8> {
    let (worker, id) = job
        .rsplit_once(':')
        .and_then(|(w, i)| Some((w, i.parse::<u64>().ok()?)))
        .ok_or_else(|| crate::cli::Usage(format!("`{job}` is not WORKER:ID (as `meshsolve ps` shows it)")))?;
    let mesh = Mesh::connect(m.client.clone()).await?;
    let found = mesh.wait_for_workers(None, m.wait).await;
    let result = match found.as_ref().ok().and_then(|f| f.iter().find(|w| w.instance == worker)) {
        None => {
            Err(anyhow::anyhow!("no worker `{worker}` in your namespace (`meshsolve workers` lists them)"))
        }
        Some(w) => match mesh.kill(w, id).await {
            Ok(true) => {
                println!("cancelled {job}");
                Ok(0)
            }
            Ok(false) => Err(anyhow::anyhow!("{worker} has no running job {id} (`meshsolve ps` lists them)")),
            Err(e) => Err(e.into()),
        },
    };
    mesh.close().await;
    result
}
