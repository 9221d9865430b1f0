//! tcobench: reproducible inference cost benchmarks.
//!
//! The modules follow the pipeline, in order:
//!
//! * [`scenario`] — scenario YAML in (with its `extends:` chain), a validated [`Scenario`] out;
//!   every error names the file, line, column and key;
//! * [`plan`] — the scenario's matrix expanded into cells with stable ids and seeds, written as
//!   `plan.json`; [`estimate`] predicts its wall time and cost before it runs;
//! * [`run`] — the run loop: each cell's backend (`tcobench-backends`) × the power sampler
//!   ([`power`]) on the run's clock, in `run-cell` child processes ([`run::process`]) so that a
//!   crash costs one cell; the budget, `--resume`, the environment manifest;
//! * [`power`] — energy sources (NVML, RAPL, a CPU estimate, a mock) and the measured window;
//! * [`run::writer`] — the crash-safe results writer: atomic cell commits into the run folder,
//!   their merge into the run-level files, the manifest;
//! * [`commands`] — the subcommands on top of it all: options, printing and exit codes.
//!
//! Inference lives in `tcobench-backends`. What follows a run lives in the analysis crates, each a
//! stage: the run folder's contract (`tcobench-results`, which [`run::writer`] writes), the pure
//! maths (`tcobench-stats`), the cost model (`tcobench-cost`), `stats.json` (`tcobench-analysis`)
//! and the report (`tcobench-report`).

pub mod commands;
pub mod estimate;
pub mod plan;
pub mod power;
pub mod run;
pub mod scenario;

pub use plan::{Cell, Plan};
pub use scenario::{Scenario, ScenarioError};
