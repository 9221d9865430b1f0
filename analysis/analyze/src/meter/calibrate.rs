//! The calibration fitted from imported windows: `E_meter = gain · E_ours + offset_w · T` by least
//! squares, with standard errors, and its application to a run of the same energy method.

use serde::{Deserialize, Serialize};

use super::*;

/// A per-device calibration of our energy against a meter: `E_meter ≈ gain · E_ours + offset_w · T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Layout version ([`METER_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The device the calibration belongs to (a label the user gives: host name, GPU serial…).
    pub device: String,
    /// Our energy method it calibrates (`rapl`, `nvml_energy_counter`, …).
    pub ours_method: String,
    /// Our scope (`cpu-package`, `gpu-board`, …).
    pub ours_scope: String,
    /// What the meter measured.
    pub meter_scope: String,
    /// Multiplier on our energy.
    pub gain: f64,
    /// Standard error of `gain`.
    pub gain_se: Option<f64>,
    /// Power the meter sees that we do not, W (times the window's duration).
    pub offset_w: f64,
    /// Standard error of `offset_w` (`None` when it was not fitted).
    pub offset_se: Option<f64>,
    /// Whether the offset was fitted (`false`: the windows' mean powers did not vary enough to
    /// separate it from the gain, and it is fixed at 0).
    pub offset_fitted: bool,
    /// Coefficient of determination of the fit on the windows' energies.
    pub r_squared: Option<f64>,
    /// Largest relative residual over the windows.
    pub max_rel_residual: f64,
    /// Windows used.
    pub windows: usize,
    /// Runs the windows came from.
    pub runs: Vec<String>,
    /// When it was fitted (RFC 3339).
    pub fitted_at: String,
}

impl Calibration {
    /// Calibrated energy of a window of `seconds` in which we measured `joules`.
    pub fn apply(&self, joules: f64, seconds: f64) -> f64 {
        self.gain * joules + self.offset_w * seconds
    }
}

/// One window for the fit: our energy, the meter's, the duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPoint {
    /// Our energy, J.
    pub ours_j: f64,
    /// The meter's energy, J.
    pub meter_j: f64,
    /// Window, s.
    pub seconds: f64,
}

/// Result of [`fit`]: gain, offset and their standard errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Multiplier on our energy.
    pub gain: f64,
    /// Standard error of the gain.
    pub gain_se: Option<f64>,
    /// Offset power, W.
    pub offset_w: f64,
    /// Standard error of the offset.
    pub offset_se: Option<f64>,
    /// Whether the offset was fitted.
    pub offset_fitted: bool,
    /// R² on the energies (centred: 1 − SSE / Σ(y − ȳ)²; a fit without intercept can make it
    /// negative).
    pub r_squared: Option<f64>,
    /// Largest |residual| / meter energy.
    pub max_rel_residual: f64,
}

/// Least squares for `meter_j = gain · ours_j + offset_w · seconds` (no intercept: a window of
/// zero length has zero energy). The offset is fitted only when the windows' mean powers vary by
/// more than 1 % (otherwise `ours_j` and `seconds` are collinear); then it is fixed at 0.
pub fn fit(points: &[FitPoint]) -> Option<Fit> {
    let n = points.len();
    if n == 0 || points.iter().any(|p| !(p.seconds > 0.0 && p.ours_j > 0.0)) {
        return None;
    }
    let powers: Vec<f64> = points.iter().map(|p| p.ours_j / p.seconds).collect();
    let (lo, hi) = powers
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &w| {
            (l.min(w), h.max(w))
        });
    let spread = (hi - lo) / hi.abs().max(f64::MIN_POSITIVE);
    let (sxx, sxt, stt, sxy, sty) = points.iter().fold((0.0, 0.0, 0.0, 0.0, 0.0), |a, p| {
        (
            a.0 + p.ours_j * p.ours_j,
            a.1 + p.ours_j * p.seconds,
            a.2 + p.seconds * p.seconds,
            a.3 + p.ours_j * p.meter_j,
            a.4 + p.seconds * p.meter_j,
        )
    });
    let det = sxx * stt - sxt * sxt;
    let two = n >= 3 && spread > 0.01 && det > 1e-12 * sxx * stt;
    let (gain, offset_w) = if two {
        ((sxy * stt - sxt * sty) / det, (sxx * sty - sxt * sxy) / det)
    } else {
        (sxy / sxx, 0.0)
    };
    let residuals: Vec<f64> = points
        .iter()
        .map(|p| p.meter_j - gain * p.ours_j - offset_w * p.seconds)
        .collect();
    let sse: f64 = residuals.iter().map(|r| r * r).sum();
    let k = if two { 2 } else { 1 };
    let s2 = (n > k).then(|| sse / (n - k) as f64);
    let (gain_se, offset_se) = match s2 {
        Some(s2) if two => (Some((s2 * stt / det).sqrt()), Some((s2 * sxx / det).sqrt())),
        Some(s2) => (Some((s2 / sxx).sqrt()), None),
        None => (None, None),
    };
    let mean_y = points.iter().map(|p| p.meter_j).sum::<f64>() / n as f64;
    let sst: f64 = points.iter().map(|p| (p.meter_j - mean_y).powi(2)).sum();
    let r_squared = (sst > 0.0 && n > k).then(|| 1.0 - sse / sst);
    let max_rel_residual = points
        .iter()
        .zip(&residuals)
        .map(|(p, r)| (r / p.meter_j).abs())
        .fold(0.0, f64::max);
    Some(Fit {
        gain,
        gain_se,
        offset_w,
        offset_se,
        offset_fitted: two,
        r_squared,
        max_rel_residual,
    })
}

/// The valid windows of an import, as fit points.
pub fn fit_points(import: &MeterImport) -> Vec<FitPoint> {
    import
        .cells
        .iter()
        .filter(|c| c.why_not.is_none())
        .filter_map(|c| {
            Some(FitPoint {
                ours_j: c.ours_j?,
                meter_j: c.meter_j?,
                seconds: (c.window_end_ms - c.window_start_ms) / 1000.0,
            })
        })
        .filter(|p| p.ours_j > 0.0 && p.seconds > 0.0)
        .collect()
}
