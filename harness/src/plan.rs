//! A scenario's configurations ([`Scenario::configurations`], the matrix less its exclusions) as
//! cells: stable ids, seeds, execution order.
//!
//! With `replicates: R` ≥ 2 every configuration is carried out R times, each execution a cell
//! of the plan with its own id (`<configuration id>-r<number>`) and its own process
//! ([`Replicate`] names whose execution it is). The order interleaves them so that slow drift of
//! the host — warming, throttling, a neighbour starting — falls on every configuration alike:
//! replicates come in pairs, the first of a pair in a seeded shuffle of the configurations and
//! the second in the mirror of that order ([`replicate_order`]). Each configuration's mean
//! position over a pair is then the middle of the pair, and two configurations run A B B A.
//!
//! The plan is the unit of work every runner shares (`run` hands its cells to `run-cell`
//! children; Slurm arrays or Kubernetes indexed jobs can do the same), so it is plain serialisable
//! data, written as `plan.json` into the run folder. A child needs nothing but the plan and an
//! index: the settings that shape a cell's numbers (power source, ONNX Runtime threads) are read
//! back from the resolved scenario the plan carries.

use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tcobench_backends::Device;
use tcobench_results::config::model_label;
use tcobench_results::replicates::{execution_id, replicate};
use tcobench_results::schema::Replicate;

use crate::scenario::{
    BackendKind, MockSettings, OrtThreadSettings, PowerSettings, PowerSource, Scenario,
};

/// Plan file format version.
pub const PLAN_VERSION: u32 = 1;

/// The plan's file name inside a run folder.
pub const PLAN_FILE: &str = "plan.json";

/// A cell's configuration as the plan holds it: the one [`tcobench_results::CellConfig`], with the
/// scenario's validated backend, device and dtype.
pub type CellConfig = crate::scenario::MatrixConfig;

/// One matrix cell: a complete, runnable configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in execution order.
    pub index: usize,
    /// Stable id: readable prefix + hash of the resolved configuration and seed.
    pub cell_id: String,
    /// What the cell runs.
    #[serde(flatten)]
    pub config: CellConfig,
    /// Warm-up requests.
    pub warmup: u32,
    /// Timed requests.
    pub repetitions: u32,
    /// Which execution of its configuration this cell is (`replicates` ≥ 2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<Replicate>,
}

impl Cell {
    /// A short human label: `candle/small/f32/cpu b1 p32 n16` ([`CellConfig::plan_label`]).
    pub fn label(&self) -> String {
        self.config.plan_label()
    }

    /// Requests this cell will issue, warm-up included.
    pub fn total_requests(&self) -> u64 {
        u64::from(self.warmup) + u64::from(self.repetitions)
    }

    /// The workload part of the configuration: what decides the prompts
    /// ([`CellConfig::workload_key`]).
    pub fn workload_key(&self) -> String {
        self.config.workload_key()
    }
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
    /// The scenario file's absolute path, when known (a run's plan), so `run --resume` finds it
    /// from any folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_file: Option<std::path::PathBuf>,
    /// The command-line overrides the scenario was resolved with, so `run --resume` can resolve
    /// it again the same way and check that it still yields these cells.
    #[serde(default, skip_serializing_if = "PlanOverrides::is_empty")]
    pub overrides: PlanOverrides,
}

/// Command-line overrides recorded in a plan (`--seed`, `--device`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOverrides {
    /// `--seed N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `--device D`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// `--replicates R`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<u32>,
}

impl PlanOverrides {
    /// Whether no override was given.
    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.device.is_none() && self.replicates.is_none()
    }
}

/// What a cell needs besides its own configuration, as resolved by the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSettings {
    /// The power source and its settings.
    pub power: PowerSettings,
    /// The scenario's devices (the power source is chosen for them).
    pub devices: Vec<Device>,
    /// ONNX Runtime thread pools.
    pub ort_threads: OrtThreadSettings,
    /// How the mock backend's virtual time varies.
    pub mock: MockSettings,
}

/// The parts of the resolved scenario a `run-cell` child reads back (the validated scenario
/// serialises into the plan; these mirror its field names).
#[derive(Debug, Deserialize)]
struct ResolvedParts {
    device: Vec<Device>,
    power: ResolvedPower,
    ort_threads: ResolvedThreads,
    #[serde(default)]
    mock: MockSettings,
}

#[derive(Debug, Deserialize)]
struct ResolvedPower {
    source: PowerSource,
    sample_ms: u32,
    idle_baseline_s: f64,
    cpu_tdp_w: f64,
    cpu_tdp_from_user: bool,
    cpu_idle_fraction: f64,
    mock_watts: f64,
    #[serde(default = "default_target_uncertainty")]
    target_uncertainty: f64,
    #[serde(default)]
    min_window_ms: f64,
    #[serde(default = "default_cross_check_tolerance")]
    cross_check_tolerance: f64,
    #[serde(default = "default_pad_requests_max")]
    pad_requests_max: u32,
}

fn default_pad_requests_max() -> u32 {
    PowerSettings::DEFAULT_PAD_REQUESTS_MAX
}

fn default_target_uncertainty() -> f64 {
    PowerSettings::DEFAULT_TARGET_UNCERTAINTY
}

fn default_cross_check_tolerance() -> f64 {
    PowerSettings::DEFAULT_CROSS_CHECK_TOLERANCE
}

#[derive(Debug, Deserialize)]
struct ResolvedThreads {
    intra: usize,
    inter: usize,
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

/// Whether `s` can be used as one folder name: ASCII letters, digits, `.`, `_` and `-` only,
/// not starting with `.`, at most 128 characters (what [`sanitize`] and cell ids produce).
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Hex SHA-256 of `bytes`, first `n` characters.
pub fn short_hash(bytes: &[u8], n: usize) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..n].to_string()
}

impl Plan {
    /// The scenario's configurations ([`Scenario::configurations`]: the matrix in an order that
    /// reuses loaded models, excluded cells dropped) as cells with stable ids, in that order.
    /// With `replicates` ≥ 2, each configuration's executions follow [`replicate_order`].
    pub fn from_scenario(scenario: &Scenario, scenario_path: &str) -> Plan {
        let configurations: Vec<Cell> = scenario
            .configurations()
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                let mut cell = Cell {
                    index,
                    cell_id: String::new(),
                    config,
                    warmup: scenario.warmup,
                    repetitions: scenario.repetitions,
                    replicate: None,
                };
                cell.cell_id = cell_id(&cell, scenario.seed);
                cell
            })
            .collect();
        let replicates = scenario.replicates;
        let cells = if replicates <= 1 {
            configurations
        } else {
            replicate_order(configurations.len(), replicates, scenario.seed)
                .into_iter()
                .enumerate()
                .map(|(index, (number, c))| {
                    let base = &configurations[c];
                    Cell {
                        index,
                        cell_id: execution_id(&base.cell_id, number),
                        replicate: Some(replicate(&base.cell_id, c, number, replicates)),
                        ..base.clone()
                    }
                })
                .collect()
        };
        Plan {
            plan_version: PLAN_VERSION,
            scenario_name: scenario.name.clone(),
            scenario_path: scenario_path.to_string(),
            scenario: serde_json::to_value(scenario).expect("scenario serialises"),
            seed: scenario.seed,
            cells,
            scenario_file: None,
            overrides: PlanOverrides::default(),
        }
    }

    /// Reads a plan file.
    pub fn read(path: &Path) -> Result<Plan> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a tcobench plan", path.display()))?;
        if plan.plan_version != PLAN_VERSION {
            anyhow::bail!(
                "{}: plan version {} is not supported (this tcobench writes version {PLAN_VERSION})",
                path.display(),
                plan.plan_version
            );
        }
        for (i, c) in plan.cells.iter().enumerate() {
            if c.index != i {
                anyhow::bail!(
                    "{}: cell {} has index {}, expected {i}",
                    path.display(),
                    c.cell_id,
                    c.index
                );
            }
            if !is_safe_name(&c.cell_id) {
                anyhow::bail!(
                    "{}: cell id `{}` is not a safe folder name",
                    path.display(),
                    c.cell_id
                );
            }
        }
        Ok(plan)
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises")
    }

    /// Whether every cell runs on the mock backend (the run then uses its virtual clock).
    pub fn all_mock(&self) -> bool {
        self.cells
            .iter()
            .all(|c| c.config.backend == BackendKind::Mock)
    }

    /// The cell ids in execution order.
    pub fn cell_ids(&self) -> Vec<&str> {
        self.cells.iter().map(|c| c.cell_id.as_str()).collect()
    }

    /// The settings a cell needs, read back from the resolved scenario.
    pub fn cell_settings(&self) -> Result<CellSettings> {
        let parts: ResolvedParts = serde_json::from_value(self.scenario.clone())
            .context("the plan's resolved scenario lacks its power or thread settings")?;
        let p = parts.power;
        Ok(CellSettings {
            power: PowerSettings {
                source: p.source,
                sample_ms: p.sample_ms,
                idle_baseline_s: p.idle_baseline_s,
                cpu_tdp_w: p.cpu_tdp_w,
                cpu_tdp_from_user: p.cpu_tdp_from_user,
                cpu_idle_fraction: p.cpu_idle_fraction,
                mock_watts: p.mock_watts,
                target_uncertainty: p.target_uncertainty,
                min_window_ms: p.min_window_ms,
                cross_check_tolerance: p.cross_check_tolerance,
                pad_requests_max: p.pad_requests_max,
            },
            devices: parts.device,
            ort_threads: OrtThreadSettings {
                intra: parts.ort_threads.intra,
                inter: parts.ort_threads.inter,
            },
            mock: parts.mock,
        })
    }

    /// Executions per configuration (1 without replicates).
    pub fn replicates(&self) -> u32 {
        self.cells
            .first()
            .and_then(|c| c.replicate.as_ref())
            .map_or(1, |r| r.of)
    }
}

/// The order in which `replicates` executions of each of `configurations` configurations run,
/// as `(execution number, configuration index)`: replicates in pairs, the first of a pair in a
/// shuffle of the configurations seeded by `seed` and the pair, the second in its mirror (a
/// last unpaired replicate gets a shuffle of its own).
pub fn replicate_order(configurations: usize, replicates: u32, seed: u64) -> Vec<(u32, usize)> {
    let mut order = Vec::with_capacity(configurations * replicates as usize);
    let mut number = 1;
    let mut pair = 0u64;
    while number <= replicates {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x7265_706c_6963_6174 ^ pair);
        let mut shuffled: Vec<usize> = (0..configurations).collect();
        shuffled.shuffle(&mut rng);
        order.extend(shuffled.iter().map(|&c| (number, c)));
        number += 1;
        if number <= replicates {
            order.extend(shuffled.iter().rev().map(|&c| (number, c)));
            number += 1;
        }
        pair += 1;
    }
    order
}

fn cell_id(cell: &Cell, seed: u64) -> String {
    let config = format!(
        "backend={};{};device={};dtype={};warmup={};repetitions={};seed={seed}",
        cell.config.backend,
        cell.workload_key(),
        cell.config.device,
        cell.config.dtype,
        cell.warmup,
        cell.repetitions
    );
    let readable = sanitize(&format!(
        "{}-{}-{}-{}-b{}-p{}-n{}",
        cell.config.backend,
        model_label(&cell.config.model),
        cell.config.dtype,
        cell.config.device,
        cell.config.batch_size,
        cell.config.prompt_tokens,
        cell.config.new_tokens
    ));
    format!("{readable}-{}", short_hash(config.as_bytes(), 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicates_come_in_mirrored_pairs_with_every_execution_once() {
        let order = replicate_order(5, 4, 42);
        assert_eq!(order.len(), 20);
        for c in 0..5 {
            let numbers: Vec<u32> = order.iter().filter(|o| o.1 == c).map(|o| o.0).collect();
            assert_eq!(numbers, [1, 2, 3, 4], "configuration {c}");
        }
        // Within a pair the second replicate mirrors the first: every configuration's mean
        // position over the pair is the middle.
        for pair in order.chunks(10) {
            let (first, second) = pair.split_at(5);
            let mirrored: Vec<usize> = second.iter().rev().map(|o| o.1).collect();
            assert_eq!(first.iter().map(|o| o.1).collect::<Vec<_>>(), mirrored);
        }
        // The pairs are shuffled anew (seeded), so positions differ between pairs.
        assert_ne!(order[..5], order[10..15]);
        assert_eq!(order, replicate_order(5, 4, 42), "seeded");
        assert_ne!(order, replicate_order(5, 4, 43));
        // Two configurations run A B B A; an odd count ends with a shuffle of its own.
        let ab = replicate_order(2, 3, 1);
        assert_eq!(ab.len(), 6);
        assert_eq!(ab[0].1, ab[3].1);
        assert_eq!(ab[1].1, ab[2].1);
        assert_ne!(ab[0].1, ab[1].1);
        assert!(ab[4..].iter().all(|o| o.0 == 3));
    }

    #[test]
    fn sanitize_removes_path_tricks() {
        assert_eq!(sanitize("../../etc/passwd"), "etc-passwd");
        assert_eq!(sanitize("<script>"), "script");
        assert_eq!(sanitize("..."), "x");
        assert_eq!(sanitize("cuda:0"), "cuda-0");
    }
}
