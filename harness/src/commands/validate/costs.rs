//! The checks on a run's cost figures (`stats.json` → `costing`): tier prices in the ratio of
//! their $/h and in the expected order, $/1M tokens × tokens per $ = 10⁶, and every price, PUE
//! and grid intensity naming its catalog row.

use std::collections::BTreeMap;

use tcobench_cost::catalog::Tier;
use tcobench_cost::costing::{PriceFigures, RunCosts};
use tcobench_cost::Catalog;

use super::{at_most, rel_diff, sig, Checks, REL_TOL};

fn price_values(p: &PriceFigures) -> Vec<(&'static str, f64)> {
    vec![
        ("usd_per_hour", p.usd_per_hour),
        ("usd_per_1m_tokens", p.usd_per_1m_tokens.value),
        ("tokens_per_usd", p.tokens_per_usd.value),
    ]
}

pub(super) fn check_costs(c: &mut Checks, costs: &RunCosts, catalog: Option<&Catalog>) {
    let same_catalog = catalog.filter(|cat| cat.identity.sha256 == costs.selection.catalog.sha256);
    if catalog.is_some() && same_catalog.is_none() {
        c.note(format!(
            "the catalog differs from the one the run was priced with (catalog {}): price rows are not cross-checked",
            costs.selection.catalog.version
        ));
    }
    for (what, sourced) in [
        ("pue", Some(&costs.selection.pue)),
        ("grid", costs.selection.grid.as_ref()),
    ] {
        let Some(s) = sourced else { continue };
        let missing = s.origin == "catalog"
            && s.reference
                .as_ref()
                .is_none_or(|r| r.file.is_empty() || r.key.is_empty());
        c.check(
            "catalog_reference",
            None,
            &[(what, s.value)],
            missing.then(|| {
                format!(
                    "the selection's {what} ({}) comes from the catalog but names no row",
                    sig(s.value)
                )
            }),
        );
    }
    for cell in &costs.cells {
        let id = Some(cell.cell_id.as_str());
        for p in &cell.prices {
            let label = format!("{} {}", p.instance, p.tier);
            let r = &p.reference;
            let problem = if r.file.trim().is_empty() || r.key.trim().is_empty() {
                Some(format!(
                    "{label}: {} $/h names no catalog row (file `{}`, key `{}`)",
                    sig(p.usd_per_hour),
                    r.file,
                    r.key
                ))
            } else if let Some(cat) = same_catalog {
                match cat.prices.iter().find(|row| row.key() == r.key) {
                    None => Some(format!(
                        "{label}: row `{}` of {} is not in catalog {}",
                        r.key, r.file, cat.identity.version
                    )),
                    Some(row) if rel_diff(row.usd_per_hour, p.usd_per_hour) > REL_TOL => {
                        Some(format!(
                            "{label}: {} $/h, but row `{}` of {} says {} $/h",
                            sig(p.usd_per_hour),
                            r.key,
                            r.file,
                            sig(row.usd_per_hour)
                        ))
                    }
                    Some(_) => None,
                }
            } else {
                None
            };
            c.check("catalog_reference", id, &price_values(p), problem);

            let product = p.usd_per_1m_tokens.value * p.tokens_per_usd.value;
            c.check(
                "tokens_per_usd",
                id,
                &price_values(p),
                (!at_most(rel_diff(product, 1e6), REL_TOL)).then(|| {
                    format!(
                        "{label}: $/1M tokens × tokens per $ = {} × {} = {}, not 10⁶",
                        sig(p.usd_per_1m_tokens.value),
                        sig(p.tokens_per_usd.value),
                        sig(product)
                    )
                }),
            );
        }

        let mut by_instance: BTreeMap<&str, Vec<&PriceFigures>> = BTreeMap::new();
        for p in &cell.prices {
            by_instance.entry(p.instance.as_str()).or_default().push(p);
        }
        for (instance, prices) in by_instance {
            let Some(first) = prices.first() else {
                continue;
            };
            for p in prices.iter().skip(1) {
                let cost_ratio = p.usd_per_1m_tokens.value / first.usd_per_1m_tokens.value;
                let price_ratio = p.usd_per_hour / first.usd_per_hour;
                c.check(
                    "tier_price_ratio",
                    id,
                    &[
                        ("usd_per_1m_tokens_a", first.usd_per_1m_tokens.value),
                        ("usd_per_1m_tokens_b", p.usd_per_1m_tokens.value),
                        ("usd_per_hour_a", first.usd_per_hour),
                        ("usd_per_hour_b", p.usd_per_hour),
                    ],
                    (!at_most(rel_diff(cost_ratio, price_ratio), REL_TOL)).then(|| {
                        format!(
                            "{instance}: $/1M tokens {} / {} = {} ({} / {}), but the prices are in the ratio {} ({} / {} $/h)",
                            p.tier,
                            first.tier,
                            sig(cost_ratio),
                            sig(p.usd_per_1m_tokens.value),
                            sig(first.usd_per_1m_tokens.value),
                            sig(price_ratio),
                            sig(p.usd_per_hour),
                            sig(first.usd_per_hour)
                        )
                    }),
                );
            }
            let of = |tier: Tier| prices.iter().find(|p| p.tier == tier).copied();
            let pairs = [
                (Tier::Spot, Tier::OnDemand),
                (Tier::Reserved1y, Tier::OnDemand),
                (Tier::Reserved3y, Tier::Reserved1y),
                (Tier::Reserved3y, Tier::OnDemand),
            ];
            for (cheap, dear) in pairs {
                let (Some(a), Some(b)) = (of(cheap), of(dear)) else {
                    continue;
                };
                let flagged = cheap == Tier::Spot
                    && catalog.is_some_and(|cat| {
                        cat.prices
                            .iter()
                            .any(|row| row.key() == a.reference.key && row.spot_above_on_demand_ok)
                    });
                let (x, y) = (a.usd_per_1m_tokens.value, b.usd_per_1m_tokens.value);
                c.check(
                    "tier_order",
                    id,
                    &[("usd_per_1m_tokens_cheaper", x), ("usd_per_1m_tokens_dearer", y)],
                    (x > y * (1.0 + REL_TOL) && !flagged).then(|| {
                        format!(
                            "{instance}: {cheap} costs {} $/1M tokens, more than {dear} at {} (the catalog does not flag it)",
                            sig(x),
                            sig(y)
                        )
                    }),
                );
            }
        }
    }
}
