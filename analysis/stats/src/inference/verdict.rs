//! The regression verdict: significance and practical relevance combined into [`Verdict`].

use serde::{Deserialize, Serialize};

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
///
/// [`bootstrap_ci_relative_change`]: super::bootstrap_ci_relative_change
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
}
