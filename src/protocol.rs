//! Wire protocol: versioned ALPN, length-prefixed CBOR messages, one request
//! per bidirectional QUIC stream.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of CBOR.
//! Every read has a size limit; a clean end of stream between frames is
//! `Ok(None)`, an end inside a frame is [`FrameError::Truncated`].
//!
//! A solve stream carries: client → [`Request::Solve`] frame, then exactly
//! `size` raw model bytes, then FIN; worker → [`Response`] frames
//! (`Started`, then `Done` or `Failed`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::model::Format;
use crate::solver::{Solution, SolveOptions};

/// ALPN of this protocol version; a peer speaking another version fails at the handshake.
pub const ALPN: &[u8] = b"meshsolve/1";
/// Protocol version advertised over mDNS.
pub const VERSION: u32 = 1;
/// Largest control message accepted (requests and status replies).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest response frame accepted (a solution with many values).
pub const MAX_RESPONSE: usize = 512 * 1024 * 1024;

/// Errors reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame: the peer died or misbehaved. Retrying may help.
    #[error("message truncated: stream ended after {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The length prefix is above the limit for this message. Not retryable.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The bytes are not a valid CBOR message of the expected kind. Not retryable.
    #[error("malformed message: {0}")]
    Garbage(String),
    /// The transport failed. Retrying on a new connection may help.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `Ok(None)` on a clean end of stream before any byte of it.
pub async fn read_msg<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len_buf[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated { got, want: 4 }) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got, want: len });
        }
        got += n;
    }
    ciborium::from_reader(buf.as_slice()).map(Some).map_err(|e| FrameError::Garbage(e.to_string()))
}

/// Encodes a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    ciborium::into_writer(msg, &mut buf).map_err(|e| FrameError::Garbage(e.to_string()))?;
    let len = u32::try_from(buf.len() - 4)
        .map_err(|_| FrameError::TooLarge { len: buf.len() - 4, max: u32::MAX as usize })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Writes one frame.
pub async fn write_msg<T: Serialize>(w: &mut (impl AsyncWrite + Unpin), msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// A client's request; the first frame of every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Solve a model whose bytes follow the frame.
    Solve(SolveRequest),
    /// Report the worker's state.
    Status,
    /// Ask the worker to exit (graceful: running jobs finish within the grace period).
    Shutdown,
    /// Load a scenario for progressive hedging and keep it resident: the model
    /// bytes follow, then [`crate::ph::augment::Step`] frames, each answered by
    /// [`Response::Step`], until the client finishes the stream.
    Resident(ResidentOpen),
    /// Name server: register the calling worker (on this connection) for a lease.
    Register(crate::discovery::WorkerAd),
    /// Name server: extend the calling worker's lease.
    Refresh {
        /// Instance registered on this connection.
        instance: String,
    },
    /// Name server: the workers registered in the caller's namespace.
    List,
    /// Name server: pipe the rest of this stream to a registered worker (relay).
    Relay {
        /// Worker instance.
        instance: String,
    },
    /// Name server: keep this model (its bytes follow) in the namespace's queue,
    /// as part of `batch`; workers registered with the name server solve it.
    Submit {
        /// Batch id chosen by the client.
        batch: String,
        /// The model header.
        model: SolveRequest,
    },
    /// Name server: the state and results of a queued batch.
    Collect {
        /// Batch id.
        batch: String,
    },
    /// Read and discard `size` bytes that follow the frame, then answer
    /// [`Response::Received`]: raw stream throughput, for `meshsolve bench`.
    Discard {
        /// Bytes that follow.
        size: u64,
    },
}

/// Header of a solve stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SolveRequest {
    /// Model name for logs and results (the file stem).
    pub name: String,
    /// Model format.
    pub format: Format,
    /// Whether the bytes are gzip-compressed.
    pub gzip: bool,
    /// Exact number of model bytes after the frame.
    pub size: u64,
    /// Solver to use; `None` means the worker's best.
    pub solver: Option<String>,
    /// Time limit, gap and pass-through options.
    pub options: SolveOptions,
}

/// Header of a resident-scenario stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidentOpen {
    /// The scenario model, as for a solve.
    pub model: SolveRequest,
    /// Names of its first-stage (nonanticipative) variables.
    pub nonants: Vec<String>,
}

/// Largest step frame accepted (three vectors over the first-stage variables).
pub const MAX_STEP: usize = 64 * 1024 * 1024;

/// Why a job failed on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailKind {
    /// The model or options were refused; retrying elsewhere will not help.
    Rejected,
    /// The solver process crashed or overran; another worker may succeed.
    Crashed,
    /// Cancelled by the client or by worker shutdown; may be retried elsewhere.
    Cancelled,
    /// The worker could not take the job (shutting down, unknown solver); try another worker.
    Unavailable,
}

/// A worker's reply frames on a solve stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The model arrived and a solver slot was taken.
    Started,
    /// The solve finished with an answer (which may be infeasible or unbounded).
    Done(Solution),
    /// Reply to [`Request::Discard`]: how many bytes arrived.
    Received(u64),
    /// A resident scenario is loaded.
    Ready {
        /// First-stage variables found in it.
        nonants: u32,
        /// Whether its proximal term is quadratic (else linearised).
        quadratic: bool,
    },
    /// Answer to one PH step.
    Step(crate::ph::augment::StepReply),
    /// The job failed.
    Failed {
        /// Category, which tells the client whether to retry.
        kind: FailKind,
        /// Human-readable reason.
        message: String,
    },
}

/// One solver a worker can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverInfo {
    /// Name (`microlp`, `highs`).
    pub name: String,
    /// Version.
    pub version: String,
    /// Concurrent solves allowed with this solver (fewer than the worker's slots
    /// when licences are scarce).
    pub slots: u32,
}

/// Reply to [`Request::Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Worker instance name.
    pub name: String,
    /// Namespace it serves.
    pub namespace: String,
    /// meshsolve version.
    pub version: String,
    /// Solvers, best first.
    pub solvers: Vec<SolverInfo>,
    /// Solves it runs at once.
    pub slots: u32,
    /// Slots in use now.
    pub busy: u32,
    /// Whether it is draining (shutting down, taking no new jobs).
    pub draining: bool,
}

/// Name server replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NsReply {
    /// Registered or refreshed; refresh again within this many seconds.
    Leased {
        /// Lease length, seconds.
        seconds: f64,
    },
    /// The registered workers of the caller's namespace.
    Workers(Vec<crate::discovery::WorkerAd>),
    /// Refused, with the reason (wrong namespace, unknown registration, no such worker).
    Refused(String),
    /// A submitted model is queued at this position of its batch.
    Queued {
        /// Index in the batch.
        index: usize,
    },
    /// A batch's jobs, in submission order.
    Batch(Vec<QueuedJob>),
}

/// One job of a batch held by the name server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedJob {
    /// Model name.
    pub name: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// The answer, when done.
    pub solution: Option<Solution>,
    /// Why it failed, when failed.
    pub error: Option<String>,
    /// Worker that solved it.
    pub worker: Option<String>,
    /// Runs so far.
    pub attempts: u32,
}

/// Reply to [`Request::Shutdown`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownAck {
    /// Worker instance name.
    pub name: String,
    /// Jobs still running, which it will finish or cancel within its grace period.
    pub running: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_bad_input() {
        let buf = encode(&Request::Status).unwrap();
        let got: Option<Request> = read_msg(&mut buf.as_slice(), MAX_CONTROL).await.unwrap();
        assert!(matches!(got, Some(Request::Status)));
        // Clean end.
        let none: Option<Request> = read_msg(&mut &[][..], MAX_CONTROL).await.unwrap();
        assert!(none.is_none());
        // Truncated in the prefix and in the body.
        let e = read_msg::<Request>(&mut &buf[..2], MAX_CONTROL).await.unwrap_err();
        assert!(matches!(e, FrameError::Truncated { .. }));
        let e = read_msg::<Request>(&mut &buf[..buf.len() - 1], MAX_CONTROL).await.unwrap_err();
        assert!(matches!(e, FrameError::Truncated { .. }));
        // Oversized.
        let big = [0xff, 0xff, 0xff, 0xff, 0];
        let e = read_msg::<Request>(&mut &big[..], MAX_CONTROL).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { .. }));
        // Garbage.
        let junk = [0, 0, 0, 3, 0xde, 0xad, 0xbe];
        let e = read_msg::<Request>(&mut &junk[..], MAX_CONTROL).await.unwrap_err();
        assert!(matches!(e, FrameError::Garbage(_)));
    }
}
