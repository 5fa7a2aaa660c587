//! A scenario kept resident on a worker for progressive hedging: one open
//! stream per scenario, the model sent once, then one small [`Step`] frame per
//! iteration.

use std::path::Path;

use crate::client::{JobFailure, Mesh, Stream};
use crate::protocol::{
    encode, read_msg, write_msg, FailKind, Request, ResidentOpen, Response, SolveRequest, Step, StepReply,
    WorkerAd, MAX_CONTROL, MAX_RESPONSE,
};

/// A scenario resident on a worker: one open stream, one step at a time.
pub struct ResidentScenario {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    conn: quinn::Connection,
    /// Worker instance holding it.
    pub worker: String,
    /// Whether its proximal term is quadratic.
    pub quadratic: bool,
    /// Bytes sent on this stream so far.
    pub bytes: u64,
    /// Its slowest step so far: a step 20 times slower (and over the least
    /// patience) means the worker is stuck, and the scenario moves elsewhere.
    slowest: std::time::Duration,
}

impl ResidentScenario {
    /// Loads a scenario on a worker and keeps it resident there (progressive hedging).
    ///
    /// # Errors
    /// A [`JobFailure`]: `Rejected` when the worker refuses the scenario (retrying will not help),
    /// otherwise worth retrying elsewhere.
    pub async fn open(
        mesh: &Mesh,
        ad: &WorkerAd,
        path: &Path,
        header: &SolveRequest,
        nonants: &[String],
    ) -> Result<ResidentScenario, JobFailure> {
        let Stream { mut send, mut recv, conn, addr } =
            mesh.open(ad).await.map_err(|e| JobFailure::Lost(e.to_string()))?;
        let lost = |e: &dyn std::fmt::Display| match conn.close_reason() {
            Some(r) => JobFailure::Lost(format!("lost worker {addr}: {r}")),
            None => JobFailure::Retry(format!("stream to {addr} failed: {e}")),
        };
        let open = ResidentOpen { model: header.clone(), nonants: nonants.to_vec() };
        write_msg(&mut send, &Request::Resident(open)).await.map_err(|e| lost(&e))?;
        let file = std::fs::File::open(path)
            .map_err(|e| JobFailure::Rejected(format!("cannot open {}: {e}", path.display())))?;
        crate::transport::send_file(file, &mut send).await.map_err(|e| lost(&e))?;
        match read_msg::<Response>(&mut recv, MAX_CONTROL).await {
            Ok(Some(Response::Ready { quadratic, .. })) => Ok(ResidentScenario {
                send,
                recv,
                conn,
                worker: ad.instance.clone(),
                quadratic,
                bytes: header.size,
                slowest: std::time::Duration::ZERO,
            }),
            Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                Err(JobFailure::Rejected(message))
            }
            Ok(Some(Response::Failed { message, .. })) => Err(JobFailure::Retry(message)),
            Ok(_) => Err(JobFailure::Retry("worker sent an unexpected reply".into())),
            Err(e) => Err(lost(&e)),
        }
    }

    /// Runs one step on the worker, giving it at least `least_patience` (and 20
    /// times the slowest step so far) before the worker counts as stuck.
    ///
    /// # Errors
    /// A [`JobFailure`]: `Rejected` when the worker refuses the step, `Lost` when the worker is
    /// gone.
    pub async fn step(
        &mut self,
        step: &Step,
        least_patience: std::time::Duration,
    ) -> Result<StepReply, JobFailure> {
        let frame = encode(step).map_err(|e| JobFailure::Rejected(e.to_string()))?;
        self.bytes += frame.len() as u64;
        let conn = self.conn.clone();
        let lost = |e: &dyn std::fmt::Display| match conn.close_reason() {
            Some(r) => JobFailure::Lost(format!("lost worker: {r}")),
            None => JobFailure::Retry(format!("stream failed: {e}")),
        };
        self.send.write_all(&frame).await.map_err(|e| lost(&e))?;
        let patience = (self.slowest * 20).max(least_patience);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(patience, read_msg::<Response>(&mut self.recv, MAX_RESPONSE)).await;
        let Ok(answer) = answer else {
            return Err(JobFailure::Lost(format!(
                "worker {} gave no answer to a step in {:.1} s (its slowest so far took {:.1} s)",
                self.worker,
                patience.as_secs_f64(),
                self.slowest.as_secs_f64()
            )));
        };
        self.slowest = self.slowest.max(started.elapsed());
        match answer {
            Ok(Some(Response::Step(r))) => Ok(r),
            Ok(Some(Response::Failed { kind: FailKind::Rejected, message })) => {
                Err(JobFailure::Rejected(message))
            }
            Ok(Some(Response::Failed { kind: FailKind::Unavailable, message })) => {
                Err(JobFailure::Unavailable(message))
            }
            Ok(Some(Response::Failed { message, .. })) => Err(JobFailure::Retry(message)),
            Ok(Some(_)) => Err(JobFailure::Retry("worker sent an unexpected reply".into())),
            Ok(None) => Err(lost(&"worker closed the stream")),
            Err(e) => Err(lost(&e)),
        }
    }

    /// Releases the scenario (the worker stops its solver process).
    pub fn close(mut self) {
        let _ = self.send.finish();
    }
}
