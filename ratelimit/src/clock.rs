//! The time seam: the limiter reads time only through a [`Clock`], so tests drive it by hand.
//!
//! The production clock is coarse. Reading the monotonic clock (`clock_gettime` through the
//! vDSO) costs ~40 ns on this class of VM: half of a whole check of a cached key, and on two
//! cores hammering one key it is the gap between line transfers that keeps each core from
//! running several checks while it holds the key's line. A rate limiter needs time to the
//! millisecond, not the nanosecond (a bucket refills continuously; reading it a millisecond
//! late credits the same tokens a millisecond later, it loses none), so checks read a word
//! that one background thread refreshes every [`TICK`]. This is the cached time of nginx
//! (`ngx_current_msec`), HAProxy (`now_ms`) and Envoy (`approximateMonotonicTime`), kept by a
//! thread instead of an event loop because the limiter is called from any thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the coarse clock's thread refreshes the time it publishes. Readers see the time
/// at most one tick (plus the thread's wake-up latency) late.
pub const TICK: Duration = Duration::from_millis(1);

/// A monotonic clock in nanoseconds since an arbitrary origin fixed per clock.
///
/// Implementations must never go backwards; the limiter tolerates a clock that stands still.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin.
    fn now(&self) -> u64;
}

/// The process's monotonic clock ([`Instant`]), read coarsely: the time a background thread
/// published at most one [`TICK`] ago (see the module docs). All `SystemClock`s share one
/// thread and one origin (the first one's creation).
///
/// If the thread cannot be started, every read falls back to [`Instant::now`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    ticker: &'static Ticker,
}

/// The published time, on its own cache line: it is read by every check on every core and
/// written once per tick.
#[derive(Debug)]
#[repr(align(64))]
struct Ticker {
    origin: Instant,
    nanos: AtomicU64,
    /// The refreshing thread runs; if not, readers read the clock themselves.
    running: bool,
}

impl Ticker {
    fn elapsed(&self) -> u64 {
        duration_nanos(self.origin.elapsed())
    }
}

/// The process-wide ticker, started on first use.
fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<&'static Ticker> = OnceLock::new();
    TICKER.get_or_init(|| {
        let origin = Instant::now();
        let started = std::thread::Builder::new()
            .name("ratelimit-clock".into())
            .spawn(move || {
                let ticker = ticker();
                loop {
                    std::thread::sleep(TICK);
                    // `fetch_max`: a store could not go backwards either (one writer, a
                    // monotonic source), but this keeps the invariant local.
                    ticker.nanos.fetch_max(ticker.elapsed(), Ordering::Relaxed);
                }
            })
            .is_ok();
        // Leaked once per process: the thread refers to it for the process's life.
        Box::leak(Box::new(Ticker {
            origin,
            nanos: AtomicU64::new(0),
            running: started,
        }))
    })
}

impl SystemClock {
    /// The process's coarse clock; starts its thread on first use.
    pub fn new() -> Self {
        Self { ticker: ticker() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> u64 {
        if self.ticker.running {
            self.ticker.nanos.load(Ordering::Relaxed)
        } else {
            self.ticker.elapsed()
        }
    }
}

/// A clock that moves only when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Duration) -> Self {
        Self {
            nanos: AtomicU64::new(duration_nanos(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(duration_nanos(by), Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_ticks_and_never_goes_back() {
        let clock = SystemClock::new();
        let start = clock.now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = start;
        // Five ticks' worth of time must become visible: the thread runs.
        while last < start + 5 * duration_nanos(TICK) {
            assert!(
                Instant::now() < deadline,
                "the clock stood still at {last} ns"
            );
            let now = clock.now();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
            std::thread::yield_now();
        }
        // Another clock reads the same process-wide time.
        assert!(SystemClock::new().now() >= last);
    }
}
