//! The results-directory contract: what `manifest.json`, `requests.parquet` and `power.parquet`
//! hold, as plain structs, and their conversion to and from polars frames.
//!
//! Other tools read these files, so column names and meanings are stable. A value that could not
//! be measured is stored as null (`None`), never as zero.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::spec::CostingSpec;
use crate::CellConfig;

/// Version of the results layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// File names inside a run directory.
pub mod files {
    /// The run manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// One row per request.
    pub const REQUESTS: &str = "requests.parquet";
    /// One row per power sample.
    pub const POWER: &str = "power.parquet";
    /// Analysis output.
    pub const STATS: &str = "stats.json";
    /// Markdown report.
    pub const REPORT_MD: &str = "report.md";
    /// Self-contained HTML report.
    pub const REPORT_HTML: &str = "report.html";
    /// Folder of per-cell results.
    pub const CELLS: &str = "cells";
    /// Per-cell status file, inside `cells/<cell-id>/`.
    pub const CELL_STATUS: &str = "status.json";
    /// Folder of SVG plots.
    pub const PLOTS: &str = "plots";
}

/// One timed (or warm-up) request: a batch of equal-length prompts, each generating exactly
/// `new_tokens` tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Run the request belongs to.
    pub run_id: String,
    /// Stable id of the cell (hash of its resolved configuration).
    pub cell_id: String,
    /// What the request's cell ran.
    #[serde(flatten)]
    pub config: CellConfig,
    /// Repetition index; warm-up requests count from 0 separately.
    pub rep: u32,
    /// Warm-up requests are stored but excluded from statistics.
    pub warmup: bool,
    /// Time from request start to the first generated token (all sequences), ms.
    pub ttft_ms: Option<f64>,
    /// Time from request start to the last generated token, ms.
    pub e2e_ms: Option<f64>,
    /// Time per output token after the first, ms: (e2e − ttft) / (new_tokens − 1).
    pub tpot_ms: Option<f64>,
    /// Generated tokens (batch × new_tokens) per second of end-to-end time.
    pub tokens_per_s: Option<f64>,
    /// Energy of the request window, joules; null when not measurable.
    pub energy_j: Option<f64>,
    /// How `energy_j` was obtained (`nvml_energy_counter`, `rapl`, `cpu_estimate`, `mock`, `none`).
    pub energy_method: String,
    /// Whether the request's own window was long enough for `energy_j` to meet the run's target
    /// uncertainty (see [`EnergyWindow::min_window_ms`]); null when there is no energy figure or
    /// the run predates the check. An invalid per-request figure is kept but imprecise: the
    /// cell's whole-window figure ([`CellRecord::energy`]) is the one to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_valid: Option<bool>,
    /// SHA-256 (hex, first 16 chars) of the prompt token ids.
    pub input_hash: String,
    /// SHA-256 (hex, first 16 chars) of the generated token ids; null when the request failed.
    pub output_hash: Option<String>,
    /// `ok` or `error`.
    pub status: String,
    /// The error message when `status` is `error`.
    pub error: Option<String>,
}

/// One power sample on the run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerSample {
    /// Milliseconds since the run's clock origin.
    pub t_ms: f64,
    /// Source/method of the sample (same vocabulary as `energy_method`).
    pub source: String,
    /// Device the sample covers (`cpu-package`, `cuda:0`).
    pub device: String,
    /// Cell being measured at the time, if any.
    pub cell_id: Option<String>,
    /// Average power since the previous sample, watts.
    pub watts: Option<f64>,
    /// Cumulative energy since the sampler started, joules.
    pub energy_j_cum: Option<f64>,
    /// Temperature, °C, when the source reports it.
    pub temp_c: Option<f64>,
    /// SM clock, MHz, when the source reports it.
    pub sm_clock_mhz: Option<f64>,
    /// Throttle reasons bitmask, as reported by the driver.
    pub throttle_reasons: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Outcome of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellOutcome {
    /// Not run (yet).
    Pending,
    /// All requests completed.
    Ok,
    /// The cell failed; see `error`.
    Failed,
    /// Not run on purpose (e.g. the run's budget would have been exceeded); see `error`.
    Skipped,
}

/// The configuration and outcome of one matrix cell, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Stable id: hash of the resolved configuration.
    pub cell_id: String,
    /// Execution order index in the plan.
    pub index: usize,
    /// What the cell runs.
    #[serde(flatten)]
    pub config: CellConfig,
    /// Warm-up requests.
    pub warmup: u32,
    /// Timed requests.
    pub repetitions: u32,
    /// Outcome.
    pub status: CellOutcome,
    /// Error message of a failed cell.
    pub error: Option<String>,
    /// Peak resident set size of the process while the cell ran, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Peak device memory used while the cell ran, bytes, where the driver reports it.
    pub gpu_mem_bytes: Option<u64>,
    /// Energy method used for this cell's requests.
    pub energy_method: Option<String>,
    /// Wall-clock time the cell started (RFC 3339).
    pub started_at: Option<String>,
    /// Wall-clock time the cell ended (RFC 3339).
    pub ended_at: Option<String>,
    /// Run-clock milliseconds at which the measured window started (for power plots).
    pub window_start_ms: Option<f64>,
    /// Run-clock milliseconds at which the measured window ended.
    pub window_end_ms: Option<f64>,
    /// The logits-agreement gate's result for this cell (absent in runs before the gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// How the backend ran this cell: threads, model file, key/value cache, runtime library.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_info: BTreeMap<String, String>,
    /// The energy of the cell's measured window with its provenance, uncertainty, validity,
    /// cross-check and throttling (absent in runs before it was recorded, and in cells that did
    /// not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergyWindow>,
    /// How busy the rest of the host was during the timed window (real backends on Linux;
    /// absent for mock cells, elsewhere, and in runs before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_load: Option<HostLoad>,
    /// Which execution of its configuration this record is, in a run with `replicates` ≥ 2
    /// (absent otherwise: the record is the configuration's only execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<Replicate>,
}

/// One execution of a configuration that a run carries out `of` times (`replicates: R`): its
/// own process, its own model load, its own place in the run's interleaved order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicate {
    /// 1-based number of this execution among the configuration's.
    pub number: u32,
    /// How many executions the configuration has (the scenario's `replicates`).
    pub of: u32,
    /// The id of the configuration all its executions share (the cell id of the run's
    /// statistics; each execution's own `cell_id` adds `-r<number>`).
    pub configuration_id: String,
    /// The configuration's position in the scenario's configurations (its index in
    /// `stats.json`).
    pub configuration_index: usize,
}

/// Whether an energy figure may be reported as a measurement with its stated uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyValidity {
    /// The window is long enough for the source's resolution and the readings are complete.
    Valid,
    /// The figure exists but must not be presented as precise (`invalid_reason` says why:
    /// window shorter than the minimum, readings missing, counter reset).
    Invalid,
    /// No energy source (method `none`): there is no figure.
    NotMeasured,
}

/// The energy of one measured window (a cell's timed requests, or the idle baseline), with
/// everything needed to judge it.
///
/// Uncertainty model: `uncertainty_rel = quantisation_rel + gain_error_rel`, a worst-case linear
/// sum of the counter's quantisation (`update_period_ms / window_ms`: each window edge may read a
/// value up to one update period stale) and the sensor's stated gain error (see the harness's
/// power sources for the figures assumed and their references).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyWindow {
    /// Method (same vocabulary as `energy_method`).
    pub method: String,
    /// What the figure covers: `gpu-board`, `cpu-package`, `whole-system`, `mock`, `none`.
    pub scope: String,
    /// `measured`, `estimated` (a model, e.g. TDP × load) or `synthetic`.
    pub basis: String,
    /// Device the figure covers (`cuda:0`, `cpu-package`); a MIG instance is reported as its
    /// whole GPU.
    pub device: String,
    /// Period of the background timeline, ms.
    pub sample_period_ms: f64,
    /// How often the source's counter updates, ms (0: continuous, e.g. a model or a mock).
    pub update_period_ms: f64,
    /// Length of the window, ms.
    pub window_ms: f64,
    /// Shortest window that meets the target uncertainty: `max(power.min_window_ms,
    /// update_period_ms / power.target_uncertainty)`, ms.
    pub min_window_ms: f64,
    /// Gross energy of the window (nothing subtracted), J; null when not measured.
    pub energy_j: Option<f64>,
    /// Tokens generated inside the window (timed requests only).
    #[serde(default)]
    pub generated_tokens: u64,
    /// Relative quantisation error bound, `update_period_ms / window_ms`.
    pub quantisation_rel: Option<f64>,
    /// Relative gain error the source's sensor is stated to have.
    pub gain_error_rel: f64,
    /// Relative uncertainty of `energy_j`: quantisation + gain error.
    pub uncertainty_rel: Option<f64>,
    /// Whether the figure may be reported as precise.
    pub validity: EnergyValidity,
    /// Why the figure is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Timed requests whose own window was shorter than `min_window_ms` (their per-request
    /// `energy_valid` is false).
    #[serde(default)]
    pub requests_below_min_window: u32,
    /// Untimed requests run after the timed ones only to lengthen the window to
    /// `min_window_ms` (`power.pad_requests_max`); their tokens are in `generated_tokens`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub padding_requests: u32,
    /// DRAM energy of the window where RAPL exposes a DRAM domain, J (not included in
    /// `energy_j`, whose scope is the package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dram_energy_j: Option<f64>,
    /// Instant power integrated over the same window, compared with the counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_check: Option<CrossCheck>,
    /// Clocks, temperatures and throttling seen during the window (GPU sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<Throttling>,
}

/// The energy counter against independently polled instant power over the same window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossCheck {
    /// What was integrated (`nvml_power_instant`).
    pub method: String,
    /// Instant power integrated (trapezoids between readings) over the window, J.
    pub energy_j: f64,
    /// Readings of instant power inside the window.
    pub readings: u32,
    /// `|cross-check − counter| / counter`.
    pub disagreement_rel: f64,
    /// The threshold (`power.cross_check_tolerance`).
    pub tolerance_rel: f64,
    /// Whether the disagreement exceeds the threshold (aliasing, a sensor fault, or a window too
    /// short for polling).
    pub flagged: bool,
}

/// How busy the rest of the host was while a cell was timed (from `/proc/stat`, less the cell
/// process's own CPU time), from the first timed request to the last. Other processes on the
/// same cores slow a cell for reasons unrelated to its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    /// CPUs of the host.
    pub cpus: u32,
    /// Wall time covered, clock ticks (`USER_HZ`, usually 100 per second): the resolution of the
    /// figures below is about one tick in this many.
    pub wall_ticks: u64,
    /// CPU the cell's own process used, cores (all its threads).
    pub own_cores: f64,
    /// CPU every other process used, cores.
    pub other_cores: f64,
    /// Fraction of all CPU time a hypervisor stole.
    pub steal_fraction: f64,
}

impl HostLoad {
    /// Other processes' CPU above which the host counts as not quiet, cores.
    pub const BUSY_OTHER_CORES: f64 = 0.25;
    /// Steal above which the host counts as not quiet.
    pub const BUSY_STEAL_FRACTION: f64 = 0.05;
    /// Shortest window judged, ticks: below it one tick is more than 5 % of a core-window.
    pub const MIN_WALL_TICKS: u64 = 20;

    /// Why the host was not quiet during the window, or `None` when it was (or the window is
    /// too short to tell).
    pub fn not_quiet(&self) -> Option<String> {
        if self.wall_ticks < Self::MIN_WALL_TICKS {
            return None;
        }
        let mut why = Vec::new();
        if self.other_cores > Self::BUSY_OTHER_CORES {
            why.push(format!(
                "other processes used {:.2} of {} cores",
                self.other_cores, self.cpus
            ));
        }
        if self.steal_fraction > Self::BUSY_STEAL_FRACTION {
            why.push(format!(
                "the hypervisor stole {:.0} % of CPU time",
                100.0 * self.steal_fraction
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// Throttling and thermal state of a device over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Union of the driver's throttle / clock-event reason bits seen in the window.
    pub reasons_bits: u64,
    /// Names of those reasons (`sw_power_cap`, `hw_slowdown`, `sw_thermal_slowdown`, …).
    pub reasons: Vec<String>,
    /// A hardware slowdown (including power brake) was seen: timings are not representative.
    pub hw_slowdown: bool,
    /// A software or hardware thermal slowdown was seen, or the thermal violation counter grew.
    pub thermal_slowdown: bool,
    /// Time the software power cap held clocks down: the power-violation counter's difference
    /// over the window where the driver has it, else the sampled time with the `sw_power_cap`
    /// bit set, ms.
    pub sw_power_cap_ms: Option<f64>,
    /// Difference of the driver's power-violation counter over the window, ms.
    pub power_violation_ms: Option<f64>,
    /// Difference of the driver's thermal-violation counter over the window, ms.
    pub thermal_violation_ms: Option<f64>,
    /// Highest temperature read, °C.
    pub max_temp_c: Option<f64>,
    /// Lowest SM clock read, MHz.
    pub min_sm_clock_mhz: Option<f64>,
    /// Highest SM clock read, MHz.
    pub max_sm_clock_mhz: Option<f64>,
    /// Enforced power limit, W.
    pub power_limit_w: Option<f64>,
    /// Whether the cell is flagged: hardware or thermal slowdown.
    pub flagged: bool,
}

/// Idle power measured with the run's own energy method before the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    /// The window, with its method, device, uncertainty and validity.
    pub window: EnergyWindow,
    /// Mean idle power, W (`energy_j / window`).
    pub watts: Option<f64>,
}

/// Outcome of the logits-agreement gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgreementStatus {
    /// The cell's logits agree with the reference within the tolerance.
    Passed,
    /// They do not: the cell is excluded from comparisons unless overridden.
    Failed,
    /// The cell *is* the reference configuration.
    Reference,
    /// The backend computes no logits (mock).
    NotApplicable,
    /// The gate could not run (the message says why); treated like `failed` for comparisons.
    Error,
}

/// Before a cell is timed, its logits for a fixed seeded prompt (prefill and a few decode steps)
/// are compared with the reference backend's on the same weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Outcome.
    pub status: AgreementStatus,
    /// The reference configuration (`candle/f32/cpu`).
    pub reference: String,
    /// Largest relative difference over the compared steps (max |a − b| / max |b| per step).
    pub max_rel_diff: Option<f64>,
    /// Tolerance for the cell's dtype.
    pub tolerance: f64,
    /// Logit vectors compared: the prefill plus each decode step.
    pub steps: usize,
    /// Why the gate could not run, or other remarks.
    pub note: Option<String>,
}

impl Agreement {
    /// Whether the cell may enter comparisons without an explicit override.
    pub fn comparable(&self) -> bool {
        !matches!(
            self.status,
            AgreementStatus::Failed | AgreementStatus::Error
        )
    }
}

/// Description of the power method used by a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerInfo {
    /// Method name (same vocabulary as `energy_method`).
    pub method: String,
    /// What the figure covers (`gpu-board`, `cpu-package`, `none`).
    pub scope: String,
    /// Whether the figure is a measurement (`measured`) or a model (`estimated`).
    pub basis: String,
    /// Sampling period of the timeline, ms.
    pub sample_period_ms: f64,
    /// Inputs of an estimate (TDP, idle fraction…) or notes on why a source was not used.
    pub notes: BTreeMap<String, String>,
    /// Idle power measured before the matrix with the same method (absent when
    /// `power.idle_baseline_s` is 0, on virtual clocks, and in runs before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_baseline: Option<IdleBaseline>,
}

/// Host description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Operating system and kernel.
    pub os: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_logical_cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: Option<u64>,
    /// GPUs visible to NVML (name, driver), empty when none.
    pub gpus: Vec<String>,
    /// Host name.
    pub hostname: String,
}

/// `manifest.json`: everything needed to know what was run, where, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Results layout version.
    pub schema_version: u32,
    /// Run id (also the folder name).
    pub run_id: String,
    /// Scenario name.
    pub scenario_name: String,
    /// Scenario file as given.
    pub scenario_path: String,
    /// Fully resolved scenario (after `extends:` and command-line overrides).
    pub scenario: serde_json::Value,
    /// Scenario seed (prompts).
    pub seed: u64,
    /// Seed of the built-in models' weights (fixed, so every run measures the same network).
    #[serde(default)]
    pub model_seed: u64,
    /// The command line that produced the run.
    pub command: Vec<String>,
    /// `git describe`-style revision of the working tree, when known (`-dirty` when a tracked
    /// file other than tcobench's own outputs was modified).
    pub git_revision: Option<String>,
    /// The modified tracked files that made the revision dirty (tcobench's own outputs,
    /// `EXPERIMENT_LOG.md` and `results/`, are not counted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git_dirty_files: Vec<String>,
    /// Versions of tcobench and the crates whose behaviour matters.
    pub versions: BTreeMap<String, String>,
    /// Host description.
    pub host: HostInfo,
    /// Power method.
    pub power: PowerInfo,
    /// Run start (RFC 3339).
    pub started_at: String,
    /// Run end (RFC 3339), absent while running.
    pub ended_at: Option<String>,
    /// `running`, `complete` or `incomplete`.
    pub status: String,
    /// Every cell with its outcome.
    pub cells: Vec<CellRecord>,
    /// The scenario's `pricing`/`energy`/`slo`/`workload` sections (overlay path made absolute),
    /// from which `analyze` prices the cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costing: Option<CostingSpec>,
    /// The run's spending limit (`budget_usd`) and what the run spent, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRecord>,
    /// Cells that failed the agreement gate still enter comparisons (`run --allow-disagreement`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_disagreement: bool,
}

/// A run's spending limit, the rate it was charged at and what it spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The limit, $.
    pub usd: f64,
    /// What one hour of the run costs, $/h.
    pub usd_per_hour: f64,
    /// Where the rate comes from (a catalog row, or the scenario's own figure).
    pub rate_source: String,
    /// Run time so far × rate, $.
    pub spent_usd: f64,
}

/// Errors reading or writing results files.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// polars failed to build, read or write a frame.
    #[error("{path}: {source}")]
    Polars {
        /// File concerned.
        path: String,
        /// Underlying error.
        source: PolarsError,
    },
    /// A file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// File concerned.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A file's bytes do not match the SHA-256 written beside it (`FILE.sha256`) when it was
    /// committed: it was changed or damaged since.
    #[error(
        "{path}: corrupt file: its SHA-256 is {found}, not the {expected} recorded in {path}.sha256 \
         when it was written; {hint}"
    )]
    Checksum {
        /// File concerned.
        path: String,
        /// The recorded digest (hex).
        expected: String,
        /// The file's digest now (hex).
        found: String,
        /// What repairs it, which depends on the file ([`checksum_hint`]).
        hint: String,
    },
    /// A column is missing or has the wrong type.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        /// File concerned.
        path: String,
        /// Column name.
        column: String,
        /// What is wrong.
        message: String,
    },
}
