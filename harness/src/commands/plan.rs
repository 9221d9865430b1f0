//! `tcobench plan SCENARIO`: the cells a scenario would run, without running any.
//!
//! Prints one line per cell (index, label, cell id) under a summary line; `--json` prints the plan
//! file instead (what `tcobench emit` and `tcobench run-cell --plan` read). `--estimate` predicts
//! the wall time per cell and in total, and the cost at the budget's rate ([`crate::estimate`]),
//! from the measured cell times of earlier runs under `--results` where there are any.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::plan::Plan;
use crate::scenario::{Overrides, Scenario};

/// `tcobench plan` options, as the command line gave them.
#[derive(Debug)]
pub struct PlanArgs {
    /// Scenario YAML file.
    pub scenario: PathBuf,
    /// The command line's overrides of the scenario (seed, device).
    pub overrides: Overrides,
    /// Print the plan (or the estimate) as JSON.
    pub json: bool,
    /// Predict wall time per cell and in total, and the cost at the budget's rate.
    pub estimate: bool,
    /// Folder of earlier runs to take measured cell times from (with `estimate`).
    pub results: PathBuf,
}

/// Prints the plan of `args.scenario` (or its estimate) on `out`.
pub fn run(args: &PlanArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let s = Scenario::load(&args.scenario, &args.overrides)?;
    let plan = Plan::from_scenario(&s, &args.scenario.display().to_string());
    if args.estimate {
        let e = crate::estimate::estimate(&plan, &s, &args.results);
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
        } else {
            crate::estimate::write_text(&e, out)?;
        }
    } else if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?;
    } else {
        let replicates = plan.replicates();
        if replicates > 1 {
            writeln!(
                out,
                "scenario `{}`: {} cells × {replicates} executions = {} in an interleaved order \
                 (each its own process), seed {}, {} warm-up + {} timed requests each",
                s.name,
                plan.cells.len() / replicates as usize,
                plan.cells.len(),
                s.seed,
                s.warmup,
                s.repetitions
            )?;
        } else {
            writeln!(
                out,
                "scenario `{}`: {} cells, seed {}, {} warm-up + {} timed requests each",
                s.name,
                plan.cells.len(),
                s.seed,
                s.warmup,
                s.repetitions
            )?;
        }
        for c in &plan.cells {
            let label = match &c.replicate {
                Some(r) => format!("{} (r{}/{})", c.label(), r.number, r.of),
                None => c.label(),
            };
            writeln!(out, "{:>4}  {:<48}  {}", c.index, label, c.cell_id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
