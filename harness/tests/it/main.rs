//! Integration tests of the harness: one binary, one module per concern.

mod common;
mod pipeline;
mod scenarios;
