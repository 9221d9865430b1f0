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
//!
//! What is where:
//!
//! * this module: the plot list ([`PLOT_NAMES`], [`Plot`]) and drawing them all ([`render_all`],
//!   [`render_all_with_sweep`], [`render_run`]);
//! * one file per plot: `throughput` ([`throughput_svg`]), [`batch`], `latency`
//!   ([`latency_svg`]), [`cost`], [`energy`] (energy and carbon), `power` ([`power_svg`]) and
//!   [`forest`];
//! * shared by them: `style` (palette, sizes, font, series colours, marker shapes), `labels`
//!   (axis and tick labels, [`sanitize_label`], [`short_labels`]), `key` (the key under each
//!   chart), `axes` (value ranges, the category axis, the linear-or-log value axis), `boxplot`
//!   ([`BoxStats`]) and `common` (the chart scaffolding: document, frame, mesh, legend, error
//!   bars, bars, category label fitting);
//! * `testutil`, in tests only: the fixtures and SVG checks the plot tests share.

use tcobench_analysis::RunStats;
use tcobench_results::load::LoadedRequests;
use tcobench_results::schema::{CellOutcome, Manifest, PowerSample};
use tcobench_results::CellStats;

use crate::ReportError;

mod axes;
pub mod batch;
mod boxplot;
mod common;
pub mod cost;
pub mod energy;
pub mod forest;
mod key;
mod labels;
mod latency;
mod power;
mod style;
#[cfg(test)]
pub(crate) mod testutil;
mod throughput;

pub use boxplot::BoxStats;
pub use labels::{sanitize_label, short_labels};
pub use latency::latency_svg;
pub use power::power_svg;
pub use style::OKABE_ITO;
pub use throughput::throughput_svg;

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

/// What drawing into a plotters backend returns.
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A drawing error as a [`ReportError::Plot`] naming plot `name`.
fn plot_err(name: &str) -> impl Fn(Box<dyn std::error::Error>) -> ReportError + '_ {
    move |e| ReportError::Plot {
        name: name.to_string(),
        message: e.to_string(),
    }
}

/// The completed cells of `stats`, with their positions in `stats.cells`.
fn ok_cells(stats: &RunStats) -> impl Iterator<Item = (usize, &CellStats)> {
    stats
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.status == CellOutcome::Ok)
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
    // Where the intervals are across executions, every title that shows one says so.
    let across = if stats.replicated() {
        " (across executions)"
    } else {
        ""
    };
    let mut push = |name: &'static str, title: String, svg: Option<String>| {
        if let Some(svg) = svg {
            plots.push(Plot { name, title, svg });
        }
    };
    push(
        "throughput",
        format!("Throughput by cell: mean tokens/s with 95 % CI{across}"),
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
            format!("{}{across}", forest::title(metric, &manifest.power)),
            forest::effects_svg(stats, metric, &manifest.power)?,
        );
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::testutil::{
        check_svg, many_cells, many_cells_with, power_samples, priced_stats, stats_for, svg_texts,
        SvgText,
    };
    use super::*;
    use tcobench_results::testutil::{manifest, request, NASTY};
    use tcobench_results::Metric;

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
