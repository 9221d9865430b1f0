//! The cell loop that fresh and resumed runs share: the budget, the idle baseline, every cell of
//! the plan in order, then the merge, the analysis and the report.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tcobench_backends::VirtualClock;
use tcobench_results::schema::{CellOutcome, CellRecord, Manifest, PowerSample};

use super::backends::Backends;
use super::budget::{BudgetStop, BudgetTracker};
use super::clock::{advance_to, ms_to_ns, Clock};
use super::execution::{CellRunner, ChildCells, InProcessCells, Ran};
use super::log::append_experiment_log;
use super::process::CtrlC;
use super::timeline::idle_baseline;
use super::writer::RunDir;
use super::{
    analyze_and_report, merge_cells, pending_record, Execution, Interrupted, RunOptions, RunOutcome,
};
use crate::plan::{Cell, Plan};
use crate::power::PowerSampler;
use crate::scenario::Scenario;

/// A run about to carry out its cells: fresh, or resumed.
pub(crate) struct Session<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) plan: Plan,
    pub(crate) run_dir: RunDir,
    pub(crate) manifest: Manifest,
    pub(crate) clock: Clock,
    pub(crate) virtual_clock: VirtualClock,
    pub(crate) sampler: Box<dyn PowerSampler>,
    /// Cells committed before this process started (a resumed run).
    pub(crate) committed: BTreeSet<String>,
    /// What earlier attempts spent of the budget on the wall clock, $.
    pub(crate) spent_before_usd: f64,
    pub(crate) resumed: bool,
}

/// The cell loop shared by fresh and resumed runs, in one process or one process per cell; then
/// the merge, the analysis and the report.
pub(crate) fn drive(
    session: Session<'_>,
    opts: &RunOptions,
    execution: &Execution,
) -> Result<RunOutcome> {
    let Session {
        scenario,
        plan,
        run_dir,
        mut manifest,
        clock,
        virtual_clock,
        sampler,
        committed,
        spent_before_usd,
        resumed,
    } = session;
    let mut budget = open_budget(scenario, &clock, spent_before_usd);
    manifest.budget = budget.as_ref().map(BudgetTracker::record);
    run_dir.write_manifest(&manifest)?;

    let ctrl_c = match execution {
        Execution::Processes(p) if p.handle_ctrl_c => CtrlC::install()?,
        _ => CtrlC::default(),
    };
    let sampler = Arc::new(Mutex::new(sampler));
    let wants_timeline = sampler.lock().expect("sampler lock").wants_timeline();
    let mut run_samples = Vec::new();
    // Idle baseline, measured with the same method before any model is loaded.
    if !resumed && scenario.power.idle_baseline_s > 0.0 && wants_timeline {
        run_samples = measure_idle_baseline(scenario, &sampler, &clock, &run_dir, &mut manifest)?;
    }

    let total: u64 = plan.cells.iter().map(Cell::total_requests).sum();
    let bar = progress_bar(total, opts.progress);
    let mut cells: Box<dyn CellRunner + '_> = match execution {
        Execution::InProcess => Box::new(InProcessCells::start(
            &run_dir,
            plan.seed,
            &clock,
            &sampler,
            {
                let mut b = Backends::new(
                    &opts.models_dir,
                    scenario.ort_threads.into(),
                    virtual_clock.clone(),
                );
                b.mock = Some((scenario.mock, run_dir.run_id.clone()));
                b
            },
            &scenario.power,
            wants_timeline,
        )),
        Execution::Processes(options) => Box::new(ChildCells::new(
            options,
            &run_dir,
            &opts.models_dir,
            plan.all_mock().then(|| virtual_clock.clone()),
            ctrl_c.clone(),
            bar.clone(),
        )),
    };

    let mut cell_loop = CellLoop {
        plan: &plan,
        run_dir: &run_dir,
        manifest: &mut manifest,
        clock: &clock,
        virtual_clock: &virtual_clock,
        committed: &committed,
        budget: &mut budget,
        budget_stop: None,
        bar: &bar,
    };
    let interrupted = cell_loop.run_cells(cells.as_mut())?;
    ctrl_c.finishing();
    cell_loop.close_budget();
    bar.finish_and_clear();
    let outside = cells.finish();
    if !resumed || !outside.is_empty() {
        run_samples.extend(outside);
        run_dir.write_run_power(&run_samples)?;
    }

    close_manifest(&mut manifest, interrupted);
    merge_cells(&run_dir, &mut manifest)?;
    if interrupted {
        return Err(Interrupted {
            run_dir: run_dir.path.clone(),
            committed: run_dir.committed_ids()?.len(),
            total: plan.cells.len(),
        }
        .into());
    }
    report(run_dir, manifest, opts)
}

/// The budget of a scenario with `budget_usd`, charged from now on the run's clock, on top of
/// what earlier attempts of the run spent.
fn open_budget(scenario: &Scenario, clock: &Clock, spent_before_usd: f64) -> Option<BudgetTracker> {
    scenario.budget.as_ref().map(|b| {
        let mut tracker = BudgetTracker::new(b, clock.now_ns());
        tracker.spent_before_usd = spent_before_usd;
        tracker
    })
}

/// Measures the idle baseline with the run's own sampler and notes it in the manifest; returns
/// its samples, the first of the run's timeline.
fn measure_idle_baseline(
    scenario: &Scenario,
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    run_dir: &RunDir,
    manifest: &mut Manifest,
) -> Result<Vec<PowerSample>> {
    let (baseline, samples) = idle_baseline(sampler, clock, &scenario.power);
    if let Some(w) = baseline.watts {
        manifest
            .power
            .notes
            .insert("idle_watts".into(), format!("{w:.3}"));
    }
    manifest.power.notes.insert(
        "idle_baseline_s".into(),
        scenario.power.idle_baseline_s.to_string(),
    );
    manifest.power.idle_baseline = Some(baseline);
    // Kept at once: a run killed later still has its baseline.
    run_dir.write_run_power(&samples)?;
    run_dir.write_manifest(manifest)?;
    Ok(samples)
}

/// What the cell loop reads, and the manifest and budget it updates from cell to cell.
struct CellLoop<'a> {
    plan: &'a Plan,
    run_dir: &'a RunDir,
    manifest: &'a mut Manifest,
    clock: &'a Clock,
    virtual_clock: &'a VirtualClock,
    /// Cells committed before this process started (a resumed run).
    committed: &'a BTreeSet<String>,
    budget: &'a mut Option<BudgetTracker>,
    /// Set when the budget stopped the run: every later cell is skipped with the same cause.
    budget_stop: Option<BudgetStop>,
    bar: &'a ProgressBar,
}

impl CellLoop<'_> {
    /// Carries out the plan's cells in order, each recorded in the manifest; returns whether the
    /// run was interrupted (Ctrl-C) before its last cell.
    fn run_cells(&mut self, cells: &mut dyn CellRunner) -> Result<bool> {
        let plan = self.plan;
        for cell in &plan.cells {
            if self.committed.contains(&cell.cell_id) {
                self.replay_committed(cell);
                continue;
            }
            if cells.stop_requested() {
                return Ok(true);
            }
            if self.skipped_for_budget(cell) {
                continue;
            }
            let (ran, cell_start_ns) = self.carry_out(cell, cells)?;
            match ran {
                Ran::Stopped(record) => {
                    self.manifest.cells[cell.index] = record;
                    return Ok(true);
                }
                Ran::Committed { record, end_ns } => {
                    self.record_committed(cell, record, end_ns, cell_start_ns)?
                }
            }
        }
        Ok(false)
    }

    /// A cell committed by an earlier attempt. On the virtual clock its time is replayed, so the
    /// cells still to run start where they would have in an uninterrupted run.
    fn replay_committed(&self, cell: &Cell) {
        if self.plan.all_mock() {
            if let Some(end) = self.manifest.cells[cell.index].window_end_ms {
                advance_to(self.virtual_clock, ms_to_ns(end));
            }
        }
        self.bar.inc(cell.total_requests());
    }

    /// Whether the budget stopped the run before `cell` (or an earlier cell): the stop is
    /// announced once, and the cell recorded `skipped` with the numbers.
    fn skipped_for_budget(&mut self, cell: &Cell) -> bool {
        let Some(b) = self.budget.as_mut() else {
            return false;
        };
        b.warn(self.clock.now_ns(), self.bar);
        if self.budget_stop.is_none() {
            self.budget_stop = b.stop_before(cell, self.clock.now_ns());
            if let Some(stop) = &self.budget_stop {
                self.bar.suspend(|| {
                    eprintln!(
                        "budget: stopping before cell {}: {}",
                        cell.label(),
                        stop.why
                    )
                });
            }
        }
        let Some(stop) = &self.budget_stop else {
            return false;
        };
        let mut record = pending_record(cell);
        record.status = CellOutcome::Skipped;
        record.error = Some(b.skip_message(cell, stop));
        self.manifest.cells[cell.index] = record;
        self.bar.inc(cell.total_requests());
        true
    }

    /// Runs `cell`, moving the progress bar (and the virtual clock, and the budget's warnings) on
    /// after every request; returns what it came to and the run clock at its start.
    fn carry_out(&mut self, cell: &Cell, cells: &mut dyn CellRunner) -> Result<(Ran, u64)> {
        let (bar, clock, virtual_clock) = (self.bar, self.clock, self.virtual_clock);
        let budget = &mut *self.budget;
        bar.set_message(cell.label());
        let bar_at_start = bar.position();
        let cell_start_ns = clock.now_ns();
        let ran = cells.run(cell, &mut |at_ns| {
            bar.inc(1);
            if let Some(ns) = at_ns {
                advance_to(virtual_clock, ns);
            }
            if let Some(b) = budget.as_mut() {
                b.warn(clock.now_ns(), bar);
            }
        })?;
        bar.set_position(bar.position().max(bar_at_start + cell.total_requests()));
        Ok((ran, cell_start_ns))
    }

    /// Records a committed cell: the run clock goes to its end, the budget learns from it, a
    /// failure is announced, and the manifest is written.
    fn record_committed(
        &mut self,
        cell: &Cell,
        record: CellRecord,
        end_ns: Option<u64>,
        cell_start_ns: u64,
    ) -> Result<()> {
        if let Some(ns) = end_ns {
            advance_to(self.virtual_clock, ns);
        }
        if let Some(b) = self.budget.as_mut() {
            if record.status == CellOutcome::Ok {
                b.learn(cell, self.clock.now_ns().saturating_sub(cell_start_ns));
            }
            self.manifest.budget = Some(b.record_at(self.clock.now_ns()));
        }
        if record.status == CellOutcome::Failed {
            let why = record.error.as_deref().unwrap_or("unknown error");
            self.bar.suspend(|| {
                eprintln!(
                    "cell {} failed: {}",
                    cell.label(),
                    why.lines().next().unwrap_or(why)
                )
            });
        }
        self.manifest.cells[cell.index] = record;
        self.run_dir.write_manifest(self.manifest)
    }

    /// The budget's last warning and its record at the end of the cells.
    fn close_budget(&mut self) {
        if let Some(b) = self.budget.as_mut() {
            b.warn(self.clock.now_ns(), self.bar);
            self.manifest.budget = Some(b.record_at(self.clock.now_ns()));
        }
    }
}

/// The run's status once its cells are done — `complete` when every cell is ok and nothing
/// interrupted the run, else `incomplete` — and its end.
fn close_manifest(manifest: &mut Manifest, interrupted: bool) {
    let failed = manifest
        .cells
        .iter()
        .filter(|c| c.status != CellOutcome::Ok)
        .count();
    manifest.status = if failed == 0 && !interrupted {
        "complete"
    } else {
        "incomplete"
    }
    .into();
    manifest.ended_at = Some(chrono::Utc::now().to_rfc3339());
}

/// Analyses the merged run, writes its report and appends it to the experiment log.
fn report(run_dir: RunDir, manifest: Manifest, opts: &RunOptions) -> Result<RunOutcome> {
    let stats = analyze_and_report(&run_dir.path)?;
    if let Some(log) = &opts.experiment_log {
        append_experiment_log(log, &manifest, &stats, &run_dir)?;
    }
    Ok(RunOutcome {
        run_dir,
        manifest,
        stats,
    })
}

/// The progress bar of `total` requests, drawn only when `enabled` and standard error is a
/// terminal.
fn progress_bar(total: u64, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} requests · ETA {eta} · {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
