//! The meshsolve library from a program: connect to the mesh, queue models,
//! collect results as they complete — what Pyomo's solver-manager `queue()`,
//! `wait_any()` and `wait_all()` offered, typed and async.
//!
//! Start a worker (`meshworker`), then:
//!
//! ```sh
//! cargo run --example api -- examples/farmer/farmer.lp examples/knapsack.lp
//! ```

use std::sync::Arc;
use std::time::Duration;

use meshsolve::client::{ClientConfig, JobOptions, Mesh};
use meshsolve::dispatch::{wait_any, Queue, QueueOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!files.is_empty(), "usage: api MODEL [MODEL...]");

    // Namespace, CA directory and interfaces come from the environment, as for the CLI.
    let mesh = Arc::new(Mesh::connect(ClientConfig::from_env()).await?);
    let workers = mesh.wait_for_workers(None, Duration::from_secs(3)).await?;
    println!("{} worker(s) in namespace {}", workers.len(), mesh.namespace());

    // queue(): submit everything; each submit checks the model and returns a handle.
    let queue = Queue::new(&mesh, QueueOptions::default());
    let opts = JobOptions {
        solve: meshsolve::solver::SolveOptions { time_limit: Some(60.0), ..Default::default() },
        ..Default::default()
    };
    let mut handles = Vec::new();
    for f in &files {
        handles.push(queue.submit(f.as_ref(), &opts).await?);
    }

    // wait_any(): results in the order they finish.
    while let Some((job, outcome)) = wait_any(&mut handles).await {
        match outcome {
            Ok(r) => println!(
                "{}: {} {:?} on {} in {:.3}s",
                files[job], r.solution.status, r.solution.objective, r.worker, r.wall_seconds
            ),
            Err(e) => println!("{}: failed: {e}", files[job]),
        }
    }
    queue.close().await;
    mesh.close().await;
    Ok(())
}
