//! A host's noise profile: what repeated runs of one build on one machine show about the
//! variance between runs, cell by cell (`tcobench noise SCENARIO --runs N` writes it).
//!
//! For every configuration and metric the profile holds, from the N runs' means:
//!
//! * `cv_of_run_means`: their standard deviation relative to their mean — how far one run's
//!   mean strays;
//! * `cv_within`: what the requests inside a run predict for that spread, `sqrt(mean(s²/n))`
//!   relative to the mean (the only spread a per-request test sees);
//! * `between_factor = cv_of_run_means / cv_within`: 1 when runs differ only by their requests'
//!   noise, above 1 when the run itself is a random effect;
//! * `cv_between = sqrt(max(0, var(run means) − mean(s²/n)))` relative to the mean: the
//!   between-run standard deviation that [`crate::compare`] adds to a single run's variance;
//! * `threshold = t(1 − alpha, N − 1) · √2 · cv_of_run_means`: the relative change two A/A runs
//!   stay above with probability 1 − alpha (the difference of two runs' means has standard
//!   deviation √2 σ, and σ is estimated from N runs) — `compare --threshold auto`;
//! * `false_alarms`: over every pair of the N runs compared as base and new, how many verdicts
//!   said regressed or improved — with the per-request test (what `compare` does without a
//!   profile) and with the widened test, each at the reference threshold. The widened test's
//!   count is cross-validated: each pair is judged with a profile made from the *other* runs
//!   (from four runs on), so the rate is not flattered by judging runs with their own spread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compare::{compare_loaded, same_host, CompareOptions, LoadedRun};
use tcobench_results::schema::{CellOutcome, HostInfo};
use tcobench_results::{CellConfig, Metric};
use tcobench_stats::descriptive::{mean, sd, t_critical};
use tcobench_stats::inference::{Bootstrap, Verdict};

/// Profile file format version.
pub const PROFILE_VERSION: u32 = 1;

/// Fewest runs a profile is made from.
pub const MIN_RUNS: usize = 3;

/// A host's noise profile; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseProfile {
    /// Format version ([`PROFILE_VERSION`]).
    pub profile_version: u32,
    /// The scenario the runs ran (several, joined with `+`, after [`NoiseProfile::absorb`]).
    pub scenario_name: String,
    /// The host the runs ran on.
    pub host: HostInfo,
    /// When the profile was made (RFC 3339).
    pub created_at: String,
    /// Runs it was made from.
    pub runs: usize,
    /// Their run ids.
    pub run_ids: Vec<String>,
    /// Significance level of the thresholds and of the gates counted.
    pub alpha: f64,
    /// The fixed threshold the false alarms were counted at.
    pub reference_threshold: f64,
    /// One entry per configuration.
    pub cells: Vec<ProfileCell>,
    /// False alarms per metric name, summed over cells.
    pub false_alarms: BTreeMap<String, FalseAlarms>,
}

/// One configuration of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileCell {
    /// Readable label ([`CellConfig::label`]).
    pub label: String,
    /// The configuration.
    pub config: CellConfig,
    /// Per metric name with values in enough runs.
    pub metrics: BTreeMap<String, ProfileMetric>,
}

/// One metric of one configuration; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileMetric {
    /// Runs (executions) with values.
    pub runs: usize,
    /// Mean of the runs' means.
    pub mean: f64,
    /// Standard deviation of the runs' means.
    pub sd_of_run_means: f64,
    /// `sd_of_run_means / mean`.
    pub cv_of_run_means: f64,
    /// `sqrt(mean(s²/n)) / mean`: the spread of a run's mean its requests predict.
    pub cv_within: f64,
    /// Between-run standard deviation relative to the mean.
    pub cv_between: f64,
    /// `cv_of_run_means / cv_within` (`None` when the requests show no spread).
    pub between_factor: Option<f64>,
    /// Relative change two A/A runs stay above with probability 1 − alpha.
    pub threshold: f64,
    /// Verdicts over the pairs of runs (absent in entries made for cross-validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarms: Option<FalseAlarms>,
}

/// A/A verdicts that were not "no change" or "within noise".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FalseAlarms {
    /// Pairs of runs compared (comparisons counted).
    pub comparisons: usize,
    /// With the per-request test.
    pub requests: GateCounts,
    /// With the test widened by the between-run variance.
    pub widened: GateCounts,
}

/// Verdicts of one gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateCounts {
    /// Said regressed.
    pub regressed: usize,
    /// Said improved.
    pub improved: usize,
}

impl GateCounts {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Regressed => self.regressed += 1,
            Verdict::Improved => self.improved += 1,
            Verdict::NoChange | Verdict::WithinNoise => {}
        }
    }

    /// Verdicts beyond noise, either way.
    pub fn alarms(&self) -> usize {
        self.regressed + self.improved
    }
}

impl FalseAlarms {
    fn absorb(&mut self, o: &FalseAlarms) {
        self.comparisons += o.comparisons;
        self.requests.regressed += o.requests.regressed;
        self.requests.improved += o.requests.improved;
        self.widened.regressed += o.widened.regressed;
        self.widened.improved += o.widened.improved;
    }
}

/// How a profile is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileOptions {
    /// Significance level.
    pub alpha: f64,
    /// The fixed threshold false alarms are counted at.
    pub reference_threshold: f64,
    /// Bootstrap of the per-request gate.
    pub bootstrap: Bootstrap,
}

impl Default for ProfileOptions {
    /// alpha 0.05, threshold 2 % (`compare`'s defaults), [`Bootstrap::default`].
    fn default() -> Self {
        ProfileOptions {
            alpha: 0.05,
            reference_threshold: 0.02,
            bootstrap: Bootstrap::default(),
        }
    }
}

/// Why no profile could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Too few runs.
    #[error("a noise profile needs at least {MIN_RUNS} runs, got {0}")]
    TooFewRuns(usize),
    /// The runs come from different hosts.
    #[error("the runs come from different hosts ({0} and {1}): a profile describes one host")]
    MixedHosts(String, String),
}

impl NoiseProfile {
    /// The entry for `config` and `metric`, if the profile has one.
    pub fn entry(&self, config: &CellConfig, metric: Metric) -> Option<&ProfileMetric> {
        self.cells
            .iter()
            .find(|c| &c.config == config)
            .and_then(|c| c.metrics.get(metric.name()))
    }

    /// Makes the profile of `runs` (one build, one host, one scenario); `created_at` is stamped
    /// in.
    ///
    /// # Errors
    /// [`ProfileError`] for fewer than [`MIN_RUNS`] runs or runs of several hosts.
    pub fn build(
        runs: &[LoadedRun],
        opts: &ProfileOptions,
        created_at: String,
    ) -> Result<NoiseProfile, ProfileError> {
        if runs.len() < MIN_RUNS {
            return Err(ProfileError::TooFewRuns(runs.len()));
        }
        let host = runs[0].host().clone();
        if let Some(other) = runs.iter().find(|r| !same_host(r.host(), &host)) {
            return Err(ProfileError::MixedHosts(
                host.hostname.clone(),
                other.host().hostname.clone(),
            ));
        }
        let all: Vec<&LoadedRun> = runs.iter().collect();
        let mut cells = entries(&all, opts.alpha);
        let mut totals: BTreeMap<String, FalseAlarms> = BTreeMap::new();
        for metric in Metric::ALL {
            let counts = false_alarms(runs, metric, opts);
            for cell in &mut cells {
                if let Some(m) = cell.metrics.get_mut(metric.name()) {
                    let c = counts.get(&cell.config).copied().unwrap_or_default();
                    totals
                        .entry(metric.name().to_string())
                        .or_default()
                        .absorb(&c);
                    m.false_alarms = Some(c);
                }
            }
        }
        Ok(NoiseProfile {
            profile_version: PROFILE_VERSION,
            scenario_name: runs[0].stats.scenario_name.clone(),
            host,
            created_at,
            runs: runs.len(),
            run_ids: runs.iter().map(|r| r.stats.run_id.clone()).collect(),
            alpha: opts.alpha,
            reference_threshold: opts.reference_threshold,
            cells,
            false_alarms: totals,
        })
    }

    /// Takes in a newer profile of the same host: its configurations replace this one's, the
    /// others stay; the header is the newer one's.
    pub fn absorb(&mut self, newer: NoiseProfile) {
        let mut cells = newer.cells.clone();
        for old in &self.cells {
            if !cells.iter().any(|c| c.config == old.config) {
                cells.push(old.clone());
            }
        }
        let mut names: Vec<String> = self.scenario_name.split('+').map(String::from).collect();
        if !names.contains(&newer.scenario_name) {
            names.push(newer.scenario_name.clone());
        }
        *self = NoiseProfile {
            scenario_name: names.join("+"),
            cells,
            ..newer
        };
    }
}

/// The usable executions' means and squared standard errors of `config`'s `metric` over
/// `runs`: one entry per execution.
fn run_means(runs: &[&LoadedRun], config: &CellConfig, metric: Metric) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for run in runs {
        for (i, cell) in run.stats.cells.iter().enumerate() {
            if &cell.config != config {
                continue;
            }
            for e in &run.view.executions[i] {
                let v = e.samples.metric(metric);
                if e.record.status != CellOutcome::Ok || v.len() < 2 {
                    continue;
                }
                if let (Some(m), Some(s)) = (mean(v), sd(v)) {
                    out.push((m, s * s / v.len() as f64));
                }
            }
        }
    }
    out
}

/// The profile entries of `runs` (without false alarms).
fn entries(runs: &[&LoadedRun], alpha: f64) -> Vec<ProfileCell> {
    let mut cells: Vec<ProfileCell> = Vec::new();
    for run in runs {
        for cell in &run.stats.cells {
            if cells.iter().any(|c| c.config == cell.config) {
                continue;
            }
            let metrics: BTreeMap<String, ProfileMetric> = Metric::ALL
                .into_iter()
                .filter_map(|m| Some((m.name().to_string(), entry(runs, &cell.config, m, alpha)?)))
                .collect();
            if !metrics.is_empty() {
                cells.push(ProfileCell {
                    label: cell.config.label(),
                    config: cell.config.clone(),
                    metrics,
                });
            }
        }
    }
    cells
}

fn entry(
    runs: &[&LoadedRun],
    config: &CellConfig,
    metric: Metric,
    alpha: f64,
) -> Option<ProfileMetric> {
    let pairs = run_means(runs, config, metric);
    if pairs.len() < 2 {
        return None;
    }
    let means: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let m = mean(&means)?;
    if !(m.is_finite() && m != 0.0) {
        return None;
    }
    let s = sd(&means)?;
    let within_var = pairs.iter().map(|p| p.1).sum::<f64>() / pairs.len() as f64;
    let cv_within = within_var.sqrt() / m.abs();
    let cv = s / m.abs();
    let n = pairs.len() as f64;
    let t = t_critical(1.0 - 2.0 * alpha, n - 1.0)?;
    Some(ProfileMetric {
        runs: pairs.len(),
        mean: m,
        sd_of_run_means: s,
        cv_of_run_means: cv,
        cv_within,
        cv_between: (s * s - within_var).max(0.0).sqrt() / m.abs(),
        between_factor: (cv_within > 0.0).then(|| cv / cv_within),
        threshold: t * std::f64::consts::SQRT_2 * cv,
        false_alarms: None,
    })
}

/// Per configuration: the verdicts over every pair of `runs` for `metric`, per-request and
/// widened (cross-validated from four runs on).
fn false_alarms(
    runs: &[LoadedRun],
    metric: Metric,
    opts: &ProfileOptions,
) -> BTreeMap<CellConfig, FalseAlarms> {
    let compare = CompareOptions {
        metric,
        threshold: opts.reference_threshold,
        threshold_auto: false,
        alpha: opts.alpha,
        bootstrap: opts.bootstrap,
    };
    let mut out: BTreeMap<CellConfig, FalseAlarms> = BTreeMap::new();
    // With three runs no pair leaves two others: those pairs are judged in-sample.
    let in_sample = (runs.len() < 4).then(|| {
        let everyone: Vec<&LoadedRun> = runs.iter().collect();
        profile_of(&everyone, runs, opts.alpha)
    });
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            let (a, b) = (
                std::slice::from_ref(&runs[i]),
                std::slice::from_ref(&runs[j]),
            );
            let plain = compare_loaded(a, b, &compare, None);
            let others: Vec<&LoadedRun> = runs
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != i && *k != j)
                .map(|(_, r)| r)
                .collect();
            let held_out;
            let profile = match &in_sample {
                Some(p) => p,
                None => {
                    held_out = profile_of(&others, runs, opts.alpha);
                    &held_out
                }
            };
            let widened = compare_loaded(a, b, &compare, Some(profile));
            for c in &plain.cells {
                let e = out.entry(c.config.clone()).or_default();
                e.comparisons += 1;
                e.requests.add(c.verdict);
            }
            for c in &widened.cells {
                out.entry(c.config.clone())
                    .or_default()
                    .widened
                    .add(c.verdict);
            }
        }
    }
    out
}

/// A bare profile of `some` runs (for judging others).
fn profile_of(some: &[&LoadedRun], all: &[LoadedRun], alpha: f64) -> NoiseProfile {
    NoiseProfile {
        profile_version: PROFILE_VERSION,
        scenario_name: String::new(),
        host: all[0].host().clone(),
        created_at: String::new(),
        runs: some.len(),
        run_ids: Vec::new(),
        alpha,
        reference_threshold: 0.0,
        cells: entries(some, alpha),
        false_alarms: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::load_run;
    use tcobench_results::testutil::{write_synthetic_run, SynthCell};

    /// Three runs of one cell whose means are 100, 110 and 120, each from two requests ±1.
    fn runs() -> (tempfile::TempDir, Vec<LoadedRun>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        for (k, m) in [100.0, 110.0, 120.0].into_iter().enumerate() {
            let dir = tmp.path().join(format!("r{k}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cells = [SynthCell {
                model: "m",
                batch: 1,
                tps: Some(vec![m - 1.0, m + 1.0]),
            }];
            write_synthetic_run(&dir, &format!("run-{k}"), &cells, false);
            out.push(load_run(&dir).unwrap());
        }
        (tmp, out)
    }

    #[test]
    fn profile_figures_by_hand() {
        let (_t, runs) = runs();
        let opts = ProfileOptions {
            bootstrap: Bootstrap {
                resamples: 2000,
                seed: 1,
            },
            ..ProfileOptions::default()
        };
        let p = NoiseProfile::build(&runs, &opts, "now".into()).unwrap();
        assert_eq!((p.runs, p.cells.len()), (3, 1));
        let m = &p.cells[0].metrics["tokens_per_s"];
        assert_eq!(m.runs, 3);
        assert!((m.mean - 110.0).abs() < 1e-12);
        assert!((m.sd_of_run_means - 10.0).abs() < 1e-12);
        assert!((m.cv_of_run_means - 10.0 / 110.0).abs() < 1e-12);
        // Each run: s² = 2, n = 2, so s²/n = 1 and the requests predict a spread of 1.
        assert!((m.cv_within - 1.0 / 110.0).abs() < 1e-12);
        assert!((m.cv_between - 99f64.sqrt() / 110.0).abs() < 1e-12);
        assert!((m.between_factor.unwrap() - 10.0).abs() < 1e-9);
        // t(0.95, 2) = 2.919986 (R: qt(0.95, 2)).
        let want = 2.919_985_580_4 * std::f64::consts::SQRT_2 * 10.0 / 110.0;
        assert!(
            (m.threshold - want).abs() < 1e-9,
            "{} vs {want}",
            m.threshold
        );
        // The requests see every pair as a significant change; widened by the between-run
        // variance, none is.
        let fa = m.false_alarms.unwrap();
        assert_eq!(fa.comparisons, 3);
        assert_eq!(fa.requests.improved, 3, "{fa:?}");
        assert_eq!(fa.widened.alarms(), 0, "{fa:?}");
        assert_eq!(p.false_alarms["tokens_per_s"], fa);
        assert!(p
            .entry(&runs[0].stats.cells[0].config, Metric::TokensPerS)
            .is_some());
        assert!(p
            .entry(&runs[0].stats.cells[0].config, Metric::EnergyJPerToken)
            .is_none());
    }

    #[test]
    fn too_few_runs_and_absorbing_a_newer_profile() {
        let (_t, runs) = runs();
        assert_eq!(
            NoiseProfile::build(&runs[..2], &ProfileOptions::default(), String::new()),
            Err(ProfileError::TooFewRuns(2))
        );
        let mut old = NoiseProfile::build(&runs, &ProfileOptions::default(), "old".into()).unwrap();
        let mut newer = old.clone();
        newer.created_at = "new".into();
        newer.scenario_name = "other".into();
        newer.cells[0]
            .metrics
            .get_mut("tokens_per_s")
            .unwrap()
            .threshold = 0.5;
        let mut extra = old.cells[0].clone();
        extra.config.batch_size = 9;
        old.cells.push(extra);
        old.absorb(newer);
        assert_eq!(old.created_at, "new");
        assert_eq!(old.scenario_name, "synthetic+other");
        assert_eq!(
            old.cells.len(),
            2,
            "the newer entry replaces, the other stays"
        );
        assert_eq!(old.cells[0].metrics["tokens_per_s"].threshold, 0.5);
    }
}
