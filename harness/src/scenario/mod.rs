//! Scenario files: YAML in, a validated [`Scenario`] out.
//!
//! Input becomes a plan in two steps. Each file deserialises into plain serde structs that reject
//! unknown keys and wrong types (serde_yaml reports the line and column); files chained with
//! `extends:` are merged key by key (the child wins; `matrix` and `power` merge per key); then
//! cross-field checks run, and any failure points back at the file, line, column and key that
//! caused it. Nothing downstream ever sees an unvalidated value. Input that cannot be a scenario
//! (over 1 MiB, not UTF-8) and matrices of more than 100 000 cells are refused up front.
//!
//! The types below are the validated scenario. The steps live beside them:
//!
//! * `raw.rs`: the serde structs as written, every key optional, unknown keys refused;
//! * `load.rs`: reading a file (size and UTF-8 limits), following `extends:`, merging the chain
//!   key by key, and locating keys in the text for `file:line:column` errors;
//! * `validate.rs`: the merged raw form checked and resolved into the types below (defaults,
//!   ranges, model folders, exclusions, the costing sections against the catalog, the budget).

mod load;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tcobench_backends::{DType, Device};
use tcobench_results::spec::CostingSpec;

/// A scenario problem that points at its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// File the problem is in.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path (`matrix.batch_size[1]`), when the problem has one.
    pub key: Option<String>,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// Inference backends a scenario may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// candle (Rust), CPU or CUDA.
    Candle,
    /// ONNX Runtime on the same weights exported to ONNX, CPU or CUDA.
    Onnxruntime,
    /// No inference; deterministic virtual timings (tests, dry runs).
    Mock,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Candle => "candle",
            BackendKind::Onnxruntime => "onnxruntime",
            BackendKind::Mock => "mock",
        })
    }
}

/// Where energy figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PowerSource {
    /// NVML for CUDA cells, else RAPL when readable, else the CPU estimate.
    #[default]
    Auto,
    /// NVIDIA GPU energy counter (power integration where no counter exists).
    Nvml,
    /// Intel/AMD RAPL package energy from powercap.
    Rapl,
    /// A model: TDP × load, labelled `estimated`.
    CpuEstimate,
    /// Constant power on the mock backend's virtual clock (tests).
    Mock,
    /// No energy figures (they are stored as null, never zero).
    None,
}

/// The matrix after validation: every dimension has at least one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    /// Backends.
    pub backend: Vec<BackendKind>,
    /// Model names (built-in) or directories.
    pub model: Vec<String>,
    /// Data types.
    pub dtype: Vec<DType>,
    /// Sequences per request.
    pub batch_size: Vec<u32>,
    /// Prompt lengths.
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens per sequence.
    pub new_tokens: Vec<u32>,
}

/// Power settings after validation and defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerSettings {
    /// Source selection.
    pub source: PowerSource,
    /// Timeline sampling period, ms.
    pub sample_ms: u32,
    /// Idle baseline measured before the matrix, seconds (0 = none).
    pub idle_baseline_s: f64,
    /// CPU package TDP used by the estimate, watts.
    pub cpu_tdp_w: f64,
    /// Whether `cpu_tdp_w` was set by the user (else it is a generic default).
    pub cpu_tdp_from_user: bool,
    /// Fraction of TDP drawn at zero load by the estimate.
    pub cpu_idle_fraction: f64,
    /// Constant power of the mock source, watts.
    pub mock_watts: f64,
    /// Relative quantisation error an energy window may have and still be valid: a window
    /// shorter than `update period / target_uncertainty` is marked invalid (default 0.01).
    pub target_uncertainty: f64,
    /// A floor under every energy window's minimum length, ms (default 0: derived from the
    /// source's update period and `target_uncertainty` only).
    pub min_window_ms: f64,
    /// Relative disagreement between the energy counter and integrated instant power beyond
    /// which a cell is flagged (default 0.1).
    pub cross_check_tolerance: f64,
    /// When a cell's timed requests end before its energy window reaches the minimum length,
    /// up to this many more requests run — untimed, only to lengthen the window (default 100;
    /// 0: never, the short window is marked invalid).
    pub pad_requests_max: u32,
}

impl PowerSettings {
    /// Defaults of the energy-window keys (`target_uncertainty`, `min_window_ms`,
    /// `cross_check_tolerance`), for plans written before they existed.
    pub const DEFAULT_TARGET_UNCERTAINTY: f64 = 0.01;
    /// Default of `min_window_ms`.
    pub const DEFAULT_MIN_WINDOW_MS: f64 = 0.0;
    /// Default of `cross_check_tolerance`.
    pub const DEFAULT_CROSS_CHECK_TOLERANCE: f64 = 0.1;
    /// Default of `pad_requests_max`.
    pub const DEFAULT_PAD_REQUESTS_MAX: u32 = 100;
}

/// One exclusion rule: a cell matching every listed dimension value is dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclude(pub BTreeMap<String, String>);

impl Exclude {
    /// Whether this rule removes `config`: every key it names has the configuration's value.
    pub fn matches(&self, config: &MatrixConfig) -> bool {
        self.0.iter().all(|(k, v)| match k.as_str() {
            "backend" => config.backend.to_string() == *v,
            "model" => config.model == *v,
            "dtype" => config.dtype.to_string() == *v,
            "device" => config.device.to_string() == *v,
            "batch_size" => config.batch_size.to_string() == *v,
            "prompt_tokens" => config.prompt_tokens.to_string() == *v,
            "new_tokens" => config.new_tokens.to_string() == *v,
            _ => false,
        })
    }
}

/// One combination of the matrix: a cell's configuration with the scenario's validated names.
pub type MatrixConfig = tcobench_results::CellConfig<BackendKind, Device, DType>;

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Scenario name (also part of the run id).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Seed of every random draw (prompts).
    pub seed: u64,
    /// Devices to run on.
    pub device: Vec<Device>,
    /// Warm-up requests per cell.
    pub warmup: u32,
    /// Timed requests per cell.
    pub repetitions: u32,
    /// Independent executions of every cell (`replicates`, `run --replicates`): each a fresh
    /// process with its model loaded anew, in a seeded interleaved order.
    #[serde(skip_serializing_if = "is_one")]
    pub replicates: u32,
    /// `mock:`: how the mock backend's virtual time varies (tests of the tool itself).
    #[serde(skip_serializing_if = "MockSettings::is_default")]
    pub mock: MockSettings,
    /// The matrix.
    pub matrix: Matrix,
    /// Exclusion rules.
    pub exclude: Vec<Exclude>,
    /// Power settings.
    pub power: PowerSettings,
    /// What the cells are priced on (`pricing`, `energy`, `slo`, `workload`; `None` when the
    /// scenario selects none of them). `pricing.catalog` is made absolute.
    pub costing: Option<CostingSpec>,
    /// Spending limit of the run itself.
    pub budget: Option<Budget>,
    /// ONNX Runtime thread pools (default: as many intra-op threads as cores, like candle, and
    /// one inter-op thread).
    pub ort_threads: OrtThreadSettings,
    /// `cell_timeout_s`: the wall-clock limit of one cell, seconds (`None`: the command's
    /// default; `run --cell-timeout-s` overrides it).
    pub cell_timeout_s: Option<f64>,
    /// The files read, the given one first, then its `extends:` chain.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// `mock:` — the mock backend's virtual time, made to vary the way real runs do, for testing
/// the statistics that must see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MockSettings {
    /// `execution_drift`: a random effect per execution, as a relative standard deviation of
    /// all its times (0: none).
    #[serde(default)]
    pub execution_drift: f64,
    /// `drift_seed`: seed of the drift draws (default: each run draws its own, from its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_seed: Option<u64>,
    /// `time_scale`: every virtual time multiplied by this (1: as is; 1.1 = a 10 % slower build).
    #[serde(default = "unit_scale")]
    pub time_scale: f64,
}

fn unit_scale() -> f64 {
    1.0
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            execution_drift: 0.0,
            drift_seed: None,
            time_scale: 1.0,
        }
    }
}

impl MockSettings {
    /// Whether nothing is changed.
    pub fn is_default(&self) -> bool {
        *self == MockSettings::default()
    }
}

impl Scenario {
    /// The most executions per cell a scenario may ask for.
    pub const MAX_REPLICATES: u32 = 1000;

    /// The matrix expanded — device × backend × model × dtype × batch × prompt × new tokens, in
    /// that nesting order so consecutive cells reuse a loaded model — with excluded
    /// combinations dropped. The plan gives each an id, a seed and its place.
    pub fn configurations(&self) -> Vec<MatrixConfig> {
        let m = &self.matrix;
        let mut out = Vec::new();
        for &device in &self.device {
            for &backend in &m.backend {
                for model in &m.model {
                    for &dtype in &m.dtype {
                        for &batch_size in &m.batch_size {
                            for &prompt_tokens in &m.prompt_tokens {
                                for &new_tokens in &m.new_tokens {
                                    let config = MatrixConfig {
                                        backend,
                                        model: model.clone(),
                                        device,
                                        dtype,
                                        batch_size,
                                        prompt_tokens,
                                        new_tokens,
                                    };
                                    if !self.exclude.iter().any(|rule| rule.matches(&config)) {
                                        out.push(config);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// ONNX Runtime threads as resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrtThreadSettings {
    /// Threads inside one operator.
    pub intra: usize,
    /// Operators run concurrently.
    pub inter: usize,
}

impl From<OrtThreadSettings> for tcobench_backends::OrtThreads {
    fn from(t: OrtThreadSettings) -> Self {
        tcobench_backends::OrtThreads {
            intra: t.intra,
            inter: t.inter,
        }
    }
}

/// `budget_usd` with the hourly rate it is charged at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    /// The limit, $.
    pub usd: f64,
    /// What one hour of this run costs, $/h.
    pub usd_per_hour: f64,
    /// Where the rate comes from (a catalog row, or `pricing.host_usd_per_hour`).
    pub rate_source: String,
}

/// Overrides given on the command line; they win over every file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--seed N`.
    pub seed: Option<u64>,
    /// `--device D`.
    pub device: Option<Device>,
    /// `--replicates R`.
    pub replicates: Option<u32>,
}

#[cfg(test)]
mod test_files {
    use std::path::{Path, PathBuf};

    /// Writes `text` to `dir/name`.
    pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A small valid scenario.
    pub(super) const OK: &str = "name: t\nseed: 1\nmatrix:\n  backend: [mock]\n  model: [tiny]\n  batch_size: [1, 2]\n  prompt_tokens: 8\n  new_tokens: [4]\n";
}
