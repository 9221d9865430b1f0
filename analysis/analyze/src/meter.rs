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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tcobench_results::schema::{CellOutcome, Manifest, PowerSample};

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

/// One meter reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeterSample {
    /// Unix time, milliseconds.
    pub unix_ms: f64,
    /// Power, watts.
    pub watts: f64,
}

/// A parsed meter log.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterLog {
    /// Samples in time order (strictly increasing).
    pub samples: Vec<MeterSample>,
    /// How timestamps were read (e.g. "RFC 3339", "Unix seconds").
    pub time_format: String,
    /// Remarks a reader should know (timestamps read as UTC, …).
    pub notes: Vec<String>,
}

impl MeterLog {
    /// Median spacing of the samples, ms (`None` with fewer than two samples).
    pub fn median_interval_ms(&self) -> Option<f64> {
        let mut d: Vec<f64> = self
            .samples
            .windows(2)
            .map(|w| w[1].unix_ms - w[0].unix_ms)
            .collect();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let n = d.len();
        Some(if n % 2 == 1 {
            d[n / 2]
        } else {
            (d[n / 2 - 1] + d[n / 2]) / 2.0
        })
    }
}

fn located(path: &str, line: usize, column: usize, key: &str, message: String) -> MeterError {
    MeterError::Located {
        path: path.to_string(),
        line,
        column,
        key: key.to_string(),
        message,
    }
}

/// Parses a timestamp: Unix seconds or milliseconds (a number; above 1e11 it is taken as ms),
/// RFC 3339 (`2026-11-23T18:00:00.250Z`), or a zone-less `YYYY-MM-DD[T ]HH:MM:SS[.fff]`, read as
/// UTC. Returns Unix ms and the format's name.
fn parse_time(s: &str) -> Result<(f64, &'static str), String> {
    if let Ok(v) = s.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{s}` is not a time"));
        }
        return Ok(if v > 1e11 {
            (v, "Unix milliseconds")
        } else {
            (v * 1000.0, "Unix seconds")
        });
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok((t.timestamp_micros() as f64 / 1000.0, "RFC 3339"));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok((
                t.and_utc().timestamp_micros() as f64 / 1000.0,
                "date and time without a zone, read as UTC",
            ));
        }
    }
    Err(format!(
        "`{s}` is not a time (expected Unix seconds or ms, RFC 3339, or YYYY-MM-DD HH:MM:SS[.fff])"
    ))
}

/// Splits a CSV line on `sep`, honouring double quotes; returns each field with the 1-based
/// character column it starts at.
fn split_fields(line: &str, sep: char) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut start = 1;
    let mut quoted = false;
    for (i, c) in line.chars().enumerate() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push((start, field.trim().to_string()));
                field.clear();
                start = i + 2;
            }
            c => field.push(c),
        }
    }
    out.push((start, field.trim().to_string()));
    out
}

/// Reads a meter log: a header line naming a timestamp column (one of [`TIME_COLUMNS`]) and a
/// power column (one of [`WATTS_COLUMNS`]), separated by commas, semicolons or tabs; then one
/// sample per line. Blank lines and lines starting with `#` are skipped. Times must increase
/// strictly, watts must be finite and not negative.
pub fn parse_meter_csv(text: &str, path: &str) -> Result<MeterLog, MeterError> {
    // Spreadsheet exports often begin with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: "no header line: expected e.g. `timestamp,watts`".into(),
        });
    };
    let sep = [',', ';', '\t']
        .into_iter()
        .max_by_key(|s| header.matches(*s).count())
        .unwrap_or(',');
    let names: Vec<(usize, String)> = split_fields(header, sep);
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|(_, n)| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
    };
    let (Some(ti), Some(wi)) = (find(&TIME_COLUMNS), find(&WATTS_COLUMNS)) else {
        return Err(located(
            path,
            header_line,
            1,
            "header",
            format!(
                "the header names no {} column (accepted: {} / {}); found: {}",
                if find(&TIME_COLUMNS).is_none() {
                    "timestamp"
                } else {
                    "power"
                },
                TIME_COLUMNS.join(", "),
                WATTS_COLUMNS.join(", "),
                names
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let (time_key, watts_key) = (names[ti].1.clone(), names[wi].1.clone());
    let mut samples: Vec<MeterSample> = Vec::new();
    let mut formats = std::collections::BTreeSet::new();
    for (line_no, line) in lines {
        let fields = split_fields(line, sep);
        let get = |i: usize, key: &str| {
            fields.get(i).cloned().ok_or_else(|| {
                located(
                    path,
                    line_no,
                    line.chars().count() + 1,
                    key,
                    format!(
                        "the line has {} fields; the header has {}",
                        fields.len(),
                        names.len()
                    ),
                )
            })
        };
        let (tcol, ts) = get(ti, &time_key)?;
        let (wcol, ws) = get(wi, &watts_key)?;
        let (unix_ms, format) =
            parse_time(&ts).map_err(|m| located(path, line_no, tcol, &time_key, m))?;
        let watts = ws
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| {
                located(
                    path,
                    line_no,
                    wcol,
                    &watts_key,
                    format!("`{ws}` is not a power in watts (a finite number ≥ 0)"),
                )
            })?;
        if let Some(prev) = samples.last() {
            if unix_ms <= prev.unix_ms {
                return Err(located(
                    path,
                    line_no,
                    tcol,
                    &time_key,
                    format!("`{ts}` is not after the previous sample's time"),
                ));
            }
        }
        formats.insert(format);
        samples.push(MeterSample { unix_ms, watts });
    }
    if samples.len() < 2 {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: format!(
                "{} sample(s): a meter log needs at least two",
                samples.len()
            ),
        });
    }
    if formats.len() > 1 {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: format!(
                "timestamps mix formats ({}); use one",
                formats.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let time_format = formats.into_iter().next().unwrap_or_default().to_string();
    let mut notes = Vec::new();
    if time_format.contains("without a zone") {
        notes.push("the log's timestamps carry no time zone; they were read as UTC".into());
    }
    Ok(MeterLog {
        samples,
        time_format,
        notes,
    })
}

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

/// One cell's window: our energy beside the meter's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMeter {
    /// The cell.
    pub cell_id: String,
    /// Run-clock window, ms.
    pub window_start_ms: f64,
    /// Run-clock window end, ms.
    pub window_end_ms: f64,
    /// Our energy over the window, J (`None`: not measured).
    pub ours_j: Option<f64>,
    /// How `ours_j` was obtained: `window` (the cell's energy window, read at the same edges),
    /// `timeline` (our cumulative counter interpolated at the edges) or `requests` (the sum of
    /// the cell's timed requests: only when the window holds nothing else).
    pub ours_from: Option<String>,
    /// The meter's energy over the window, J (`None`: see `why_not`).
    pub meter_j: Option<f64>,
    /// Meter samples strictly inside the window.
    pub meter_samples: usize,
    /// `meter_j / ours_j`.
    pub ratio: Option<f64>,
    /// Why a figure is missing or not to be trusted.
    pub why_not: Option<String>,
}

/// What `tcobench meter import` writes into a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterImport {
    /// Layout version ([`METER_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The log's file name (as given).
    pub source: String,
    /// SHA-256 of the log's bytes.
    pub source_sha256: String,
    /// What the meter measures, in the user's words (e.g. "wall plug, whole server").
    pub scope: String,
    /// How the log's timestamps were read.
    pub time_format: String,
    /// Samples in the log.
    pub samples: usize,
    /// Median sample spacing, ms.
    pub median_interval_ms: f64,
    /// Offset added to the meter's times, ms.
    pub offset_ms: f64,
    /// `given` (by the user, or 0) or `correlation` (found by [`estimate_offset`]).
    pub offset_method: String,
    /// The correlation search, when one was made.
    pub offset_search: Option<OffsetEstimate>,
    /// Our energy method and scope for these windows.
    pub ours_method: String,
    /// Our scope (`gpu-board`, `cpu-package`, …).
    pub ours_scope: String,
    /// One row per cell with a measured window.
    pub cells: Vec<CellMeter>,
    /// Median of the valid ratios.
    pub median_ratio: Option<f64>,
    /// Remarks a reader should know.
    pub notes: Vec<String>,
}

/// Our cumulative energy at `t` from one cell's timeline samples (linear interpolation).
fn cumulative_at(samples: &[&PowerSample], t: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| {
            s.energy_j_cum
                .filter(|e| e.is_finite())
                .map(|e| (s.t_ms, e))
        })
        .collect();
    let i = pts.partition_point(|&(pt, _)| pt <= t);
    if i == 0 || i == pts.len() {
        // Exactly on the last sample still counts.
        return pts.last().filter(|p| p.0 == t).map(|p| p.1);
    }
    let (t0, e0) = pts[i - 1];
    let (t1, e1) = pts[i];
    Some(e0 + (e1 - e0) * (t - t0) / (t1 - t0))
}

/// Sets the meter's energy beside ours for every completed cell with a measured window.
/// `request_energy` gives, per cell id, the sum of its measured requests' energy (J), used when
/// our timeline does not bracket the window.
pub fn compare_cells(
    manifest: &Manifest,
    power: &[PowerSample],
    request_energy: &BTreeMap<String, f64>,
    meter: &Trace,
    median_interval_ms: f64,
) -> Vec<CellMeter> {
    let mut rows = Vec::new();
    for cell in &manifest.cells {
        if cell.status != CellOutcome::Ok {
            continue;
        }
        let (Some(a), Some(b)) = (cell.window_start_ms, cell.window_end_ms) else {
            continue;
        };
        let mine: Vec<&PowerSample> = power
            .iter()
            .filter(|s| s.cell_id.as_deref() == Some(cell.cell_id.as_str()))
            .collect();
        let timeline = cumulative_at(&mine, a)
            .zip(cumulative_at(&mine, b))
            .map(|(ea, eb)| eb - ea);
        let window = cell.energy.as_ref();
        let padded = window.is_some_and(|w| w.padding_requests > 0);
        let (ours_j, ours_from) = match (window.and_then(|w| w.energy_j), timeline) {
            (Some(e), _) => (Some(e), Some("window".to_string())),
            (None, Some(e)) => (Some(e), Some("timeline".to_string())),
            // Padding requests lengthen the window but are not among the timed requests.
            (None, None) if !padded => match request_energy.get(&cell.cell_id) {
                Some(e) => (Some(*e), Some("requests".to_string())),
                None => (None, None),
            },
            (None, None) => (None, None),
        };
        let mut why = Vec::new();
        let measured = meter.energy_j(a, b);
        if measured.is_none() {
            why.push("the meter log does not cover the window".to_string());
        }
        let meter_samples = measured.map_or(0, |m| m.1);
        if measured.is_some() && b - a < 2.0 * median_interval_ms {
            why.push(format!(
                "window {:.0} ms is shorter than two meter intervals ({:.0} ms)",
                b - a,
                2.0 * median_interval_ms
            ));
        }
        if ours_j.is_none() {
            why.push("our energy was not measured for this cell".into());
        }
        let valid = why.is_empty();
        let meter_j = measured.map(|m| m.0).filter(|_| valid);
        let ratio = meter_j
            .zip(ours_j)
            .filter(|(_, o)| *o > 0.0)
            .map(|(m, o)| m / o);
        rows.push(CellMeter {
            cell_id: cell.cell_id.clone(),
            window_start_ms: a,
            window_end_ms: b,
            ours_j,
            ours_from,
            meter_j,
            meter_samples,
            ratio,
            why_not: (!valid).then(|| why.join("; ")),
        });
    }
    rows
}

/// Median of the valid ratios of `rows`.
pub fn median_ratio(rows: &[CellMeter]) -> Option<f64> {
    let mut r: Vec<f64> = rows.iter().filter_map(|c| c.ratio).collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let n = r.len();
    Some(if n % 2 == 1 {
        r[n / 2]
    } else {
        (r[n / 2 - 1] + r[n / 2]) / 2.0
    })
}

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
