//! A scenario expanded into its matrix cells: stable ids, seeds, execution order.
//!
//! The plan is the unit of work every runner shares (`run` in one process today; `run-cell`
//! children, Slurm arrays or Kubernetes indexed jobs later), so it is plain serialisable data.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tcobench_backends::{DType, Device};

use crate::scenario::{BackendKind, Scenario};

/// Plan file format version.
pub const PLAN_VERSION: u32 = 1;

/// One matrix cell: a complete, runnable configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in execution order.
    pub index: usize,
    /// Stable id: readable prefix + hash of the resolved configuration and seed.
    pub cell_id: String,
    /// Backend.
    pub backend: BackendKind,
    /// Built-in model name or model directory.
    pub model: String,
    /// Device.
    pub device: Device,
    /// Data type.
    pub dtype: DType,
    /// Sequences per request.
    pub batch_size: u32,
    /// Prompt length per sequence.
    pub prompt_tokens: u32,
    /// Tokens generated per sequence.
    pub new_tokens: u32,
    /// Warm-up requests.
    pub warmup: u32,
    /// Timed requests.
    pub repetitions: u32,
}

impl Cell {
    /// A short human label: `candle/small/f32/cpu b1 p32 n16`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}/{} b{} p{} n{}",
            self.backend,
            model_label(&self.model),
            self.dtype,
            self.device,
            self.batch_size,
            self.prompt_tokens,
            self.new_tokens
        )
    }

    /// Requests this cell will issue, warm-up included.
    pub fn total_requests(&self) -> u64 {
        u64::from(self.warmup) + u64::from(self.repetitions)
    }

    /// The workload part of the configuration: what decides the prompts. Cells that differ only in
    /// backend, device or dtype share it, so they see identical prompts.
    pub fn workload_key(&self) -> String {
        format!(
            "model={};batch_size={};prompt_tokens={};new_tokens={}",
            self.model, self.batch_size, self.prompt_tokens, self.new_tokens
        )
    }
}

/// The last path component of a model directory, or the built-in name.
pub fn model_label(model: &str) -> &str {
    std::path::Path::new(model)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(model)
}

/// A resolved scenario and its cells in execution order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Format version.
    pub plan_version: u32,
    /// Scenario name.
    pub scenario_name: String,
    /// Scenario file as given.
    pub scenario_path: String,
    /// The resolved scenario.
    pub scenario: serde_json::Value,
    /// Scenario seed.
    pub seed: u64,
    /// Cells in execution order.
    pub cells: Vec<Cell>,
}

/// Keeps only characters safe in file names; everything else becomes `-`.
pub fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.is_empty() {
        "x".to_string()
    } else {
        out.chars().take(48).collect()
    }
}

/// Hex SHA-256 of `bytes`, first `n` characters.
pub fn short_hash(bytes: &[u8], n: usize) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..n].to_string()
}

impl Plan {
    /// Expands the matrix (device × backend × model × dtype × batch × prompt × new tokens, in
    /// that nesting order so consecutive cells reuse a loaded model), drops excluded cells.
    pub fn from_scenario(scenario: &Scenario, scenario_path: &str) -> Plan {
        let m = &scenario.matrix;
        let mut cells = Vec::new();
        for &device in &scenario.device {
            for &backend in &m.backend {
                for model in &m.model {
                    for &dtype in &m.dtype {
                        for &batch_size in &m.batch_size {
                            for &prompt_tokens in &m.prompt_tokens {
                                for &new_tokens in &m.new_tokens {
                                    let mut cell = Cell {
                                        index: 0,
                                        cell_id: String::new(),
                                        backend,
                                        model: model.clone(),
                                        device,
                                        dtype,
                                        batch_size,
                                        prompt_tokens,
                                        new_tokens,
                                        warmup: scenario.warmup,
                                        repetitions: scenario.repetitions,
                                    };
                                    if !excluded(scenario, &cell) {
                                        cell.index = cells.len();
                                        cell.cell_id = cell_id(&cell, scenario.seed);
                                        cells.push(cell);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Plan {
            plan_version: PLAN_VERSION,
            scenario_name: scenario.name.clone(),
            scenario_path: scenario_path.to_string(),
            scenario: serde_json::to_value(scenario).expect("scenario serialises"),
            seed: scenario.seed,
            cells,
        }
    }
}

fn excluded(scenario: &Scenario, cell: &Cell) -> bool {
    scenario.exclude.iter().any(|rule| {
        rule.0.iter().all(|(k, v)| match k.as_str() {
            "backend" => cell.backend.to_string() == *v,
            "model" => cell.model == *v,
            "dtype" => cell.dtype.to_string() == *v,
            "device" => cell.device.to_string() == *v,
            "batch_size" => cell.batch_size.to_string() == *v,
            "prompt_tokens" => cell.prompt_tokens.to_string() == *v,
            "new_tokens" => cell.new_tokens.to_string() == *v,
            _ => false,
        })
    })
}

fn cell_id(cell: &Cell, seed: u64) -> String {
    let config = format!(
        "backend={};{};device={};dtype={};warmup={};repetitions={};seed={seed}",
        cell.backend,
        cell.workload_key(),
        cell.device,
        cell.dtype,
        cell.warmup,
        cell.repetitions
    );
    let readable = sanitize(&format!(
        "{}-{}-{}-{}-b{}-p{}-n{}",
        cell.backend,
        model_label(&cell.model),
        cell.dtype,
        cell.device,
        cell.batch_size,
        cell.prompt_tokens,
        cell.new_tokens
    ));
    format!("{readable}-{}", short_hash(config.as_bytes(), 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_removes_path_tricks() {
        assert_eq!(sanitize("../../etc/passwd"), "etc-passwd");
        assert_eq!(sanitize("<script>"), "script");
        assert_eq!(sanitize("..."), "x");
        assert_eq!(sanitize("cuda:0"), "cuda-0");
    }
}
