//! Framing: one JSON object per line (newline-delimited JSON), at most [`MAX_FRAME`]
//! bytes a line. Reading is bounded, so a peer that never sends a newline cannot make
//! the other side buffer without limit; a malformed line is an error, never a panic.

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts (64 MiB: Vault's 32 MiB request limit after
/// base64 and JSON escaping).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame could not be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The pipe failed underneath.
    Io(String),
    /// A line longer than the limit.
    TooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The stream ended in the middle of a line.
    Truncated,
    /// The line is not a message of the protocol (bad JSON, unknown type, missing field).
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge { max } => write!(f, "frame longer than {max} bytes"),
            FrameError::Truncated => write!(f, "stream ended in the middle of a frame"),
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Read the next frame (without its newline). `Ok(None)` is a clean end of stream at a
/// frame boundary. Empty lines are skipped; a trailing `\r` is dropped.
pub async fn read_frame<R>(reader: &mut R, max: usize) -> Result<Option<Vec<u8>>, FrameError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let mut line: Vec<u8> = Vec::new();
    loop {
        let available = reader
            .fill_buf()
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if available.is_empty() {
            return if line.iter().all(|b| b.is_ascii_whitespace()) {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(end) => {
                if line.len() + end > max {
                    return Err(FrameError::TooLarge { max });
                }
                line.extend_from_slice(&available[..end]);
                reader.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    line.clear();
                    continue;
                }
                return Ok(Some(line));
            }
            None => {
                let n = available.len();
                if line.len() + n > max {
                    return Err(FrameError::TooLarge { max });
                }
                line.extend_from_slice(available);
                reader.consume(n);
            }
        }
    }
}

/// Encode a message as one frame (JSON plus the newline).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut bytes =
        serde_json::to_vec(message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decode one frame (as returned by [`read_frame`]).
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(frame).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Write an encoded frame and flush it.
pub async fn write_frame<W>(writer: &mut W, frame: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    writer.write_all(frame).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Result<Option<Vec<u8>>, FrameError>> {
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let r = read_frame(&mut reader, max).await;
            let stop = !matches!(r, Ok(Some(_)));
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_frames_across_buffer_boundaries() {
        let got = frames(b"{\"a\":1}\n\n  \r\n{\"b\":22}\r\n", 1024).await;
        assert_eq!(
            got,
            vec![
                Ok(Some(b"{\"a\":1}".to_vec())),
                Ok(Some(b"{\"b\":22}".to_vec())),
                Ok(None)
            ]
        );
    }

    #[tokio::test]
    async fn a_truncated_last_line_is_an_error() {
        let got = frames(b"{\"a\":1}\n{\"b\"", 1024).await;
        assert_eq!(got.last(), Some(&Err(FrameError::Truncated)));
    }

    #[tokio::test]
    async fn an_overlong_line_is_refused_without_buffering_it() {
        let long = vec![b'x'; 100];
        let got = frames(&long, 10).await;
        assert_eq!(got, vec![Err(FrameError::TooLarge { max: 10 })]);
        let mut with_newline = long.clone();
        with_newline.push(b'\n');
        let got = frames(&with_newline, 10).await;
        assert_eq!(got, vec![Err(FrameError::TooLarge { max: 10 })]);
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [
            &b"{"[..],
            b"not json",
            b"\xff\xfe",
            b"[1,2,3]",
            b"{\"type\":42}",
        ] {
            let r: Result<crate::wire::HostMessage, _> = decode(bad);
            assert!(
                matches!(r, Err(FrameError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encode_ends_with_exactly_one_newline() {
        let frame = encode(&serde_json::json!({"s": "line\nbreak"})).unwrap();
        assert_eq!(frame.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(frame.last(), Some(&b'\n'));
    }
}
