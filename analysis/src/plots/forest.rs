//! A forest plot of the run's in-run comparisons ([`crate::comparisons`]): one row per pairwise
//! comparison of one metric, the relative change of the mean of `b` against `a`, in %, with its
//! seeded percentile-bootstrap 95 % CI, a line at zero, and the pairs whose Holm-adjusted Welch
//! p is below 0.05 drawn filled. Labels name both sides (`#index value`); the key gives each
//! row's fixed configuration.

use plotters::prelude::*;

use super::{
    extent, finite, finite_ci, fmt_tick, plot_err, sanitize_label, CategoryAxis, DrawResult,
    KeyEntry, KeyStyle, BLUE, FONT, VERMILLION,
};
use crate::{AnalysisError, Metric, RunStats};

/// The metric the report's forest plot shows.
pub const FOREST_METRIC: Metric = Metric::TokensPerS;

/// Significance level for the filled markers (Holm-adjusted Welch p).
pub const ALPHA: f64 = 0.05;

const FOREST_WIDTH: u32 = 1000;
const ROW_PX: u32 = 26;

/// One row of the forest plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    /// `b vs a`, with the dimension that differs.
    pub label: String,
    /// What the two cells share, as `key=value` pairs.
    pub fixed: String,
    /// Relative change of the mean of `b` against `a`, %.
    pub change_pct: f64,
    /// Its 95 % CI, %, when finite.
    pub ci95_pct: Option<[f64; 2]>,
    /// Holm-adjusted Welch p, when defined.
    pub p_adj: Option<f64>,
}

impl ForestRow {
    /// Whether the adjusted p is below [`ALPHA`].
    pub fn significant(&self) -> bool {
        self.p_adj.is_some_and(|p| p < ALPHA)
    }
}

/// The rows of `metric`: every pairwise comparison of every comparison set, in order. Pairs whose
/// relative change is missing or not finite are not rows; their number is returned beside.
pub fn forest_rows(stats: &RunStats, metric: Metric) -> (Vec<ForestRow>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for set in &stats.comparisons {
        let Some(a) = set.metrics.get(metric.name()) else {
            continue;
        };
        let fixed: Vec<String> = set.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for pair in &a.pairwise {
            let Some(change) = pair.rel_change.and_then(finite) else {
                skipped += 1;
                continue;
            };
            rows.push(ForestRow {
                label: format!("{} vs {} ({})", pair.b, pair.a, set.varies),
                fixed: fixed.join(", "),
                change_pct: 100.0 * change,
                ci95_pct: finite_ci(pair.rel_change_ci95).map(|[l, h]| [100.0 * l, 100.0 * h]),
                p_adj: pair.welch.map(|w| w.p_adj).and_then(finite),
            });
        }
    }
    (rows, skipped)
}

/// The forest plot of `metric`. `None` when no comparison has a finite relative change.
pub fn effects_svg(stats: &RunStats, metric: Metric) -> Result<Option<String>, AnalysisError> {
    let (rows, skipped) = forest_rows(stats, metric);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut key: Vec<KeyEntry> = vec![
        KeyEntry::marker(
            VERMILLION,
            super::Marker::Diamond,
            true,
            format!("significant: Holm-adjusted Welch p < {ALPHA}"),
        ),
        KeyEntry::marker(
            BLUE,
            super::Marker::Circle,
            false,
            "not significant (or p undefined)".into(),
        ),
        KeyEntry {
            style: Some(KeyStyle::Line(BLACK, 1)),
            text: "95 % CI (seeded percentile bootstrap); zero line = no change".into(),
        },
    ];
    if skipped > 0 {
        key.push(KeyEntry::text(format!(
            "{skipped} pair(s) without a finite relative change not drawn"
        )));
    }
    key.extend(rows.iter().enumerate().map(|(i, r)| {
        let p = r.p_adj.map_or("p undefined".to_string(), |p| {
            format!("p_adj {}", crate::fmt_sig(p, 3))
        });
        KeyEntry::text(sanitize_label(
            &format!("R{}  {}; {}; {}", i + 1, r.label, p, r.fixed),
            140,
        ))
    }));
    let mut svg = String::new();
    draw(&mut svg, &rows, &key, metric).map_err(plot_err("effects"))?;
    Ok(Some(svg))
}

fn draw(svg: &mut String, rows: &[ForestRow], key: &[KeyEntry], metric: Metric) -> DrawResult {
    let n = rows.len();
    // Row 0 at the top: row i sits at y = n − 1 − i.
    let labels: Vec<String> = rows
        .iter()
        .rev()
        .enumerate()
        .map(|(k, r)| sanitize_label(&format!("R{} {}", n - k, r.label), 44))
        .collect();
    let (lo, hi) = extent(
        rows.iter()
            .flat_map(|r| {
                let [l, h] = r.ci95_pct.unwrap_or([r.change_pct; 2]);
                [r.change_pct, l, h]
            })
            .chain([0.0]),
    )
    .unwrap_or((-1.0, 1.0));
    let (lo, hi) = super::padded(lo, hi, 0.08);

    let chart_height = 120 + ROW_PX * n as u32;
    let root = SVGBackend::with_string(svg, (FOREST_WIDTH, chart_height + super::key_height(key)))
        .into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(chart_height);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            format!(
                "Effect sizes: relative change of mean {} (b vs a), 95 % CI",
                metric.name()
            ),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(330)
        .build_cartesian_2d(lo..hi, CategoryAxis::new(n))?;
    let fmt_x = |x: &f64| fmt_tick(*x);
    let fmt_y = |y: &f64| super::label_at(&labels, *y);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(format!(
            "relative change of the mean {} (%), b vs a",
            metric.unit()
        ))
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .y_labels(n.max(1))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    let y_of = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
        BLACK.stroke_width(1),
    )))?;
    chart.draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
        r.ci95_pct.map(|[l, h]| {
            ErrorBar::new_horizontal(y_of(i), l, r.change_pct, h, BLACK.stroke_width(2), 8)
        })
    }))?;
    let at = |sig: bool| {
        rows.iter()
            .enumerate()
            .filter(move |(_, r)| r.significant() == sig)
            .map(|(i, r)| (r.change_pct, y_of(i)))
    };
    super::draw_markers(
        &mut chart,
        at(false),
        super::Marker::Circle,
        5,
        BLUE.stroke_width(2),
    )?;
    super::draw_markers(
        &mut chart,
        at(true),
        super::Marker::Diamond,
        7,
        VERMILLION.filled(),
    )?;
    super::draw_styled_key(&lower, key)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::{check_svg, stats_for};
    use crate::testutil::{manifest, request, NASTY};

    /// Cells 0 and 1 on backends `a` and `b` (same batch: one backend comparison), cell 2 on
    /// backend `c` with batch 2 as well: a three-way set with three pairs.
    fn three_backends(model: &str) -> RunStats {
        let mut m = manifest("r", "s", model);
        for (c, b) in m.cells.iter_mut().zip(["a", "b", "c"]) {
            c.backend = b.into();
            c.batch_size = 2;
            c.status = crate::schema::CellOutcome::Ok;
            c.error = None;
        }
        let rows: Vec<_> = m
            .cells
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                (0..5).map(move |r| {
                    request(c, r, false, Some(100.0 * (1.0 + i as f64) + f64::from(r)))
                })
            })
            .collect();
        stats_for(&rows, &m).0
    }

    #[test]
    fn one_row_per_pairwise_comparison() {
        let stats = three_backends("m");
        let pairs: usize = stats
            .comparisons
            .iter()
            .filter_map(|s| s.metrics.get("tokens_per_s"))
            .map(|a| a.pairwise.len())
            .sum();
        assert_eq!(pairs, 3, "three groups give three pairs");
        let (rows, skipped) = forest_rows(&stats, Metric::TokensPerS);
        assert_eq!((rows.len(), skipped), (pairs, 0));
        // #1 b vs #0 a: e2e doubles, so mean tokens/s of b is about half of a's.
        let r = &rows[0];
        assert_eq!(r.label, "#1 b vs #0 a (backend)");
        assert!(
            r.change_pct < -45.0 && r.change_pct > -55.0,
            "{}",
            r.change_pct
        );
        let [lo, hi] = r.ci95_pct.unwrap();
        assert!(lo <= r.change_pct && r.change_pct <= hi);
        assert!(r.significant());
        let svg = effects_svg(&stats, Metric::TokensPerS).unwrap().unwrap();
        check_svg(&svg);
        for i in 1..=3 {
            assert!(svg.contains(&format!("R{i} ")), "row R{i} labelled");
        }
        assert!(!svg.contains("R4 "));
    }

    #[test]
    fn missing_estimates_are_not_rows_and_no_comparison_means_no_plot() {
        let mut stats = three_backends("m");
        let a = stats.comparisons[0]
            .metrics
            .get_mut("tokens_per_s")
            .unwrap();
        a.pairwise[0].rel_change = Some(f64::NAN);
        a.pairwise[1].rel_change = None;
        a.pairwise[2].rel_change_ci95 = Some([f64::NEG_INFINITY, 1.0]);
        let (rows, skipped) = forest_rows(&stats, Metric::TokensPerS);
        assert_eq!((rows.len(), skipped), (1, 2));
        assert_eq!(rows[0].ci95_pct, None);
        check_svg(&effects_svg(&stats, Metric::TokensPerS).unwrap().unwrap());
        stats.comparisons.clear();
        assert_eq!(effects_svg(&stats, Metric::TokensPerS).unwrap(), None);
    }

    #[test]
    fn hostile_group_names_are_escaped() {
        let mut stats = three_backends("m");
        let a = stats.comparisons[0]
            .metrics
            .get_mut("tokens_per_s")
            .unwrap();
        a.pairwise[0].b = NASTY.into();
        let svg = effects_svg(&stats, Metric::TokensPerS).unwrap().unwrap();
        check_svg(&svg);
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
