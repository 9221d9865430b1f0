//! Axes and value ranges: finite values and CIs, the extent of a set of values, padding, the
//! category axis (key points at integer positions, every `step`-th one) and the value axis that
//! turns logarithmic for wide positive ranges.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::labels::fmt_tick;

/// `x` when finite.
pub(super) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `ci` when both ends are finite and ordered.
pub(super) fn finite_ci(ci: Option<[f64; 2]>) -> Option<[f64; 2]> {
    ci.filter(|[lo, hi]| lo.is_finite() && hi.is_finite() && lo <= hi)
}

/// The lowest and highest of `values` (finite ones only); `None` when there is none.
pub(super) fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// The [`extent`] of values and the ends of their CIs.
pub(super) fn extent_ci(
    points: impl IntoIterator<Item = (f64, Option<[f64; 2]>)>,
) -> Option<(f64, f64)> {
    extent(points.into_iter().flat_map(|(v, ci)| {
        let [lo, hi] = ci.unwrap_or([v; 2]);
        [v, lo, hi]
    }))
}

/// Pads a `[lo, hi]` value range so that it has non-zero height.
pub(super) fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 0.0 {
        let pad = (lo.abs() * 0.05).max(1.0);
        (lo - pad, hi + pad)
    } else {
        (lo - span * frac, hi + span * frac)
    }
}

/// A categorical axis: categories at integer positions `0..n`, key points (ticks and labels)
/// only there, at every `step`-th one.
pub(super) struct CategoryAxis {
    n: usize,
    /// Set once the chart's pixels are known
    /// ([`common::Frame::category_chart`](super::common::Frame::category_chart)): plotters owns the
    /// axis by then and lends it out only shared.
    step: std::cell::Cell<usize>,
    inner: RangedCoordf64,
}

impl CategoryAxis {
    pub(super) fn new(n: usize) -> Self {
        Self {
            n,
            step: std::cell::Cell::new(1),
            inner: (-0.5..n as f64 - 0.5).into(),
        }
    }

    /// Puts key points at every `step`-th category only (0, step, 2·step, …).
    pub(super) fn set_step(&self, step: usize) {
        self.step.set(step.max(1));
    }
}

impl Ranged for CategoryAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let max = hint.max_num_points().max(1);
        let step = self.n.div_ceil(max).max(self.step.get()).max(1);
        (0..self.n).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for CategoryAxis {
    fn format(value: &f64) -> String {
        format!("{value}")
    }
}

/// A numeric axis that is linear, or logarithmic (ticks at 1, 2, 5 × 10^k) when the values span
/// more than [`LOG_RATIO`] and are all positive — so that small configurations stay readable
/// beside large ones.
pub(super) struct ValueAxis {
    lo: f64,
    hi: f64,
    log: bool,
    inner: RangedCoordf64,
}

/// Highest/lowest ratio of positive values beyond which a [`ValueAxis`] turns logarithmic.
const LOG_RATIO: f64 = 30.0;

impl ValueAxis {
    /// An axis for values in `[lo, hi]` (finite); `floor_at_zero` starts a linear axis of
    /// non-negative values at 0.
    pub(super) fn fit(lo: f64, hi: f64, floor_at_zero: bool) -> Self {
        if lo > 0.0 && hi / lo > LOG_RATIO {
            let (lo, hi) = (lo / 1.25, hi * 1.25);
            return Self {
                lo,
                hi,
                log: true,
                inner: (lo.log10()..hi.log10()).into(),
            };
        }
        let (l, h) = padded(if floor_at_zero { lo.min(0.0) } else { lo }, hi, 0.06);
        let l = if floor_at_zero && lo >= 0.0 { 0.0 } else { l };
        Self {
            lo: l,
            hi: h,
            log: false,
            inner: (l..h).into(),
        }
    }

    /// `desc`, with the scale named when it is logarithmic.
    pub(super) fn describe(&self, desc: &str) -> String {
        if self.log {
            format!("{desc}, log scale")
        } else {
            desc.to_string()
        }
    }
}

impl Ranged for ValueAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        if self.log {
            self.inner.map(&value.max(self.lo).log10(), limit)
        } else {
            self.inner.map(value, limit)
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if !self.log {
            return self.inner.key_points(hint);
        }
        let max = hint.max_num_points().max(2);
        let decades = self.lo.log10().floor() as i32..=self.hi.log10().ceil() as i32;
        let points = |mantissas: &'static [f64]| -> Vec<f64> {
            decades
                .clone()
                .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
                .filter(|v| (self.lo..=self.hi).contains(v))
                .collect()
        };
        let fine = points(&[1.0, 2.0, 5.0]);
        if fine.len() <= max {
            return fine;
        }
        let ones = points(&[1.0]);
        let step = ones.len().div_ceil(max).max(1);
        ones.into_iter().step_by(step).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for ValueAxis {
    fn format(value: &f64) -> String {
        fmt_tick(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_axis_turns_logarithmic_for_wide_positive_ranges() {
        let log = ValueAxis::fit(1.0, 1000.0, true);
        assert!(log.log);
        assert_eq!(
            log.key_points(10usize),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log.key_points(4usize), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log.key_points(2usize), [1.0, 100.0]);
        // Decades are equally spaced on the pixel range.
        let px = |v: f64| log.map(&v, (0, 300));
        assert!(((px(10.0) - px(1.0)) - (px(100.0) - px(10.0))).abs() <= 1);
        assert!(px(1.0) < px(10.0) && px(1000.0) < px(log.range().end));
        assert!(log.describe("x").ends_with("log scale"));
        let lin = ValueAxis::fit(10.0, 100.0, true);
        assert!(!lin.log);
        assert_eq!(lin.range().start, 0.0);
        let neg = ValueAxis::fit(-5.0, 1000.0, true);
        assert!(!neg.log && neg.range().start < -5.0);
    }
}
