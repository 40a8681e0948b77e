//! Runtime fault state, shared by all connections of one echo cell.
//!
//! Read on every request, so it lives in atomics: the hot path costs a few relaxed loads and
//! never takes a lock. Only hung requests touch the [`Notify`].

use std::{
    pin::pin,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{args::valid_error_rate, error::EchoError};

/// Error rates are stored in parts per million so they fit an atomic integer.
const PPM: u32 = 1_000_000;

/// Latency, error rate and hang switch of one echo cell.
#[derive(Debug)]
pub(crate) struct Faults {
    latency_ms: AtomicU64,
    error_ppm: AtomicU32,
    hang: AtomicBool,
    /// Woken when `hang` goes back to false.
    unhang: Notify,
    /// Requests currently held by `hang`, so tests can wait for "the request is stuck".
    hung: AtomicU64,
}

/// Body of `POST /_fault`: every field is optional, absent fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultUpdate {
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    hang: Option<bool>,
}

/// Answer of `GET/POST /_fault`.
#[derive(Debug, Serialize)]
pub(crate) struct FaultSnapshot {
    latency_ms: u64,
    error_rate: f64,
    hang: bool,
    hung_requests: u64,
}

impl Faults {
    /// Fault state with the given initial latency and error rate (already validated).
    pub(crate) fn new(latency: Duration, error_rate: f64) -> Self {
        Self {
            latency_ms: AtomicU64::new(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
            error_ppm: AtomicU32::new(to_ppm(error_rate)),
            hang: AtomicBool::new(false),
            unhang: Notify::new(),
            hung: AtomicU64::new(0),
        }
    }

    /// The latency to add to a request, if any.
    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.latency_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Draws whether this request is one of the `error_rate` share answered 500.
    pub(crate) fn roll_error(&self) -> bool {
        let ppm = self.error_ppm.load(Ordering::Relaxed);
        ppm > 0 && fastrand::u32(0..PPM) < ppm
    }

    /// Returns once the cell is not hung; while hung, the request is counted in
    /// `hung_requests`.
    pub(crate) async fn wait_while_hung(&self) {
        if !self.hang.load(Ordering::SeqCst) {
            return;
        }
        let _counted = HungGuard::enter(&self.hung);
        loop {
            // Register for the wake-up before re-checking the flag, so an unhang that lands
            // between the check and the await is not lost.
            let mut notified = pin!(self.unhang.notified());
            notified.as_mut().enable();
            if !self.hang.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Applies a partial update; nothing changes if any field is invalid.
    pub(crate) fn apply(&self, update: FaultUpdate) -> Result<(), EchoError> {
        if update
            .error_rate
            .is_some_and(|rate| !valid_error_rate(rate))
        {
            return Err(EchoError::ErrorRateOutOfRange);
        }
        if let Some(ms) = update.latency_ms {
            self.latency_ms.store(ms, Ordering::Relaxed);
        }
        if let Some(rate) = update.error_rate {
            self.error_ppm.store(to_ppm(rate), Ordering::Relaxed);
        }
        if let Some(hang) = update.hang {
            self.hang.store(hang, Ordering::SeqCst);
            if !hang {
                self.unhang.notify_waiters();
            }
        }
        Ok(())
    }

    /// The current state, as shown by `/_fault`.
    pub(crate) fn snapshot(&self) -> FaultSnapshot {
        FaultSnapshot {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            error_rate: f64::from(self.error_ppm.load(Ordering::Relaxed)) / f64::from(PPM),
            hang: self.hang.load(Ordering::SeqCst),
            hung_requests: self.hung.load(Ordering::SeqCst),
        }
    }
}

fn to_ppm(rate: f64) -> u32 {
    // `rate` is validated to [0, 1], so the product fits in u32.
    (rate.clamp(0.0, 1.0) * f64::from(PPM)).round() as u32
}

/// Counts a request as hung for as long as it lives, including when the client goes away.
struct HungGuard<'a>(&'a AtomicU64);

impl<'a> HungGuard<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for HungGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
