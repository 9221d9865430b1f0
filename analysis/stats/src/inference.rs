//! Statistical inference for comparing benchmark runs.
//!
//! Pure functions only: no formatting, no I/O. Every function validates its input and returns an
//! [`InferenceError`] instead of a meaningless number when the input is degenerate (too few
//! observations, zero variance, non-finite values).
//!
//! What is here:
//!
//! * two-sample *t*-tests: [`welch_t_test`] (unequal variances) and [`student_t_test`] (pooled
//!   variance), with a 95 % confidence interval for the difference of means `a − b`;
//! * standardized effect sizes with normal-approximation 95 % intervals: [`cohens_d`],
//!   [`hedges_g`];
//! * k-sample tests: [`one_way_anova`], [`welch_anova`] (R's `oneway.test`), [`kruskal_wallis`];
//! * multiplicity: [`p_adjust`] (R's `p.adjust` for `"holm"`, `"BH"`, `"none"`) and
//!   [`pairwise_t_pooled`] (R's `pairwise.t.test` default);
//! * seeded, reproducible percentile bootstraps: [`bootstrap_ci_median`],
//!   [`bootstrap_ci_relative_change`];
//! * outlier screening by Tukey fences and robust z-scores: [`outliers`];
//! * a decision rule combining significance and practical relevance: [`regression_verdict`].
//!
//! Quantiles are type 7 (the default of R and NumPy), from [`crate::descriptive::quantile_sorted`].
//! Two-sided *p*-values are computed from the distributions' survival functions (`sf`), not as
//! `1 − cdf`, so small *p*-values keep their relative precision.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, FisherSnedecor, Normal, StudentsT};

use crate::descriptive;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// A group (0-based index `group`) has fewer observations than the statistic needs.
    #[error("group {group} has too few observations ({n}) for this statistic")]
    TooFewObservations {
        /// Index of the offending group (0 for a one-sample statistic; for two-sample
        /// functions, 0 is `a`/`base` and 1 is `b`/`new`).
        group: usize,
        /// Number of observations the group has.
        n: usize,
    },
    /// Fewer groups than the test needs (at least two).
    #[error("{k} group(s) given; at least 2 are needed")]
    TooFewGroups {
        /// Number of groups given.
        k: usize,
    },
    /// Every group is large enough on its own but the pooled residual degrees of freedom
    /// (total observations minus number of groups) are zero.
    #[error("no residual degrees of freedom ({n} observations in {k} groups)")]
    NoResidualDf {
        /// Total number of observations.
        n: usize,
        /// Number of groups.
        k: usize,
    },
    /// The variance the statistic divides by is zero (e.g. all observations equal).
    #[error("zero variance: the statistic is undefined")]
    ZeroVariance,
    /// An input value (or a derived quantity) is NaN or infinite.
    #[error("non-finite value in input or intermediate result")]
    NonFinite,
    /// The baseline mean is zero, so a relative change is undefined.
    #[error("baseline mean is zero: relative change is undefined")]
    ZeroMean,
    /// An argument outside its valid range (the message names it).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

/// Result of a two-sample *t*-test. All differences are `a − b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// The *t* statistic, `(mean(a) − mean(b)) / se`.
    pub t: f64,
    /// Degrees of freedom (Welch–Satterthwaite for [`welch_t_test`], `na + nb − 2` for
    /// [`student_t_test`]).
    pub df: f64,
    /// Two-sided *p*-value.
    pub p: f64,
    /// `mean(a) − mean(b)`.
    pub mean_diff: f64,
    /// 95 % confidence interval for `mean(a) − mean(b)`, `[low, high]`.
    pub ci95_diff: [f64; 2],
}

/// A standardized effect size with a 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffectSize {
    /// Point estimate (sign follows `a − b`).
    pub estimate: f64,
    /// 95 % confidence interval, `[low, high]` (normal approximation; see [`cohens_d`]).
    pub ci95: [f64; 2],
}

/// Result of the classical one-way ANOVA *F*-test (equal variances assumed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Anova {
    /// *F* statistic: between-group mean square over within-group mean square.
    pub f: f64,
    /// Between-group degrees of freedom, `k − 1`.
    pub df_between: f64,
    /// Within-group degrees of freedom, `N − k`.
    pub df_within: f64,
    /// *p*-value, upper tail of `F(df_between, df_within)`.
    pub p: f64,
}

/// Result of Welch's heteroscedastic one-way ANOVA (R's `oneway.test(var.equal = FALSE)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchAnova {
    /// Welch's *F* statistic.
    pub f: f64,
    /// Numerator degrees of freedom, `k − 1`.
    pub df1: f64,
    /// Denominator degrees of freedom (fractional).
    pub df2: f64,
    /// *p*-value, upper tail of `F(df1, df2)`.
    pub p: f64,
}

/// Result of the Kruskal–Wallis rank-sum test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KruskalWallis {
    /// Tie-corrected *H* statistic.
    pub h: f64,
    /// Degrees of freedom, `k − 1`.
    pub df: f64,
    /// *p*-value, upper tail of `χ²(df)`.
    pub p: f64,
}

/// Multiple-comparison adjustment for [`p_adjust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Adjust {
    /// Holm's step-down family-wise error rate control (R `"holm"`).
    Holm,
    /// Benjamini–Hochberg false discovery rate control (R `"BH"` / `"fdr"`).
    BenjaminiHochberg,
    /// No adjustment (R `"none"`).
    None,
}

/// Settings of a seeded bootstrap.
///
/// The same `resamples` and `seed` always give bit-identical results, on any machine and with
/// any number of threads (see [`bootstrap_ci_median`] for how the random streams are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Number of bootstrap resamples (at least 1; 2 000 or more for a 95 % interval).
    pub resamples: usize,
    /// Seed of the random streams.
    pub seed: u64,
}

impl Default for Bootstrap {
    /// 10 000 resamples, seed `0x7C0B_E4C4`.
    fn default() -> Self {
        Self {
            resamples: 10_000,
            seed: 0x7C0B_E4C4,
        }
    }
}

/// Outlier screening of one sample: Tukey fences and robust z-scores.
///
/// Fences are `q1 − c·iqr` and `q3 + c·iqr` with `c = 1.5` (mild) and `c = 3` (severe);
/// quartiles are type-7 quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outliers {
    /// First quartile (type 7).
    pub q1: f64,
    /// Third quartile (type 7).
    pub q3: f64,
    /// Interquartile range, `q3 − q1`.
    pub iqr: f64,
    /// Sample median.
    pub median: f64,
    /// Raw median absolute deviation, `median(|x − median|)` (not scaled by 1.4826).
    pub mad: f64,
    /// Lower mild fence, `q1 − 1.5·iqr`.
    pub mild_low: f64,
    /// Upper mild fence, `q3 + 1.5·iqr`.
    pub mild_high: f64,
    /// Lower severe fence, `q1 − 3·iqr`.
    pub severe_low: f64,
    /// Upper severe fence, `q3 + 3·iqr`.
    pub severe_high: f64,
    /// Indices (ascending) of mild outliers: strictly outside a mild fence but not outside the
    /// matching severe fence.
    pub mild: Vec<usize>,
    /// Indices (ascending) of severe outliers: strictly outside a severe fence.
    pub severe: Vec<usize>,
    /// Robust z-score per observation, `|x − median| / (1.4826·MAD)`; all `None` when MAD = 0
    /// (more than half the observations are identical), since the score is then undefined.
    pub robust_z: Vec<Option<f64>>,
}

/// Outcome of comparing a new run with a baseline; see [`regression_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Significant, and the whole interval lies beyond the threshold in the good direction.
    Improved,
    /// Significant, and the whole interval lies beyond the threshold in the bad direction.
    Regressed,
    /// Not statistically significant.
    NoChange,
    /// Statistically significant, but the interval reaches into the ±threshold band, so the
    /// change is not shown to be practically relevant.
    WithinNoise,
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn check_finite(x: &[f64]) -> Result<(), InferenceError> {
    if x.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(InferenceError::NonFinite)
    }
}

fn check_group(x: &[f64], group: usize, min_n: usize) -> Result<(), InferenceError> {
    if x.len() < min_n {
        return Err(InferenceError::TooFewObservations { group, n: x.len() });
    }
    check_finite(x)
}

/// Mean and sum of squared deviations from the mean (two-pass). `x` must be non-empty.
fn mean_ss(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
    (mean, ss)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn finite(v: f64) -> Result<f64, InferenceError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(InferenceError::NonFinite)
    }
}

fn students_t(df: f64) -> Result<StudentsT, InferenceError> {
    StudentsT::new(0.0, 1.0, df).map_err(|_| InferenceError::NonFinite)
}

/// Two-sided *p*-value of a *t* statistic, from the survival function.
fn t_two_sided(t: f64, df: f64) -> Result<f64, InferenceError> {
    Ok((2.0 * students_t(df)?.sf(t.abs())).min(1.0))
}

fn f_upper(f: f64, df1: f64, df2: f64) -> Result<f64, InferenceError> {
    let dist = FisherSnedecor::new(df1, df2).map_err(|_| InferenceError::NonFinite)?;
    Ok(dist.sf(f).clamp(0.0, 1.0))
}

/// The 0.975 quantile of the standard normal distribution.
fn z975() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

/// Type-7 quantile of an ascending, non-empty slice via [`crate::descriptive::quantile_sorted`] (the
/// crate's single quantile implementation); non-finite data → [`InferenceError::NonFinite`].
fn quantile7(sorted: &[f64], p: f64) -> Result<f64, InferenceError> {
    descriptive::quantile_sorted(sorted, p).ok_or(InferenceError::NonFinite)
}

/// Median of a non-empty, NaN-free slice by quickselect (reorders `v`); bit-identical to the
/// type-7 quantile at 0.5 of [`crate::descriptive::quantile_sorted`], but O(n) instead of a sort.
/// (The bootstrap counts ranks instead, see `RankCounter`; this is its test reference.)
#[cfg(test)]
fn median_select(v: &mut [f64]) -> f64 {
    let n = v.len();
    let m = n / 2;
    let (below, x_m, _) = v.select_nth_unstable_by(m, f64::total_cmp);
    let x_m = *x_m;
    if n % 2 == 1 {
        x_m
    } else {
        let x_below = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        x_below + 0.5 * (x_m - x_below)
    }
}

// ---------------------------------------------------------------------------------------------
// Two-sample t-tests and effect sizes
// ---------------------------------------------------------------------------------------------

/// Welch's unequal-variance two-sample *t*-test (R `t.test(a, b)`, SciPy
/// `ttest_ind(a, b, equal_var=False)`).
///
/// `se = sqrt(va/na + vb/nb)`, `t = (mean(a) − mean(b)) / se`, and the Welch–Satterthwaite
/// degrees of freedom `df = se⁴ / ((va/na)²/(na−1) + (vb/nb)²/(nb−1))`. The 95 % interval is
/// `mean_diff ± t₀.₉₇₅(df)·se`.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] if a group has fewer than 2 values,
/// [`InferenceError::NonFinite`] for NaN/∞ input, [`InferenceError::ZeroVariance`] if both groups
/// are constant.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Result<TTest, InferenceError> {
    check_group(a, 0, 2)?;
    check_group(b, 1, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, ssa) = mean_ss(a);
    let (mb, ssb) = mean_ss(b);
    let qa = ssa / (na - 1.0) / na;
    let qb = ssb / (nb - 1.0) / nb;
    let se2 = qa + qb;
    if se2 <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let se = se2.sqrt();
    let df = finite(se2 * se2 / (qa * qa / (na - 1.0) + qb * qb / (nb - 1.0)))?;
    t_result(ma - mb, se, df)
}

/// Student's pooled-variance two-sample *t*-test (R `t.test(a, b, var.equal = TRUE)`).
///
/// `sp² = (ssa + ssb) / (na + nb − 2)`, `se = sp·sqrt(1/na + 1/nb)`, `df = na + nb − 2`.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] if a group is empty or both have one value only,
/// [`InferenceError::NonFinite`] for NaN/∞ input, [`InferenceError::ZeroVariance`] if the pooled
/// variance is zero.
pub fn student_t_test(a: &[f64], b: &[f64]) -> Result<TTest, InferenceError> {
    let (ma, mb, sp, na, nb) = pooled(a, b)?;
    let se = sp * (1.0 / na + 1.0 / nb).sqrt();
    t_result(ma - mb, se, na + nb - 2.0)
}

fn t_result(diff: f64, se: f64, df: f64) -> Result<TTest, InferenceError> {
    let t = finite(diff / se)?;
    let p = t_two_sided(t, df)?;
    let q = students_t(df)?.inverse_cdf(0.975);
    Ok(TTest {
        t,
        df,
        p,
        mean_diff: diff,
        ci95_diff: [diff - q * se, diff + q * se],
    })
}

/// Validates two groups for pooled statistics and returns `(ma, mb, sp, na, nb)`.
fn pooled(a: &[f64], b: &[f64]) -> Result<(f64, f64, f64, f64, f64), InferenceError> {
    check_group(a, 0, 1)?;
    check_group(b, 1, 1)?;
    if a.len() + b.len() < 3 {
        return Err(InferenceError::TooFewObservations {
            group: 0,
            n: a.len(),
        });
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, ssa) = mean_ss(a);
    let (mb, ssb) = mean_ss(b);
    let sp2 = (ssa + ssb) / (na + nb - 2.0);
    if sp2 <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    Ok((ma, mb, sp2.sqrt(), na, nb))
}

/// Cohen's *d* with the pooled standard deviation: `d = (mean(a) − mean(b)) / sp`,
/// `sp² = ((na−1)·va + (nb−1)·vb) / (na + nb − 2)`.
///
/// The 95 % interval is the normal approximation `d ± z₀.₉₇₅·SE(d)` with (Hedges & Olkin 1985)
///
/// ```text
/// SE(d) = sqrt( (na + nb) / (na·nb) + d² / (2·(na + nb)) )
/// ```
///
/// # Errors
/// As for [`student_t_test`].
pub fn cohens_d(a: &[f64], b: &[f64]) -> Result<EffectSize, InferenceError> {
    let (ma, mb, sp, na, nb) = pooled(a, b)?;
    let d = finite((ma - mb) / sp)?;
    let se = d_standard_error(d, na, nb);
    let z = z975();
    Ok(EffectSize {
        estimate: d,
        ci95: [d - z * se, d + z * se],
    })
}

/// Hedges' *g*: Cohen's *d* times the small-sample correction `J = 1 − 3 / (4·(na + nb − 2) − 1)`.
///
/// The 95 % interval is `g ± z₀.₉₇₅·J·SE(d)`, with `SE(d)` as in [`cohens_d`] evaluated at the
/// uncorrected *d* (the variance of *g* is `J²·Var(d)`; Borenstein et al. 2009, ch. 4).
///
/// # Errors
/// As for [`student_t_test`].
pub fn hedges_g(a: &[f64], b: &[f64]) -> Result<EffectSize, InferenceError> {
    let d = cohens_d(a, b)?.estimate;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let j = 1.0 - 3.0 / (4.0 * (na + nb - 2.0) - 1.0);
    let g = j * d;
    let se = j * d_standard_error(d, na, nb);
    let z = z975();
    Ok(EffectSize {
        estimate: g,
        ci95: [g - z * se, g + z * se],
    })
}

fn d_standard_error(d: f64, na: f64, nb: f64) -> f64 {
    ((na + nb) / (na * nb) + d * d / (2.0 * (na + nb))).sqrt()
}

// ---------------------------------------------------------------------------------------------
// k-sample tests
// ---------------------------------------------------------------------------------------------

fn check_groups(groups: &[&[f64]], min_n: usize) -> Result<(), InferenceError> {
    if groups.len() < 2 {
        return Err(InferenceError::TooFewGroups { k: groups.len() });
    }
    for (i, g) in groups.iter().enumerate() {
        check_group(g, i, min_n)?;
    }
    Ok(())
}

/// Size, mean and sum of squared deviations of one group.
#[derive(Debug, Clone, Copy)]
struct GroupSummary {
    n: f64,
    mean: f64,
    ss: f64,
}

/// Per-group summaries and the pooled residual sum of squares, after checking that there are at
/// least 2 groups, each non-empty, with `N − k ≥ 1`.
fn group_summaries(groups: &[&[f64]]) -> Result<(Vec<GroupSummary>, f64), InferenceError> {
    check_groups(groups, 1)?;
    let n_total: usize = groups.iter().map(|g| g.len()).sum();
    if n_total <= groups.len() {
        return Err(InferenceError::NoResidualDf {
            n: n_total,
            k: groups.len(),
        });
    }
    let summaries: Vec<GroupSummary> = groups
        .iter()
        .map(|g| {
            let (mean, ss) = mean_ss(g);
            GroupSummary {
                n: g.len() as f64,
                mean,
                ss,
            }
        })
        .collect();
    let ss_within = summaries.iter().map(|s| s.ss).sum();
    Ok((summaries, ss_within))
}

/// Classical one-way ANOVA (R `anova(lm(y ~ g))`, SciPy `f_oneway`).
///
/// `F = (SSB / (k − 1)) / (SSW / (N − k))`.
///
/// # Errors
/// [`InferenceError::TooFewGroups`] for fewer than 2 groups, [`InferenceError::TooFewObservations`]
/// for an empty group, [`InferenceError::NoResidualDf`] when `N = k`,
/// [`InferenceError::NonFinite`] for NaN/∞ input, [`InferenceError::ZeroVariance`] when every
/// group is constant.
pub fn one_way_anova(groups: &[&[f64]]) -> Result<Anova, InferenceError> {
    let (s, ss_within) = group_summaries(groups)?;
    if ss_within <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let n_total: f64 = s.iter().map(|g| g.n).sum();
    let grand = s.iter().map(|g| g.n * g.mean).sum::<f64>() / n_total;
    let ss_between: f64 = s
        .iter()
        .map(|g| g.n * (g.mean - grand) * (g.mean - grand))
        .sum();
    let df_between = (s.len() - 1) as f64;
    let df_within = n_total - s.len() as f64;
    let f = finite((ss_between / df_between) / (ss_within / df_within))?;
    Ok(Anova {
        f,
        df_between,
        df_within,
        p: f_upper(f, df_between, df_within)?,
    })
}

/// Welch's heteroscedastic one-way ANOVA (Welch 1951; R `oneway.test(y ~ g)`).
///
/// With `wᵢ = nᵢ / sᵢ²`, `W = Σwᵢ`, `m̄ = Σwᵢmᵢ / W` and `λ = Σ (1 − wᵢ/W)² / (nᵢ − 1)`:
///
/// ```text
/// F   = [Σ wᵢ (mᵢ − m̄)² / (k − 1)] / [1 + 2 (k − 2) λ / (k² − 1)]
/// df1 = k − 1,   df2 = (k² − 1) / (3 λ)
/// ```
///
/// # Errors
/// [`InferenceError::TooFewGroups`], [`InferenceError::TooFewObservations`] (a group with fewer
/// than 2 values), [`InferenceError::NonFinite`], [`InferenceError::ZeroVariance`] (any group
/// constant: its weight would be infinite).
pub fn welch_anova(groups: &[&[f64]]) -> Result<WelchAnova, InferenceError> {
    check_groups(groups, 2)?;
    let k = groups.len() as f64;
    // (n, mean, weight = n / variance) per group.
    let mut per_group = Vec::with_capacity(groups.len());
    for g in groups {
        let n = g.len() as f64;
        let (m, ss) = mean_ss(g);
        let var = ss / (n - 1.0);
        if var <= 0.0 {
            return Err(InferenceError::ZeroVariance);
        }
        per_group.push((n, m, n / var));
    }
    let w_sum: f64 = per_group.iter().map(|&(_, _, w)| w).sum();
    let m_w = per_group.iter().map(|&(_, m, w)| w * m).sum::<f64>() / w_sum;
    let a = per_group
        .iter()
        .map(|&(_, m, w)| w * (m - m_w) * (m - m_w))
        .sum::<f64>()
        / (k - 1.0);
    let lambda: f64 = per_group
        .iter()
        .map(|&(n, _, w)| {
            let r = 1.0 - w / w_sum;
            r * r / (n - 1.0)
        })
        .sum();
    let b = 1.0 + 2.0 * (k - 2.0) * lambda / (k * k - 1.0);
    let f = finite(a / b)?;
    let df1 = k - 1.0;
    let df2 = finite((k * k - 1.0) / (3.0 * lambda))?;
    Ok(WelchAnova {
        f,
        df1,
        df2,
        p: f_upper(f, df1, df2)?,
    })
}

/// Kruskal–Wallis rank-sum test (R `kruskal.test`, SciPy `kruskal`).
///
/// Tied values get their average rank; the statistic is divided by the tie correction
/// `C = 1 − Σ(t³ − t) / (N³ − N)` over tie groups of size `t`. The *p*-value uses the
/// `χ²(k − 1)` approximation.
///
/// # Errors
/// [`InferenceError::TooFewGroups`], [`InferenceError::TooFewObservations`] (an empty group),
/// [`InferenceError::NonFinite`], [`InferenceError::ZeroVariance`] (all values identical).
pub fn kruskal_wallis(groups: &[&[f64]]) -> Result<KruskalWallis, InferenceError> {
    check_groups(groups, 1)?;
    let mut pooled: Vec<(f64, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.iter().map(move |&v| (v, i)))
        .collect();
    pooled.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len() as f64;
    let mut rank_sums = vec![0.0_f64; groups.len()];
    let mut ties = 0.0_f64;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) → average 1-based rank.
        let avg = (start + end + 1) as f64 / 2.0;
        for &(_, g) in &pooled[start..end] {
            rank_sums[g] += avg;
        }
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    let correction = 1.0 - ties / (n * n * n - n);
    if correction <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let sum_term: f64 = rank_sums
        .iter()
        .zip(groups)
        .map(|(r, g)| r * r / g.len() as f64)
        .sum();
    let h = finite(((12.0 / (n * (n + 1.0)) * sum_term - 3.0 * (n + 1.0)) / correction).max(0.0))?;
    let df = (groups.len() - 1) as f64;
    let chi = ChiSquared::new(df).map_err(|_| InferenceError::NonFinite)?;
    Ok(KruskalWallis {
        h,
        df,
        p: chi.sf(h).clamp(0.0, 1.0),
    })
}

// ---------------------------------------------------------------------------------------------
// Multiplicity
// ---------------------------------------------------------------------------------------------

/// Adjusts *p*-values for multiple comparisons, exactly as R's `p.adjust`.
///
/// The output has the input's order. Adjusted values are monotone in the raw values and capped
/// at 1. With `m` the number of non-NaN inputs and `p₍ᵢ₎` the i-th smallest:
///
/// * Holm: `p̃₍ᵢ₎ = min(1, max_{j ≤ i} (m − j + 1)·p₍ⱼ₎)`;
/// * Benjamini–Hochberg: `p̃₍ᵢ₎ = min(1, min_{j ≥ i} m/j·p₍ⱼ₎)`;
/// * None: unchanged.
///
/// NaN entries (R's `NA`) stay NaN and do not count towards `m`.
pub fn p_adjust(ps: &[f64], method: Adjust) -> Vec<f64> {
    let mut out = ps.to_vec();
    let mut idx: Vec<usize> = (0..ps.len()).filter(|&i| !ps[i].is_nan()).collect();
    let m = idx.len() as f64;
    match method {
        Adjust::None => {}
        Adjust::Holm => {
            idx.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
            let mut running = f64::NEG_INFINITY;
            for (rank, &i) in idx.iter().enumerate() {
                running = running.max((m - rank as f64) * ps[i]);
                out[i] = running.min(1.0);
            }
        }
        Adjust::BenjaminiHochberg => {
            idx.sort_by(|&i, &j| ps[j].total_cmp(&ps[i]));
            let mut running = f64::INFINITY;
            for (rank, &i) in idx.iter().enumerate() {
                let position = m - rank as f64; // 1-based rank in ascending order
                running = running.min(m / position * ps[i]);
                out[i] = running.min(1.0);
            }
        }
    }
    out
}

/// All pairwise *t*-tests with the standard deviation pooled over **all** groups and Holm
/// adjustment: R's `pairwise.t.test(y, g)` default (`pool.sd = TRUE`, `p.adjust.method =
/// "holm"`). Equivalent to [`pairwise_t_pooled_with`]`(groups, Adjust::Holm)`.
///
/// Returns `(i, j, adjusted p)` for every pair `i < j`, in the order (0,1), (0,2), …, (1,2), ….
///
/// # Errors
/// As for [`one_way_anova`].
pub fn pairwise_t_pooled(groups: &[&[f64]]) -> Result<Vec<(usize, usize, f64)>, InferenceError> {
    pairwise_t_pooled_with(groups, Adjust::Holm)
}

/// All pairwise pooled-sd *t*-tests (see [`pairwise_t_pooled`]) with a chosen adjustment.
///
/// For groups `i`, `j`: `t = (mᵢ − mⱼ) / (s·sqrt(1/nᵢ + 1/nⱼ))` with `s² = Σ SSᵢ / (N − k)` over
/// all `k` groups and `df = N − k`; two-sided *p*-values, then [`p_adjust`] over all pairs.
///
/// # Errors
/// As for [`one_way_anova`].
pub fn pairwise_t_pooled_with(
    groups: &[&[f64]],
    adjust: Adjust,
) -> Result<Vec<(usize, usize, f64)>, InferenceError> {
    let (s, ss_within) = group_summaries(groups)?;
    if ss_within <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let n_total: f64 = s.iter().map(|g| g.n).sum();
    let df = n_total - s.len() as f64;
    let sd = (ss_within / df).sqrt();
    let mut pairs = Vec::new();
    let mut raw = Vec::new();
    for i in 0..s.len() {
        for j in i + 1..s.len() {
            let se = sd * (1.0 / s[i].n + 1.0 / s[j].n).sqrt();
            let t = finite((s[i].mean - s[j].mean) / se)?;
            pairs.push((i, j));
            raw.push(t_two_sided(t, df)?);
        }
    }
    let adjusted = p_adjust(&raw, adjust);
    Ok(pairs
        .into_iter()
        .zip(adjusted)
        .map(|((i, j), p)| (i, j, p))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Bootstrap
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea & Flood 2014; the reference `splitmix64.c` by S. Vigna), used to
/// derive per-chunk seeds and to expand them into xoshiro state.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        Self::mix(self.0)
    }

    /// The `k`-th output (1-based) of `SplitMix64(seed)`, by random access.
    fn nth(seed: u64, k: u64) -> u64 {
        Self::mix(seed.wrapping_add(Self::GAMMA.wrapping_mul(k)))
    }
}

/// xoshiro256** 1.0 (Blackman & Vigna 2018), seeded from four SplitMix64 outputs as its
/// authors recommend.
#[derive(Debug, Clone)]
struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    fn from_splitmix(seed: u64) -> Self {
        let mut sm = SplitMix64(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `0..n` (`n ≥ 1`), without bias (Lemire 2019, multiply-and-reject).
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as usize
    }
}

/// Resamples per independently seeded chunk. Fixed, so results never depend on threading.
const CHUNK: usize = 256;
/// Below this many random draws in total the bootstrap runs on the calling thread.
const PARALLEL_MIN_DRAWS: usize = 1 << 18;

/// Runs `stat` once per resample and returns the statistics in resample order.
///
/// Resample `r` belongs to chunk `c = r / CHUNK`; chunk `c` draws from a xoshiro256** stream
/// seeded with the `(c + 1)`-th output of `SplitMix64(seed)`. Chunks are spread over threads
/// (`std::thread::scope`), but every chunk's stream and output slot are fixed, so the result is
/// identical for any thread count.
fn run_bootstrap<T, S, M, F>(
    cfg: &Bootstrap,
    draws_per_resample: usize,
    make_scratch: M,
    stat: F,
) -> Vec<T>
where
    T: Copy + Default + Send,
    M: Fn() -> S + Sync,
    F: Fn(&mut Xoshiro256StarStar, &mut S) -> T + Sync,
{
    let mut out = vec![T::default(); cfg.resamples];
    let run_chunk = |c: usize, slot: &mut [T], scratch: &mut S| {
        let mut rng = Xoshiro256StarStar::from_splitmix(SplitMix64::nth(cfg.seed, c as u64 + 1));
        for v in slot.iter_mut() {
            *v = stat(&mut rng, scratch);
        }
    };
    let mut chunks: Vec<(usize, &mut [T])> = out.chunks_mut(CHUNK).enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(chunks.len());
    let draws = cfg.resamples.saturating_mul(draws_per_resample);
    if threads <= 1 || draws < PARALLEL_MIN_DRAWS {
        let mut scratch = make_scratch();
        for (c, slot) in chunks.iter_mut() {
            run_chunk(*c, slot, &mut scratch);
        }
    } else {
        let per_thread = chunks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            for group in chunks.chunks_mut(per_thread) {
                let run_chunk = &run_chunk;
                let make_scratch = &make_scratch;
                scope.spawn(move || {
                    let mut scratch = make_scratch();
                    for (c, slot) in group.iter_mut() {
                        run_chunk(*c, slot, &mut scratch);
                    }
                });
            }
        });
    }
    out
}

fn check_bootstrap(cfg: &Bootstrap) -> Result<(), InferenceError> {
    if cfg.resamples == 0 {
        Err(InferenceError::InvalidArgument(
            "bootstrap resamples must be ≥ 1",
        ))
    } else {
        Ok(())
    }
}

/// Percentile interval: type-7 2.5 % and 97.5 % quantiles of the bootstrap statistics.
///
/// Selection instead of a sort (O(n)): the type-7 quantile at p only needs the order statistics
/// ⌊h⌋ and ⌊h⌋ + 1 with h = (n − 1)·p, and the result is bit-identical to sorting first.
fn percentile_ci(values: &mut [f64]) -> Result<[f64; 2], InferenceError> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return Err(InferenceError::NonFinite);
    }
    Ok([
        select_quantile7(values, 0.025),
        select_quantile7(values, 0.975),
    ])
}

/// Type-7 quantile of a non-empty, finite slice by selection (reorders `values`).
fn select_quantile7(values: &mut [f64], p: f64) -> f64 {
    let n = values.len();
    let h = (n - 1) as f64 * p;
    let lo = h.floor() as usize;
    let (_, x_lo, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let x_lo = *x_lo;
    if lo + 1 >= n {
        return x_lo;
    }
    let x_hi = above.iter().copied().min_by(f64::total_cmp).unwrap_or(x_lo);
    // Same arithmetic as `descriptive::quantile_sorted`.
    x_lo + (h - lo as f64) * (x_hi - x_lo)
}

/// Ranks of a sample, for medians of resamples by counting (no sorting, no selection).
///
/// A resample is a multiset of positions of `x`; its median depends only on how many draws land
/// on each *rank* (position in the ascending order of `x`, by `f64::total_cmp`). Counting the
/// draws per rank and walking the counts to the middle order statistics gives exactly the values
/// quickselect would find, so the medians are bit-identical to those of the resampled values
/// themselves, at the cost of one table lookup and one increment per draw.
///
/// `T` is the narrowest unsigned type that holds `n` (ranks and counts both fit), so the two
/// tables of a 10 000-value sample (20 KB each) stay in the L1 cache.
struct RankCounter<'a, T> {
    /// `x` itself (for resampled means).
    x: &'a [f64],
    /// `x` in ascending order.
    sorted: &'a [f64],
    /// Rank (index into `sorted`) of every position of `x`.
    rank: &'a [T],
}

/// Counter types of [`RankCounter`].
trait Count: Copy + Default + Send + Sync {
    fn from_usize(v: usize) -> Self;
    fn to_usize(self) -> usize;
    fn incr(&mut self);
}

macro_rules! count_impl {
    ($($t:ty),*) => {$(
        impl Count for $t {
            #[inline(always)]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_usize(self) -> usize {
                self as usize
            }
            #[inline(always)]
            fn incr(&mut self) {
                *self += 1;
            }
        }
    )*};
}
count_impl!(u16, u32, u64);

/// Values per block when summing counts to find the middle of a resample.
const COUNT_BLOCK: usize = 64;

impl<T: Count> RankCounter<'_, T> {
    /// Median of one resample of `n = rank.len()` draws, `counts` being the scratch (zeroed
    /// here). Same result as quickselect (`median_select`) on the drawn values.
    /// Median and mean of one resample, from the same draws: the mean is `Σ counts[r]·x₍ᵣ₎ / n`.
    #[inline]
    fn resample_median_mean(&self, rng: &mut Xoshiro256StarStar, counts: &mut [T]) -> (f64, f64) {
        let n = self.rank.len();
        let counts = &mut counts[..n];
        counts.fill(T::default());
        // The same draws as `resample_median`, summed on the way (four accumulators keep the
        // additions off the critical path; the order is fixed, so the result is reproducible).
        let mut acc = [0.0_f64; 4];
        for k in 0..n {
            let i = rng.below(n);
            counts[self.rank[i].to_usize()].incr();
            acc[k & 3] += self.x[i];
        }
        let sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        (self.median_of_counts(counts), sum / n as f64)
    }

    #[inline]
    fn resample_median(&self, rng: &mut Xoshiro256StarStar, counts: &mut [T]) -> f64 {
        let n = self.rank.len();
        let counts = &mut counts[..n];
        counts.fill(T::default());
        for _ in 0..n {
            counts[self.rank[rng.below(n)].to_usize()].incr();
        }
        self.median_of_counts(counts)
    }

    /// Median of the resample whose draws per rank are `counts` (summing to `n`).
    #[inline]
    fn median_of_counts(&self, counts: &[T]) -> f64 {
        let n = self.rank.len();
        let m = n / 2;
        // Order statistics m − 1 and m (0-based) of the resample.
        let (lo, hi) = order_statistic_ranks(counts, m - 1);
        if n % 2 == 1 {
            self.sorted[hi]
        } else {
            let (x_below, x_m) = (self.sorted[lo], self.sorted[hi]);
            x_below + 0.5 * (x_m - x_below)
        }
    }
}

/// Ranks holding the order statistics `k` and `k + 1` (0-based) of the multiset with `counts[r]`
/// copies of rank `r`; needs `k + 1 < sum(counts)`.
#[inline]
fn order_statistic_ranks<T: Count>(counts: &[T], k: usize) -> (usize, usize) {
    // Whole blocks first (their sums vectorise), then value by value inside the block.
    let mut before = 0_usize;
    let mut r = 0;
    for block in counts.chunks(COUNT_BLOCK) {
        let s: usize = block.iter().map(|c| c.to_usize()).sum();
        if before + s > k {
            break;
        }
        before += s;
        r += block.len();
    }
    loop {
        before += counts[r].to_usize();
        if before > k {
            break;
        }
        r += 1;
    }
    if before > k + 1 {
        return (r, r);
    }
    let mut next = r + 1;
    while counts[next].to_usize() == 0 {
        next += 1;
    }
    (r, next)
}

fn bootstrap_medians<T: Count>(x: &[f64], cfg: &Bootstrap) -> Vec<f64> {
    with_rank_counter::<T, _>(x, |counter| {
        run_bootstrap(
            cfg,
            x.len(),
            || vec![T::default(); x.len()],
            |rng, counts: &mut Vec<T>| counter.resample_median(rng, counts),
        )
    })
}

fn bootstrap_medians_means<T: Count>(x: &[f64], cfg: &Bootstrap) -> Vec<(f64, f64)> {
    with_rank_counter::<T, _>(x, |counter| {
        run_bootstrap(
            cfg,
            x.len(),
            || vec![T::default(); x.len()],
            |rng, counts: &mut Vec<T>| counter.resample_median_mean(rng, counts),
        )
    })
}

fn with_rank_counter<T: Count, R>(x: &[f64], f: impl FnOnce(&RankCounter<'_, T>) -> R) -> R {
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let mut rank = vec![T::default(); n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = T::from_usize(r);
    }
    f(&RankCounter {
        x,
        sorted: &sorted,
        rank: &rank,
    })
}

/// 95 % percentile-bootstrap confidence interval for the median of `x`.
///
/// Each of `cfg.resamples` resamples draws `x.len()` values from `x` with replacement; the
/// interval is the type-7 2.5 % and 97.5 % quantiles of the resampled medians. A resample's
/// median is found by counting the draws per rank of `x` (O(n) per resample, no sorting); it is
/// bit-identical to the type-7 median of the drawn values.
///
/// Reproducibility: resample `r` belongs to chunk `r / 256`; chunk `c` draws indices from a
/// xoshiro256** generator whose state is four SplitMix64 outputs seeded with the `(c + 1)`-th
/// output of `SplitMix64(cfg.seed)`; indices are unbiased (Lemire's method). Chunks may run on
/// several threads, but the result does not depend on how many.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] for fewer than 2 values, [`InferenceError::NonFinite`]
/// for NaN/∞ input, [`InferenceError::InvalidArgument`] for zero resamples.
pub fn bootstrap_ci_median(x: &[f64], cfg: &Bootstrap) -> Result<[f64; 2], InferenceError> {
    check_group(x, 0, 2)?;
    check_bootstrap(cfg)?;
    let mut medians = if x.len() <= usize::from(u16::MAX) {
        bootstrap_medians::<u16>(x, cfg)
    } else if u32::try_from(x.len()).is_ok() {
        bootstrap_medians::<u32>(x, cfg)
    } else {
        bootstrap_medians::<u64>(x, cfg)
    };
    percentile_ci(&mut medians)
}

/// One group's bootstrap: the 95 % CI of the median and every resample's mean, from the same
/// draws (so a group is resampled once however many pairs it is part of).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBootstrap {
    /// Percentile 95 % CI of the median (as [`bootstrap_ci_median`] computes it).
    pub ci95_median: [f64; 2],
    /// Mean of each resample, in resample order.
    pub means: Vec<f64>,
}

/// Resamples `x` once and returns the median's CI and the resampled means. The medians are
/// bit-identical to [`bootstrap_ci_median`] with the same settings.
///
/// # Errors
/// As [`bootstrap_ci_median`].
pub fn bootstrap_group(x: &[f64], cfg: &Bootstrap) -> Result<GroupBootstrap, InferenceError> {
    check_group(x, 0, 2)?;
    check_bootstrap(cfg)?;
    let pairs = if x.len() <= usize::from(u16::MAX) {
        bootstrap_medians_means::<u16>(x, cfg)
    } else if u32::try_from(x.len()).is_ok() {
        bootstrap_medians_means::<u32>(x, cfg)
    } else {
        bootstrap_medians_means::<u64>(x, cfg)
    };
    let (mut medians, means): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    Ok(GroupBootstrap {
        ci95_median: percentile_ci(&mut medians)?,
        means,
    })
}

/// Percentile 95 % CI of the relative change of means `(mean(new) − mean(base)) / mean(base)`
/// from two groups' resampled means (resample `r` of one paired with resample `r` of the other).
/// The groups must have been resampled from independent streams (different seeds).
///
/// # Errors
/// [`InferenceError::InvalidArgument`] for empty or unequal-length inputs,
/// [`InferenceError::NonFinite`] when a resampled baseline mean is zero.
pub fn relative_change_ci(
    base_means: &[f64],
    new_means: &[f64],
) -> Result<[f64; 2], InferenceError> {
    if base_means.is_empty() || base_means.len() != new_means.len() {
        return Err(InferenceError::InvalidArgument(
            "resampled means must be non-empty and of equal length",
        ));
    }
    let mut changes: Vec<f64> = base_means
        .iter()
        .zip(new_means)
        .map(|(b, n)| (n - b) / b)
        .collect();
    if changes.iter().any(|c| !c.is_finite()) {
        return Err(InferenceError::NonFinite);
    }
    percentile_ci(&mut changes)
}

/// 95 % percentile-bootstrap confidence interval for the relative change of means,
/// `(mean(new) − mean(base)) / mean(base)`.
///
/// The two groups are resampled independently (each with replacement, at its own size); the
/// random streams are derived from `cfg.seed` as in [`bootstrap_ci_median`]. Within a resample
/// the `base` draws come first, then the `new` draws.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] for a group with fewer than 2 values,
/// [`InferenceError::NonFinite`] for NaN/∞ input or when some resampled baseline mean is zero
/// (possible only when `base` has values of both signs or zeros),
/// [`InferenceError::ZeroMean`] when `mean(base) = 0`, [`InferenceError::InvalidArgument`] for
/// zero resamples.
pub fn bootstrap_ci_relative_change(
    base: &[f64],
    new: &[f64],
    cfg: &Bootstrap,
) -> Result<[f64; 2], InferenceError> {
    check_group(base, 0, 2)?;
    check_group(new, 1, 2)?;
    check_bootstrap(cfg)?;
    if mean(base) == 0.0 {
        return Err(InferenceError::ZeroMean);
    }
    let (nb, nn) = (base.len(), new.len());
    let mut changes = run_bootstrap(
        cfg,
        nb + nn,
        || (),
        |rng, _: &mut ()| {
            let mut sb = 0.0;
            for _ in 0..nb {
                sb += base[rng.below(nb)];
            }
            let mut sn = 0.0;
            for _ in 0..nn {
                sn += new[rng.below(nn)];
            }
            let mb = sb / nb as f64;
            (sn / nn as f64 - mb) / mb
        },
    );
    percentile_ci(&mut changes)
}

// ---------------------------------------------------------------------------------------------
// Outliers
// ---------------------------------------------------------------------------------------------

/// Tukey-fence outlier screening and robust z-scores for one sample.
///
/// Quartiles are type-7 quantiles. An observation is *severe* if strictly outside
/// `[q1 − 3·iqr, q3 + 3·iqr]`, and *mild* if strictly outside `[q1 − 1.5·iqr, q3 + 1.5·iqr]` but not
/// severe. The robust z-score is `|x − median| / (1.4826·MAD)` (1.4826 makes the MAD a consistent
/// estimator of σ under normality); when MAD = 0 every score is `None` (the guard against
/// dividing by zero when more than half the values coincide).
///
/// # Errors
/// [`InferenceError::TooFewObservations`] for an empty sample, [`InferenceError::NonFinite`] for
/// NaN/∞ input.
pub fn outliers(x: &[f64]) -> Result<Outliers, InferenceError> {
    check_group(x, 0, 1)?;
    let sorted = descriptive::sorted_copy(x).ok_or(InferenceError::NonFinite)?;
    let q1 = quantile7(&sorted, 0.25)?;
    let q3 = quantile7(&sorted, 0.75)?;
    let median = quantile7(&sorted, 0.5)?;
    let iqr = q3 - q1;
    let (mild_low, mild_high) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    let (severe_low, severe_high) = (q1 - 3.0 * iqr, q3 + 3.0 * iqr);
    let deviations: Vec<f64> = x.iter().map(|v| (v - median).abs()).collect();
    let mad = descriptive::median(&deviations).ok_or(InferenceError::NonFinite)?;
    let mut mild = Vec::new();
    let mut severe = Vec::new();
    for (i, &v) in x.iter().enumerate() {
        if v < severe_low || v > severe_high {
            severe.push(i);
        } else if v < mild_low || v > mild_high {
            mild.push(i);
        }
    }
    let robust_z = if mad > 0.0 {
        let scale = 1.4826 * mad;
        x.iter().map(|v| Some((v - median).abs() / scale)).collect()
    } else {
        vec![None; x.len()]
    };
    Ok(Outliers {
        q1,
        q3,
        iqr,
        median,
        mad,
        mild_low,
        mild_high,
        severe_low,
        severe_high,
        mild,
        severe,
        robust_z,
    })
}

// ---------------------------------------------------------------------------------------------
// Verdict
// ---------------------------------------------------------------------------------------------

/// Classifies a comparison of a new run against a baseline.
///
/// * `p`: *p*-value of the comparison;
/// * `rel_ci`: confidence interval of the relative change `(new − base) / base` (e.g. from
///   [`bootstrap_ci_relative_change`]); its ends may come in either order;
/// * `threshold`: smallest relative change that matters in practice, as a fraction (`0.02` = 2 %;
///   its absolute value is used);
/// * `alpha`: significance level;
/// * `higher_is_better`: `true` for metrics such as throughput, `false` for latency or cost.
///
/// Rule: if `p < alpha` is false (including NaN `p`) → [`Verdict::NoChange`]. Otherwise, if the
/// whole interval lies strictly beyond `+threshold` or strictly beyond `−threshold`, the change
/// is [`Verdict::Improved`] or [`Verdict::Regressed`] according to `higher_is_better`; a
/// significant change whose interval touches or overlaps the `[−threshold, +threshold]` band
/// (or has a NaN end) is [`Verdict::WithinNoise`].
pub fn regression_verdict(
    p: f64,
    rel_ci: [f64; 2],
    threshold: f64,
    alpha: f64,
    higher_is_better: bool,
) -> Verdict {
    // Written as `p < alpha` (not `p >= alpha`) so that a NaN p-value is never significant.
    let significant = p < alpha;
    if !significant {
        return Verdict::NoChange;
    }
    let threshold = threshold.abs();
    if rel_ci.iter().any(|v| v.is_nan()) {
        return Verdict::WithinNoise;
    }
    let (lo, hi) = if rel_ci[0] <= rel_ci[1] {
        (rel_ci[0], rel_ci[1])
    } else {
        (rel_ci[1], rel_ci[0])
    };
    let went_up = lo > threshold;
    let went_down = hi < -threshold;
    match (went_up, went_down, higher_is_better) {
        (true, _, true) | (_, true, false) => Verdict::Improved,
        (true, _, false) | (_, true, true) => Verdict::Regressed,
        _ => Verdict::WithinNoise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts `|got − want| ≤ tol·|want|` (absolute `tol` when `want = 0`).
    #[track_caller]
    fn close(got: f64, want: f64, tol: f64) {
        let scale = if want == 0.0 { 1.0 } else { want.abs() };
        assert!(
            (got - want).abs() <= tol * scale,
            "got {got:.17e}, want {want:.17e} (rel tol {tol:e})"
        );
    }

    // R `sleep` data.
    const SLEEP1: [f64; 10] = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
    const SLEEP2: [f64; 10] = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

    // R `PlantGrowth`.
    const CTRL: [f64; 10] = [4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14];
    const TRT1: [f64; 10] = [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69];
    const TRT2: [f64; 10] = [6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26];

    // SciPy `f_oneway` documentation example (McDonald et al. 1991 mussel shells).
    const TILLAMOOK: [f64; 10] = [
        0.0571, 0.0813, 0.0831, 0.0976, 0.0817, 0.0859, 0.0735, 0.0659, 0.0923, 0.0836,
    ];
    const NEWPORT: [f64; 8] = [
        0.0873, 0.0662, 0.0672, 0.0819, 0.0749, 0.0649, 0.0835, 0.0725,
    ];
    const PETERSBURG: [f64; 7] = [0.0974, 0.1352, 0.0817, 0.1016, 0.0968, 0.1064, 0.105];
    const MAGADAN: [f64; 8] = [
        0.1033, 0.0915, 0.0781, 0.0685, 0.0677, 0.0697, 0.0764, 0.0689,
    ];
    const TVARMINNE: [f64; 6] = [0.0703, 0.1026, 0.0956, 0.0973, 0.1039, 0.1045];

    fn plant() -> [&'static [f64]; 3] {
        [&CTRL, &TRT1, &TRT2]
    }

    fn mussels() -> [&'static [f64]; 5] {
        [&TILLAMOOK, &NEWPORT, &PETERSBURG, &MAGADAN, &TVARMINNE]
    }

    /// Deterministic test data: `n` values `loc + scale·u` with `u` uniform in [0, 1).
    fn random_sample(rng: &mut Xoshiro256StarStar, n: usize, loc: f64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| loc + scale * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .collect()
    }

    #[test]
    fn welch_sleep_matches_r_and_scipy() {
        let r = welch_t_test(&SLEEP1, &SLEEP2).unwrap();
        // R t.test(extra ~ group, sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
        // CI -3.3654832 0.2054832. Full digits: SciPy 1.17.1
        // ttest_ind(g1, g2, equal_var=False) → statistic, df, pvalue, confidence_interval(0.95).
        close(r.t, -1.860_813_467_486_852_6, 1e-12);
        close(r.df, 17.776_473_516_178_488, 1e-12);
        close(r.p, 0.079_394_140_187_358_3, 1e-9);
        close(r.mean_diff, -1.58, 1e-12);
        close(r.ci95_diff[0], -3.365_483_230_711_710_4, 1e-9);
        close(r.ci95_diff[1], 0.205_483_230_711_711_37, 1e-8);
        // R's printed values.
        close(r.t, -1.860813, 1e-6);
        close(r.df, 17.77647, 1e-6);
        close(r.p, 0.07939, 1e-4);
        close(r.ci95_diff[0], -3.3654832, 1e-7);
        close(r.ci95_diff[1], 0.2054832, 1e-6);
    }

    #[test]
    fn student_sleep_matches_r_and_scipy() {
        let r = student_t_test(&SLEEP1, &SLEEP2).unwrap();
        // R t.test(extra ~ group, sleep, var.equal = TRUE): t = -1.8608, df = 18,
        // p-value = 0.07919. Full digits: SciPy 1.17.1 ttest_ind(g1, g2, equal_var=True).
        close(r.t, -1.860_813_467_486_852_4, 1e-12);
        assert_eq!(r.df, 18.0);
        close(r.p, 0.079_186_714_215_938_22, 1e-9);
        close(r.ci95_diff[0], -3.363_874_032_287_598_4, 1e-9);
        close(r.ci95_diff[1], 0.203_874_032_287_599_15, 1e-8);
        close(r.p, 0.07919, 1e-4);
    }

    #[test]
    fn effect_sizes_sleep() {
        let d = cohens_d(&SLEEP1, &SLEEP2).unwrap();
        let g = hedges_g(&SLEEP1, &SLEEP2).unwrap();
        // R effectsize::cohens_d / hedges_g point estimates.
        close(d.estimate, -0.8321811, 1e-6);
        close(g.estimate, -0.7970185, 1e-6);
        // Intervals: the documented normal-approximation formula evaluated in NumPy/SciPy 1.17.1
        // (z = scipy.stats.norm.ppf(0.975) = 1.959963984540054).
        close(z975(), 1.959_963_984_540_054, 1e-12);
        close(d.ci95[0], -1.745_854_685_380_915_2, 1e-9);
        close(d.ci95[1], 0.081_492_522_681_836_04, 1e-8);
        close(g.ci95[0], -1.672_086_177_547_918_8, 1e-9);
        close(g.ci95[1], 0.078_049_176_653_026_02, 1e-8);
    }

    #[test]
    fn anova_plant_growth() {
        // R anova(lm(weight ~ group, PlantGrowth)): F = 4.8461 on (2, 27), p = 0.01591.
        // Full digits: SciPy 1.17.1 f_oneway(ctrl, trt1, trt2).
        let a = one_way_anova(&plant()).unwrap();
        close(a.f, 4.846_087_862_380_136, 1e-12);
        assert_eq!((a.df_between, a.df_within), (2.0, 27.0));
        close(a.p, 0.015_909_958_325_622_912, 1e-9);
        close(a.f, 4.8461, 1e-4);
        close(a.p, 0.01591, 1e-3);
    }

    #[test]
    fn anova_mussels_scipy() {
        // SciPy documentation of f_oneway.
        let a = one_way_anova(&mussels()).unwrap();
        close(a.f, 7.121_019_471_642_447, 1e-9);
        close(a.p, 0.000_281_224_231_453_454_4, 1e-9);
        assert_eq!((a.df_between, a.df_within), (4.0, 34.0));
    }

    #[test]
    fn welch_anova_plant_growth() {
        // R oneway.test(weight ~ group, PlantGrowth): F = 5.181, num df = 2,
        // denom df = 17.128, p-value = 0.01739. Full digits: Welch's formula in NumPy with
        // scipy.stats.f.sf (SciPy 1.17.1).
        let w = welch_anova(&plant()).unwrap();
        close(w.f, 5.180_972_408_113_194, 1e-12);
        assert_eq!(w.df1, 2.0);
        close(w.df2, 17.128_418_616_644_137, 1e-12);
        close(w.p, 0.017_392_821_490_169_935, 1e-9);
        close(w.f, 5.181, 1e-3);
        close(w.df2, 17.128, 1e-4);
        close(w.p, 0.01739, 1e-3);
    }

    #[test]
    fn welch_anova_mussels() {
        // Welch's formula in NumPy with scipy.stats.f.sf (SciPy 1.17.1).
        let w = welch_anova(&mussels()).unwrap();
        close(w.f, 5.664_479_494_622_491_5, 1e-12);
        close(w.df2, 15.695_460_462_771_925, 1e-12);
        close(w.p, 0.005_079_648_192_270_896, 1e-9);
    }

    #[test]
    fn kruskal_plant_growth_and_ties() {
        // R kruskal.test(weight ~ group, PlantGrowth): chi-squared = 7.9882, df = 2,
        // p-value = 0.01842. Full digits: SciPy 1.17.1 kruskal(ctrl, trt1, trt2).
        let k = kruskal_wallis(&plant()).unwrap();
        close(k.h, 7.988_228_749_443_715, 1e-12);
        assert_eq!(k.df, 2.0);
        close(k.p, 0.018_423_755_731_471_966, 1e-9);
        close(k.p, 0.01842, 1e-3);
        // Heavily tied data: SciPy 1.17.1 kruskal([1,2,2,3,3,3],[2,3,4,4,5],[5,5,6,1]).
        let t: [&[f64]; 3] = [
            &[1., 2., 2., 3., 3., 3.],
            &[2., 3., 4., 4., 5.],
            &[5., 5., 6., 1.],
        ];
        let k = kruskal_wallis(&t).unwrap();
        close(k.h, 3.955_216_049_382_722, 1e-12);
        close(k.p, 0.138_399_890_817_280_46, 1e-9);
        // Mussels: SciPy 1.17.1 kruskal(*mussels).
        let k = kruskal_wallis(&mussels()).unwrap();
        close(k.h, 16.404_810_589_080_256, 1e-12);
        close(k.p, 0.002_521_401_453_763_709_7, 1e-9);
    }

    #[test]
    fn p_adjust_matches_r() {
        let p = [0.01, 0.02, 0.03, 0.04, 0.05];
        // By hand: Holm multipliers 5,4,3,2,1 → 0.05,0.08,0.09,0.08,0.05 → cummax.
        let holm = p_adjust(&p, Adjust::Holm);
        for (g, w) in holm.iter().zip([0.05, 0.08, 0.09, 0.09, 0.09]) {
            close(*g, w, 1e-12);
        }
        // By hand: BH n/i·p = 0.05 for every i.
        for g in p_adjust(&p, Adjust::BenjaminiHochberg) {
            close(g, 0.05, 1e-12);
        }
        assert_eq!(p_adjust(&p, Adjust::None), p.to_vec());
        // Unsorted input with ties; NumPy transcription of R's p.adjust formulas.
        let p = [0.04, 0.001, 0.3, 0.02, 0.04, 0.7, 0.012];
        let holm = [0.16, 0.007, 0.6, 0.1, 0.16, 0.7, 0.072];
        let bh = [
            0.056,
            0.007,
            0.35,
            0.046_666_666_666_666_67,
            0.056,
            0.7,
            0.042,
        ];
        for (g, w) in p_adjust(&p, Adjust::Holm).iter().zip(holm) {
            close(*g, w, 1e-12);
        }
        for (g, w) in p_adjust(&p, Adjust::BenjaminiHochberg).iter().zip(bh) {
            close(*g, w, 1e-12);
        }
        // Capping at 1 and NaN passthrough (NaN not counted: m = 2).
        let adj = p_adjust(&[0.6, f64::NAN, 0.9], Adjust::Holm);
        assert_eq!(adj[0], 1.0);
        assert!(adj[1].is_nan());
        assert_eq!(adj[2], 1.0);
        assert!(p_adjust(&[], Adjust::Holm).is_empty());
    }

    #[test]
    fn pairwise_plant_growth() {
        // R pairwise.t.test(PlantGrowth$weight, PlantGrowth$group):
        //        ctrl  trt1
        //   trt1 0.194 -
        //   trt2 0.175 0.013
        // Full digits: pooled-sd t in NumPy + scipy.stats.t.sf, Holm by R's formula.
        let r = pairwise_t_pooled(&plant()).unwrap();
        let want = [
            (0, 1, 0.194_387_880_054_302),
            (0, 2, 0.175_363_350_125_365_6),
            (1, 2, 0.013_377_707_814_616_354),
        ];
        assert_eq!(r.len(), 3);
        for (got, want) in r.iter().zip(want) {
            assert_eq!((got.0, got.1), (want.0, want.1));
            close(got.2, want.2, 1e-9);
        }
        // R's printed values (three decimals): within half a unit of the last digit.
        for (got, want) in r.iter().zip([0.194, 0.175, 0.013]) {
            assert!((got.2 - want).abs() <= 5e-4, "{} vs {want}", got.2);
        }
        let raw = pairwise_t_pooled_with(&plant(), Adjust::None).unwrap();
        close(raw[1].2, 0.087_681_675_062_682_8, 1e-9);
        close(raw[2].2, 0.004_459_235_938_205_451_5, 1e-9);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert_eq!(
            welch_t_test(&[1.0], &[1.0, 2.0]),
            Err(InferenceError::TooFewObservations { group: 0, n: 1 })
        );
        assert_eq!(
            welch_t_test(&[1.0, 2.0], &[]),
            Err(InferenceError::TooFewObservations { group: 1, n: 0 })
        );
        assert_eq!(
            welch_t_test(&[1.0, 1.0], &[2.0, 2.0]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            welch_t_test(&[1.0, f64::NAN], &[2.0, 3.0]),
            Err(InferenceError::NonFinite)
        );
        assert_eq!(
            student_t_test(&[3.0, 3.0], &[3.0]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            cohens_d(&[1.0], &[2.0]),
            Err(InferenceError::TooFewObservations { group: 0, n: 1 })
        );
        assert_eq!(
            one_way_anova(&[&SLEEP1]),
            Err(InferenceError::TooFewGroups { k: 1 })
        );
        assert_eq!(
            one_way_anova(&[&[1.0], &[2.0]]),
            Err(InferenceError::NoResidualDf { n: 2, k: 2 })
        );
        assert_eq!(
            welch_anova(&[&[1.0, 2.0], &[3.0, 3.0]]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            kruskal_wallis(&[&[1.0, 1.0], &[1.0]]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            outliers(&[]),
            Err(InferenceError::TooFewObservations { group: 0, n: 0 })
        );
        let cfg = Bootstrap {
            resamples: 0,
            seed: 1,
        };
        assert!(matches!(
            bootstrap_ci_median(&SLEEP1, &cfg),
            Err(InferenceError::InvalidArgument(_))
        ));
        assert_eq!(
            bootstrap_ci_relative_change(&[-1.0, 1.0], &SLEEP1, &Bootstrap::default()),
            Err(InferenceError::ZeroMean)
        );
    }

    #[test]
    fn welch_t_shift_invariant_and_antisymmetric() {
        let mut rng = Xoshiro256StarStar::from_splitmix(42);
        for case in 0..200 {
            let na = 2 + case % 17;
            let nb = 2 + (case * 7) % 23;
            let a = random_sample(&mut rng, na, 10.0, 3.0);
            let b = random_sample(&mut rng, nb, 11.0, 5.0);
            let base = welch_t_test(&a, &b).unwrap();
            let shift = (rng.next_u64() % 1000) as f64 - 500.0;
            let sa: Vec<f64> = a.iter().map(|v| v + shift).collect();
            let sb: Vec<f64> = b.iter().map(|v| v + shift).collect();
            let shifted = welch_t_test(&sa, &sb).unwrap();
            close(shifted.t, base.t, 1e-8);
            close(shifted.df, base.df, 1e-8);
            close(shifted.p, base.p, 1e-6);
            let swapped = welch_t_test(&b, &a).unwrap();
            close(swapped.t, -base.t, 1e-12);
            close(swapped.df, base.df, 1e-12);
            close(swapped.p, base.p, 1e-12);
            close(swapped.ci95_diff[0], -base.ci95_diff[1], 1e-12);
            let st = student_t_test(&b, &a).unwrap();
            close(st.t, -student_t_test(&a, &b).unwrap().t, 1e-12);
        }
    }

    #[test]
    fn rng_reference_vectors() {
        // splitmix64.c (Vigna), seed 1234567.
        let mut sm = SplitMix64(1_234_567);
        let want = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for (k, w) in want.into_iter().enumerate() {
            assert_eq!(SplitMix64::nth(1_234_567, k as u64 + 1), w);
            assert_eq!(sm.next_u64(), w);
        }
        // xoshiro256** 1.0 from state [1, 2, 3, 4] (as in the rand_xoshiro test suite).
        let mut x = Xoshiro256StarStar { s: [1, 2, 3, 4] };
        let want = [
            11_520,
            0,
            1_509_978_240,
            1_215_971_899_390_074_240,
            1_216_172_134_540_287_360,
            607_988_272_756_665_600,
            16_172_922_978_634_559_625,
            8_476_171_486_693_032_832,
            10_595_114_339_597_558_777,
            2_904_607_092_377_533_576,
        ];
        for w in want {
            assert_eq!(x.next_u64(), w);
        }
        // `below` stays in range and hits every value.
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[x.below(7)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(x.below(1), 0);
    }

    #[test]
    fn bootstrap_is_reproducible_and_seed_sensitive() {
        let mut rng = Xoshiro256StarStar::from_splitmix(7);
        let x = random_sample(&mut rng, 301, 100.0, 20.0);
        let y = random_sample(&mut rng, 257, 95.0, 20.0);
        let cfg = Bootstrap {
            resamples: 4000,
            seed: 2024,
        };
        let a = bootstrap_ci_median(&x, &cfg).unwrap();
        let b = bootstrap_ci_median(&x, &cfg).unwrap();
        assert_eq!(a, b);
        // Resampled medians take few distinct values, so two seeds can give the same interval;
        // the resampled medians themselves must differ, and so must some of the intervals.
        let other = Bootstrap { seed: 2025, ..cfg };
        let medians = |c: &Bootstrap| {
            run_bootstrap(
                c,
                x.len(),
                || vec![0.0; x.len()],
                |rng, buf: &mut Vec<f64>| {
                    for v in buf.iter_mut() {
                        *v = x[rng.below(x.len())];
                    }
                    median_select(buf)
                },
            )
        };
        assert_eq!(medians(&cfg), medians(&cfg));
        assert_ne!(medians(&cfg), medians(&other));
        assert!((2025..2035)
            .any(|seed| bootstrap_ci_median(&x, &Bootstrap { seed, ..cfg }).unwrap() != a));
        let r1 = bootstrap_ci_relative_change(&x, &y, &cfg).unwrap();
        let r2 = bootstrap_ci_relative_change(&x, &y, &cfg).unwrap();
        assert_eq!(r1, r2);
        assert_ne!(r1, bootstrap_ci_relative_change(&x, &y, &other).unwrap());
        assert!(r1[0] < r1[1]);
        let observed = (mean(&y) - mean(&x)) / mean(&x);
        assert!(r1[0] < observed && observed < r1[1], "{r1:?} vs {observed}");
    }

    #[test]
    fn bootstrap_threaded_equals_serial() {
        // Large enough to take the threaded path on a multi-core machine; the serial result is
        // recomputed here chunk by chunk, exactly as documented.
        let mut rng = Xoshiro256StarStar::from_splitmix(99);
        let x = random_sample(&mut rng, 400, 0.0, 1.0);
        let cfg = Bootstrap {
            resamples: 2000,
            seed: 5,
        };
        assert!(cfg.resamples * x.len() >= PARALLEL_MIN_DRAWS);
        let got = bootstrap_ci_median(&x, &cfg).unwrap();
        let mut medians = Vec::with_capacity(cfg.resamples);
        let mut buf = vec![0.0; x.len()];
        for r in 0..cfg.resamples {
            if r % CHUNK == 0 {
                let seed = SplitMix64::nth(cfg.seed, (r / CHUNK) as u64 + 1);
                rng = Xoshiro256StarStar::from_splitmix(seed);
            }
            for v in buf.iter_mut() {
                *v = x[rng.below(x.len())];
            }
            let mut sorted = buf.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            medians.push(quantile7(&sorted, 0.5).unwrap());
        }
        medians.sort_unstable_by(f64::total_cmp);
        let want = [
            quantile7(&medians, 0.025).unwrap(),
            quantile7(&medians, 0.975).unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn bootstrap_median_ci_contains_sample_median() {
        let mut rng = Xoshiro256StarStar::from_splitmix(11);
        for case in 0..40 {
            let n = 2 + case * 5;
            let x = random_sample(&mut rng, n, -3.0, 9.0);
            let mut s = x.clone();
            s.sort_unstable_by(f64::total_cmp);
            let med = quantile7(&s, 0.5).unwrap();
            let ci = bootstrap_ci_median(
                &x,
                &Bootstrap {
                    resamples: 1000,
                    seed: case as u64,
                },
            )
            .unwrap();
            assert!(ci[0] <= med && med <= ci[1], "n={n}: {ci:?} vs {med}");
        }
    }

    #[test]
    fn counted_medians_equal_selected_medians() {
        // Ties, signed zeros, odd and even sizes, and every counter width: the medians found by
        // counting ranks are bit-identical to quickselect on the drawn values.
        let mut rng = Xoshiro256StarStar::from_splitmix(3);
        let mut samples: Vec<Vec<f64>> = vec![
            vec![1.0, 2.0],
            vec![5.0, -1.0, 5.0],
            vec![0.0, -0.0, 0.0, -0.0, 1.0, -1.0],
            vec![2.5; 7],
        ];
        for n in [2, 3, 10, 11, 64, 65, 129, 1000] {
            samples.push(random_sample(&mut rng, n, 10.0, 3.0));
            // Heavy ties.
            samples.push((0..n).map(|i| f64::from((i % 4) as u8)).collect());
        }
        for (case, x) in samples.iter().enumerate() {
            let cfg = Bootstrap {
                resamples: 600,
                seed: case as u64,
            };
            let want = run_bootstrap(
                &cfg,
                x.len(),
                || vec![0.0; x.len()],
                |rng, buf: &mut Vec<f64>| {
                    for v in buf.iter_mut() {
                        *v = x[rng.below(x.len())];
                    }
                    median_select(buf)
                },
            );
            let bits = |v: &[f64]| v.iter().map(|m| m.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&bootstrap_medians::<u16>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
            assert_eq!(
                bits(&bootstrap_medians::<u32>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
            assert_eq!(
                bits(&bootstrap_medians::<u64>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
        }
        // Beyond u16: the u32 path, through the public function.
        let x = random_sample(&mut rng, 70_000, 0.0, 1.0);
        let cfg = Bootstrap {
            resamples: 5,
            seed: 1,
        };
        let mut want = run_bootstrap(
            &cfg,
            x.len(),
            || vec![0.0; x.len()],
            |rng, buf: &mut Vec<f64>| {
                for v in buf.iter_mut() {
                    *v = x[rng.below(x.len())];
                }
                median_select(buf)
            },
        );
        assert_eq!(
            bootstrap_ci_median(&x, &cfg).unwrap(),
            percentile_ci(&mut want).unwrap()
        );
    }

    #[test]
    fn median_select_and_outliers_agree_with_numpy() {
        // numpy.quantile (type 7) on this sample: q1 = 2.75, q3 = 3.35, median = 3.0;
        // scipy.stats.median_abs_deviation → 0.3.
        let x = [3.1, 2.7, 9.9, 2.2, 3.0, 2.9, 3.3, 2.8, 3.4, 1.0, 30.0];
        for n in 1..12 {
            let mut v = x[..n].to_vec();
            let mut s = v.clone();
            s.sort_unstable_by(f64::total_cmp);
            assert_eq!(median_select(&mut v), quantile7(&s, 0.5).unwrap());
        }
        let o = outliers(&x).unwrap();
        close(o.q1, 2.75, 1e-12);
        close(o.q3, 3.35, 1e-12);
        close(o.median, 3.0, 1e-12);
        close(o.mad, 0.3, 1e-12);
        close(o.mild_low, 1.85, 1e-12);
        close(o.severe_high, 5.15, 1e-12);
        assert_eq!(o.severe, vec![2, 10]);
        assert_eq!(o.mild, vec![9]);
        close(o.robust_z[10].unwrap(), 27.0 / (1.4826 * 0.3), 1e-12);
    }

    #[test]
    fn outliers_planted_and_mad_guard() {
        let mut rng = Xoshiro256StarStar::from_splitmix(3);
        for _ in 0..50 {
            let mut x = random_sample(&mut rng, 40, 10.0, 2.0);
            let at = (rng.next_u64() % 40) as usize;
            x[at] *= 100.0;
            let o = outliers(&x).unwrap();
            assert_eq!(o.severe, vec![at]);
            assert!(!o.mild.contains(&at));
            assert!(o.robust_z[at].unwrap() > 100.0);
        }
        // More than half the values equal → MAD = 0 → no robust z-scores.
        let o = outliers(&[5.0, 5.0, 5.0, 5.0, 1.0, 9.0]).unwrap();
        assert_eq!(o.mad, 0.0);
        assert!(o.robust_z.iter().all(Option::is_none));
        assert_eq!(o.robust_z.len(), 6);
        // Constant sample: zero IQR, nothing flagged.
        let o = outliers(&[2.0; 5]).unwrap();
        assert!(o.mild.is_empty() && o.severe.is_empty());
    }

    #[test]
    fn verdicts() {
        use Verdict::*;
        let t = 0.02;
        // Throughput (higher is better).
        assert_eq!(
            regression_verdict(0.001, [0.03, 0.08], t, 0.05, true),
            Improved
        );
        assert_eq!(
            regression_verdict(0.001, [-0.08, -0.03], t, 0.05, true),
            Regressed
        );
        assert_eq!(
            regression_verdict(0.001, [0.01, 0.08], t, 0.05, true),
            WithinNoise
        );
        assert_eq!(
            regression_verdict(0.001, [0.02, 0.08], t, 0.05, true),
            WithinNoise
        );
        assert_eq!(
            regression_verdict(0.2, [0.03, 0.08], t, 0.05, true),
            NoChange
        );
        assert_eq!(
            regression_verdict(0.05, [0.03, 0.08], t, 0.05, true),
            NoChange
        );
        assert_eq!(
            regression_verdict(f64::NAN, [0.03, 0.08], t, 0.05, true),
            NoChange
        );
        // Latency (lower is better); reversed interval ends are accepted.
        assert_eq!(
            regression_verdict(0.001, [0.08, 0.03], t, 0.05, false),
            Regressed
        );
        assert_eq!(
            regression_verdict(0.001, [-0.08, -0.03], t, 0.05, false),
            Improved
        );
        assert_eq!(
            regression_verdict(0.001, [-0.08, 0.03], t, 0.05, false),
            WithinNoise
        );
        assert_eq!(
            regression_verdict(0.001, [f64::NAN, 0.03], t, 0.05, false),
            WithinNoise
        );
    }

    #[test]
    fn group_bootstrap_matches_the_median_bootstrap_and_gives_means() {
        let x: Vec<f64> = (0..301).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let cfg = Bootstrap {
            resamples: 2_000,
            seed: 11,
        };
        let g = bootstrap_group(&x, &cfg).unwrap();
        assert_eq!(g.ci95_median, bootstrap_ci_median(&x, &cfg).unwrap());
        assert_eq!(g.means.len(), 2_000);
        let m = mean(&x);
        let avg = g.means.iter().sum::<f64>() / g.means.len() as f64;
        assert!(
            (avg - m).abs() < 0.05 * m,
            "resampled means centre on the mean"
        );
        // Two groups shifted by +10 %: the CI of the relative change contains 0.1.
        let y: Vec<f64> = x.iter().map(|v| v * 1.1).collect();
        let gy = bootstrap_group(&y, &Bootstrap { seed: 12, ..cfg }).unwrap();
        let [lo, hi] = relative_change_ci(&g.means, &gy.means).unwrap();
        assert!(lo < 0.1 && 0.1 < hi, "[{lo}, {hi}]");
        assert!(relative_change_ci(&g.means, &gy.means[1..]).is_err());
    }

    #[test]
    fn percentile_by_selection_equals_percentile_after_sorting() {
        let mut state = 7_u64;
        for n in [1_usize, 2, 3, 39, 40, 41, 1000, 10_001] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    state = SplitMix64::mix(state.wrapping_add(1));
                    ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5).round() * 0.0
                        + (state % 97) as f64
                        - 48.0
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let expected = [
                descriptive::quantile_sorted(&sorted, 0.025).unwrap(),
                descriptive::quantile_sorted(&sorted, 0.975).unwrap(),
            ];
            let mut w = v.clone();
            let got = percentile_ci(&mut w).unwrap();
            assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "n = {n}");
        }
    }
}
