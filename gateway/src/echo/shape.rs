//! What kind of body a request asked for, from its query string.

use std::time::Duration;

use super::{body::EchoBody, error::EchoError};

/// Largest chunk `chunk_bytes` may ask for.
const MAX_CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// `chunk_bytes` when only `stream_chunks` is given.
const DEFAULT_CHUNK_BYTES: usize = 1024;

/// The body a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The JSON echo answer (no shaping parameter).
    Echo,
    /// `?size=N`: `N` bytes of `x`.
    Filler {
        /// Body length in bytes.
        size: u64,
    },
    /// `?stream_chunks=N&chunk_bytes=M&chunk_interval_ms=T`.
    Chunks {
        /// Number of chunks (`N`).
        count: u32,
        /// Bytes per chunk (`M`, default 1024).
        chunk_bytes: usize,
        /// Pause between chunks (`T`, default 0).
        interval: Duration,
    },
}

impl Shape {
    /// Reads the shaping parameters of `query`; other parameters are ignored.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, EchoError> {
        let Some(query) = query else {
            return Ok(Self::Echo);
        };
        let (mut size, mut count, mut chunk_bytes, mut interval_ms) = (None, None, None, None);
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "size" => size = Some(number(value, "size", "a byte count")?),
                "stream_chunks" => {
                    count = Some(number(value, "stream_chunks", "a chunk count (u32)")?);
                }
                "chunk_bytes" => {
                    chunk_bytes = Some(number(value, "chunk_bytes", "a size from 1 to 16 MiB")?);
                }
                "chunk_interval_ms" => {
                    interval_ms = Some(number(value, "chunk_interval_ms", "milliseconds")?);
                }
                _ => {}
            }
        }
        match (size, count) {
            (Some(_), Some(_)) => Err(EchoError::InvalidQuery {
                name: "size",
                expected: "absent when stream_chunks is given",
            }),
            (Some(size), None) => Ok(Self::Filler { size }),
            (None, Some(count)) => {
                let chunk_bytes = chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES as u64);
                let chunk_bytes = usize::try_from(chunk_bytes)
                    .ok()
                    .filter(|b| (1..=MAX_CHUNK_BYTES).contains(b))
                    .ok_or(EchoError::InvalidQuery {
                        name: "chunk_bytes",
                        expected: "a size from 1 to 16 MiB",
                    })?;
                let count = u32::try_from(count).map_err(|_| EchoError::InvalidQuery {
                    name: "stream_chunks",
                    expected: "a chunk count (u32)",
                })?;
                Ok(Self::Chunks {
                    count,
                    chunk_bytes,
                    interval: Duration::from_millis(interval_ms.unwrap_or(0)),
                })
            }
            (None, None) => Ok(Self::Echo),
        }
    }

    /// The generated body of a non-echo shape.
    pub(crate) fn generated_body(self) -> Option<EchoBody> {
        match self {
            Self::Echo => None,
            Self::Filler { size } => Some(EchoBody::filler(size)),
            Self::Chunks {
                count,
                chunk_bytes,
                interval,
            } => Some(EchoBody::chunks(count, chunk_bytes, interval)),
        }
    }
}

fn number(value: &str, name: &'static str, expected: &'static str) -> Result<u64, EchoError> {
    value
        .parse()
        .map_err(|_| EchoError::InvalidQuery { name, expected })
}
