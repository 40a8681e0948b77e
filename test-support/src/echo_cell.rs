//! `cellgate echo-cell` as a fixture.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use crate::{ChildGuard, free_addr, http, launch::launch};

/// A `cellgate echo-cell` process on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct EchoCell {
    /// The cell name (`--name`), echoed as `"cell"`.
    pub name: String,
    /// Where the cell listens.
    pub addr: SocketAddr,
    child: ChildGuard,
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
        let what = format!("echo cell {name}");
        let (child, addr) = launch(
            &what,
            || {
                let addr = free_addr();
                let mut cmd = Command::new(cellgate_bin);
                cmd.args(["echo-cell", "--name", name, "--listen", &addr.to_string()])
                    .args(args);
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
        }
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
