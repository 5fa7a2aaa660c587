//! The library API against real workers: submit, wait_any, wait_all, as_completed, cancel.

mod common;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use meshsolve::client::{JobOptions, Mesh};
use meshsolve::dispatch::{as_completed, wait_all, wait_any, JobError, Queue, QueueOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wait_any_wait_all_as_completed_and_cancel() {
    let mut lab = common::Mesh::new("api");
    lab.start_worker(&["--slots", "2"]);
    let mesh = Arc::new(Mesh::connect(lab.client_config()).await.unwrap());
    mesh.wait_for_workers(None, Duration::from_secs(10)).await.unwrap();
    let queue = Queue::new(&mesh, QueueOptions::default());
    let farmer = examples().join("farmer/farmer.lp");
    let ks = examples().join("knapsack.lp");
    let opts = JobOptions::default();

    let mut hs = vec![queue.submit(&farmer, &opts).await.unwrap(), queue.submit(&ks, &opts).await.unwrap()];
    let mut objectives = Vec::new();
    while let Some((_, r)) = wait_any(&mut hs).await {
        objectives.push(r.unwrap().solution.objective.unwrap());
    }
    objectives.sort_by(f64::total_cmp);
    assert_eq!(objectives.len(), 2);
    assert_eq!(objectives[1], 21.0);
    assert!(close(objectives[0], -108390.0, 1e-6));

    let all =
        wait_all(vec![queue.submit(&ks, &opts).await.unwrap(), queue.submit(&ks, &opts).await.unwrap()])
            .await;
    assert!(all.iter().all(|r| r.as_ref().unwrap().solution.objective == Some(21.0)));

    let mut rx = as_completed(vec![queue.submit(&ks, &opts).await.unwrap()]);
    let (_, r) = rx.recv().await.unwrap();
    assert_eq!(r.unwrap().solution.objective, Some(21.0));

    // Cancelling a running solve kills it on the worker.
    let hard = hard_model(lab.home_path());
    let h = queue.submit(&hard, &opts).await.unwrap();
    let wpid = lab.workers[0].pid();
    let t = Instant::now();
    while children_of(wpid).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cancel();
    assert!(matches!(h.wait().await, Err(JobError::Cancelled(_))));
    let t = Instant::now();
    while !children_of(wpid).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(3), "cancelled solve still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    queue.close().await;
}
