//! Polling with a deadline instead of sleeping.

use std::{
    thread,
    time::{Duration, Instant},
};

use crate::http;

/// Calls `f` until it returns true, backing off from 2 ms to 50 ms between calls.
///
/// # Panics
///
/// Panics with `what` when `f` is still false after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if f() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until `GET url` answers 200. `url` is `http://<ip>:<port><path>`.
///
/// # Panics
///
/// Panics when `url` is not of that form, or on timeout.
pub fn wait_http_ok(url: &str, timeout: Duration) {
    let (addr, path) = http::split_url(url);
    wait_until(timeout, &format!("GET {url} to answer 200"), || {
        http::get_with_timeout(addr, &path, Duration::from_secs(1)).is_ok_and(|r| r.status == 200)
    });
}
