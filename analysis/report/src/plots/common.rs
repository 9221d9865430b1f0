//! Chart scaffolding every plot shares: the SVG document (white background, chart on top, key
//! below), the chart's caption and axis areas, the mesh's fonts and tick labels, the legend in the
//! upper right, error bars, bars and legend samples. One look for every plot, defined once.
//!
//! Category axes are labelled so that neighbouring labels never overlap ([`fit_category_labels`]):
//! each category's full label when every one fits the pixels one category has, else its short
//! label (`#index` for cells, whose key under the chart names them in full), else the short label
//! of every k-th category, k the smallest that fits. Widths are estimated conservatively
//! ([`text_width`]): plotters' SVG backend cannot measure text, the viewer's font decides.

use std::error::Error;

use plotters::chart::{MeshStyle, SeriesAnno};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::axes::CategoryAxis;
use super::key::{draw_styled_key, key_height, KeyEntry};
use super::labels::{fmt_tick, label_at};
use super::style::{draw_markers, series_style, FONT};
use super::{plot_err, DrawResult};
use crate::ReportError;

/// Width of the value axis' label area, px (tick labels and the axis description).
pub(super) const Y_LABELS: u32 = 72;

/// Margin around every chart, px.
const MARGIN: u32 = 12;

/// Font size of tick labels as plotters takes it; its SVG backend writes `font-size` = size / 1.24.
pub(super) const LABEL_FONT: f64 = 13.0;

/// Least free space between two neighbouring axis labels, px.
pub(super) const LABEL_GAP: f64 = 6.0;

/// Advance width of `c`, in em: the widest of DejaVu Sans and Liberation Sans (metric-compatible
/// with Arial and Helvetica) — the fonts a viewer's `sans-serif` commonly resolves to — rounded up
/// into four classes. Characters outside ASCII count a full em.
fn char_em(c: char) -> f64 {
    match c {
        ' ' | '!' | '"' | '\'' | '(' | ')' | ',' | '-' | '.' | '/' | ':' | ';' | '[' | '\\'
        | ']' | '|' | 'I' | 'f' | 'i' | 'j' | 'l' | 'r' | 't' => 0.47,
        'm' | 'M' | 'W' | '@' | '%' => 1.02,
        'A'..='Z' | 'w' | '#' | '&' | '+' | '<' | '=' | '>' | '^' | '~' => 0.84,
        c if c.is_ascii() => 0.64,
        _ => 1.0,
    }
}

/// Estimated width in px of `text` drawn by plotters' SVG backend in a font of `size` (plotters'
/// size): [`char_em`] per character at the `font-size` the backend writes. Never below the width
/// DejaVu Sans or Liberation Sans gives ASCII text; for labels at most about 15 % above DejaVu Sans.
pub(super) fn text_width(text: &str, size: f64) -> f64 {
    text.chars().map(char_em).sum::<f64>() * size / 1.24
}

/// `text`, cut with `…` so that its [`text_width`] in a font of `size` is at most `max_px`.
pub(super) fn fit_width(text: &str, size: f64, max_px: f64) -> String {
    if text_width(text, size) <= max_px {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        out.push(c);
        if text_width(&out, size) + text_width("…", size) > max_px {
            out.pop();
            break;
        }
    }
    out.push('…');
    out
}

/// How a category axis is labelled ([`fit_category_labels`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CategoryLabels {
    /// The label of each category; only every `step`-th one (0, step, 2·step, …) is drawn.
    pub(super) names: Vec<String>,
    /// Distance between labelled categories.
    pub(super) step: usize,
}

/// Labels for categories `0..n` spread over `width_px` (one slot of `width_px / n` each, a label
/// centred on its slot): `full` when every full label fits beside its neighbours with
/// [`LABEL_GAP`] to spare, else `short` (same length as `full`), else every k-th `short` label,
/// k the smallest step at which they fit. Labels may reach [`MARGIN`] past the ends of the axis.
pub(super) fn fit_category_labels(
    full: &[String],
    short: &[String],
    width_px: f64,
) -> CategoryLabels {
    debug_assert_eq!(full.len(), short.len());
    let n = full.len();
    if n == 0 {
        return CategoryLabels {
            names: Vec::new(),
            step: 1,
        };
    }
    let slot = width_px / n as f64;
    let fits = |names: &[String], step: usize| {
        let widths: Vec<f64> = names
            .iter()
            .step_by(step)
            .map(|l| text_width(l, LABEL_FONT))
            .collect();
        let apart = widths
            .windows(2)
            .all(|w| (w[0] + w[1]) / 2.0 + LABEL_GAP <= step as f64 * slot);
        // The first and the last label stay within the axis and its margins.
        let reach = slot / 2.0 + f64::from(MARGIN);
        let last_free = (n - 1 - (n - 1) / step * step) as f64 * slot;
        let ends = widths.first().is_none_or(|w| w / 2.0 <= reach)
            && widths.last().is_none_or(|w| w / 2.0 <= reach + last_free);
        apart && ends
    };
    if fits(full, 1) {
        return CategoryLabels {
            names: full.to_vec(),
            step: 1,
        };
    }
    let step = (1..n).find(|&step| fits(short, step)).unwrap_or(n);
    CategoryLabels {
        names: short.to_vec(),
        step,
    }
}

/// Draws the plot `name` into a new SVG document. A drawing error names the plot.
pub(super) fn render(
    name: &str,
    draw: impl FnOnce(&mut String) -> DrawResult,
) -> Result<Option<String>, ReportError> {
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
            .margin(MARGIN)
            .x_label_area_size(42)
            .y_label_area_size(y_labels)
            .build_cartesian_2d(x, y)?)
    }

    /// A chart of categories (at x = 0, 1, …) against values on `y`, its mesh drawn (no vertical
    /// grid lines) with the axis descriptions `x_desc` and `y_desc`. The categories are labelled
    /// `full[i]`, or `short[i]`, or every k-th `short[i]`, whichever first fits the axis' pixels
    /// ([`fit_category_labels`]).
    pub(super) fn category_chart<Y>(
        &self,
        caption: impl AsRef<str>,
        full: &[String],
        short: &[String],
        x_desc: &str,
        y: Y,
        y_desc: impl Into<String>,
    ) -> Result<Chart<'_, 's, CategoryAxis, Y::CoordDescType>, Box<dyn Error>>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let n = full.len();
        let mut chart = self.chart(caption, Y_LABELS, CategoryAxis::new(n), y)?;
        let axis = chart.plotting_area().get_x_axis_pixel_range();
        let labels = fit_category_labels(full, short, f64::from(axis.end - axis.start));
        chart.as_coord_spec().x_spec().set_step(labels.step);
        mesh(&mut chart, &names(&labels.names), &ticks)
            .disable_x_mesh()
            .x_labels(n.max(1))
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
        .label_style((FONT, LABEL_FONT))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Advance widths of `' '..='~'` in DejaVu Sans, font units (2048 to the em).
    pub(crate) const DEJAVU_SANS: [u16; 95] = [
        651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690, 1303,
        1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 690, 690, 1716, 1716, 1716, 1087,
        2048, 1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 604, 604, 1343, 1141, 1767, 1532,
        1612, 1235, 1612, 1423, 1300, 1251, 1499, 1401, 2025, 1403, 1251, 1403, 799, 690, 799,
        1716, 1024, 1024, 1255, 1300, 1126, 1300, 1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995,
        1298, 1253, 1300, 1300, 842, 1067, 803, 1298, 1212, 1675, 1212, 1212, 1075, 1303, 690,
        1303, 1716,
    ];

    /// The same in Liberation Sans (metric-compatible with Arial).
    const LIBERATION_SANS: [u16; 95] = [
        569, 569, 727, 1139, 1139, 1821, 1366, 391, 682, 682, 797, 1196, 569, 682, 569, 569, 1139,
        1139, 1139, 1139, 1139, 1139, 1139, 1139, 1139, 1139, 569, 569, 1196, 1196, 1196, 1139,
        2079, 1366, 1366, 1479, 1479, 1366, 1251, 1593, 1479, 569, 1024, 1366, 1139, 1706, 1479,
        1593, 1366, 1593, 1479, 1366, 1251, 1479, 1366, 1933, 1366, 1366, 1251, 569, 569, 569, 961,
        1139, 682, 1139, 1139, 1024, 1139, 1139, 569, 1139, 1139, 455, 455, 1024, 455, 1706, 1139,
        1139, 1139, 1139, 682, 1024, 569, 1139, 1024, 1479, 1024, 1024, 1024, 684, 532, 684, 1196,
    ];

    /// Width in px of `text` in `font` at SVG `font-size` `px`; characters outside the table
    /// (`…` and anything else) count one em.
    fn width_in(font: &[u16; 95], text: &str, px: f64) -> f64 {
        text.chars()
            .map(|c| match c {
                ' '..='~' => f64::from(font[c as usize - 32]) / 2048.0,
                _ => 1.0,
            })
            .sum::<f64>()
            * px
    }

    /// Width in px of `text` set in DejaVu Sans at SVG `font-size` `px`: a real font's metrics,
    /// to check what the plots draw against.
    pub(crate) fn dejavu_width(text: &str, px: f64) -> f64 {
        width_in(&DEJAVU_SANS, text, px)
    }

    #[test]
    fn text_width_is_never_below_common_sans_serif_fonts() {
        let px = LABEL_FONT / 1.24;
        for c in ' '..='~' {
            let s = c.to_string();
            let est = text_width(&s, LABEL_FONT);
            for (name, font) in [("DejaVu", &DEJAVU_SANS), ("Liberation", &LIBERATION_SANS)] {
                let real = width_in(font, &s, px);
                assert!(est >= real, "{c:?}: estimate {est} < {name} {real}");
            }
        }
        assert!(text_width("…", LABEL_FONT) >= dejavu_width("…", px));
        // Conservative, not wildly so: within 20 % of DejaVu Sans on typical labels.
        for label in [
            "#3 candle small b4",
            "#57",
            "#5 onnxruntime tiny b4",
            "1024",
        ] {
            let (est, real) = (text_width(label, LABEL_FONT), dejavu_width(label, px));
            assert!(est <= 1.2 * real, "{label}: {est} vs {real}");
        }
    }

    #[test]
    fn fit_width_cuts_to_the_pixels() {
        assert_eq!(fit_width("R1 a vs b", LABEL_FONT, 300.0), "R1 a vs b");
        let long = "R12 onnxruntime vs candle (backend) and more and more";
        let cut = fit_width(long, LABEL_FONT, 150.0);
        assert!(cut.ends_with('…') && cut.len() < long.len(), "{cut}");
        assert!(text_width(&cut, LABEL_FONT) <= 150.0);
        let one_more: String = long.chars().take(cut.chars().count()).collect();
        assert!(text_width(&format!("{one_more}…"), LABEL_FONT) > 150.0);
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn category_labels_fall_back_from_full_to_short_to_every_kth() {
        let full = strings(&[
            "#0 candle tiny b1",
            "#1 onnxruntime tiny b1",
            "#2 candle tiny b4",
        ]);
        let short = strings(&["#0", "#1", "#2"]);
        let wide = fit_category_labels(&full, &short, 800.0);
        assert_eq!((wide.names, wide.step), (full.clone(), 1));
        let narrow = fit_category_labels(&full, &short, 300.0);
        assert_eq!((narrow.names, narrow.step), (short.clone(), 1));
        // 100 `#index` labels on 800 px: every k-th, k the smallest step that fits.
        let short: Vec<String> = (0..100).map(|i| format!("#{i}")).collect();
        let full: Vec<String> = short.iter().map(|s| format!("{s} onnxruntime")).collect();
        let thin = fit_category_labels(&full, &short, 800.0);
        assert_eq!(thin.names, short);
        let (k, slot) = (thin.step, 8.0);
        assert!(k > 1);
        let gap = |k: usize| {
            let w = |i: usize| text_width(&short[i], LABEL_FONT);
            (0..100 - k)
                .step_by(k)
                .map(|i| k as f64 * slot - (w(i) + w(i + k)) / 2.0)
                .fold(f64::INFINITY, f64::min)
        };
        assert!(gap(k) >= LABEL_GAP && gap(k - 1) < LABEL_GAP, "step {k}");
        // One category: its full label when it fits at all.
        let one = fit_category_labels(&full[..1], &short[..1], 800.0);
        assert_eq!((one.names[0].as_str(), one.step), ("#0 onnxruntime", 1));
        assert_eq!(fit_category_labels(&[], &[], 800.0).names.len(), 0);
    }
}
