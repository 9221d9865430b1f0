//! Energy and carbon per cell.
//!
//! * `energy`: mean J per generated token per completed cell with its 95 % Student-t CI, cells
//!   grouped by backend (one colour each). Title and axis say whether the figures are measured
//!   or estimated, from the run's power basis (`manifest.json` → `power`).
//! * `carbon`: gCO2e per 1M generated tokens per completed cell with its 95 % CI, one series per
//!   energy scenario: the run's own selection (`stats.json` → `costing`) and, when the run folder
//!   holds a `sweep.json` written by `tcobench sweep`, each of its variants. Variants whose
//!   figures are identical (e.g. pricing-only variants under the same grid) share one series.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::Deserialize;

use super::axes::{extent_ci, finite, finite_ci, ValueAxis};
use super::common;
use super::key::KeyEntry;
use super::labels::sanitize_label;
use super::style::{series_style, CHART_HEIGHT, WIDTH};
use super::DrawResult;
use tcobench_analysis::RunStats;
use tcobench_cost::costing::{Figure, RunCosts};
use tcobench_results::schema::{CellOutcome, PowerInfo};
use tcobench_results::{CellStats, Metric};

use crate::ReportError;

/// File name of the sweep comparison in a run folder.
pub const SWEEP_FILE: &str = "sweep.json";

/// `measured (rapl, cpu-package)`, `estimated (cpu_estimate, cpu-package)`…: the run's power
/// basis with its method and scope, for titles and axes.
pub fn basis_words(power: &PowerInfo) -> String {
    sanitize_label(
        &format!("{} ({}, {})", power.basis, power.method, power.scope),
        60,
    )
}

fn energy_cells(stats: &RunStats) -> Vec<(&CellStats, f64, Option<[f64; 2]>)> {
    let mut cells: Vec<(&CellStats, f64, Option<[f64; 2]>)> = stats
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Ok)
        .filter_map(|c| {
            let d = c.metric(Metric::EnergyJPerToken)?;
            Some((c, finite(d.mean)?, finite_ci(d.ci95_mean)))
        })
        .collect();
    // Grouped by backend in order of first appearance, manifest order inside a group.
    let backends = backends(cells.iter().map(|c| c.0));
    let rank = |b: &str| backends.iter().position(|x| *x == b).unwrap_or(0);
    cells.sort_by_key(|(c, ..)| rank(&c.config.backend));
    cells
}

/// The backends of `cells`, in order of first appearance.
fn backends<'c>(cells: impl IntoIterator<Item = &'c CellStats>) -> Vec<&'c str> {
    let mut backends: Vec<&str> = Vec::new();
    for c in cells {
        if !backends.contains(&c.config.backend.as_str()) {
            backends.push(&c.config.backend);
        }
    }
    backends
}

/// Energy per generated token per cell, grouped by backend. `None` when no completed cell has a
/// finite energy per token.
pub fn energy_svg(stats: &RunStats, power: &PowerInfo) -> Result<Option<String>, ReportError> {
    let cells = energy_cells(stats);
    if cells.is_empty() {
        return Ok(None);
    }
    common::render("energy", |svg| draw_energy(svg, &cells, power))
}

fn draw_energy(
    svg: &mut String,
    cells: &[(&CellStats, f64, Option<[f64; 2]>)],
    power: &PowerInfo,
) -> DrawResult {
    let refs: Vec<&CellStats> = cells.iter().map(|c| c.0).collect();
    let backends = backends(refs.iter().copied());
    let rank = |b: &str| backends.iter().position(|x| *x == b).unwrap_or(0);
    // CIs are finite and ordered (`finite_ci`): the lowest end is a mean or a CI's lower end.
    let (lo, hi) = extent_ci(cells.iter().map(|(_, m, ci)| (*m, *ci))).unwrap_or((0.0, 1.0));
    let (lo, hi) = super::axes::padded(lo.min(0.0), hi, 0.05);
    let lo = if lo < 0.0 && cells.iter().all(|c| c.1 >= 0.0) {
        0.0
    } else {
        lo
    };
    // Headroom for the legend (upper right).
    let hi = hi + (hi - lo) * 0.2;

    let mut key: Vec<KeyEntry> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| KeyEntry::series(i, &format!("backend {b}")))
        .collect();
    key.extend(super::key::key_lines(&refs));

    let basis = basis_words(power);
    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, &key)?;
    let mut chart = frame.category_chart(
        sanitize_label(&format!("Energy per token by backend, {basis}"), 80),
        &super::labels::short_labels(&refs),
        &super::labels::index_labels(&refs),
        "cell, grouped by backend",
        lo..hi,
        sanitize_label(&format!("energy per token (J/token, {})", power.basis), 60),
    )?;
    chart.draw_series(cells.iter().enumerate().map(|(i, (c, m, _))| {
        let (colour, _) = series_style(rank(&c.config.backend));
        common::bar(i as f64, *m, colour.mix(0.8).filled())
    }))?;
    if cells.iter().any(|c| c.2.is_some()) {
        common::draw_mean_cis(&mut chart, cells.iter().map(|(_, m, ci)| (*m, *ci)), 12)?;
    }
    // Backend boundaries.
    for (i, w) in refs.windows(2).enumerate() {
        if w[0].config.backend != w[1].config.backend {
            let x = i as f64 + 0.5;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                BLACK.mix(0.5).stroke_width(1),
            )))?;
        }
    }
    frame.finish()
}

// ---------------------------------------------------------------------------------------------
// Carbon
// ---------------------------------------------------------------------------------------------

/// The variants of a `sweep.json`, reduced to what the carbon plot draws. Other fields of the
/// file are ignored, so a sweep written by a later version still reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SweepVariants {
    /// Run id the sweep was computed for.
    pub run_id: String,
    /// Variants, in the file's order.
    pub variants: Vec<SweepVariant>,
}

/// One variant of a sweep.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SweepVariant {
    /// Variant name.
    pub name: String,
    /// Its costs.
    pub costing: VariantCosts,
}

/// The part of a variant's [`RunCosts`] the carbon plot uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VariantCosts {
    /// Per-cell figures.
    pub cells: Vec<VariantCell>,
}

/// One cell's energy figures under a variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VariantCell {
    /// Cell id.
    pub cell_id: String,
    /// Energy and carbon, when known.
    pub energy: Option<VariantEnergy>,
}

/// Energy and carbon figures of a cell under a variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VariantEnergy {
    /// PUE applied.
    pub pue: f64,
    /// Grid intensity applied, gCO2e/kWh.
    pub grid_g_per_kwh: Option<f64>,
    /// gCO2e per 1M generated tokens.
    pub gco2e_per_1m_tokens: Option<Figure>,
}

/// Reads `run_dir/sweep.json` when it exists. A file that does not parse, or that was written for
/// another run, is an error naming the file: a carbon plot silently missing its variants would
/// misreport the sweep.
pub fn read_sweep(run_dir: &Path, run_id: &str) -> Result<Option<SweepVariants>, ReportError> {
    let path = run_dir.join(SWEEP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Io { path, source }),
    };
    let sweep: SweepVariants = serde_json::from_str(&text).map_err(|source| ReportError::Json {
        path: path.clone(),
        source,
    })?;
    if sweep.run_id != run_id {
        return Err(ReportError::Plot {
            name: "carbon".into(),
            message: format!(
                "{}: written for run `{}`, not `{run_id}`; run `tcobench sweep` again or remove it",
                path.display(),
                sweep.run_id
            ),
        });
    }
    Ok(Some(sweep))
}

/// One series of the carbon plot: an energy scenario and its figure per cell id.
#[derive(Debug, Clone, PartialEq)]
pub struct CarbonSeries {
    /// Names of the selections with these figures (`run selection`, variant names).
    pub names: Vec<String>,
    /// Grid intensity, gCO2e/kWh (when the same for every cell).
    pub grid_g_per_kwh: Option<f64>,
    /// PUE (when the same for every cell).
    pub pue: Option<f64>,
    /// gCO2e per 1M tokens per cell id (finite values only).
    pub values: BTreeMap<String, Figure>,
}

fn series_of<'a>(
    name: String,
    cells: impl Iterator<Item = (&'a str, Option<f64>, Option<f64>, Option<Figure>)>,
    ok: &[&str],
) -> Option<CarbonSeries> {
    let mut values = BTreeMap::new();
    let mut grids = Vec::new();
    let mut pues = Vec::new();
    for (id, grid, pue, fig) in cells {
        let Some(f) = fig.filter(|f| f.value.is_finite()) else {
            continue;
        };
        if !ok.contains(&id) {
            continue;
        }
        grids.push(grid);
        pues.push(pue);
        values.insert(
            id.to_string(),
            Figure {
                value: f.value,
                ci95: finite_ci(f.ci95),
            },
        );
    }
    let same = |v: &[Option<f64>]| {
        v.first()
            .copied()
            .flatten()
            .filter(|x| x.is_finite() && v.iter().all(|y| *y == Some(*x)))
    };
    (!values.is_empty()).then(|| CarbonSeries {
        names: vec![name],
        grid_g_per_kwh: same(&grids),
        pue: same(&pues),
        values,
    })
}

/// The series of the carbon plot: the run's own selection first, then each sweep variant;
/// series with identical figures are merged (their names joined). Only completed cells with a
/// finite figure count; a selection without any is left out.
pub fn carbon_series(stats: &RunStats, sweep: Option<&SweepVariants>) -> Vec<CarbonSeries> {
    let ok: Vec<&str> = stats
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Ok)
        .map(|c| c.cell_id.as_str())
        .collect();
    let mut out: Vec<CarbonSeries> = Vec::new();
    let mut add = |s: Option<CarbonSeries>| {
        let Some(s) = s else { return };
        match out.iter_mut().find(|o| o.values == s.values) {
            Some(o) => o.names.extend(s.names),
            None => out.push(s),
        }
    };
    if let Some(costs) = &stats.costing {
        add(run_series(costs, &ok));
    }
    for v in sweep.map(|s| s.variants.as_slice()).unwrap_or_default() {
        add(series_of(
            v.name.clone(),
            v.costing.cells.iter().map(|c| {
                let e = c.energy.as_ref();
                (
                    c.cell_id.as_str(),
                    e.and_then(|e| e.grid_g_per_kwh),
                    e.map(|e| e.pue),
                    e.and_then(|e| e.gco2e_per_1m_tokens),
                )
            }),
            &ok,
        ));
    }
    out
}

fn run_series(costs: &RunCosts, ok: &[&str]) -> Option<CarbonSeries> {
    let name = costs
        .selection
        .label
        .clone()
        .unwrap_or_else(|| "run selection".into());
    series_of(
        name,
        costs.cells.iter().map(|c| {
            let e = c.energy.as_ref();
            (
                c.cell_id.as_str(),
                e.and_then(|e| e.grid_g_per_kwh),
                e.map(|e| e.pue),
                e.and_then(|e| e.gco2e_per_1m_tokens),
            )
        }),
        ok,
    )
}

/// Carbon per 1M generated tokens per cell and grid scenario. `None` when no selection gives a
/// completed cell a finite figure.
pub fn carbon_svg(
    stats: &RunStats,
    sweep: Option<&SweepVariants>,
) -> Result<Option<String>, ReportError> {
    let series = carbon_series(stats, sweep);
    let cells: Vec<&CellStats> = stats
        .cells
        .iter()
        .filter(|c| series.iter().any(|s| s.values.contains_key(&c.cell_id)))
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    common::render("carbon", |svg| draw_carbon(svg, &series, &cells))
}

fn series_name(s: &CarbonSeries) -> String {
    let mut name = s.names.join(" = ");
    let mut what = Vec::new();
    if let Some(g) = s.grid_g_per_kwh {
        what.push(format!(
            "grid {} gCO2e/kWh",
            tcobench_results::fmt_sig(g, 4)
        ));
    }
    if let Some(p) = s.pue {
        what.push(format!("PUE {}", tcobench_results::fmt_sig(p, 3)));
    }
    if !what.is_empty() {
        name.push_str(&format!(" ({})", what.join(", ")));
    }
    name
}

fn draw_carbon(svg: &mut String, series: &[CarbonSeries], cells: &[&CellStats]) -> DrawResult {
    let figs = series.iter().flat_map(|s| s.values.values());
    let (lo, hi) = extent_ci(figs.map(|f| (f.value, f.ci95))).unwrap_or((0.0, 1.0));
    let y_axis = ValueAxis::fit(lo, hi, true);
    let y_desc = y_axis.describe("emissions (gCO2e per 1M generated tokens)");

    let mut key: Vec<KeyEntry> = series
        .iter()
        .enumerate()
        .map(|(i, s)| KeyEntry::series(i, &series_name(s)))
        .collect();
    key.extend(super::key::key_lines(cells));

    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, &key)?;
    let mut chart = frame.category_chart(
        "Carbon per 1M tokens per grid scenario (mean, 95 % CI)",
        &super::labels::short_labels(cells),
        &super::labels::index_labels(cells),
        "cell",
        y_axis,
        y_desc,
    )?;
    for (k, s) in series.iter().enumerate() {
        let dodge = common::dodge(k, series.len(), 0.6, 0.12);
        let points: Vec<_> = cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let f = s.values.get(&c.cell_id)?;
                Some((i as f64 + dodge, f.value, f.ci95))
            })
            .collect();
        common::draw_points(&mut chart, k, &points, false)?;
    }
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::testutil::{check_svg, priced_stats, stats_for};
    use tcobench_results::testutil::{manifest, request, NASTY};

    #[test]
    fn energy_groups_by_backend_and_names_the_basis() {
        let mut m = manifest("r", "s", "m");
        m.cells[0].config.backend = "zeta".into();
        m.cells[2].status = CellOutcome::Ok;
        m.cells[2].error = None;
        m.cells[2].config.backend = "zeta".into();
        let rows: Vec<_> = m
            .cells
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(100.0 + f64::from(r)))))
            .collect();
        let (stats, _) = stats_for(&rows, &m);
        let order: Vec<usize> = energy_cells(&stats).iter().map(|c| c.0.index).collect();
        // zeta first (first appearance), its two cells in manifest order, then mock.
        assert_eq!(order, [0, 2, 1]);
        // energy per token = 2·e2e / (batch · 8): cell 0 (batch 2), mean e2e 101 ms.
        let e0 = energy_cells(&stats)[0].1;
        assert!((e0 - 2.0 * 101.0 / 16.0).abs() < 1e-9);
        let svg = energy_svg(&stats, &m.power).unwrap().unwrap();
        check_svg(&svg);
        assert!(svg.contains("J/token, estimated"), "basis on the axis");
        assert!(svg.contains("estimated (cpu_estimate, cpu-package)"));
    }

    #[test]
    fn energy_skips_non_finite_and_missing() {
        let m = manifest("r", "s", "m");
        let rows: Vec<_> = m.cells[..2]
            .iter()
            .flat_map(|c| (0..3).map(move |r| request(c, r, false, Some(100.0))))
            .collect();
        let (mut stats, _) = stats_for(&rows, &m);
        stats.cells[0]
            .metrics
            .get_mut("energy_j_per_token")
            .unwrap()
            .mean = f64::NAN;
        assert_eq!(energy_cells(&stats).len(), 1);
        check_svg(&energy_svg(&stats, &m.power).unwrap().unwrap());
        stats.cells[1].metrics.remove("energy_j_per_token");
        assert_eq!(energy_svg(&stats, &m.power).unwrap(), None);
    }

    fn variant(name: &str, stats: &RunStats, factor: f64) -> SweepVariant {
        let costs = stats.costing.as_ref().unwrap();
        SweepVariant {
            name: name.into(),
            costing: VariantCosts {
                cells: costs
                    .cells
                    .iter()
                    .map(|c| VariantCell {
                        cell_id: c.cell_id.clone(),
                        energy: c.energy.as_ref().map(|e| VariantEnergy {
                            pue: e.pue,
                            grid_g_per_kwh: e.grid_g_per_kwh.map(|g| g * factor),
                            gco2e_per_1m_tokens: e.gco2e_per_1m_tokens.map(|f| Figure {
                                value: f.value * factor,
                                ci95: f.ci95.map(|[l, h]| [l * factor, h * factor]),
                            }),
                        }),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn carbon_series_per_variant_merge_identical_ones() {
        let stats = priced_stats();
        let base = carbon_series(&stats, None);
        assert_eq!(base.len(), 1);
        assert_eq!(base[0].names, ["run selection"]);
        let ids: Vec<&String> = base[0].values.keys().collect();
        assert_eq!(ids, ["aaaa", "bbbb"], "completed cells only");
        let sweep = SweepVariants {
            run_id: stats.run_id.clone(),
            variants: vec![
                variant("same-grid", &stats, 1.0),
                variant(NASTY, &stats, 0.1),
                variant("dirty", &stats, 3.0),
            ],
        };
        let s = carbon_series(&stats, Some(&sweep));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].names, ["run selection", "same-grid"]);
        let a = |k: usize| s[k].values["aaaa"].value;
        assert!((a(1) - 0.1 * a(0)).abs() <= 1e-12 * a(0));
        assert!((a(2) - 3.0 * a(0)).abs() <= 1e-12 * a(0));
        let svg = carbon_svg(&stats, Some(&sweep)).unwrap().unwrap();
        check_svg(&svg);
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("gCO2e per 1M generated tokens"));
    }

    #[test]
    fn carbon_skips_non_finite_and_needs_a_figure() {
        let mut stats = priced_stats();
        let costs = stats.costing.as_mut().unwrap();
        if let Some(e) = costs.cells[0].energy.as_mut() {
            e.gco2e_per_1m_tokens = Some(Figure {
                value: f64::NAN,
                ci95: None,
            });
        }
        let s = carbon_series(&stats, None);
        assert_eq!(s[0].values.len(), 1);
        check_svg(&carbon_svg(&stats, None).unwrap().unwrap());
        for c in &mut stats.costing.as_mut().unwrap().cells {
            c.energy = None;
        }
        assert_eq!(carbon_svg(&stats, None).unwrap(), None);
    }

    #[test]
    fn sweep_file_is_read_checked_and_optional() {
        let stats = priced_stats();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_sweep(dir.path(), &stats.run_id).unwrap(), None);
        // The shape `tcobench sweep` writes: full RunCosts per variant, extra fields ignored.
        let json = serde_json::json!({
            "schema_version": 1,
            "run_id": stats.run_id,
            "variants": [{
                "name": "low",
                "description": "",
                "file": "v/low.yaml",
                "costing": stats.costing.as_ref().unwrap(),
            }],
        });
        std::fs::write(dir.path().join(SWEEP_FILE), json.to_string()).unwrap();
        let sweep = read_sweep(dir.path(), &stats.run_id).unwrap().unwrap();
        assert_eq!(sweep.variants.len(), 1);
        assert_eq!(
            carbon_series(&stats, Some(&sweep))[0].names,
            ["run selection", "low"]
        );
        let err = read_sweep(dir.path(), "another-run")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another-run") && err.contains(SWEEP_FILE),
            "{err}"
        );
        std::fs::write(dir.path().join(SWEEP_FILE), "{").unwrap();
        let err = read_sweep(dir.path(), &stats.run_id)
            .unwrap_err()
            .to_string();
        assert!(err.contains(SWEEP_FILE), "{err}");
    }
}
