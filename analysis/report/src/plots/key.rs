//! The key under each chart: one line per cell or series (`#index  configuration  [cell id]`),
//! each optionally after a marker or line sample, and its drawing.

use plotters::prelude::*;
use tcobench_results::CellStats;

use super::labels::sanitize_label;
use super::style::{draw_key_marker, series_style, Marker, FONT, KEY_LINE};
use super::DrawResult;

/// The key lines naming `cells`: `#index  configuration  [cell id]`.
pub(super) fn key_lines(cells: &[&CellStats]) -> Vec<KeyEntry> {
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

/// One line of a key: text, drawn after a marker or line sample when `style` is set.
pub(super) struct KeyEntry {
    pub(super) style: Option<KeyStyle>,
    pub(super) text: String,
}

/// How a key line's sample is drawn.
#[derive(Clone, Copy)]
pub(super) enum KeyStyle {
    /// A series marker.
    Marker(RGBColor, Marker, bool),
    /// A line segment.
    Line(RGBColor, u32),
}

impl KeyEntry {
    pub(super) fn text(text: String) -> Self {
        Self { style: None, text }
    }

    pub(super) fn marker(color: RGBColor, shape: Marker, filled: bool, text: String) -> Self {
        Self {
            style: Some(KeyStyle::Marker(color, shape, filled)),
            text,
        }
    }

    /// Series `i`'s filled marker ([`series_style`]) before `text`.
    pub(super) fn series(i: usize, text: &str) -> Self {
        let (color, shape) = series_style(i);
        Self::marker(color, shape, true, sanitize_label(text, 130))
    }
}

pub(super) fn key_height(entries: &[KeyEntry]) -> u32 {
    12 + KEY_LINE * entries.len() as u32
}

/// Draws a key whose lines may start with a marker or line sample.
pub(super) fn draw_styled_key<DB: DrawingBackend>(
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
