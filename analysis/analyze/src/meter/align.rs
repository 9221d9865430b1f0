//! Placing the meter on the run's clock: power traces, and the offset that best aligns the
//! meter's watts with our own power timeline (cross-correlation).

use serde::{Deserialize, Serialize};
use tcobench_results::schema::PowerSample;

use super::*;

/// A meter trace on the run's clock: `(t_ms, watts)` in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    points: Vec<(f64, f64)>,
}

impl Trace {
    /// Places `log` on the run clock whose origin is `origin_unix_ms`, shifted by `offset_ms`
    /// (added to the meter's times: a positive offset means the meter's clock is behind).
    pub fn on_run_clock(log: &MeterLog, origin_unix_ms: f64, offset_ms: f64) -> Trace {
        Trace {
            points: log
                .samples
                .iter()
                .map(|s| (s.unix_ms - origin_unix_ms + offset_ms, s.watts))
                .collect(),
        }
    }

    /// Builds a trace from run-clock points (time order).
    pub fn from_points(points: Vec<(f64, f64)>) -> Trace {
        Trace { points }
    }

    /// First and last time, ms.
    pub fn span(&self) -> Option<(f64, f64)> {
        Some((self.points.first()?.0, self.points.last()?.0))
    }

    /// Power at `t`, linearly interpolated; `None` outside the trace.
    pub fn watts_at(&self, t: f64) -> Option<f64> {
        let p = &self.points;
        let (first, last) = self.span()?;
        if !t.is_finite() || t < first || t > last {
            return None;
        }
        let i = p.partition_point(|&(pt, _)| pt <= t);
        if i == 0 {
            return Some(p[0].1);
        }
        if i == p.len() {
            return Some(p[i - 1].1);
        }
        let (t0, w0) = p[i - 1];
        let (t1, w1) = p[i];
        Some(w0 + (w1 - w0) * (t - t0) / (t1 - t0))
    }

    /// Energy over `[a, b]` ms, joules, by the trapezoid rule on the piecewise-linear trace, and
    /// the number of samples strictly inside. `None` when the trace does not cover the window.
    pub fn energy_j(&self, a: f64, b: f64) -> Option<(f64, usize)> {
        let (first, last) = self.span()?;
        if !(a.is_finite() && b.is_finite()) || a < first || b > last || b < a {
            return None;
        }
        let mut knots = vec![(a, self.watts_at(a)?)];
        let inside: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|&(t, _)| t > a && t < b)
            .collect();
        let n = inside.len();
        knots.extend(inside);
        knots.push((b, self.watts_at(b)?));
        let joules = knots
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum::<f64>()
            / 1000.0;
        Some((joules, n))
    }
}

/// Our own power on the run clock, as a step function: each timeline sample's `watts` is the
/// average since the previous sample of the same device.
pub fn our_trace(power: &[PowerSample]) -> Trace {
    let mut points: Vec<(f64, f64)> = power
        .iter()
        .filter_map(|s| s.watts.filter(|w| w.is_finite()).map(|w| (s.t_ms, w)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.dedup_by(|a, b| a.0 == b.0);
    Trace { points }
}

/// The clock offset that best lines the meter up with our power timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OffsetEstimate {
    /// Offset to add to the meter's times, ms.
    pub offset_ms: f64,
    /// Pearson correlation of the two traces at that offset.
    pub correlation: f64,
    /// Grid step used, ms.
    pub step_ms: f64,
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 3 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Finds the offset in `[-max_ms, max_ms]` (on a grid of `step_ms`) at which the meter's power
/// correlates best with ours. `None` when the traces overlap too little or either is flat.
pub fn estimate_offset(
    ours: &Trace,
    meter: &MeterLog,
    origin_unix_ms: f64,
    max_ms: f64,
    step_ms: f64,
) -> Option<OffsetEstimate> {
    let (o0, o1) = ours.span()?;
    let grid: Vec<f64> = (0..)
        .map(|i| o0 + f64::from(i) * step_ms)
        .take_while(|t| *t <= o1)
        .collect();
    let ours_at: Vec<Option<f64>> = grid.iter().map(|&t| ours.watts_at(t)).collect();
    let steps = (max_ms / step_ms).floor() as i64;
    let mut best: Option<OffsetEstimate> = None;
    for k in -steps..=steps {
        let offset = k as f64 * step_ms;
        let m = Trace::on_run_clock(meter, origin_unix_ms, offset);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (t, o) in grid.iter().zip(&ours_at) {
            if let (Some(o), Some(w)) = (o, m.watts_at(*t)) {
                x.push(*o);
                y.push(w);
            }
        }
        // Demand that most of our timeline is covered, so a sliver of overlap cannot win.
        if x.len() * 2 < grid.len() {
            continue;
        }
        if let Some(r) = pearson(&x, &y) {
            if best.is_none_or(|b| r > b.correlation) {
                best = Some(OffsetEstimate {
                    offset_ms: offset,
                    correlation: r,
                    step_ms,
                });
            }
        }
    }
    best
}
