//! Private helpers shared by the inference modules: input checks, means, the two-sided *t* and
//! upper *F* tails, the normal 0.975 quantile, and type-7 quantiles.

use statrs::distribution::{ContinuousCDF, FisherSnedecor, Normal, StudentsT};

use super::InferenceError;
use crate::descriptive;

fn check_finite(x: &[f64]) -> Result<(), InferenceError> {
    if x.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(InferenceError::NonFinite)
    }
}

pub(super) fn check_group(x: &[f64], group: usize, min_n: usize) -> Result<(), InferenceError> {
    if x.len() < min_n {
        return Err(InferenceError::TooFewObservations { group, n: x.len() });
    }
    check_finite(x)
}

/// Mean and sum of squared deviations from the mean (two-pass). `x` must be non-empty.
pub(super) fn mean_ss(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
    (mean, ss)
}

pub(super) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

pub(super) fn finite(v: f64) -> Result<f64, InferenceError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(InferenceError::NonFinite)
    }
}

pub(super) fn students_t(df: f64) -> Result<StudentsT, InferenceError> {
    StudentsT::new(0.0, 1.0, df).map_err(|_| InferenceError::NonFinite)
}

/// Two-sided *p*-value of a *t* statistic, from the survival function.
pub(super) fn t_two_sided(t: f64, df: f64) -> Result<f64, InferenceError> {
    Ok((2.0 * students_t(df)?.sf(t.abs())).min(1.0))
}

pub(super) fn f_upper(f: f64, df1: f64, df2: f64) -> Result<f64, InferenceError> {
    let dist = FisherSnedecor::new(df1, df2).map_err(|_| InferenceError::NonFinite)?;
    Ok(dist.sf(f).clamp(0.0, 1.0))
}

/// The 0.975 quantile of the standard normal distribution.
pub(super) fn z975() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

/// Type-7 quantile of an ascending, non-empty slice via [`crate::descriptive::quantile_sorted`] (the
/// crate's single quantile implementation); non-finite data → [`InferenceError::NonFinite`].
pub(super) fn quantile7(sorted: &[f64], p: f64) -> Result<f64, InferenceError> {
    descriptive::quantile_sorted(sorted, p).ok_or(InferenceError::NonFinite)
}

/// Median of a non-empty, NaN-free slice by quickselect (reorders `v`); bit-identical to the
/// type-7 quantile at 0.5 of [`crate::descriptive::quantile_sorted`], but O(n) instead of a sort.
/// (The bootstrap counts ranks instead, see `RankCounter`; this is its test reference.)
#[cfg(test)]
pub(super) fn median_select(v: &mut [f64]) -> f64 {
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
