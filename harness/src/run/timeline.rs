//! Power sampling on the run's clock: the background timeline of samples taken while cells run,
//! and the idle baseline measured before any model is loaded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tcobench_results::schema::{self, PowerSample};

use super::clock::Clock;
use crate::power::window::{self as energy_window, Edge, SourceInfo, WindowPolicy};
use crate::power::{self, PowerSampler, Reading};

/// Shared state of the background power timeline.
pub(crate) struct Timeline {
    samples: Mutex<Vec<PowerSample>>,
    pub(crate) current_cell: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Timeline {
    pub(crate) fn new(cell: Option<String>) -> Arc<Timeline> {
        Arc::new(Timeline {
            samples: Mutex::new(Vec::new()),
            current_cell: Mutex::new(cell),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts sampling every `period` on a background thread, each sample tagged with the cell
    /// in `current_cell`.
    pub(crate) fn start(
        self: &Arc<Self>,
        sampler: &Arc<Mutex<Box<dyn PowerSampler>>>,
        clock: &Clock,
        period: Duration,
    ) -> JoinHandle<()> {
        let (sampler, timeline, clock) = (sampler.clone(), self.clone(), clock.clone());
        std::thread::spawn(move || {
            // On a fixed schedule, parked rather than slept, so that stopping never waits a
            // whole period and delays do not accumulate.
            power::sample_every(period, &timeline.stop, || {
                let cell = timeline.current_cell.lock().expect("lock").clone();
                let s = sample(&sampler, &clock, cell);
                timeline.samples.lock().expect("lock").push(s);
            });
        })
    }

    /// Stops the sampling thread and returns every sample not taken yet.
    pub(crate) fn stop(&self, thread: Option<JoinHandle<()>>) -> Vec<PowerSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = thread {
            t.thread().unpark();
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().expect("lock"))
    }

    pub(crate) fn take(&self) -> Vec<PowerSample> {
        std::mem::take(&mut *self.samples.lock().expect("lock"))
    }
}

fn sample(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    cell: Option<String>,
) -> PowerSample {
    sample_with_reading(sampler, clock, cell).0
}

/// A timeline sample and the full reading behind it.
fn sample_with_reading(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    cell: Option<String>,
) -> (PowerSample, Reading) {
    let mut s = sampler.lock().expect("sampler lock");
    let r = s.read();
    let sample = PowerSample {
        t_ms: clock.now_ms(),
        source: s.method().to_string(),
        device: s.device(),
        cell_id: cell,
        watts: r.watts,
        energy_j_cum: r.energy_j_cum,
        temp_c: r.temp_c,
        sm_clock_mhz: r.sm_clock_mhz,
        throttle_reasons: r.throttle_reasons,
    };
    (sample, r)
}

/// Measures idle power for `seconds` with the run's own sampler, reading it every `sample_ms`
/// (the samples are returned for the run's timeline).
pub(crate) fn idle_baseline(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    settings: &crate::scenario::PowerSettings,
) -> (schema::IdleBaseline, Vec<PowerSample>) {
    let policy = WindowPolicy::from(settings);
    let source = SourceInfo::of(sampler.lock().expect("sampler lock").as_ref());
    let (first, r0) = sample_with_reading(sampler, clock, None);
    let period = Duration::from_millis(u64::from(settings.sample_ms));
    let until = Instant::now() + Duration::from_secs_f64(settings.idle_baseline_s);
    let mut samples = vec![first.clone()];
    let mut last = (first.clone(), r0);
    while Instant::now() < until {
        std::thread::sleep(period.min(until.saturating_duration_since(Instant::now())));
        last = sample_with_reading(sampler, clock, None);
        samples.push(last.0.clone());
    }
    let start = Edge {
        t_ms: first.t_ms,
        reading: r0,
    };
    let end = Edge {
        t_ms: last.0.t_ms,
        reading: last.1,
    };
    let window = energy_window::summarise(&source, &policy, &start, &end, &samples, 0, 0);
    let watts = window
        .energy_j
        .filter(|_| window.window_ms > 0.0)
        .map(|e| e / (window.window_ms / 1e3));
    (schema::IdleBaseline { window, watts }, samples)
}
