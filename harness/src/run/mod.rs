//! The run loop: plan → backends × power sampler → results folder → analysis → report.
//!
//! The loop, not the backend, owns clocks and repetitions. For every request it reads the energy
//! source, starts the clock, lets the backend generate (noting the first token through an
//! observer), stops the clock and reads the energy source again. A failing cell — an error or a
//! panic inside a backend — is recorded with its cause and the run goes on.
//!
//! `tcobench run` carries out every cell in a `run-cell` child process of its own
//! ([`Execution::Processes`], see [`process`]), so that an abort, a segfault, a hang
//! or the out-of-memory killer costs one cell; the parent keeps the plan, the progress bar, the
//! budget, the idle baseline, the manifest, and merges and analyses at the end. The mock
//! backend's virtual clock is handed from cell to cell, so its runs stay deterministic. Running
//! every cell in this process ([`Execution::InProcess`], consecutive cells sharing a loaded
//! model) remains for benchmarks and tests.
//!
//! A run killed in any way is finished by [`resume()`]: the cells without a committed folder run
//! with the plan's seeds, once the scenario and the versions are checked to be the same.
//!
//! A scenario with `budget_usd` is charged run time (on the run's clock, so virtual time for
//! mock runs) × the budget's $/h. Crossing 50, 75 and 90 % of the budget prints a warning once
//! each; before each cell its cost is predicted (the heuristic of [`crate::estimate`],
//! calibrated on the cells this run has finished) and, when spent + predicted would exceed the
//! budget, that cell and every later one are recorded `skipped` with the numbers, and the run
//! ends `incomplete`.
//!
//! The parts, in the order a run meets them: `resume.rs` checks that a killed run may be finished;
//! `drive.rs` is the cell loop that fresh and resumed runs share (budget in `budget.rs`, the
//! idle baseline and the power timeline in `timeline.rs`, the clock in `clock.rs`);
//! `execution.rs` carries out each cell in this process or in a `run-cell` child ([`process`]);
//! `single.rs` is one cell by itself, the `run-cell` primitive; `cell.rs` runs one cell's
//! requests on the backends of `backends.rs` (loading, the agreement gate) with the prompts of
//! `prompts.rs`; [`writer`] commits cells and merges them into the results folder; `log.rs`
//! appends to the experiment log; `host.rs` and `hostload.rs` describe the machine.

mod backends;
mod budget;
mod cell;
mod clock;
mod drive;
mod execution;
pub(crate) mod host;
pub(crate) mod hostload;
mod log;
pub mod process;
mod prompts;
mod resume;
mod single;
mod timeline;
pub mod writer;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcobench_analysis::RunStats;
use tcobench_backends::{OrtRuntime, VirtualClock, ORT_VERSION};
use tcobench_results::schema::{self, CellOutcome, CellRecord, Manifest, SCHEMA_VERSION};

use self::drive::{drive, Session};
use self::writer::RunDir;
use crate::plan::{sanitize, Cell, Plan, PlanOverrides};
use crate::power;
use crate::scenario::Scenario;

pub use self::backends::{cache_root, default_models_dir, MODEL_SEED, REFERENCE_LOGITS_DIR};
pub use self::cell::{measure_request, request_record, Measured};
pub use self::clock::Clock;
pub use self::execution::Execution;
pub use self::prompts::prompts;
pub use self::resume::resume;
pub use self::single::{run_single_cell, CellClockStart, KeptBackends, SingleCell};

/// How a run is carried out, beyond the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent folder of the run folder.
    pub out: PathBuf,
    /// Where built-in models are materialised and cached.
    pub models_dir: PathBuf,
    /// Show a progress bar (only ever drawn on a terminal).
    pub progress: bool,
    /// Experiment log to append one line to, if any.
    pub experiment_log: Option<PathBuf>,
    /// The command line, for the manifest and the report's reproduction section.
    pub command: Vec<String>,
    /// Let cells that fail the logits-agreement gate into comparisons.
    pub allow_disagreement: bool,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run folder.
    pub run_dir: RunDir,
    /// The final manifest.
    pub manifest: Manifest,
    /// The analysis.
    pub stats: RunStats,
}

impl RunOutcome {
    /// Whether every cell completed.
    pub fn complete(&self) -> bool {
        self.manifest.status == "complete"
    }
}

/// Why `run --resume` refused to go on.
#[derive(Debug, thiserror::Error)]
#[error("cannot resume {}: {reason}", run_dir.display())]
pub struct ResumeRefused {
    /// The run folder.
    pub run_dir: PathBuf,
    /// What is wrong, and what to do about it.
    pub reason: String,
}

/// A run stopped by Ctrl-C: its manifest says `incomplete`, and `run --resume` finishes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: {committed} of {total} cells committed in {}; `tcobench run --resume {}` runs the rest",
    run_dir.display(),
    run_dir.display()
)]
pub struct Interrupted {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Cells committed so far.
    pub committed: usize,
    /// Cells of the plan.
    pub total: usize,
}

/// Runs a scenario end to end, every cell inside this process, and returns where its results
/// are.
pub fn run(scenario: &Scenario, scenario_path: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    run_with(
        scenario,
        scenario_path,
        opts,
        &PlanOverrides::default(),
        &Execution::InProcess,
    )
}

/// Runs a scenario end to end, its cells carried out as `execution` says. `overrides` are the
/// command-line overrides the scenario was loaded with; the plan records them for `--resume`.
pub fn run_with(
    scenario: &Scenario,
    scenario_path: &Path,
    opts: &RunOptions,
    overrides: &PlanOverrides,
    execution: &Execution,
) -> Result<RunOutcome> {
    let plan = run_plan(scenario, scenario_path, overrides);
    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    let wall_origin = Instant::now();
    let started = chrono::Utc::now();
    let clock = if all_mock {
        Clock::Virtual(virtual_clock.clone())
    } else {
        Clock::Wall(wall_origin)
    };
    let (sampler, why) = power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let power = power::power_info(sampler.as_ref(), scenario.power.sample_ms, &why);
    // The lock is held until this function returns: `run --resume` of this folder waits for
    // this run's end.
    let PreparedRun {
        plan,
        run_dir,
        run_lock: _run_lock,
        manifest,
    } = prepare_run(scenario, scenario_path, plan, opts, power, started)?;
    drive(
        Session {
            scenario,
            plan,
            run_dir,
            manifest,
            clock,
            virtual_clock,
            sampler,
            committed: BTreeSet::new(),
            spent_before_usd: 0.0,
            resumed: false,
        },
        opts,
        execution,
    )
}

/// The plan a run of `scenario` carries out, with what `run --resume` needs to resolve the
/// scenario again (its absolute path, the command-line overrides).
pub(crate) fn run_plan(
    scenario: &Scenario,
    scenario_path: &Path,
    overrides: &PlanOverrides,
) -> Plan {
    let mut plan = Plan::from_scenario(scenario, &scenario_path.display().to_string());
    plan.overrides = overrides.clone();
    plan.scenario_file = scenario_path.canonicalize().ok();
    plan
}

/// A run folder made ready for its cells, as `run` makes it (shared with `emit`).
pub(crate) struct PreparedRun {
    /// The plan, as written to `plan.json`.
    pub(crate) plan: Plan,
    /// The new run folder.
    pub(crate) run_dir: RunDir,
    /// The run folder's lock ([`RunDir::lock_run`]), held while this file is open.
    pub(crate) run_lock: std::fs::File,
    /// The manifest to start from (not yet written): every cell pending, status `running`.
    pub(crate) manifest: Manifest,
}

/// Creates and locks the run folder of `plan` under `opts.out`, writes `plan.json` and returns
/// the manifest to start from; `power` describes the run's power source, `started` its start.
pub(crate) fn prepare_run(
    scenario: &Scenario,
    scenario_path: &Path,
    plan: Plan,
    opts: &RunOptions,
    power: schema::PowerInfo,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<PreparedRun> {
    let run_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        sanitize(&scenario.name)
    );
    let run_dir = RunDir::create(&opts.out, &run_id)?;
    let run_lock = run_dir.lock_run(Duration::ZERO)?;
    run_dir.write_plan(&plan)?;
    let git = host::git_state(scenario_path);
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run_dir.run_id.clone(),
        scenario_name: scenario.name.clone(),
        scenario_path: scenario_path.display().to_string(),
        scenario: plan.scenario.clone(),
        seed: scenario.seed,
        model_seed: MODEL_SEED,
        command: opts.command.clone(),
        git_revision: git.as_ref().map(|g| g.revision.clone()),
        git_dirty_files: git.map(|g| g.dirty).unwrap_or_default(),
        versions: host::versions(),
        host: host::host_info(),
        power,
        started_at: started.to_rfc3339(),
        ended_at: None,
        status: "running".into(),
        cells: plan.cells.iter().map(pending_record).collect(),
        costing: scenario.costing.clone(),
        budget: None,
        allow_disagreement: opts.allow_disagreement,
    };
    Ok(PreparedRun {
        plan,
        run_dir,
        run_lock,
        manifest,
    })
}

/// Records the ONNX Runtime version the cells used, merges the committed cells into the run-level
/// Parquet files and writes the manifest.
pub(crate) fn merge_cells(run_dir: &RunDir, manifest: &mut Manifest) -> Result<()> {
    record_ort_version(manifest);
    run_dir.merge(manifest)?;
    run_dir.write_manifest(manifest)
}

/// Analyses a run folder's merged results and writes `stats.json` and the report.
pub(crate) fn analyze_and_report(run_dir: &Path) -> Result<RunStats> {
    let stats = tcobench_analysis::analyze(run_dir)
        .with_context(|| format!("analysing {}", run_dir.display()))?;
    tcobench_report::write_report(run_dir, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.display()))?;
    Ok(stats)
}

/// Records the ONNX Runtime library the run used: this process's, or the one its cells' processes
/// reported.
fn record_ort_version(manifest: &mut Manifest) {
    let used = OrtRuntime::get()
        .map(|rt| (rt.version().to_string(), rt.library().source.to_string()))
        .or_else(|| {
            manifest.cells.iter().find_map(|c| {
                Some((
                    c.backend_info.get("onnxruntime")?.clone(),
                    c.backend_info.get("onnxruntime_library")?.clone(),
                ))
            })
        });
    if let Some((version, source)) = used {
        manifest.versions.insert("onnxruntime".into(), version);
        manifest.versions.insert(
            "onnxruntime_library".into(),
            format!("{source} (pinned {ORT_VERSION})"),
        );
    }
}

/// A cell's record before it has run: its configuration, status `pending`.
pub(crate) fn pending_record(cell: &Cell) -> CellRecord {
    CellRecord {
        cell_id: cell.cell_id.clone(),
        index: cell.index,
        config: cell.config.to_record(),
        warmup: cell.warmup,
        repetitions: cell.repetitions,
        status: CellOutcome::Pending,
        error: None,
        peak_rss_bytes: None,
        gpu_mem_bytes: None,
        energy_method: None,
        started_at: None,
        ended_at: None,
        window_start_ms: None,
        window_end_ms: None,
        agreement: None,
        backend_info: Default::default(),
        energy: None,
        host_load: None,
        replicate: cell.replicate.clone(),
    }
}
