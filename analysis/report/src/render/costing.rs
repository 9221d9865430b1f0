//! The costing section of the reports: the price, energy and gap tables of a priced run, why a
//! tier and model has no recommendation ([`missing_recommendations`]) and which idle power the
//! monthly figures charge ([`idle_power_label`]).

use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_cost::Tier;
use tcobench_results::schema::Manifest;
use tcobench_results::{fmt_sig, CellStats};

/// One priced (cell, instance, tier) row of the cost table.
#[derive(Serialize)]
struct CostRow<'a> {
    cell_id: &'a str,
    label: String,
    #[serde(flatten)]
    price: &'a tcobench_cost::costing::PriceFigures,
    slo_met: Option<bool>,
}

/// One cell's energy row.
#[derive(Serialize)]
struct EnergyRow<'a> {
    cell_id: &'a str,
    label: String,
    #[serde(flatten)]
    energy: &'a tcobench_cost::costing::EnergyFigures,
}

/// A figure that could not be computed, for the notes list.
#[derive(Serialize)]
struct CostGap {
    label: String,
    what: String,
    reason: String,
}

/// The costing section as the templates see it.
#[derive(Serialize)]
pub(super) struct CostingView<'a> {
    costs: &'a tcobench_cost::costing::RunCosts,
    prices: Vec<CostRow<'a>>,
    energy: Vec<EnergyRow<'a>>,
    gaps: Vec<CostGap>,
    /// Per tier and model without a recommendation, why ([`missing_recommendations`]).
    missing_recommendations: Vec<MissingRecommendation>,
    /// The idle power behind kWh/month, kgCO2e/month and on-prem electricity, in words
    /// ([`idle_power_label`]).
    idle_power: String,
}

/// A tier and model of a priced run without a recommendation, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingRecommendation {
    /// Pricing tier, as the catalog and scenarios name it (`reserved_1y`).
    pub tier: String,
    /// Model served.
    pub model: String,
    /// Why no configuration is recommended, in words (`code spans` for keys).
    pub reason: String,
}

/// Every tier × model of `costs` that has no recommendation, with the reason — which tells
/// *nothing could be priced* (no instance selected, no price of that tier in the catalog for the
/// instances, no instance fits the cells, no measured throughput) apart from *nothing priced meets
/// the SLO*. Tiers in selection order, models in cell order.
pub fn missing_recommendations(
    stats: &RunStats,
    costs: &tcobench_cost::costing::RunCosts,
) -> Vec<MissingRecommendation> {
    let sel = &costs.selection;
    let models = models_in_cell_order(stats);
    let slo = sel
        .slo
        .map(|s| format!("p{} `{}` ≤ {} ms", s.percentile, s.metric.name(), s.max_ms));
    let mut out = Vec::new();
    for &tier in &sel.tiers {
        for &model in &models {
            if costs
                .recommendations
                .iter()
                .any(|r| r.tier == tier && r.model == model)
            {
                continue;
            }
            let cells: Vec<_> = stats
                .cells
                .iter()
                .zip(&costs.cells)
                .filter(|(s, _)| s.config.model == model)
                .map(|(_, c)| c)
                .collect();
            let Some(reason) = missing_reason(sel, tier, &cells, slo.as_deref()) else {
                continue; // a candidate exists: `recommendations` ranks it (not reached)
            };
            out.push(MissingRecommendation {
                tier: tier.name().to_string(),
                model: model.to_string(),
                reason,
            });
        }
    }
    out
}

/// The models of `stats`' cells, each once, in cell order.
fn models_in_cell_order(stats: &RunStats) -> Vec<&str> {
    let mut models: Vec<&str> = Vec::new();
    for c in &stats.cells {
        if !models.contains(&c.config.model.as_str()) {
            models.push(&c.config.model);
        }
    }
    models
}

/// Why none of `cells` (those of one model) is recommended in `tier`, `slo` being the SLO in
/// words; `None` when one of them is priced in `tier` and meets the SLO.
fn missing_reason(
    sel: &tcobench_cost::costing::CostSelection,
    tier: Tier,
    cells: &[&tcobench_cost::costing::CellCost],
    slo: Option<&str>,
) -> Option<String> {
    let meets =
        |c: &tcobench_cost::costing::CellCost| sel.slo.is_none() || c.slo.is_some_and(|s| s.met);
    let priced = |c: &&tcobench_cost::costing::CellCost| {
        c.prices
            .iter()
            .any(|p| p.tier == tier && p.usd_per_1m_tokens.value.is_finite())
    };
    let reason = if !cells.iter().any(priced) {
        format!(
            "nothing could be priced ({})",
            why_unpriced(sel, tier, cells)
        )
    } else if cells.iter().filter(|c| priced(c)).any(|c| meets(c)) {
        return None;
    } else if cells.iter().any(|c| meets(c)) {
        let slo_cells: Vec<_> = cells.iter().copied().filter(|c| meets(c)).collect();
        format!(
            "the configurations that meet the SLO ({}) could not be priced in this tier ({})",
            slo.unwrap_or("none set"),
            why_unpriced(sel, tier, &slo_cells)
        )
    } else {
        format!(
            "no priced configuration meets the SLO ({})",
            slo.unwrap_or("none set")
        )
    };
    Some(reason)
}

/// Why the cells in `of` have no price in `tier`, one clause per cause.
fn why_unpriced(
    sel: &tcobench_cost::costing::CostSelection,
    tier: Tier,
    of: &[&tcobench_cost::costing::CellCost],
) -> String {
    if sel.instances.is_empty() {
        return "no instances selected (`pricing.instances`)".into();
    }
    let mut no_price: Vec<&str> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for c in of {
        for u in &c.unpriced {
            match u.tier {
                Some(t) if t == tier => {
                    if !no_price.contains(&u.instance.as_str()) {
                        no_price.push(&u.instance);
                    }
                }
                Some(_) => {}
                None => {
                    if !other.contains(&u.reason) {
                        other.push(u.reason.clone());
                    }
                }
            }
        }
        if c.tokens_per_s
            .is_none_or(|t| t.value <= 0.0 || t.value.is_nan())
        {
            let why = c
                .unavailable
                .iter()
                .find(|u| u.metric == "usd_per_1m_tokens")
                .map_or("no positive measured throughput", |u| u.reason.as_str());
            let why = format!("no measured throughput ({why})");
            if !other.contains(&why) {
                other.push(why);
            }
        }
    }
    let mut clauses = Vec::new();
    if !no_price.is_empty() {
        clauses.push(format!(
            "catalog {} has no {tier} price for {}",
            sel.catalog.version,
            no_price.join(", ")
        ));
    }
    clauses.extend(other);
    if clauses.is_empty() {
        "no price of this tier was computed".into()
    } else {
        clauses.join("; ")
    }
}

/// Which idle power the workload's kWh/month, kgCO2e/month and on-prem electricity charge for
/// the `(1 − U)` share, and where it comes from — never left unsaid.
pub fn idle_power_label(
    selection: &tcobench_cost::costing::CostSelection,
    manifest: &Manifest,
) -> String {
    use tcobench_cost::formulas::IdlePowerSource;
    let source = IdlePowerSource::of(selection.idle_watts, selection.idle_watts_source);
    match (selection.idle_watts, source) {
        (Some(w), IdlePowerSource::MeasuredBaseline) => {
            let basis = manifest
                .power
                .idle_baseline
                .as_ref()
                .map(|b| b.window.basis.as_str())
                .filter(|b| *b != "measured");
            format!(
                "idle time at {} W per replica: {}{}",
                fmt_sig(w, 4),
                source.describe(),
                basis.map_or_else(String::new, |b| format!(", {b}"))
            )
        }
        (Some(w), _) => format!(
            "idle time at {} W per replica: {}",
            fmt_sig(w, 4),
            source.describe()
        ),
        (None, _) => source.describe().to_string(),
    }
}

/// The costing section of a priced run (`None` for an unpriced one): its tables, missing
/// recommendations and idle power, each row labelled with its cell.
pub(super) fn costing_view<'a>(
    stats: &'a RunStats,
    manifest: &Manifest,
) -> Option<CostingView<'a>> {
    let costs = stats.costing.as_ref()?;
    let label = |id: &str| {
        stats
            .cells
            .iter()
            .find(|c| c.cell_id == id)
            .map(CellStats::label)
            .unwrap_or_else(|| id.to_string())
    };
    let mut prices = Vec::new();
    let mut energy = Vec::new();
    let mut gaps = Vec::new();
    for c in &costs.cells {
        let cell_label = label(&c.cell_id);
        for p in &c.prices {
            prices.push(CostRow {
                cell_id: &c.cell_id,
                label: cell_label.clone(),
                price: p,
                slo_met: c.slo.map(|s| s.met),
            });
        }
        if let Some(e) = &c.energy {
            energy.push(EnergyRow {
                cell_id: &c.cell_id,
                label: cell_label.clone(),
                energy: e,
            });
        }
        for u in &c.unpriced {
            gaps.push(CostGap {
                label: cell_label.clone(),
                what: match u.tier {
                    Some(t) => format!("{} {t}", u.instance),
                    None => u.instance.clone(),
                },
                reason: u.reason.clone(),
            });
        }
        for u in &c.unavailable {
            gaps.push(CostGap {
                label: cell_label.clone(),
                what: u.metric.clone(),
                reason: u.reason.clone(),
            });
        }
    }
    Some(CostingView {
        costs,
        prices,
        energy,
        gaps,
        missing_recommendations: missing_recommendations(stats, costs),
        idle_power: idle_power_label(&costs.selection, manifest),
    })
}
