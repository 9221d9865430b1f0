//! Integration tests of the harness: one binary, one module per concern.

mod cluster_cli;
mod common;
mod compare_cli;
mod cuda;
mod energy;
mod estimate_cli;
mod hostile;
mod layout;
mod meter_cli;
mod onnx_pipeline;
mod pipeline;
mod pricing_cli;
mod process_cells;
mod replicates;
mod report_cli;
mod resume;
mod scenarios;
mod stats_cli;
mod sweep_cli;
mod validate_cli;
