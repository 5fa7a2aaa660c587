//! `meshsolve workers` and `meshsolve shutdown`: see and stop the namespace's workers.

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
