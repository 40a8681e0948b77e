//! `cellgate echo-cell` as a fixture.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{ChildGuard, TempDir, free_addr, http, launch::launch};

/// A `cellgate echo-cell` process on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct EchoCell {
    /// The cell name (`--name`), echoed as `"cell"`.
    pub name: String,
    /// Where the cell listens.
    pub addr: SocketAddr,
    // Declared before `record`: the process dies before its record file is removed.
    child: ChildGuard,
    /// The `--record` file and the temp dir holding it, for [`start_recording`](Self::start_recording).
    record: Option<(PathBuf, TempDir)>,
}

/// One request an echo cell received, from its `--record` file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recorded {
    /// The request's `Idempotency-Key` (empty when it had none).
    pub idempotency_key: String,
    /// Its `X-Delivery-Attempt`, when present and a number.
    pub attempt: Option<u32>,
}

impl EchoCell {
    /// Runs `<cellgate_bin> echo-cell --name <name> --listen 127.0.0.1:<free port>` and waits
    /// until `GET /healthz` answers 200.
    ///
    /// # Panics
    ///
    /// Panics, with the process's logs, when it does not get ready.
    pub fn start(cellgate_bin: &Path, name: &str) -> EchoCell {
        Self::start_with(cellgate_bin, name, &[])
    }

    /// Like [`start`](Self::start), with extra flags, e.g. `&["--latency", "5ms"]`.
    ///
    /// # Panics
    ///
    /// Panics, with the process's logs, when it does not get ready.
    pub fn start_with(cellgate_bin: &Path, name: &str, args: &[&str]) -> EchoCell {
        Self::launch(cellgate_bin, name, args, None)
    }

    /// Like [`start_with`](Self::start_with), and records every echoed request (`--record`
    /// to a file in a temp dir of its own): read them with [`recorded`](Self::recorded).
    ///
    /// # Panics
    ///
    /// Panics, with the process's logs, when it does not get ready.
    pub fn start_recording(cellgate_bin: &Path, name: &str, args: &[&str]) -> EchoCell {
        let dir = TempDir::new("echo-record");
        let file = dir.path().join("requests.log");
        Self::launch(cellgate_bin, name, args, Some((file, dir)))
    }

    fn launch(
        cellgate_bin: &Path,
        name: &str,
        args: &[&str],
        record: Option<(PathBuf, TempDir)>,
    ) -> EchoCell {
        let what = format!("echo cell {name}");
        let (child, addr) = launch(
            &what,
            || {
                let addr = free_addr();
                let mut cmd = Command::new(cellgate_bin);
                cmd.args(["echo-cell", "--name", name, "--listen", &addr.to_string()])
                    .args(args);
                if let Some((file, _)) = &record {
                    cmd.arg("--record").arg(file);
                }
                (ChildGuard::spawn(&what, cmd), addr)
            },
            |addr| {
                http::get_with_timeout(*addr, "/healthz", Duration::from_secs(1))
                    .is_ok_and(|r| r.status == 200)
            },
        );
        EchoCell {
            name: name.to_owned(),
            addr,
            child,
            record,
        }
    }

    /// Every request recorded so far, in arrival order (a line still being written is left
    /// out).
    ///
    /// # Panics
    ///
    /// Panics when the cell was not started with [`start_recording`](Self::start_recording)
    /// or its record file cannot be read.
    pub fn recorded(&self) -> Vec<Recorded> {
        let (file, _) = self.record.as_ref().unwrap_or_else(|| {
            panic!(
                "echo cell {} was not started with EchoCell::start_recording",
                self.name
            )
        });
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            // Nothing echoed yet: the cell creates the file at start, but be lenient.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading the record file {}: {e}", file.display()),
        };
        String::from_utf8_lossy(&bytes)
            .split_inclusive('\n')
            // Only complete lines: the cell may be writing the next one right now.
            .filter_map(|line| line.strip_suffix('\n'))
            .map(|line| {
                let (key, attempt) = line.split_once('\t').unwrap_or((line, ""));
                Recorded {
                    idempotency_key: key.to_owned(),
                    attempt: attempt.parse().ok(),
                }
            })
            .collect()
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /_fault` with `json` (e.g. `{"error_rate":1.0}`); returns the new fault state.
    ///
    /// # Panics
    ///
    /// Panics unless the cell answers 200.
    pub fn set_fault(&self, json: &str) -> serde_json::Value {
        let response = http::post_json(self.addr, "/_fault", json)
            .unwrap_or_else(|e| panic!("POST /_fault to {}: {e}", self.name));
        assert_eq!(
            response.status,
            200,
            "POST /_fault {json}: {}",
            response.text()
        );
        response.json()
    }

    /// Freezes the process (SIGSTOP): connections are accepted by the kernel, never answered.
    pub fn stop(&self) {
        self.child.signal(libc::SIGSTOP);
    }

    /// Resumes a process frozen by [`stop`](Self::stop) (SIGCONT).
    pub fn cont(&self) {
        self.child.signal(libc::SIGCONT);
    }

    /// The process, e.g. to kill it or send it other signals.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }

    /// What the process logged so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }
}
