//! The `throughput` plot: mean tokens/s per completed cell as bars with 95 % CI error bars.

use plotters::prelude::*;
use tcobench_analysis::RunStats;
use tcobench_results::{CellStats, Metric};

use super::common;
use super::key::{key_lines, KeyEntry};
use super::labels::{index_labels, short_labels};
use super::style::{BLUE, CHART_HEIGHT, WIDTH};
use super::{ok_cells, DrawResult};
use crate::ReportError;

/// Throughput by cell: bars of mean tokens/s with 95 % CI error bars. `None` when no completed
/// cell has a throughput.
pub fn throughput_svg(stats: &RunStats) -> Result<Option<String>, ReportError> {
    let cells: Vec<&CellStats> = ok_cells(stats)
        .map(|(_, c)| c)
        .filter(|c| c.metric(Metric::TokensPerS).is_some())
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let key = key_lines(&cells);
    common::render("throughput", |svg| draw_throughput(svg, &cells, &key))
}

/// Draws the throughput bars of `cells` with their CI error bars, and `key` under the chart.
fn draw_throughput(svg: &mut String, cells: &[&CellStats], key: &[KeyEntry]) -> DrawResult {
    let d: Vec<_> = cells
        .iter()
        .map(|c| c.metric(Metric::TokensPerS).expect("filtered").clone())
        .collect();
    let top = d
        .iter()
        .map(|d| d.ci95_mean.map_or(d.mean, |[_, hi]| hi.max(d.mean)))
        .fold(0.0f64, f64::max);
    let bottom = d
        .iter()
        .filter_map(|d| d.ci95_mean.map(|[lo, _]| lo))
        .fold(0.0f64, f64::min);
    // Headroom for the legend (upper right).
    let top = if top > bottom {
        top * 1.3
    } else {
        bottom + 1.0
    };
    let any_ci = d.iter().any(|d| d.ci95_mean.is_some());

    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.category_chart(
        "Throughput by cell (mean, 95 % CI)",
        &short_labels(cells),
        &index_labels(cells),
        "cell",
        bottom..top,
        "throughput (tokens/s)",
    )?;
    let fill = BLUE.mix(0.85).filled();
    chart
        .draw_series(
            d.iter()
                .enumerate()
                .map(|(i, d)| common::bar(i as f64, d.mean, fill)),
        )?
        .label("mean tokens/s")
        .legend(common::legend_box(fill));
    if any_ci {
        common::draw_mean_cis(&mut chart, d.iter().map(|d| (d.mean, d.ci95_mean)), 14)?;
    }
    frame.finish()
}
