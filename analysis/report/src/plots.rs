//! SVG plots, rendered in memory with plotters' SVG backend.
//!
//! * `throughput`: mean tokens/s per completed cell (bars) with 95 % Student-t CI error bars;
//! * `throughput_batch`: mean tokens/s against the batch size, one line per configuration
//!   (everything but the batch size), with CI error bars ([`batch`]);
//! * `latency`: box plot of end-to-end latency per completed cell — box = quartiles (type-7,
//!   [`tcobench_stats::descriptive::quantile_sorted`]), whiskers to the most extreme values within 1.5 IQR,
//!   outliers as circles, mean as a cross;
//! * `cost_pareto`: $/1M tokens against tokens/s per pricing tier, the Pareto-optimal cells
//!   joined by a step line and labelled ([`cost`]);
//! * `energy`: J per generated token per cell, grouped by backend, measured or estimated as the
//!   run's power basis says ([`energy`]);
//! * `carbon`: gCO2e per 1M generated tokens per cell under the run's energy selection and, when
//!   the run folder holds a `sweep.json`, under each of its variants ([`energy`]);
//! * `power`: power over time per sampled device, each cell's measured window shaded; drawn only
//!   when there are power samples;
//! * `effects`, `effects_e2e_ms`, `effects_ttft_ms`, `effects_tpot_ms`,
//!   `effects_energy_j_per_token`: forest plots of the in-run comparisons' effect sizes with 95 %
//!   CIs, one per metric, each axis naming the unit and which side is better ([`forest`]).
//!
//! A plot without data is not drawn (`None`); non-finite values are skipped, never drawn as zero.
//! Colours come from the Okabe–Ito palette (colour-blind safe); beyond its seven usable colours,
//! series differ by marker shape too. Text is emitted as SVG `<text>` (no fonts embedded or
//! referenced). plotters-svg XML-escapes text content and attribute values (`< > & " '`); labels
//! are additionally stripped of control characters, which XML forbids. Category axes never let
//! neighbouring labels overlap, whatever the number of cells (rule and width estimate in the
//! `common` module): a per-cell axis shows `#index` plus the configuration fields that differ
//! between cells when that fits each cell's pixels, else `#index` alone, else the `#index` of
//! every k-th cell; a key under each chart gives every cell's or series' `#index`, full
//! configuration and id (the report's tables number cells by the same index). The power plot's
//! window labels skip a window whose label would run into the previous one.

use std::collections::BTreeMap;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use tcobench_results::load::LoadedRequests;
use tcobench_results::schema::{CellOutcome, CellRecord, Manifest, PowerSample};
use tcobench_stats::descriptive;
use tcobench_analysis::RunStats;
use tcobench_results::{CellStats, Metric};

use crate::ReportError;

pub mod batch;
mod common;
pub mod cost;
pub mod energy;
pub mod forest;

/// Names of the plots this module can draw (file stem under `plots/`), in report order; the
/// `effects*` ones are [`forest::FOREST_PLOTS`].
pub const PLOT_NAMES: [&str; 12] = [
    "throughput",
    "throughput_batch",
    "latency",
    "cost_pareto",
    "energy",
    "carbon",
    "power",
    "effects",
    "effects_e2e_ms",
    "effects_ttft_ms",
    "effects_tpot_ms",
    "effects_energy_j_per_token",
];

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

fn plot_err(name: &str) -> impl Fn(Box<dyn std::error::Error>) -> ReportError + '_ {
    move |e| ReportError::Plot {
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
        |c| c.config.backend.clone(),
        |c| last_component(&c.config.model).to_string(),
        |c| c.config.device.clone(),
        |c| c.config.dtype.clone(),
        |c| format!("b{}", c.config.batch_size),
        |c| format!("p{}", c.config.prompt_tokens),
        |c| format!("n{}", c.config.new_tokens),
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

/// `#index` of each of `cells`: their labels on a category axis too narrow for [`short_labels`]
/// (the key under the chart, [`key_lines`], and the report's tables name every cell by it).
fn index_labels(cells: &[&CellStats]) -> Vec<String> {
    cells.iter().map(|c| format!("#{}", c.index)).collect()
}

/// The key lines naming `cells`: `#index  configuration  [cell id]`.
fn key_lines(cells: &[&CellStats]) -> Vec<KeyEntry> {
    cells
        .iter()
        .map(|c| {
            KeyEntry::text(sanitize_label(
                &format!("#{}  {}  [{}]", c.index, c.label(), c.cell_id),
                130,
            ))
        })
        .collect()
}

/// Marker shapes; series beyond the seven palette colours differ by shape as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

/// Colour and marker of series `i`: the palette first, then the next shape with the palette again.
fn series_style(i: usize) -> (RGBColor, Marker) {
    const SHAPES: [Marker; 4] = [
        Marker::Circle,
        Marker::Triangle,
        Marker::Square,
        Marker::Diamond,
    ];
    (
        SERIES[i % SERIES.len()],
        SHAPES[(i / SERIES.len()) % SHAPES.len()],
    )
}

/// Draws `shape` markers at `points` (data coordinates), `size` pixels from their centres.
fn draw_markers<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    points: impl IntoIterator<Item = (f64, f64)>,
    shape: Marker,
    size: i32,
    style: ShapeStyle,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let points = points.into_iter();
    match shape {
        Marker::Circle => {
            chart.draw_series(points.map(|p| Circle::new(p, size, style)))?;
        }
        Marker::Triangle => {
            chart.draw_series(points.map(|p| TriangleMarker::new(p, size + 1, style)))?;
        }
        Marker::Square => {
            let r = size - 1;
            chart.draw_series(
                points.map(|p| EmptyElement::at(p) + Rectangle::new([(-r, -r), (r, r)], style)),
            )?;
        }
        Marker::Diamond => {
            chart.draw_series(points.map(|p| {
                EmptyElement::at(p)
                    + Polygon::new(vec![(0, -size), (size, 0), (0, size), (-size, 0)], style)
            }))?;
        }
    }
    Ok(())
}

/// Draws one `shape` marker at pixel `at` of `area` (for keys).
fn draw_key_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    shape: Marker,
    at: (i32, i32),
    size: i32,
    style: ShapeStyle,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    match shape {
        Marker::Circle => area.draw(&Circle::new(at, size, style))?,
        Marker::Triangle => area.draw(&TriangleMarker::new(at, size + 1, style))?,
        Marker::Square => {
            let r = size - 1;
            area.draw(&Rectangle::new(
                [(at.0 - r, at.1 - r), (at.0 + r, at.1 + r)],
                style,
            ))?
        }
        Marker::Diamond => area.draw(&Polygon::new(
            vec![
                (at.0, at.1 - size),
                (at.0 + size, at.1),
                (at.0, at.1 + size),
                (at.0 - size, at.1),
            ],
            style,
        ))?,
    }
    Ok(())
}

/// One line of a key: text, drawn after a marker or line sample when `style` is set.
struct KeyEntry {
    style: Option<KeyStyle>,
    text: String,
}

/// How a key line's sample is drawn.
#[derive(Clone, Copy)]
enum KeyStyle {
    /// A series marker.
    Marker(RGBColor, Marker, bool),
    /// A line segment.
    Line(RGBColor, u32),
}

impl KeyEntry {
    fn text(text: String) -> Self {
        Self { style: None, text }
    }

    fn marker(color: RGBColor, shape: Marker, filled: bool, text: String) -> Self {
        Self {
            style: Some(KeyStyle::Marker(color, shape, filled)),
            text,
        }
    }

    /// Series `i`'s filled marker ([`series_style`]) before `text`.
    fn series(i: usize, text: &str) -> Self {
        let (color, shape) = series_style(i);
        Self::marker(color, shape, true, sanitize_label(text, 130))
    }
}

fn key_height(entries: &[KeyEntry]) -> u32 {
    12 + KEY_LINE * entries.len() as u32
}

/// Draws a key whose lines may start with a marker or line sample.
fn draw_styled_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[KeyEntry],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, e) in entries.iter().enumerate() {
        let y = 4 + (i as u32 * KEY_LINE) as i32;
        let x = match e.style {
            None => 12,
            Some(KeyStyle::Marker(color, shape, filled)) => {
                let style = if filled {
                    color.filled()
                } else {
                    color.stroke_width(2)
                };
                draw_key_marker(area, shape, (22, y + 7), 5, style)?;
                36
            }
            Some(KeyStyle::Line(color, width)) => {
                area.draw(&PathElement::new(
                    vec![(12, y + 7), (32, y + 7)],
                    color.stroke_width(width),
                ))?;
                36
            }
        };
        area.draw(&Text::new(
            e.text.clone(),
            (x, y),
            (FONT, 13).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

/// `x` when finite.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `ci` when both ends are finite and ordered.
fn finite_ci(ci: Option<[f64; 2]>) -> Option<[f64; 2]> {
    ci.filter(|[lo, hi]| lo.is_finite() && hi.is_finite() && lo <= hi)
}

/// The lowest and highest of `values` (finite ones only); `None` when there is none.
fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// The [`extent`] of values and the ends of their CIs.
fn extent_ci(points: impl IntoIterator<Item = (f64, Option<[f64; 2]>)>) -> Option<(f64, f64)> {
    extent(points.into_iter().flat_map(|(v, ci)| {
        let [lo, hi] = ci.unwrap_or([v; 2]);
        [v, lo, hi]
    }))
}

/// A categorical axis: categories at integer positions `0..n`, key points (ticks and labels)
/// only there, at every `step`-th one.
struct CategoryAxis {
    n: usize,
    /// Set once the chart's pixels are known ([`common::Frame::category_chart`]): plotters owns
    /// the axis by then and lends it out only shared.
    step: std::cell::Cell<usize>,
    inner: RangedCoordf64,
}

impl CategoryAxis {
    fn new(n: usize) -> Self {
        Self {
            n,
            step: std::cell::Cell::new(1),
            inner: (-0.5..n as f64 - 0.5).into(),
        }
    }

    /// Puts key points at every `step`-th category only (0, step, 2·step, …).
    fn set_step(&self, step: usize) {
        self.step.set(step.max(1));
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
        let step = self.n.div_ceil(max).max(self.step.get()).max(1);
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

/// A numeric axis that is linear, or logarithmic (ticks at 1, 2, 5 × 10^k) when the values span
/// more than [`LOG_RATIO`] and are all positive — so that small configurations stay readable
/// beside large ones.
struct ValueAxis {
    lo: f64,
    hi: f64,
    log: bool,
    inner: RangedCoordf64,
}

/// Highest/lowest ratio of positive values beyond which a [`ValueAxis`] turns logarithmic.
const LOG_RATIO: f64 = 30.0;

impl ValueAxis {
    /// An axis for values in `[lo, hi]` (finite); `floor_at_zero` starts a linear axis of
    /// non-negative values at 0.
    fn fit(lo: f64, hi: f64, floor_at_zero: bool) -> Self {
        if lo > 0.0 && hi / lo > LOG_RATIO {
            let (lo, hi) = (lo / 1.25, hi * 1.25);
            return Self {
                lo,
                hi,
                log: true,
                inner: (lo.log10()..hi.log10()).into(),
            };
        }
        let (l, h) = padded(if floor_at_zero { lo.min(0.0) } else { lo }, hi, 0.06);
        let l = if floor_at_zero && lo >= 0.0 { 0.0 } else { l };
        Self {
            lo: l,
            hi: h,
            log: false,
            inner: (l..h).into(),
        }
    }

    /// `desc`, with the scale named when it is logarithmic.
    fn describe(&self, desc: &str) -> String {
        if self.log {
            format!("{desc}, log scale")
        } else {
            desc.to_string()
        }
    }
}

impl Ranged for ValueAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        if self.log {
            self.inner.map(&value.max(self.lo).log10(), limit)
        } else {
            self.inner.map(value, limit)
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if !self.log {
            return self.inner.key_points(hint);
        }
        let max = hint.max_num_points().max(2);
        let decades = self.lo.log10().floor() as i32..=self.hi.log10().ceil() as i32;
        let points = |mantissas: &'static [f64]| -> Vec<f64> {
            decades
                .clone()
                .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
                .filter(|v| (self.lo..=self.hi).contains(v))
                .collect()
        };
        let fine = points(&[1.0, 2.0, 5.0]);
        if fine.len() <= max {
            return fine;
        }
        let ones = points(&[1.0]);
        let step = ones.len().div_ceil(max).max(1);
        ones.into_iter().step_by(step).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for ValueAxis {
    fn format(value: &f64) -> String {
        fmt_tick(*value)
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
    let s = tcobench_results::fmt_sig(v, 4);
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
        let sorted = descriptive::sorted_copy(xs)?;
        let q1 = descriptive::quantile_sorted(&sorted, 0.25)?;
        let median = descriptive::quantile_sorted(&sorted, 0.5)?;
        let q3 = descriptive::quantile_sorted(&sorted, 0.75)?;
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
            mean: descriptive::mean(&sorted)?,
        })
    }
}

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

fn draw_latency(
    svg: &mut String,
    cells: &[&CellStats],
    boxes: &[BoxStats],
    key: &[KeyEntry],
) -> DrawResult {
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

    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.category_chart(
        "End-to-end latency per cell",
        &short_labels(cells),
        &index_labels(cells),
        "cell",
        lo..hi,
        "end-to-end latency (ms)",
    )?;

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
        .legend(common::legend_box(SKY.mix(0.45).filled()));
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
    common::draw_legend(&mut chart)?;
    frame.finish()
}

/// Power over time, one line per (source, device), with each cell's measured window shaded.
/// `None` when no sample has a finite power value.
pub fn power_svg(
    samples: &[PowerSample],
    stats: &RunStats,
    records: &[CellRecord],
) -> Result<Option<String>, ReportError> {
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
    common::render("power", |svg| draw_power(svg, &series, &windows, &key))
}

type Series = BTreeMap<(String, String), Vec<(f64, f64)>>;

fn draw_power(
    svg: &mut String,
    series: &Series,
    windows: &[(&CellStats, f64, f64)],
    key: &[KeyEntry],
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

    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.chart("Power over time", common::Y_LABELS, t_lo..t_hi, w_lo..w_hi)?;
    common::mesh(&mut chart, &common::ticks, &common::ticks)
        .x_desc("time since run start (s)")
        .y_desc("power (W)")
        .draw()?;

    let shade = RGBColor(120, 120, 120);
    if !windows.is_empty() {
        chart
            .draw_series(windows.iter().enumerate().map(|(i, (_, s, e))| {
                let alpha = if i % 2 == 0 { 0.16 } else { 0.26 };
                Rectangle::new([(*s, w_lo), (*e, w_hi)], shade.mix(alpha).filled())
            }))?
            .label("measured window of a cell (#index)")
            .legend(common::legend_box(shade.mix(0.2).filled()));
        // Each window's `#index` at its start, left to right, where it clears the one before.
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
    }
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
    common::draw_legend(&mut chart)?;
    frame.finish()
}

/// Renders every plot that has data, in [`PLOT_NAMES`] order, with the carbon plot showing the
/// run's own energy selection only (see [`render_all_with_sweep`]).
pub fn render_all(
    stats: &RunStats,
    manifest: &Manifest,
    requests: &LoadedRequests,
    power: &[PowerSample],
) -> Result<Vec<Plot>, ReportError> {
    render_all_with_sweep(stats, manifest, requests, power, None)
}

/// Renders every plot of the run folder `run_dir`: [`render_all_with_sweep`] with the variants
/// of its `sweep.json` when there is one ([`energy::read_sweep`]).
pub fn render_run(
    run_dir: &std::path::Path,
    stats: &RunStats,
    manifest: &Manifest,
    requests: &LoadedRequests,
    power: &[PowerSample],
) -> Result<Vec<Plot>, ReportError> {
    let sweep = energy::read_sweep(run_dir, &stats.run_id)?;
    render_all_with_sweep(stats, manifest, requests, power, sweep.as_ref())
}

/// Renders every plot that has data, in [`PLOT_NAMES`] order; `sweep` adds one carbon series
/// per variant of a `tcobench sweep`.
pub fn render_all_with_sweep(
    stats: &RunStats,
    manifest: &Manifest,
    requests: &LoadedRequests,
    power: &[PowerSample],
    sweep: Option<&energy::SweepVariants>,
) -> Result<Vec<Plot>, ReportError> {
    let mut plots = Vec::new();
    let mut push = |name: &'static str, title: String, svg: Option<String>| {
        if let Some(svg) = svg {
            plots.push(Plot { name, title, svg });
        }
    };
    push(
        "throughput",
        "Throughput by cell: mean tokens/s with 95 % CI".into(),
        throughput_svg(stats)?,
    );
    push(
        "throughput_batch",
        "Throughput vs batch size per configuration: mean tokens/s with 95 % CI".into(),
        batch::throughput_batch_svg(stats)?,
    );
    push(
        "latency",
        "End-to-end latency distribution per cell".into(),
        latency_svg(stats, requests)?,
    );
    push(
        "cost_pareto",
        "Cost vs throughput per pricing tier, Pareto front marked".into(),
        cost::cost_pareto_svg(stats)?,
    );
    push(
        "energy",
        format!(
            "Energy per generated token by backend ({})",
            energy::basis_words(&manifest.power)
        ),
        energy::energy_svg(stats, &manifest.power)?,
    );
    push(
        "carbon",
        "Carbon per 1M generated tokens per grid scenario".into(),
        energy::carbon_svg(stats, sweep)?,
    );
    push(
        "power",
        "Power over time, measured windows shaded".into(),
        power_svg(power, stats, &manifest.cells)?,
    );
    for (name, metric) in forest::FOREST_PLOTS {
        push(
            name,
            forest::title(metric, &manifest.power),
            forest::effects_svg(stats, metric, &manifest.power)?,
        );
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::testutil::{manifest, request, NASTY};
    use tcobench_analysis::compute_stats;
    use tcobench_results::load;
    use std::path::Path;

    pub(crate) fn stats_for(
        rows: &[tcobench_results::schema::RequestRecord],
        m: &Manifest,
    ) -> (RunStats, LoadedRequests) {
        let df = tcobench_results::io::requests_frame(rows).unwrap();
        let loaded = load::requests_from_frame(&df, Path::new("requests.parquet"), m).unwrap();
        (compute_stats(m, &loaded), loaded)
    }

    const COSTING: &str = "
pricing:
  instances: [gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1]
  tiers: [on_demand, spot]
  utilization: 1.0
energy:
  pue: uptime_2023_average
  grid: gcp:us-central1
";

    /// The test manifest's run (cells aaaa and bbbb completed, cccc failed), priced on two
    /// instances under two tiers with a grid intensity.
    pub(crate) fn priced_stats() -> RunStats {
        let m = manifest("r", "s", "org/model");
        let rows: Vec<_> = m.cells[..2]
            .iter()
            .flat_map(|c| (0..4).map(move |r| request(c, r, false, Some(100.0 + f64::from(r)))))
            .collect();
        let (mut stats, _) = stats_for(&rows, &m);
        let spec: tcobench_results::spec::CostingSpec = serde_yaml::from_str(COSTING).unwrap();
        stats.costing = Some(tcobench_analysis::price_run(&stats, &m, &spec, None).unwrap());
        stats
    }

    /// A small XML well-formedness check: every tag closed in order, attributes quoted, no raw
    /// `<` or bare `&` in text or attribute values, and one root element.
    fn check_well_formed(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        let mut roots = 0;
        let check_text = |t: &str| {
            let mut parts = t.split('&');
            parts.next();
            for p in parts {
                let end = p.find(';').unwrap_or_else(|| panic!("bare & in {t:?}"));
                let entity = &p[..end];
                assert!(
                    ["lt", "gt", "amp", "quot", "apos"].contains(&entity)
                        || entity.starts_with('#'),
                    "unknown entity &{entity};"
                );
            }
        };
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open]);
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().expect("tag name");
            // Attributes: name="value" pairs, values without `<` and with valid entities.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find('=')
                    .unwrap_or_else(|| panic!("attribute without value in <{tag}>"));
                let quote = attrs[eq + 1..].chars().next().unwrap();
                assert!(
                    quote == '"' || quote == '\'',
                    "unquoted attribute in <{tag}>"
                );
                let value_end =
                    attrs[eq + 2..].find(quote).expect("unterminated attribute") + eq + 2;
                let value = &attrs[eq + 2..value_end];
                assert!(!value.contains('<'), "< in attribute of <{tag}>");
                check_text(value);
                for token in value.split([' ', ',']) {
                    if let Ok(x) = token.parse::<f64>() {
                        assert!(x.is_finite(), "non-finite number {token:?} in <{tag}>");
                    }
                }
                attrs = attrs[value_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(roots, 1, "one root element");
    }

    pub(crate) fn check_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"), "unescaped user text in SVG");
        assert!(!svg.contains("NaN") && !svg.contains("=\"inf") && !svg.contains("=\"-inf"));
        check_well_formed(svg);
    }

    #[test]
    fn value_axis_turns_logarithmic_for_wide_positive_ranges() {
        let log = ValueAxis::fit(1.0, 1000.0, true);
        assert!(log.log);
        assert_eq!(
            log.key_points(10usize),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log.key_points(4usize), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log.key_points(2usize), [1.0, 100.0]);
        // Decades are equally spaced on the pixel range.
        let px = |v: f64| log.map(&v, (0, 300));
        assert!(((px(10.0) - px(1.0)) - (px(100.0) - px(10.0))).abs() <= 1);
        assert!(px(1.0) < px(10.0) && px(1000.0) < px(log.range().end));
        assert!(log.describe("x").ends_with("log scale"));
        let lin = ValueAxis::fit(10.0, 100.0, true);
        assert!(!lin.log);
        assert_eq!(lin.range().start, 0.0);
        let neg = ValueAxis::fit(-5.0, 1000.0, true);
        assert!(!neg.log && neg.range().start < -5.0);
    }

    #[test]
    fn well_formed_check_rejects_broken_markup() {
        check_well_formed("<svg a=\"1\"><g><text>a &amp; b</text></g></svg>");
        for bad in [
            "<svg><g></svg>",
            "<svg><text>a & b</text></svg>",
            "<svg><text>a</g></svg>",
            "<svg a=1></svg>",
            "<svg a=\"<\"></svg>",
            "<svg></svg><svg></svg>",
            "<svg x=\"NaN\"></svg>",
            "<svg points=\"1,2 inf,3\"></svg>",
        ] {
            let caught = std::panic::catch_unwind(|| check_well_formed(bad));
            assert!(caught.is_err(), "accepted {bad}");
        }
    }

    fn power_samples(n: u32) -> Vec<PowerSample> {
        (0..n)
            .map(|i| PowerSample {
                t_ms: 100.0 * f64::from(i),
                source: "rapl".into(),
                device: "cpu-package".into(),
                cell_id: None,
                watts: Some(20.0 + f64::from(i % 7)),
                energy_j_cum: None,
                temp_c: None,
                sm_clock_mhz: None,
                throttle_reasons: None,
            })
            .collect()
    }

    /// `n` completed cells over 2 backends × 5 batch sizes × as many models as needed, each with
    /// `reps` requests, priced like [`priced_stats`].
    fn many_cells(n: usize, reps: u32, model: &str) -> (RunStats, Manifest, LoadedRequests) {
        many_cells_with(n, reps, model, |_, _| {})
    }

    /// [`many_cells`] with each cell record edited by `edit(index, cell)` first.
    fn many_cells_with(
        n: usize,
        reps: u32,
        model: &str,
        edit: impl Fn(usize, &mut CellRecord),
    ) -> (RunStats, Manifest, LoadedRequests) {
        let mut m = manifest("r", "s", model);
        let template = m.cells[0].clone();
        m.cells = (0..n)
            .map(|i| {
                let mut c = template.clone();
                c.index = i;
                c.cell_id = format!("{i:04x}");
                c.config.backend = ["candle", "onnxruntime"][i % 2].into();
                c.config.batch_size = 1 << ((i / 2) % 5);
                c.config.model = format!("{model}-{}", i / 10);
                c.window_start_ms = Some(1000.0 * i as f64);
                c.window_end_ms = Some(1000.0 * i as f64 + 800.0);
                edit(i, &mut c);
                c
            })
            .collect();
        let rows: Vec<_> = m
            .cells
            .iter()
            .flat_map(|c| {
                let base = 50.0 + 10.0 * c.index as f64;
                (0..reps).map(move |r| request(c, r, false, Some(base + f64::from(r))))
            })
            .collect();
        let (mut stats, loaded) = stats_for(&rows, &m);
        let spec: tcobench_results::spec::CostingSpec = serde_yaml::from_str(COSTING).unwrap();
        stats.costing = Some(tcobench_analysis::price_run(&stats, &m, &spec, None).unwrap());
        (stats, m, loaded)
    }

    #[test]
    fn render_all_draws_every_plot_in_order() {
        let (stats, m, loaded) = many_cells(4, 4, "org/model");
        let plots = render_all(&stats, &m, &loaded, &power_samples(40)).unwrap();
        let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
        assert_eq!(names, PLOT_NAMES);
        for p in &plots {
            check_svg(&p.svg);
            assert!(!p.title.is_empty());
        }
        // One forest plot per metric, in FOREST_PLOTS order, last.
        assert_eq!(PLOT_NAMES[7..], forest::FOREST_PLOTS.map(|(name, _)| name));
        // Without costing, comparisons or power the plots that need them are left out.
        let mut bare = stats.clone();
        bare.costing = None;
        bare.comparisons.clear();
        let names: Vec<&str> = render_all(&bare, &m, &loaded, &[])
            .unwrap()
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            ["throughput", "throughput_batch", "latency", "energy"]
        );
    }

    #[test]
    fn hundred_cells_render_with_a_key_line_each() {
        let (stats, m, loaded) = many_cells(100, 3, "org/model");
        let plots = render_all(&stats, &m, &loaded, &power_samples(600)).unwrap();
        assert_eq!(plots.len(), PLOT_NAMES.len());
        for p in &plots {
            check_svg(&p.svg);
        }
        let svg = |name: &str| &plots.iter().find(|p| p.name == name).unwrap().svg;
        // Every cell is named in the key of the per-cell plots (by its id).
        for name in ["energy", "carbon"] {
            for c in &stats.cells {
                assert!(
                    svg(name).contains(&format!("[{}]", c.cell_id)),
                    "{name}: {}",
                    c.cell_id
                );
            }
        }
        // 10 models × 2 backends = 20 configurations, each a series over 5 batch sizes.
        let series = batch::batch_series(&stats);
        assert_eq!(series.len(), 20);
        assert!(series.iter().all(|s| s.points.len() == 5));
        assert!(svg("throughput_batch").contains("S20 "));
        assert!(!svg("throughput_batch").contains("S21 "));
        // Forest rows: one per pair of the comparison sets (backend sets of 2 cells each).
        let pairs: usize = stats
            .comparisons
            .iter()
            .filter_map(|s| s.metrics.get("tokens_per_s"))
            .map(|a| a.pairwise.len())
            .sum();
        assert_eq!(pairs, 50);
        assert_eq!(
            forest::forest_rows(&stats, Metric::TokensPerS).0.len(),
            pairs
        );
        assert!(svg("effects").contains("R50 ") && !svg("effects").contains("R51 "));
    }

    #[test]
    fn new_plots_escape_user_text() {
        let (mut stats, m, loaded) = many_cells(4, 3, &format!("org/{NASTY}"));
        for c in &mut stats.cells {
            c.config.backend = format!("{NASTY} {}", c.config.backend);
        }
        let mut power = m.power.clone();
        power.method = NASTY.into();
        let sweep = energy::SweepVariants {
            run_id: stats.run_id.clone(),
            variants: vec![],
        };
        for svg in [
            batch::throughput_batch_svg(&stats).unwrap().unwrap(),
            cost::cost_pareto_svg(&stats).unwrap().unwrap(),
            energy::energy_svg(&stats, &power).unwrap().unwrap(),
            energy::carbon_svg(&stats, Some(&sweep)).unwrap().unwrap(),
        ] {
            check_svg(&svg);
            assert!(
                svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{svg}"
            );
            assert!(svg.contains("&quot;q&quot;"));
            assert!(!svg.contains("\"q\""));
        }
        let _ = loaded;
    }

    #[test]
    fn new_plots_with_one_cell_and_no_data() {
        let (stats, m, loaded) = many_cells(1, 1, "m");
        check_svg(&batch::throughput_batch_svg(&stats).unwrap().unwrap());
        check_svg(&energy::energy_svg(&stats, &m.power).unwrap().unwrap());
        // One request: no CI, but a point estimate to price and plot.
        check_svg(&cost::cost_pareto_svg(&stats).unwrap().unwrap());
        check_svg(&energy::carbon_svg(&stats, None).unwrap().unwrap());
        assert_eq!(
            forest::effects_svg(&stats, Metric::TokensPerS, &m.power).unwrap(),
            None
        );
        let _ = loaded;

        let m = manifest("r", "s", "m");
        let (empty, _) = stats_for(&[], &m);
        assert_eq!(batch::throughput_batch_svg(&empty).unwrap(), None);
        assert_eq!(cost::cost_pareto_svg(&empty).unwrap(), None);
        assert_eq!(energy::energy_svg(&empty, &m.power).unwrap(), None);
        assert_eq!(energy::carbon_svg(&empty, None).unwrap(), None);
        assert_eq!(
            forest::effects_svg(&empty, Metric::TokensPerS, &m.power).unwrap(),
            None
        );
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
        assert_eq!(index_labels(&cells), ["#0", "#1", "#2"]);
        assert_eq!(sanitize_label("a\u{1}b", 10), "a b");
        assert_eq!(sanitize_label("abcdef", 4), "abc…");
        assert_eq!(fmt_tick(50.0), "50");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(1.25), "1.25");
        assert_eq!(fmt_tick(1500.0), "1500");
        assert_eq!(fmt_tick(0.0), "0");
    }

    /// A `<text>` element of an SVG: position, anchor, vertical shift, font size and content
    /// (entities decoded).
    #[derive(Debug)]
    pub(crate) struct SvgText {
        pub(crate) x: f64,
        pub(crate) y: f64,
        pub(crate) anchor: String,
        pub(crate) dy: String,
        pub(crate) size: f64,
        pub(crate) text: String,
    }

    pub(crate) fn svg_texts(svg: &str) -> Vec<SvgText> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find("<text ") {
            let el = &rest[start..];
            let open = el.find('>').expect("unterminated <text");
            let close = el.find("</text>").expect("unclosed <text>");
            let tag = &el[..open];
            let attr = |name: &str| -> String {
                let key = format!(" {name}=\"");
                let at = tag
                    .find(&key)
                    .unwrap_or_else(|| panic!("no {name} in {tag}"))
                    + key.len();
                tag[at..at + tag[at..].find('"').unwrap()].to_string()
            };
            let text = el[open + 1..close]
                .trim()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            out.push(SvgText {
                x: attr("x").parse().unwrap(),
                y: attr("y").parse().unwrap(),
                anchor: attr("text-anchor"),
                dy: attr("dy"),
                size: attr("font-size").parse().unwrap(),
                text,
            });
            rest = &el[close..];
        }
        out
    }

    /// The SVG's width, from its root element.
    fn svg_width(svg: &str) -> f64 {
        let at = svg.find("width=\"").unwrap() + 7;
        svg[at..at + svg[at..].find('"').unwrap()].parse().unwrap()
    }

    /// The labels under a chart's x axis: centred tick labels hanging below one line, in the
    /// tick label font, left to right.
    fn x_axis_labels(svg: &str) -> Vec<SvgText> {
        let mut labels: Vec<SvgText> = svg_texts(svg)
            .into_iter()
            .filter(|t| {
                t.anchor == "middle"
                    && t.dy == "0.76em"
                    && (t.size - common::LABEL_FONT / 1.24).abs() < 1e-9
            })
            .collect();
        assert!(
            labels.iter().all(|t| t.y == labels[0].y),
            "x labels on one line: {labels:?}"
        );
        labels.sort_by(|a, b| a.x.total_cmp(&b.x));
        labels
    }

    /// Asserts that neighbouring x axis labels of `svg`, at the widths DejaVu Sans gives them,
    /// leave at least 2 px between them and stay inside the document.
    fn assert_x_labels_apart(what: &str, svg: &str) {
        let labels = x_axis_labels(svg);
        assert!(!labels.is_empty(), "{what}: no x axis labels");
        let width = |t: &SvgText| common::tests::dejavu_width(&t.text, t.size);
        for w in labels.windows(2) {
            let room = w[1].x - w[0].x - (width(&w[0]) + width(&w[1])) / 2.0;
            assert!(
                room >= 2.0,
                "{what}: {:?} at {} and {:?} at {} overlap ({room:.1} px apart)",
                w[0].text,
                w[0].x,
                w[1].text,
                w[1].x
            );
        }
        for t in &labels {
            assert!(!t.text.is_empty(), "{what}: empty label at {}", t.x);
            let half = width(t) / 2.0;
            assert!(
                t.x - half >= 0.0 && t.x + half <= svg_width(svg),
                "{what}: {:?} leaves the document",
                t.text
            );
        }
    }

    /// The per-cell category plots and the batch plot of a run, by name.
    fn category_plots(
        stats: &RunStats,
        m: &Manifest,
        loaded: &LoadedRequests,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("throughput", throughput_svg(stats).unwrap().unwrap()),
            ("latency", latency_svg(stats, loaded).unwrap().unwrap()),
            (
                "energy",
                energy::energy_svg(stats, &m.power).unwrap().unwrap(),
            ),
            ("carbon", energy::carbon_svg(stats, None).unwrap().unwrap()),
            (
                "throughput_batch",
                batch::throughput_batch_svg(stats).unwrap().unwrap(),
            ),
        ]
    }

    #[test]
    fn category_axis_labels_never_overlap() {
        // The smoke scenario: 2 backends × 2 models × batch 1 and 4, whose full labels
        // (`#5 onnxruntime tiny b4`) are wider than a cell's 100 px.
        let smoke = many_cells_with(8, 3, "tiny", |i, c| {
            c.config.backend = ["candle", "onnxruntime"][i / 4].into();
            c.config.model = ["tiny", "small"][(i / 2) % 2].into();
            c.config.batch_size = [1, 4][i % 2];
        });
        let runs =
            std::iter::once((8, smoke)).chain([1, 2, 3, 5, 13, 21, 34, 55, 80, 100].map(|n| {
                let run = many_cells_with(n, 3, "org/a-rather-long-model-name", |i, c| {
                    c.config.dtype = ["f32", "bf16"][(i / 3) % 2].into();
                });
                (n, run)
            }));
        for (n, (stats, m, loaded)) in runs {
            for (name, svg) in category_plots(&stats, &m, &loaded) {
                let what = format!("{name}, {n} cells");
                assert_x_labels_apart(&what, &svg);
                if name == "throughput_batch" {
                    continue;
                }
                // Each label names a distinct cell by `#index`, at least every 4th cell is
                // labelled, and the key names every cell in full.
                let mut at: Vec<usize> = x_axis_labels(&svg)
                    .iter()
                    .map(|t| {
                        let id = t.text.split(' ').next().unwrap();
                        id.strip_prefix('#').unwrap().parse().unwrap()
                    })
                    .collect();
                at.sort_unstable();
                at.dedup();
                assert!(
                    at.iter().all(|&i| i < n) && 4 * at.len() >= n,
                    "{what}: {at:?}"
                );
                let key: Vec<String> = svg_texts(&svg)
                    .into_iter()
                    .filter(|t| t.anchor == "start")
                    .map(|t| t.text)
                    .collect();
                for c in &stats.cells {
                    let line = format!("#{}  ", c.index);
                    assert!(
                        key.iter().any(|t| t.starts_with(&line)),
                        "{what}: #{} not in the key",
                        c.index
                    );
                }
            }
            // The power plot's window labels (`#index` at each window's start) keep apart too.
            let power = power_svg(&power_samples(600), &stats, &m.cells)
                .unwrap()
                .unwrap();
            let mut windows: Vec<SvgText> = svg_texts(&power)
                .into_iter()
                .filter(|t| t.text.starts_with('#') && t.anchor == "start")
                .filter(|t| (t.size - 12.0 / 1.24).abs() < 1e-9)
                .collect();
            windows.sort_by(|a, b| a.x.total_cmp(&b.x));
            assert!(!windows.is_empty());
            for w in windows.windows(2) {
                let end = w[0].x + common::tests::dejavu_width(&w[0].text, w[0].size);
                assert!(end + 2.0 <= w[1].x, "power, {n} cells: {w:?}");
            }
        }
    }

    #[test]
    fn short_labels_with_few_cells_are_written_in_full() {
        // Cells #0 (batch 2) and #1 (batch 4) completed; only the batch size differs.
        let m = manifest("r", "s", "org/model");
        let rows: Vec<_> = m.cells[..2]
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(10.0 + f64::from(r)))))
            .collect();
        let (mut stats, loaded) = stats_for(&rows, &m);
        stats.costing = priced_stats().costing;
        for (name, svg) in category_plots(&stats, &m, &loaded) {
            let labels: Vec<String> = x_axis_labels(&svg).into_iter().map(|t| t.text).collect();
            let expect = if name == "throughput_batch" {
                ["2", "4"]
            } else {
                ["#0 b2", "#1 b4"]
            };
            assert_eq!(labels, expect, "{name}");
        }
    }
}
