//! Throughput against batch size: one line per configuration — backend, model, device, dtype and
//! the prompt and generation lengths, i.e. everything but the batch size — with the mean tokens/s
//! of each batch size and its 95 % Student-t CI as an error bar.
//!
//! The x axis is categorical over the batch sizes measured (so 1, 2, 4 … 64 are evenly spaced,
//! as on a log₂ axis); series are dodged a little sideways so that their error bars stay apart.

use plotters::prelude::*;

use super::{
    extent, finite, finite_ci, fmt_tick, label_at, plot_err, sanitize_label, series_style,
    CategoryAxis, DrawResult, KeyEntry, ValueAxis, FONT, WIDTH,
};
use crate::schema::CellOutcome;
use crate::{AnalysisError, CellStats, Metric, RunStats};

/// One measured batch size of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPoint {
    /// Sequences per request.
    pub batch_size: u32,
    /// The cell's execution index.
    pub cell_index: usize,
    /// Mean tokens/s.
    pub mean: f64,
    /// 95 % CI of the mean, when finite.
    pub ci95: Option<[f64; 2]>,
}

/// One line of the plot: a configuration and its points in ascending batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSeries {
    /// Readable configuration (`backend · model · device · dtype`, plus the lengths when they
    /// differ between series).
    pub label: String,
    /// Points, ascending batch size.
    pub points: Vec<BatchPoint>,
}

type ConfigKey = (String, String, String, String, u32, u32);

fn config_key(c: &CellStats) -> ConfigKey {
    (
        c.backend.clone(),
        c.model.clone(),
        c.device.clone(),
        c.dtype.clone(),
        c.prompt_tokens,
        c.new_tokens,
    )
}

/// The series of the plot: completed cells with a finite mean tokens/s, grouped by everything but
/// the batch size, in order of first appearance.
pub fn batch_series(stats: &RunStats) -> Vec<BatchSeries> {
    let mut groups: Vec<(ConfigKey, Vec<BatchPoint>)> = Vec::new();
    for c in stats.cells.iter().filter(|c| c.status == CellOutcome::Ok) {
        let Some(d) = c.metric(Metric::TokensPerS) else {
            continue;
        };
        let Some(mean) = finite(d.mean) else {
            continue;
        };
        let point = BatchPoint {
            batch_size: c.batch_size,
            cell_index: c.index,
            mean,
            ci95: finite_ci(d.ci95_mean),
        };
        let key = config_key(c);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, points)) => points.push(point),
            None => groups.push((key, vec![point])),
        }
    }
    let lengths_vary = groups
        .iter()
        .any(|((.., p, n), _)| (*p, *n) != (groups[0].0 .4, groups[0].0 .5));
    groups
        .into_iter()
        .map(|((backend, model, device, dtype, p, n), mut points)| {
            points.sort_by_key(|pt| (pt.batch_size, pt.cell_index));
            let mut label = format!("{backend} · {model} · {device} · {dtype}");
            if lengths_vary {
                label.push_str(&format!(" · p{p} n{n}"));
            }
            BatchSeries { label, points }
        })
        .collect()
}

/// Throughput vs batch size. `None` when no completed cell has a finite throughput.
pub fn throughput_batch_svg(stats: &RunStats) -> Result<Option<String>, AnalysisError> {
    let series = batch_series(stats);
    if series.is_empty() {
        return Ok(None);
    }
    let mut svg = String::new();
    draw(&mut svg, &series).map_err(plot_err("throughput_batch"))?;
    Ok(Some(svg))
}

fn draw(svg: &mut String, series: &[BatchSeries]) -> DrawResult {
    let mut batches: Vec<u32> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.batch_size))
        .collect();
    batches.sort_unstable();
    batches.dedup();
    let labels: Vec<String> = batches.iter().map(u32::to_string).collect();
    let pos = |b: u32| batches.binary_search(&b).unwrap_or(0) as f64;

    let all = series.iter().flat_map(|s| &s.points);
    let (lo, hi) = extent(all.flat_map(|p| {
        let [l, h] = p.ci95.unwrap_or([p.mean, p.mean]);
        [p.mean, l, h]
    }))
    .unwrap_or((0.0, 1.0));
    let y_axis = ValueAxis::fit(lo, hi, true);
    let y_desc = y_axis.describe("throughput (tokens/s)");

    let key: Vec<KeyEntry> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (color, shape) = series_style(i);
            let batches: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("b{} #{}", p.batch_size, p.cell_index))
                .collect();
            KeyEntry::marker(
                color,
                shape,
                true,
                sanitize_label(
                    &format!("S{}  {}  ({})", i + 1, s.label, batches.join(", ")),
                    130,
                ),
            )
        })
        .collect();
    let chart_height = super::CHART_HEIGHT;
    let root = SVGBackend::with_string(svg, (WIDTH, chart_height + super::key_height(&key)))
        .into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(chart_height);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            "Throughput vs batch size (mean, 95 % CI), one line per configuration",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(CategoryAxis::new(batches.len()), y_axis)?;
    let fmt_x = |x: &f64| label_at(&labels, *x);
    let fmt_y = |y: &f64| fmt_tick(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("batch size (sequences per request)")
        .y_desc(y_desc)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;

    let n = series.len() as f64;
    let step = (0.3 / n).min(0.05);
    for (i, s) in series.iter().enumerate() {
        let (color, shape) = series_style(i);
        let dodge = (i as f64 - (n - 1.0) / 2.0) * step;
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (pos(p.batch_size) + dodge, p.mean))
            .collect();
        if pts.len() >= 2 {
            chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
        }
        chart.draw_series(s.points.iter().filter_map(|p| {
            p.ci95.map(|[l, h]| {
                ErrorBar::new_vertical(
                    pos(p.batch_size) + dodge,
                    l,
                    p.mean,
                    h,
                    color.stroke_width(1),
                    8,
                )
            })
        }))?;
        super::draw_markers(&mut chart, pts.iter().copied(), shape, 5, color.filled())?;
    }
    super::draw_styled_key(&lower, &key)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::{check_svg, stats_for};
    use crate::testutil::{manifest, request};

    #[test]
    fn series_group_everything_but_the_batch_size() {
        // Cells aaaa (b2) and bbbb (b4) share the configuration; a third ok cell on another
        // backend makes a second series; the failed cell cccc is left out.
        let mut m = manifest("r", "s", "org/model");
        m.cells[2].status = CellOutcome::Ok;
        m.cells[2].error = None;
        m.cells[2].backend = "other".into();
        let rows: Vec<_> = m
            .cells
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(100.0 + f64::from(r)))))
            .collect();
        let (stats, _) = stats_for(&rows, &m);
        let s = batch_series(&stats);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "mock · org/model · cpu · f32");
        let b: Vec<u32> = s[0].points.iter().map(|p| p.batch_size).collect();
        assert_eq!(b, [2, 4]);
        // tokens/s of one request = batch · 8 tokens / e2e s; e2e = 100, 101, 102 ms.
        let expect = [100.0, 101.0, 102.0]
            .iter()
            .map(|e| 16.0 / (e / 1000.0))
            .sum::<f64>()
            / 3.0;
        assert!((s[0].points[0].mean - expect).abs() < 1e-9);
        assert_eq!(s[1].points.len(), 1);
        assert_eq!(s[1].points[0].cell_index, 2);
        let svg = throughput_batch_svg(&stats).unwrap().unwrap();
        check_svg(&svg);
        assert!(svg.contains("batch size (sequences per request)"));
    }

    #[test]
    fn non_finite_throughput_is_skipped() {
        let m = manifest("r", "s", "m");
        let rows: Vec<_> = m.cells[..2]
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(100.0 + f64::from(r)))))
            .collect();
        let (mut stats, _) = stats_for(&rows, &m);
        stats.cells[0].metrics.get_mut("tokens_per_s").unwrap().mean = f64::NAN;
        let s = batch_series(&stats);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points.len(), 1);
        assert_eq!(s[0].points[0].batch_size, 4);
        check_svg(&throughput_batch_svg(&stats).unwrap().unwrap());
        stats.cells[1].metrics.get_mut("tokens_per_s").unwrap().mean = f64::INFINITY;
        assert_eq!(throughput_batch_svg(&stats).unwrap(), None);
    }
}
