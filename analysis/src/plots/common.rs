//! Chart scaffolding every plot shares: the SVG document (white background, chart on top, key
//! below), the chart's caption and axis areas, the mesh's fonts and tick labels, the legend in the
//! upper right, error bars, bars and legend samples. One look for every plot, defined once.

use std::error::Error;

use plotters::chart::{MeshStyle, SeriesAnno};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::{
    draw_markers, draw_styled_key, fmt_tick, key_height, label_at, plot_err, series_style,
    CategoryAxis, DrawResult, KeyEntry, FONT,
};
use crate::AnalysisError;

/// Width of the value axis' label area, px (tick labels and the axis description).
pub(super) const Y_LABELS: u32 = 72;

/// Draws the plot `name` into a new SVG document. A drawing error names the plot.
pub(super) fn render(
    name: &str,
    draw: impl FnOnce(&mut String) -> DrawResult,
) -> Result<Option<String>, AnalysisError> {
    let mut svg = String::new();
    draw(&mut svg).map_err(plot_err(name))?;
    Ok(Some(svg))
}

/// A chart of a [`Frame`], over `X` × `Y`.
pub(super) type Chart<'a, 's, X, Y> = ChartContext<'a, SVGBackend<'s>, Cartesian2d<X, Y>>;

/// One plot's SVG document: a white background, the chart on top and the key's lines below it.
pub(super) struct Frame<'s, 'k> {
    root: DrawingArea<SVGBackend<'s>, Shift>,
    chart_area: DrawingArea<SVGBackend<'s>, Shift>,
    key_area: DrawingArea<SVGBackend<'s>, Shift>,
    key: &'k [KeyEntry],
}

impl<'s, 'k> Frame<'s, 'k> {
    /// A document `width` px wide: a chart `chart_height` px high above `key`.
    pub(super) fn new(
        svg: &'s mut String,
        width: u32,
        chart_height: u32,
        key: &'k [KeyEntry],
    ) -> Result<Self, Box<dyn Error>> {
        let root = SVGBackend::with_string(svg, (width, chart_height + key_height(key)))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (chart_area, key_area) = root.split_vertically(chart_height);
        Ok(Self {
            root,
            chart_area,
            key_area,
            key,
        })
    }

    /// The chart over `x` × `y` with its caption, margins and axis label areas (`y_labels` px
    /// for the vertical axis' labels).
    pub(super) fn chart<X: AsRangedCoord, Y: AsRangedCoord>(
        &self,
        caption: impl AsRef<str>,
        y_labels: u32,
        x: X,
        y: Y,
    ) -> Result<Chart<'_, 's, X::CoordDescType, Y::CoordDescType>, Box<dyn Error>> {
        Ok(ChartBuilder::on(&self.chart_area)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(y_labels)
            .build_cartesian_2d(x, y)?)
    }

    /// A chart of the categories `names` (at x = 0, 1, …) against values on `y`, its mesh drawn
    /// (no vertical grid lines) with the axis descriptions `x_desc` and `y_desc`.
    pub(super) fn category_chart<Y>(
        &self,
        caption: impl AsRef<str>,
        names: &[String],
        x_desc: &str,
        y: Y,
        y_desc: impl Into<String>,
    ) -> Result<Chart<'_, 's, CategoryAxis, Y::CoordDescType>, Box<dyn Error>>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = self.chart(caption, Y_LABELS, CategoryAxis::new(names.len()), y)?;
        mesh(&mut chart, &self::names(names), &ticks)
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        Ok(chart)
    }

    /// Draws the key under the chart and completes the document.
    pub(super) fn finish(&self) -> DrawResult {
        draw_styled_key(&self.key_area, self.key)?;
        self.root.present()?;
        Ok(())
    }
}

/// Tick label of a numeric axis ([`fmt_tick`]).
pub(super) fn ticks(v: &f64) -> String {
    fmt_tick(*v)
}

/// Tick labels of a categorical axis: `names[i]` at position `i`, nothing elsewhere.
pub(super) fn names(names: &[String]) -> impl Fn(&f64) -> String + '_ {
    move |x| label_at(names, *x)
}

/// The mesh of `chart` in the shared fonts with the given tick labels, for the caller to add
/// its axis descriptions (and grid choices) to and draw.
pub(super) fn mesh<'a, 'b, DB, X, Y>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    x_ticks: &'b dyn Fn(&f64) -> String,
    y_ticks: &'b dyn Fn(&f64) -> String,
) -> MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(x_ticks)
        .y_label_formatter(y_ticks)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15));
    mesh
}

/// Draws the legend of the chart's labelled series in its upper right corner.
pub(super) fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

/// Which way error bars run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bars {
    /// Along y, at x = the point's position.
    Vertical,
    /// Along x, at y = the point's position.
    Horizontal,
}

/// Draws an error bar (`width` px caps) for each `(position, value, ci)` that has a CI; points
/// without one get none. Returns the series, for a legend entry.
pub(super) fn draw_error_bars<'a, 'c, DB, X, Y>(
    chart: &'c mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    bars: Bars,
    points: impl IntoIterator<Item = (f64, f64, Option<[f64; 2]>)>,
    style: ShapeStyle,
    width: u32,
) -> Result<&'c mut SeriesAnno<'a, DB>, Box<dyn Error>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let with_ci = points
        .into_iter()
        .filter_map(|(at, v, ci)| ci.map(|[lo, hi]| (at, v, lo, hi)));
    Ok(match bars {
        Bars::Vertical => chart.draw_series(
            with_ci.map(|(x, v, lo, hi)| ErrorBar::new_vertical(x, lo, v, hi, style, width)),
        )?,
        Bars::Horizontal => chart.draw_series(
            with_ci.map(|(y, v, lo, hi)| ErrorBar::new_horizontal(y, lo, v, hi, style, width)),
        )?,
    })
}

/// Black 95 % CI error bars of per-category means (`(mean, ci)` at positions 0, 1, …), named
/// in the legend, which is then drawn.
pub(super) fn draw_mean_cis<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    means: impl IntoIterator<Item = (f64, Option<[f64; 2]>)>,
    width: u32,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = BLACK.stroke_width(2);
    let points = means
        .into_iter()
        .enumerate()
        .map(|(i, (mean, ci))| (i as f64, mean, ci));
    draw_error_bars(chart, Bars::Vertical, points, style, width)?
        .label("95 % CI of the mean (Student t)")
        .legend(legend_vline(style));
    draw_legend(chart)
}

/// Series `i`'s points `(x, value, ci)` in its [`series_style`]: CI error bars and markers,
/// joined by a line when `joined` and there are two or more.
pub(super) fn draw_points<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    i: usize,
    points: &[(f64, f64, Option<[f64; 2]>)],
    joined: bool,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let (color, shape) = series_style(i);
    let xy = || points.iter().map(|&(x, y, _)| (x, y));
    if joined && points.len() >= 2 {
        chart.draw_series(LineSeries::new(xy(), color.stroke_width(2)))?;
    }
    draw_error_bars(
        chart,
        Bars::Vertical,
        points.iter().copied(),
        color.stroke_width(1),
        8,
    )?;
    draw_markers(chart, xy(), shape, 5, color.filled())
}

/// A bar from 0 up to `value` at category position `x`.
pub(super) fn bar(x: f64, value: f64, style: ShapeStyle) -> Rectangle<(f64, f64)> {
    Rectangle::new([(x - 0.32, 0.0), (x + 0.32, value)], style)
}

/// Legend sample: a box.
pub(super) fn legend_box(style: ShapeStyle) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], style)
}

/// Legend sample: a vertical stroke (an error bar, a whisker).
pub(super) fn legend_vline(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x + 7, y - 6), (x + 7, y + 6)], style)
}

/// Legend sample: a horizontal stroke (a line, a median).
pub(super) fn legend_hline(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], style)
}

/// Sideways offset of series `i` of `n` around a category position, so that their error bars
/// stay apart: `spread / n` apart (at most `max_step`), centred on the position.
pub(super) fn dodge(i: usize, n: usize, spread: f64, max_step: f64) -> f64 {
    let n = n as f64;
    (i as f64 - (n - 1.0) / 2.0) * (spread / n).min(max_step)
}
