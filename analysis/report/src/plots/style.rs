//! The look every plot shares: the Okabe–Ito palette and its named colours, the series colours,
//! the document sizes and font, and the marker shapes that tell series apart beyond the palette
//! (drawn in charts and in keys).

use plotters::prelude::*;

use super::DrawResult;

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

pub(super) const BLUE: RGBColor = OKABE_ITO[4];
pub(super) const SKY: RGBColor = OKABE_ITO[1];
pub(super) const VERMILLION: RGBColor = OKABE_ITO[5];
pub(super) const ORANGE: RGBColor = OKABE_ITO[0];
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

/// Width of every plot, px.
pub(super) const WIDTH: u32 = 900;
/// Height of the chart above the key, px.
pub(super) const CHART_HEIGHT: u32 = 440;
/// Height of one key line, px.
pub(super) const KEY_LINE: u32 = 18;
/// The font family of all text.
pub(super) const FONT: &str = "sans-serif";

/// Marker shapes; series beyond the seven palette colours differ by shape as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

/// Colour and marker of series `i`: the palette first, then the next shape with the palette again.
pub(super) fn series_style(i: usize) -> (RGBColor, Marker) {
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
pub(super) fn draw_markers<'a, DB, X, Y>(
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
pub(super) fn draw_key_marker<DB: DrawingBackend>(
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
