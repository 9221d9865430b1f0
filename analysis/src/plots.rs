//! SVG plots, rendered in memory with plotters' SVG backend.
//!
//! * `throughput`: mean tokens/s per completed cell (bars) with 95 % Student-t CI error bars;
//! * `latency`: box plot of end-to-end latency per completed cell — box = quartiles (type-7,
//!   [`crate::stats::quantile_sorted`]), whiskers to the most extreme values within 1.5 IQR,
//!   outliers as circles, mean as a cross;
//! * `power`: power over time per sampled device, each cell's measured window shaded; drawn only
//!   when there are power samples.
//!
//! Colours come from the Okabe–Ito palette (colour-blind safe). Text is emitted as SVG `<text>`
//! (no fonts embedded or referenced). plotters-svg XML-escapes text content and attribute values
//! (`< > & " '`); labels are additionally stripped of control characters, which XML forbids.
//! Axis labels are short (`#index` plus the configuration fields that differ between cells); a
//! key under each chart gives every cell's full configuration and id.

use std::collections::BTreeMap;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::load::LoadedRequests;
use crate::schema::{CellOutcome, CellRecord, Manifest, PowerSample};
use crate::stats;
use crate::{AnalysisError, CellStats, Metric, RunStats};

/// Names of the plots this module can draw (file stem under `plots/`).
pub const PLOT_NAMES: [&str; 3] = ["throughput", "latency", "power"];

/// The Okabe–Ito colour-blind-safe palette, in its usual order: orange, sky blue, bluish green,
/// yellow, blue, vermillion, reddish purple, black.
pub const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 158, 115),
    RGBColor(240, 228, 66),
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

const BLUE: RGBColor = OKABE_ITO[4];
const SKY: RGBColor = OKABE_ITO[1];
const VERMILLION: RGBColor = OKABE_ITO[5];
const ORANGE: RGBColor = OKABE_ITO[0];
/// Series colours for line plots: blue, vermillion, bluish green, orange, reddish purple, sky blue,
/// black (yellow is left out: too light on white).
const SERIES: [RGBColor; 7] = [
    OKABE_ITO[4],
    OKABE_ITO[5],
    OKABE_ITO[2],
    OKABE_ITO[0],
    OKABE_ITO[6],
    OKABE_ITO[1],
    OKABE_ITO[7],
];

const WIDTH: u32 = 900;
const CHART_HEIGHT: u32 = 440;
const KEY_LINE: u32 = 18;
const FONT: &str = "sans-serif";

/// One rendered plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// File stem (one of [`PLOT_NAMES`]).
    pub name: &'static str,
    /// Title, also used as the figure caption in reports.
    pub title: String,
    /// Complete SVG document.
    pub svg: String,
}

impl Plot {
    /// The SVG for inlining into HTML5: the `xmlns` attribute (whose value is a URL, and which
    /// HTML parsers do not need) is removed, and any `//` left (only possible inside user text,
    /// e.g. a model given as a URL) is written as character references, so that the HTML holds no
    /// URL-looking string at all. Rendering is unchanged.
    pub fn inline_svg(&self) -> String {
        self.svg
            .replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
            .replace("//", "&#x2f;&#x2f;")
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn plot_err(name: &str) -> impl Fn(Box<dyn std::error::Error>) -> AnalysisError + '_ {
    move |e| AnalysisError::Plot {
        name: name.to_string(),
        message: e.to_string(),
    }
}

/// Replaces characters XML 1.0 does not allow (control characters) and truncates to `max` chars.
pub fn sanitize_label(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > max {
        let mut t: String = clean.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        clean
    }
}

fn last_component(model: &str) -> &str {
    model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(model)
}

/// Short axis labels for `cells`: `#index` followed by the configuration fields that differ
/// between them (model shown by its last path component).
pub fn short_labels(cells: &[&CellStats]) -> Vec<String> {
    type Field = fn(&CellStats) -> String;
    let fields: [Field; 7] = [
        |c| c.backend.clone(),
        |c| last_component(&c.model).to_string(),
        |c| c.device.clone(),
        |c| c.dtype.clone(),
        |c| format!("b{}", c.batch_size),
        |c| format!("p{}", c.prompt_tokens),
        |c| format!("n{}", c.new_tokens),
    ];
    let varying: Vec<&Field> = fields
        .iter()
        .filter(|f| cells.iter().any(|c| f(c) != f(cells[0])))
        .collect();
    cells
        .iter()
        .map(|c| {
            let mut parts = vec![format!("#{}", c.index)];
            parts.extend(varying.iter().map(|f| f(c)));
            sanitize_label(&parts.join(" "), 28)
        })
        .collect()
}

fn key_lines(cells: &[&CellStats]) -> Vec<String> {
    cells
        .iter()
        .map(|c| {
            sanitize_label(
                &format!("#{}  {}  [{}]", c.index, c.label(), c.cell_id),
                130,
            )
        })
        .collect()
}

fn height_for(key: &[String]) -> u32 {
    CHART_HEIGHT + 12 + KEY_LINE * key.len() as u32
}

/// Draws the key (one line per cell) into the lower area.
fn draw_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    key: &[String],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, line) in key.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (12, 4 + (i as u32 * KEY_LINE) as i32),
            (FONT, 13).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

/// A categorical x axis: cells at integer positions `0..n`, key points only there.
struct CategoryAxis {
    n: usize,
    inner: RangedCoordf64,
}

impl CategoryAxis {
    fn new(n: usize) -> Self {
        Self {
            n,
            inner: (-0.5..n as f64 - 0.5).into(),
        }
    }
}

impl Ranged for CategoryAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let max = hint.max_num_points().max(1);
        let step = self.n.div_ceil(max).max(1);
        (0..self.n).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for CategoryAxis {
    fn format(value: &f64) -> String {
        format!("{value}")
    }
}

fn label_at(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

/// Tick label: 4 significant digits, trailing zeros removed (`50`, `0.5`, `1.25`).
fn fmt_tick(v: f64) -> String {
    let s = crate::fmt_sig(v, 4);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Pads a `[lo, hi]` value range so that it has non-zero height.
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 0.0 {
        let pad = (lo.abs() * 0.05).max(1.0);
        (lo - pad, hi + pad)
    } else {
        (lo - span * frac, hi + span * frac)
    }
}

fn ok_cells(stats: &RunStats) -> impl Iterator<Item = (usize, &CellStats)> {
    stats
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.status == CellOutcome::Ok)
}

/// Throughput by cell: bars of mean tokens/s with 95 % CI error bars. `None` when no completed
/// cell has a throughput.
pub fn throughput_svg(stats: &RunStats) -> Result<Option<String>, AnalysisError> {
    let cells: Vec<&CellStats> = ok_cells(stats)
        .map(|(_, c)| c)
        .filter(|c| c.metric(Metric::TokensPerS).is_some())
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let key = key_lines(&cells);
    let mut svg = String::new();
    draw_throughput(&mut svg, &cells, &key).map_err(plot_err("throughput"))?;
    Ok(Some(svg))
}

fn draw_throughput(svg: &mut String, cells: &[&CellStats], key: &[String]) -> DrawResult {
    let labels = short_labels(cells);
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

    let root = SVGBackend::with_string(svg, (WIDTH, height_for(key))).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(CHART_HEIGHT);
    let mut chart = ChartBuilder::on(&upper)
        .caption("Throughput by cell (mean, 95 % CI)", (FONT, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(CategoryAxis::new(cells.len()), bottom..top)?;
    let fmt_x = |x: &f64| label_at(&labels, *x);
    let fmt_y = |y: &f64| fmt_tick(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("cell")
        .y_desc("throughput (tokens/s)")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    chart
        .draw_series(d.iter().enumerate().map(|(i, d)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.32, 0.0), (x + 0.32, d.mean)],
                BLUE.mix(0.85).filled(),
            )
        }))?
        .label("mean tokens/s")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BLUE.mix(0.85).filled()));
    if any_ci {
        chart
            .draw_series(d.iter().enumerate().filter_map(|(i, d)| {
                d.ci95_mean.map(|[lo, hi]| {
                    ErrorBar::new_vertical(i as f64, lo, d.mean, hi, BLACK.stroke_width(2), 14)
                })
            }))?
            .label("95 % CI of the mean (Student t)")
            .legend(|(x, y)| {
                PathElement::new(vec![(x + 7, y - 6), (x + 7, y + 6)], BLACK.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()?;
    }
    draw_key(&lower, key)?;
    root.present()?;
    Ok(())
}

/// Box-plot summary of one sample (type-7 quartiles, 1.5 IQR whiskers).
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStats {
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Lowest value ≥ q1 − 1.5 IQR.
    pub whisker_lo: f64,
    /// Highest value ≤ q3 + 1.5 IQR.
    pub whisker_hi: f64,
    /// Values beyond the whiskers.
    pub outliers: Vec<f64>,
    /// Mean.
    pub mean: f64,
}

impl BoxStats {
    /// Computes the box of `xs`; `None` when empty or non-finite.
    pub fn compute(xs: &[f64]) -> Option<Self> {
        let sorted = stats::sorted_copy(xs)?;
        let q1 = stats::quantile_sorted(&sorted, 0.25)?;
        let median = stats::quantile_sorted(&sorted, 0.5)?;
        let q3 = stats::quantile_sorted(&sorted, 0.75)?;
        let iqr = q3 - q1;
        let (lo_fence, hi_fence) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
        let inside = || {
            sorted
                .iter()
                .copied()
                .filter(|&x| x >= lo_fence && x <= hi_fence)
        };
        Some(Self {
            q1,
            median,
            q3,
            whisker_lo: inside().next().unwrap_or(q1),
            whisker_hi: inside().next_back().unwrap_or(q3),
            outliers: sorted
                .iter()
                .copied()
                .filter(|&x| x < lo_fence || x > hi_fence)
                .collect(),
            mean: stats::mean(&sorted)?,
        })
    }
}

/// Latency distribution per completed cell: box plot of `e2e_ms`. `None` when no completed cell
/// has latency values. `requests.cells` must be in the same (manifest) order as `stats.cells`.
pub fn latency_svg(
    stats: &RunStats,
    requests: &LoadedRequests,
) -> Result<Option<String>, AnalysisError> {
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
    let mut svg = String::new();
    draw_latency(&mut svg, &cells, &boxes, &key).map_err(plot_err("latency"))?;
    Ok(Some(svg))
}

fn draw_latency(
    svg: &mut String,
    cells: &[&CellStats],
    boxes: &[BoxStats],
    key: &[String],
) -> DrawResult {
    let labels = short_labels(cells);
    let lo = boxes
        .iter()
        .map(|b| {
            b.outliers
                .first()
                .map_or(b.whisker_lo, |o| o.min(b.whisker_lo))
        })
        .fold(f64::INFINITY, f64::min);
    let hi = boxes
        .iter()
        .map(|b| {
            b.outliers
                .last()
                .map_or(b.whisker_hi, |o| o.max(b.whisker_hi))
        })
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = padded(lo, hi, 0.08);
    let lo = if lo < 0.0 && hi > 0.0 {
        lo.max(0.0)
    } else {
        lo
    };
    // Headroom for the legend (upper right).
    let hi = hi + (hi - lo) * 0.3;

    let root = SVGBackend::with_string(svg, (WIDTH, height_for(key))).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(CHART_HEIGHT);
    let mut chart = ChartBuilder::on(&upper)
        .caption("End-to-end latency per cell", (FONT, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(CategoryAxis::new(cells.len()), lo..hi)?;
    let fmt_x = |x: &f64| label_at(&labels, *x);
    let fmt_y = |y: &f64| fmt_tick(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("cell")
        .y_desc("end-to-end latency (ms)")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;

    let w = 0.28;
    chart
        .draw_series(boxes.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            [
                Rectangle::new([(x - w, b.q1), (x + w, b.q3)], SKY.mix(0.45).filled()),
                Rectangle::new([(x - w, b.q1), (x + w, b.q3)], BLUE.stroke_width(1)),
            ]
        }))?
        .label("quartiles (Q1–Q3, type 7)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], SKY.mix(0.45).filled()));
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
        .legend(|(x, y)| {
            PathElement::new(vec![(x + 7, y - 6), (x + 7, y + 6)], BLUE.stroke_width(1))
        });
    chart
        .draw_series(boxes.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            PathElement::new(
                vec![(x - w, b.median), (x + w, b.median)],
                VERMILLION.stroke_width(3),
            )
        }))?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], VERMILLION.stroke_width(3)));
    chart
        .draw_series(
            boxes
                .iter()
                .enumerate()
                .map(|(i, b)| Cross::new((i as f64, b.mean), 5, BLACK.stroke_width(2))),
        )?
        .label("mean")
        .legend(|(x, y)| Cross::new((x + 7, y), 5, BLACK.stroke_width(2)));
    if boxes.iter().any(|b| !b.outliers.is_empty()) {
        chart
            .draw_series(boxes.iter().enumerate().flat_map(|(i, b)| {
                b.outliers
                    .iter()
                    .map(move |&y| Circle::new((i as f64, y), 3, ORANGE.stroke_width(2)))
            }))?
            .label("outliers")
            .legend(|(x, y)| Circle::new((x + 7, y), 3, ORANGE.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    draw_key(&lower, key)?;
    root.present()?;
    Ok(())
}

/// Power over time, one line per (source, device), with each cell's measured window shaded.
/// `None` when no sample has a finite power value.
pub fn power_svg(
    samples: &[PowerSample],
    stats: &RunStats,
    records: &[CellRecord],
) -> Result<Option<String>, AnalysisError> {
    let mut series: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        if let Some(w) = s.watts.filter(|w| w.is_finite() && s.t_ms.is_finite()) {
            series
                .entry((s.source.clone(), s.device.clone()))
                .or_default()
                .push((s.t_ms / 1000.0, w));
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let windows: Vec<(&CellStats, f64, f64)> = stats
        .cells
        .iter()
        .filter_map(|c| {
            let r = records.iter().find(|r| r.cell_id == c.cell_id)?;
            let (s, e) = (r.window_start_ms?, r.window_end_ms?);
            (s.is_finite() && e.is_finite() && e >= s).then_some((c, s / 1000.0, e / 1000.0))
        })
        .collect();
    let key_cells: Vec<&CellStats> = windows.iter().map(|w| w.0).collect();
    let key = key_lines(&key_cells);
    let mut svg = String::new();
    draw_power(&mut svg, &series, &windows, &key).map_err(plot_err("power"))?;
    Ok(Some(svg))
}

type Series = BTreeMap<(String, String), Vec<(f64, f64)>>;

fn draw_power(
    svg: &mut String,
    series: &Series,
    windows: &[(&CellStats, f64, f64)],
    key: &[String],
) -> DrawResult {
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

    let root = SVGBackend::with_string(svg, (WIDTH, height_for(key))).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(CHART_HEIGHT);
    let mut chart = ChartBuilder::on(&upper)
        .caption("Power over time", (FONT, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(t_lo..t_hi, w_lo..w_hi)?;
    let fmt = |v: &f64| fmt_tick(*v);
    chart
        .configure_mesh()
        .x_desc("time since run start (s)")
        .y_desc("power (W)")
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;

    let shade = RGBColor(120, 120, 120);
    if !windows.is_empty() {
        chart
            .draw_series(windows.iter().enumerate().map(|(i, (_, s, e))| {
                let alpha = if i % 2 == 0 { 0.16 } else { 0.26 };
                Rectangle::new([(*s, w_lo), (*e, w_hi)], shade.mix(alpha).filled())
            }))?
            .label("measured window of a cell (#index)")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], shade.mix(0.2).filled())
            });
        chart.draw_series(windows.iter().map(|(c, s, _)| {
            Text::new(
                format!("#{}", c.index),
                (*s, w_hi),
                (FONT, 12).into_font().color(&BLACK),
            )
        }))?;
    }
    for (i, ((source, device), points)) in series.iter().enumerate() {
        let color = SERIES[i % SERIES.len()];
        let name = sanitize_label(&format!("{device} ({source})"), 60);
        if points.len() >= 2 {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    draw_key(&lower, key)?;
    root.present()?;
    Ok(())
}

/// Renders every plot that has data, in [`PLOT_NAMES`] order.
pub fn render_all(
    stats: &RunStats,
    manifest: &Manifest,
    requests: &LoadedRequests,
    power: &[PowerSample],
) -> Result<Vec<Plot>, AnalysisError> {
    let mut plots = Vec::new();
    if let Some(svg) = throughput_svg(stats)? {
        plots.push(Plot {
            name: "throughput",
            title: "Throughput by cell: mean tokens/s with 95 % CI".into(),
            svg,
        });
    }
    if let Some(svg) = latency_svg(stats, requests)? {
        plots.push(Plot {
            name: "latency",
            title: "End-to-end latency distribution per cell".into(),
            svg,
        });
    }
    if let Some(svg) = power_svg(power, stats, &manifest.cells)? {
        plots.push(Plot {
            name: "power",
            title: "Power over time, measured windows shaded".into(),
            svg,
        });
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{manifest, request, NASTY};
    use crate::{compute_stats, load};
    use std::path::Path;

    fn stats_for(
        rows: &[crate::schema::RequestRecord],
        m: &Manifest,
    ) -> (RunStats, LoadedRequests) {
        let df = crate::schema::requests_frame(rows).unwrap();
        let loaded = load::requests_from_frame(&df, Path::new("requests.parquet"), m).unwrap();
        (compute_stats(m, &loaded), loaded)
    }

    fn check_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"), "unescaped user text in SVG");
        assert!(!svg.contains("NaN") && !svg.contains("=\"inf") && !svg.contains("=\"-inf"));
    }

    #[test]
    fn one_cell_one_value_and_constant_values_do_not_panic() {
        let mut m = manifest("r", "s", "m");
        m.cells.truncate(1);
        for rows in [
            vec![request(&m.cells[0], 0, false, Some(50.0))],
            (0..5)
                .map(|r| request(&m.cells[0], r, false, Some(50.0)))
                .collect(),
        ] {
            let (stats, loaded) = stats_for(&rows, &m);
            let t = throughput_svg(&stats).unwrap().unwrap();
            check_svg(&t);
            let l = latency_svg(&stats, &loaded).unwrap().unwrap();
            check_svg(&l);
            let one = [PowerSample {
                t_ms: 5.0,
                source: "mock".into(),
                device: "cpu".into(),
                cell_id: None,
                watts: Some(10.0),
                energy_j_cum: None,
                temp_c: None,
                sm_clock_mhz: None,
                throttle_reasons: None,
            }];
            check_svg(&power_svg(&one, &stats, &m.cells).unwrap().unwrap());
        }
    }

    #[test]
    fn no_data_means_no_plot() {
        let m = manifest("r", "s", "m");
        let (stats, loaded) = stats_for(&[], &m);
        assert_eq!(throughput_svg(&stats).unwrap(), None);
        assert_eq!(latency_svg(&stats, &loaded).unwrap(), None);
        assert_eq!(power_svg(&[], &stats, &m.cells).unwrap(), None);
        let no_watts = PowerSample {
            t_ms: 0.0,
            source: "none".into(),
            device: "cpu".into(),
            cell_id: None,
            watts: None,
            energy_j_cum: None,
            temp_c: None,
            sm_clock_mhz: None,
            throttle_reasons: None,
        };
        assert_eq!(power_svg(&[no_watts], &stats, &m.cells).unwrap(), None);
    }

    #[test]
    fn user_text_is_escaped_in_svg() {
        let m = manifest("r", "s", &format!("org/{NASTY}"));
        let rows: Vec<_> = m.cells[..2]
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(10.0 + f64::from(r)))))
            .collect();
        let (stats, loaded) = stats_for(&rows, &m);
        for svg in [
            throughput_svg(&stats).unwrap().unwrap(),
            latency_svg(&stats, &loaded).unwrap().unwrap(),
        ] {
            check_svg(&svg);
            assert!(
                svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{svg}"
            );
            assert!(svg.contains("&quot;q&quot;"));
            assert!(!svg.contains("\"q\""));
        }
    }

    #[test]
    fn inline_svg_has_no_url() {
        let m = manifest("r", "s", "https://huggingface.co/org/model");
        let rows: Vec<_> = (0..3)
            .map(|r| request(&m.cells[0], r, false, Some(10.0)))
            .collect();
        let (stats, _) = stats_for(&rows, &m);
        let svg = throughput_svg(&stats).unwrap().unwrap();
        assert!(
            svg.contains("xmlns=\"http://www.w3.org/2000/svg\""),
            "standalone file keeps xmlns"
        );
        let plot = Plot {
            name: "throughput",
            title: String::new(),
            svg,
        };
        let inline = plot.inline_svg();
        assert!(!inline.contains("http://") && !inline.contains("https://"));
        assert!(inline.contains("huggingface.co"));
    }

    #[test]
    fn box_stats_type7_and_whiskers() {
        // 1..=9 plus an outlier 100: q1 = 3.25, median 5.5, q3 = 7.75 (R type 7), IQR 4.5,
        // upper fence 14.5 -> whisker 9, outlier 100.
        let mut xs: Vec<f64> = (1..=9).map(f64::from).collect();
        xs.push(100.0);
        let b = BoxStats::compute(&xs).unwrap();
        assert_eq!((b.q1, b.median, b.q3), (3.25, 5.5, 7.75));
        assert_eq!((b.whisker_lo, b.whisker_hi), (1.0, 9.0));
        assert_eq!(b.outliers, vec![100.0]);
        let one = BoxStats::compute(&[7.0]).unwrap();
        assert_eq!(
            (one.q1, one.q3, one.whisker_lo, one.whisker_hi),
            (7.0, 7.0, 7.0, 7.0)
        );
    }

    #[test]
    fn short_labels_show_what_varies() {
        let m = manifest("r", "s", "org/model");
        let (stats, _) = stats_for(&[], &m);
        let cells: Vec<&CellStats> = stats.cells.iter().collect();
        assert_eq!(short_labels(&cells), ["#0 b2", "#1 b4", "#2 b1"]);
        assert_eq!(short_labels(&cells[..1]), ["#0"]);
        assert_eq!(sanitize_label("a\u{1}b", 10), "a b");
        assert_eq!(sanitize_label("abcdef", 4), "abc…");
        assert_eq!(fmt_tick(50.0), "50");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(1.25), "1.25");
        assert_eq!(fmt_tick(1500.0), "1500");
        assert_eq!(fmt_tick(0.0), "0");
    }
}
