//! [`ProbeLog`]: the raw results of a cell's active health probes, for the automation.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The latest active-probe results of one cell's upstreams, before the healthy/unhealthy
/// thresholds: one failed probe breaks a run at once.
///
/// Guarded auto-evacuation reads it to tell that a drained cell recovered (a drained cell
/// gets no traffic, so its breaker cannot tell). Written by the probers every few seconds and
/// read once a second: a short lock, never held across an await.
#[derive(Debug)]
pub struct ProbeLog {
    upstreams: Mutex<Box<[Run]>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Run {
    /// When the current run of passed probes began; `None` after a failure or before any
    /// probe.
    passing_since: Option<Instant>,
    /// The latest passed probe.
    last_pass: Option<Instant>,
}

impl ProbeLog {
    /// A log for `upstreams` instances, none probed yet.
    pub fn new(upstreams: usize) -> Self {
        Self {
            upstreams: Mutex::new(vec![Run::default(); upstreams].into_boxed_slice()),
        }
    }

    /// Records one probe of `upstream` at `now`. Out-of-range upstreams are ignored.
    pub fn record(&self, upstream: usize, passed: bool, now: Instant) {
        if let Some(run) = self.lock().get_mut(upstream) {
            if passed {
                run.passing_since.get_or_insert(now);
                run.last_pass = Some(now);
            } else {
                run.passing_since = None;
            }
        }
    }

    /// Since when every upstream has passed every probe: the latest start of their runs.
    /// `None` when one failed its latest probe, was not probed yet, or (with `after`) has not
    /// passed a probe at or after `after`: a verdict must include evidence from after
    /// `after` (e.g. the moment the cell was drained), not only from before it.
    pub fn passing_since(&self, after: Option<Instant>) -> Option<Instant> {
        let runs = self.lock();
        let mut since: Option<Instant> = None;
        for run in runs.iter() {
            let start = run.passing_since?;
            if after.is_some_and(|after| run.last_pass.is_none_or(|pass| pass < after)) {
                return None;
            }
            since = Some(since.map_or(start, |s| s.max(start)));
        }
        since
    }

    fn lock(&self) -> MutexGuard<'_, Box<[Run]>> {
        // Each update leaves the runs consistent.
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_failure_breaks_the_run_and_every_upstream_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let log = ProbeLog::new(2);
        assert_eq!(log.passing_since(None), None, "nothing probed yet");
        log.record(0, true, t0);
        assert_eq!(log.passing_since(None), None, "upstream 1 not probed yet");
        log.record(1, true, t0 + s(1));
        assert_eq!(log.passing_since(None), Some(t0 + s(1)));
        log.record(0, true, t0 + s(5));
        assert_eq!(
            log.passing_since(None),
            Some(t0 + s(1)),
            "a run keeps its start"
        );
        assert_eq!(
            log.passing_since(Some(t0 + s(3))),
            None,
            "upstream 1: no pass since"
        );
        log.record(1, true, t0 + s(6));
        assert_eq!(log.passing_since(Some(t0 + s(3))), Some(t0 + s(1)));
        log.record(0, false, t0 + s(10));
        assert_eq!(log.passing_since(None), None);
        log.record(0, true, t0 + s(15));
        assert_eq!(log.passing_since(None), Some(t0 + s(15)));
        log.record(7, false, t0);
        assert_eq!(ProbeLog::new(0).passing_since(None), None);
    }
}
