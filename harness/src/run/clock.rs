//! The run's clock — wall time, or the mock backend's virtual time — and its units.

use std::time::Instant;

use anyhow::{Context, Result};
use tcobench_backends::VirtualClock;

/// The run's clock: wall time, or the mock backend's virtual time (deterministic).
#[derive(Debug, Clone)]
pub enum Clock {
    /// Monotonic wall time since the origin.
    Wall(Instant),
    /// Virtual nanoseconds advanced by the mock backend.
    Virtual(VirtualClock),
    /// Wall time of a run that started before this process (a `run-cell` child, a resumed
    /// run): the nanoseconds the run had lasted at `origin`, plus the time since.
    WallContinued {
        /// When this process took over the clock.
        origin: Instant,
        /// The run's age at `origin`, ns.
        offset_ns: u64,
    },
}

impl Clock {
    /// Nanoseconds since the clock's origin. Durations are differences of these integers, so
    /// they carry no rounding noise.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Wall(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Virtual(v) => v.now_ns(),
            Clock::WallContinued { origin, offset_ns } => offset_ns
                .saturating_add(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// The wall clock of a run that started at `started` (RFC 3339), so that every process of
    /// the run shares one timeline; a start in the future counts as now.
    pub fn wall_since(started: &str) -> Result<Clock> {
        let started = chrono::DateTime::parse_from_rfc3339(started)
            .with_context(|| format!("run start `{started}` is not an RFC 3339 time"))?;
        let age = chrono::Utc::now().signed_duration_since(started);
        Ok(Clock::WallContinued {
            origin: Instant::now(),
            offset_ns: u64::try_from(age.num_nanoseconds().unwrap_or(i64::MAX)).unwrap_or(0),
        })
    }

    /// Milliseconds since the clock's origin.
    pub fn now_ms(&self) -> f64 {
        ns_to_ms(self.now_ns())
    }
}

/// Nanoseconds to milliseconds.
pub(crate) fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Milliseconds on the run clock back to the nanoseconds they were made from.
pub(crate) fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

/// Moves `clock` forward to `ns` (never back).
pub(crate) fn advance_to(clock: &VirtualClock, ns: u64) {
    let now = clock.now_ns();
    if ns > now {
        clock.advance_ns(ns - now);
    }
}
