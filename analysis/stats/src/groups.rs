//! k named groups of one metric in, every statistic a reviewer asks for out: per-group
//! descriptives with t and bootstrap CIs and outlier counts, all pairwise Welch and Student tests
//! with Holm- (or BH-) adjusted p and effect sizes, one-way and Welch ANOVA, Kruskal–Wallis.
//!
//! This is the one place that assembles [`crate::descriptive`] and [`crate::inference`] into the
//! `tcobench stats --json` shape; run analysis and `compare` reuse it. No formatting here.

use serde::{Deserialize, Serialize};

use crate::descriptive::Descriptives;
use crate::inference::{self, Adjust, Anova, Bootstrap, InferenceError, KruskalWallis, WelchAnova};

/// Scale that makes the MAD a consistent estimator of the standard deviation for normal data.
pub const MAD_SCALE: f64 = 1.4826;

/// How groups are analysed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupOptions {
    /// Seeded bootstrap settings (median CIs).
    pub bootstrap: Bootstrap,
    /// Multiple-comparison adjustment of the pairwise Welch p-values reported as `p_adj`;
    /// `p_holm` is always Holm.
    pub adjust: Adjust,
    /// Also report R's `pairwise.t.test` default: t-tests with the sd pooled over all groups
    /// (df = N − k), adjusted with `adjust`.
    pub pooled_pairwise: bool,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            bootstrap: Bootstrap::default(),
            adjust: Adjust::Holm,
            pooled_pairwise: false,
        }
    }
}

/// Outlier counts of one group (indices are listed too; nothing is dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierCounts {
    /// Between the 1.5×IQR and 3×IQR Tukey fences.
    pub mild: usize,
    /// Beyond the 3×IQR Tukey fences.
    pub severe: usize,
    /// Indices (within the group, in input order) of mild outliers.
    pub mild_indices: Vec<usize>,
    /// Indices of severe outliers.
    pub severe_indices: Vec<usize>,
    /// Largest robust z-score |x − median| / (1.4826·MAD); `None` when MAD = 0.
    pub max_robust_z: Option<f64>,
}

/// Descriptives of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// Observations.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation (n − 1); `None` for n = 1.
    pub sd: Option<f64>,
    /// Median.
    pub median: f64,
    /// Median absolute deviation × 1.4826.
    pub mad: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// 50th percentile (type 7).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Student-t 95 % CI of the mean; `None` for n = 1.
    pub ci95_mean: Option<[f64; 2]>,
    /// Seeded percentile-bootstrap 95 % CI of the median; `None` for n = 1.
    pub ci95_median: Option<[f64; 2]>,
    /// Outliers, counted and listed.
    pub outliers: OutlierCounts,
}

/// Welch's test of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchPair {
    /// t statistic of a − b.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p.
    pub p: f64,
    /// Holm-adjusted p over all pairs.
    pub p_holm: f64,
    /// p adjusted with the requested method (equal to `p_holm` by default).
    pub p_adj: f64,
    /// 95 % CI of mean(a) − mean(b).
    pub ci95_diff: [f64; 2],
}

/// Student's (pooled-variance) test of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StudentPair {
    /// t statistic of a − b.
    pub t: f64,
    /// n_a + n_b − 2.
    pub df: f64,
    /// Two-sided p.
    pub p: f64,
}

/// Everything about one pair (a before b in input order; differences are a − b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairwiseComparison {
    /// First group.
    pub a: String,
    /// Second group.
    pub b: String,
    /// Welch test; `None` when undefined (n < 2 or zero variance in both groups).
    pub welch: Option<WelchPair>,
    /// Student test; `None` when undefined.
    pub student: Option<StudentPair>,
    /// Cohen's d (pooled sd).
    pub cohens_d: Option<f64>,
    /// 95 % CI of Cohen's d (normal approximation).
    pub cohens_d_ci95: Option<[f64; 2]>,
    /// Relative change of means, (mean(b) − mean(a)) / mean(a).
    pub rel_change: Option<f64>,
    /// Seeded percentile-bootstrap 95 % CI of `rel_change` (each group resampled independently).
    pub rel_change_ci95: Option<[f64; 2]>,
    /// Hedges' g (small-sample corrected d).
    pub hedges_g: Option<f64>,
    /// 95 % CI of Hedges' g.
    pub hedges_g_ci95: Option<[f64; 2]>,
    /// Why a statistic is missing, when one is.
    pub note: Option<String>,
}

/// One pair of R's `pairwise.t.test` (pooled sd over all groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledPair {
    /// First group.
    pub a: String,
    /// Second group.
    pub b: String,
    /// p adjusted with the analysis' method.
    pub p_adj: f64,
}

/// The whole analysis of k groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAnalysis {
    /// Groups in order of first appearance.
    pub groups: Vec<GroupSummary>,
    /// All pairs (i < j).
    pub pairwise: Vec<PairwiseComparison>,
    /// Classic one-way ANOVA; `None` for fewer than 2 groups or when undefined.
    pub anova: Option<Anova>,
    /// Welch's ANOVA; `None` when undefined.
    pub welch_anova: Option<WelchAnova>,
    /// Kruskal–Wallis H test; `None` when undefined.
    pub kruskal_wallis: Option<KruskalWallis>,
    /// The bootstrap settings used (for reproduction).
    pub bootstrap: Bootstrap,
    /// The adjustment behind `p_adj`.
    pub adjust: Adjust,
    /// Pairwise t-tests with the sd pooled over all groups (R's `pairwise.t.test`), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise_pooled: Option<Vec<PooledPair>>,
    /// Why an omnibus test is missing, when one is.
    pub notes: Vec<String>,
}

/// Errors of [`analyze_groups`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GroupError {
    /// No groups at all.
    #[error("no groups to analyse")]
    Empty,
    /// A group has no observations.
    #[error("group `{0}` has no observations")]
    EmptyGroup(String),
    /// A group has fewer than the required observations.
    #[error("group `{name}` has {n} observation(s); at least {min} are needed")]
    TooSmall {
        /// Group name.
        name: String,
        /// Its size.
        n: usize,
        /// The minimum.
        min: usize,
    },
    /// A value is NaN or infinite.
    #[error("group `{0}` contains a non-finite value")]
    NonFinite(String),
}

/// The bootstrap settings of group `index`: the same resample count, and a seed derived from the
/// analysis seed and the group's position (SplitMix64-style mixing), so groups are resampled
/// from independent streams and one group's CI does not depend on the others.
pub fn group_bootstrap(bootstrap: &Bootstrap, index: usize) -> Bootstrap {
    let mut z = bootstrap
        .seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(index as u64 + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Bootstrap {
        resamples: bootstrap.resamples,
        seed: z ^ (z >> 31),
    }
}

/// Summarises one group (bootstrap with exactly the given settings).
pub fn summarize(
    name: &str,
    xs: &[f64],
    bootstrap: &Bootstrap,
) -> Result<GroupSummary, GroupError> {
    summarize_with_means(name, xs, bootstrap).map(|(s, _)| s)
}

/// Summarises one group and returns its resampled means too (empty for n = 1).
fn summarize_with_means(
    name: &str,
    xs: &[f64],
    bootstrap: &Bootstrap,
) -> Result<(GroupSummary, Vec<f64>), GroupError> {
    if xs.is_empty() {
        return Err(GroupError::EmptyGroup(name.to_string()));
    }
    let d = Descriptives::compute(xs).ok_or_else(|| GroupError::NonFinite(name.to_string()))?;
    let out = inference::outliers(xs).map_err(|_| GroupError::NonFinite(name.to_string()))?;
    let boot = if xs.len() >= 2 {
        inference::bootstrap_group(xs, bootstrap).ok()
    } else {
        None
    };
    let ci95_median = boot.as_ref().map(|b| b.ci95_median);
    let means = boot.map(|b| b.means).unwrap_or_default();
    let summary = GroupSummary {
        name: name.to_string(),
        n: d.n,
        mean: d.mean,
        sd: d.sd,
        median: d.median,
        mad: out.mad * MAD_SCALE,
        min: d.min,
        max: d.max,
        p50: d.p50,
        p90: d.p90,
        p95: d.p95,
        p99: d.p99,
        ci95_mean: d.ci95_mean,
        ci95_median,
        outliers: OutlierCounts {
            mild: out.mild.len(),
            severe: out.severe.len(),
            max_robust_z: out
                .robust_z
                .iter()
                .flatten()
                .copied()
                .fold(None, |m: Option<f64>, z| Some(m.map_or(z, |m| m.max(z)))),
            mild_indices: out.mild,
            severe_indices: out.severe,
        },
    };
    Ok((summary, means))
}

fn note(e: &InferenceError) -> String {
    e.to_string()
}

/// Keeps a statistic, or records why it is missing.
fn keep<T>(notes: &mut Vec<String>, name: &str, r: Result<T, InferenceError>) -> Option<T> {
    r.map_err(|e| notes.push(format!("{name}: {}", note(&e))))
        .ok()
}

/// Analyses named groups (in the given order). Every group needs at least `min_n` = 2
/// observations; statistics that are undefined for the data (zero variance…) are `None` with a
/// note rather than an error.
pub fn analyze_groups(
    groups: &[(String, Vec<f64>)],
    opts: &GroupOptions,
) -> Result<GroupAnalysis, GroupError> {
    if groups.is_empty() {
        return Err(GroupError::Empty);
    }
    for (name, xs) in groups {
        if xs.len() < 2 {
            return Err(GroupError::TooSmall {
                name: name.clone(),
                n: xs.len(),
                min: 2,
            });
        }
        if xs.iter().any(|x| !x.is_finite()) {
            return Err(GroupError::NonFinite(name.clone()));
        }
    }
    let (summaries, means): (Vec<GroupSummary>, Vec<Vec<f64>>) = groups
        .iter()
        .enumerate()
        .map(|(i, (name, xs))| summarize_with_means(name, xs, &group_bootstrap(&opts.bootstrap, i)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();

    let mut pairwise = Vec::new();
    let mut welch_p = Vec::new();
    for i in 0..groups.len() {
        for j in i + 1..groups.len() {
            let (a, b) = (&groups[i].1, &groups[j].1);
            let mut notes = Vec::new();
            let welch = inference::welch_t_test(a, b)
                .map_err(|e| notes.push(format!("Welch: {}", note(&e))));
            let student = inference::student_t_test(a, b)
                .map_err(|e| notes.push(format!("Student: {}", note(&e))));
            let d = inference::cohens_d(a, b)
                .map_err(|e| notes.push(format!("effect size: {}", note(&e))));
            let g = inference::hedges_g(a, b).ok();
            welch_p.push(welch.as_ref().map(|w| w.p).unwrap_or(f64::NAN));
            let (mean_a, mean_b) = (summaries[i].mean, summaries[j].mean);
            let rel_change = (mean_a != 0.0).then(|| (mean_b - mean_a) / mean_a);
            let rel_change_ci95 = rel_change.and_then(|_| {
                inference::relative_change_ci(&means[i], &means[j])
                    .map_err(|e| notes.push(format!("relative change: {}", note(&e))))
                    .ok()
            });
            pairwise.push(PairwiseComparison {
                a: groups[i].0.clone(),
                b: groups[j].0.clone(),
                welch: welch.ok().map(|w| WelchPair {
                    t: w.t,
                    df: w.df,
                    p: w.p,
                    p_holm: f64::NAN,
                    p_adj: f64::NAN,
                    ci95_diff: w.ci95_diff,
                }),
                student: student.ok().map(|s| StudentPair {
                    t: s.t,
                    df: s.df,
                    p: s.p,
                }),
                rel_change,
                rel_change_ci95,
                cohens_d: d.as_ref().ok().map(|d| d.estimate),
                cohens_d_ci95: d.as_ref().ok().map(|d| d.ci95),
                hedges_g: g.map(|g| g.estimate),
                hedges_g_ci95: g.map(|g| g.ci95),
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            });
        }
    }
    // NaN p-values (undefined tests) are left out of the family, as R's p.adjust does with NA.
    let holm = inference::p_adjust(&welch_p, Adjust::Holm);
    let adj = inference::p_adjust(&welch_p, opts.adjust);
    for (k, pair) in pairwise.iter_mut().enumerate() {
        if let Some(w) = pair.welch.as_mut() {
            w.p_holm = holm[k];
            w.p_adj = adj[k];
        }
    }

    let mut notes = Vec::new();
    let slices: Vec<&[f64]> = groups.iter().map(|(_, xs)| xs.as_slice()).collect();
    let pairwise_pooled = if opts.pooled_pairwise && groups.len() >= 2 {
        keep(
            &mut notes,
            "pooled pairwise t-tests",
            inference::pairwise_t_pooled_with(&slices, opts.adjust),
        )
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(i, j, p)| PooledPair {
                    a: groups[i].0.clone(),
                    b: groups[j].0.clone(),
                    p_adj: p,
                })
                .collect()
        })
    } else {
        None
    };
    let (anova, welch_anova, kruskal_wallis) = if groups.len() >= 2 {
        (
            keep(&mut notes, "ANOVA", inference::one_way_anova(&slices)),
            keep(&mut notes, "Welch ANOVA", inference::welch_anova(&slices)),
            keep(
                &mut notes,
                "Kruskal–Wallis",
                inference::kruskal_wallis(&slices),
            ),
        )
    } else {
        notes.push("one group: no between-group tests".into());
        (None, None, None)
    };
    Ok(GroupAnalysis {
        groups: summaries,
        pairwise,
        anova,
        welch_anova,
        kruskal_wallis,
        bootstrap: opts.bootstrap,
        adjust: opts.adjust,
        pairwise_pooled,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// R's `sleep` and `PlantGrowth` data through the assembled analysis.
    #[test]
    fn assembles_the_published_references() {
        let sleep = vec![
            (
                "1".to_string(),
                vec![0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0],
            ),
            (
                "2".to_string(),
                vec![1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4],
            ),
        ];
        let a = analyze_groups(&sleep, &GroupOptions::default()).unwrap();
        let p = &a.pairwise[0];
        let w = p.welch.unwrap();
        assert!(close(w.t, -1.860813, 1e-6), "{}", w.t);
        assert!(close(w.df, 17.77647, 1e-6), "{}", w.df);
        assert_eq!(w.p, w.p_holm, "one pair: Holm is the identity");
        assert!(close(p.cohens_d.unwrap(), -0.8321811, 1e-6));
        assert!(close(p.hedges_g.unwrap(), -0.7970185, 1e-6));
        assert!(close(p.student.unwrap().df, 18.0, 1e-12));
        // Relative change (mean2 − mean1) / mean1 = (2.33 − 0.75) / 0.75, CI around it.
        let rel = p.rel_change.unwrap();
        assert!(close(rel, (2.33 - 0.75) / 0.75, 1e-12), "{rel}");
        // Group 1 mixes signs: some resampled baseline means are exactly 0, so the bootstrap of a
        // ratio is undefined; it is reported missing with the reason, not as a number.
        assert!(p.rel_change_ci95.is_none());
        assert!(p.note.as_deref().unwrap().contains("relative change"));
        // Seeded: the same analysis twice is identical; groups use independent streams.
        let again = analyze_groups(&sleep, &GroupOptions::default()).unwrap();
        assert_eq!(a, again);
        assert_ne!(
            group_bootstrap(&Bootstrap::default(), 0).seed,
            group_bootstrap(&Bootstrap::default(), 1).seed
        );

        let plant = vec![
            (
                "ctrl".to_string(),
                vec![4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14],
            ),
            (
                "trt1".to_string(),
                vec![4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69],
            ),
            (
                "trt2".to_string(),
                vec![6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26],
            ),
        ];
        let a = analyze_groups(&plant, &GroupOptions::default()).unwrap();
        let anova = a.anova.unwrap();
        assert!(close(anova.f, 4.846088, 1e-6), "{}", anova.f);
        assert_eq!((anova.df_between, anova.df_within), (2.0, 27.0));
        assert!(close(a.kruskal_wallis.unwrap().h, 7.988229, 1e-6));
        assert!(close(a.welch_anova.unwrap().f, 5.180972, 1e-5));
        let names: Vec<_> = a
            .pairwise
            .iter()
            .map(|p| (p.a.as_str(), p.b.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("ctrl", "trt1"), ("ctrl", "trt2"), ("trt1", "trt2")]
        );
        // Holm never lowers a p-value and keeps the order of the raw ones.
        for p in &a.pairwise {
            let w = p.welch.unwrap();
            assert!(w.p_holm >= w.p && w.p_holm <= 1.0);
        }
        assert_eq!(a.groups[0].name, "ctrl");
        // R: pairwise.t.test(weight, group) (pooled sd, Holm): 0.194 / 0.175 / 0.013.
        assert!(a.pairwise_pooled.is_none(), "only on request");
        let pooled = analyze_groups(
            &plant,
            &GroupOptions {
                pooled_pairwise: true,
                ..GroupOptions::default()
            },
        )
        .unwrap()
        .pairwise_pooled
        .unwrap();
        let ps: Vec<f64> = pooled.iter().map(|p| p.p_adj).collect();
        for (got, r) in ps.iter().zip([0.194, 0.175, 0.013]) {
            assert!((got - r).abs() < 0.0005, "{ps:?}");
        }
        assert_eq!(
            (pooled[2].a.as_str(), pooled[2].b.as_str()),
            ("trt1", "trt2")
        );
        // ctrl → trt2: (5.526 − 5.032) / 5.032, with a bootstrap CI around it.
        let p = &a.pairwise[1];
        let rel = p.rel_change.unwrap();
        assert!(close(rel, (5.526 - 5.032) / 5.032, 1e-9), "{rel}");
        let [lo, hi] = p.rel_change_ci95.unwrap();
        assert!(lo < rel && rel < hi && lo > 0.0, "[{lo}, {hi}]");
        assert!(close(a.groups[0].mean, 5.032, 1e-9));
    }

    #[test]
    fn mad_is_scaled_and_outliers_are_counted_not_dropped() {
        let xs = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1000.0];
        let s = summarize(
            "g",
            &xs,
            &Bootstrap {
                resamples: 500,
                seed: 1,
            },
        )
        .unwrap();
        assert_eq!(s.n, 10, "nothing dropped");
        assert_eq!(s.outliers.severe, 1);
        assert_eq!(s.outliers.severe_indices, vec![9]);
        // median 5.5; |x − 5.5| median = 2.5; × 1.4826.
        assert!(close(s.mad, 2.5 * MAD_SCALE, 1e-12), "{}", s.mad);
        let [lo, hi] = s.ci95_median.unwrap();
        assert!(lo <= s.median && s.median <= hi);
    }

    #[test]
    fn zero_variance_is_a_note_not_a_failure() {
        let g = vec![
            ("a".to_string(), vec![1.0, 1.0, 1.0]),
            ("b".to_string(), vec![1.0, 1.0, 1.0]),
        ];
        let a = analyze_groups(&g, &GroupOptions::default()).unwrap();
        assert!(a.pairwise[0].welch.is_none());
        assert!(a.pairwise[0].note.is_some());
        assert!(
            a.groups[0].outliers.max_robust_z.is_none(),
            "MAD = 0 is guarded"
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            analyze_groups(&[], &GroupOptions::default()),
            Err(GroupError::Empty)
        );
        let one = vec![("a".to_string(), vec![1.0])];
        assert!(matches!(
            analyze_groups(&one, &GroupOptions::default()),
            Err(GroupError::TooSmall { n: 1, .. })
        ));
        let nan = vec![("a".to_string(), vec![1.0, f64::NAN])];
        assert!(matches!(
            analyze_groups(&nan, &GroupOptions::default()),
            Err(GroupError::NonFinite(_))
        ));
    }
}
