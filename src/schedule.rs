//! Batch scheduling as plain state: a job queue, workers with per-solver slot
//! counts, placement, retries. No I/O and no clock: the dispatcher feeds it
//! events (worker up/down/draining, job finished) and asks it where to run
//! queued jobs. Unit-tested on its own.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Index of a job in the batch.
pub type JobId = usize;

/// A worker's capacity: total slots and, per solver, how many of them that solver may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Total concurrent solves.
    pub slots: u32,
    /// `(solver, slots)` best first; a solver's count never exceeds `slots`.
    pub solvers: Vec<(String, u32)>,
    /// Slots other clients were last seen using there: only a tie-break between
    /// workers this scheduler sees as equally free (it never blocks a placement).
    pub load: u32,
}

#[derive(Debug, Clone)]
struct WorkerState {
    cap: Capacity,
    running: u32,
    by_solver: HashMap<String, u32>,
    draining: bool,
}

impl WorkerState {
    fn free_for(&self, solver: &str) -> u32 {
        let limit = self.cap.solvers.iter().find(|(n, _)| n == solver).map(|(_, s)| (*s).min(self.cap.slots));
        match limit {
            Some(l) => {
                let used = self.by_solver.get(solver).copied().unwrap_or(0);
                l.saturating_sub(used).min(self.cap.slots.saturating_sub(self.running))
            }
            None => 0,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Waiting for a slot.
    Queued,
    /// Running on a worker with a solver.
    Running {
        /// Worker instance.
        worker: String,
        /// Solver chosen.
        solver: String,
    },
    /// Finished with an answer.
    Done,
    /// Gave up, with the reason.
    Failed(Failure),
    /// Skipped or cancelled by the user.
    Cancelled,
}

/// Why a job gave up.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The model or options were refused; retrying would not help.
    Refused(String),
    /// Every attempt failed (crash, lost worker, draining worker).
    GaveUp {
        /// Runs made.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) => f.write_str(m),
            Failure::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last: {last}")
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    solver: Option<String>,
    state: JobState,
    attempts: u32,
    failed_on: Vec<String>,
}

/// How a run ended, as reported by the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An answer (optimal, infeasible, ...).
    Solved,
    /// Worth another attempt elsewhere: lost worker, crash, worker draining.
    Retry(String),
    /// Pointless to retry: the model or options were refused.
    Fatal(String),
    /// The worker could not be reached: the job never ran, so the attempt is not
    /// counted (a forged advert must not burn a job's attempts).
    Unreached(String),
}

/// How a worker ranks for a job: not failed on it before, free slots, least
/// load seen from others, then a per-scheduler order (higher is better).
type PlaceKey = (bool, u32, std::cmp::Reverse<u32>, u64);

/// The batch scheduler.
#[derive(Debug)]
pub struct Scheduler {
    jobs: Vec<Job>,
    queue: VecDeque<JobId>,
    workers: BTreeMap<String, WorkerState>,
    max_attempts: u32,
    /// Orders otherwise equal workers differently in each scheduler, so that
    /// independent clients placing one job each do not all pick the same one.
    salt: std::collections::hash_map::RandomState,
}

/// One placement decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The job.
    pub job: JobId,
    /// The worker instance.
    pub worker: String,
    /// The solver to ask for.
    pub solver: String,
}

impl Scheduler {
    /// A scheduler giving each job at most `max_attempts` runs.
    pub fn new(max_attempts: u32) -> Self {
        Scheduler {
            jobs: Vec::new(),
            queue: VecDeque::new(),
            workers: BTreeMap::new(),
            max_attempts: max_attempts.max(1),
            salt: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Queues a job needing `solver` (any when `None`).
    pub fn add_job(&mut self, solver: Option<String>) -> JobId {
        let id = self.jobs.len();
        self.jobs.push(Job { solver, state: JobState::Queued, attempts: 0, failed_on: Vec::new() });
        self.queue.push_back(id);
        id
    }

    /// Adds or updates a worker. Its running count is kept.
    pub fn worker_up(&mut self, name: &str, cap: Capacity) {
        match self.workers.get_mut(name) {
            Some(w) => {
                w.cap = cap;
                w.draining = false;
            }
            None => {
                self.workers.insert(
                    name.to_string(),
                    WorkerState { cap, running: 0, by_solver: HashMap::new(), draining: false },
                );
            }
        }
    }

    /// Marks a worker as taking no new jobs (its running jobs may still finish).
    pub fn worker_draining(&mut self, name: &str) {
        if let Some(w) = self.workers.get_mut(name) {
            w.draining = true;
        }
    }

    /// Removes a worker. Returns the jobs that were running there; the dispatcher
    /// should abandon them and report [`Outcome::Retry`] for each.
    pub fn worker_down(&mut self, name: &str) -> Vec<JobId> {
        self.workers.remove(name);
        self.jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| matches!(&j.state, JobState::Running { worker, .. } if worker == name))
            .map(|(i, _)| i)
            .collect()
    }

    /// Known workers.
    pub fn worker_names(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Places as many queued jobs as free slots allow, marking them running.
    pub fn assign(&mut self) -> Vec<Assignment> {
        let mut out = Vec::new();
        let mut still_queued = VecDeque::new();
        while let Some(id) = self.queue.pop_front() {
            match self.place(id) {
                Some((worker, solver)) => {
                    let w = self.workers.get_mut(&worker).expect("placed on a known worker");
                    w.running += 1;
                    *w.by_solver.entry(solver.clone()).or_default() += 1;
                    let job = &mut self.jobs[id];
                    job.attempts += 1;
                    job.state = JobState::Running { worker: worker.clone(), solver: solver.clone() };
                    out.push(Assignment { job: id, worker, solver });
                }
                None => still_queued.push_back(id),
            }
        }
        self.queue = still_queued;
        out
    }

    fn place(&self, id: JobId) -> Option<(String, String)> {
        let job = &self.jobs[id];
        let mut best: Option<(PlaceKey, &String, String)> = None;
        for (name, w) in &self.workers {
            if w.draining {
                continue;
            }
            let solver = match &job.solver {
                Some(s) => {
                    w.cap.solvers.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|(n, _)| n.clone())
                }
                None => w.cap.solvers.iter().find(|(n, _)| w.free_for(n) > 0).map(|(n, _)| n.clone()),
            };
            let Some(solver) = solver else { continue };
            let free = w.free_for(&solver);
            if free == 0 {
                continue;
            }
            // Prefer workers this job has not failed on, then the most free slots,
            // then the least load seen from other clients, then this scheduler's own order.
            let fresh = !job.failed_on.contains(name);
            let key = (
                fresh,
                free,
                std::cmp::Reverse(w.cap.load),
                std::hash::BuildHasher::hash_one(&self.salt, name),
            );
            if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                best = Some((key, name, solver));
            }
        }
        best.map(|(_, n, s)| (n.clone(), s))
    }

    /// Records how a running job ended. Returns its new state.
    pub fn finish(&mut self, id: JobId, outcome: Outcome) -> JobState {
        let job = &mut self.jobs[id];
        if let JobState::Running { worker, solver } = &job.state {
            if let Some(w) = self.workers.get_mut(worker) {
                w.running = w.running.saturating_sub(1);
                if let Some(n) = w.by_solver.get_mut(solver) {
                    *n = n.saturating_sub(1);
                }
            }
            if matches!(outcome, Outcome::Retry(_) | Outcome::Unreached(_)) {
                let worker = worker.clone();
                job.failed_on.push(worker);
            }
        } else {
            // Already settled (e.g. cancelled): ignore late reports.
            return job.state.clone();
        }
        job.state = match outcome {
            Outcome::Solved => JobState::Done,
            Outcome::Fatal(r) => JobState::Failed(Failure::Refused(r)),
            Outcome::Retry(last) if job.attempts >= self.max_attempts => {
                JobState::Failed(Failure::GaveUp { attempts: job.attempts, last })
            }
            Outcome::Retry(_) => {
                // Taken back from a lost or failing worker: it runs next, not
                // behind every job queued since it first started.
                self.queue.push_front(id);
                JobState::Queued
            }
            Outcome::Unreached(_) => {
                job.attempts = job.attempts.saturating_sub(1);
                self.queue.push_front(id);
                JobState::Queued
            }
        };
        job.state.clone()
    }

    /// Cancels every job not yet finished; returns those that were running.
    pub fn cancel_all(&mut self) -> Vec<JobId> {
        self.queue.clear();
        let mut running = Vec::new();
        for (i, j) in self.jobs.iter_mut().enumerate() {
            match j.state {
                JobState::Queued => j.state = JobState::Cancelled,
                JobState::Running { .. } => {
                    running.push(i);
                    j.state = JobState::Cancelled;
                }
                _ => {}
            }
        }
        running
    }

    /// Cancels one job.
    pub fn cancel(&mut self, id: JobId) {
        self.queue.retain(|&q| q != id);
        let job = &mut self.jobs[id];
        if let JobState::Running { worker, solver } = &job.state {
            if let Some(w) = self.workers.get_mut(worker) {
                w.running = w.running.saturating_sub(1);
                if let Some(n) = w.by_solver.get_mut(solver) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        if matches!(job.state, JobState::Queued | JobState::Running { .. }) {
            job.state = JobState::Cancelled;
        }
    }

    /// A job's state.
    pub fn state(&self, id: JobId) -> &JobState {
        &self.jobs[id].state
    }

    /// Attempts made for a job.
    pub fn attempts(&self, id: JobId) -> u32 {
        self.jobs[id].attempts
    }

    /// Whether every job is done, failed or cancelled.
    pub fn finished(&self) -> bool {
        self.jobs
            .iter()
            .all(|j| matches!(j.state, JobState::Done | JobState::Failed(_) | JobState::Cancelled))
    }

    /// Counts (queued, running, done, failed).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for j in &self.jobs {
            match j.state {
                JobState::Queued => c.0 += 1,
                JobState::Running { .. } => c.1 += 1,
                JobState::Done => c.2 += 1,
                JobState::Failed(_) | JobState::Cancelled => c.3 += 1,
            }
        }
        c
    }

    /// Queued jobs that no known worker could ever run (wrong solver): the caller may fail them.
    pub fn unplaceable(&self) -> Vec<JobId> {
        self.queue
            .iter()
            .copied()
            .filter(|&id| {
                let s = self.jobs[id].solver.as_deref();
                !self.workers.values().any(|w| match s {
                    Some(s) => w.cap.solvers.iter().any(|(n, _)| n.eq_ignore_ascii_case(s)),
                    None => !w.cap.solvers.is_empty(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(slots: u32, solvers: &[(&str, u32)]) -> Capacity {
        Capacity { slots, solvers: solvers.iter().map(|(n, s)| (n.to_string(), *s)).collect(), load: 0 }
    }

    #[test]
    fn fills_free_slots_and_respects_per_solver_counts() {
        let mut s = Scheduler::new(3);
        for _ in 0..10 {
            s.add_job(Some("cplex".into()));
        }
        s.worker_up("a", cap(8, &[("cplex", 2), ("highs", 8)]));
        s.worker_up("b", cap(4, &[("highs", 4)]));
        let a = s.assign();
        assert_eq!(a.len(), 2, "only 2 cplex licences: {a:?}");
        assert!(a.iter().all(|x| x.worker == "a" && x.solver == "cplex"));
        assert_eq!(s.counts(), (8, 2, 0, 0));
        s.finish(a[0].job, Outcome::Solved);
        let b = s.assign();
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn default_solver_uses_best_with_free_slots_and_spreads() {
        let mut s = Scheduler::new(3);
        for _ in 0..6 {
            s.add_job(None);
        }
        s.worker_up("a", cap(2, &[("highs", 2), ("microlp", 2)]));
        s.worker_up("b", cap(2, &[("microlp", 2)]));
        let a = s.assign();
        assert_eq!(a.len(), 4);
        assert_eq!(a.iter().filter(|x| x.worker == "a").count(), 2);
        assert!(a.iter().filter(|x| x.worker == "a").all(|x| x.solver == "highs"));
    }

    #[test]
    fn lost_worker_requeues_and_retries_elsewhere() {
        let mut s = Scheduler::new(3);
        let j = s.add_job(None);
        s.worker_up("a", cap(1, &[("microlp", 1)]));
        s.worker_up("b", cap(1, &[("microlp", 1)]));
        let first = s.assign()[0].worker.clone();
        for id in s.worker_down(&first) {
            assert_eq!(s.finish(id, Outcome::Retry("lost".into())), JobState::Queued);
        }
        let again = s.assign();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].worker, first);
        assert_eq!(s.finish(j, Outcome::Solved), JobState::Done);
        assert_eq!(s.attempts(j), 2);
        assert!(s.finished());
    }

    #[test]
    fn a_job_that_keeps_crashing_fails_after_max_attempts() {
        let mut s = Scheduler::new(2);
        let j = s.add_job(None);
        let ok = s.add_job(None);
        s.worker_up("a", cap(2, &[("microlp", 2)]));
        s.assign();
        s.finish(ok, Outcome::Solved);
        s.finish(j, Outcome::Retry("crash".into()));
        s.assign();
        let st = s.finish(j, Outcome::Retry("crash".into()));
        assert!(matches!(st, JobState::Failed(Failure::GaveUp { attempts: 2, .. })), "{st:?}");
        assert!(s.finished());
    }

    #[test]
    fn draining_workers_get_no_jobs_and_new_workers_do() {
        let mut s = Scheduler::new(3);
        s.add_job(None);
        s.add_job(None);
        s.worker_up("a", cap(1, &[("microlp", 1)]));
        s.worker_draining("a");
        assert!(s.assign().is_empty());
        s.worker_up("b", cap(2, &[("microlp", 2)]));
        let a = s.assign();
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|x| x.worker == "b"));
    }

    #[test]
    fn fatal_failures_are_not_retried_and_cancel_clears_everything() {
        let mut s = Scheduler::new(3);
        let j = s.add_job(None);
        s.add_job(None);
        s.add_job(Some("gurobi".into()));
        s.worker_up("a", cap(1, &[("microlp", 1)]));
        s.assign();
        assert!(matches!(s.finish(j, Outcome::Fatal("bad".into())), JobState::Failed(Failure::Refused(_))));
        assert_eq!(s.unplaceable(), vec![2]);
        let running = {
            s.assign();
            s.cancel_all()
        };
        assert_eq!(running, vec![1]);
        assert!(s.finished());
    }
}
