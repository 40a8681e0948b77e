//! `--record <FILE>`: one line per echoed request, for tests that count what a cell received.
//!
//! Each line is the request's `Idempotency-Key` (empty when absent) and, after a tab, its
//! `X-Delivery-Attempt` when present. Lines are appended with one `write(2)` each on a file
//! opened with `O_APPEND` and no user-space buffer, so a line is in the file as soon as the
//! request is received, even if the process is then SIGKILLed or frozen with SIGSTOP.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::Path,
};

use http::HeaderMap;
use tracing::warn;

/// The open record file.
#[derive(Debug)]
pub(crate) struct Recorder {
    file: File,
}

impl Recorder {
    /// Opens `path` for appending, creating it if missing.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("opening record file {}: {e}", path.display()),
                )
            })?;
        Ok(Self { file })
    }

    /// Appends the line of a request with `headers`.
    ///
    /// A blocking write on the async path: this is a test backend, the line is short and the
    /// file is local, and a line must be on disk before the request is answered.
    pub(crate) fn record(&self, headers: &HeaderMap) {
        let mut line = Vec::with_capacity(64);
        if let Some(key) = headers.get("idempotency-key") {
            line.extend_from_slice(key.as_bytes());
        }
        if let Some(attempt) = headers.get("x-delivery-attempt") {
            line.push(b'\t');
            line.extend_from_slice(attempt.as_bytes());
        }
        line.push(b'\n');
        // `&File` is `Write`: one unbuffered append per line, no lock needed.
        if let Err(error) = (&self.file).write_all(&line) {
            warn!(%error, "echo cell could not append to its record file");
        }
    }
}
