//! `meshsolve demo`: two local workers, the shipped farmer model, a real mesh solve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshsolve::client::{JobOptions, Mesh};
use meshsolve::dispatch::JobError;

use crate::args::MeshConfig;
use crate::local::LocalWorkers;
use crate::report::{print_record, record_of};
use crate::results::Outcome;

pub(crate) async fn demo(m: &MeshConfig) -> anyhow::Result<u8> {
    let mut local = LocalWorkers::new(1, m.client.interfaces.clone())?;
    let model = local.home().join("farmer.lp");
    std::fs::write(&model, crate::examples::FARMER_LP)?;
    println!(
        "demo: starting 2 workers in namespace `{}` (mDNS on {})",
        local.namespace,
        local.interfaces.join(",")
    );
    let t0 = Instant::now();
    local.spawn_many(2)?;
    let cfg = local.client_config();
    let result = async {
        let mesh = Arc::new(Mesh::connect(cfg).await?);
        // Both workers were started: wait until both are seen (at most 10 s).
        let mut found = mesh.wait_for_workers(None, Duration::from_secs(10)).await?;
        while found.len() < 2 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            found = mesh.workers();
        }
        println!(
            "demo: found {} worker(s) in {:.2}s: {}",
            found.len(),
            t0.elapsed().as_secs_f64(),
            found.iter().map(|w| w.instance.as_str()).collect::<Vec<_>>().join(", ")
        );
        let res = meshsolve::dispatch::solve_file(&mesh, &model, &JobOptions::default()).await;
        let rec = record_of(&model, &res.as_ref().map_err(|e| JobError::Failed(e.to_string())).cloned());
        let res = res?;
        print_record(&model, &rec, false);
        println!(
            "demo: expected objective -108390 (profit 108,390: wheat 170, corn 80, sugar beets 250 acres)"
        );
        mesh.close().await;
        Ok::<_, anyhow::Error>(Outcome::from(res.solution.status).exit_code())
    }
    .await;
    local.stop().await;
    println!("demo: workers stopped");
    result
}
