//! What this worker is doing and has done: the jobs `meshsolve ps` lists (a
//! bounded history of finished ones) and `meshsolve kill` cancels.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::protocol::{JobPhase, JobView, SolveRequest};

/// Finished jobs remembered for `meshsolve ps --all`.
const HISTORY: usize = 100;

struct Live {
    view: JobView,
    since: Instant,
    cancel: CancellationToken,
    killed: bool,
}

/// The worker's jobs.
#[derive(Default)]
pub(crate) struct Board {
    inner: Mutex<(BTreeMap<u64, Live>, VecDeque<JobView>)>,
    /// Jobs ended with an answer, and without one, since the worker started.
    counts: Mutex<(u64, u64)>,
}

impl Board {
    /// A job arrived; it waits (upload, slot, licence) until [`Board::running`].
    pub fn arrived(
        &self,
        id: u64,
        req: &SolveRequest,
        solver: &str,
        client: &str,
        cancel: CancellationToken,
    ) {
        let client = match &req.sender {
            Some(s) => format!("{} pid {} ({client})", s.host, s.pid),
            None => client.to_string(),
        };
        let view = JobView {
            id,
            model: req.name.clone(),
            solver: solver.to_string(),
            client,
            attempt: req.attempt,
            phase: JobPhase::Queued,
            seconds: 0.0,
            outcome: None,
        };
        if let Ok(mut b) = self.inner.lock() {
            b.0.insert(id, Live { view, since: Instant::now(), cancel, killed: false });
        }
    }

    /// The job's solver started.
    pub fn running(&self, id: u64) {
        if let Ok(mut b) = self.inner.lock() {
            if let Some(l) = b.0.get_mut(&id) {
                l.view.phase = JobPhase::Running;
            }
        }
    }

    /// The job ended (`ok`: with an answer), as `outcome` says.
    pub fn ended(&self, id: u64, ok: bool, outcome: String) {
        let Ok(mut b) = self.inner.lock() else { return };
        let Some(l) = b.0.remove(&id) else { return };
        let mut view = l.view;
        view.phase = if ok { JobPhase::Done } else { JobPhase::Failed };
        if let Ok(mut c) = self.counts.lock() {
            if ok {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        view.seconds = l.since.elapsed().as_secs_f64();
        view.outcome = Some(outcome);
        b.1.push_front(view);
        b.1.truncate(HISTORY);
    }

    /// Running and waiting jobs, then (with `all`) the finished ones, newest first.
    pub fn snapshot(&self, all: bool) -> Vec<JobView> {
        let Ok(b) = self.inner.lock() else { return Vec::new() };
        let mut out: Vec<JobView> =
            b.0.values()
                .map(|l| JobView { seconds: l.since.elapsed().as_secs_f64(), ..l.view.clone() })
                .collect();
        if all {
            out.extend(b.1.iter().cloned());
        }
        out
    }

    /// Jobs ended with an answer, and without one, since the worker started.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }

    /// Cancels job `id`; whether it was here.
    pub fn kill(&self, id: u64) -> bool {
        let Ok(mut b) = self.inner.lock() else { return false };
        match b.0.get_mut(&id) {
            Some(l) => {
                l.killed = true;
                l.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether job `id` was cancelled with `meshsolve kill` (its client must not retry it).
    pub fn killed(&self, id: u64) -> bool {
        self.inner.lock().is_ok_and(|b| b.0.get(&id).is_some_and(|l| l.killed))
    }
}
