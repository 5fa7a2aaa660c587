//! Dispatch: an actor that owns a [`Scheduler`], follows the workers of the
//! mesh as they come and go, runs jobs on them over QUIC, and retries jobs
//! whose worker died or whose solver crashed. May import: `client`,
//! `schedule`, `protocol`, `discovery`.
//!
//! The API mirrors what Pyomo's solver-manager queue offered, typed and async:
//! [`Queue::submit`] returns a [`JobHandle`]; [`JobHandle::wait`],
//! [`wait_any`], [`wait_all`] and [`as_completed`] collect results;
//! [`JobHandle::cancel`] and [`Queue::cancel_all`] stop jobs (their solver
//! processes on the workers are killed).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info};

use crate::client::{check_model, ClientError, JobFailure, JobNote, JobOptions, JobResult, Mesh};
use crate::protocol::{Solution, SolveRequest, WorkerAd};
use crate::schedule::{Assignment, Capacity, Failure, JobId, JobState, Outcome, Scheduler};

/// Why a job produced no solution.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// A worker refused the model or options; retrying will not help.
    #[error("worker {worker} rejected the job: {message}")]
    Rejected {
        /// Worker instance.
        worker: String,
        /// Why.
        message: String,
    },
    /// Every attempt failed (crashes, lost workers).
    #[error("{0}")]
    Failed(String),
    /// Cancelled by the caller, Ctrl-C or the batch deadline while it ran.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Cancelled before any worker started it.
    #[error("not started: {0}")]
    NotStarted(String),
    /// No worker able to run the job appeared in time.
    #[error("{0}")]
    NoWorker(String),
}

/// What a job's handle resolves to.
pub type JobOutcome = Result<JobResult, JobError>;

/// Progress events, for progress bars and logs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A job was sent to a worker.
    Started {
        /// Job.
        job: JobId,
        /// Worker instance.
        worker: String,
        /// Attempt number (1 for the first).
        attempt: u32,
    },
    /// A job sent to a worker waits there before it can start (a licence seat).
    Waiting {
        /// Job.
        job: JobId,
        /// Worker instance.
        worker: String,
        /// What it waits for.
        reason: String,
    },
    /// A line of the solver's log of a running job (when the job asked for it).
    Log {
        /// Job.
        job: JobId,
        /// Worker instance.
        worker: String,
        /// The line.
        line: String,
    },
    /// A run failed and the job went back to the queue.
    Retrying {
        /// Job.
        job: JobId,
        /// Worker it failed on.
        worker: String,
        /// Why.
        reason: String,
    },
    /// A job finished with an answer.
    Finished {
        /// Job.
        job: JobId,
        /// The answer and where it came from.
        result: JobResult,
    },
    /// A job failed for good.
    Failed {
        /// Job.
        job: JobId,
        /// Why.
        error: JobError,
    },
    /// A worker joined.
    WorkerUp(String),
    /// A worker left: goodbye (draining) or lost (died, unreachable).
    WorkerGone {
        /// Worker instance.
        worker: String,
        /// Whether it was lost rather than stopped gracefully.
        lost: bool,
    },
}

/// Queue settings.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Runs per job before it is marked failed.
    pub max_attempts: u32,
    /// How long a job may wait with no worker able to run it.
    pub patience: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions { max_attempts: 3, patience: Duration::from_secs(30) }
    }
}

enum Cmd {
    Submit { path: PathBuf, header: SolveRequest, reply: oneshot::Sender<JobOutcome> },
    Cancel(JobId),
    CancelAll(String),
    Close(oneshot::Sender<()>),
}

/// A job queue over the mesh.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Cmd>,
    /// The id of the next job submitted: taken and sent under this lock, so ids
    /// follow the order in which the actor adds jobs, and a submit needs no
    /// answer from the actor.
    next_id: Arc<std::sync::Mutex<JobId>>,
    /// The actor's task: aborted when the last clone goes (after [`Queue::close`] it has ended).
    _actor: Arc<AbortOnDropHandle<()>>,
}

/// A submitted job.
pub struct JobHandle {
    /// Its index in the queue, in submission order.
    pub id: JobId,
    rx: oneshot::Receiver<JobOutcome>,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl JobHandle {
    /// Waits for the job's outcome.
    ///
    /// # Errors
    /// The job's [`JobError`]: rejected, failed after its attempts, cancelled, or no worker.
    pub async fn wait(self) -> JobOutcome {
        self.rx.await.unwrap_or_else(|_| Err(JobError::Cancelled("queue closed".into())))
    }

    /// Cancels the job; its remote solve is killed.
    pub fn cancel(&self) {
        let _ = self.tx.send(Cmd::Cancel(self.id));
    }
}

/// Waits until one of `handles` finishes; removes it and returns its id and outcome.
/// Returns `None` when `handles` is empty.
pub async fn wait_any(handles: &mut Vec<JobHandle>) -> Option<(JobId, JobOutcome)> {
    if handles.is_empty() {
        return None;
    }
    let (i, out) = std::future::poll_fn(|cx| {
        for (i, h) in handles.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut h.rx).poll(cx) {
                return std::task::Poll::Ready((i, r));
            }
        }
        std::task::Poll::Pending
    })
    .await;
    let h = handles.swap_remove(i);
    Some((h.id, out.unwrap_or_else(|_| Err(JobError::Cancelled("queue closed".into())))))
}

/// Waits for every job; outcomes in the order of `handles`.
pub async fn wait_all(handles: Vec<JobHandle>) -> Vec<JobOutcome> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.wait().await);
    }
    out
}

/// Outcomes in the order the jobs finish: call [`Completed::recv`] until `None`.
pub fn as_completed(handles: Vec<JobHandle>) -> Completed {
    Completed { handles }
}

/// Jobs yielding their outcomes as they finish (see [`as_completed`]).
pub struct Completed {
    handles: Vec<JobHandle>,
}

impl Completed {
    /// The next job to finish, or `None` when all have been returned.
    pub async fn recv(&mut self) -> Option<(JobId, JobOutcome)> {
        wait_any(&mut self.handles).await
    }
}

/// One solver's run in a [`race`].
#[derive(Debug, Clone)]
pub struct Entrant {
    /// The solver it ran.
    pub solver: String,
    /// Its outcome; a loser is `Err(JobError::Cancelled)`.
    pub outcome: JobOutcome,
    /// Seconds from the start of the race until it answered or was cancelled.
    pub seconds: f64,
}

/// What a [`race`] found.
#[derive(Debug, Clone)]
pub struct Race {
    /// Every solver's run, in the order given.
    pub entrants: Vec<Entrant>,
    /// The index of the winner in `entrants`: the first definitive answer
    /// (optimal, infeasible, unbounded), else the first (in the order given)
    /// that found a solution.
    pub winner: Option<usize>,
}

/// Whether an answer settles the question (another solver could not do better).
fn definitive(o: &JobOutcome) -> bool {
    use crate::protocol::Status;
    matches!(o, Ok(r) if matches!(r.solution.status, Status::Optimal | Status::Infeasible | Status::Unbounded))
}

/// Solves `path` with each of `solvers` at once (on different workers where the
/// mesh allows), takes the first definitive answer and cancels the others.
///
/// # Errors
/// [`ClientError`] when the model cannot be read or the queue has closed.
pub async fn race(
    queue: &Queue,
    path: &Path,
    opts: &JobOptions,
    solvers: &[String],
) -> Result<Race, ClientError> {
    check_model(path, opts.format).await?;
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (i, s) in solvers.iter().enumerate() {
        let o = JobOptions { solver: Some(s.clone()), prechecked: true, ..opts.clone() };
        let h = queue.submit(path, &o).await?;
        index.insert(h.id, i);
        handles.push(h);
    }
    let mut results: Vec<Option<Entrant>> = vec![None; solvers.len()];
    let mut settled = false;
    while let Some((id, outcome)) = wait_any(&mut handles).await {
        let i = index[&id];
        let won = !settled && definitive(&outcome);
        results[i] =
            Some(Entrant { solver: solvers[i].clone(), outcome, seconds: started.elapsed().as_secs_f64() });
        if won {
            settled = true;
            info!(solver = %solvers[i], "won the race");
            for h in &handles {
                h.cancel();
            }
        }
    }
    let entrants: Vec<Entrant> = results.into_iter().flatten().collect();
    let winner = entrants.iter().position(|e| definitive(&e.outcome)).or_else(|| {
        entrants.iter().position(|e| matches!(&e.outcome, Ok(r) if r.solution.objective.is_some()))
    });
    Ok(Race { entrants, winner })
}

/// Either half of solving one file: submitting it, or the job.
#[derive(Debug, thiserror::Error)]
pub enum SolveFileError {
    /// The model could not be read, or the queue is gone.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The job produced no solution.
    #[error(transparent)]
    Job(#[from] JobError),
}

/// Validates `path` locally, then solves it on a free worker of `mesh`,
/// retrying on another worker if one dies or its solver crashes.
///
/// # Errors
/// [`SolveFileError::Client`] for a bad model, [`SolveFileError::Job`] when no
/// run produced a solution.
pub async fn solve_file(
    mesh: &Arc<Mesh>,
    path: &Path,
    opts: &JobOptions,
) -> Result<JobResult, SolveFileError> {
    let queue = Queue::new(mesh, QueueOptions::default());
    let handle = queue.submit(path, opts).await?;
    let out = handle.wait().await;
    queue.close().await;
    Ok(out?)
}

impl Queue {
    /// Starts a job queue on `mesh`. Progress events go to the returned receiver
    /// (drop it if unused). The queue's actor runs until the last `Queue` clone
    /// and every job handle are gone, or [`Queue::close`].
    pub fn with_events(mesh: &Arc<Mesh>, opts: QueueOptions) -> (Queue, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let actor = Actor {
            mesh: mesh.clone(),
            sched: Scheduler::new(opts.max_attempts),
            jobs: Vec::new(),
            tasks: JoinSet::new(),
            probes: JoinSet::new(),
            events: ev_tx,
            dead: HashMap::new(),
            probing: HashSet::new(),
            waiting_since: HashMap::new(),
            opts,
            closing: None,
        };
        let task = AbortOnDropHandle::new(tokio::spawn(actor.run(rx)));
        (Queue { tx, next_id: Arc::new(std::sync::Mutex::new(0)), _actor: Arc::new(task) }, ev_rx)
    }

    /// Starts a job queue on `mesh`.
    pub fn new(mesh: &Arc<Mesh>, opts: QueueOptions) -> Queue {
        Queue::with_events(mesh, opts).0
    }

    /// Checks a model file locally (unless `opts.prechecked`) and queues it.
    ///
    /// # Errors
    /// [`ClientError::Model`] when the model is unreadable or malformed; [`ClientError::Internal`]
    /// when the queue has closed.
    pub async fn submit(&self, path: &Path, opts: &JobOptions) -> Result<JobHandle, ClientError> {
        if !opts.prechecked {
            check_model(path, opts.format).await?;
        }
        let header = Mesh::header(path, opts)?;
        let (reply, rx) = oneshot::channel();
        let closed = || ClientError::Internal("queue closed".into());
        let id = {
            let mut next = self.next_id.lock().map_err(|_| closed())?;
            self.tx.send(Cmd::Submit { path: path.to_path_buf(), header, reply }).map_err(|_| closed())?;
            *next += 1;
            *next - 1
        };
        Ok(JobHandle { id, rx, tx: self.tx.clone() })
    }

    /// Cancels every job not yet finished; their remote solves are killed.
    pub fn cancel_all(&self, reason: &str) {
        let _ = self.tx.send(Cmd::CancelAll(reason.to_string()));
    }

    /// Stops the queue after cancelling what is left, and waits for its runs to end.
    /// Their remote solves are told to stop before this returns (at most 2 s).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}

struct JobData {
    path: PathBuf,
    header: SolveRequest,
    reply: ReplySlot,
    cancel: Option<CancellationToken>,
    /// Increments with each run, so late reports of an abandoned run are ignored.
    run: u64,
    started: Instant,
}

/// Where a job's outcome goes: taken once, by the actor or, for a solution, by
/// the run's own task, which hands it to the caller without a trip through
/// the actor.
#[derive(Clone)]
struct ReplySlot(Arc<std::sync::Mutex<Option<oneshot::Sender<JobOutcome>>>>);

impl ReplySlot {
    fn take(&self) -> Option<oneshot::Sender<JobOutcome>> {
        self.0.lock().ok().and_then(|mut r| r.take())
    }
}

enum RunEnd {
    Solved(Solution, std::net::SocketAddr),
    /// Solved, and the solution already handed to the caller by the run's task.
    Answered,
    Failed(JobFailure),
    Cancelled,
}

struct Actor {
    mesh: Arc<Mesh>,
    sched: Scheduler,
    jobs: Vec<JobData>,
    tasks: JoinSet<(JobId, u64, String, RunEnd)>,
    /// Probes of lost workers that are still advertised: the instance, and whether it answered.
    probes: JoinSet<(String, bool)>,
    events: mpsc::UnboundedSender<Event>,
    /// Workers whose connection was lost, and since when; ignored until a probe answers.
    dead: HashMap<String, Instant>,
    probing: HashSet<String>,
    /// Queued jobs that no worker can run, and since when.
    waiting_since: HashMap<JobId, Instant>,
    opts: QueueOptions,
    closing: Option<oneshot::Sender<()>>,
}

fn capacity(ad: &WorkerAd, load: u32) -> Capacity {
    Capacity {
        slots: ad.slots,
        solvers: ad.solvers.iter().map(|s| (s.name.clone(), s.slots)).collect(),
        load,
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut changed = self.mesh.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut open = true;
        self.sync();
        loop {
            tokio::select! {
                cmd = rx.recv(), if open => match cmd {
                    Some(c) => self.command(c),
                    None => open = false,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok((job, run, worker, end)) = done {
                        self.finished(job, run, worker, end);
                    }
                }
                Some(probe) = self.probes.join_next(), if !self.probes.is_empty() => {
                    if let Ok((worker, answered)) = probe {
                        self.probed(worker, answered);
                    }
                }
                r = changed.changed() => {
                    if r.is_err() {
                        // The mesh is closing: nothing will change any more.
                        open = false;
                    }
                    self.sync();
                }
                _ = tick.tick() => {
                    self.sync();
                    self.check_waiting();
                }
            }
            if self.closing.is_some() {
                if self.tasks.is_empty() {
                    if let Some(c) = self.closing.take() {
                        let _ = c.send(());
                    }
                    break;
                }
                continue;
            }
            self.dispatch();
            if !open && self.sched.finished() && self.tasks.is_empty() {
                break;
            }
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Submit { path, header, reply } => {
                let job = self.sched.add_job(header.solver.clone());
                debug_assert_eq!(job, self.jobs.len(), "job ids follow submission order");
                self.jobs.push(JobData {
                    path,
                    header,
                    reply: ReplySlot(Arc::new(std::sync::Mutex::new(Some(reply)))),
                    cancel: None,
                    run: 0,
                    started: Instant::now(),
                });
            }
            Cmd::Cancel(job) => {
                if job < self.jobs.len() {
                    self.sched.cancel(job);
                    self.cancel_run(job, "cancelled by the caller");
                }
            }
            Cmd::CancelAll(reason) => {
                self.sched.cancel_all();
                for job in 0..self.jobs.len() {
                    self.cancel_run(job, &reason);
                }
            }
            Cmd::Close(done) => {
                self.sched.cancel_all();
                for job in 0..self.jobs.len() {
                    self.cancel_run(job, "queue closed");
                }
                self.closing = Some(done);
            }
        }
    }

    /// A probe of a lost worker ended; a worker that did not answer is probed again later.
    fn probed(&mut self, worker: String, answered: bool) {
        self.probing.remove(&worker);
        if answered && self.dead.remove(&worker).is_some() {
            info!(%worker, "worker answers again");
        }
    }

    fn cancel_run(&mut self, job: JobId, reason: &str) {
        let d = &mut self.jobs[job];
        if let Some(t) = d.cancel.take() {
            t.cancel();
        }
        if let Some(r) = d.reply.take() {
            let err = if d.run == 0 {
                JobError::NotStarted(reason.to_string())
            } else {
                JobError::Cancelled(reason.to_string())
            };
            let _ = self.events.send(Event::Failed { job, error: err.clone() });
            let _ = r.send(Err(err));
        }
    }

    /// Brings the scheduler's worker set in line with discovery.
    fn sync(&mut self) {
        let visible: HashMap<String, WorkerAd> =
            self.mesh.workers().into_iter().map(|w| (w.instance.clone(), w)).collect();
        let known: HashSet<String> = self.sched.worker_names().into_iter().collect();
        for (name, ad) in &visible {
            if let Some(since) = self.dead.get(name) {
                // A lost worker still advertised (mDNS records outlive a SIGKILL): probe it now and then.
                if since.elapsed() > Duration::from_secs(5) && self.probing.insert(name.clone()) {
                    let mesh = self.mesh.clone();
                    let ad = ad.clone();
                    self.probes.spawn(async move {
                        let answered = mesh.status(&ad).await.is_ok();
                        if !answered {
                            // Probe again no sooner than in 5 s.
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        (ad.instance, answered)
                    });
                }
                continue;
            }
            if !known.contains(name) {
                debug!(worker = %name, "worker joins the queue");
                let _ = self.events.send(Event::WorkerUp(name.clone()));
            }
            self.sched.worker_up(name, capacity(ad, self.mesh.observed_load(name)));
        }
        for name in known {
            if !visible.contains_key(&name) && !self.dead.contains_key(&name) {
                // Goodbye: no new jobs; running ones finish or come back as failures.
                self.sched.worker_draining(&name);
                let _ = self.events.send(Event::WorkerGone { worker: name, lost: false });
            }
        }
    }

    fn check_waiting(&mut self) {
        let stuck: HashSet<JobId> = self.sched.unplaceable().into_iter().collect();
        self.waiting_since.retain(|j, _| stuck.contains(j));
        let now = Instant::now();
        for j in stuck {
            let since = *self.waiting_since.entry(j).or_insert(now);
            if now - since >= self.opts.patience {
                self.sched.cancel(j);
                let solver = self.jobs[j].header.solver.clone();
                let msg = format!(
                    "no worker{} in namespace `{}` for {:.0}s; start `meshworker`{}",
                    solver.as_ref().map(|s| format!(" with solver `{s}`")).unwrap_or_default(),
                    self.mesh.namespace(),
                    self.opts.patience.as_secs_f64(),
                    solver.map(|s| format!(" --solver {s}")).unwrap_or_default(),
                );
                if let Some(r) = self.jobs[j].reply.take() {
                    let err = JobError::NoWorker(msg);
                    let _ = self.events.send(Event::Failed { job: j, error: err.clone() });
                    let _ = r.send(Err(err));
                }
            }
        }
    }

    fn dispatch(&mut self) {
        for Assignment { job, worker, solver } in self.sched.assign() {
            let Some(ad) = self.mesh.workers().into_iter().find(|w| w.instance == worker) else {
                self.sched.finish(job, Outcome::Retry("worker vanished".into()));
                continue;
            };
            let d = &mut self.jobs[job];
            d.run += 1;
            let run = d.run;
            let token = CancellationToken::new();
            d.cancel = Some(token.clone());
            let attempt = self.sched.attempts(job);
            let mut header = d.header.clone();
            header.solver = Some(solver);
            header.attempt = attempt;
            let path = d.path.clone();
            let mesh = self.mesh.clone();
            let _ = self.events.send(Event::Started { job, worker: worker.clone(), attempt });
            let events = self.events.clone();
            let waiter = worker.clone();
            let (reply, started) = (d.reply.clone(), d.started);
            self.tasks.spawn(async move {
                let finished = events.clone();
                let on_note = move |note: JobNote| {
                    let worker = waiter.clone();
                    let _ = events.send(match note {
                        JobNote::Waiting(reason) => Event::Waiting { job, worker, reason },
                        JobNote::Log(line) => Event::Log { job, worker, line },
                    });
                };
                let end = tokio::select! {
                    r = mesh.send_job(&ad, &path, &header, &on_note) => match r {
                        Ok((sol, addr)) => RunEnd::Solved(sol, addr),
                        Err(f) => RunEnd::Failed(f),
                    },
                    _ = token.cancelled() => RunEnd::Cancelled,
                };
                // A solution is final: straight to the caller (and its event
                // first, as the actor would send them).
                let end = match end {
                    RunEnd::Solved(solution, addr) => match reply.take() {
                        Some(r) => {
                            let result = JobResult {
                                solution,
                                worker: ad.instance.clone(),
                                addr,
                                wall_seconds: started.elapsed().as_secs_f64(),
                                attempts: attempt,
                            };
                            let _ = finished.send(Event::Finished { job, result: result.clone() });
                            let _ = r.send(Ok(result));
                            RunEnd::Answered
                        }
                        None => RunEnd::Solved(solution, addr),
                    },
                    other => other,
                };
                (job, run, ad.instance.clone(), end)
            });
        }
    }

    fn finished(&mut self, job: JobId, run: u64, worker: String, end: RunEnd) {
        if self.jobs[job].run != run {
            return;
        }
        self.jobs[job].cancel = None;
        let outcome = match &end {
            RunEnd::Solved(..) | RunEnd::Answered => Outcome::Solved,
            RunEnd::Cancelled => return,
            RunEnd::Failed(JobFailure::Rejected(m)) => Outcome::Fatal(m.clone()),
            RunEnd::Failed(JobFailure::Retry(m)) => Outcome::Retry(m.clone()),
            RunEnd::Failed(JobFailure::Unavailable(m)) => {
                self.sched.worker_draining(&worker);
                Outcome::Retry(m.clone())
            }
            RunEnd::Failed(JobFailure::Lost(m) | JobFailure::Unreached(m)) => {
                self.mesh.mark_lost(&worker);
                if self.dead.insert(worker.clone(), Instant::now()).is_none() {
                    info!(%worker, "worker lost: {m}");
                    self.sched.worker_down(&worker);
                    let _ = self.events.send(Event::WorkerGone { worker: worker.clone(), lost: true });
                }
                match &end {
                    RunEnd::Failed(JobFailure::Unreached(_)) => Outcome::Unreached(m.clone()),
                    _ => Outcome::Retry(m.clone()),
                }
            }
        };
        let reason = match &outcome {
            Outcome::Retry(m) | Outcome::Fatal(m) | Outcome::Unreached(m) => m.clone(),
            Outcome::Solved => String::new(),
        };
        let state = self.sched.finish(job, outcome);
        let attempts = self.sched.attempts(job);
        let d = &mut self.jobs[job];
        match (state, end) {
            (JobState::Done, RunEnd::Solved(solution, addr)) => {
                // Normally the run's task has answered already.
                if let Some(r) = d.reply.take() {
                    let result = JobResult {
                        solution,
                        worker,
                        addr,
                        wall_seconds: d.started.elapsed().as_secs_f64(),
                        attempts,
                    };
                    let _ = self.events.send(Event::Finished { job, result: result.clone() });
                    let _ = r.send(Ok(result));
                }
            }
            (JobState::Queued, _) => {
                let _ = self.events.send(Event::Retrying { job, worker, reason });
            }
            (JobState::Failed(why), _) => {
                let err = match why {
                    Failure::Refused(message) => JobError::Rejected { worker, message },
                    gave_up @ Failure::GaveUp { .. } => JobError::Failed(gave_up.to_string()),
                };
                let _ = self.events.send(Event::Failed { job, error: err.clone() });
                if let Some(r) = d.reply.take() {
                    let _ = r.send(Err(err));
                }
            }
            _ => {}
        }
    }
}
