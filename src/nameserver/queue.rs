//! The name server's job queue (`meshsolve --detach`): models submitted by
//! clients are kept on the name server's disk and solved by the workers
//! registered with it, over their outbound connections; clients collect the
//! results later. Jobs and results survive a name-server restart.
//!
//! Placement and retries are the same [`Scheduler`] the client's dispatcher
//! uses, one per namespace (a namespace's jobs run only on its own workers).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::protocol::{
    read_msg, write_msg, FailKind, JobPhase, QueuedJob, Request, Response, Solution, SolveRequest,
    SolverInfo, MAX_RESPONSE,
};
use crate::schedule::{Assignment, Capacity, JobId, JobState, Outcome, Scheduler};

/// Runs per job before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;

/// How often the dispatcher looks for free workers.
const DISPATCH_EVERY: Duration = Duration::from_millis(200);
/// An upload that brings no byte for this long is given up (a stuck client must
/// not hold a task or the queue's disk for ever).
const UPLOAD_STALL: Duration = Duration::from_secs(30);

/// Why a submission was refused. None of these is worth retrying as is.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The batch id is not a plain name.
    #[error("invalid batch id `{0}` (letters, digits, `-`, `_` and `.`, at most 100)")]
    BadBatch(String),
    /// The model's bytes stopped early.
    #[error("model truncated: got {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The queue's disk failed.
    #[error("queue storage: {0}")]
    Io(#[from] std::io::Error),
    /// A lock was poisoned by a panic elsewhere.
    #[error("queue state is unavailable")]
    Poisoned,
    /// The namespace's queued models would exceed its share of the name server's disk.
    #[error("the name server keeps at most {quota} bytes of queued models per namespace; {used} are queued already (collect or wait for earlier batches; meshns --queue-quota raises it)")]
    Quota {
        /// Bytes queued now.
        used: u64,
        /// The quota.
        quota: u64,
    },
}

/// How much the queue keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Bytes of models waiting in the queue, per namespace.
    pub quota: u64,
    /// How long a finished batch's results are kept.
    pub keep: std::time::Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { quota: 10 << 30, keep: std::time::Duration::from_secs(7 * 24 * 3600) }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A job as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    namespace: String,
    batch: String,
    index: usize,
    header: SolveRequest,
    state: JobPhase,
    solution: Option<Solution>,
    error: Option<String>,
    worker: Option<String>,
    attempts: u32,
    /// When it finished (Unix seconds): its batch expires `keep` after its last job.
    #[serde(default)]
    finished: Option<u64>,
}

/// A registered worker as the queue sees it.
pub struct QueueWorker {
    /// Namespace.
    pub namespace: String,
    /// Instance name.
    pub instance: String,
    /// Slots.
    pub slots: u32,
    /// Solvers, best first.
    pub solvers: Vec<SolverInfo>,
    /// Its outbound connection to the name server.
    pub conn: quinn::Connection,
}

/// (batch, index) of a job within its namespace.
type Key = (String, usize);

/// One namespace's scheduler and the jobs it knows.
struct Lane {
    sched: Scheduler,
    /// Scheduler job id → job key.
    keys: Vec<Key>,
    /// Scheduler job id → number of its current run, so a late report of an
    /// abandoned run (its worker was declared gone) is ignored.
    runs: Vec<u64>,
}

impl Lane {
    fn new() -> Self {
        Lane { sched: Scheduler::new(MAX_ATTEMPTS), keys: Vec::new(), runs: Vec::new() }
    }
}

#[derive(Default)]
struct State {
    /// Every job, by namespace and key.
    jobs: BTreeMap<String, BTreeMap<Key, Job>>,
    /// Open jobs' schedulers, by namespace.
    lanes: HashMap<String, Lane>,
}

impl State {
    fn enqueue(&mut self, job: &Job) {
        let lane = self.lanes.entry(job.namespace.clone()).or_insert_with(Lane::new);
        let id = lane.sched.add_job(job.header.solver.clone());
        debug_assert_eq!(id, lane.keys.len());
        lane.keys.push((job.batch.clone(), job.index));
        lane.runs.push(0);
    }
}

/// The queue: jobs in memory, mirrored on disk under `dir`.
pub struct Queue {
    dir: PathBuf,
    state: Mutex<State>,
    limits: QueueLimits,
}

fn valid_batch(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 100
        && b.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !b.starts_with('.')
}

/// A run to start.
struct Start {
    namespace: String,
    id: JobId,
    run: u64,
    job: Job,
    worker: String,
    conn: quinn::Connection,
}

/// How one run on a worker ended.
enum RunEnd {
    Solved(Solution),
    Refused(String),
    Retry(String),
    /// The worker could not be reached: the attempt is not counted.
    Unreached(String),
}

impl Queue {
    /// Opens the queue directory, reloading jobs left by an earlier run (running ones are queued again).
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(dir: &Path, limits: QueueLimits) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let mut jobs = Vec::new();
        for ns in std::fs::read_dir(dir)?.flatten() {
            for batch in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(batch.path()).into_iter().flatten().flatten() {
                    let p = f.path();
                    if p.extension().is_some_and(|e| e == "json") {
                        match serde_json::from_slice::<Job>(&std::fs::read(&p)?) {
                            Ok(j) => jobs.push(j),
                            Err(e) => warn!(path = %p.display(), "ignoring an unreadable queue entry: {e}"),
                        }
                    }
                }
            }
        }
        jobs.sort_by(|a, b| (&a.namespace, &a.batch, a.index).cmp(&(&b.namespace, &b.batch, b.index)));
        if !jobs.is_empty() {
            info!(jobs = jobs.len(), "queue reloaded from disk");
        }
        let mut state = State::default();
        for mut j in jobs {
            if j.state == JobPhase::Running {
                j.state = JobPhase::Queued;
            }
            if j.state == JobPhase::Queued {
                state.enqueue(&j);
            }
            state.jobs.entry(j.namespace.clone()).or_default().insert((j.batch.clone(), j.index), j);
        }
        Ok(Arc::new(Queue { dir: dir.to_path_buf(), state: Mutex::new(state), limits }))
    }

    fn model_path(&self, namespace: &str, batch: &str, index: usize) -> PathBuf {
        self.dir.join(namespace).join(batch).join(format!("{index}.model"))
    }

    fn save(&self, j: &Job) {
        let p = self.dir.join(&j.namespace).join(&j.batch).join(format!("{}.json", j.index));
        let tmp = p.with_extension("json.tmp");
        let written = serde_json::to_vec(j)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &p));
        if let Err(e) = written {
            warn!(path = %p.display(), "cannot save queue state: {e}");
        }
    }

    /// Receives a submitted model (its bytes follow on `recv`) and queues it.
    ///
    /// # Errors
    /// [`QueueError`] for a bad batch id, a truncated model or a disk failure;
    /// nothing is queued then.
    pub async fn submit(
        &self,
        namespace: &str,
        batch: &str,
        header: SolveRequest,
        recv: &mut quinn::RecvStream,
    ) -> Result<usize, QueueError> {
        if !valid_batch(batch) {
            return Err(QueueError::BadBatch(batch.to_string()));
        }
        // Reserve the index at once, so concurrent submits to one batch never share a file.
        let index = {
            let mut st = self.state.lock().map_err(|_| QueueError::Poisoned)?;
            let jobs = st.jobs.entry(namespace.to_string()).or_default();
            // Models still on disk: queued, running, or being uploaded.
            let used: u64 = jobs
                .values()
                .filter(|j| j.finished.is_none() && !matches!(j.state, JobPhase::Done))
                .map(|j| j.header.size)
                .sum();
            if used + header.size > self.limits.quota {
                return Err(QueueError::Quota { used, quota: self.limits.quota });
            }
            let index = jobs.range((batch.to_string(), 0)..=(batch.to_string(), usize::MAX)).count();
            let placeholder = Job {
                namespace: namespace.into(),
                batch: batch.into(),
                index,
                header: header.clone(),
                state: JobPhase::Failed,
                solution: None,
                error: Some("upload in progress".into()),
                worker: None,
                attempts: 0,
                finished: None,
            };
            jobs.insert((batch.to_string(), index), placeholder);
            index
        };
        let received = self.receive(namespace, batch, index, &header, recv).await;
        let mut st = self.state.lock().map_err(|_| QueueError::Poisoned)?;
        if let Err(e) = received {
            let _ = std::fs::remove_file(self.model_path(namespace, batch, index));
            if let Some(j) = st.jobs.get_mut(namespace).and_then(|m| m.get_mut(&(batch.to_string(), index))) {
                j.error = Some(format!("upload failed: {e}"));
                j.finished = Some(unix_now());
                let snapshot = j.clone();
                drop(st);
                self.save(&snapshot);
            }
            return Err(e);
        }
        let Some(job) = st.jobs.get_mut(namespace).and_then(|m| m.get_mut(&(batch.to_string(), index)))
        else {
            return Err(QueueError::Poisoned);
        };
        job.state = JobPhase::Queued;
        job.error = None;
        let job = job.clone();
        st.enqueue(&job);
        drop(st);
        self.save(&job);
        Ok(index)
    }

    async fn receive(
        &self,
        namespace: &str,
        batch: &str,
        index: usize,
        header: &SolveRequest,
        recv: &mut quinn::RecvStream,
    ) -> Result<(), QueueError> {
        let path = self.model_path(namespace, batch, index);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let got = crate::transport::receive_file(recv, header.size, &path, UPLOAD_STALL).await?;
        if got != header.size {
            return Err(QueueError::Truncated { got, want: header.size });
        }
        Ok(())
    }

    /// A batch's jobs, in submission order.
    pub fn collect(&self, namespace: &str, batch: &str) -> Vec<QueuedJob> {
        let Ok(st) = self.state.lock() else { return Vec::new() };
        let Some(jobs) = st.jobs.get(namespace) else { return Vec::new() };
        jobs.range((batch.to_string(), 0)..=(batch.to_string(), usize::MAX))
            .map(|(_, j)| QueuedJob {
                name: j.header.name.clone(),
                state: j.state,
                solution: j.solution.clone(),
                error: j.error.clone(),
                worker: j.worker.clone(),
                attempts: j.attempts,
            })
            .collect()
    }

    /// Brings each namespace's scheduler in line with the registered workers and
    /// returns the runs to start.
    fn plan(&self, workers: &[QueueWorker]) -> Vec<Start> {
        let Ok(mut st) = self.state.lock() else { return Vec::new() };
        let mut starts = Vec::new();
        let State { jobs, lanes } = &mut *st;
        for (ns, lane) in lanes.iter_mut() {
            let mine: Vec<&QueueWorker> = workers.iter().filter(|w| &w.namespace == ns).collect();
            let names: HashSet<&str> = mine.iter().map(|w| w.instance.as_str()).collect();
            for gone in lane.sched.worker_names() {
                if !names.contains(gone.as_str()) {
                    lane.sched.worker_down(&gone);
                }
            }
            for w in &mine {
                let cap = Capacity {
                    slots: w.slots,
                    solvers: w.solvers.iter().map(|s| (s.name.clone(), s.slots)).collect(),
                    load: 0,
                };
                lane.sched.worker_up(&w.instance, cap);
            }
            for Assignment { job, worker, solver } in lane.sched.assign() {
                let key = lane.keys[job].clone();
                let Some(conn) = mine.iter().find(|w| w.instance == worker).map(|w| w.conn.clone()) else {
                    lane.sched.finish(job, Outcome::Retry("worker vanished".into()));
                    continue;
                };
                let Some(j) = jobs.get_mut(ns).and_then(|m| m.get_mut(&key)) else { continue };
                j.state = JobPhase::Running;
                j.attempts = lane.sched.attempts(job);
                j.worker = Some(worker.clone());
                let mut run = j.clone();
                run.header.solver = Some(solver);
                lane.runs[job] += 1;
                starts.push(Start {
                    namespace: ns.clone(),
                    id: job,
                    run: lane.runs[job],
                    job: run,
                    worker,
                    conn,
                });
            }
        }
        starts
    }

    /// Records how run number `run` of a job ended.
    fn settle(&self, namespace: &str, id: JobId, run: u64, worker: &str, end: RunEnd) {
        let Ok(mut st) = self.state.lock() else { return };
        let State { jobs, lanes } = &mut *st;
        let Some(lane) = lanes.get_mut(namespace) else { return };
        if lane.runs[id] != run {
            return;
        }
        let key = lane.keys[id].clone();
        let (outcome, solution, error) = match end {
            RunEnd::Solved(sol) => (Outcome::Solved, Some(sol), None),
            RunEnd::Refused(m) => (Outcome::Fatal(m.clone()), None, Some(m)),
            RunEnd::Retry(m) => (Outcome::Retry(m.clone()), None, Some(m)),
            RunEnd::Unreached(m) => (Outcome::Unreached(m.clone()), None, Some(m)),
        };
        let state = lane.sched.finish(id, outcome);
        let Some(j) = jobs.get_mut(namespace).and_then(|m| m.get_mut(&key)) else { return };
        j.attempts = lane.sched.attempts(id);
        match state {
            JobState::Done => {
                info!(batch = %j.batch, model = %j.header.name, %worker, "queued job solved");
                j.state = JobPhase::Done;
                j.solution = solution;
                j.error = None;
            }
            JobState::Queued => {
                warn!(batch = %j.batch, model = %j.header.name, %worker, "queued job failed, will retry: {}",
                      error.as_deref().unwrap_or_default());
                j.state = JobPhase::Queued;
                j.error = error;
            }
            JobState::Failed(why) => {
                j.state = JobPhase::Failed;
                j.error = Some(why.to_string());
            }
            JobState::Running { .. } | JobState::Cancelled => {}
        }
        if matches!(j.state, JobPhase::Done | JobPhase::Failed) {
            // The answer is kept; the model is not needed any more.
            j.finished = Some(unix_now());
            let _ = std::fs::remove_file(self.model_path(namespace, &j.batch, j.index));
        }
        let snapshot = j.clone();
        drop(st);
        self.save(&snapshot);
    }

    /// The namespace's batches, in id order.
    pub fn batches(&self, namespace: &str) -> Vec<crate::protocol::BatchSummary> {
        let Ok(st) = self.state.lock() else { return Vec::new() };
        let mut out: BTreeMap<String, crate::protocol::BatchSummary> = BTreeMap::new();
        for ((batch, _), j) in st.jobs.get(namespace).into_iter().flatten() {
            let b = out.entry(batch.clone()).or_insert_with(|| crate::protocol::BatchSummary {
                batch: batch.clone(),
                queued: 0,
                running: 0,
                done: 0,
                failed: 0,
                bytes: 0,
            });
            match j.state {
                JobPhase::Queued => b.queued += 1,
                JobPhase::Running => b.running += 1,
                JobPhase::Done => b.done += 1,
                JobPhase::Failed => b.failed += 1,
            }
            if j.finished.is_none() {
                b.bytes += j.header.size;
            }
        }
        out.into_values().collect()
    }

    /// Forgets a batch: its queued jobs will not run (running ones finish but
    /// are not kept), its files go. Returns how many jobs it had.
    pub fn delete(&self, namespace: &str, batch: &str) -> usize {
        let Ok(mut st) = self.state.lock() else { return 0 };
        let State { jobs, lanes } = &mut *st;
        let Some(jobs) = jobs.get_mut(namespace) else { return 0 };
        let before = jobs.len();
        jobs.retain(|(b, _), _| b != batch);
        let n = before - jobs.len();
        if let Some(lane) = lanes.get_mut(namespace) {
            for (id, (b, _)) in lane.keys.iter().enumerate() {
                if b == batch {
                    lane.sched.cancel(id);
                }
            }
        }
        if valid_batch(batch) {
            let _ = std::fs::remove_dir_all(self.dir.join(namespace).join(batch));
        }
        n
    }

    /// Removes batches whose every job finished more than `keep` ago (their
    /// results and files), so a name server's disk does not fill with old work.
    pub fn expire(&self) {
        let cutoff = unix_now().saturating_sub(self.limits.keep.as_secs());
        let Ok(mut st) = self.state.lock() else { return };
        let mut gone: Vec<(String, String)> = Vec::new();
        for (ns, jobs) in &st.jobs {
            let mut batches: BTreeMap<&str, bool> = BTreeMap::new();
            for ((batch, _), j) in jobs {
                let old = j.finished.is_some_and(|t| t <= cutoff);
                let e = batches.entry(batch.as_str()).or_insert(true);
                *e &= old;
            }
            gone.extend(
                batches.into_iter().filter(|(_, old)| *old).map(|(b, _)| (ns.clone(), b.to_string())),
            );
        }
        for (ns, batch) in &gone {
            if let Some(jobs) = st.jobs.get_mut(ns) {
                jobs.retain(|(b, _), _| b != batch);
            }
            let _ = std::fs::remove_dir_all(self.dir.join(ns).join(batch));
            info!(namespace = %ns, %batch, "finished batch expired");
        }
    }

    /// Sends one job to a worker over its connection and waits for the answer.
    async fn run(&self, job: &Job, conn: &quinn::Connection) -> RunEnd {
        let retry = |e: &dyn std::fmt::Display| RunEnd::Retry(e.to_string());
        let unreached = |e: &dyn std::fmt::Display| RunEnd::Unreached(e.to_string());
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return unreached(&e),
        };
        if let Err(e) = write_msg(&mut send, &Request::Solve(job.header.clone())).await {
            return unreached(&e);
        }
        let path = self.model_path(&job.namespace, &job.batch, job.index);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return RunEnd::Refused(format!("queued model {} is gone: {e}", path.display())),
        };
        if let Err(e) = crate::transport::send_file(file, &mut send).await {
            return retry(&e);
        }
        if let Err(e) = send.finish() {
            return retry(&e);
        }
        loop {
            match read_msg::<Response>(&mut recv, MAX_RESPONSE).await {
                Ok(Some(Response::Started)) => continue,
                Ok(Some(Response::Done(sol))) => return RunEnd::Solved(sol),
                Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                    return RunEnd::Refused(message)
                }
                Ok(Some(Response::Failed { message, .. })) => return RunEnd::Retry(message),
                Ok(_) => return RunEnd::Retry("worker closed the stream without an answer".into()),
                Err(e) => return retry(&e),
            }
        }
    }
}

/// Dispatches queued jobs to the registered workers until `stop` fires, then
/// cancels the runs in flight (they are queued again at the next start).
pub async fn run_dispatcher(
    queue: Arc<Queue>,
    workers: impl Fn() -> Vec<QueueWorker> + Send + 'static,
    stop: CancellationToken,
) {
    let mut runs: JoinSet<(Start, RunEnd)> = JoinSet::new();
    let mut tick = tokio::time::interval(DISPATCH_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Ok((s, end)) = done {
                    queue.settle(&s.namespace, s.id, s.run, &s.worker, end);
                }
            }
            _ = tick.tick() => {
                for start in queue.plan(&workers()) {
                    let q = queue.clone();
                    runs.spawn(async move {
                        let end = q.run(&start.job, &start.conn).await;
                        (start, end)
                    });
                }
            }
        }
    }
    runs.shutdown().await;
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn finished_batches_expire_and_open_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let header = SolveRequest {
            name: "m".into(),
            format: crate::model::Format::Lp,
            gzip: false,
            size: 10,
            solver: None,
            options: Default::default(),
            sender: None,
            attempt: 0,
        };
        for (batch, finished) in [("old", Some(1)), ("open", None)] {
            let job = Job {
                namespace: "ns".into(),
                batch: batch.into(),
                index: 0,
                header: header.clone(),
                state: if finished.is_some() { JobPhase::Done } else { JobPhase::Queued },
                solution: None,
                error: None,
                worker: None,
                attempts: 1,
                finished,
            };
            let d = dir.path().join("ns").join(batch);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("0.json"), serde_json::to_vec(&job).unwrap()).unwrap();
        }
        let q =
            Queue::open(dir.path(), QueueLimits { quota: 1 << 20, keep: std::time::Duration::from_secs(60) })
                .unwrap();
        q.expire();
        assert!(!dir.path().join("ns/old").exists(), "a batch finished long ago is removed");
        assert!(dir.path().join("ns/open").exists(), "a batch still queued stays");
        assert!(q.collect("ns", "old").is_empty());
        assert_eq!(q.collect("ns", "open").len(), 1);
    }
}
