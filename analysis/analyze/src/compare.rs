//! Cell-by-cell comparison of two sides — a run folder each, or several — is the new side faster,
//! slower, or the same?
//!
//! Cells are matched by their **resolved configuration** ([`CellConfig`]: backend, model,
//! device, dtype, batch size, prompt and new tokens), never by `cell_id` — ids include the
//! scenario seed, so the same configuration has different ids in runs with different seeds.
//!
//! **The unit of replication.** The requests of one execution are not independent draws of what
//! a configuration costs: the execution itself (its process, memory layout, neighbours on the
//! host) is a random effect. So each side of a cell is a set of *executions* — the replicates of
//! a run with `replicates` ≥ 2, one per run folder when a side names several runs, or both —
//! and the comparison is made at the level the data allow ([`CompareLevel`]):
//!
//! * **executions** — both sides have at least two: the relative change of the means of the
//!   executions' means with its delta-method *t* interval ([`inference::ratio_test`]);
//! * **requests, widened** — a side has a single execution, and its between-execution variance
//!   is known from a noise profile of this host ([`crate::noise`]) or, failing that, from the
//!   other side's executions: that side's variance is `s²/n + σ²_between`, and the same test
//!   runs on it;
//! * **requests** — a single execution on each side and nothing known of the variance between
//!   executions: Welch's test on the requests and a seeded percentile-bootstrap interval of the
//!   relative change ([`inference::bootstrap_ci_relative_change`]). The comparison says plainly
//!   that it cannot see between-run variance; its verdicts are those of the requests alone.
//!
//! A cell is improved or regressed only when the difference is significant **and** the whole
//! interval lies beyond ±threshold ([`inference::regression_verdict`]); the direction comes from
//! the metric ([`higher_is_better`]). With a profile, `--threshold auto` takes each cell's
//! threshold from it: the relative change that A/A runs of this host stay within with
//! probability 1 − alpha.
//!
//! Nothing is guessed: cells only on one side, cells that failed or were not run, cells with
//! fewer than two usable values, and cells whose statistics are undefined (zero variance on both
//! sides, zero baseline mean) are listed separately with the reason. No formatting happens here;
//! the command line renders [`Comparison`] as a table or JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::noise::NoiseProfile;
use crate::{AnalysisError, RunStats};
use tcobench_results::replicates::{configuration_view, ConfigurationView};
use tcobench_results::schema::{files, CellOutcome, HostInfo};
use tcobench_results::{load, CellConfig, CellStats, Metric};
use tcobench_stats::descriptive::{mean, sd};
use tcobench_stats::inference::{
    self, ratio_test, variance_components, Bootstrap, InferenceError, MeanEstimate, Verdict,
};

/// Errors of [`compare_runs`] and [`parse_metric`]. Every variant is a problem with the input
/// (a path, a name or an option), never an internal failure.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The metric name is not one of [`Metric::ALL`].
    #[error("unknown metric `{name}`; valid metrics: {valid}")]
    UnknownMetric {
        /// Name given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// An option is out of range (the message names it).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The path is not a run folder (missing, not a directory, or without `manifest.json`), nor
    /// a folder of run folders.
    #[error("{}: not a tcobench run folder ({reason})", path.display())]
    NotARunFolder {
        /// Path given.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The run folder exists but could not be read or validated.
    #[error("{}: {source}", path.display())]
    Load {
        /// Run folder.
        path: PathBuf,
        /// Underlying error (names the file concerned).
        source: AnalysisError,
    },
}

/// Whether a larger value of `metric` is better: `true` for throughput (`tokens_per_s`), `false`
/// for latencies (`e2e_ms`, `ttft_ms`, `tpot_ms`) and energy (`energy_j_per_token`).
pub fn higher_is_better(metric: Metric) -> bool {
    match metric {
        Metric::TokensPerS => true,
        Metric::E2eMs | Metric::TtftMs | Metric::TpotMs | Metric::EnergyJPerToken => false,
    }
}

/// Parses a metric name (`tokens_per_s`, …; `-` is accepted for `_` and case is ignored).
///
/// # Errors
/// [`CompareError::UnknownMetric`], listing the valid names.
pub fn parse_metric(name: &str) -> Result<Metric, CompareError> {
    let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
    Metric::ALL
        .into_iter()
        .find(|m| m.name() == wanted)
        .ok_or_else(|| CompareError::UnknownMetric {
            name: name.to_string(),
            valid: Metric::ALL.map(Metric::name).join(", "),
        })
}

/// Settings of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Metric compared.
    pub metric: Metric,
    /// Smallest relative change that matters, as a fraction (`0.02` = ±2 %).
    pub threshold: f64,
    /// Take each cell's threshold from the noise profile (`--threshold auto`); cells the profile
    /// lacks keep `threshold`.
    #[serde(default)]
    pub threshold_auto: bool,
    /// Significance level of the test.
    pub alpha: f64,
    /// Seeded bootstrap of the relative-change interval at the requests level (the same
    /// settings for every cell).
    pub bootstrap: Bootstrap,
}

impl Default for CompareOptions {
    /// `tokens_per_s`, threshold 2 %, alpha 0.05, [`Bootstrap::default`].
    fn default() -> Self {
        Self {
            metric: Metric::TokensPerS,
            threshold: 0.02,
            threshold_auto: false,
            alpha: 0.05,
            bootstrap: Bootstrap::default(),
        }
    }
}

impl CompareOptions {
    fn validate(&self) -> Result<(), CompareError> {
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(CompareError::InvalidOption(format!(
                "threshold must be a finite fraction ≥ 0 (0.02 = 2 %), got {}",
                self.threshold
            )));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(CompareError::InvalidOption(format!(
                "alpha must lie in (0, 1), got {}",
                self.alpha
            )));
        }
        if self.bootstrap.resamples == 0 {
            return Err(CompareError::InvalidOption(
                "bootstrap resamples must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A noise profile offered to a comparison, and whether the user named it.
#[derive(Debug, Clone, Copy)]
pub struct ProfileChoice<'a> {
    /// The profile.
    pub profile: &'a NoiseProfile,
    /// Where it was read from (for the report of the comparison).
    pub path: &'a Path,
    /// Named on the command line (`--noise-profile`): used even for runs of another host, with
    /// a warning. A host's default profile is used only for runs of that host.
    pub explicit: bool,
}

/// The level a cell was compared at; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareLevel {
    /// At least two executions on each side; their means are the observations.
    Executions,
    /// A side with one execution, its variance widened by a known between-execution variance.
    RequestsWidened,
    /// One execution on each side, nothing known of the variance between executions.
    Requests,
}

impl CompareLevel {
    /// How the level reads in a table.
    pub fn words(self) -> &'static str {
        match self {
            CompareLevel::Executions => "executions",
            CompareLevel::RequestsWidened => "requests+between",
            CompareLevel::Requests => "requests only",
        }
    }
}

/// One cell's side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Cell id in that side's (first) run.
    pub cell_id: String,
    /// Outcome recorded in that run's manifest.
    pub status: CellOutcome,
    /// Usable values of the metric (timed, successful, non-null, finite), all executions.
    pub n: usize,
    /// Mean: of the requests with one execution, of the executions' means with several;
    /// `None` when `n = 0`.
    pub mean: Option<f64>,
    /// Sample standard deviation of the requests (one execution) or of the executions' means
    /// (several); `None` below two.
    pub sd: Option<f64>,
    /// Executions with usable values (1 for a single run without replicates).
    #[serde(default = "one")]
    pub executions: usize,
}

fn one() -> usize {
    1
}

/// A cell present on both sides and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellComparison {
    /// Readable label ([`CellConfig::label`]).
    pub label: String,
    /// The configuration both sides share.
    pub config: CellConfig,
    /// The baseline side.
    pub base: Side,
    /// The new side.
    pub new: Side,
    /// `mean_new − mean_base`, in the metric's unit.
    pub abs_change: f64,
    /// `(mean_new − mean_base) / mean_base`.
    pub rel_change: f64,
    /// 95 % interval of `rel_change`, `[low, high]`: percentile bootstrap at the requests level,
    /// delta-method *t* otherwise.
    pub rel_change_ci95: [f64; 2],
    /// The *t* statistic: Welch's on the requests, or the relative change over its standard
    /// error.
    pub welch_t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub welch_df: f64,
    /// Two-sided *p*-value.
    pub p: f64,
    /// Verdict ([`inference::regression_verdict`]).
    pub verdict: Verdict,
    /// The level the cell was compared at.
    #[serde(default = "requests")]
    pub level: CompareLevel,
    /// Where the between-execution variance of a widened side came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_source: Option<String>,
    /// The threshold this cell was judged with (differs from the comparison's with
    /// `--threshold auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

fn requests() -> CompareLevel {
    CompareLevel::Requests
}

/// A cell present on both sides but not compared, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotCompared {
    /// Readable label.
    pub label: String,
    /// The configuration both sides share.
    pub config: CellConfig,
    /// The baseline side, when the configuration is unique there.
    pub base: Option<Side>,
    /// The new side, when the configuration is unique there.
    pub new: Option<Side>,
    /// Why the cell was not compared.
    pub reason: String,
}

/// A cell present on one side only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmatched {
    /// Readable label.
    pub label: String,
    /// Its configuration.
    pub config: CellConfig,
    /// Its id in the run that has it.
    pub cell_id: String,
    /// Its outcome in that run.
    pub status: CellOutcome,
}

/// Cells by verdict and by why they were not compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    /// [`Verdict::Improved`].
    pub improved: usize,
    /// [`Verdict::Regressed`].
    pub regressed: usize,
    /// [`Verdict::NoChange`].
    pub no_change: usize,
    /// [`Verdict::WithinNoise`].
    pub within_noise: usize,
    /// On both sides but not compared ([`Comparison::not_compared`]).
    pub not_compared: usize,
    /// Only in the baseline.
    pub only_in_base: usize,
    /// Only in the new side.
    pub only_in_new: usize,
}

impl VerdictCounts {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Improved => self.improved += 1,
            Verdict::Regressed => self.regressed += 1,
            Verdict::NoChange => self.no_change += 1,
            Verdict::WithinNoise => self.within_noise += 1,
        }
    }
}

/// The noise profile a comparison used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileUse {
    /// Where it was read from.
    pub path: String,
    /// Its scenario.
    pub scenario_name: String,
    /// The host it was measured on.
    pub hostname: String,
    /// A/A runs it was measured from.
    pub runs: usize,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// The result of [`compare_runs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Run id of the baseline (ids joined with `+` for several runs).
    pub base_run_id: String,
    /// Run id of the new side (ids joined with `+` for several runs).
    pub new_run_id: String,
    /// Baseline folder, as given.
    pub base_dir: String,
    /// New folder, as given.
    pub new_dir: String,
    /// Metric compared.
    pub metric: Metric,
    /// Its unit.
    pub unit: String,
    /// Whether larger values are better ([`higher_is_better`]).
    pub higher_is_better: bool,
    /// Practical-relevance threshold on the relative change (fraction; with `threshold_auto`,
    /// the fallback for cells the profile lacks).
    pub threshold: f64,
    /// Whether cells took their thresholds from the profile.
    #[serde(default)]
    pub threshold_auto: bool,
    /// Significance level.
    pub alpha: f64,
    /// Bootstrap seed and resamples used for every cell compared at the requests level.
    pub bootstrap: Bootstrap,
    /// Compared cells, in the baseline's manifest order.
    pub cells: Vec<CellComparison>,
    /// Cells on both sides that were not compared, with the reason (baseline order).
    pub not_compared: Vec<NotCompared>,
    /// Cells only in the baseline (its manifest order).
    pub only_in_base: Vec<Unmatched>,
    /// Cells only in the new side (its manifest order).
    pub only_in_new: Vec<Unmatched>,
    /// Counts per verdict and per unmatched/not-compared list.
    pub counts: VerdictCounts,
    /// Data-quality notes from loading either side, and what the comparison could not see.
    pub warnings: Vec<String>,
    /// The runs of the baseline side.
    #[serde(default)]
    pub base_runs: Vec<String>,
    /// The runs of the new side.
    #[serde(default)]
    pub new_runs: Vec<String>,
    /// The noise profile used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileUse>,
}

impl Comparison {
    /// Whether any compared cell regressed.
    pub fn any_regressed(&self) -> bool {
        self.counts.regressed > 0
    }

    /// Compared cells per level.
    pub fn level_counts(&self) -> [(CompareLevel, usize); 3] {
        [
            CompareLevel::Executions,
            CompareLevel::RequestsWidened,
            CompareLevel::Requests,
        ]
        .map(|l| (l, self.cells.iter().filter(|c| c.level == l).count()))
    }
}

/// One loaded run: its statistics (for reasons and outcomes), the raw values of every cell, and
/// its configurations with their executions.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The run folder.
    pub dir: PathBuf,
    /// Its statistics, as [`crate::compute_stats`] computes them.
    pub stats: RunStats,
    /// Its configurations and their executions.
    pub view: ConfigurationView,
}

impl LoadedRun {
    /// The host the run was measured on.
    pub fn host(&self) -> &HostInfo {
        &self.view.manifest.host
    }
}

/// Loads one run folder for a comparison.
///
/// # Errors
/// [`CompareError::NotARunFolder`] or [`CompareError::Load`], naming the path.
pub fn load_run(dir: &Path) -> Result<LoadedRun, CompareError> {
    if !dir.is_dir() {
        let reason = if dir.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        return Err(CompareError::NotARunFolder {
            path: dir.to_path_buf(),
            reason: reason.into(),
        });
    }
    if !dir.join(files::MANIFEST).is_file() {
        return Err(CompareError::NotARunFolder {
            path: dir.to_path_buf(),
            reason: format!("no {}", files::MANIFEST),
        });
    }
    let wrap = |source| CompareError::Load {
        path: dir.to_path_buf(),
        source,
    };
    let manifest = crate::read_run_manifest(dir).map_err(wrap)?;
    let samples = load::load_requests(&dir.join(files::REQUESTS), &manifest)
        .map_err(|e| wrap(AnalysisError::from(e)))?;
    let view = configuration_view(&manifest, &samples);
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        stats: crate::stats_of_view(&view),
        view,
    })
}

/// Loads one side: a run folder, or a folder whose sub-folders are run folders (in name order,
/// which for tcobench's run ids is start order).
///
/// # Errors
/// As [`load_run`]; a folder that is neither names what it lacks.
pub fn load_side(dir: &Path) -> Result<Vec<LoadedRun>, CompareError> {
    if !dir.is_dir() || dir.join(files::MANIFEST).is_file() {
        return Ok(vec![load_run(dir)?]);
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CompareError::NotARunFolder {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(files::MANIFEST).is_file())
        .collect();
    if runs.is_empty() {
        return Err(CompareError::NotARunFolder {
            path: dir.to_path_buf(),
            reason: format!("no {}, and no sub-folder with one", files::MANIFEST),
        });
    }
    runs.sort();
    runs.iter().map(|p| load_run(p)).collect()
}

/// Compares two sides cell by cell; see the [module documentation](self). Each of `base_dir`
/// and `new_dir` is a run folder or a folder of run folders ([`load_side`]).
///
/// Nothing is written. Results are deterministic for given options (seeded bootstrap).
///
/// # Errors
/// [`CompareError::InvalidOption`] for a negative or non-finite threshold, alpha outside (0, 1),
/// zero resamples, or `threshold_auto` without a profile; [`CompareError::NotARunFolder`] when a
/// path is missing or has no `manifest.json`; [`CompareError::Load`] when a run's files cannot be
/// read or validated.
pub fn compare_runs(
    base_dir: &Path,
    new_dir: &Path,
    opts: &CompareOptions,
    profile: Option<ProfileChoice<'_>>,
) -> Result<Comparison, CompareError> {
    opts.validate()?;
    let base = load_side(base_dir)?;
    let new = load_side(new_dir)?;
    let mut warnings = Vec::new();
    let profile = profile.and_then(|choice| {
        let theirs = &choice.profile.host;
        let strangers: Vec<String> = base
            .iter()
            .chain(&new)
            .filter(|r| !same_host(r.host(), theirs))
            .map(|r| format!("{} ({})", r.stats.run_id, r.host().hostname))
            .collect();
        if strangers.is_empty() {
            return Some(choice);
        }
        if choice.explicit {
            warnings.push(format!(
                "the noise profile {} was measured on {} ({}); run(s) {} come from another host",
                choice.path.display(),
                theirs.hostname,
                theirs.cpu_model,
                strangers.join(", ")
            ));
            Some(choice)
        } else {
            warnings.push(format!(
                "this host's noise profile {} was not used: run(s) {} come from another host",
                choice.path.display(),
                strangers.join(", ")
            ));
            None
        }
    });
    if opts.threshold_auto && profile.is_none() {
        return Err(CompareError::InvalidOption(
            "--threshold auto takes each cell's threshold from a noise profile of the runs' host, \
             and none is available: measure one with `tcobench noise SCENARIO --runs N`, or name \
             one with --noise-profile"
                .into(),
        ));
    }
    let mut c = compare_loaded(&base, &new, opts, profile.map(|p| p.profile));
    c.base_dir = base_dir.display().to_string();
    c.new_dir = new_dir.display().to_string();
    c.profile = profile.map(|p| ProfileUse {
        path: p.path.display().to_string(),
        scenario_name: p.profile.scenario_name.clone(),
        hostname: p.profile.host.hostname.clone(),
        runs: p.profile.runs,
        created_at: p.profile.created_at.clone(),
    });
    warnings.append(&mut c.warnings);
    c.warnings = warnings;
    Ok(c)
}

/// Whether two host descriptions are the same machine (name, CPU and cores).
pub fn same_host(a: &HostInfo, b: &HostInfo) -> bool {
    a.hostname == b.hostname
        && a.cpu_model == b.cpu_model
        && a.cpu_logical_cores == b.cpu_logical_cores
}

/// Index of every configuration in a run → the positions of its cells.
fn by_config(stats: &RunStats) -> HashMap<CellConfig, Vec<usize>> {
    let mut map: HashMap<CellConfig, Vec<usize>> = HashMap::new();
    for (i, c) in stats.cells.iter().enumerate() {
        map.entry(c.config.clone()).or_default().push(i);
    }
    map
}

/// Why a cell's side cannot enter the comparison, if it cannot.
fn side_problem(cell: &CellStats, n: usize, metric: Metric, which: &str) -> Option<String> {
    match cell.status {
        CellOutcome::Failed => {
            return Some(match &cell.error {
                Some(e) => format!("failed in the {which} run: {e}"),
                None => format!("failed in the {which} run"),
            })
        }
        CellOutcome::Pending => return Some(format!("not run in the {which} run")),
        CellOutcome::Skipped => return Some(format!("skipped in the {which} run")),
        CellOutcome::Ok => {}
    }
    if n == 0 {
        let why = cell
            .unavailable
            .iter()
            .find(|u| u.metric == metric.name())
            .map_or_else(|| "no usable values".to_string(), |u| u.reason.clone());
        return Some(format!(
            "{} unavailable in the {which} run: {why}",
            metric.name()
        ));
    }
    None
}

fn inference_reason(e: &InferenceError) -> String {
    match e {
        InferenceError::ZeroVariance => {
            "zero variance in both runs: Welch's test is undefined (identical values per run)"
                .into()
        }
        InferenceError::ZeroMean => "baseline mean is zero: relative change is undefined".into(),
        other => other.to_string(),
    }
}

/// One side of one configuration: the usable executions' values, gathered over the side's runs.
#[derive(Debug, Default)]
struct SideCell<'a> {
    /// The first run's cell (id, status for the record).
    first: Option<&'a CellStats>,
    /// Each usable execution's values of the metric.
    executions: Vec<&'a [f64]>,
    /// Why some of the side's runs gave nothing.
    problems: Vec<String>,
    /// The most cells of this configuration any of the side's runs has (above 1: it cannot be
    /// matched).
    appearances: usize,
}

impl SideCell<'_> {
    fn n(&self) -> usize {
        self.executions.iter().map(|e| e.len()).sum()
    }

    fn means(&self) -> Vec<f64> {
        self.executions.iter().filter_map(|e| mean(e)).collect()
    }

    fn side(&self) -> Side {
        let first = self.first.expect("a side cell has a run");
        let (mean_v, sd_v) = match self.executions.as_slice() {
            [one] => (mean(one), sd(one)),
            _ => {
                let m = self.means();
                (mean(&m), sd(&m))
            }
        };
        Side {
            cell_id: first.cell_id.clone(),
            status: first.status,
            n: self.n(),
            mean: mean_v,
            sd: sd_v,
            executions: self.executions.len(),
        }
    }

    /// The between-execution variance of this side, relative to its mean squared, from its own
    /// executions (at least two, each with values).
    fn between_rel(&self) -> Option<(f64, f64)> {
        if self.executions.len() < 2 {
            return None;
        }
        let m = mean(&self.means())?;
        let vc = variance_components(&self.executions).ok()?;
        (m != 0.0).then(|| (vc.var_between / (m * m), (vc.groups - 1) as f64))
    }
}

/// One side of `config`: every usable execution of it in `runs` (`index` holds each run's
/// [`by_config`]).
fn gather<'a>(
    runs: &'a [LoadedRun],
    index: &[HashMap<CellConfig, Vec<usize>>],
    config: &CellConfig,
    metric: Metric,
    which: &str,
) -> SideCell<'a> {
    let mut out = SideCell::default();
    for (run, positions) in runs.iter().zip(index) {
        let positions = positions.get(config).map_or(&[][..], Vec::as_slice);
        out.appearances = out.appearances.max(positions.len());
        let &[i] = positions else {
            continue;
        };
        let cell = &run.stats.cells[i];
        out.first.get_or_insert(cell);
        let before = out.executions.len();
        for e in &run.view.executions[i] {
            let values = e.samples.metric(metric);
            if e.record.status == CellOutcome::Ok && !values.is_empty() {
                out.executions.push(values);
            }
        }
        let which = if runs.len() > 1 {
            format!("{which} run {}", run.stats.run_id)
        } else {
            which.to_string()
        };
        if out.executions.len() == before || cell.status != CellOutcome::Ok {
            let n = out.executions[before..].iter().map(|e| e.len()).sum();
            if let Some(p) = side_problem(cell, n, metric, &which) {
                out.problems.push(p);
            }
        }
    }
    out
}

/// The between-execution variance of a single-execution side, relative to its mean squared,
/// and where it came from: the profile's entry for this configuration, else the other side's
/// executions.
fn between_for(
    profile: Option<&NoiseProfile>,
    config: &CellConfig,
    metric: Metric,
    other: &SideCell<'_>,
) -> Option<(f64, f64, String)> {
    if let Some(p) = profile.and_then(|p| p.entry(config, metric)) {
        return Some((
            p.cv_between * p.cv_between,
            (p.runs.max(2) - 1) as f64,
            format!("noise profile ({} runs)", p.runs),
        ));
    }
    other.between_rel().map(|(v, df)| {
        (
            v,
            df,
            format!("the other side's {} executions", other.executions.len()),
        )
    })
}

/// The compared cell at the level the two sides allow, or why it cannot be compared.
fn compare_cell(
    b: &SideCell<'_>,
    n: &SideCell<'_>,
    config: &CellConfig,
    opts: &CompareOptions,
    profile: Option<&NoiseProfile>,
) -> Result<(inference::RatioTest, CompareLevel, Option<String>), String> {
    if b.executions.len() >= 2 && n.executions.len() >= 2 {
        let test = ratio_test(
            &MeanEstimate::of_units(&b.means()).map_err(|e| inference_reason(&e))?,
            &MeanEstimate::of_units(&n.means()).map_err(|e| inference_reason(&e))?,
        )
        .map_err(|e| inference_reason(&e))?;
        return Ok((test, CompareLevel::Executions, None));
    }
    let mut sources = Vec::new();
    let mut estimate = |side: &SideCell<'_>, other: &SideCell<'_>| {
        if side.executions.len() >= 2 {
            return MeanEstimate::of_units(&side.means()).map(Some);
        }
        let values = side.executions[0];
        let e = MeanEstimate::of_units(values)?;
        Ok(match between_for(profile, config, opts.metric, other) {
            Some((rel, df, source)) => {
                sources.push(source);
                let m2 = e.mean * e.mean;
                Some(e.with_between(rel * m2, df))
            }
            None => None,
        })
    };
    let be = estimate(b, n).map_err(|e| inference_reason(&e))?;
    let ne = estimate(n, b).map_err(|e| inference_reason(&e))?;
    let (Some(be), Some(ne)) = (be, ne) else {
        // Nothing is known of the variance between executions: the requests alone.
        let (bv, nv) = (b.executions[0], n.executions[0]);
        let welch = inference::welch_t_test(nv, bv).map_err(|e| inference_reason(&e))?;
        let ci = inference::bootstrap_ci_relative_change(bv, nv, &opts.bootstrap)
            .map_err(|e| inference_reason(&e))?;
        let (mb, mn) = (mean(bv).unwrap_or(f64::NAN), mean(nv).unwrap_or(f64::NAN));
        return Ok((
            inference::RatioTest {
                rel_change: (mn - mb) / mb,
                se: f64::NAN,
                df: welch.df,
                t: welch.t,
                p: welch.p,
                ci95: ci,
            },
            CompareLevel::Requests,
            None,
        ));
    };
    sources.dedup();
    let test = ratio_test(&be, &ne).map_err(|e| inference_reason(&e))?;
    Ok((
        test,
        CompareLevel::RequestsWidened,
        Some(sources.join("; ")),
    ))
}

/// Compares two loaded sides (no I/O; `base_dir`, `new_dir` and `profile` use are left empty
/// for the caller). `profile` supplies the between-execution variance of single-execution
/// sides and, with `threshold_auto`, the thresholds.
pub fn compare_loaded(
    base: &[LoadedRun],
    new: &[LoadedRun],
    opts: &CompareOptions,
    profile: Option<&NoiseProfile>,
) -> Comparison {
    let metric = opts.metric;
    let hib = higher_is_better(metric);
    let new_index: Vec<HashMap<CellConfig, Vec<usize>>> =
        new.iter().map(|r| by_config(&r.stats)).collect();
    let base_index: Vec<HashMap<CellConfig, Vec<usize>>> =
        base.iter().map(|r| by_config(&r.stats)).collect();

    let mut cells = Vec::new();
    let mut not_compared = Vec::new();
    let mut only_in_base = Vec::new();
    let mut only_in_new = Vec::new();
    let mut counts = VerdictCounts::default();

    let unmatched = |c: &CellStats| Unmatched {
        label: c.config.clone().label(),
        config: c.config.clone(),
        cell_id: c.cell_id.clone(),
        status: c.status,
    };

    let mut seen = std::collections::HashSet::new();
    let base_cells = base.iter().flat_map(|r| r.stats.cells.iter());
    for bcell in base_cells {
        let config = bcell.config.clone();
        if !seen.insert(config.clone()) {
            continue; // a duplicate or a later run's cell, already handled
        }
        let label = config.label();
        if !new_index.iter().any(|m| m.contains_key(&config)) {
            only_in_base.push(unmatched(bcell));
            continue;
        }
        let bside = gather(base, &base_index, &config, metric, "base");
        let nside = gather(new, &new_index, &config, metric, "new");
        if bside.appearances > 1 || nside.appearances > 1 {
            not_compared.push(NotCompared {
                label,
                config: config.clone(),
                base: None,
                new: None,
                reason: format!(
                    "configuration appears {}× in the base run and {}× in the new run: \
                     cannot match unambiguously",
                    bside.appearances, nside.appearances
                ),
            });
            continue;
        }
        let mut skip = |reason: String| {
            not_compared.push(NotCompared {
                label: label.clone(),
                config: config.clone(),
                base: bside.first.map(|_| bside.side()),
                new: nside.first.map(|_| nside.side()),
                reason,
            })
        };
        let mut problems: Vec<String> = Vec::new();
        for (side, which) in [(&bside, "base"), (&nside, "new")] {
            if side.executions.is_empty() {
                problems.extend(side.problems.iter().cloned());
                if side.problems.is_empty() {
                    problems.push(format!("no usable values in the {which} run"));
                }
            } else if side.executions.len() == 1 && side.n() < 2 {
                problems.push(format!(
                    "only {} usable value of {} in the {which} run (at least 2 needed)",
                    side.n(),
                    metric.name()
                ));
            }
        }
        if !problems.is_empty() {
            skip(problems.join("; "));
            continue;
        }
        let (test, level, between_source) =
            match compare_cell(&bside, &nside, &config, opts, profile) {
                Ok(t) => t,
                Err(reason) => {
                    skip(reason);
                    continue;
                }
            };
        let (bs, ns) = (bside.side(), nside.side());
        let (Some(mb), Some(mn)) = (bs.mean, ns.mean) else {
            skip("a mean overflows f64".into());
            continue;
        };
        let threshold = if opts.threshold_auto {
            profile
                .and_then(|p| p.entry(&config, metric))
                .map_or(opts.threshold, |e| e.threshold)
        } else {
            opts.threshold
        };
        let verdict = inference::regression_verdict(test.p, test.ci95, threshold, opts.alpha, hib);
        counts.add(verdict);
        cells.push(CellComparison {
            label,
            config,
            base: bs,
            new: ns,
            abs_change: mn - mb,
            rel_change: (mn - mb) / mb,
            rel_change_ci95: test.ci95,
            welch_t: test.t,
            welch_df: test.df,
            p: test.p,
            verdict,
            level,
            between_source,
            threshold: opts.threshold_auto.then_some(threshold),
        });
    }
    let mut seen_new = std::collections::HashSet::new();
    for ncell in new.iter().flat_map(|r| r.stats.cells.iter()) {
        if !base_index.iter().any(|m| m.contains_key(&ncell.config))
            && seen_new.insert(ncell.config.clone())
        {
            only_in_new.push(unmatched(ncell));
        }
    }
    counts.not_compared = not_compared.len();
    counts.only_in_base = only_in_base.len();
    counts.only_in_new = only_in_new.len();

    let mut warnings = Vec::new();
    for (which, side) in [("base", base), ("new", new)] {
        for run in side {
            warnings.extend(
                run.stats
                    .warnings
                    .iter()
                    .map(|w| format!("{which} run {}: {w}", run.stats.run_id)),
            );
        }
    }
    let blind = cells
        .iter()
        .filter(|c| c.level == CompareLevel::Requests)
        .count();
    if blind > 0 {
        warnings.push(format!(
            "{blind} cell(s) were compared on one execution per side with nothing known of the \
             variance between executions: their intervals see only the requests of each run, \
             and A/A runs of one build can differ beyond them. Measure this host's noise with \
             `tcobench noise SCENARIO --runs N` (compare then widens them), or run with \
             `--replicates R` (R ≥ 2)"
        ));
    }
    let ids = |side: &[LoadedRun]| -> Vec<String> {
        side.iter().map(|r| r.stats.run_id.clone()).collect()
    };
    Comparison {
        base_run_id: ids(base).join("+"),
        new_run_id: ids(new).join("+"),
        base_dir: String::new(),
        new_dir: String::new(),
        metric,
        unit: metric.unit().to_string(),
        higher_is_better: hib,
        threshold: opts.threshold,
        threshold_auto: opts.threshold_auto,
        alpha: opts.alpha,
        bootstrap: opts.bootstrap,
        cells,
        not_compared,
        only_in_base,
        only_in_new,
        counts,
        warnings,
        base_runs: ids(base),
        new_runs: ids(new),
        profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::testutil::{write_synthetic_run, Normal, SynthCell};

    fn cell(model: &'static str, batch: u32, tps: Option<Vec<f64>>) -> SynthCell {
        SynthCell { model, batch, tps }
    }

    /// Base and new runs: regressed (−10 %), improved (+20 %), no change, tiny (+0.5 %) shift,
    /// failed in new, n = 1, only in base, only in new.
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (bdir, ndir) = (tmp.path().join("base"), tmp.path().join("new"));
        std::fs::create_dir_all(&bdir).unwrap();
        std::fs::create_dir_all(&ndir).unwrap();
        let mut g = Normal::new(7);
        let same = g.draw(100.0, 3.0, 20);
        let same_rev: Vec<f64> = same.iter().rev().copied().collect();
        write_synthetic_run(
            &bdir,
            "run-base",
            &[
                cell("regress", 1, Some(g.draw(100.0, 3.0, 20))),
                cell("improve", 1, Some(g.draw(100.0, 3.0, 20))),
                cell("same", 1, Some(same)),
                cell("tiny", 1, Some(g.draw(100.0, 0.2, 30))),
                cell("fails", 1, Some(g.draw(100.0, 3.0, 5))),
                cell("single", 1, Some(g.draw(100.0, 3.0, 5))),
                cell("only-base", 1, Some(g.draw(100.0, 3.0, 5))),
            ],
            true,
        );
        write_synthetic_run(
            &ndir,
            "run-new",
            &[
                cell("only-new", 1, Some(g.draw(100.0, 3.0, 5))),
                cell("tiny", 1, Some(g.draw(100.5, 0.2, 30))),
                cell("same", 1, Some(same_rev)),
                cell("improve", 1, Some(g.draw(120.0, 3.0, 20))),
                cell("regress", 1, Some(g.draw(90.0, 3.0, 20))),
                cell("fails", 1, None),
                cell("single", 1, Some(vec![99.0])),
            ],
            false,
        );
        (tmp, bdir, ndir)
    }

    fn find<'a>(c: &'a Comparison, model: &str) -> &'a CellComparison {
        c.cells
            .iter()
            .find(|x| x.config.model == model)
            .unwrap_or_else(|| panic!("{model} not compared: {:#?}", c.not_compared))
    }

    #[test]
    fn verdicts_matching_and_unmatched_cells() {
        let (_t, b, n) = fixture();
        let opts = CompareOptions {
            bootstrap: Bootstrap {
                resamples: 2000,
                seed: 1,
            },
            ..CompareOptions::default()
        };
        let c = compare_runs(&b, &n, &opts, None).unwrap();
        assert_eq!(
            (c.base_run_id.as_str(), c.new_run_id.as_str()),
            ("run-base", "run-new")
        );
        assert!(c.higher_is_better);

        let r = find(&c, "regress");
        assert_eq!(r.verdict, Verdict::Regressed, "{r:#?}");
        assert!(r.rel_change < -0.05 && r.rel_change_ci95[1] < -0.02);
        assert!(r.p < 1e-6);
        assert_eq!((r.base.n, r.new.n), (20, 20));
        // Matched by configuration, not by id.
        assert_eq!(r.base.cell_id, "run-base-regress-b1");
        assert_eq!(r.new.cell_id, "run-new-regress-b1");
        assert_eq!(r.label, "mock/regress/f32/cpu/b1/p16/n8");

        assert_eq!(find(&c, "improve").verdict, Verdict::Improved);
        let same = find(&c, "same");
        assert_eq!(same.verdict, Verdict::NoChange);
        assert!(same.rel_change.abs() < 1e-12);
        let tiny = find(&c, "tiny");
        assert!(
            tiny.p < opts.alpha,
            "the shift must be significant: {tiny:#?}"
        );
        assert_eq!(tiny.verdict, Verdict::WithinNoise);

        let reasons: Vec<(&str, &str)> = c
            .not_compared
            .iter()
            .map(|x| (x.config.model.as_str(), x.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert_eq!(reasons[0].0, "fails");
        assert!(
            reasons[0]
                .1
                .contains("failed in the new run: out of memory"),
            "{reasons:?}"
        );
        assert_eq!(reasons[1].0, "single");
        assert!(reasons[1].1.contains("only 1 usable value"), "{reasons:?}");

        assert_eq!(c.only_in_base.len(), 1);
        assert_eq!(c.only_in_base[0].config.model, "only-base");
        assert_eq!(c.only_in_new.len(), 1);
        assert_eq!(c.only_in_new[0].cell_id, "run-new-only-new-b1");

        assert_eq!(
            c.counts,
            VerdictCounts {
                improved: 1,
                regressed: 1,
                no_change: 1,
                within_noise: 1,
                not_compared: 2,
                only_in_base: 1,
                only_in_new: 1,
            }
        );
        assert!(c.any_regressed());

        // Same options → bit-identical result; JSON round-trips.
        let again = compare_runs(&b, &n, &opts, None).unwrap();
        assert_eq!(c, again);
        let json = serde_json::to_string(&c).unwrap();
        let back: Comparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back.counts, c.counts);
        assert_eq!(back.cells.len(), c.cells.len());
    }

    #[test]
    fn latency_direction_is_inverted() {
        let (_t, b, n) = fixture();
        let opts = CompareOptions {
            metric: Metric::E2eMs,
            bootstrap: Bootstrap {
                resamples: 2000,
                seed: 1,
            },
            ..CompareOptions::default()
        };
        let c = compare_runs(&b, &n, &opts, None).unwrap();
        assert!(!c.higher_is_better);
        assert_eq!(c.unit, "ms");
        // Throughput down ⇒ latency up ⇒ still a regression.
        let r = find(&c, "regress");
        assert!(r.rel_change > 0.05);
        assert_eq!(r.verdict, Verdict::Regressed);
        assert_eq!(find(&c, "improve").verdict, Verdict::Improved);
    }

    #[test]
    fn unmeasured_energy_is_not_compared_with_the_reason() {
        let (_t, b, n) = fixture();
        let opts = CompareOptions {
            metric: Metric::EnergyJPerToken,
            ..CompareOptions::default()
        };
        let c = compare_runs(&b, &n, &opts, None).unwrap();
        assert!(c.cells.is_empty());
        let r = c
            .not_compared
            .iter()
            .find(|x| x.config.model == "regress")
            .unwrap();
        assert!(
            r.reason
                .contains("energy_j_per_token unavailable in the new run"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("not measured"), "{}", r.reason);
        assert_eq!(r.new.as_ref().unwrap().n, 0);
        assert_eq!(r.new.as_ref().unwrap().mean, None);
        assert_eq!(r.base.as_ref().unwrap().n, 20);
    }

    #[test]
    fn zero_variance_runs_are_reported_not_guessed() {
        let tmp = tempfile::tempdir().unwrap();
        let (b, n) = (tmp.path().join("b"), tmp.path().join("n"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&n).unwrap();
        write_synthetic_run(&b, "b", &[cell("det", 1, Some(vec![50.0; 4]))], true);
        write_synthetic_run(&n, "n", &[cell("det", 1, Some(vec![40.0; 4]))], true);
        let c = compare_runs(&b, &n, &CompareOptions::default(), None).unwrap();
        assert!(c.cells.is_empty());
        assert_eq!(c.not_compared.len(), 1);
        let x = &c.not_compared[0];
        assert!(x.reason.contains("zero variance"), "{}", x.reason);
        assert_eq!(x.base.as_ref().unwrap().mean, Some(50.0));
        assert_eq!(x.new.as_ref().unwrap().mean, Some(40.0));
    }

    #[test]
    fn duplicate_configurations_are_not_matched() {
        let tmp = tempfile::tempdir().unwrap();
        let (b, n) = (tmp.path().join("b"), tmp.path().join("n"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&n).unwrap();
        let mut g = Normal::new(3);
        let mut m = write_synthetic_run(
            &b,
            "b",
            &[
                cell("dup", 1, Some(g.draw(10.0, 1.0, 5))),
                cell("dup", 2, Some(g.draw(10.0, 1.0, 5))),
            ],
            true,
        );
        // Make both base cells the same configuration (ids stay distinct).
        m.cells[1].config.batch_size = 1;
        std::fs::write(b.join(files::MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
        write_synthetic_run(&n, "n", &[cell("dup", 1, Some(g.draw(10.0, 1.0, 5)))], true);
        let c = compare_runs(&b, &n, &CompareOptions::default(), None).unwrap();
        assert!(c.cells.is_empty());
        assert_eq!(c.not_compared.len(), 1, "{:#?}", c.not_compared);
        assert!(c.not_compared[0].reason.contains("2× in the base run"));
        assert!(c.only_in_base.is_empty() && c.only_in_new.is_empty());
    }

    #[test]
    fn bad_folders_and_options_are_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = compare_runs(&missing, tmp.path(), &CompareOptions::default(), None).unwrap_err();
        assert!(matches!(err, CompareError::NotARunFolder { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");

        let err =
            compare_runs(tmp.path(), tmp.path(), &CompareOptions::default(), None).unwrap_err();
        assert!(err.to_string().contains("no manifest.json"), "{err}");

        // A manifest without requests.parquet: a load error naming the file.
        let (_t, b, _n) = fixture();
        std::fs::remove_file(b.join(files::REQUESTS)).unwrap();
        let err = compare_runs(&b, &b, &CompareOptions::default(), None).unwrap_err();
        assert!(matches!(err, CompareError::Load { .. }));
        assert!(err.to_string().contains("requests.parquet"), "{err}");

        for bad in [
            CompareOptions {
                threshold: -0.1,
                ..CompareOptions::default()
            },
            CompareOptions {
                alpha: 1.0,
                ..CompareOptions::default()
            },
            CompareOptions {
                bootstrap: Bootstrap {
                    resamples: 0,
                    seed: 0,
                },
                ..CompareOptions::default()
            },
        ] {
            assert!(matches!(
                compare_runs(&b, &b, &bad, None),
                Err(CompareError::InvalidOption(_))
            ));
        }
    }

    #[test]
    fn metric_names_and_directions() {
        assert_eq!(parse_metric("tokens_per_s").unwrap(), Metric::TokensPerS);
        assert_eq!(parse_metric("E2E-MS").unwrap(), Metric::E2eMs);
        let err = parse_metric("latency").unwrap_err().to_string();
        assert!(err.contains("`latency`"), "{err}");
        for m in Metric::ALL {
            assert!(err.contains(m.name()), "{err}");
            assert_eq!(parse_metric(m.name()).unwrap(), m);
        }
        assert!(higher_is_better(Metric::TokensPerS));
        for m in [
            Metric::E2eMs,
            Metric::TtftMs,
            Metric::TpotMs,
            Metric::EnergyJPerToken,
        ] {
            assert!(!higher_is_better(m));
        }
    }

    #[test]
    fn label_uses_the_last_path_component_of_a_model() {
        let mut c: CellConfig = CellConfig {
            backend: "candle".into(),
            model: "small".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            batch_size: 1,
            prompt_tokens: 32,
            new_tokens: 16,
        };
        assert_eq!(c.label(), "candle/small/f32/cpu/b1/p32/n16");
        c.model = "/models/llama-3/".into();
        assert_eq!(c.label(), "candle/llama-3/f32/cpu/b1/p32/n16");
    }
}
