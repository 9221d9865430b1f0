//! How a run carries out its cells, one at a time: inside this process, or in `run-cell` child
//! processes ([`super::process`]) that commit each cell into the run folder themselves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use indicatif::ProgressBar;
use tcobench_backends::VirtualClock;
use tcobench_results::schema::{CellOutcome, CellRecord, PowerSample};

use super::backends::Backends;
use super::cell::{finish_energy, run_cell, CellRun};
use super::clock::Clock;
use super::pending_record;
use super::process::{self, CellEvent, ChildEnd, CtrlC, ProcessOptions, Worker, WorkerSpawn};
use super::timeline::Timeline;
use super::writer::{CellResult, RunDir};
use crate::plan::{Cell, PLAN_FILE};
use crate::power::window::WindowPolicy;
use crate::power::PowerSampler;
use crate::scenario::PowerSettings;

/// How a run carries out its cells.
#[derive(Debug, Clone)]
pub enum Execution {
    /// Every cell inside this process, consecutive cells reusing a loaded model: for benchmarks
    /// and tests (a crash inside a backend ends the whole run).
    InProcess,
    /// `run-cell` child processes, as `tcobench run` does: consecutive cells of one model share a
    /// child that keeps it loaded, unless `process_per_cell` gives every cell its own.
    Processes(ProcessOptions),
}

/// What carrying out one cell came to.
pub(crate) enum Ran {
    /// The cell is committed (ok or failed); `end_ns` is the run clock at its end when it was
    /// kept by another process (the mock backend's virtual clock).
    Committed {
        record: CellRecord,
        end_ns: Option<u64>,
    },
    /// Stopped part-way by Ctrl-C: nothing committed, the record says how far it got.
    Stopped(CellRecord),
}

/// Carries out cells one at a time and commits them.
pub(crate) trait CellRunner {
    /// Runs and commits `cell`; `progress` is called after every request, with the run clock
    /// when it is kept by another process.
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran>;
    /// Whether the user asked the run to stop.
    fn stop_requested(&self) -> bool;
    /// Ends the runner; returns the power samples taken outside any cell.
    fn finish(self: Box<Self>) -> Vec<PowerSample>;
}

/// Cells inside this process.
pub(crate) struct InProcessCells<'a> {
    run_dir: &'a RunDir,
    seed: u64,
    clock: Clock,
    backends: Backends,
    sampler: Arc<Mutex<Box<dyn PowerSampler>>>,
    policy: WindowPolicy,
    timeline: Arc<Timeline>,
    thread: Option<JoinHandle<()>>,
    /// Samples taken between cells.
    outside: Vec<PowerSample>,
}

impl<'a> InProcessCells<'a> {
    /// Cells of the run in `run_dir` on `backends`, measured with `sampler` on `clock` under the
    /// `power` settings; with `sample_timeline`, a background thread samples the power timeline.
    pub(crate) fn start(
        run_dir: &'a RunDir,
        seed: u64,
        clock: &Clock,
        sampler: &Arc<Mutex<Box<dyn PowerSampler>>>,
        backends: Backends,
        power: &PowerSettings,
        sample_timeline: bool,
    ) -> Self {
        let timeline = Timeline::new(None);
        let thread = sample_timeline.then(|| {
            timeline.start(
                sampler,
                clock,
                Duration::from_millis(u64::from(power.sample_ms)),
            )
        });
        InProcessCells {
            run_dir,
            seed,
            clock: clock.clone(),
            backends,
            sampler: sampler.clone(),
            policy: WindowPolicy::from(power),
            timeline,
            thread,
            outside: Vec::new(),
        }
    }
}

impl CellRunner for InProcessCells<'_> {
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran> {
        *self.timeline.current_cell.lock().expect("lock") = Some(cell.cell_id.clone());
        let CellRun {
            mut result, window, ..
        } = run_cell(
            cell,
            &self.run_dir.run_id,
            self.seed,
            &mut self.backends,
            &self.clock,
            &self.sampler,
            &self.policy,
            &mut || {
                progress(None);
                true
            },
        );
        *self.timeline.current_cell.lock().expect("lock") = None;
        // Samples outside any cell (idle baseline, between cells) stay at the run level.
        let (mine, others): (Vec<_>, Vec<_>) = self
            .timeline
            .take()
            .into_iter()
            .partition(|s| s.cell_id.as_deref() == Some(cell.cell_id.as_str()));
        result.power = mine;
        finish_energy(&mut result, window.as_ref(), &self.policy);
        self.outside.extend(others);
        self.run_dir.commit_cell(&result)?;
        Ok(Ran::Committed {
            record: result.record,
            end_ns: None,
        })
    }

    fn stop_requested(&self) -> bool {
        false
    }

    fn finish(mut self: Box<Self>) -> Vec<PowerSample> {
        let rest = self.timeline.stop(self.thread.take());
        self.outside.extend(rest);
        std::mem::take(&mut self.outside)
    }
}

/// Cells in `run-cell` child processes: consecutive cells of the same backend, model, device and
/// dtype share one child (its model stays loaded), every other cell gets a new one; with
/// [`ProcessOptions::process_per_cell`], every cell does.
pub(crate) struct ChildCells<'a> {
    /// The child of the cells in flight, and what it keeps loaded.
    worker: Option<Worker>,
    options: &'a ProcessOptions,
    plan_path: PathBuf,
    run_dir: &'a RunDir,
    models_dir: &'a Path,
    /// The run's virtual clock, on runs that use one: children start from its reading.
    virtual_clock: Option<VirtualClock>,
    ctrl_c: CtrlC,
    bar: ProgressBar,
}

impl<'a> ChildCells<'a> {
    /// Cells of the plan in `run_dir` in children started as `options` says; on a run of the mock
    /// backend's `virtual_clock`, each child starts from its reading. `bar` shows the progress and
    /// passes on what the children print.
    pub(crate) fn new(
        options: &'a ProcessOptions,
        run_dir: &'a RunDir,
        models_dir: &'a Path,
        virtual_clock: Option<VirtualClock>,
        ctrl_c: CtrlC,
        bar: ProgressBar,
    ) -> Self {
        ChildCells {
            worker: None,
            options,
            plan_path: run_dir.path.join(PLAN_FILE),
            run_dir,
            models_dir,
            virtual_clock,
            ctrl_c,
            bar,
        }
    }

    /// Ends the current child, if any, passing on what it prints meanwhile.
    fn close_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let bar = self.bar.clone();
            w.close(&mut |line| bar.suspend(|| eprintln!("{line}")));
        }
    }
}

impl CellRunner for ChildCells<'_> {
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran> {
        // An execution of a replicated cell is independent only in a process of its own.
        let own_process = self.options.process_per_cell || cell.replicate.is_some();
        let key = if own_process {
            cell.cell_id.clone()
        } else {
            format!(
                "{:?}|{}|{}|{}",
                cell.config.backend, cell.config.model, cell.config.device, cell.config.dtype
            )
        };
        if self.worker.as_ref().is_some_and(|w| w.key != key) {
            self.close_worker();
        }
        // A child that died while idle is not this cell's failure: start another.
        if self.worker.as_mut().is_some_and(|w| !w.alive()) {
            self.close_worker();
        }
        let worker = match &mut self.worker {
            Some(w) => w,
            None => self.worker.insert(Worker::spawn(
                &WorkerSpawn {
                    options: self.options,
                    plan: &self.plan_path,
                    run_dir: &self.run_dir.path,
                    models_dir: self.models_dir,
                },
                key,
            )?),
        };
        let virtual_time = self.virtual_clock.is_some();
        let started_at = chrono::Utc::now().to_rfc3339();
        let bar = self.bar.clone();
        let report = worker.run_cell(
            cell.index,
            self.virtual_clock.as_ref().map(VirtualClock::now_ns),
            self.options,
            &self.ctrl_c,
            &mut |event| {
                if let CellEvent::Request { clock_ns, .. } = event {
                    progress(virtual_time.then_some(*clock_ns));
                }
            },
            &mut |line| bar.suspend(|| eprintln!("{line}")),
        )?;
        match report.end {
            // A child that stopped part-way exits by itself; collect it.
            ChildEnd::Served if matches!(report.last_event, Some(CellEvent::Stopped { .. })) => {
                self.close_worker()
            }
            ChildEnd::Served if own_process => self.close_worker(),
            ChildEnd::Served => {}
            // Gone (and reaped): the next cell starts another.
            _ => self.worker = None,
        }
        let end_ns = report.clock_ns().filter(|_| virtual_time);
        if self.run_dir.is_committed(&cell.cell_id) {
            // The child's own record is the truth, however the process ended afterwards.
            let record = self.run_dir.read_cell_status(&cell.cell_id)?;
            // A committed failed cell exits with EXIT_CELL_FAILED: that is its report, not news.
            let expected = match report.end {
                ChildEnd::Served => true,
                ChildEnd::Exited(status) => {
                    status.success()
                        || (record.status != CellOutcome::Ok
                            && status.code() == Some(i32::from(process::EXIT_CELL_FAILED)))
                }
                _ => false,
            };
            if !expected {
                let why = report.failure();
                self.bar.suspend(|| {
                    eprintln!(
                        "warning: cell {} was committed, but then {}",
                        cell.label(),
                        why.lines().next().unwrap_or_default()
                    )
                });
            }
            return Ok(Ran::Committed { record, end_ns });
        }
        let mut record = pending_record(cell);
        record.started_at = Some(started_at);
        record.ended_at = Some(chrono::Utc::now().to_rfc3339());
        if self.ctrl_c.presses() > 0 {
            record.error = Some(format!(
                "interrupted by Ctrl-C after {} of {} requests; not committed, so `run --resume` \
                 runs it again",
                report.done,
                cell.total_requests()
            ));
            return Ok(Ran::Stopped(record));
        }
        // The process died without committing: the cell failed, and the run goes on.
        record.status = CellOutcome::Failed;
        record.error = Some(report.failure());
        self.run_dir.commit_cell(&CellResult {
            record: record.clone(),
            requests: Vec::new(),
            power: Vec::new(),
        })?;
        Ok(Ran::Committed { record, end_ns })
    }

    fn stop_requested(&self) -> bool {
        self.ctrl_c.presses() > 0
    }

    fn finish(mut self: Box<Self>) -> Vec<PowerSample> {
        self.close_worker();
        Vec::new()
    }
}
