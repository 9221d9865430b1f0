//! The records of `stats.json` per cell: which metrics a cell is summarised in, the summary
//! itself ([`CellStats`]: configuration, outcome, descriptives, robust statistics, energy), and
//! what is missing and why. The analysis writes them, the cost model and the report read them,
//! and so may any other tool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tcobench_stats::descriptive::Descriptives;
use tcobench_stats::groups;

use crate::schema;
use crate::schema::CellOutcome;
use crate::CellConfig;

/// The per-request metrics summarised for each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// End-to-end request latency, ms.
    E2eMs,
    /// Time to first token, ms.
    TtftMs,
    /// Time per output token after the first, ms.
    TpotMs,
    /// Generated tokens per second.
    TokensPerS,
    /// Energy per generated token, J: `energy_j / (batch_size · new_tokens)`.
    EnergyJPerToken,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 5] = [
        Metric::E2eMs,
        Metric::TtftMs,
        Metric::TpotMs,
        Metric::TokensPerS,
        Metric::EnergyJPerToken,
    ];

    /// Stable name (the `requests.parquet` column, or the derived name for energy per token).
    pub fn name(self) -> &'static str {
        match self {
            Metric::E2eMs => "e2e_ms",
            Metric::TtftMs => "ttft_ms",
            Metric::TpotMs => "tpot_ms",
            Metric::TokensPerS => "tokens_per_s",
            Metric::EnergyJPerToken => "energy_j_per_token",
        }
    }

    /// Unit, for axis labels and column headers.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::E2eMs | Metric::TtftMs | Metric::TpotMs => "ms",
            Metric::TokensPerS => "tokens/s",
            Metric::EnergyJPerToken => "J/token",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Metric::E2eMs => "end-to-end request latency",
            Metric::TtftMs => "time to first token",
            Metric::TpotMs => "time per output token after the first",
            Metric::TokensPerS => "generated tokens (batch × new tokens) per second",
            Metric::EnergyJPerToken => {
                "energy per generated token, energy_j / (batch × new tokens)"
            }
        }
    }
}

/// Name, unit and description of a metric, as listed in `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// Stable metric name (key of [`CellStats::metrics`]).
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Description.
    pub description: String,
}

impl From<Metric> for MetricInfo {
    fn from(m: Metric) -> Self {
        Self {
            name: m.name().into(),
            unit: m.unit().into(),
            description: m.description().into(),
        }
    }
}

/// A metric a cell has no statistics for, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    /// Metric name.
    pub metric: String,
    /// Why it is absent (never silently zero).
    pub reason: String,
}

/// Statistics and configuration of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStats {
    /// Stable cell id.
    pub cell_id: String,
    /// Execution order index.
    pub index: usize,
    /// What the cell ran.
    #[serde(flatten)]
    pub config: CellConfig,
    /// Configured warm-up requests.
    pub warmup: u32,
    /// Configured timed requests.
    pub repetitions: u32,
    /// Outcome recorded in the manifest.
    pub status: CellOutcome,
    /// Error message of a failed cell.
    pub error: Option<String>,
    /// Timed, successful requests the statistics use.
    pub n_requests: usize,
    /// Warm-up requests excluded.
    pub n_warmup_excluded: usize,
    /// Timed requests excluded because they failed.
    pub n_failed_excluded: usize,
    /// Energy method (from the manifest, else from the requests; `mixed(…)` if they disagree).
    pub energy_method: Option<String>,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Peak device memory, bytes.
    pub gpu_mem_bytes: Option<u64>,
    /// Statistics per metric name; a metric without values is absent and listed in `unavailable`.
    pub metrics: BTreeMap<String, Descriptives>,
    /// Robust statistics per metric name: MAD, bootstrap CI of the median, outliers (counted
    /// and listed, never dropped).
    pub robust: BTreeMap<String, RobustStats>,
    /// Metrics without statistics, with the reason.
    pub unavailable: Vec<Unavailable>,
    /// Data-quality notes (partial nulls, non-finite values excluded).
    pub warnings: Vec<String>,
    /// The logits-agreement gate's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<schema::Agreement>,
    /// How the backend ran the cell (threads, model file, key/value cache…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_info: BTreeMap<String, String>,
    /// The cell's energy over its whole measured window, gross and net of idle, with
    /// provenance, uncertainty, validity and flags (absent when the run did not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<CellEnergy>,
    /// The cell's executions and what they say at the execution level, in a run with
    /// `replicates` ≥ 2 (absent otherwise: the requests of one execution are all there is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
}

impl CellStats {
    /// The cell as tables, plots and prices read it: with replication, each metric's mean and
    /// 95 % interval are the execution-level ones (the mean of the executions' means, Student-t
    /// across executions); the distribution's other figures (percentiles, sd, n) stay those of
    /// the pooled requests. Without replication, the cell as it is.
    pub fn at_execution_level(&self) -> CellStats {
        let mut out = self.clone();
        if let Some(r) = &self.replication {
            for (name, level) in &r.metrics {
                if let Some(d) = out.metrics.get_mut(name) {
                    d.mean = level.mean;
                    d.ci95_mean = level.ci95_mean;
                }
            }
        }
        out
    }
}

/// The unit a statistic treats as independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Executions (fresh processes): their means are the observations; between-run variance
    /// is inside the interval.
    Executions,
    /// Requests of one execution taken as independent: the interval cannot see what varies
    /// from one execution to the next.
    Requests,
}

impl Level {
    /// How the level reads in a report (`across executions`, `across requests`).
    pub fn words(self) -> &'static str {
        match self {
            Level::Executions => "across executions",
            Level::Requests => "across requests",
        }
    }
}

/// A cell's executions in a run with `replicates` ≥ 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// Every execution, in its number order.
    pub executions: Vec<ExecutionSummary>,
    /// Per metric name with values in at least two executions: the execution-level estimate
    /// and the variance components.
    pub metrics: BTreeMap<String, ExecutionLevel>,
}

/// One execution of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The execution's own id (the cell id with `-r<number>`).
    pub cell_id: String,
    /// Its number among the cell's executions (1-based).
    pub number: u32,
    /// Its position in the run's order of executions.
    pub order: usize,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// Its outcome.
    pub status: CellOutcome,
    /// Timed, successful requests.
    pub n_requests: usize,
    /// Mean per metric name over its requests.
    pub means: BTreeMap<String, f64>,
}

/// A metric of a cell at the execution level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionLevel {
    /// Executions with values.
    pub n_executions: usize,
    /// Mean of the executions' means.
    pub mean: f64,
    /// Standard deviation of the executions' means.
    pub sd_of_means: f64,
    /// Student-t 95 % interval of the mean across executions (`n_executions − 1` df).
    pub ci95_mean: Option<[f64; 2]>,
    /// Within- and between-execution variance (absent when no execution has two values).
    pub components: Option<tcobench_stats::inference::VarianceComponents>,
}

/// Energy of a cell's measured window (all its timed requests, back to back): gross for TCO and
/// carbon, net of the idle baseline for comparing models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellEnergy {
    /// The window as the harness recorded it: method, scope, basis, device, periods, length,
    /// gross energy, uncertainty, validity, cross-check and throttling.
    pub window: schema::EnergyWindow,
    /// Gross energy per generated token, J: `energy_j / generated_tokens`.
    pub gross_j_per_token: Option<f64>,
    /// Absolute uncertainty of `gross_j_per_token`, J.
    pub gross_uncertainty_j_per_token: Option<f64>,
    /// Idle power subtracted for the net figures, W (the run's idle baseline).
    pub idle_watts: Option<f64>,
    /// Gross energy minus idle power × window, J.
    pub net_energy_j: Option<f64>,
    /// Net energy per generated token, J.
    pub net_j_per_token: Option<f64>,
    /// Relative uncertainty of the net figure: the gross uncertainty plus the baseline's, both
    /// in joules, over the net energy.
    pub net_uncertainty_rel: Option<f64>,
    /// Why there is no net figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_unavailable: Option<String>,
    /// What a reader must know before using the figures: `invalid_window`, `estimated`,
    /// `cross_check_disagreement`, `hw_slowdown`, `thermal_slowdown`, `power_capped`.
    pub flags: Vec<String>,
}

/// Robust companions of a metric's [`Descriptives`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustStats {
    /// Median absolute deviation × 1.4826.
    pub mad: f64,
    /// Seeded percentile-bootstrap 95 % CI of the median (`None` for n = 1).
    pub ci95_median: Option<[f64; 2]>,
    /// Tukey-fence outliers and the largest robust z-score.
    pub outliers: groups::OutlierCounts,
}

impl CellStats {
    /// Statistics of `metric`, if available.
    pub fn metric(&self, metric: Metric) -> Option<&Descriptives> {
        self.metrics.get(metric.name())
    }

    /// Human-readable configuration label: `backend · model · device · dtype · bB pP nN`
    /// ([`CellConfig::caption`]).
    pub fn label(&self) -> String {
        self.config.caption()
    }
}

#[cfg(test)]
mod tests {
    use tcobench_stats::descriptive::Descriptives;

    #[test]
    fn figures_read_back_from_json_are_bit_identical() {
        // Values serde_json's default parser reads back one unit in the last place off.
        let mut values = vec![1.071_566_039_146_582_6e-75, -1.819_967_304_027_17e-179];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
            values.push((x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0);
        }
        let d = Descriptives::compute(&values[..2]).unwrap();
        let json = serde_json::to_string_pretty(&(values.clone(), d.clone())).unwrap();
        let (back, back_d): (Vec<f64>, Descriptives) = serde_json::from_str(&json).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        assert_eq!(back_d, d);
    }
}
