//! Cell-by-cell comparison of two run folders: is the new run faster, slower, or the same?
//!
//! Cells are matched by their **resolved configuration** ([`CellConfig`]: backend, model,
//! device, dtype, batch size, prompt and new tokens), never by `cell_id` — ids include the
//! scenario seed, so the same configuration has different ids in runs with different seeds.
//!
//! For every cell present and usable in both runs, [`compare_runs`] reports the number of values
//! and the mean in each run, the relative change of means `(mean_new − mean_base) / mean_base`
//! with its seeded percentile-bootstrap 95 % interval
//! ([`inference::bootstrap_ci_relative_change`]), Welch's *p* (new vs base,
//! [`inference::welch_t_test`]) and a [`Verdict`] from [`inference::regression_verdict`]: a cell is
//! improved or regressed only when the difference is significant **and** the whole interval lies
//! beyond ±threshold; the direction comes from the metric ([`higher_is_better`]).
//!
//! Nothing is guessed: cells only in one run, cells that failed or were not run, cells with fewer
//! than two usable values, and cells whose statistics are undefined (zero variance in both runs,
//! zero baseline mean) are listed separately with the reason. No formatting happens here; the
//! command line renders [`Comparison`] as a table or JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{AnalysisError, RunStats};
use tcobench_results::schema::{files, CellOutcome};
use tcobench_results::{load, CellConfig, CellStats, Metric};
use tcobench_stats::inference::{self, Bootstrap, InferenceError, Verdict};

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
    /// The path is not a run folder (missing, not a directory, or without `manifest.json`).
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
    /// Significance level of the Welch test.
    pub alpha: f64,
    /// Seeded bootstrap of the relative-change interval (the same settings for every cell).
    pub bootstrap: Bootstrap,
}

impl Default for CompareOptions {
    /// `tokens_per_s`, threshold 2 %, alpha 0.05, [`Bootstrap::default`].
    fn default() -> Self {
        Self {
            metric: Metric::TokensPerS,
            threshold: 0.02,
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

/// One cell's side of a comparison: its id in that run and the metric's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Cell id in that run.
    pub cell_id: String,
    /// Outcome recorded in that run's manifest.
    pub status: CellOutcome,
    /// Usable values of the metric (timed, successful, non-null, finite).
    pub n: usize,
    /// Mean; `None` when `n = 0`.
    pub mean: Option<f64>,
    /// Sample standard deviation; `None` when `n < 2`.
    pub sd: Option<f64>,
}

/// A cell present in both runs and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellComparison {
    /// Readable label ([`CellConfig::label`]).
    pub label: String,
    /// The configuration both runs share.
    pub config: CellConfig,
    /// The baseline run's side.
    pub base: Side,
    /// The new run's side.
    pub new: Side,
    /// `mean_new − mean_base`, in the metric's unit.
    pub abs_change: f64,
    /// `(mean_new − mean_base) / mean_base`.
    pub rel_change: f64,
    /// Percentile-bootstrap 95 % interval of `rel_change`, `[low, high]`.
    pub rel_change_ci95: [f64; 2],
    /// Welch *t* statistic of new vs base.
    pub welch_t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub welch_df: f64,
    /// Two-sided Welch *p*-value.
    pub p: f64,
    /// Verdict ([`inference::regression_verdict`]).
    pub verdict: Verdict,
}

/// A cell present in both runs but not compared, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotCompared {
    /// Readable label.
    pub label: String,
    /// The configuration both runs share.
    pub config: CellConfig,
    /// The baseline run's side, when the configuration is unique there.
    pub base: Option<Side>,
    /// The new run's side, when the configuration is unique there.
    pub new: Option<Side>,
    /// Why the cell was not compared.
    pub reason: String,
}

/// A cell present in one run only.
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
    /// In both runs but not compared ([`Comparison::not_compared`]).
    pub not_compared: usize,
    /// Only in the baseline run.
    pub only_in_base: usize,
    /// Only in the new run.
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

/// The result of [`compare_runs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Run id of the baseline.
    pub base_run_id: String,
    /// Run id of the new run.
    pub new_run_id: String,
    /// Baseline run folder, as given.
    pub base_dir: String,
    /// New run folder, as given.
    pub new_dir: String,
    /// Metric compared.
    pub metric: Metric,
    /// Its unit.
    pub unit: String,
    /// Whether larger values are better ([`higher_is_better`]).
    pub higher_is_better: bool,
    /// Practical-relevance threshold on the relative change (fraction).
    pub threshold: f64,
    /// Significance level.
    pub alpha: f64,
    /// Bootstrap seed and resamples used for every cell.
    pub bootstrap: Bootstrap,
    /// Compared cells, in the baseline's manifest order.
    pub cells: Vec<CellComparison>,
    /// Cells in both runs that were not compared, with the reason (baseline order).
    pub not_compared: Vec<NotCompared>,
    /// Cells only in the baseline run (its manifest order).
    pub only_in_base: Vec<Unmatched>,
    /// Cells only in the new run (its manifest order).
    pub only_in_new: Vec<Unmatched>,
    /// Counts per verdict and per unmatched/not-compared list.
    pub counts: VerdictCounts,
    /// Data-quality notes from loading either run.
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Whether any compared cell regressed.
    pub fn any_regressed(&self) -> bool {
        self.counts.regressed > 0
    }
}

/// One loaded run: its statistics (for reasons and outcomes) and the raw values of every cell.
struct LoadedRun {
    stats: RunStats,
    samples: load::LoadedRequests,
}

fn load_run(dir: &Path) -> Result<LoadedRun, CompareError> {
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
    let stats = crate::compute_stats(&manifest, &samples);
    Ok(LoadedRun { stats, samples })
}

/// Index of every configuration in a run → the positions of its cells.
fn by_config(stats: &RunStats) -> HashMap<CellConfig, Vec<usize>> {
    let mut map: HashMap<CellConfig, Vec<usize>> = HashMap::new();
    for (i, c) in stats.cells.iter().enumerate() {
        map.entry(c.config.clone()).or_default().push(i);
    }
    map
}

fn side(cell: &CellStats, values: &[f64]) -> Side {
    let n = values.len();
    Side {
        cell_id: cell.cell_id.clone(),
        status: cell.status,
        n,
        mean: tcobench_stats::descriptive::mean(values),
        sd: tcobench_stats::descriptive::sd(values),
    }
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
    if n < 2 {
        return Some(format!(
            "only {n} usable value of {} in the {which} run (at least 2 needed)",
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

/// Compares two run folders cell by cell; see the [module documentation](self).
///
/// Both folders are read (manifest + `requests.parquet`) through [`load::load_requests`]; nothing
/// is written. Results are deterministic for given options (seeded bootstrap).
///
/// # Errors
/// [`CompareError::InvalidOption`] for a negative or non-finite threshold, alpha outside (0, 1)
/// or zero resamples; [`CompareError::NotARunFolder`] when a path is missing or has no
/// `manifest.json`; [`CompareError::Load`] when a run's files cannot be read or validated.
pub fn compare_runs(
    base_dir: &Path,
    new_dir: &Path,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    opts.validate()?;
    let base = load_run(base_dir)?;
    let new = load_run(new_dir)?;
    let metric = opts.metric;
    let hib = higher_is_better(metric);

    let base_index = by_config(&base.stats);
    let new_index = by_config(&new.stats);

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
    for (bi, bcell) in base.stats.cells.iter().enumerate() {
        let config = bcell.config.clone();
        let label = config.label();
        let Some(new_positions) = new_index.get(&config) else {
            only_in_base.push(unmatched(bcell));
            continue;
        };
        if !seen.insert(config.clone()) {
            continue; // a duplicate configuration, already reported below
        }
        let base_positions = &base_index[&config];
        if base_positions.len() > 1 || new_positions.len() > 1 {
            not_compared.push(NotCompared {
                label,
                config,
                base: None,
                new: None,
                reason: format!(
                    "configuration appears {}× in the base run and {}× in the new run: \
                     cannot match unambiguously",
                    base_positions.len(),
                    new_positions.len()
                ),
            });
            continue;
        }
        let ni = new_positions[0];
        let ncell = &new.stats.cells[ni];
        let bvals = base.samples.cells[bi].metric(metric);
        let nvals = new.samples.cells[ni].metric(metric);
        let bside = side(bcell, bvals);
        let nside = side(ncell, nvals);

        let problem = side_problem(bcell, bvals.len(), metric, "base")
            .into_iter()
            .chain(side_problem(ncell, nvals.len(), metric, "new"))
            .collect::<Vec<_>>();
        let mut skip = |reason: String, bside: Side, nside: Side| {
            not_compared.push(NotCompared {
                label: label.clone(),
                config: config.clone(),
                base: Some(bside),
                new: Some(nside),
                reason,
            })
        };
        if !problem.is_empty() {
            skip(problem.join("; "), bside, nside);
            continue;
        }
        let welch = match inference::welch_t_test(nvals, bvals) {
            Ok(t) => t,
            Err(e) => {
                skip(inference_reason(&e), bside, nside);
                continue;
            }
        };
        let ci = match inference::bootstrap_ci_relative_change(bvals, nvals, &opts.bootstrap) {
            Ok(ci) => ci,
            Err(e) => {
                skip(inference_reason(&e), bside, nside);
                continue;
            }
        };
        let (Some(mb), Some(mn)) = (bside.mean, nside.mean) else {
            skip("a mean overflows f64".into(), bside, nside);
            continue;
        };
        let verdict = inference::regression_verdict(welch.p, ci, opts.threshold, opts.alpha, hib);
        counts.add(verdict);
        cells.push(CellComparison {
            label,
            config,
            base: bside,
            new: nside,
            abs_change: mn - mb,
            rel_change: (mn - mb) / mb,
            rel_change_ci95: ci,
            welch_t: welch.t,
            welch_df: welch.df,
            p: welch.p,
            verdict,
        });
    }
    for ncell in &new.stats.cells {
        if !base_index.contains_key(&ncell.config.clone()) {
            only_in_new.push(unmatched(ncell));
        }
    }
    counts.not_compared = not_compared.len();
    counts.only_in_base = only_in_base.len();
    counts.only_in_new = only_in_new.len();

    let mut warnings = Vec::new();
    for (which, run) in [("base", &base), ("new", &new)] {
        warnings.extend(
            run.stats
                .warnings
                .iter()
                .map(|w| format!("{which} run {}: {w}", run.stats.run_id)),
        );
    }

    Ok(Comparison {
        base_run_id: base.stats.run_id.clone(),
        new_run_id: new.stats.run_id.clone(),
        base_dir: base_dir.display().to_string(),
        new_dir: new_dir.display().to_string(),
        metric,
        unit: metric.unit().to_string(),
        higher_is_better: hib,
        threshold: opts.threshold,
        alpha: opts.alpha,
        bootstrap: opts.bootstrap,
        cells,
        not_compared,
        only_in_base,
        only_in_new,
        counts,
        warnings,
    })
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
        let c = compare_runs(&b, &n, &opts).unwrap();
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
        let again = compare_runs(&b, &n, &opts).unwrap();
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
        let c = compare_runs(&b, &n, &opts).unwrap();
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
        let c = compare_runs(&b, &n, &opts).unwrap();
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
        let c = compare_runs(&b, &n, &CompareOptions::default()).unwrap();
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
        let c = compare_runs(&b, &n, &CompareOptions::default()).unwrap();
        assert!(c.cells.is_empty());
        assert_eq!(c.not_compared.len(), 1, "{:#?}", c.not_compared);
        assert!(c.not_compared[0].reason.contains("2× in the base run"));
        assert!(c.only_in_base.is_empty() && c.only_in_new.is_empty());
    }

    #[test]
    fn bad_folders_and_options_are_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = compare_runs(&missing, tmp.path(), &CompareOptions::default()).unwrap_err();
        assert!(matches!(err, CompareError::NotARunFolder { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");

        let err = compare_runs(tmp.path(), tmp.path(), &CompareOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no manifest.json"), "{err}");

        // A manifest without requests.parquet: a load error naming the file.
        let (_t, b, _n) = fixture();
        std::fs::remove_file(b.join(files::REQUESTS)).unwrap();
        let err = compare_runs(&b, &b, &CompareOptions::default()).unwrap_err();
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
                compare_runs(&b, &b, &bad),
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
