//! Cost against throughput, one series per pricing tier of the run's selection: each completed
//! cell at its measured tokens/s (one replica, mean with 95 % CI) and its $/1M generated tokens on
//! the cheapest instance of the selection that prices it under that tier (95 % CI).
//!
//! The Pareto-optimal cells of a tier — those no other cell beats on both axes, i.e. is at least
//! as fast and at most as expensive and strictly better in one — are joined by a step line (the
//! edge of what the measured configurations can reach) and labelled with their `#index`.

use plotters::prelude::*;

use super::axes::{extent_ci, finite, finite_ci, ValueAxis};
use super::common::{self, Bars};
use super::key::{KeyEntry, KeyStyle};
use super::labels::sanitize_label;
use super::style::{series_style, CHART_HEIGHT, FONT, WIDTH};
use super::DrawResult;
use tcobench_analysis::RunStats;
use tcobench_cost::Tier;
use tcobench_results::schema::CellOutcome;

use crate::ReportError;

/// One cell priced under one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct CostPoint {
    /// The cell's execution index.
    pub cell_index: usize,
    /// Cell id.
    pub cell_id: String,
    /// Measured tokens/s of one replica.
    pub tokens_per_s: f64,
    /// Its 95 % CI, when finite.
    pub tokens_per_s_ci95: Option<[f64; 2]>,
    /// $ per 1M generated tokens.
    pub usd_per_1m_tokens: f64,
    /// Its 95 % CI, when finite.
    pub usd_ci95: Option<[f64; 2]>,
    /// The instance priced (`provider/type/region`).
    pub instance: String,
}

/// The points of one tier and the indices (into `points`) of its Pareto front.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPoints {
    /// Tier.
    pub tier: Tier,
    /// Priced cells.
    pub points: Vec<CostPoint>,
    /// Indices into `points` of the Pareto-optimal ones, ascending throughput.
    pub front: Vec<usize>,
}

/// The Pareto front of `(throughput, cost)` points, where more throughput and less cost are
/// better: the indices of the points that no other point dominates (at least as fast and at most
/// as expensive, and strictly better in one), ascending throughput (then cost). Identical points
/// do not dominate each other, so both stay on the front. Non-finite points are ignored.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let ok = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| ok(&points[i]))
        .filter(|&i| {
            let (x, c) = points[i];
            !points
                .iter()
                .any(|q| ok(q) && q.0 >= x && q.1 <= c && (q.0 > x || q.1 < c))
        })
        .collect();
    front.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
    });
    front
}

/// The priced points of every tier of the selection, in the selection's tier order; tiers that
/// price no cell are left out. Cells that did not complete, or whose throughput or price is not
/// finite, are skipped.
pub fn tier_points(stats: &RunStats) -> Vec<TierPoints> {
    let Some(costing) = &stats.costing else {
        return Vec::new();
    };
    let mut tiers = Vec::new();
    for &tier in &costing.selection.tiers {
        let mut points = Vec::new();
        for cc in &costing.cells {
            let Some(cell) = stats
                .cells
                .iter()
                .find(|c| c.cell_id == cc.cell_id && c.status == CellOutcome::Ok)
            else {
                continue;
            };
            let Some(tps) = cc.tokens_per_s.filter(|f| f.value.is_finite()) else {
                continue;
            };
            let cheapest = cc
                .prices
                .iter()
                .filter(|p| p.tier == tier && finite(p.usd_per_1m_tokens.value).is_some())
                .min_by(|a, b| {
                    a.usd_per_1m_tokens
                        .value
                        .total_cmp(&b.usd_per_1m_tokens.value)
                });
            if let Some(p) = cheapest {
                points.push(CostPoint {
                    cell_index: cell.index,
                    cell_id: cell.cell_id.clone(),
                    tokens_per_s: tps.value,
                    tokens_per_s_ci95: finite_ci(tps.ci95),
                    usd_per_1m_tokens: p.usd_per_1m_tokens.value,
                    usd_ci95: finite_ci(p.usd_per_1m_tokens.ci95),
                    instance: p.instance.clone(),
                });
            }
        }
        if points.is_empty() {
            continue;
        }
        let xy: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.tokens_per_s, p.usd_per_1m_tokens))
            .collect();
        let front = pareto_front(&xy);
        tiers.push(TierPoints {
            tier,
            points,
            front,
        });
    }
    tiers
}

/// Cost vs throughput with the Pareto front per tier. `None` when the run has no costing or no
/// completed cell is priced.
pub fn cost_pareto_svg(stats: &RunStats) -> Result<Option<String>, ReportError> {
    let tiers = tier_points(stats);
    if tiers.is_empty() {
        return Ok(None);
    }
    let label_of = |id: &str| {
        stats
            .cells
            .iter()
            .find(|c| c.cell_id == id)
            .map(|c| c.label())
            .unwrap_or_default()
    };
    let mut key = Vec::new();
    for (i, t) in tiers.iter().enumerate() {
        key.push(KeyEntry::series(
            i,
            &format!(
                "{}: {} cells priced, {} on the Pareto front",
                t.tier.name(),
                t.points.len(),
                t.front.len()
            ),
        ));
        for &f in &t.front {
            let p = &t.points[f];
            key.push(KeyEntry::text(sanitize_label(
                &format!(
                    "    #{}: {} $/1M tokens at {} tokens/s on {} — {} [{}]",
                    p.cell_index,
                    tcobench_results::fmt_sig(p.usd_per_1m_tokens, 4),
                    tcobench_results::fmt_sig(p.tokens_per_s, 4),
                    p.instance,
                    label_of(&p.cell_id),
                    p.cell_id,
                ),
                150,
            )));
        }
    }
    key.push(KeyEntry {
        style: Some(KeyStyle::Line(BLACK, 1)),
        text: "Pareto front (step line): no other cell is both faster and cheaper".into(),
    });
    common::render("cost_pareto", |svg| draw(svg, &tiers, &key))
}

fn draw(svg: &mut String, tiers: &[TierPoints], key: &[KeyEntry]) -> DrawResult {
    let all = || tiers.iter().flat_map(|t| &t.points);
    let (x_lo, x_hi) =
        extent_ci(all().map(|p| (p.tokens_per_s, p.tokens_per_s_ci95))).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) =
        extent_ci(all().map(|p| (p.usd_per_1m_tokens, p.usd_ci95))).unwrap_or((0.0, 1.0));
    let x_axis = ValueAxis::fit(x_lo, x_hi, false);
    let y_axis = ValueAxis::fit(y_lo, y_hi, false);
    let x_desc = x_axis.describe("throughput of one replica (tokens/s)");
    let y_desc = y_axis.describe("cost ($ per 1M generated tokens)");

    let frame = common::Frame::new(svg, WIDTH, CHART_HEIGHT, key)?;
    let mut chart = frame.chart(
        "Cost vs throughput per tier (cheapest instance per cell), Pareto front",
        common::Y_LABELS,
        x_axis,
        y_axis,
    )?;
    common::mesh(&mut chart, &common::ticks, &common::ticks)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;

    for (i, t) in tiers.iter().enumerate() {
        let (color, shape) = series_style(i);
        let bar_style = color.mix(0.6).stroke_width(1);
        common::draw_error_bars(
            &mut chart,
            Bars::Vertical,
            t.points
                .iter()
                .map(|p| (p.tokens_per_s, p.usd_per_1m_tokens, p.usd_ci95)),
            bar_style,
            6,
        )?;
        common::draw_error_bars(
            &mut chart,
            Bars::Horizontal,
            t.points
                .iter()
                .map(|p| (p.usd_per_1m_tokens, p.tokens_per_s, p.tokens_per_s_ci95)),
            bar_style,
            6,
        )?;
        // The staircase: from one front point up to the next one's cost, then across to it.
        let mut step = Vec::new();
        for (k, &f) in t.front.iter().enumerate() {
            let p = &t.points[f];
            if k > 0 {
                let prev = step.last().copied().unwrap_or((p.tokens_per_s, 0.0));
                step.push((prev.0, p.usd_per_1m_tokens));
            }
            step.push((p.tokens_per_s, p.usd_per_1m_tokens));
        }
        if step.len() >= 2 {
            chart.draw_series(std::iter::once(PathElement::new(
                step,
                color.stroke_width(2),
            )))?;
        }
        let xy = |p: &CostPoint| (p.tokens_per_s, p.usd_per_1m_tokens);
        super::style::draw_markers(
            &mut chart,
            (0..t.points.len())
                .filter(|k| !t.front.contains(k))
                .map(|k| xy(&t.points[k])),
            shape,
            5,
            color.mix(0.7).stroke_width(1),
        )?;
        super::style::draw_markers(
            &mut chart,
            t.front.iter().map(|&k| xy(&t.points[k])),
            shape,
            5,
            color.filled(),
        )?;
        chart.draw_series(t.front.iter().map(|&f| {
            let p = &t.points[f];
            EmptyElement::at((p.tokens_per_s, p.usd_per_1m_tokens))
                + Text::new(
                    format!("#{}", p.cell_index),
                    (6, -16),
                    (FONT, 12).into_font().color(&BLACK),
                )
        }))?;
    }
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::testutil::{check_svg, priced_stats};

    #[test]
    fn pareto_front_of_a_hand_made_set() {
        // (tokens/s, $/1M): 0 (10, 5) front; 1 (20, 8) front; 2 (15, 9) dominated by 1;
        // 3 (20, 8) identical to 1 → both stay; 4 (5, 5) dominated by 0 (faster, same cost);
        // 5 (30, 20) front (fastest); 6 (25, 25) dominated by 5; 7 NaN ignored;
        // 8 (10, 4) front and dominates 0.
        let pts = [
            (10.0, 5.0),
            (20.0, 8.0),
            (15.0, 9.0),
            (20.0, 8.0),
            (5.0, 5.0),
            (30.0, 20.0),
            (25.0, 25.0),
            (f64::NAN, 1.0),
            (10.0, 4.0),
        ];
        assert_eq!(pareto_front(&pts), vec![8, 1, 3, 5]);
        assert_eq!(pareto_front(&pts[..1]), vec![0]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        assert_eq!(pareto_front(&[(f64::INFINITY, 1.0)]), Vec::<usize>::new());
        // Same speed, different cost: only the cheaper is optimal.
        assert_eq!(pareto_front(&[(10.0, 3.0), (10.0, 2.0)]), vec![1]);
    }

    #[test]
    fn tiers_price_completed_cells_and_mark_the_front() {
        let stats = priced_stats();
        let tiers = tier_points(&stats);
        let costing = stats.costing.as_ref().unwrap();
        assert_eq!(
            tiers.iter().map(|t| t.tier).collect::<Vec<_>>(),
            costing.selection.tiers
        );
        for t in &tiers {
            // The failed cell cccc is not priced; aaaa and bbbb are.
            let ids: Vec<&str> = t.points.iter().map(|p| p.cell_id.as_str()).collect();
            assert_eq!(ids, ["aaaa", "bbbb"]);
            for p in &t.points {
                let cc = costing
                    .cells
                    .iter()
                    .find(|c| c.cell_id == p.cell_id)
                    .unwrap();
                let min = cc
                    .prices
                    .iter()
                    .filter(|q| q.tier == t.tier)
                    .map(|q| q.usd_per_1m_tokens.value)
                    .fold(f64::INFINITY, f64::min);
                assert_eq!(p.usd_per_1m_tokens, min);
            }
            // On one instance price is proportional to 1/throughput: the faster cell is also
            // the cheaper, so it alone is optimal.
            assert_eq!(t.front.len(), 1);
            let best = &t.points[t.front[0]];
            assert!(t.points.iter().all(|p| p.tokens_per_s <= best.tokens_per_s));
        }
        let svg = cost_pareto_svg(&stats).unwrap().unwrap();
        check_svg(&svg);
        assert!(svg.contains("cost ($ per 1M generated tokens)"));
    }

    #[test]
    fn non_finite_prices_are_skipped_and_no_costing_means_no_plot() {
        let mut stats = priced_stats();
        let costing = stats.costing.as_mut().unwrap();
        for p in &mut costing.cells[0].prices {
            p.usd_per_1m_tokens.value = f64::NAN;
        }
        let tiers = tier_points(&stats);
        assert!(tiers.iter().all(|t| t.points.len() == 1));
        check_svg(&cost_pareto_svg(&stats).unwrap().unwrap());
        stats.costing.as_mut().unwrap().cells[1].tokens_per_s = None;
        assert_eq!(cost_pareto_svg(&stats).unwrap(), None);
        stats.costing = None;
        assert_eq!(cost_pareto_svg(&stats).unwrap(), None);
    }
}
