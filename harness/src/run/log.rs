//! The experiment log: one line per finished run, appended to a Markdown file.

use std::path::Path;

use anyhow::{Context, Result};
use tcobench_analysis::RunStats;
use tcobench_results::schema::Manifest;

use super::writer::RunDir;

/// Appends one line to the experiment log (creating it with a header if needed).
pub(crate) fn append_experiment_log(
    log: &Path,
    manifest: &Manifest,
    stats: &RunStats,
    run_dir: &RunDir,
) -> Result<()> {
    use std::io::Write;
    let new = !log.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    if new {
        writeln!(f, "# Experiment log\n\nOne line per run: date · scenario · git revision · headline · report.\n")?;
    }
    let report = run_dir
        .path
        .join(tcobench_results::schema::files::REPORT_MD);
    writeln!(
        f,
        "- {} · `{}` · {} · {} · [{}]({})",
        manifest
            .started_at
            .get(..19)
            .unwrap_or(&manifest.started_at),
        manifest.scenario_name.replace('`', "'"),
        manifest
            .git_revision
            .as_deref()
            .unwrap_or("no git revision"),
        stats.headline(),
        manifest.status,
        report.display()
    )
    .with_context(|| format!("appending to {}", log.display()))?;
    Ok(())
}
