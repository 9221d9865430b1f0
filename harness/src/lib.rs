//! tcobench: reproducible inference cost benchmarks.
//!
//! This crate owns the command line, scenario loading and validation, matrix expansion into a
//! plan, the run loop (warm-up, repetitions, seeded prompts, clocks), power sampling, the crash-
//! safe results writer and the environment manifest. Inference lives in `tcobench-backends`;
//! statistics and reports live in `tcobench-analysis`.

pub mod cell_process;
pub mod cmd_catalog;
pub mod cmd_cell;
pub mod cmd_collect;
pub mod cmd_compare;
pub mod cmd_emit;
pub mod cmd_meter;
pub mod cmd_report;
pub mod cmd_stats;
pub mod cmd_sweep;
pub mod cmd_tco;
pub mod cmd_validate;
pub mod estimate;
pub mod host;
pub mod hostload;
pub mod plan;
pub mod power;
pub mod results;
pub mod runner;
pub mod scenario;

pub use plan::{Cell, Plan};
pub use scenario::{Scenario, ScenarioError};
