//! tcobench: reproducible inference cost benchmarks.
//!
//! This crate owns the command line, scenario loading and validation, matrix expansion into a
//! plan, the run loop (warm-up, repetitions, seeded prompts, clocks), power sampling, the crash-
//! safe results writer and the environment manifest. Inference lives in `tcobench-backends`;
//! statistics and reports live in `tcobench-analysis`.

pub mod commands;
pub mod estimate;
pub mod plan;
pub mod power;
pub mod run;
pub mod scenario;

pub use plan::{Cell, Plan};
pub use scenario::{Scenario, ScenarioError};
