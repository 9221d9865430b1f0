//! `tcobench analyze RUN_DIR`: `stats.json` and the report of an existing run folder, computed
//! again from its stored results.
//!
//! Prints the headline on standard error and the run folder on standard output. Exit codes: `0`
//! done; `2` a results folder that cannot be read (a missing, corrupt or foreign file), with the
//! file named once; `1` a failure to write the report.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_analysis::AnalysisError;

use crate::commands::EXIT_BAD_INPUT;

/// Analyses `run_dir`, writes its report and prints the folder on `out`.
pub fn run(run_dir: &Path, out: &mut dyn Write) -> Result<ExitCode> {
    let code = analyze(run_dir)?;
    if code == ExitCode::SUCCESS {
        writeln!(out, "{}", run_dir.display())?;
    }
    Ok(code)
}

/// A results folder that cannot be read is bad input, exit code 2, with the file named once; a
/// failure to write the report is an error of this run (exit code 1).
fn analyze(run_dir: &Path) -> Result<ExitCode> {
    let stats = match tcobench_analysis::analyze(run_dir) {
        Ok(stats) => stats,
        Err(
            e @ (AnalysisError::Schema(_)
            | AnalysisError::UnsupportedSchema { .. }
            | AnalysisError::Meter(_)),
        ) => {
            eprintln!("error: analysing {}: {e}", run_dir.display());
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(e) => return Err(e).with_context(|| format!("analysing {}", run_dir.display())),
    };
    tcobench_report::write_report(run_dir, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.display()))?;
    eprintln!("{}", stats.headline());
    Ok(ExitCode::SUCCESS)
}
