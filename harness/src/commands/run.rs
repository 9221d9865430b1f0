//! `tcobench run SCENARIO` and `tcobench run --resume RUN_DIR`: every cell of a scenario in
//! `run-cell` child processes (consecutive cells of one model share one, unless
//! `--process-per-cell`), then the analysis and the report (the loop is [`crate::run`]'s).
//!
//! Each cell that failed or was skipped is named on standard error with the first line of why,
//! then the run's headline; the run folder is printed last on standard output. Exit codes: `0`
//! every cell ok; `3` a cell failed or was skipped; `130` interrupted (the run folder is still
//! printed, for `--resume`); `2` a bad scenario or a refused resume (mapped by the caller from
//! the error).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_backends::Device;
use tcobench_results::schema::CellOutcome;

use crate::plan::PlanOverrides;
use crate::run::process::{ProcessOptions, DEFAULT_CELL_TIMEOUT_S, EXIT_CELL_FAILED};
use crate::run::{default_models_dir, resume, run_with, Execution, RunOptions};
use crate::scenario::{Overrides, Scenario};

/// Exit code for a run that finished with failed cells.
const EXIT_INCOMPLETE: u8 = EXIT_CELL_FAILED;

/// `tcobench run` options, as the command line gave them.
#[derive(Debug)]
pub struct RunArgs {
    /// Scenario YAML file (with `resume`: by default the one the run was started from).
    pub scenario: Option<PathBuf>,
    /// Override the scenario seed.
    pub seed: Option<u64>,
    /// Override the scenario's devices with one device.
    pub device: Option<Device>,
    /// Override the scenario's `replicates`.
    pub replicates: Option<u32>,
    /// The run folder of an interrupted run to finish.
    pub resume: Option<PathBuf>,
    /// Wall-clock limit of one cell, seconds (else the scenario's, else the default).
    pub cell_timeout_s: Option<f64>,
    /// Run every cell inside this process instead of one process per cell.
    pub in_process: bool,
    /// A fresh process for every cell, even consecutive cells of the same model.
    pub process_per_cell: bool,
    /// Parent folder of the run folder.
    pub out: PathBuf,
    /// Where built-in models are generated and cached (else the default cache).
    pub models_dir: Option<PathBuf>,
    /// Experiment log to append to (else `EXPERIMENT_LOG.md` in the current folder, if it exists).
    pub log: Option<PathBuf>,
    /// Do not append to any experiment log.
    pub no_log: bool,
    /// Never draw a progress bar.
    pub quiet: bool,
    /// Let cells whose logits disagree with the reference into comparisons anyway.
    pub allow_disagreement: bool,
}

/// Runs (or resumes) the scenario, reports the cells that did not complete and prints the run
/// folder on `out`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let experiment_log = if args.no_log {
        None
    } else {
        args.log
            .clone()
            .or_else(|| Some(PathBuf::from("EXPERIMENT_LOG.md")).filter(|p| p.is_file()))
    };
    let opts = RunOptions {
        out: args.out.clone(),
        models_dir: args.models_dir.clone().unwrap_or_else(default_models_dir),
        progress: !args.quiet,
        experiment_log,
        command: crate::commands::command_line(),
        allow_disagreement: args.allow_disagreement,
    };
    let exe = std::env::current_exe().context("locating the tcobench executable")?;
    // The command line's limit, else the scenario's, else the default.
    let execution = |scenario_timeout_s: Option<f64>| {
        if args.in_process {
            return Execution::InProcess;
        }
        let seconds = args
            .cell_timeout_s
            .or(scenario_timeout_s)
            .unwrap_or(DEFAULT_CELL_TIMEOUT_S);
        Execution::Processes(ProcessOptions {
            exe: exe.clone(),
            cell_timeout: std::time::Duration::from_secs_f64(seconds),
            handle_ctrl_c: true,
            process_per_cell: args.process_per_cell,
        })
    };
    let outcome = match (&args.resume, &args.scenario) {
        // The scenario as `--resume` resolves it again (by default the file the run was started
        // from) gives the limit when the command line does not.
        (Some(run_dir), scenario) => resume(run_dir, scenario.as_deref(), &opts, |s| {
            execution(s.cell_timeout_s)
        })?,
        (None, Some(path)) => {
            let overrides = Overrides {
                seed: args.seed,
                device: args.device,
                replicates: args.replicates,
            };
            let s = Scenario::load(path, &overrides)?;
            let recorded = PlanOverrides {
                seed: args.seed,
                device: args.device,
                replicates: args.replicates,
            };
            run_with(&s, path, &opts, &recorded, &execution(s.cell_timeout_s))?
        }
        (None, None) => unreachable!("clap requires a scenario without --resume"),
    };
    let failed: Vec<_> = outcome
        .manifest
        .cells
        .iter()
        .filter(|c| c.status != CellOutcome::Ok)
        .collect();
    for c in &failed {
        let what = match c.status {
            CellOutcome::Skipped => "skipped",
            _ => "failed",
        };
        // The first line says why; a crashed cell's standard error follows in the manifest.
        let error = c.error.as_deref().unwrap_or("unknown");
        eprintln!(
            "{what} cell {}: {}",
            c.cell_id,
            error.lines().next().unwrap_or(error)
        );
    }
    eprintln!("{}", outcome.stats.headline());
    writeln!(out, "{}", outcome.run_dir.path.display())?;
    Ok(if outcome.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}
