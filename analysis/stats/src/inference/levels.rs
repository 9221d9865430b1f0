//! Two-level data — requests inside executions — and comparisons that know which level is the
//! unit.
//!
//! The requests of one execution share its process, its memory layout, its neighbours on the
//! host: they are not independent draws of what the configuration costs. [`variance_components`]
//! splits the spread into what lies within an execution and what lies between executions (the
//! one-way random-effects ANOVA estimators), and [`ratio_test`] compares two means whose
//! variances are built from such parts ([`MeanEstimate`]).

use serde::{Deserialize, Serialize};

use super::common::{check_group, finite, mean_ss, students_t, t_two_sided};
use super::InferenceError;
use statrs::distribution::ContinuousCDF;

/// The spread of grouped data split into its within-group and between-group parts (one-way
/// random-effects ANOVA, method-of-moments estimators; Searle, Casella & McCulloch, *Variance
/// Components*, §3.5).
///
/// With `k` groups of sizes `nᵢ` and `N = Σ nᵢ`: `MSW = Σᵢⱼ (xᵢⱼ − x̄ᵢ)² / (N − k)`,
/// `MSB = Σᵢ nᵢ (x̄ᵢ − x̄)² / (k − 1)`, `n₀ = (N − Σ nᵢ² / N) / (k − 1)`; then `σ²_within = MSW`
/// and `σ²_between = max(0, (MSB − MSW) / n₀)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarianceComponents {
    /// Groups (executions).
    pub groups: usize,
    /// Observations (requests) in all groups.
    pub n: usize,
    /// Mean square within groups.
    pub ms_within: f64,
    /// Mean square between groups.
    pub ms_between: f64,
    /// The effective group size `n₀` (the common size when groups are balanced).
    pub n0: f64,
    /// Variance within a group, `σ²_within`.
    pub var_within: f64,
    /// Variance of the group effect, `σ²_between` (0 when `MSB ≤ MSW`).
    pub var_between: f64,
    /// Share of the variance of one observation that is between groups,
    /// `σ²_between / (σ²_between + σ²_within)` (intraclass correlation).
    pub icc: f64,
    /// How much more the group means spread than their within-group noise predicts:
    /// `sqrt(MSB / MSW)` (1 when the groups are independent draws of one population; `None`
    /// when `MSW = 0`).
    pub between_factor: Option<f64>,
}

/// Variance components of `groups` (see [`VarianceComponents`]).
///
/// # Errors
/// [`InferenceError::TooFewGroups`] for fewer than two groups,
/// [`InferenceError::TooFewObservations`] for an empty group, [`InferenceError::NoResidualDf`]
/// when no group has two observations, [`InferenceError::NonFinite`] for NaN/∞ input.
pub fn variance_components(groups: &[&[f64]]) -> Result<VarianceComponents, InferenceError> {
    let k = groups.len();
    if k < 2 {
        return Err(InferenceError::TooFewGroups { k });
    }
    for (i, g) in groups.iter().enumerate() {
        check_group(g, i, 1)?;
    }
    let n: usize = groups.iter().map(|g| g.len()).sum();
    if n <= k {
        return Err(InferenceError::NoResidualDf { n, k });
    }
    let nf = n as f64;
    let grand = groups.iter().flat_map(|g| g.iter()).sum::<f64>() / nf;
    let mut ssw = 0.0;
    let mut ssb = 0.0;
    let mut sum_n2 = 0.0;
    for g in groups {
        let (m, ss) = mean_ss(g);
        let ni = g.len() as f64;
        ssw += ss;
        // Means equal to the grand mean up to rounding count as equal (identical groups would
        // otherwise show a between-group spread of 1e-14).
        let d = m - grand;
        let d = if d.abs() <= 1e-12 * grand.abs() {
            0.0
        } else {
            d
        };
        ssb += ni * d * d;
        sum_n2 += ni * ni;
    }
    let ms_within = finite(ssw / (nf - k as f64))?;
    let ms_between = finite(ssb / (k as f64 - 1.0))?;
    let n0 = (nf - sum_n2 / nf) / (k as f64 - 1.0);
    let var_between = ((ms_between - ms_within) / n0).max(0.0);
    let total = var_between + ms_within;
    Ok(VarianceComponents {
        groups: k,
        n,
        ms_within,
        ms_between,
        n0,
        var_within: ms_within,
        var_between,
        icc: if total > 0.0 {
            var_between / total
        } else {
            0.0
        },
        between_factor: (ms_within > 0.0).then(|| (ms_between / ms_within).sqrt()),
    })
}

/// One independent part of an estimate's variance, with the degrees of freedom it was
/// estimated with (`f64::INFINITY` for a part taken as known).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarianceTerm {
    /// The part's contribution to the variance of the mean.
    pub var: f64,
    /// Its degrees of freedom.
    pub df: f64,
}

/// A mean and the parts its variance is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanEstimate {
    /// The estimate.
    pub mean: f64,
    /// Independent parts of its variance (summed).
    pub terms: Vec<VarianceTerm>,
}

impl MeanEstimate {
    /// The mean of independent units (executions' means, or requests taken as independent):
    /// `mean(x)`, variance `s² / n` with `n − 1` degrees of freedom.
    ///
    /// # Errors
    /// [`InferenceError::TooFewObservations`] below two units, [`InferenceError::NonFinite`].
    pub fn of_units(x: &[f64]) -> Result<MeanEstimate, InferenceError> {
        check_group(x, 0, 2)?;
        let (m, ss) = mean_ss(x);
        let n = x.len() as f64;
        Ok(MeanEstimate {
            mean: m,
            terms: vec![VarianceTerm {
                var: finite(ss / (n - 1.0) / n)?,
                df: n - 1.0,
            }],
        })
    }

    /// The same estimate with a between-execution variance added: a single execution's mean
    /// also carries its execution's effect, `σ²_between`, estimated with `df` degrees of freedom.
    pub fn with_between(mut self, var_between: f64, df: f64) -> MeanEstimate {
        self.terms.push(VarianceTerm {
            var: var_between,
            df,
        });
        self
    }

    /// The variance of the mean: the sum of its parts.
    pub fn var(&self) -> f64 {
        self.terms.iter().map(|t| t.var).sum()
    }
}

/// A comparison of two means as a relative change, `new / base − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioTest {
    /// `new / base − 1`.
    pub rel_change: f64,
    /// Its standard error (delta method).
    pub se: f64,
    /// Welch–Satterthwaite degrees of freedom of that standard error.
    pub df: f64,
    /// `rel_change / se`.
    pub t: f64,
    /// Two-sided *p*-value of `t` on `df` degrees of freedom.
    pub p: f64,
    /// `rel_change ± t₀.₉₇₅(df) · se`.
    pub ci95: [f64; 2],
}

/// The relative change from `base` to `new` with its *t* interval.
///
/// With `r = new / base`, the delta method gives `Var(r) ≈ (Var(new) + r² Var(base)) / base²`;
/// each variance part keeps its degrees of freedom, and the Welch–Satterthwaite formula
/// `df = (Σ vᵢ)² / Σ (vᵢ² / dfᵢ)` combines them. The interval and the *p*-value come from the
/// same statistic, so the interval excludes 0 exactly when `p < 0.05`.
///
/// # Errors
/// [`InferenceError::ZeroMean`] for a zero base mean, [`InferenceError::ZeroVariance`] when both
/// variances are zero, [`InferenceError::NonFinite`] otherwise undefined.
pub fn ratio_test(base: &MeanEstimate, new: &MeanEstimate) -> Result<RatioTest, InferenceError> {
    if !(base.mean.is_finite() && new.mean.is_finite()) {
        return Err(InferenceError::NonFinite);
    }
    if base.mean == 0.0 {
        return Err(InferenceError::ZeroMean);
    }
    let r = new.mean / base.mean;
    let b2 = base.mean * base.mean;
    let scaled: Vec<VarianceTerm> = new
        .terms
        .iter()
        .map(|t| VarianceTerm {
            var: t.var / b2,
            df: t.df,
        })
        .chain(base.terms.iter().map(|t| VarianceTerm {
            var: r * r * t.var / b2,
            df: t.df,
        }))
        .collect();
    let var: f64 = scaled.iter().map(|t| t.var).sum();
    if var <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let denom: f64 = scaled
        .iter()
        .filter(|t| t.var > 0.0 && t.df.is_finite())
        .map(|t| t.var * t.var / t.df)
        .sum();
    let df = if denom > 0.0 {
        finite(var * var / denom)?
    } else {
        f64::INFINITY
    };
    let se = var.sqrt();
    let rel = r - 1.0;
    let t = rel / se;
    let (p, crit) = if df.is_finite() {
        (t_two_sided(t, df)?, students_t(df)?.inverse_cdf(0.975))
    } else {
        let z = statrs::distribution::Normal::standard();
        ((2.0 * z.sf(t.abs())).min(1.0), z.inverse_cdf(0.975))
    };
    Ok(RatioTest {
        rel_change: rel,
        se,
        df,
        t,
        p,
        ci95: [rel - crit * se, rel + crit * se],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variance_components_of_a_balanced_design_by_hand() {
        // Groups [1,2,3], [4,5,6], [7,8,9]: means 2, 5, 8, grand 5.
        // SSW = 3·2 = 6, MSW = 6/6 = 1; SSB = 3·(9+0+9) = 54, MSB = 27; n0 = 3;
        // σ²_b = (27 − 1)/3 = 26/3; icc = (26/3)/(26/3 + 1) = 26/29; factor = sqrt 27.
        let g: [&[f64]; 3] = [&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], &[7.0, 8.0, 9.0]];
        let v = variance_components(&g).unwrap();
        assert_eq!((v.groups, v.n), (3, 9));
        assert!((v.ms_within - 1.0).abs() < 1e-12);
        assert!((v.ms_between - 27.0).abs() < 1e-12);
        assert!((v.n0 - 3.0).abs() < 1e-12);
        assert!((v.var_between - 26.0 / 3.0).abs() < 1e-12);
        assert!((v.icc - 26.0 / 29.0).abs() < 1e-12);
        assert!((v.between_factor.unwrap() - 27f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn variance_components_unbalanced_and_truncated() {
        // [1,3], [2,2,2,6]: means 2, 3; grand 16/6 = 8/3.
        // SSW = 2 + 12 = 14, MSW = 14/4 = 3.5; SSB = 2(2−8/3)² + 4(3−8/3)² = 8/9 + 4/9 = 4/3;
        // MSB = 4/3 < MSW → σ²_b = 0; n0 = (6 − 20/6)/1 = 8/3.
        let g: [&[f64]; 2] = [&[1.0, 3.0], &[2.0, 2.0, 2.0, 6.0]];
        let v = variance_components(&g).unwrap();
        assert!((v.ms_within - 3.5).abs() < 1e-12);
        assert!((v.ms_between - 4.0 / 3.0).abs() < 1e-12);
        assert!((v.n0 - 8.0 / 3.0).abs() < 1e-12);
        assert_eq!(v.var_between, 0.0);
        assert_eq!(v.icc, 0.0);
        assert!(matches!(
            variance_components(&[&[1.0], &[2.0]]),
            Err(InferenceError::NoResidualDf { n: 2, k: 2 })
        ));
        assert!(matches!(
            variance_components(&[&[1.0, 2.0]]),
            Err(InferenceError::TooFewGroups { k: 1 })
        ));
    }

    #[test]
    fn ratio_test_by_hand() {
        // base: mean 100, var of mean 4 (df 4); new: mean 90, var of mean 9 (df 9).
        // r = 0.9; var(rel) = (9 + 0.81·4)/10⁴ = 12.24e-4; se = 0.034986;
        // df = 12.24² / (9²/9 + 3.24²/4) = 149.8176 / (9 + 2.6244) = 12.888…
        let base = MeanEstimate {
            mean: 100.0,
            terms: vec![VarianceTerm { var: 4.0, df: 4.0 }],
        };
        let new = MeanEstimate {
            mean: 90.0,
            terms: vec![VarianceTerm { var: 9.0, df: 9.0 }],
        };
        let t = ratio_test(&base, &new).unwrap();
        assert!((t.rel_change + 0.1).abs() < 1e-12);
        assert!((t.se - 12.24e-4f64.sqrt()).abs() < 1e-12);
        assert!((t.df - 149.8176 / 11.6244).abs() < 1e-9, "{}", t.df);
        assert!((t.t - (-0.1 / t.se)).abs() < 1e-12);
        // The interval excludes 0 exactly when p < 0.05.
        assert!(t.p < 0.05 && t.ci95[1] < 0.0);
        // SciPy: 2 * t.sf(0.1 / sqrt(12.24e-4), 149.8176 / 11.6244) = 0.0135396.
        assert!((t.p - 0.013_539_6).abs() < 1e-6, "{}", t.p);
        // A between term only widens the interval.
        let wide = ratio_test(
            &base.clone().with_between(50.0, 5.0),
            &new.with_between(40.5, 5.0),
        )
        .unwrap();
        assert!(wide.ci95[0] < t.ci95[0] && wide.ci95[1] > t.ci95[1]);
        assert!(wide.p > t.p);
    }

    #[test]
    fn of_units_is_the_mean_and_its_squared_standard_error() {
        let e = MeanEstimate::of_units(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(e.mean, 2.5);
        // s² = 5/3, / n = 5/12.
        assert!((e.var() - 5.0 / 12.0).abs() < 1e-12);
        assert_eq!(e.terms[0].df, 3.0);
        assert!(MeanEstimate::of_units(&[1.0]).is_err());
        let z = MeanEstimate {
            mean: 0.0,
            terms: vec![],
        };
        assert_eq!(ratio_test(&z, &e), Err(InferenceError::ZeroMean));
        let c = MeanEstimate::of_units(&[2.0, 2.0]).unwrap();
        assert_eq!(ratio_test(&c, &c), Err(InferenceError::ZeroVariance));
    }
}
