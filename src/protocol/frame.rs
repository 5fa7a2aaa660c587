//! Framing: a 4-byte big-endian length, then that many bytes of CBOR. One codec
//! for the QUIC streams (async) and the solver child's pipes (blocking).
//!
//! Every read has a size limit, and the buffer grows only as bytes arrive (a
//! lying length prefix costs nothing). A clean end of stream between frames is
//! `Ok(None)`; an end inside a frame is [`FrameError::Truncated`].

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Checks a length prefix against the limit.
fn check_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<T, FrameError> {
    ciborium::from_reader(buf).map_err(|e| FrameError::Garbage(e.to_string()))
}

/// Reads one frame of at most `max` bytes; `Ok(None)` on a clean end of stream.
///
/// # Errors
/// [`FrameError::Truncated`] when the stream ends inside the frame,
/// [`FrameError::TooLarge`] over `max`, [`FrameError::Garbage`] for bytes that
/// are not a `T`, [`FrameError::Io`] when the stream fails.
pub async fn read_msg<T: DeserializeOwned + Send + 'static>(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated { got, want: 4 }) };
        }
        got += n;
    }
    let len = check_len(prefix, max)?;
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    (&mut *r).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(FrameError::Truncated { got: buf.len(), want: len });
    }
    if len > DECODE_INLINE {
        // A big message (a solution of millions of values) takes a noticeable
        // time to decode: off the async thread, which keeps connections alive.
        return tokio::task::spawn_blocking(move || decode(&buf))
            .await
            .map_err(|e| FrameError::Garbage(e.to_string()))?
            .map(Some);
    }
    decode(&buf).map(Some)
}

/// Frames up to this size are decoded on the calling async thread.
const DECODE_INLINE: usize = 1 << 20;

/// Encodes a message as one frame.
///
/// # Errors
/// [`FrameError::Garbage`] if the message cannot be serialised, [`FrameError::TooLarge`]
/// if it does not fit a 32-bit length.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    ciborium::into_writer(msg, &mut buf).map_err(|e| FrameError::Garbage(e.to_string()))?;
    let len = u32::try_from(buf.len() - 4)
        .map_err(|_| FrameError::TooLarge { len: buf.len() - 4, max: u32::MAX as usize })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Writes one frame.
///
/// # Errors
/// As [`encode`], plus [`FrameError::Io`] when the stream fails.
pub async fn write_msg<T: Serialize>(w: &mut (impl AsyncWrite + Unpin), msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Blocking [`read_msg`], for the solver child's stdin.
///
/// # Errors
/// As [`read_msg`].
pub fn read_msg_blocking<T: DeserializeOwned>(
    r: &mut impl Read,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..])?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated { got, want: 4 }) };
        }
        got += n;
    }
    let len = check_len(prefix, max)?;
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(FrameError::Truncated { got: buf.len(), want: len });
    }
    decode(&buf).map(Some)
}

/// Blocking [`write_msg`] with a flush, for the solver child's stdout.
///
/// # Errors
/// As [`write_msg`].
pub fn write_msg_blocking<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, MAX_CONTROL};

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

    #[test]
    fn blocking_codec_matches_async_and_caps_reads() {
        let mut out = Vec::new();
        write_msg_blocking(&mut out, &Request::Status).unwrap();
        assert_eq!(out, encode(&Request::Status).unwrap());
        let got: Option<Request> = read_msg_blocking(&mut out.as_slice(), MAX_CONTROL).unwrap();
        assert!(matches!(got, Some(Request::Status)));
        let none: Option<Request> = read_msg_blocking(&mut &[][..], MAX_CONTROL).unwrap();
        assert!(none.is_none());
        // A huge announced length with nothing behind it: refused or truncated, never allocated.
        let lie = [0x10, 0, 0, 0];
        let e = read_msg_blocking::<Request>(&mut &lie[..], usize::MAX).unwrap_err();
        assert!(matches!(e, FrameError::Truncated { .. }));
        let e = read_msg_blocking::<Request>(&mut &lie[..], MAX_CONTROL).unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { .. }));
    }
}
