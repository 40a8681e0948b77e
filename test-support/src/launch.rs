//! Starting a process and waiting for it to be ready, retrying port races.

use std::{
    thread,
    time::{Duration, Instant},
};

use crate::ChildGuard;

/// How many times a fixture tries fresh ports before giving up.
const ATTEMPTS: usize = 5;
/// How long a started process may take to become ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a start attempt ended.
pub(crate) enum Startup {
    /// The readiness check passed.
    Ready,
    /// The process exited first, e.g. because another process took its port.
    Exited(std::process::ExitStatus),
}

/// Polls `ready` until it passes or the process exits.
///
/// # Panics
///
/// Panics, with the process's logs, when neither happens within [`READY_TIMEOUT`].
pub(crate) fn await_ready(
    child: &mut ChildGuard,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Startup {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_exit() {
            return Startup::Exited(status);
        }
        if ready() {
            return Startup::Ready;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "{what} (pid {}) not ready after {READY_TIMEOUT:?}; logs:\n{}",
            child.pid(),
            child.logs()
        );
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Starts a process with `start` (which picks fresh ports, returned as `T`) until one attempt
/// passes `ready`; an attempt whose process exits early is retried with new ports.
///
/// # Panics
///
/// Panics, with the last attempt's logs, after [`ATTEMPTS`] early exits.
pub(crate) fn launch<T>(
    what: &str,
    mut start: impl FnMut() -> (ChildGuard, T),
    mut ready: impl FnMut(&T) -> bool,
) -> (ChildGuard, T) {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let (mut child, ports) = start();
        match await_ready(&mut child, what, || ready(&ports)) {
            Startup::Ready => return (child, ports),
            Startup::Exited(status) => {
                last = format!(
                    "attempt {attempt} exited with {status}; logs:\n{}",
                    child.logs()
                );
            }
        }
    }
    panic!("{what} exited before becoming ready {ATTEMPTS} times; {last}")
}
