//! The `tcobench` command line: a straight line from options to commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tcobench::commands;
use tcobench::run;
use tcobench::scenario::{Overrides, ScenarioError};
use tcobench_backends::Device;

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
    #[arg(long, value_parser = commands::parse_device)]
    device: Option<Device>,
    /// Override the scenario's `replicates`: independent executions of every cell.
    #[arg(long)]
    replicates: Option<u32>,
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
        #[arg(long, value_parser = commands::parse_device, conflicts_with = "resume")]
        device: Option<Device>,
        /// Run every cell in R independent executions — each a fresh process with its model
        /// loaded anew, in a seeded interleaved order — so statistics can use the execution as
        /// their unit [default: the scenario's `replicates`, else 1].
        #[arg(long, value_name = "R", conflicts_with = "resume")]
        replicates: Option<u32>,
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
    RunCell(commands::cell::RunCellArgs),
    /// Prepare a run folder and write a scheduler job that runs its cells (`slurm`: an
    /// `sbatch --array` script; `k8s`: an Indexed Job); prints the run folder last.
    Emit(commands::emit::EmitArgs),
    /// Merge the cells a scheduler's tasks committed into a run folder, analyse and report;
    /// lists missing cells (exit code 3 when any is missing or failed).
    Collect(commands::collect::CollectArgs),
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
    Stats(commands::stats::StatsArgs),
    /// Compare two runs (or two folders of runs) cell by cell at the level they allow:
    /// relative change with its 95 % CI, p, verdict.
    Compare(commands::compare::CompareArgs),
    /// Measure this host's run-to-run noise: run a scenario N times, count the false alarms of
    /// the regression gate, and write the noise profile `compare` uses.
    Noise(commands::noise::NoiseArgs),
    /// A/B two tcobench builds (or engine versions) on this host: run both, interleaved in
    /// ABBA blocks, and give the regression verdict with the run as the unit.
    Ab(commands::ab::AbArgs),
    /// Export a run's figures for continuous-benchmarking services.
    Export(commands::compare::ExportArgs),
    /// The pricing catalog: list, show, import (SkyPilot CSV), diff.
    Catalog(commands::catalog::CatalogArgs),
    /// Cost, energy and carbon per 1M tokens, workload sizing, on-prem and API comparisons.
    Tco(commands::tco::TcoArgs),
    /// Sanity checks on a finished run: power vs TDP, energy bounds, cost arithmetic.
    Validate(commands::validate::ValidateArgs),
    /// Built-in models: write one to a folder (Hugging Face layout + ONNX export).
    #[command(subcommand)]
    Model(ModelCommand),
    /// Re-cost a run's measurements under pricing/energy variants (no inference).
    Sweep(commands::sweep::SweepArgs),
    /// Re-render a run's report (Markdown, HTML) from its stored results.
    Report(commands::report::ReportArgs),
    /// An external power meter's log beside our energy; calibrations fitted from it.
    #[command(subcommand)]
    Meter(commands::meter::MeterCommand),
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
        #[arg(long, default_value_t = run::MODEL_SEED)]
        seed: u64,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
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
                return ExitCode::from(commands::EXIT_BAD_INPUT);
            }
            if let Some(r) = e.downcast_ref::<run::ResumeRefused>() {
                eprintln!("error: {r}");
                return ExitCode::from(commands::EXIT_BAD_INPUT);
            }
            if let Some(i) = e.downcast_ref::<run::Interrupted>() {
                eprintln!("{i}");
                println!("{}", i.run_dir.display());
                return ExitCode::from(run::process::EXIT_INTERRUPTED as u8);
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
        } => commands::plan::run(
            &commands::plan::PlanArgs {
                scenario: scenario.scenario,
                overrides: Overrides {
                    seed: scenario.seed,
                    device: scenario.device,
                    replicates: scenario.replicates,
                },
                json,
                estimate,
                results,
            },
            &mut stdout,
        ),
        Command::Run {
            scenario,
            seed,
            device,
            replicates,
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
        } => commands::run::run(
            &commands::run::RunArgs {
                scenario,
                seed,
                device,
                replicates,
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
            },
            &mut stdout,
        ),
        Command::RunCell(args) => commands::cell::run(&args),
        Command::Emit(args) => commands::emit::run(&args, &mut stdout),
        Command::Collect(args) => commands::collect::run(&args, &mut stdout),
        Command::Stats(args) => commands::stats::run(&args, &mut stdout),
        Command::Compare(args) => commands::compare::compare(&args, &mut stdout),
        Command::Noise(args) => commands::noise::run(&args, &mut stdout),
        Command::Ab(args) => commands::ab::run(&args, &mut stdout),
        Command::Export(args) => commands::compare::export(&args, &mut stdout),
        Command::Catalog(args) => commands::catalog::run(&args, &mut stdout),
        Command::Tco(args) => commands::tco::run(&args, &mut stdout),
        Command::Validate(args) => commands::validate::run(&args, &mut stdout),
        Command::Sweep(args) => commands::sweep::run(&args, &mut stdout),
        Command::Report(args) => commands::report::run(&args, &mut stdout),
        Command::Meter(cmd) => commands::meter::run(&cmd, &mut stdout),
        Command::Model(ModelCommand::Build { size, seed, out }) => {
            commands::model::build(&size, seed, &out, &mut stdout)
        }
        Command::Analyze { run_dir } => commands::analyze::run(&run_dir, &mut stdout),
    }
}
