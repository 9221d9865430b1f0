//! k-sample tests: classical one-way ANOVA, Welch's heteroscedastic ANOVA and Kruskal–Wallis,
//! with their result types and the per-group summaries they (and the pooled pairwise tests)
//! share.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::common::{check_group, f_upper, finite, mean_ss};
use super::InferenceError;

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
pub(super) struct GroupSummary {
    pub(super) n: f64,
    pub(super) mean: f64,
    pub(super) ss: f64,
}

/// Per-group summaries and the pooled residual sum of squares, after checking that there are at
/// least 2 groups, each non-empty, with `N − k ≥ 1`.
pub(super) fn group_summaries(
    groups: &[&[f64]],
) -> Result<(Vec<GroupSummary>, f64), InferenceError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::test_support::{close, mussels, plant};

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
}
