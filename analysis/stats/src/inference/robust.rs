//! Outlier screening of one sample: Tukey fences and robust (MAD-based) z-scores.

use serde::{Deserialize, Serialize};

use super::common::{check_group, quantile7};
use super::InferenceError;
use crate::descriptive;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::common::median_select;
    use crate::inference::rng::Xoshiro256StarStar;
    use crate::inference::test_support::{close, random_sample};

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
}
