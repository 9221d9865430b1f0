//! One cell carried out by itself — the `run-cell` primitive that `tcobench run`'s children and
//! a scheduler's tasks share — not yet committed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcobench_backends::VirtualClock;

use super::backends::{Backends, REFERENCE_LOGITS_DIR};
use super::cell::{finish_energy, run_cell, CellRun};
use super::clock::Clock;
use super::process;
use super::timeline::Timeline;
use super::writer::{CellResult, RunDir};
use crate::plan::Plan;
use crate::power;
use crate::power::window::WindowPolicy;

/// Where a cell run by itself starts its run clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellClockStart {
    /// The mock backend's virtual clock, at this reading (runs whose cells are all mock).
    Virtual(u64),
    /// Wall time on the timeline of a run that started at this RFC 3339 time; `None`: now.
    Wall(Option<String>),
}

/// The model a `run-cell` process keeps loaded between the cells it runs (`run-cell --serve`):
/// consecutive cells of the same backend, model, device and dtype load it once.
#[derive(Default)]
pub struct KeptBackends(Option<Backends>);

impl std::fmt::Debug for KeptBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeptBackends")
            .field(&self.0.as_ref().and_then(|b| b.key.clone()))
            .finish()
    }
}

/// One cell carried out by itself (the `run-cell` primitive), not yet committed.
#[derive(Debug)]
pub struct SingleCell {
    /// The cell's record, requests and power samples.
    pub result: CellResult,
    /// Requests done when a stop was asked for part-way; the result is then partial and must
    /// not be committed.
    pub stopped_after: Option<u64>,
    /// The run clock at the end, ns.
    pub clock_end_ns: u64,
}

/// Runs cell `index` of `plan` by itself: loads its backend, runs the agreement gate and the
/// requests, and samples power while it runs. `after_request(done, clock_ns)` is called after
/// every request and returns whether to go on. The cell is not committed (the caller does
/// that); only the reference logits of the agreement gate are kept in `run_dir`'s
/// [`REFERENCE_LOGITS_DIR`], so that the run's other cells need not recompute them.
pub fn run_single_cell(
    plan: &Plan,
    index: usize,
    run_dir: &RunDir,
    models_dir: &Path,
    start: &CellClockStart,
    kept: &mut KeptBackends,
    after_request: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<SingleCell> {
    // In a `run` parent's child: what this process writes on standard error from now on is
    // this cell's.
    process::mark_cell_begin(index);
    let cell = plan.cells.get(index).with_context(|| {
        format!(
            "the plan has {} cells; there is no index {index}",
            plan.cells.len()
        )
    })?;
    let settings = plan.cell_settings()?;
    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    // The mock power source counts energy from the clock's reading when it opens: opened at 0,
    // as in a run of all cells in one process, so the cell's energy figures are the same.
    // Measured on the cell's own device: a cell on cuda:1 is not measured on cuda:0's board.
    let devices = if settings.devices.contains(&cell.config.device) {
        vec![cell.config.device]
    } else {
        settings.devices.clone()
    };
    let (sampler, _) = power::open(
        &settings.power,
        &devices,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let policy = WindowPolicy::from(&settings.power);
    let clock = match start {
        _ if all_mock => {
            if let CellClockStart::Virtual(ns) = start {
                virtual_clock.advance_ns(*ns);
            }
            Clock::Virtual(virtual_clock.clone())
        }
        CellClockStart::Wall(Some(started)) => Clock::wall_since(started)?,
        _ => Clock::Wall(Instant::now()),
    };
    let sampler = Arc::new(Mutex::new(sampler));
    let timeline = Timeline::new(Some(cell.cell_id.clone()));
    let thread = sampler
        .lock()
        .expect("sampler lock")
        .wants_timeline()
        .then(|| {
            timeline.start(
                &sampler,
                &clock,
                Duration::from_millis(u64::from(settings.power.sample_ms)),
            )
        });
    let fresh = |clock: VirtualClock| {
        let mut b = Backends::new(models_dir, settings.ort_threads.into(), clock);
        b.reference_dir = Some(run_dir.path.join(REFERENCE_LOGITS_DIR));
        b.mock = Some((settings.mock, run_dir.run_id.clone()));
        b
    };
    // Mock cells run on this cell's virtual clock, so they get backends of their own; real
    // backends stay loaded for the next cell of this process.
    let mut backends = match kept.0.take() {
        Some(b) if !all_mock => b,
        _ => fresh(virtual_clock),
    };
    let mut done = 0;
    let CellRun {
        mut result,
        stopped_after,
        window,
    } = run_cell(
        cell,
        &run_dir.run_id,
        plan.seed,
        &mut backends,
        &clock,
        &sampler,
        &policy,
        &mut || {
            done += 1;
            after_request(done, clock.now_ns())
        },
    );
    result.power = timeline.stop(thread);
    finish_energy(&mut result, window.as_ref(), &policy);
    if !all_mock {
        kept.0 = Some(backends);
    }
    Ok(SingleCell {
        result,
        stopped_after,
        clock_end_ns: clock.now_ns(),
    })
}
