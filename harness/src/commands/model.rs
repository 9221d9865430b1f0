//! `tcobench model build --size SIZE --out DIR`: a built-in model written to a folder.
//!
//! Writes `config.json` and `model.safetensors` (Hugging Face layout) and `model.onnx` (the
//! Optimum decoder convention, with key/value cache), all from the same seeded weights, and
//! prints the three paths. Exit codes: `0` written; `2` an unknown `--size`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_backends::BuiltinModel;

use crate::commands::EXIT_BAD_INPUT;

/// Writes the built-in model `size` with weight seed `seed` into `out` and prints its files.
pub fn build(size: &str, seed: u64, out_dir: &Path, out: &mut dyn Write) -> Result<ExitCode> {
    let model = match size.parse::<BuiltinModel>() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: --size: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let dir = tcobench_backends::model::materialize(model, seed, out_dir)
        .with_context(|| format!("writing {model} to {}", out_dir.display()))?;
    let onnx = tcobench_backends::onnx::write_onnx(&dir)
        .with_context(|| format!("writing the ONNX export in {}", dir.display()))?;
    for f in ["config.json", "model.safetensors"] {
        writeln!(out, "{}", dir.join(f).display())?;
    }
    writeln!(out, "{}", onnx.display())?;
    Ok(ExitCode::SUCCESS)
}
