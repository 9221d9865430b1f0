//! Integration tests of the harness: one binary, one module per concern.

mod common;
mod compare_cli;
mod pipeline;
mod pricing_cli;
mod scenarios;
mod stats_cli;
