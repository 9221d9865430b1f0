//! Analysis side of tcobench: everything that happens to a run directory after the harness has
//! written it.
//!
//! This crate owns
//!
//! * the **results schema** ([`schema`]): `manifest.json`, `requests.parquet`, `power.parquet`
//!   and their polars frames — the contract between the harness and every reader;
//! * **loading** ([`load`]): polars reads, column/type validation, exclusion of warm-up and
//!   failed requests, grouping per cell;
//! * **statistics** ([`stats`]): mean, sd, type-7 quantiles, Student-t confidence intervals;
//! * **inference** ([`inference`]): tests and intervals for comparing runs;
//! * **rendering** ([`plots`], [`report`]): SVG plots and the Markdown / self-contained HTML
//!   report.
//!
//! It never depends on the harness or on the backends: anything that can write the files
//! described in [`schema`] can be analysed. The entry points are [`analyze`] (writes
//! `stats.json`) and [`write_report`] (writes `report.md`, `report.html`, `plots/*.svg`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod compare;
pub mod comparisons;
pub mod export;
pub mod groups;
pub mod inference;
pub mod load;
pub mod meter;
pub mod plots;
pub mod pricing;
pub mod report;
pub mod schema;
pub mod stats;
pub mod table;

use schema::{files, CellOutcome, CellRecord, Manifest, SchemaError, SCHEMA_VERSION};
use stats::{Descriptives, StatsError};

/// Errors of the analysis entry points.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Reading or validating a results file failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The manifest was written with a results layout this version does not read.
    #[error("{path}: schema_version {found} is not supported (this build reads {expected})")]
    UnsupportedSchema {
        /// Manifest path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// A report template failed to load or render.
    #[error("template `{name}`: {source}")]
    Template {
        /// Template name (file name).
        name: String,
        /// Underlying error, with location where minijinja knows it.
        source: minijinja::Error,
    },
    /// A plot could not be drawn.
    #[error("plot `{name}`: {message}")]
    Plot {
        /// Plot name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// `stats.json` could not be serialised.
    #[error("{path}: {source}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// The run folder's meter log import or calibration cannot be used.
    #[error(transparent)]
    Meter(#[from] meter::MeterError),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

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
    /// Backend name.
    pub backend: String,
    /// Model name or path.
    pub model: String,
    /// Device.
    pub device: String,
    /// Data type.
    pub dtype: String,
    /// Sequences per request.
    pub batch_size: u32,
    /// Prompt length per sequence.
    pub prompt_tokens: u32,
    /// Generated tokens per sequence.
    pub new_tokens: u32,
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

/// Gross and net energy of a cell window against the run's idle baseline.
pub fn cell_energy(
    window: &schema::EnergyWindow,
    idle: Option<&schema::IdleBaseline>,
) -> CellEnergy {
    let tokens = window.generated_tokens as f64;
    let per_token = |e: f64| (tokens > 0.0).then(|| e / tokens);
    let gross = window.energy_j;
    let gross_u = gross.zip(window.uncertainty_rel).map(|(e, u)| e * u);
    let window_s = window.window_ms / 1e3;
    let net = match (gross, idle) {
        (None, _) => Err("no gross energy".to_string()),
        (Some(_), None) => Err("no idle baseline (set power.idle_baseline_s)".to_string()),
        (Some(g), Some(b)) => {
            if b.window.method != window.method || b.window.device != window.device {
                Err(format!(
                    "the idle baseline was measured with {} on {}, the cell with {} on {}",
                    b.window.method, b.window.device, window.method, window.device
                ))
            } else if b.window.validity != schema::EnergyValidity::Valid {
                Err(format!(
                    "the idle baseline is invalid: {}",
                    b.window
                        .invalid_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ))
            } else if let Some(w) = b.watts {
                let idle_j = w * window_s;
                let idle_u = idle_j * b.window.uncertainty_rel.unwrap_or(0.0);
                Ok((w, g - idle_j, gross_u.unwrap_or(0.0) + idle_u))
            } else {
                Err("the idle baseline has no power figure".to_string())
            }
        }
    };
    let mut flags = Vec::new();
    if window.validity == schema::EnergyValidity::Invalid {
        flags.push("invalid_window".to_string());
    }
    if window.basis == "estimated" {
        flags.push("estimated".to_string());
    }
    if window.cross_check.as_ref().is_some_and(|c| c.flagged) {
        flags.push("cross_check_disagreement".to_string());
    }
    if let Some(t) = &window.throttling {
        if t.hw_slowdown {
            flags.push("hw_slowdown".to_string());
        }
        if t.thermal_slowdown {
            flags.push("thermal_slowdown".to_string());
        }
        if t.sw_power_cap_ms.is_some_and(|ms| ms > 0.0) {
            flags.push("power_capped".to_string());
        }
    }
    let (idle_watts, net_energy_j, net_u_j, net_unavailable) = match net {
        Ok((w, n, u)) => (Some(w), Some(n), Some(u), None),
        Err(why) => (None, None, None, Some(why)),
    };
    CellEnergy {
        window: window.clone(),
        gross_j_per_token: gross.and_then(per_token),
        gross_uncertainty_j_per_token: gross_u.and_then(per_token),
        idle_watts,
        net_energy_j,
        net_j_per_token: net_energy_j.and_then(per_token),
        net_uncertainty_rel: net_energy_j
            .zip(net_u_j)
            .filter(|(n, _)| *n > 0.0)
            .map(|(n, u)| u / n),
        net_unavailable,
        flags,
    }
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

    /// Human-readable configuration label: `backend · model · device · dtype · bB pP nN`.
    pub fn label(&self) -> String {
        format!(
            "{} · {} · {} · {} · b{} p{} n{}",
            self.backend,
            self.model,
            self.device,
            self.dtype,
            self.batch_size,
            self.prompt_tokens,
            self.new_tokens
        )
    }
}

/// Everything `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Results layout version ([`schema::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Run id.
    pub run_id: String,
    /// Scenario name.
    pub scenario_name: String,
    /// The metrics summarised, with units.
    pub metrics: Vec<MetricInfo>,
    /// One entry per manifest cell, in manifest order.
    pub cells: Vec<CellStats>,
    /// Run-level data-quality notes (rows of unknown cells…).
    pub warnings: Vec<String>,
    /// Bootstrap settings of every bootstrap CI in this file (seed = the scenario seed).
    pub bootstrap: inference::Bootstrap,
    /// Sets of cells that differ only in backend, dtype or device, with their tests.
    pub comparisons: Vec<comparisons::ComparisonSet>,
    /// Cost, energy and carbon per cell under the scenario's selection, with recommendations
    /// (`None` when the scenario selects nothing to price).
    pub costing: Option<pricing::costing::RunCosts>,
    /// An external power meter's energy beside ours, and the calibration applied to this run
    /// (`meter.json` / `calibration.json` in the run folder; `None` when it has neither).
    #[serde(default)]
    pub meter: Option<meter::MeterStats>,
}

/// Counts of cells by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCounts {
    /// Cells that completed.
    pub ok: usize,
    /// Cells that failed.
    pub failed: usize,
    /// Cells not run.
    pub pending: usize,
}

impl RunStats {
    /// Cells by outcome.
    pub fn counts(&self) -> CellCounts {
        let mut c = CellCounts::default();
        for cell in &self.cells {
            match cell.status {
                CellOutcome::Ok => c.ok += 1,
                CellOutcome::Failed => c.failed += 1,
                // A skipped cell was not run either; its error says why.
                CellOutcome::Pending | CellOutcome::Skipped => c.pending += 1,
            }
        }
        c
    }

    /// The completed cell with the highest mean tokens/s.
    pub fn best_throughput(&self) -> Option<&CellStats> {
        self.cells
            .iter()
            .filter(|c| c.status == CellOutcome::Ok)
            .filter_map(|c| c.metric(Metric::TokensPerS).map(|d| (c, d.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c)
    }

    /// One line for an experiment log: the best tokens/s cell with its mean and 95 % CI, and the
    /// number of cells ok/failed.
    pub fn headline(&self) -> String {
        let counts = self.counts();
        let mut cells = format!("cells: {} ok, {} failed", counts.ok, counts.failed);
        if counts.pending > 0 {
            cells.push_str(&format!(", {} not run", counts.pending));
        }
        let best = match self.best_throughput() {
            Some(c) => {
                let d = c.metric(Metric::TokensPerS).expect("best has tokens/s");
                let ci = match d.ci95_mean {
                    Some([lo, hi]) => format!("95% CI {}–{}", fmt_sig(lo, 4), fmt_sig(hi, 4)),
                    None => "no CI".to_string(),
                };
                format!(
                    "best {} tokens/s ({ci}, n={}) on #{} {} [{}]",
                    fmt_sig(d.mean, 4),
                    d.n,
                    c.index,
                    c.label(),
                    c.cell_id
                )
            }
            None => "no completed cell with a throughput".to_string(),
        };
        format!("{} ({}): {best}; {cells}", self.run_id, self.scenario_name)
    }
}

/// Formats `x` with `sig` significant digits, in fixed notation for 1e-4 ≤ |x| < 1e6 (integers
/// beyond the significant digits are not rounded away), scientific otherwise.
pub fn fmt_sig(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let ax = x.abs();
    if !(1e-4..1e6).contains(&ax) {
        return format!("{:.*e}", sig.saturating_sub(1), x);
    }
    let magnitude = ax.log10().floor() as i64;
    let decimals = (sig as i64 - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    // A value such as 9.996 rounding up to 10.00 keeps one decimal too many; harmless.
    if s == "-0" || s.starts_with("-0.") && s.trim_start_matches("-0.").chars().all(|c| c == '0') {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

fn unavailable_reason(
    metric: Metric,
    record: &CellRecord,
    samples: &load::CellSamples,
    energy_method: Option<&str>,
) -> String {
    if samples.n_used == 0 {
        return match record.status {
            CellOutcome::Failed => "cell failed: no successful timed requests".into(),
            CellOutcome::Pending => "cell not run".into(),
            // The cause's first clause (`skipped for budget`); the cell's error has the numbers.
            CellOutcome::Skipped => match &record.error {
                Some(e) => format!("cell not run: {}", e.split(':').next().unwrap_or(e)),
                None => "cell skipped, not run".into(),
            },
            CellOutcome::Ok => "no successful timed requests".into(),
        };
    }
    let nulls = samples.nulls.get(&metric).copied().unwrap_or(0);
    let bad = samples.non_finite.get(&metric).copied().unwrap_or(0);
    match metric {
        Metric::EnergyJPerToken if matches!(energy_method, None | Some("none")) => {
            "energy not measured (energy_method: none)".into()
        }
        Metric::EnergyJPerToken if record.batch_size == 0 || record.new_tokens == 0 => {
            "no generated tokens to divide by".into()
        }
        Metric::TpotMs if record.new_tokens <= 1 && nulls > 0 => {
            "undefined for new_tokens ≤ 1".into()
        }
        _ if bad > 0 && nulls == 0 => {
            format!("all {bad} values non-finite (NaN/∞)")
        }
        _ if bad > 0 => format!("{nulls} null and {bad} non-finite values, none usable"),
        Metric::EnergyJPerToken => format!("energy_j is null in all {nulls} requests"),
        _ => format!("null in all {nulls} requests"),
    }
}

fn cell_stats(
    record: &CellRecord,
    samples: &load::CellSamples,
    bootstrap: &inference::Bootstrap,
    idle: Option<&schema::IdleBaseline>,
) -> CellStats {
    let energy_method = record.energy_method.clone().or_else(|| {
        let methods: Vec<&str> = samples.energy_methods.iter().map(String::as_str).collect();
        match methods.as_slice() {
            [] => None,
            [one] => Some((*one).to_string()),
            many => Some(format!("mixed({})", many.join(","))),
        }
    });
    let mut metrics = BTreeMap::new();
    let mut robust = BTreeMap::new();
    let mut unavailable = Vec::new();
    let mut warnings = Vec::new();
    for metric in Metric::ALL {
        let values = samples.metric(metric);
        match Descriptives::try_compute(values) {
            Ok(d) => {
                let nulls = samples.nulls.get(&metric).copied().unwrap_or(0);
                let bad = samples.non_finite.get(&metric).copied().unwrap_or(0);
                if nulls > 0 {
                    warnings.push(format!(
                        "{}: {nulls} of {} values null; statistics use {}",
                        metric.name(),
                        samples.n_used,
                        d.n
                    ));
                }
                if bad > 0 {
                    warnings.push(format!(
                        "{}: {bad} non-finite value(s) (NaN/∞) excluded",
                        metric.name()
                    ));
                }
                metrics.insert(metric.name().to_string(), d);
                if let Ok(g) = groups::summarize(metric.name(), samples.metric(metric), bootstrap) {
                    robust.insert(
                        metric.name().to_string(),
                        RobustStats {
                            mad: g.mad,
                            ci95_median: g.ci95_median,
                            outliers: g.outliers,
                        },
                    );
                }
            }
            Err(StatsError::Empty) => unavailable.push(Unavailable {
                metric: metric.name().into(),
                reason: unavailable_reason(metric, record, samples, energy_method.as_deref()),
            }),
            Err(e) => unavailable.push(Unavailable {
                metric: metric.name().into(),
                reason: e.to_string(),
            }),
        }
    }
    let energy = record.energy.as_ref().map(|w| cell_energy(w, idle));
    if let Some(w) = &record.energy {
        if w.requests_below_min_window > 0 {
            warnings.push(format!(
                "energy_j_per_token: {} timed request(s) shorter than the {} ms minimum window \
                 of the energy source (their per-request figures are imprecise); the cell's \
                 whole-window figure is energy.gross_j_per_token",
                w.requests_below_min_window,
                fmt_sig(w.min_window_ms, 3),
            ));
        }
        if w.validity == schema::EnergyValidity::Invalid {
            warnings.push(format!(
                "energy: the cell's window is invalid: {}",
                w.invalid_reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    if record.status == CellOutcome::Ok && samples.n_used < record.repetitions as usize {
        warnings.push(format!(
            "{} of {} configured repetitions usable",
            samples.n_used, record.repetitions
        ));
    }
    CellStats {
        cell_id: record.cell_id.clone(),
        index: record.index,
        backend: record.backend.clone(),
        model: record.model.clone(),
        device: record.device.clone(),
        dtype: record.dtype.clone(),
        batch_size: record.batch_size,
        prompt_tokens: record.prompt_tokens,
        new_tokens: record.new_tokens,
        warmup: record.warmup,
        repetitions: record.repetitions,
        status: record.status,
        error: record.error.clone(),
        n_requests: samples.n_used,
        n_warmup_excluded: samples.n_warmup,
        n_failed_excluded: samples.n_error,
        energy_method,
        peak_rss_bytes: record.peak_rss_bytes,
        gpu_mem_bytes: record.gpu_mem_bytes,
        metrics,
        robust,
        unavailable,
        warnings,
        agreement: record.agreement.clone(),
        backend_info: record.backend_info.clone(),
        energy,
    }
}

/// Computes statistics from a manifest and loaded requests (no I/O).
pub fn compute_stats(manifest: &Manifest, requests: &load::LoadedRequests) -> RunStats {
    let bootstrap = inference::Bootstrap {
        resamples: 10_000,
        seed: manifest.seed,
    };
    let cells: Vec<CellStats> = manifest
        .cells
        .iter()
        .zip(&requests.cells)
        .map(|(record, samples)| {
            cell_stats(
                record,
                samples,
                &bootstrap,
                manifest.power.idle_baseline.as_ref(),
            )
        })
        .collect();
    // Cells whose logits disagree with the reference run different maths: comparing their
    // timings would mislead, so they stay out unless the run was told otherwise.
    let comparable: Vec<CellStats> = cells
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if !manifest.allow_disagreement && c.agreement.as_ref().is_some_and(|a| !a.comparable())
            {
                c.status = CellOutcome::Failed;
            }
            c
        })
        .collect();
    let comparisons = comparisons::comparison_sets(
        &comparable,
        &requests.cells,
        &groups::GroupOptions {
            bootstrap,
            adjust: inference::Adjust::Holm,
            pooled_pairwise: false,
        },
    );
    let warnings = requests
        .unknown_cell_ids
        .iter()
        .map(|id| format!("requests.parquet has rows for cell `{id}`, which the manifest does not list; ignored"))
        .collect();
    RunStats {
        schema_version: SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        scenario_name: manifest.scenario_name.clone(),
        metrics: Metric::ALL.into_iter().map(MetricInfo::from).collect(),
        cells,
        warnings,
        bootstrap,
        comparisons,
        costing: None,
        meter: None,
    }
}

/// Loads the catalog a costing spec names (the built-in one, plus `pricing.catalog` as an
/// overlay), resolves the spec and prices every cell of `stats`. `label` names a sweep variant.
///
/// When the spec sets no `energy.idle_watts`, the run's measured idle baseline stands in for the
/// idle power of the `(1 − U)` share ([`idle_power_from_run`]); the costs' assumptions say which
/// idle power was used and where it came from.
pub fn price_run(
    stats: &RunStats,
    manifest: &Manifest,
    spec: &pricing::costing::CostingSpec,
    label: Option<String>,
) -> Result<pricing::costing::RunCosts, String> {
    let overlay = spec.pricing.as_ref().and_then(|p| p.catalog.clone());
    let catalog = pricing::Catalog::load(
        None,
        overlay.as_deref().map(Path::new),
        &pricing::LoadOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut selection = spec
        .resolve(&catalog, label, overlay)
        .map_err(|e| e.to_string())?;
    let idle = idle_power_from_run(&mut selection, stats, manifest);
    let mut costs = pricing::costing::cost_run(stats, &selection, &catalog, &manifest.host);
    costs.assumptions.push(idle);
    Ok(costs)
}

/// Fills a selection's idle power from the run when the spec gives none, and says in one
/// sentence which idle power the figures use.
///
/// The run's idle baseline (`power.idle_baseline`, measured before the matrix with the run's own
/// power method) is used when it has a power figure and every cell with measured energy used
/// that same method — it then describes the same device as the busy power of each replica.
/// Otherwise idle time stays charged at busy power, which the sentence (and the report, next to
/// the figures) states.
pub fn idle_power_from_run(
    selection: &mut pricing::costing::CostSelection,
    stats: &RunStats,
    manifest: &Manifest,
) -> String {
    use pricing::formulas::IdlePowerSource;
    let uses = "kWh per 1M tokens when U is below 1, the workload's kWh/month and \
                kgCO2e/month, and on-prem electricity";
    if let Some(w) = selection.idle_watts {
        selection.idle_watts_source = Some(IdlePowerSource::Scenario);
        return format!(
            "Idle power for the (1 − U) share of time: {} W per replica, {} — used in {uses}.",
            fmt_sig(w, 4),
            IdlePowerSource::Scenario.describe()
        );
    }
    selection.idle_watts_source = Some(IdlePowerSource::BusyAssumed);
    let busy = IdlePowerSource::BusyAssumed.describe();
    let Some(baseline) = &manifest.power.idle_baseline else {
        return format!(
            "{busy} (the run took no idle baseline — `power.idle_baseline_s` was 0, or the clock \
             was virtual — and the scenario sets no `energy.idle_watts`): {uses} charge idle time \
             at busy power, an upper bound at low utilisation."
        );
    };
    let window = &baseline.window;
    let Some(watts) = baseline.watts.filter(|w| w.is_finite() && *w >= 0.0) else {
        return format!(
            "{busy} (the idle baseline has no power figure, and the scenario sets no \
             `energy.idle_watts`): {uses} charge idle time at busy power, an upper bound at low \
             utilisation."
        );
    };
    let mut other: Vec<&str> = stats
        .cells
        .iter()
        .filter(|c| c.metric(Metric::EnergyJPerToken).is_some())
        .filter_map(|c| c.energy_method.as_deref())
        .filter(|m| *m != window.method)
        .collect();
    other.sort_unstable();
    other.dedup();
    if !other.is_empty() {
        return format!(
            "{busy} (the idle baseline was measured with `{}`, but cells were measured with `{}`, \
             so it is not their idle power; set `energy.idle_watts`): {uses} charge idle time at \
             busy power, an upper bound at low utilisation.",
            window.method,
            other.join("`, `")
        );
    }
    selection.idle_watts = Some(watts);
    selection.idle_watts_source = Some(IdlePowerSource::MeasuredBaseline);
    let mut caveats = Vec::new();
    if window.basis != "measured" {
        caveats.push(format!("{}, not a measurement", window.basis));
    }
    if window.validity == schema::EnergyValidity::Invalid {
        caveats.push(format!(
            "its window is marked invalid: {}",
            window
                .invalid_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        ));
    }
    format!(
        "Idle power for the (1 − U) share of time: {} W per replica, {} (`{}`, {}, {} s before \
         the matrix{}; the scenario sets no `energy.idle_watts`) — used in {uses}.",
        fmt_sig(watts, 4),
        IdlePowerSource::MeasuredBaseline.describe(),
        window.method,
        window.device,
        fmt_sig(window.window_ms / 1000.0, 3),
        if caveats.is_empty() {
            String::new()
        } else {
            format!("; {}", caveats.join("; "))
        }
    )
}

/// Reads and version-checks `manifest.json` of `run_dir`.
pub fn read_run_manifest(run_dir: &Path) -> Result<Manifest, AnalysisError> {
    let path = run_dir.join(files::MANIFEST);
    let manifest = schema::read_manifest(&path)?;
    if manifest.schema_version != SCHEMA_VERSION {
        return Err(AnalysisError::UnsupportedSchema {
            path,
            found: manifest.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(manifest)
}

/// Loads `run_dir` (manifest + `requests.parquet`), computes per-cell statistics, writes
/// `stats.json` (pretty JSON, atomically) and returns them.
pub fn analyze(run_dir: &Path) -> Result<RunStats, AnalysisError> {
    let manifest = read_run_manifest(run_dir)?;
    let requests = load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    let mut stats = compute_stats(&manifest, &requests);
    if let Some(spec) = &manifest.costing {
        match price_run(&stats, &manifest, spec, None) {
            Ok(costs) => stats.costing = Some(costs),
            Err(e) => stats.warnings.push(format!("costing skipped: {e}")),
        }
    }
    stats.meter = meter::meter_stats(run_dir, &stats.cells)?;
    let path = run_dir.join(files::STATS);
    let mut json = serde_json::to_vec_pretty(&stats).map_err(|source| AnalysisError::Json {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(stats)
}

/// Renders `report.md`, `report.html` and `plots/*.svg` into `run_dir`, each written atomically.
///
/// `templates` optionally names a directory whose `report.md.j2` / `report.html.j2` (and any other
/// `*.j2` they include) replace the built-in templates; a name missing there falls back to the
/// built-in one. The raw request values (box plot) and power samples are re-read from `run_dir`.
pub fn write_report(
    run_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
) -> Result<(), AnalysisError> {
    let manifest = read_run_manifest(run_dir)?;
    let requests = load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    let power = load::load_power(&run_dir.join(files::POWER))?;
    let plots = plots::render_run(run_dir, stats, &manifest, &requests, &power)?;

    let plot_dir = run_dir.join(files::PLOTS);
    std::fs::create_dir_all(&plot_dir).map_err(|source| AnalysisError::Io {
        path: plot_dir.clone(),
        source,
    })?;
    for name in plots::PLOT_NAMES {
        let path = plot_dir.join(format!("{name}.svg"));
        match plots.iter().find(|p| p.name == name) {
            Some(p) => write_atomic(&path, p.svg.as_bytes())?,
            // Do not leave a stale plot from an earlier render next to the new report.
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(AnalysisError::Io { path, source }),
            },
        }
    }

    let rendered = report::render(stats, &manifest, &plots, templates)?;
    write_atomic(
        &run_dir.join(files::REPORT_MD),
        rendered.markdown.as_bytes(),
    )?;
    write_atomic(&run_dir.join(files::REPORT_HTML), rendered.html.as_bytes())?;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// then a best-effort fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AnalysisError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AnalysisError::Io { path, source }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Synthetic run directories for the tests.
    use super::*;
    use schema::{HostInfo, PowerInfo, PowerSample, RequestRecord};

    pub(crate) const NASTY: &str = "<script>alert(1)</script> \"q\" 'a' & co";

    fn cell(i: usize, id: &str, model: &str, batch: u32, status: CellOutcome) -> CellRecord {
        CellRecord {
            cell_id: id.into(),
            index: i,
            backend: "mock".into(),
            model: model.into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            batch_size: batch,
            prompt_tokens: 16,
            new_tokens: 8,
            warmup: 1,
            repetitions: 4,
            status,
            error: (status == CellOutcome::Failed).then(|| format!("out of memory {NASTY}")),
            peak_rss_bytes: Some(123 << 20),
            gpu_mem_bytes: None,
            energy_method: Some("mock".into()),
            started_at: None,
            ended_at: None,
            window_start_ms: Some(1000.0 * i as f64),
            window_end_ms: Some(1000.0 * i as f64 + 800.0),
            agreement: None,
            backend_info: Default::default(),
            energy: None,
            host_load: None,
        }
    }

    /// A manifest with three cells: `aaaa` (ok, batch 2), `bbbb` (ok, batch 4), `cccc` (failed).
    pub(crate) fn manifest(run_id: &str, scenario: &str, model: &str) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.into(),
            scenario_name: scenario.into(),
            scenario_path: "scenarios/smoke.yaml".into(),
            scenario: serde_json::json!({"name": scenario}),
            seed: 42,
            model_seed: 0,
            command: vec![
                "tcobench".into(),
                "run".into(),
                "scenarios/smoke.yaml".into(),
            ],
            git_revision: Some("v0.1.0-3-gdeadbee".into()),
            versions: BTreeMap::from([("tcobench".into(), "0.1.0".into())]),
            host: HostInfo {
                os: "Linux 6.1".into(),
                cpu_model: "Test CPU".into(),
                cpu_logical_cores: 2,
                memory_bytes: Some(8 << 30),
                gpus: vec![],
                hostname: "box".into(),
            },
            power: PowerInfo {
                method: "cpu_estimate".into(),
                scope: "cpu-package".into(),
                basis: "estimated".into(),
                sample_period_ms: 100.0,
                notes: BTreeMap::from([("tdp_w".into(), "65".into())]),
                idle_baseline: None,
            },
            started_at: "2025-01-01T00:00:00Z".into(),
            ended_at: Some("2025-01-01T00:01:00Z".into()),
            status: "complete".into(),
            costing: None,
            budget: None,
            allow_disagreement: false,
            cells: vec![
                cell(0, "aaaa", model, 2, CellOutcome::Ok),
                cell(1, "bbbb", model, 4, CellOutcome::Ok),
                cell(2, "cccc", model, 1, CellOutcome::Failed),
            ],
        }
    }

    /// A successful request of `c` with the given e2e (energy = 2·e2e, tokens/s derived).
    pub(crate) fn request(
        c: &CellRecord,
        rep: u32,
        warmup: bool,
        e2e: Option<f64>,
    ) -> RequestRecord {
        RequestRecord {
            run_id: "run".into(),
            cell_id: c.cell_id.clone(),
            backend: c.backend.clone(),
            model: c.model.clone(),
            device: c.device.clone(),
            dtype: c.dtype.clone(),
            batch_size: c.batch_size,
            prompt_tokens: c.prompt_tokens,
            new_tokens: c.new_tokens,
            rep,
            warmup,
            ttft_ms: e2e.map(|e| e / 4.0),
            e2e_ms: e2e,
            tpot_ms: e2e.map(|e| e * 0.75 / 7.0),
            tokens_per_s: e2e.map(|e| f64::from(c.batch_size * c.new_tokens) / (e / 1000.0)),
            energy_j: e2e.map(|e| 2.0 * e),
            energy_method: "mock".into(),
            energy_valid: None,
            input_hash: "0123456789abcdef".into(),
            output_hash: Some("fedcba9876543210".into()),
            status: "ok".into(),
            error: None,
        }
    }

    /// Writes a complete synthetic run directory and returns its manifest.
    pub(crate) fn write_run(dir: &Path, scenario: &str, model: &str) -> Manifest {
        let m = manifest("run-1", scenario, model);
        let mut rows = Vec::new();
        for c in &m.cells[..2] {
            // A warm-up with an absurd latency that would dominate the mean if it were included.
            rows.push(request(c, 0, true, Some(1.0e6)));
            for rep in 0..4 {
                let base = if c.cell_id == "aaaa" { 100.0 } else { 150.0 };
                rows.push(request(c, rep, false, Some(base + 10.0 * f64::from(rep))));
            }
        }
        let mut failed = request(&m.cells[2], 0, false, None);
        failed.status = "error".into();
        failed.error = m.cells[2].error.clone();
        failed.output_hash = None;
        rows.push(failed);
        let mut df = schema::requests_frame(&rows).unwrap();
        schema::write_parquet(&mut df, &dir.join(files::REQUESTS)).unwrap();

        let samples: Vec<PowerSample> = (0..30)
            .map(|i| PowerSample {
                t_ms: 100.0 * f64::from(i),
                source: "cpu_estimate".into(),
                device: "cpu-package".into(),
                cell_id: None,
                watts: Some(20.0 + f64::from(i % 5)),
                energy_j_cum: None,
                temp_c: None,
                sm_clock_mhz: None,
                throttle_reasons: None,
            })
            .collect();
        let mut df = schema::power_frame(&samples).unwrap();
        schema::write_parquet(&mut df, &dir.join(files::POWER)).unwrap();

        std::fs::write(
            dir.join(files::MANIFEST),
            serde_json::to_string_pretty(&m).unwrap(),
        )
        .unwrap();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyze_excludes_warmups_and_writes_stats_json() {
        let dir = tempfile::tempdir().unwrap();
        testutil::write_run(dir.path(), "smoke", "tiny-model");
        let stats = analyze(dir.path()).unwrap();
        assert_eq!(stats.cells.len(), 3);
        let a = &stats.cells[0];
        assert_eq!(a.cell_id, "aaaa");
        assert_eq!(a.n_requests, 4, "warm-up must not be counted");
        assert_eq!(a.n_warmup_excluded, 1);
        let e2e = a.metric(Metric::E2eMs).unwrap();
        assert_eq!(e2e.n, 4);
        assert_eq!(e2e.mean, 115.0);
        assert_eq!(e2e.max, 130.0);
        // energy per token = 2·e2e / (2·8)
        assert_eq!(
            a.metric(Metric::EnergyJPerToken).unwrap().mean,
            2.0 * 115.0 / 16.0
        );
        assert!(a.unavailable.is_empty());

        let c = &stats.cells[2];
        assert_eq!(c.status, CellOutcome::Failed);
        assert_eq!((c.n_requests, c.n_failed_excluded), (0, 1));
        assert!(c.metrics.is_empty());
        assert_eq!(c.unavailable.len(), Metric::ALL.len());
        assert!(c.unavailable[0].reason.contains("cell failed"));

        // stats.json round-trips and no temp file is left behind.
        let text = std::fs::read_to_string(dir.path().join(files::STATS)).unwrap();
        // (serde_json's default float parser may differ in the last ulp, so compare numerically.)
        let back: RunStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back.cells.len(), stats.cells.len());
        for (b, s) in back.cells.iter().zip(&stats.cells) {
            assert_eq!(
                (&b.cell_id, b.n_requests, &b.unavailable),
                (&s.cell_id, s.n_requests, &s.unavailable)
            );
            assert_eq!(
                b.metrics.keys().collect::<Vec<_>>(),
                s.metrics.keys().collect::<Vec<_>>()
            );
            for (name, d) in &s.metrics {
                let e = &b.metrics[name];
                assert_eq!(e.n, d.n);
                for (x, y) in [
                    (e.mean, d.mean),
                    (e.p99, d.p99),
                    (e.ci95_mean.unwrap()[0], d.ci95_mean.unwrap()[0]),
                ] {
                    assert!((x - y).abs() <= 1e-12 * y.abs(), "{name}: {x} vs {y}");
                }
            }
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());

        let h = stats.headline();
        assert!(h.contains("#1"), "{h}");
        assert!(h.contains("2 ok, 1 failed"), "{h}");
        assert!(h.contains("95% CI"), "{h}");
    }

    fn window(method: &str, energy_j: f64, window_ms: f64, tokens: u64) -> schema::EnergyWindow {
        schema::EnergyWindow {
            method: method.into(),
            scope: "gpu-board".into(),
            basis: "measured".into(),
            device: "cuda:0".into(),
            sample_period_ms: 100.0,
            update_period_ms: 100.0,
            window_ms,
            min_window_ms: 10_000.0,
            energy_j: Some(energy_j),
            generated_tokens: tokens,
            quantisation_rel: Some(100.0 / window_ms),
            gain_error_rel: 0.05,
            uncertainty_rel: Some(100.0 / window_ms + 0.05),
            validity: schema::EnergyValidity::Valid,
            invalid_reason: None,
            requests_below_min_window: 0,
            padding_requests: 0,
            dram_energy_j: None,
            cross_check: None,
            throttling: None,
        }
    }

    #[test]
    fn cell_energy_gross_and_net_of_idle_by_hand() {
        // 20 s at 300 W = 6000 J for 4000 tokens; idle 50 W over 10 s, same method and device.
        let w = window("nvml_energy_counter", 6000.0, 20_000.0, 4000);
        let idle = schema::IdleBaseline {
            window: window("nvml_energy_counter", 500.0, 10_000.0, 0),
            watts: Some(50.0),
        };
        let e = cell_energy(&w, Some(&idle));
        assert_eq!(e.gross_j_per_token, Some(1.5));
        // Net: 6000 − 50 × 20 = 5000 J, 1.25 J/token.
        assert_eq!(e.net_energy_j, Some(5000.0));
        assert_eq!(e.net_j_per_token, Some(1.25));
        // Gross ±(0.005 + 0.05) × 6000 = 330 J; idle ±(0.01 + 0.05) × 1000 = 60 J; over 5000 J.
        assert!((e.net_uncertainty_rel.unwrap() - 390.0 / 5000.0).abs() < 1e-12);
        assert!((e.gross_uncertainty_j_per_token.unwrap() - 330.0 / 4000.0).abs() < 1e-12);
        assert!(e.flags.is_empty());
        // Another method's baseline is not subtracted; an invalid window is flagged.
        let mut other = idle.clone();
        other.window.method = "rapl".into();
        let mut short = w.clone();
        short.validity = schema::EnergyValidity::Invalid;
        let e = cell_energy(&short, Some(&other));
        assert!(e.net_energy_j.is_none());
        assert!(e.net_unavailable.unwrap().contains("rapl"));
        assert_eq!(e.flags, vec!["invalid_window"]);
        assert!(cell_energy(&w, None)
            .net_unavailable
            .unwrap()
            .contains("idle_baseline_s"));
    }

    #[test]
    fn older_manifests_without_energy_fields_still_load() {
        let m = testutil::manifest("r", "s", "m");
        let mut json = serde_json::to_value(&m).unwrap();
        for c in json["cells"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("energy");
        }
        json["power"]
            .as_object_mut()
            .unwrap()
            .remove("idle_baseline");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert!(back.cells.iter().all(|c| c.energy.is_none()));
        assert!(back.power.idle_baseline.is_none());
    }

    #[test]
    fn missing_energy_is_unavailable_not_zero() {
        let m = testutil::manifest("r", "s", "m");
        let mut rows: Vec<_> = (0..3)
            .map(|rep| testutil::request(&m.cells[0], rep, false, Some(10.0)))
            .collect();
        for r in &mut rows {
            r.energy_j = None;
            r.energy_method = "none".into();
        }
        let df = schema::requests_frame(&rows).unwrap();
        let mut m2 = m.clone();
        m2.cells[0].energy_method = None;
        let loaded = load::requests_from_frame(&df, Path::new("requests.parquet"), &m2).unwrap();
        let stats = compute_stats(&m2, &loaded);
        let a = &stats.cells[0];
        assert!(a.metric(Metric::EnergyJPerToken).is_none());
        let u = a
            .unavailable
            .iter()
            .find(|u| u.metric == "energy_j_per_token")
            .unwrap();
        assert!(u.reason.contains("not measured"), "{}", u.reason);
        assert_eq!(a.energy_method.as_deref(), Some("none"));
    }

    #[test]
    fn unsupported_schema_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = testutil::write_run(dir.path(), "s", "m");
        m.schema_version = SCHEMA_VERSION + 1;
        std::fs::write(
            dir.path().join(files::MANIFEST),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            analyze(dir.path()),
            Err(AnalysisError::UnsupportedSchema { .. })
        ));
    }

    #[test]
    fn fmt_sig_examples() {
        assert_eq!(fmt_sig(123.456, 3), "123");
        assert_eq!(fmt_sig(12.3456, 3), "12.3");
        assert_eq!(fmt_sig(0.0123456, 3), "0.0123");
        assert_eq!(fmt_sig(12345.6, 3), "12346");
        assert_eq!(fmt_sig(0.0, 3), "0");
        assert_eq!(fmt_sig(-1.5, 3), "-1.50");
        assert_eq!(fmt_sig(1.0e-7, 3), "1.00e-7");
        assert_eq!(fmt_sig(f64::NAN, 3), "NaN");
    }
}
