//! The meter beside our energy: its power integrated over each cell's measured window (the
//! trapezoid rule), set beside the energy we measured for the same window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tcobench_results::schema::{CellOutcome, Manifest, PowerSample};

use super::*;

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
