//! Box-plot statistics of one sample ([`BoxStats`]): type-7 quartiles, whiskers to the most
//! extreme values within 1.5 IQR, outliers beyond them, and the mean.

use tcobench_stats::descriptive;

/// Box-plot summary of one sample (type-7 quartiles, 1.5 IQR whiskers).
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStats {
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Lowest value ≥ q1 − 1.5 IQR.
    pub whisker_lo: f64,
    /// Highest value ≤ q3 + 1.5 IQR.
    pub whisker_hi: f64,
    /// Values beyond the whiskers.
    pub outliers: Vec<f64>,
    /// Mean.
    pub mean: f64,
}

impl BoxStats {
    /// Computes the box of `xs`; `None` when empty or non-finite.
    pub fn compute(xs: &[f64]) -> Option<Self> {
        let sorted = descriptive::sorted_copy(xs)?;
        let q1 = descriptive::quantile_sorted(&sorted, 0.25)?;
        let median = descriptive::quantile_sorted(&sorted, 0.5)?;
        let q3 = descriptive::quantile_sorted(&sorted, 0.75)?;
        let iqr = q3 - q1;
        let (lo_fence, hi_fence) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
        let inside = || {
            sorted
                .iter()
                .copied()
                .filter(|&x| x >= lo_fence && x <= hi_fence)
        };
        Some(Self {
            q1,
            median,
            q3,
            whisker_lo: inside().next().unwrap_or(q1),
            whisker_hi: inside().next_back().unwrap_or(q3),
            outliers: sorted
                .iter()
                .copied()
                .filter(|&x| x < lo_fence || x > hi_fence)
                .collect(),
            mean: descriptive::mean(&sorted)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_stats_type7_and_whiskers() {
        // 1..=9 plus an outlier 100: q1 = 3.25, median 5.5, q3 = 7.75 (R type 7), IQR 4.5,
        // upper fence 14.5 -> whisker 9, outlier 100.
        let mut xs: Vec<f64> = (1..=9).map(f64::from).collect();
        xs.push(100.0);
        let b = BoxStats::compute(&xs).unwrap();
        assert_eq!((b.q1, b.median, b.q3), (3.25, 5.5, 7.75));
        assert_eq!((b.whisker_lo, b.whisker_hi), (1.0, 9.0));
        assert_eq!(b.outliers, vec![100.0]);
        let one = BoxStats::compute(&[7.0]).unwrap();
        assert_eq!(
            (one.q1, one.q3, one.whisker_lo, one.whisker_hi),
            (7.0, 7.0, 7.0, 7.0)
        );
    }
}
