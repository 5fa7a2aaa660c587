//! The crate's vocabulary: every message type ([`message`]) and the one frame
//! codec ([`frame`]). One request per bidirectional QUIC stream.
//!
//! A solve stream carries: client → [`Request::Solve`] frame, then exactly
//! `size` raw model bytes, then FIN; worker → [`Response`] frames
//! (`Started`, then `Done` or `Failed`).
//!
//! This module imports only [`crate::model`] (for [`Format`](crate::model::Format)).

pub mod frame;
pub mod message;

pub use frame::{encode, read_msg, write_msg, FrameError};
pub use message::*;

/// ALPN of this protocol version; a peer speaking another version fails at the handshake.
pub const ALPN: &[u8] = b"meshsolve/1";
/// Protocol version advertised over mDNS.
pub const VERSION: u32 = 1;
/// Largest control message accepted (requests and status replies).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest response frame accepted (a solution with many values).
pub const MAX_RESPONSE: usize = 512 * 1024 * 1024;
/// Largest step frame accepted (three vectors over the first-stage variables).
pub const MAX_STEP: usize = 64 * 1024 * 1024;
