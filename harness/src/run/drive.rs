//! The cell loop that fresh and resumed runs share: the budget, the idle baseline, every cell of
//! the plan in order, then the merge, the analysis and the report.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tcobench_analysis::schema::{CellOutcome, Manifest};
use tcobench_backends::{OrtThreads, VirtualClock};

use super::backends::Backends;
use super::budget::{BudgetStop, BudgetTracker};
use super::clock::{advance_to, ms_to_ns, Clock};
use super::execution::{CellRunner, ChildCells, InProcessCells, Ran};
use super::log::append_experiment_log;
use super::process::CtrlC;
use super::timeline::{idle_baseline, Timeline};
use super::writer::RunDir;
use super::{
    analyze_and_report, merge_cells, pending_record, Execution, Interrupted, RunOptions, RunOutcome,
};
use crate::plan::{Cell, Plan, PLAN_FILE};
use crate::power::window::WindowPolicy;
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
    let all_mock = plan.all_mock();
    let mut budget = scenario.budget.as_ref().map(|b| {
        let mut tracker = BudgetTracker::new(b, clock.now_ns());
        tracker.spent_before_usd = spent_before_usd;
        tracker
    });
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
        let (baseline, samples) = idle_baseline(&sampler, &clock, &scenario.power);
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
        run_samples.extend(samples);
        // Kept at once: a run killed later still has its baseline.
        run_dir.write_run_power(&run_samples)?;
        run_dir.write_manifest(&manifest)?;
    }

    let total: u64 = plan.cells.iter().map(Cell::total_requests).sum();
    let bar = progress_bar(total, opts.progress);
    let mut cells: Box<dyn CellRunner + '_> = match execution {
        Execution::InProcess => {
            let timeline = Timeline::new(None);
            let thread = wants_timeline.then(|| {
                timeline.start(
                    &sampler,
                    &clock,
                    Duration::from_millis(u64::from(scenario.power.sample_ms)),
                )
            });
            Box::new(InProcessCells {
                run_dir: &run_dir,
                seed: plan.seed,
                clock: clock.clone(),
                backends: Backends::new(
                    &opts.models_dir,
                    OrtThreads {
                        intra: scenario.ort_threads.intra,
                        inter: scenario.ort_threads.inter,
                    },
                    virtual_clock.clone(),
                ),
                sampler: sampler.clone(),
                policy: WindowPolicy::from(&scenario.power),
                timeline,
                thread,
                outside: Vec::new(),
            })
        }
        Execution::Processes(options) => Box::new(ChildCells {
            worker: None,
            options,
            plan_path: run_dir.path.join(PLAN_FILE),
            run_dir: &run_dir,
            models_dir: &opts.models_dir,
            virtual_clock: all_mock.then(|| virtual_clock.clone()),
            ctrl_c: ctrl_c.clone(),
            bar: bar.clone(),
        }),
    };

    // Set when the budget stopped the run: every later cell is skipped with the same cause.
    let mut budget_stop: Option<BudgetStop> = None;
    let mut interrupted = false;
    for cell in &plan.cells {
        if committed.contains(&cell.cell_id) {
            // Committed by an earlier attempt. On the virtual clock its time is replayed, so the
            // cells still to run start where they would have in an uninterrupted run.
            if all_mock {
                if let Some(end) = manifest.cells[cell.index].window_end_ms {
                    advance_to(&virtual_clock, ms_to_ns(end));
                }
            }
            bar.inc(cell.total_requests());
            continue;
        }
        if cells.stop_requested() {
            interrupted = true;
            break;
        }
        if let Some(b) = budget.as_mut() {
            b.warn(clock.now_ns(), &bar);
            if budget_stop.is_none() {
                budget_stop = b.stop_before(cell, clock.now_ns());
                if let Some(stop) = &budget_stop {
                    bar.suspend(|| {
                        eprintln!(
                            "budget: stopping before cell {}: {}",
                            cell.label(),
                            stop.why
                        )
                    });
                }
            }
            if let Some(stop) = &budget_stop {
                let mut record = pending_record(cell);
                record.status = CellOutcome::Skipped;
                record.error = Some(b.skip_message(cell, stop));
                manifest.cells[cell.index] = record;
                bar.inc(cell.total_requests());
                continue;
            }
        }
        bar.set_message(cell.label());
        let bar_at_start = bar.position();
        let cell_start_ns = clock.now_ns();
        let ran = cells.run(cell, &mut |at_ns| {
            bar.inc(1);
            if let Some(ns) = at_ns {
                advance_to(&virtual_clock, ns);
            }
            if let Some(b) = budget.as_mut() {
                b.warn(clock.now_ns(), &bar);
            }
        })?;
        bar.set_position(bar.position().max(bar_at_start + cell.total_requests()));
        let (record, end_ns) = match ran {
            Ran::Stopped(record) => {
                manifest.cells[cell.index] = record;
                interrupted = true;
                break;
            }
            Ran::Committed { record, end_ns } => (record, end_ns),
        };
        if let Some(ns) = end_ns {
            advance_to(&virtual_clock, ns);
        }
        if let Some(b) = budget.as_mut() {
            if record.status == CellOutcome::Ok {
                b.learn(cell, clock.now_ns().saturating_sub(cell_start_ns));
            }
            manifest.budget = Some(b.record_at(clock.now_ns()));
        }
        if record.status == CellOutcome::Failed {
            let why = record.error.as_deref().unwrap_or("unknown error");
            bar.suspend(|| {
                eprintln!(
                    "cell {} failed: {}",
                    cell.label(),
                    why.lines().next().unwrap_or(why)
                )
            });
        }
        manifest.cells[cell.index] = record;
        run_dir.write_manifest(&manifest)?;
    }
    ctrl_c.finishing();
    if let Some(b) = budget.as_mut() {
        b.warn(clock.now_ns(), &bar);
        manifest.budget = Some(b.record_at(clock.now_ns()));
    }
    bar.finish_and_clear();
    let outside = cells.finish();
    if !resumed || !outside.is_empty() {
        run_samples.extend(outside);
        run_dir.write_run_power(&run_samples)?;
    }

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
    merge_cells(&run_dir, &mut manifest)?;
    if interrupted {
        return Err(Interrupted {
            run_dir: run_dir.path.clone(),
            committed: run_dir.committed_ids()?.len(),
            total: plan.cells.len(),
        }
        .into());
    }

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
