//! Throughput against batch size: one line per configuration — backend, model, device, dtype and
//! the prompt and generation lengths, i.e. everything but the batch size — with the mean tokens/s
//! of each batch size and its 95 % Student-t CI as an error bar.
//!
//! The x axis is categorical over the batch sizes measured (so 1, 2, 4 … 64 are evenly spaced,
//! as on a log₂ axis); series are dodged a little sideways so that their error bars stay apart.

use super::axes::{extent_ci, finite, finite_ci, ValueAxis};
use super::common;
use super::key::KeyEntry;
use super::style::{CHART_HEIGHT, WIDTH};
use super::DrawResult;
use tcobench_analysis::RunStats;
use tcobench_results::schema::CellOutcome;
use tcobench_results::{CellStats, Metric};

use crate::ReportError;

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
        c.config.backend.clone(),
        c.config.model.clone(),
        c.config.device.clone(),
        c.config.dtype.clone(),
        c.config.prompt_tokens,
        c.config.new_tokens,
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
            batch_size: c.config.batch_size,
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
pub fn throughput_batch_svg(stats: &RunStats) -> Result<Option<String>, ReportError> {
    let series = batch_series(stats);
    if series.is_empty() {
        return Ok(None);
    }
    common::render("throughput_batch", |svg| draw(svg, &series))
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
    let (lo, hi) = extent_ci(all.map(|p| (p.mean, p.ci95))).unwrap_or((0.0, 1.0));
    let y_axis = ValueAxis::fit(lo, hi, true);
    let y_desc = y_axis.describe("throughput (tokens/s)");

    let key: Vec<KeyEntry> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let batches: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("b{} #{}", p.batch_size, p.cell_index))
                .collect();
            KeyEntry::series(
                i,
                &format!("S{}  {}  ({})", i + 1, s.label, batches.join(", ")),
            )
        })
        .collect();
    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, &key)?;
    let mut chart = frame.category_chart(
        "Throughput vs batch size (mean, 95 % CI), one line per configuration",
        &labels,
        &labels,
        "batch size (sequences per request)",
        y_axis,
        y_desc,
    )?;

    for (i, s) in series.iter().enumerate() {
        let dodge = common::dodge(i, series.len(), 0.3, 0.05);
        let points: Vec<_> = s
            .points
            .iter()
            .map(|p| (pos(p.batch_size) + dodge, p.mean, p.ci95))
            .collect();
        common::draw_points(&mut chart, i, &points, true)?;
    }
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::testutil::{check_svg, stats_for};
    use tcobench_results::testutil::{manifest, request};

    #[test]
    fn series_group_everything_but_the_batch_size() {
        // Cells aaaa (b2) and bbbb (b4) share the configuration; a third ok cell on another
        // backend makes a second series; the failed cell cccc is left out.
        let mut m = manifest("r", "s", "org/model");
        m.cells[2].status = CellOutcome::Ok;
        m.cells[2].error = None;
        m.cells[2].config.backend = "other".into();
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
