//! The run-folder contract of tcobench: what a `results/<run-id>/` folder holds, how it is read
//! and how it is written. The harness writes it, every analysis stage reads it, and so may any
//! other tool (see `results/README.md`).
//!
//! * [`schema`]: the records of `manifest.json`, `requests.parquet` and `power.parquet` (cells,
//!   requests, power samples, energy windows, host, agreement) and the file names.
//! * [`config`]: [`CellConfig`], the one description of a cell's configuration, with its label.
//! * [`cell_stats`]: the per-cell records of `stats.json` ([`CellStats`], [`Metric`]).
//! * [`spec`]: the scenario's cost sections as written, recorded in the manifest.
//! * [`io`]: polars frames of the records, checked Parquet and manifest reading, atomic writes.
//! * [`load`]: a run's requests grouped into per-cell metric vectors, warm-up and failed rows
//!   excluded and counted.
//! * [`replicates`]: a run whose configurations ran in several executions, one configuration
//!   at a time, each with its executions.
//! * [`fmt`]: significant-digit formatting used wherever a figure becomes text.
//!
//! It depends only on `tcobench-stats` (for the descriptive records inside `stats.json`); it
//! knows nothing of catalogs, costs or reports.

pub mod cell_stats;
pub mod config;
pub mod fmt;
pub mod io;
pub mod load;
pub mod replicates;
pub mod schema;
pub mod spec;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use cell_stats::{
    CellEnergy, CellStats, ExecutionLevel, ExecutionSummary, Level, Metric, MetricInfo,
    Replication, RobustStats, Unavailable,
};
pub use config::CellConfig;
pub use fmt::fmt_sig;
