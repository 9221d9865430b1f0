//! The `tcobench` command line: a straight line from options to commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tcobench::plan::Plan;
use tcobench::runner::{self, RunOptions};
use tcobench::scenario::{Overrides, Scenario, ScenarioError};
use tcobench_backends::Device;

/// Exit code for bad input (scenario, arguments).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a run that finished with failed cells.
const EXIT_INCOMPLETE: u8 = tcobench::cell_process::EXIT_CELL_FAILED;

#[derive(Parser, Debug)]
#[command(
    name = "tcobench",
    version,
    about = "What it really costs to serve a model: $, J and gCO2e per 1M tokens, with statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct ScenarioArgs {
    /// Scenario YAML file.
    scenario: PathBuf,
    /// Override the scenario seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the scenario's devices with one device (`cpu`, `cuda`, `cuda:N`).
    #[arg(long, value_parser = parse_device)]
    device: Option<Device>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario: measure every cell, each in a `run-cell` process of its own, analyse,
    /// write the report; prints the run folder last.
    Run {
        /// Scenario YAML file (with --resume: by default the one the run was started from).
        #[arg(required_unless_present = "resume")]
        scenario: Option<PathBuf>,
        /// Override the scenario seed.
        #[arg(long, conflicts_with = "resume")]
        seed: Option<u64>,
        /// Override the scenario's devices with one device (`cpu`, `cuda`, `cuda:N`).
        #[arg(long, value_parser = parse_device, conflicts_with = "resume")]
        device: Option<Device>,
        /// Finish an interrupted run: run the cells not committed in RUN_DIR, with its plan and
        /// seeds (refused when the scenario or tcobench changed in a way that matters).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Wall-clock limit of one cell, seconds: a cell still running is killed and recorded
        /// failed [default: the scenario's `cell_timeout_s`, else 3600].
        #[arg(long, value_parser = parse_timeout)]
        cell_timeout_s: Option<f64>,
        /// Run every cell inside this process instead of one process per cell (for measuring
        /// the per-process overhead; a crash in a backend then ends the whole run).
        #[arg(long, hide = true, conflicts_with = "resume")]
        in_process: bool,
        /// A fresh process for every cell, even consecutive cells of the same model (which by
        /// default share one process that keeps the model loaded; either way a crash costs only
        /// the cell in flight).
        #[arg(long, conflicts_with = "in_process")]
        process_per_cell: bool,
        /// Parent folder of the run folder.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Where built-in models are generated and cached.
        #[arg(long, env = "TCOBENCH_MODELS_DIR")]
        models_dir: Option<PathBuf>,
        /// Experiment log to append to (default: EXPERIMENT_LOG.md in the current folder, if it exists).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Do not append to any experiment log.
        #[arg(long, conflicts_with = "log")]
        no_log: bool,
        /// Never draw a progress bar.
        #[arg(long)]
        quiet: bool,
        /// Let cells whose logits disagree with the reference into comparisons anyway.
        #[arg(long)]
        allow_disagreement: bool,
    },
    /// Run one cell of a plan in this process and commit it into the run folder (what `run`
    /// starts once per cell; a scheduler's array job can do the same).
    RunCell(tcobench::cmd_cell::RunCellArgs),
    /// Prepare a run folder and write a scheduler job that runs its cells (`slurm`: an
    /// `sbatch --array` script; `k8s`: an Indexed Job); prints the run folder last.
    Emit(tcobench::cmd_emit::EmitArgs),
    /// Merge the cells a scheduler's tasks committed into a run folder, analyse and report;
    /// lists missing cells (exit code 3 when any is missing or failed).
    Collect(tcobench::cmd_collect::CollectArgs),
    /// Print the cells a scenario would run (`--json`: the plan file).
    Plan {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Predict wall time per cell and in total, and the cost at the budget's rate.
        #[arg(long)]
        estimate: bool,
        /// With --estimate: folder of earlier runs to take measured cell times from.
        #[arg(long, default_value = "results", requires = "estimate")]
        results: PathBuf,
    },
    /// Recompute stats.json and the report of an existing run folder.
    Analyze {
        /// Run folder.
        run_dir: PathBuf,
    },
    /// Descriptives, pairwise tests, effect sizes and ANOVA for any CSV or Parquet file.
    Stats(tcobench::cmd_stats::StatsArgs),
    /// Compare two runs cell by cell: relative change with bootstrap CI, Welch p, verdict.
    Compare(tcobench::cmd_compare::CompareArgs),
    /// Export a run's figures for continuous-benchmarking services.
    Export(tcobench::cmd_compare::ExportArgs),
    /// The pricing catalog: list, show, import (SkyPilot CSV), diff.
    Catalog(tcobench::cmd_catalog::CatalogArgs),
    /// Cost, energy and carbon per 1M tokens, workload sizing, on-prem and API comparisons.
    Tco(tcobench::cmd_tco::TcoArgs),
    /// Sanity checks on a finished run: power vs TDP, energy bounds, cost arithmetic.
    Validate(tcobench::cmd_validate::ValidateArgs),
    /// Built-in models: write one to a folder (Hugging Face layout + ONNX export).
    #[command(subcommand)]
    Model(ModelCommand),
    /// Re-cost a run's measurements under pricing/energy variants (no inference).
    Sweep(tcobench::cmd_sweep::SweepArgs),
    /// Re-render a run's report (Markdown, HTML) from its stored results.
    Report(tcobench::cmd_report::ReportArgs),
    /// An external power meter's log beside our energy; calibrations fitted from it.
    #[command(subcommand)]
    Meter(tcobench::cmd_meter::MeterCommand),
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Write a built-in model: config.json + model.safetensors (Hugging Face layout) and
    /// model.onnx (Optimum decoder convention with key/value cache), from the same seeded weights.
    Build {
        /// Built-in size: tiny, small, 1b, 8b.
        #[arg(long)]
        size: String,
        /// Weight seed (runs use 0).
        #[arg(long, default_value_t = runner::MODEL_SEED)]
        seed: u64,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse()
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn load(args: &ScenarioArgs) -> Result<Scenario, ScenarioError> {
    Scenario::load(
        &args.scenario,
        &Overrides {
            seed: args.seed,
            device: args.device,
        },
    )
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TCOBENCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(se) = e.downcast_ref::<ScenarioError>() {
                eprintln!("error: {se}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            if let Some(r) = e.downcast_ref::<runner::ResumeRefused>() {
                eprintln!("error: {r}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            if let Some(i) = e.downcast_ref::<runner::Interrupted>() {
                eprintln!("{i}");
                println!("{}", i.run_dir.display());
                return ExitCode::from(tcobench::cell_process::EXIT_INTERRUPTED as u8);
            }
            // A closed pipe (`tcobench plan … | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Plan {
            scenario,
            json,
            estimate,
            results,
        } => {
            let s = load(&scenario)?;
            let plan = Plan::from_scenario(&s, &scenario.scenario.display().to_string());
            if estimate {
                let e = tcobench::estimate::estimate(&plan, &s, &results);
                if json {
                    writeln!(stdout, "{}", serde_json::to_string_pretty(&e)?)?;
                } else {
                    tcobench::estimate::write_text(&e, &mut stdout)?;
                }
            } else if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&plan)?)?;
            } else {
                writeln!(
                    stdout,
                    "scenario `{}`: {} cells, seed {}, {} warm-up + {} timed requests each",
                    s.name,
                    plan.cells.len(),
                    s.seed,
                    s.warmup,
                    s.repetitions
                )?;
                for c in &plan.cells {
                    writeln!(stdout, "{:>4}  {:<48}  {}", c.index, c.label(), c.cell_id)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            seed,
            device,
            resume,
            cell_timeout_s,
            in_process,
            process_per_cell,
            out,
            models_dir,
            log,
            no_log,
            quiet,
            allow_disagreement,
        } => {
            let experiment_log = if no_log {
                None
            } else {
                log.or_else(|| Some(PathBuf::from("EXPERIMENT_LOG.md")).filter(|p| p.is_file()))
            };
            let opts = RunOptions {
                out,
                models_dir: models_dir.unwrap_or_else(runner::default_models_dir),
                progress: !quiet,
                experiment_log,
                command: command_line(),
                allow_disagreement,
            };
            let exe = std::env::current_exe().context("locating the tcobench executable")?;
            // The command line's limit, else the scenario's, else the default.
            let execution = |scenario_timeout_s: Option<f64>| {
                if in_process {
                    return runner::Execution::InProcess;
                }
                let seconds = cell_timeout_s
                    .or(scenario_timeout_s)
                    .unwrap_or(tcobench::cell_process::DEFAULT_CELL_TIMEOUT_S);
                runner::Execution::Processes(tcobench::cell_process::ProcessOptions {
                    exe: exe.clone(),
                    cell_timeout: std::time::Duration::from_secs_f64(seconds),
                    handle_ctrl_c: true,
                    process_per_cell,
                })
            };
            let outcome = match (&resume, &scenario) {
                // The scenario as `--resume` resolves it again (by default the file the run
                // was started from) gives the limit when the command line does not.
                (Some(run_dir), scenario) => {
                    runner::resume(run_dir, scenario.as_deref(), &opts, |s| {
                        execution(s.cell_timeout_s)
                    })?
                }
                (None, Some(path)) => {
                    let overrides = Overrides { seed, device };
                    let s = Scenario::load(path, &overrides)?;
                    let recorded = tcobench::plan::PlanOverrides { seed, device };
                    runner::run_with(&s, path, &opts, &recorded, &execution(s.cell_timeout_s))?
                }
                (None, None) => unreachable!("clap requires a scenario without --resume"),
            };
            let failed: Vec<_> = outcome
                .manifest
                .cells
                .iter()
                .filter(|c| c.status != tcobench_analysis::schema::CellOutcome::Ok)
                .collect();
            for c in &failed {
                let what = match c.status {
                    tcobench_analysis::schema::CellOutcome::Skipped => "skipped",
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
            writeln!(stdout, "{}", outcome.run_dir.path.display())?;
            Ok(if outcome.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            })
        }
        Command::RunCell(args) => tcobench::cmd_cell::run(&args),
        Command::Emit(args) => tcobench::cmd_emit::run(&args, &mut stdout),
        Command::Collect(args) => tcobench::cmd_collect::run(&args, &mut stdout),
        Command::Stats(args) => tcobench::cmd_stats::run(&args, &mut stdout),
        Command::Compare(args) => tcobench::cmd_compare::compare(&args, &mut stdout),
        Command::Export(args) => tcobench::cmd_compare::export(&args, &mut stdout),
        Command::Catalog(args) => tcobench::cmd_catalog::run(&args, &mut stdout),
        Command::Tco(args) => tcobench::cmd_tco::run(&args, &mut stdout),
        Command::Validate(args) => tcobench::cmd_validate::run(&args, &mut stdout),
        Command::Sweep(args) => tcobench::cmd_sweep::run(&args, &mut stdout),
        Command::Report(args) => tcobench::cmd_report::run(&args, &mut stdout),
        Command::Meter(cmd) => tcobench::cmd_meter::run(&cmd, &mut stdout),
        Command::Model(ModelCommand::Build { size, seed, out }) => {
            let model = match size.parse::<tcobench_backends::BuiltinModel>() {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: --size: {e}");
                    return Ok(ExitCode::from(EXIT_BAD_INPUT));
                }
            };
            let dir = tcobench_backends::model::materialize(model, seed, &out)
                .with_context(|| format!("writing {model} to {}", out.display()))?;
            let onnx = tcobench_backends::onnx::write_onnx(&dir)
                .with_context(|| format!("writing the ONNX export in {}", dir.display()))?;
            for f in ["config.json", "model.safetensors"] {
                writeln!(stdout, "{}", dir.join(f).display())?;
            }
            writeln!(stdout, "{}", onnx.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze { run_dir } => {
            let code = analyze(&run_dir)?;
            if code == ExitCode::SUCCESS {
                writeln!(stdout, "{}", run_dir.display())?;
            }
            Ok(code)
        }
    }
}

/// The command line as a user would retype it: the program's own name, not its install path.
fn command_line() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "tcobench".to_string();
    }
    args
}

/// `tcobench analyze RUN_DIR`: a results folder that cannot be read (a missing, corrupt or
/// foreign file) is bad input, exit code 2, with the file named once; a failure to write the
/// report is an error of this run (exit code 1).
fn analyze(run_dir: &Path) -> Result<ExitCode> {
    use tcobench_analysis::AnalysisError;
    let stats = match tcobench_analysis::analyze(run_dir) {
        Ok(stats) => stats,
        Err(
            e @ (AnalysisError::Schema(_)
            | AnalysisError::UnsupportedSchema { .. }
            | AnalysisError::Meter(_)
            | AnalysisError::Io { .. }),
        ) => {
            eprintln!("error: analysing {}: {e}", run_dir.display());
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(e) => return Err(e).with_context(|| format!("analysing {}", run_dir.display())),
    };
    tcobench_analysis::write_report(run_dir, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.display()))?;
    eprintln!("{}", stats.headline());
    Ok(ExitCode::SUCCESS)
}
