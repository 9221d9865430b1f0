//! An external power meter beside our own energy figures, and the calibration fitted from it.
//!
//! Our energy comes from what the host exposes (an NVML counter, RAPL, or a model estimate): it
//! covers one scope (a GPU board, a CPU package) with the sensor's own gain error. A power meter
//! at the wall, or a BMC's IPMI/Redfish power log, is the independent reference. This module
//!
//! * reads such a log — a CSV of `timestamp,watts` ([`parse_meter_csv`]),
//! * places it on the run's clock: the run's `t_ms = 0` is the manifest's `started_at`, plus an
//!   offset given by the user or found by cross-correlating the meter's watts with our power
//!   timeline ([`estimate_offset`]),
//! * integrates the meter's power over each cell's measured window and sets it beside our energy
//!   for the same window ([`compare_cells`]),
//! * fits a per-device calibration `E_meter = gain · E_ours + offset_w · T` by least squares over
//!   the windows of one or more runs ([`fit_calibration`]), which a later run applies: calibrated
//!   energy of a request = `gain · energy_j + offset_w · e2e_s` ([`Calibration::apply`]).
//!
//! The meter's power is treated as piecewise linear between its samples (the trapezoid rule),
//! and a window is only compared when the meter covers it with at least two samples inside;
//! otherwise the row says why and carries no number.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod align;
mod calibrate;
mod import;
mod log;

pub use align::*;
pub use calibrate::*;
pub use import::*;
pub use log::*;

/// File written into a run folder by `tcobench meter import`.
pub const METER_FILE: &str = "meter.json";
/// File written into a run folder by `tcobench meter apply`.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// Layout version of [`MeterImport`] and [`Calibration`] files.
pub const METER_SCHEMA_VERSION: u32 = 1;

/// Header names accepted for the timestamp column (case-insensitive).
pub const TIME_COLUMNS: [&str; 7] = [
    "timestamp",
    "time",
    "ts",
    "t",
    "datetime",
    "date_time",
    "time_utc",
];
/// Header names accepted for the power column (case-insensitive).
pub const WATTS_COLUMNS: [&str; 6] = ["watts", "power_w", "power", "w", "power_watts", "watt"];

/// A meter log or calibration file that cannot be used, located where possible.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// A value in the log is malformed; `line` and `column` are 1-based.
    #[error("{path}:{line}:{column}: key {key}: {message}")]
    Located {
        /// The log file.
        path: String,
        /// Line in the file.
        line: usize,
        /// Column (character) in the line.
        column: usize,
        /// The column's header name.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The input cannot be used as a whole (no samples, no overlap with the run, …).
    #[error("{path}: {message}")]
    Unusable {
        /// The file concerned.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Reads a JSON file written by this module, with a clear error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, MeterError> {
    let text = std::fs::read_to_string(path).map_err(|source| MeterError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| MeterError::Located {
        path: path.display().to_string(),
        line: e.line(),
        column: e.column(),
        key: "(json)".into(),
        message: e.to_string(),
    })
}

/// Calibrated energy per cell of a run, shown beside the measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedCell {
    /// The cell.
    pub cell_id: String,
    /// Mean measured J/token (as in the cell's statistics).
    pub measured_j_per_token: f64,
    /// Mean calibrated J/token: `gain · J/token + offset_w · e2e_s / tokens`.
    pub calibrated_j_per_token: f64,
}

/// The meter and calibration figures of a run, in `stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterStats {
    /// The meter import of this run, if any.
    pub import: Option<MeterImport>,
    /// The calibration applied to this run, if any.
    pub calibration: Option<Calibration>,
    /// Calibrated energy per cell (empty without a calibration).
    pub calibrated: Vec<CalibratedCell>,
}

/// Reads `meter.json` and `calibration.json` from a run folder, and computes calibrated J/token
/// from the cells' statistics. `None` when the folder has neither.
pub fn meter_stats(
    run_dir: &Path,
    cells: &[tcobench_results::CellStats],
) -> Result<Option<MeterStats>, MeterError> {
    let meter_path = run_dir.join(METER_FILE);
    let cal_path = run_dir.join(CALIBRATION_FILE);
    let import = meter_path
        .is_file()
        .then(|| read_json::<MeterImport>(&meter_path))
        .transpose()?;
    let calibration = cal_path
        .is_file()
        .then(|| read_json::<Calibration>(&cal_path))
        .transpose()?;
    if import.is_none() && calibration.is_none() {
        return Ok(None);
    }
    let calibrated = calibration
        .as_ref()
        .map(|cal| {
            cells
                .iter()
                .filter_map(|c| {
                    let jpt = c.metrics.get("energy_j_per_token")?.mean;
                    let e2e_ms = c.metrics.get("e2e_ms")?.mean;
                    let tokens = f64::from(c.config.batch_size) * f64::from(c.config.new_tokens);
                    (jpt.is_finite() && e2e_ms.is_finite() && tokens > 0.0).then(|| {
                        CalibratedCell {
                            cell_id: c.cell_id.clone(),
                            measured_j_per_token: jpt,
                            calibrated_j_per_token: cal.gain * jpt
                                + cal.offset_w * e2e_ms / 1000.0 / tokens,
                        }
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(MeterStats {
        import,
        calibration,
        calibrated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc3339_unix_seconds_and_ms_and_locates_errors() {
        let log = parse_meter_csv(
            "# exported\nTime;Power_W\n2026-11-23T18:00:00Z;100\n2026-11-23T18:00:00.5Z;110.5\n",
            "m.csv",
        )
        .unwrap();
        assert_eq!(log.samples.len(), 2);
        assert_eq!(log.samples[1].unix_ms - log.samples[0].unix_ms, 500.0);
        assert_eq!(log.time_format, "RFC 3339");
        let s = parse_meter_csv("timestamp,watts\n1700000000,5\n1700000001.5,6\n", "m").unwrap();
        assert_eq!(s.samples[1].unix_ms, 1_700_000_001_500.0);
        let ms =
            parse_meter_csv("timestamp,watts\n1700000000000,5\n1700000000100,6\n", "m").unwrap();
        assert_eq!(ms.samples[0].unix_ms, 1_700_000_000_000.0);
        assert_eq!(ms.time_format, "Unix milliseconds");
        let bom = parse_meter_csv("\u{feff}timestamp,watts\n1,5\n2,6\n", "m").unwrap();
        assert_eq!(
            bom.samples.len(),
            2,
            "a byte-order mark is not part of the header"
        );

        let err = parse_meter_csv("timestamp,watts\n1,5\n2,-3\n", "m.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "m.csv:3:3: key watts: `-3` is not a power in watts (a finite number ≥ 0)"
        );
        let err = parse_meter_csv("ts, power\n1,5\n1,6\n", "m.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m.csv:3:1: key ts: `1` is not after"),
            "{err}"
        );
        let err = parse_meter_csv("when,watts\n1,5\n", "m.csv")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.csv:1:1: key header: the header names no timestamp"));
        let err = parse_meter_csv("t,w\n1,5\n2\n", "m.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.csv:3:2: key w: the line has 1 fields"),
            "{err}"
        );
        assert!(parse_meter_csv("t,w\n1,5\n", "m").is_err(), "one sample");
        assert!(parse_meter_csv("t,w\n1,5\n2026-11-23T18:00:00Z,6\n", "m").is_err());
    }

    #[test]
    fn trapezoid_energy_is_exact_for_piecewise_linear_power() {
        // 100 W at 0 s rising linearly to 200 W at 10 s: ∫ over [2 s, 7 s] = 5 s × mean(120, 170) W.
        let t = Trace::from_points(vec![(0.0, 100.0), (10_000.0, 200.0)]);
        let (j, inside) = t.energy_j(2_000.0, 7_000.0).unwrap();
        assert!((j - 5.0 * 145.0).abs() < 1e-9, "{j}");
        assert_eq!(inside, 0);
        // A 1 Hz sampled sine, window of 30 s: within 0.5 % of the analytic integral.
        let f = |s: f64| 150.0 + 50.0 * (s / 20.0).sin();
        let pts = (0..=100)
            .map(|i| (f64::from(i) * 1000.0, f(f64::from(i))))
            .collect();
        let (j, _) = Trace::from_points(pts)
            .energy_j(10_000.0, 40_000.0)
            .unwrap();
        let exact = 150.0 * 30.0 + 50.0 * 20.0 * ((10.0f64 / 20.0).cos() - (40.0f64 / 20.0).cos());
        assert!(((j - exact) / exact).abs() < 0.005, "{j} vs {exact}");
        assert!(
            Trace::from_points(vec![(0.0, 1.0), (5.0, 1.0)])
                .energy_j(1.0, 6.0)
                .is_none(),
            "not covered"
        );
        let short = Trace::from_points(vec![(0.0, 1.0), (5.0, 1.0)]);
        assert!(short.energy_j(f64::NAN, 2.0).is_none() && short.watts_at(f64::NAN).is_none());
    }

    #[test]
    fn the_offset_search_finds_a_known_clock_skew() {
        // Our power: a level that jumps every 0.5 s to a pseudo-random value (not periodic, so
        // only one offset lines it up); the meter sees 1.2× it plus 30 W, with its clock 1.3 s
        // behind ours.
        let square = |t_ms: f64| {
            let k = (t_ms / 500.0).floor() as i64 as u64;
            let h = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 33;
            50.0 + (h % 100) as f64
        };
        let ours = Trace::from_points(
            (0..200)
                .map(|i| f64::from(i) * 100.0)
                .map(|t| (t, square(t)))
                .collect(),
        );
        let origin = 1_700_000_000_000.0;
        let skew = -1_300.0; // meter time = run time − 1.3 s
        let meter = MeterLog {
            samples: (0..300)
                .map(|i| f64::from(i) * 100.0 - 5_000.0)
                .map(|t| MeterSample {
                    unix_ms: origin + t + skew,
                    watts: 1.2 * square(t) + 30.0,
                })
                .collect(),
            time_format: "Unix milliseconds".into(),
            notes: vec![],
        };
        let e = estimate_offset(&ours, &meter, origin, 3_000.0, 100.0).unwrap();
        assert_eq!(e.offset_ms, 1_300.0);
        assert!(e.correlation > 0.99, "{e:?}");
    }

    #[test]
    fn the_fit_recovers_gain_and_offset_and_falls_back_when_collinear() {
        // Hand-made windows: meter = 1.08·ours + 35 W·T exactly.
        let pts: Vec<FitPoint> = [(40.0, 2.0), (90.0, 3.0), (300.0, 5.0), (50.0, 0.5)]
            .iter()
            .map(|&(watts, s)| FitPoint {
                ours_j: watts * s,
                meter_j: 1.08 * watts * s + 35.0 * s,
                seconds: s,
            })
            .collect();
        let f = fit(&pts).unwrap();
        assert!(
            (f.gain - 1.08).abs() < 1e-9 && (f.offset_w - 35.0).abs() < 1e-9,
            "{f:?}"
        );
        assert!(f.offset_fitted && f.max_rel_residual < 1e-9);
        // Constant power: E_ours ∝ T, so only a gain is identifiable: meter/ours = (1.08·60 + 35)/60.
        let flat: Vec<FitPoint> = [1.0, 2.0, 4.0]
            .iter()
            .map(|&s| FitPoint {
                ours_j: 60.0 * s,
                meter_j: (1.08 * 60.0 + 35.0) * s,
                seconds: s,
            })
            .collect();
        let f = fit(&flat).unwrap();
        assert!(!f.offset_fitted && f.offset_w == 0.0);
        assert!((f.gain - (1.08 * 60.0 + 35.0) / 60.0).abs() < 1e-12);
        // Noisy windows: the standard errors are positive and the residual is reported.
        let mut noisy = pts.clone();
        noisy[0].meter_j *= 1.02;
        let f = fit(&noisy).unwrap();
        assert!(f.gain_se.unwrap() > 0.0 && f.offset_se.unwrap() > 0.0);
        assert!(f.max_rel_residual > 0.001);
        let cal = Calibration {
            schema_version: METER_SCHEMA_VERSION,
            device: "d".into(),
            ours_method: "rapl".into(),
            ours_scope: "cpu-package".into(),
            meter_scope: "wall".into(),
            gain: 1.08,
            gain_se: None,
            offset_w: 35.0,
            offset_se: None,
            offset_fitted: true,
            r_squared: None,
            max_rel_residual: 0.0,
            windows: 4,
            runs: vec![],
            fitted_at: String::new(),
        };
        assert!((cal.apply(100.0, 2.0) - 178.0).abs() < 1e-12);
    }
}
