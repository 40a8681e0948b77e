//! A child process that cannot outlive its test.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::TempDir;

/// A running child process, killed (SIGKILL) and reaped on drop, even when the test panics.
///
/// Its stdout and stderr are appended to a log file ([`logs`](Self::logs)); when the guard is
/// dropped during a panic, the logs are printed to stderr so the failing test shows them.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
    /// Owns the log file's directory when the guard made one; dropped after the process.
    _log_dir: Option<TempDir>,
}

impl ChildGuard {
    /// Spawns `cmd` (named `name` in messages), logging to a file in a fresh temp dir.
    ///
    /// # Panics
    ///
    /// Panics when the process cannot be spawned.
    pub fn spawn(name: &str, cmd: Command) -> ChildGuard {
        let dir = TempDir::new("child");
        let log = dir.path().join("output.log");
        let mut guard = Self::spawn_logged(name, cmd, &log);
        guard._log_dir = Some(dir);
        guard
    }

    /// Spawns `cmd`, appending its output to `log` (created if missing), so that one log can
    /// span several runs of a restarted process.
    ///
    /// # Panics
    ///
    /// Panics when the log cannot be opened or the process cannot be spawned.
    pub fn spawn_logged(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening log {} for {name}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating log handle for {name}: {e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            status: None,
            _log_dir: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`, `libc::SIGCONT`, `libc::SIGTERM`).
    ///
    /// Uses the `kill` command rather than `libc::kill`, which would need `unsafe`.
    ///
    /// # Panics
    ///
    /// Panics when the process has already been reaped (its pid may belong to someone else
    /// by now) or `kill` fails.
    pub fn signal(&self, signal: libc::c_int) {
        assert!(
            self.status.is_none(),
            "cannot signal {}: it already exited with {:?}",
            self.name,
            self.status
        );
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running `kill` to signal {}: {e}", self.name));
        assert!(
            status.success(),
            "kill -{signal} {} ({}) failed",
            self.pid(),
            self.name
        );
    }

    /// The exit status, if the process has exited (reaping it).
    ///
    /// # Panics
    ///
    /// Panics when the status cannot be queried.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("checking whether {} exited: {e}", self.name));
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (a stopped process too) and reaps it.
    ///
    /// # Panics
    ///
    /// Panics when the process cannot be reaped.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        // Fails only if the process already exited, which `wait` below then reports.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("reaping {}: {e}", self.name));
        self.status = Some(status);
        status
    }

    /// Everything the process wrote to stdout and stderr so far (lossy UTF-8).
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read log {}: {e}>", self.log.display()))
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "----- logs of {} (pid {}) -----\n{}----- end of logs of {} -----",
                self.name,
                self.child.id(),
                self.logs(),
                self.name
            );
        }
    }
}
