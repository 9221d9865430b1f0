//! The report of a run: what `stats.json` says, shown.
//!
//! * [`plots`]: the SVG plots (latency distributions, throughput vs batch, cost vs throughput
//!   with the Pareto front, energy and carbon, power timeline, forest plots), drawn with plotters'
//!   SVG backend and its own text, no system fonts.
//! * [`render`]: the Markdown and self-contained HTML reports from minijinja templates, with the
//!   TCO calculator and every user-provided string escaped.
//! * [`export`]: the figures for continuous-benchmarking services (CSV, Bencher's BMF,
//!   github-action-benchmark).
//!
//! It reads the run folder through `tcobench-results`, takes the statistics from
//! `tcobench-analysis` and the cost figures from `tcobench-cost`; nothing below it knows it
//! exists. [`write_report`] is the entry point the harness calls after every run.

use std::path::{Path, PathBuf};

use tcobench_analysis::{AnalysisError, RunStats};
use tcobench_results::schema::SchemaError;

pub mod export;
pub mod plots;
pub mod render;

/// Errors of rendering and writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run folder could not be analysed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Reading or writing a results file failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A report template failed to load or render.
    #[error("template `{name}`: {source}")]
    Template {
        /// Template name (file name).
        name: String,
        /// Underlying error, with location where minijinja knows it.
        source: minijinja::Error,
    },
    /// A plot could not be drawn.
    #[error("plot `{name}`: {message}")]
    Plot {
        /// Plot name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A JSON file could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Renders `report.md`, `report.html` and `plots/*.svg` into `run_dir`, each written atomically
/// ([`render::write_formats`] with both formats).
///
/// `templates` optionally names a directory whose `report.md.j2` / `report.html.j2` (and any other
/// `*.j2` they include) replace the built-in templates; a name missing there falls back to the
/// built-in one. The raw request values (box plot) and power samples are re-read from `run_dir`.
pub fn write_report(
    run_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
) -> Result<(), ReportError> {
    render::write_formats(run_dir, stats, templates, &render::ReportFormat::ALL)?;
    Ok(())
}
