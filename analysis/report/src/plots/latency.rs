//! The `latency` plot: a box plot of end-to-end latency per completed cell (quartile boxes,
//! 1.5 IQR whiskers, median, mean, outliers).

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use tcobench_analysis::RunStats;
use tcobench_results::load::LoadedRequests;
use tcobench_results::{CellStats, Metric};

use super::axes::{extent, padded, CategoryAxis};
use super::boxplot::BoxStats;
use super::common;
use super::key::{key_lines, KeyEntry};
use super::labels::{index_labels, short_labels};
use super::style::{BLUE, CHART_HEIGHT, ORANGE, SKY, VERMILLION, WIDTH};
use super::{ok_cells, DrawResult};
use crate::ReportError;

/// The latency chart: cells against milliseconds.
type LatencyChart<'a, 's> = common::Chart<'a, 's, CategoryAxis, RangedCoordf64>;

/// Half the width of a box, in categories.
const BOX_HALF_WIDTH: f64 = 0.28;

/// Latency distribution per completed cell: box plot of `e2e_ms`. `None` when no completed cell
/// has latency values. `requests.cells` must be in the same (manifest) order as `stats.cells`.
pub fn latency_svg(
    stats: &RunStats,
    requests: &LoadedRequests,
) -> Result<Option<String>, ReportError> {
    let mut cells = Vec::new();
    let mut boxes = Vec::new();
    for (i, c) in ok_cells(stats) {
        let Some(samples) = requests.cells.get(i).filter(|s| s.cell_id == c.cell_id) else {
            continue;
        };
        if let Some(b) = BoxStats::compute(samples.metric(Metric::E2eMs)) {
            cells.push(c);
            boxes.push(b);
        }
    }
    if cells.is_empty() {
        return Ok(None);
    }
    let key = key_lines(&cells);
    common::render("latency", |svg| draw_latency(svg, &cells, &boxes, &key))
}

/// Draws the box plot of `boxes`, one per cell of `cells`, with `key` under it.
fn draw_latency(
    svg: &mut String,
    cells: &[&CellStats],
    boxes: &[BoxStats],
    key: &[KeyEntry],
) -> DrawResult {
    let (lo, hi) = latency_range(boxes);
    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.category_chart(
        "End-to-end latency per cell",
        &short_labels(cells),
        &index_labels(cells),
        "cell",
        lo..hi,
        "end-to-end latency (ms)",
    )?;
    draw_boxes(&mut chart, boxes)?;
    draw_whiskers(&mut chart, boxes)?;
    draw_medians(&mut chart, boxes)?;
    draw_means(&mut chart, boxes)?;
    if boxes.iter().any(|b| !b.outliers.is_empty()) {
        draw_outliers(&mut chart, boxes)?;
    }
    common::draw_legend(&mut chart)?;
    frame.finish()
}

/// The latency axis' range: the whiskers and outliers of `boxes`, padded, floored at 0 where
/// the padding crosses it, with headroom for the legend.
fn latency_range(boxes: &[BoxStats]) -> (f64, f64) {
    let (lo, hi) = extent(boxes.iter().flat_map(|b| {
        [b.whisker_lo, b.whisker_hi]
            .into_iter()
            .chain(b.outliers.iter().copied())
    }))
    .unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
    let (lo, hi) = padded(lo, hi, 0.08);
    let lo = if lo < 0.0 && hi > 0.0 {
        lo.max(0.0)
    } else {
        lo
    };
    // Headroom for the legend (upper right).
    let hi = hi + (hi - lo) * 0.3;
    (lo, hi)
}

/// The quartile boxes (Q1 to Q3), filled and outlined, named in the legend.
fn draw_boxes(chart: &mut LatencyChart<'_, '_>, boxes: &[BoxStats]) -> DrawResult {
    let w = BOX_HALF_WIDTH;
    chart
        .draw_series(boxes.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            [
                Rectangle::new([(x - w, b.q1), (x + w, b.q3)], SKY.mix(0.45).filled()),
                Rectangle::new([(x - w, b.q1), (x + w, b.q3)], BLUE.stroke_width(1)),
            ]
        }))?
        .label("quartiles (Q1–Q3, type 7)")
        .legend(common::legend_box(SKY.mix(0.45).filled()));
    Ok(())
}

/// The whiskers with their caps, named in the legend.
fn draw_whiskers(chart: &mut LatencyChart<'_, '_>, boxes: &[BoxStats]) -> DrawResult {
    let w = BOX_HALF_WIDTH;
    chart
        .draw_series(boxes.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            [
                PathElement::new(vec![(x, b.q3), (x, b.whisker_hi)], BLUE.stroke_width(1)),
                PathElement::new(vec![(x, b.q1), (x, b.whisker_lo)], BLUE.stroke_width(1)),
                PathElement::new(
                    vec![(x - w / 2.0, b.whisker_hi), (x + w / 2.0, b.whisker_hi)],
                    BLUE.stroke_width(1),
                ),
                PathElement::new(
                    vec![(x - w / 2.0, b.whisker_lo), (x + w / 2.0, b.whisker_lo)],
                    BLUE.stroke_width(1),
                ),
            ]
        }))?
        .label("whiskers (1.5 IQR)")
        .legend(common::legend_vline(BLUE.stroke_width(1)));
    Ok(())
}

/// The medians, across each box, named in the legend.
fn draw_medians(chart: &mut LatencyChart<'_, '_>, boxes: &[BoxStats]) -> DrawResult {
    let w = BOX_HALF_WIDTH;
    chart
        .draw_series(boxes.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            PathElement::new(
                vec![(x - w, b.median), (x + w, b.median)],
                VERMILLION.stroke_width(3),
            )
        }))?
        .label("median")
        .legend(common::legend_hline(VERMILLION.stroke_width(3)));
    Ok(())
}

/// The means as crosses, named in the legend.
fn draw_means(chart: &mut LatencyChart<'_, '_>, boxes: &[BoxStats]) -> DrawResult {
    chart
        .draw_series(
            boxes
                .iter()
                .enumerate()
                .map(|(i, b)| Cross::new((i as f64, b.mean), 5, BLACK.stroke_width(2))),
        )?
        .label("mean")
        .legend(|(x, y)| Cross::new((x + 7, y), 5, BLACK.stroke_width(2)));
    Ok(())
}

/// The outliers as circles, named in the legend.
fn draw_outliers(chart: &mut LatencyChart<'_, '_>, boxes: &[BoxStats]) -> DrawResult {
    chart
        .draw_series(boxes.iter().enumerate().flat_map(|(i, b)| {
            b.outliers
                .iter()
                .map(move |&y| Circle::new((i as f64, y), 3, ORANGE.stroke_width(2)))
        }))?
        .label("outliers")
        .legend(|(x, y)| Circle::new((x + 7, y), 3, ORANGE.stroke_width(2)));
    Ok(())
}
