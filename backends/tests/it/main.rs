//! Integration tests of the backends crate: the ONNX writer, the ONNX Runtime backend and its
//! library resolution, and agreement between candle and ONNX Runtime.
//!
//! Tests that run ONNX Runtime get its library the way the harness does (`ORT_DYLIB_PATH`, else
//! the cache under `$TCOBENCH_CACHE` / `$XDG_CACHE_HOME/tcobench` / `~/.cache/tcobench`, else a
//! one-time download of the pinned wheel from PyPI).

mod agreement;
mod common;
mod cuda;
mod ort_errors;
mod ort_lib;
mod writer;
