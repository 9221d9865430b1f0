//! Forest plots of the run's in-run comparisons ([`tcobench_analysis::comparisons`]), one per metric
//! ([`FOREST_PLOTS`]): one row per pairwise comparison, the relative change of the mean of `b`
//! against `a`, in %, with its seeded percentile-bootstrap 95 % CI, a line at zero, and the pairs
//! whose Holm-adjusted Welch p is below 0.05 drawn filled. The axis names the metric's unit and
//! which side of zero is better ([`tcobench_analysis::compare::higher_is_better`]); energy per token names
//! the run's power basis (measured or estimated). Labels name both sides (`#index value`); the
//! key gives each row's fixed configuration.

use plotters::prelude::*;

use super::axes::{extent_ci, finite, finite_ci, CategoryAxis};
use super::common::{self, Bars};
use super::key::{KeyEntry, KeyStyle};
use super::labels::sanitize_label;
use super::style::{BLUE, VERMILLION};
use super::DrawResult;
use tcobench_analysis::compare::higher_is_better;
use tcobench_analysis::RunStats;
use tcobench_results::schema::PowerInfo;
use tcobench_results::Metric;

use crate::ReportError;

/// The forest plots of a report, in order: file stem (under `plots/`) and metric — every metric
/// the in-run comparisons analyse. Throughput keeps the stem `effects` it always had.
pub const FOREST_PLOTS: [(&str, Metric); 5] = [
    ("effects", Metric::TokensPerS),
    ("effects_e2e_ms", Metric::E2eMs),
    ("effects_ttft_ms", Metric::TtftMs),
    ("effects_tpot_ms", Metric::TpotMs),
    ("effects_energy_j_per_token", Metric::EnergyJPerToken),
];

/// The file stem of `metric`'s forest plot ([`FOREST_PLOTS`]).
pub fn plot_name(metric: Metric) -> &'static str {
    FOREST_PLOTS
        .iter()
        .find(|(_, m)| *m == metric)
        .map_or("effects", |(name, _)| name)
}

/// Which side of zero is better for `metric`, in words.
pub fn better(metric: Metric) -> &'static str {
    if higher_is_better(metric) {
        "higher is better: b is better right of 0"
    } else {
        "lower is better: b is better left of 0"
    }
}

/// The report's title of `metric`'s forest plot; energy names the run's power basis.
pub fn title(metric: Metric, power: &PowerInfo) -> String {
    let direction = if higher_is_better(metric) {
        "higher"
    } else {
        "lower"
    };
    let mut title = format!(
        "Effect sizes of the in-run comparisons: relative change of mean {} ({}) with 95 % CI, \
         {direction} is better",
        metric.name(),
        metric.unit()
    );
    if metric == Metric::EnergyJPerToken {
        title.push_str(&format!("; energy {}", super::energy::basis_words(power)));
    }
    title
}

/// Significance level for the filled markers (Holm-adjusted Welch p).
pub const ALPHA: f64 = 0.05;

const FOREST_WIDTH: u32 = 1000;
/// Height of a row, px: more than a label's line, so row labels never overlap.
const ROW_PX: u32 = 26;
/// Width of the row labels' area, px; labels are cut to fit it ([`common::fit_width`]).
const ROW_LABELS: u32 = 330;

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

/// The forest plot of `metric`; `power` is the run's power basis, named in the key of the energy
/// plot. `None` when no comparison has a finite relative change.
pub fn effects_svg(
    stats: &RunStats,
    metric: Metric,
    power: &PowerInfo,
) -> Result<Option<String>, ReportError> {
    let (rows, skipped) = forest_rows(stats, metric);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut key: Vec<KeyEntry> = vec![
        KeyEntry::marker(
            VERMILLION,
            super::style::Marker::Diamond,
            true,
            format!("significant: Holm-adjusted Welch p < {ALPHA}"),
        ),
        KeyEntry::marker(
            BLUE,
            super::style::Marker::Circle,
            false,
            "not significant (or p undefined)".into(),
        ),
        KeyEntry {
            style: Some(KeyStyle::Line(BLACK, 1)),
            text: "95 % CI (seeded percentile bootstrap); zero line = no change".into(),
        },
    ];
    if metric == Metric::EnergyJPerToken {
        key.push(KeyEntry::text(format!(
            "energy per token is {}",
            super::energy::basis_words(power)
        )));
    }
    if skipped > 0 {
        key.push(KeyEntry::text(format!(
            "{skipped} pair(s) without a finite relative change not drawn"
        )));
    }
    key.extend(rows.iter().enumerate().map(|(i, r)| {
        let p = r.p_adj.map_or("p undefined".to_string(), |p| {
            format!("p_adj {}", tcobench_results::fmt_sig(p, 3))
        });
        KeyEntry::text(sanitize_label(
            &format!("R{}  {}; {}; {}", i + 1, r.label, p, r.fixed),
            140,
        ))
    }));
    common::render(plot_name(metric), |svg| draw(svg, &rows, &key, metric))
}

fn draw(svg: &mut String, rows: &[ForestRow], key: &[KeyEntry], metric: Metric) -> DrawResult {
    let n = rows.len();
    // Row 0 at the top: row i sits at y = n − 1 − i.
    let labels: Vec<String> = rows
        .iter()
        .rev()
        .enumerate()
        .map(|(k, r)| {
            let label = sanitize_label(&format!("R{} {}", n - k, r.label), 44);
            common::fit_width(&label, common::LABEL_FONT, f64::from(ROW_LABELS - 20))
        })
        .collect();
    let (lo, hi) = extent_ci(
        rows.iter()
            .map(|r| (r.change_pct, r.ci95_pct))
            .chain([(0.0, None)]),
    )
    .unwrap_or((-1.0, 1.0));
    let (lo, hi) = super::axes::padded(lo, hi, 0.08);

    let frame = common::Frame::new(svg, FOREST_WIDTH, 120 + ROW_PX * n as u32, key)?;
    let mut chart = frame.chart(
        format!(
            "Effect sizes: relative change of mean {} (b vs a), 95 % CI",
            metric.name()
        ),
        ROW_LABELS,
        lo..hi,
        CategoryAxis::new(n),
    )?;
    common::mesh(&mut chart, &common::ticks, &common::names(&labels))
        .disable_y_mesh()
        .x_desc(format!(
            "relative change of the mean {} (%), b vs a; {}",
            metric.unit(),
            better(metric)
        ))
        .y_labels(n.max(1))
        .draw()?;
    let y_of = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
        BLACK.stroke_width(1),
    )))?;
    common::draw_error_bars(
        &mut chart,
        Bars::Horizontal,
        rows.iter()
            .enumerate()
            .map(|(i, r)| (y_of(i), r.change_pct, r.ci95_pct)),
        BLACK.stroke_width(2),
        8,
    )?;
    let at = |sig: bool| {
        rows.iter()
            .enumerate()
            .filter(move |(_, r)| r.significant() == sig)
            .map(|(i, r)| (r.change_pct, y_of(i)))
    };
    super::style::draw_markers(
        &mut chart,
        at(false),
        super::style::Marker::Circle,
        5,
        BLUE.stroke_width(2),
    )?;
    super::style::draw_markers(
        &mut chart,
        at(true),
        super::style::Marker::Diamond,
        7,
        VERMILLION.filled(),
    )?;
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::testutil::{check_svg, stats_for};
    use tcobench_results::testutil::{manifest, request, NASTY};

    /// Cells 0 and 1 on backends `a` and `b` (same batch: one backend comparison), cell 2 on
    /// backend `c` with batch 2 as well: a three-way set with three pairs.
    fn three_backends(model: &str) -> RunStats {
        let mut m = manifest("r", "s", model);
        for (c, b) in m.cells.iter_mut().zip(["a", "b", "c"]) {
            c.config.backend = b.into();
            c.config.batch_size = 2;
            c.status = tcobench_results::schema::CellOutcome::Ok;
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

    /// The test manifest's power basis: estimated by `cpu_estimate`.
    fn power() -> PowerInfo {
        manifest("r", "s", "m").power
    }

    #[test]
    fn every_metric_has_a_plot_with_its_unit_and_better_side() {
        let stats = three_backends("m");
        for m in Metric::ALL {
            let stems = FOREST_PLOTS.iter().filter(|(_, x)| *x == m).count();
            assert_eq!(stems, 1, "{m:?}");
        }
        // #1 b vs #0 a. e2e of cell i, request r: 100 (1 + i) + r ms, r = 0..5, so the means
        // are 102 and 202 ms: +98.04 %. TTFT (e2e / 4), TPOT (0.75 e2e / 7) and energy per
        // token (2 e2e / (2 · 8)) scale with e2e: the same change. tokens/s = 16 / e2e s.
        let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len() as f64;
        let e2e =
            |i: f64| -> Vec<f64> { (0..5).map(|r| 100.0 * (1.0 + i) + f64::from(r)).collect() };
        let tps = |i: f64| mean(e2e(i).iter().map(|e| 16.0 / (e / 1000.0)).collect());
        let slower = 100.0 * (mean(e2e(1.0)) - mean(e2e(0.0))) / mean(e2e(0.0));
        assert!((slower - 100.0 * 100.0 / 102.0).abs() < 1e-12);
        let expect = [
            (
                Metric::TokensPerS,
                100.0 * (tps(1.0) - tps(0.0)) / tps(0.0),
                "higher",
            ),
            (Metric::E2eMs, slower, "lower"),
            (Metric::TtftMs, slower, "lower"),
            (Metric::TpotMs, slower, "lower"),
            (Metric::EnergyJPerToken, slower, "lower"),
        ];
        for (metric, change, better) in expect {
            let (rows, skipped) = forest_rows(&stats, metric);
            assert_eq!((rows.len(), skipped), (3, 0), "{metric:?}");
            assert_eq!(rows[0].label, "#1 b vs #0 a (backend)");
            let got = rows[0].change_pct;
            assert!(
                (got - change).abs() < 1e-9 * change.abs(),
                "{metric:?}: {got} vs {change}"
            );
            let svg = effects_svg(&stats, metric, &power()).unwrap().unwrap();
            check_svg(&svg);
            let axis = format!(
                "relative change of the mean {} (%), b vs a; {better} is better",
                metric.unit()
            );
            assert!(svg.contains(&axis), "{metric:?}: {axis}");
            assert!(title(metric, &power()).contains(&format!("{better} is better")));
            assert!(
                svg.contains(metric.name()),
                "{metric:?} named in the caption"
            );
            let basis = "energy per token is estimated (cpu_estimate, cpu-package)";
            assert_eq!(svg.contains(basis), metric == Metric::EnergyJPerToken);
        }
        assert!(title(Metric::EnergyJPerToken, &power()).contains("estimated"));
        assert_eq!(plot_name(Metric::E2eMs), "effects_e2e_ms");
        assert_eq!(plot_name(Metric::TokensPerS), "effects");
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
        let svg = effects_svg(&stats, Metric::TokensPerS, &power())
            .unwrap()
            .unwrap();
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
        check_svg(
            &effects_svg(&stats, Metric::TokensPerS, &power())
                .unwrap()
                .unwrap(),
        );
        stats.comparisons.clear();
        assert_eq!(
            effects_svg(&stats, Metric::TokensPerS, &power()).unwrap(),
            None
        );
    }

    #[test]
    fn long_row_labels_are_cut_to_their_area() {
        let mut stats = three_backends("m");
        // Wide characters (a full em each): 44 of them would not fit 330 px.
        let long = "推理后端".repeat(12);
        let a = stats.comparisons[0]
            .metrics
            .get_mut("tokens_per_s")
            .unwrap();
        for p in &mut a.pairwise {
            p.b = format!("{long}-{}", p.b);
        }
        let svg = effects_svg(&stats, Metric::TokensPerS, &power())
            .unwrap()
            .unwrap();
        let rows: Vec<_> = crate::plots::testutil::svg_texts(&svg)
            .into_iter()
            .filter(|t| t.anchor == "end" && t.text.starts_with('R'))
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        for t in &rows {
            assert!(t.text.ends_with('…'), "{}", t.text);
            let left = t.x - common::tests::dejavu_width(&t.text, t.size);
            assert!(left >= 0.0, "{} starts at {left}", t.text);
        }
    }

    #[test]
    fn hostile_group_names_are_escaped() {
        let mut stats = three_backends("m");
        let a = stats.comparisons[0]
            .metrics
            .get_mut("tokens_per_s")
            .unwrap();
        a.pairwise[0].b = NASTY.into();
        let svg = effects_svg(&stats, Metric::TokensPerS, &power())
            .unwrap()
            .unwrap();
        check_svg(&svg);
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
