//! The name server's job queue (`meshsolve --detach`): models submitted by
//! clients are kept on the name server's disk and solved by the workers
//! registered with it, over their outbound connections; clients collect the
//! results later. Jobs and results survive a name-server restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::protocol::{
    read_msg, write_msg, FailKind, QueuedJob, Request, Response, SolveRequest, MAX_RESPONSE,
};

/// Runs per job before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    namespace: String,
    batch: String,
    index: usize,
    header: SolveRequest,
    state: String,
    solution: Option<crate::solver::Solution>,
    error: Option<String>,
    worker: Option<String>,
    attempts: u32,
}

/// A registered worker as the queue sees it.
pub struct QueueWorker {
    /// Namespace.
    pub namespace: String,
    /// Instance name.
    pub instance: String,
    /// Slots.
    pub slots: u32,
    /// Its outbound connection to the name server.
    pub conn: quinn::Connection,
}

/// The queue: jobs in memory, mirrored on disk under `dir`.
pub struct Queue {
    dir: PathBuf,
    jobs: Mutex<Vec<Job>>,
    running: Mutex<HashMap<String, u32>>,
}

fn valid_batch(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 100
        && b.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !b.starts_with('.')
}

impl Queue {
    /// Opens the queue directory, reloading jobs left by an earlier run (running ones are queued again).
    pub fn open(dir: &Path) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let mut jobs = Vec::new();
        for ns in std::fs::read_dir(dir)?.flatten() {
            for batch in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(batch.path()).into_iter().flatten().flatten() {
                    let p = f.path();
                    if p.extension().is_some_and(|e| e == "json") {
                        if let Ok(mut j) = serde_json::from_slice::<Job>(&std::fs::read(&p)?) {
                            if j.state == "running" {
                                j.state = "queued".into();
                            }
                            jobs.push(j);
                        }
                    }
                }
            }
        }
        jobs.sort_by(|a, b| (&a.namespace, &a.batch, a.index).cmp(&(&b.namespace, &b.batch, b.index)));
        if !jobs.is_empty() {
            info!(jobs = jobs.len(), "queue reloaded from disk");
        }
        Ok(Arc::new(Queue {
            dir: dir.to_path_buf(),
            jobs: Mutex::new(jobs),
            running: Mutex::new(HashMap::new()),
        }))
    }

    fn model_path(&self, j: &Job) -> PathBuf {
        self.dir.join(&j.namespace).join(&j.batch).join(format!("{}.model", j.index))
    }

    fn save(&self, j: &Job) {
        let p = self.dir.join(&j.namespace).join(&j.batch).join(format!("{}.json", j.index));
        let tmp = p.with_extension("json.tmp");
        if std::fs::write(&tmp, serde_json::to_vec(j).unwrap_or_default())
            .and_then(|_| std::fs::rename(&tmp, &p))
            .is_err()
        {
            warn!(path = %p.display(), "cannot save queue state");
        }
    }

    /// Receives a submitted model (its bytes follow on `recv`).
    pub async fn submit(
        &self,
        namespace: &str,
        batch: &str,
        header: SolveRequest,
        recv: &mut quinn::RecvStream,
    ) -> Result<usize, String> {
        if !valid_batch(batch) {
            return Err(format!("invalid batch id `{batch}`"));
        }
        let index = {
            let jobs = self.jobs.lock().map_err(|_| "queue poisoned")?;
            jobs.iter().filter(|j| j.namespace == namespace && j.batch == batch).count()
        };
        let job = Job {
            namespace: namespace.into(),
            batch: batch.into(),
            index,
            header,
            state: "queued".into(),
            solution: None,
            error: None,
            worker: None,
            attempts: 0,
        };
        let path = self.model_path(&job);
        std::fs::create_dir_all(path.parent().expect("job path has a parent")).map_err(|e| e.to_string())?;
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| e.to_string())?;
        let mut limited = tokio::io::AsyncReadExt::take(recv, job.header.size);
        let n = tokio::io::copy(&mut limited, &mut file).await.map_err(|e| e.to_string())?;
        if n != job.header.size {
            let _ = std::fs::remove_file(&path);
            return Err(format!("model truncated: got {n} of {} bytes", job.header.size));
        }
        self.save(&job);
        self.jobs.lock().map_err(|_| "queue poisoned")?.push(job);
        Ok(index)
    }

    /// A batch's jobs.
    pub fn collect(&self, namespace: &str, batch: &str) -> Vec<QueuedJob> {
        self.jobs
            .lock()
            .map(|jobs| {
                jobs.iter()
                    .filter(|j| j.namespace == namespace && j.batch == batch)
                    .map(|j| QueuedJob {
                        name: j.header.name.clone(),
                        state: j.state.clone(),
                        solution: j.solution.clone(),
                        error: j.error.clone(),
                        worker: j.worker.clone(),
                        attempts: j.attempts,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts queued jobs on workers with free slots. Call it regularly.
    pub fn dispatch(self: &Arc<Self>, workers: Vec<QueueWorker>) {
        for w in workers {
            loop {
                let busy =
                    self.running.lock().map(|r| r.get(&w.instance).copied().unwrap_or(0)).unwrap_or(u32::MAX);
                if busy >= w.slots {
                    break;
                }
                let job = {
                    let Ok(mut jobs) = self.jobs.lock() else { return };
                    let Some(j) = jobs.iter_mut().find(|j| j.namespace == w.namespace && j.state == "queued")
                    else {
                        break;
                    };
                    j.state = "running".into();
                    j.attempts += 1;
                    j.worker = Some(w.instance.clone());
                    j.clone()
                };
                self.save(&job);
                if let Ok(mut r) = self.running.lock() {
                    *r.entry(w.instance.clone()).or_default() += 1;
                }
                let (q, conn, instance) = (self.clone(), w.conn.clone(), w.instance.clone());
                tokio::spawn(async move {
                    let outcome = q.run(&job, &conn).await;
                    if let Ok(mut r) = q.running.lock() {
                        if let Some(n) = r.get_mut(&instance) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    q.settle(&job, &instance, outcome);
                });
            }
        }
    }

    async fn run(
        &self,
        job: &Job,
        conn: &quinn::Connection,
    ) -> Result<crate::solver::Solution, (bool, String)> {
        let retry = |e: &dyn std::fmt::Display| (true, e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| retry(&e))?;
        write_msg(&mut send, &Request::Solve(job.header.clone())).await.map_err(|e| retry(&e))?;
        let mut file =
            tokio::fs::File::open(self.model_path(job)).await.map_err(|e| (false, e.to_string()))?;
        tokio::io::copy(&mut file, &mut send).await.map_err(|e| retry(&e))?;
        send.finish().map_err(|e| retry(&e))?;
        loop {
            match read_msg::<Response>(&mut recv, MAX_RESPONSE).await {
                Ok(Some(Response::Started)) => continue,
                Ok(Some(Response::Done(sol))) => return Ok(sol),
                Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                    return Err((false, message))
                }
                Ok(Some(Response::Failed { message, .. })) => return Err((true, message)),
                Ok(_) => return Err((true, "worker closed the stream without an answer".into())),
                Err(e) => return Err((true, e.to_string())),
            }
        }
    }

    fn settle(&self, job: &Job, worker: &str, outcome: Result<crate::solver::Solution, (bool, String)>) {
        let Ok(mut jobs) = self.jobs.lock() else { return };
        let Some(j) = jobs
            .iter_mut()
            .find(|j| j.namespace == job.namespace && j.batch == job.batch && j.index == job.index)
        else {
            return;
        };
        match outcome {
            Ok(sol) => {
                info!(batch = %j.batch, model = %j.header.name, %worker, "queued job solved");
                j.state = "done".into();
                j.solution = Some(sol);
                j.error = None;
            }
            Err((true, m)) if j.attempts < MAX_ATTEMPTS => {
                warn!(batch = %j.batch, model = %j.header.name, %worker, "queued job failed, will retry: {m}");
                j.state = "queued".into();
                j.error = Some(m);
            }
            Err((_, m)) => {
                j.state = "failed".into();
                j.error = Some(m);
            }
        }
        let snapshot = j.clone();
        drop(jobs);
        self.save(&snapshot);
    }
}

/// Keeps dispatching until the process ends.
pub async fn run_dispatcher(queue: Arc<Queue>, workers: impl Fn() -> Vec<QueueWorker> + Send + 'static) {
    loop {
        queue.dispatch(workers());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
