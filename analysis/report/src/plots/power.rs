//! The `power` plot: power over time per sampled device, each cell's measured window shaded and
//! labelled with its `#index` where the label clears the one before.

use std::collections::BTreeMap;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use tcobench_analysis::RunStats;
use tcobench_results::schema::{CellRecord, PowerSample};
use tcobench_results::CellStats;

use super::axes::padded;
use super::common;
use super::key::{key_lines, KeyEntry};
use super::labels::sanitize_label;
use super::style::{series_style, CHART_HEIGHT, FONT, WIDTH};
use super::DrawResult;
use crate::ReportError;

/// The power samples of each `(source, device)`: `(time in s, watts)`, in time order.
type Series = BTreeMap<(String, String), Vec<(f64, f64)>>;

/// The power chart: seconds against watts.
type PowerChart<'a, 's> = common::Chart<'a, 's, RangedCoordf64, RangedCoordf64>;

/// Power over time, one line per (source, device), with each cell's measured window shaded.
/// `None` when no sample has a finite power value.
pub fn power_svg(
    samples: &[PowerSample],
    stats: &RunStats,
    records: &[CellRecord],
) -> Result<Option<String>, ReportError> {
    let series = power_series(samples);
    if series.is_empty() {
        return Ok(None);
    }
    let windows = measured_windows(stats, records);
    let key_cells: Vec<&CellStats> = windows.iter().map(|w| w.0).collect();
    let key = key_lines(&key_cells);
    common::render("power", |svg| draw_power(svg, &series, &windows, &key))
}

/// The samples with a finite time and power, per `(source, device)`, in seconds, sorted by time.
fn power_series(samples: &[PowerSample]) -> Series {
    let mut series: Series = BTreeMap::new();
    for s in samples {
        if let Some(w) = s.watts.filter(|w| w.is_finite() && s.t_ms.is_finite()) {
            series
                .entry((s.source.clone(), s.device.clone()))
                .or_default()
                .push((s.t_ms / 1000.0, w));
        }
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

/// Each cell's measured windows — one per execution of a replicated cell — in seconds, where
/// the run recorded finite, ordered ends.
fn measured_windows<'a>(
    stats: &'a RunStats,
    records: &[CellRecord],
) -> Vec<(&'a CellStats, f64, f64)> {
    stats
        .cells
        .iter()
        .flat_map(|c| {
            records
                .iter()
                .filter(|r| {
                    r.cell_id == c.cell_id
                        || r.replicate
                            .as_ref()
                            .is_some_and(|x| x.configuration_id == c.cell_id)
                })
                .filter_map(move |r| {
                    let (s, e) = (r.window_start_ms?, r.window_end_ms?);
                    (s.is_finite() && e.is_finite() && e >= s).then_some((
                        c,
                        s / 1000.0,
                        e / 1000.0,
                    ))
                })
        })
        .collect()
}

/// Draws `series` over time with `windows` shaded and labelled, and `key` under the chart.
fn draw_power(
    svg: &mut String,
    series: &Series,
    windows: &[(&CellStats, f64, f64)],
    key: &[KeyEntry],
) -> DrawResult {
    let ((t_lo, t_hi), (w_lo, w_hi)) = power_ranges(series, windows);
    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.chart("Power over time", common::Y_LABELS, t_lo..t_hi, w_lo..w_hi)?;
    common::mesh(&mut chart, &common::ticks, &common::ticks)
        .x_desc("time since run start (s)")
        .y_desc("power (W)")
        .draw()?;

    if !windows.is_empty() {
        draw_windows(&mut chart, windows, w_lo, w_hi)?;
        draw_window_labels(&mut chart, windows, w_hi)?;
    }
    draw_power_lines(&mut chart, series)?;
    common::draw_legend(&mut chart)?;
    frame.finish()
}

/// The time axis' range (samples and windows, padded) and the power axis' range (from 0 or
/// below, with headroom for the legend).
fn power_ranges(series: &Series, windows: &[(&CellStats, f64, f64)]) -> ((f64, f64), (f64, f64)) {
    let all = || series.values().flatten();
    let t_lo = all()
        .map(|p| p.0)
        .chain(windows.iter().map(|w| w.1))
        .fold(f64::INFINITY, f64::min);
    let t_hi = all()
        .map(|p| p.0)
        .chain(windows.iter().map(|w| w.2))
        .fold(f64::NEG_INFINITY, f64::max);
    let (t_lo, t_hi) = padded(t_lo, t_hi, 0.02);
    let w_hi = all().map(|p| p.1).fold(0.0f64, f64::max);
    let w_lo = all().map(|p| p.1).fold(0.0f64, f64::min);
    // Headroom for the legend (upper right).
    let w_hi = if w_hi > w_lo { w_hi * 1.3 } else { w_lo + 1.0 };
    ((t_lo, t_hi), (w_lo, w_hi))
}

/// Shades each measured window, alternately lighter and darker, named once in the legend.
fn draw_windows(
    chart: &mut PowerChart<'_, '_>,
    windows: &[(&CellStats, f64, f64)],
    w_lo: f64,
    w_hi: f64,
) -> DrawResult {
    let shade = RGBColor(120, 120, 120);
    chart
        .draw_series(windows.iter().enumerate().map(|(i, (_, s, e))| {
            let alpha = if i % 2 == 0 { 0.16 } else { 0.26 };
            Rectangle::new([(*s, w_lo), (*e, w_hi)], shade.mix(alpha).filled())
        }))?
        .label("measured window of a cell (#index)")
        .legend(common::legend_box(shade.mix(0.2).filled()));
    Ok(())
}

/// Each window's `#index` at its start, left to right, where it clears the one before.
fn draw_window_labels(
    chart: &mut PowerChart<'_, '_>,
    windows: &[(&CellStats, f64, f64)],
    w_hi: f64,
) -> DrawResult {
    let mut starts: Vec<(usize, f64)> = windows.iter().map(|(c, s, _)| (c.index, *s)).collect();
    starts.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut free_from = f64::NEG_INFINITY;
    let mut labels = Vec::new();
    for (index, s) in starts {
        let text = format!("#{index}");
        let x = f64::from(chart.backend_coord(&(s, w_hi)).0);
        if x >= free_from {
            free_from = x + common::text_width(&text, 12.0) + common::LABEL_GAP;
            labels.push(Text::new(
                text,
                (s, w_hi),
                (FONT, 12).into_font().color(&BLACK),
            ));
        }
    }
    chart.draw_series(labels)?;
    Ok(())
}

/// One line per `(source, device)`, or a marker where it has a single sample, named in the
/// legend.
fn draw_power_lines(chart: &mut PowerChart<'_, '_>, series: &Series) -> DrawResult {
    for (i, ((source, device), points)) in series.iter().enumerate() {
        let (color, _) = series_style(i);
        let name = sanitize_label(&format!("{device} ({source})"), 60);
        if points.len() >= 2 {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(common::legend_hline(color.stroke_width(2)));
        } else {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
        }
    }
    Ok(())
}
