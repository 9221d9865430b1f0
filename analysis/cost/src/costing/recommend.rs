//! The run-level choices: the cheapest configuration per tier and model meeting the SLO, with
//! how clearly it beats the runner-up ([`Recommendation`]), and per configuration the batch size
//! beyond which $/1M tokens no longer clearly improves ([`BatchSaturation`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cell::{CellCost, Figure, PriceFigures};
use super::selection::CostSelection;
use crate::catalog::Tier;
use tcobench_results::CellStats;

/// The cheapest configuration of a tier meeting the SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Tier.
    pub tier: Tier,
    /// The model served: configurations are only ranked against others serving the same model.
    pub model: String,
    /// Winning cell.
    pub cell_id: String,
    /// Its readable label.
    pub cell_label: String,
    /// Instance it is priced on.
    pub instance: String,
    /// $/1M tokens.
    pub usd_per_1m_tokens: Figure,
    /// J per generated token (when measured).
    pub j_per_token: Option<Figure>,
    /// gCO2e per 1M tokens (when energy and grid are known).
    pub gco2e_per_1m_tokens: Option<Figure>,
    /// The runner-up: cell label, instance and $/1M tokens.
    pub runner_up: Option<(String, String, Figure)>,
    /// How sure we are, in one sentence.
    pub confidence: String,
    /// Candidates considered (priced and meeting the SLO).
    pub candidates: usize,
}

/// Where a larger batch stops lowering $/1M tokens, for one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSaturation {
    /// The configuration (everything but the batch size).
    pub configuration: String,
    /// Batch sizes measured, ascending, with the tokens/s figure of each.
    pub batches: Vec<(u32, Figure)>,
    /// The batch size beyond which $/1M tokens no longer clearly improves.
    pub saturates_at: u32,
    /// The evidence, in one sentence.
    pub evidence: String,
}

/// Whether the 95 % intervals of `a` and `b` overlap (true when either has none).
fn overlaps(a: Figure, b: Figure) -> bool {
    match (a.ci95, b.ci95) {
        (Some([alo, ahi]), Some([blo, bhi])) => alo <= bhi && blo <= ahi,
        _ => true,
    }
}

/// Per tier and model, the cheapest priced configuration meeting the SLO.
pub(super) fn recommendations(
    cells: &[CellStats],
    costs: &[CellCost],
    sel: &CostSelection,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    // A cheaper way to serve a *different* model is no recommendation: rank within each model.
    let mut models: Vec<&str> = Vec::new();
    for c in cells {
        if !models.contains(&c.config.model.as_str()) {
            models.push(&c.config.model);
        }
    }
    for &tier in &sel.tiers {
        for &model in &models {
            // (cell, price) pairs of this tier whose cell meets the SLO (or no SLO is set).
            let mut candidates: Vec<(&CellStats, &CellCost, &PriceFigures)> = cells
                .iter()
                .zip(costs)
                .filter(|(cs, _)| cs.config.model == model)
                .filter(|(_, c)| sel.slo.is_none() || c.slo.is_some_and(|s| s.met))
                .flat_map(|(cs, c)| {
                    c.prices
                        .iter()
                        .filter(move |p| p.tier == tier)
                        .map(move |p| (cs, c, p))
                })
                .filter(|(_, _, p)| p.usd_per_1m_tokens.value.is_finite())
                .collect();
            candidates.sort_by(|a, b| {
                a.2.usd_per_1m_tokens
                    .value
                    .total_cmp(&b.2.usd_per_1m_tokens.value)
            });
            let Some(&(cs, c, p)) = candidates.first() else {
                continue;
            };
            // The runner-up is the best *other configuration*: the same cell on a dearer instance
            // differs only by a known price ratio, not by anything measured.
            let runner = candidates
                .iter()
                .find(|(c2, _, _)| c2.cell_id != cs.cell_id);
            let confidence = match runner {
            None => "the only configuration priced (and meeting the SLO) in this tier".to_string(),
            Some((rc, _, rp)) if !overlaps(p.usd_per_1m_tokens, rp.usd_per_1m_tokens) => format!(
                "clearly cheaper than the runner-up ({} on {}): the 95 % intervals of $/1M tokens do not overlap",
                rc.label(),
                rp.instance
            ),
            Some((rc, _, rp)) => format!(
                "not distinguishable from the runner-up ({} on {}, {:.4} $/1M): the 95 % intervals overlap, so either is a defensible choice",
                rc.label(),
                rp.instance,
                rp.usd_per_1m_tokens.value
            ),
        };
            out.push(Recommendation {
                tier,
                model: model.to_string(),
                cell_id: cs.cell_id.clone(),
                cell_label: cs.label(),
                instance: p.instance.clone(),
                usd_per_1m_tokens: p.usd_per_1m_tokens,
                j_per_token: c.energy.as_ref().map(|e| e.j_per_token),
                gco2e_per_1m_tokens: c.energy.as_ref().and_then(|e| e.gco2e_per_1m_tokens),
                runner_up: runner
                    .map(|(rc, _, rp)| (rc.label(), rp.instance.clone(), rp.usd_per_1m_tokens)),
                confidence,
                candidates: candidates.len(),
            });
        }
    }
    out
}

/// Per configuration measured at several batch sizes, where $/1M tokens stops improving.
pub(super) fn batch_saturation(cells: &[CellStats], costs: &[CellCost]) -> Vec<BatchSaturation> {
    let mut groups: BTreeMap<String, Vec<(u32, Figure)>> = BTreeMap::new();
    for (cs, c) in cells.iter().zip(costs) {
        if let Some(t) = c.tokens_per_s {
            let key = format!(
                "{} {} {} {} p{} n{}",
                cs.config.backend,
                cs.config.model,
                cs.config.dtype,
                cs.config.device,
                cs.config.prompt_tokens,
                cs.config.new_tokens
            );
            groups
                .entry(key)
                .or_default()
                .push((cs.config.batch_size, t));
        }
    }
    let mut out = Vec::new();
    for (configuration, mut batches) in groups {
        if batches.len() < 2 {
            continue;
        }
        batches.sort_by_key(|(b, _)| *b);
        // $/1M ∝ 1/T at a fixed price, so a larger batch clearly lowers it exactly when its
        // throughput interval lies wholly above the smaller batch's.
        let mut at = batches.len() - 1;
        for i in 0..batches.len() - 1 {
            let lo_t = batches[i].1;
            let (_, hi_t) = batches[i + 1];
            let clearly = match (lo_t.ci95, hi_t.ci95) {
                (Some([_, a_hi]), Some([b_lo, _])) => b_lo > a_hi,
                _ => hi_t.value > lo_t.value,
            };
            if !clearly {
                at = i;
                break;
            }
        }
        let saturates_at = batches[at].0;
        let evidence = if at + 1 == batches.len() {
            format!(
                "every larger batch up to {saturates_at} raised throughput beyond its 95 % interval; $/1M tokens may keep falling at larger batches than measured"
            )
        } else {
            let (next_b, next_t) = batches[at + 1];
            let t = batches[at].1;
            format!(
                "batch {next_b} ({:.4} tokens/s, 95 % CI {}) does not lie clearly above batch {saturates_at} ({:.4} tokens/s, 95 % CI {}), so $/1M tokens stops improving at {saturates_at}",
                next_t.value,
                fmt_ci(next_t.ci95),
                t.value,
                fmt_ci(t.ci95)
            )
        };
        out.push(BatchSaturation {
            configuration,
            batches,
            saturates_at,
            evidence,
        });
    }
    out
}

fn fmt_ci(ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("[{lo:.4}, {hi:.4}]"),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Tier;
    use crate::costing::fixtures::{catalog, cell, host, spec, BASE};
    use crate::costing::{cost_run, CostSelection};
    use tcobench_results::spec::RawSlo;

    #[test]
    fn recommendation_respects_the_slo_and_states_confidence() {
        let cat = catalog();
        let mut s = spec(BASE);
        s.slo = Some(RawSlo {
            metric: Some("e2e_ms".into()),
            percentile: Some(95),
            max_ms: Some(100.0),
        });
        let sel = CostSelection::resolve(&s, &cat, None, None).unwrap();
        // Fast but too slow per request (p95 e2e 500 ms), and two that meet the SLO.
        let fast = cell(
            "fast",
            "cpu",
            8,
            &[900.0, 910.0, 890.0],
            &[1.0; 3],
            &[500.0; 3],
        );
        let mid = cell(
            "mid",
            "cpu",
            2,
            &[200.0, 210.0, 190.0],
            &[1.0; 3],
            &[50.0; 3],
        );
        let slow = cell(
            "slow",
            "cpu",
            1,
            &[100.0, 101.0, 99.0],
            &[1.0; 3],
            &[40.0; 3],
        );
        let st = vec![fast, mid, slow];
        let costs = cost_run(&st, &sel, &cat, &host());
        let od = costs
            .recommendations
            .iter()
            .find(|r| r.tier == Tier::OnDemand)
            .unwrap();
        assert_eq!(od.cell_id, "mid");
        assert_eq!(od.model, "tiny");
        assert_eq!(od.candidates, 2);
        assert!(
            od.confidence.contains("clearly cheaper"),
            "{}",
            od.confidence
        );
        assert!(!costs.cells[0].slo.unwrap().met);
        // The fast cell is not sized for the workload-free selection and not recommended.
        assert!(costs.recommendations.iter().all(|r| r.cell_id != "fast"));
    }

    #[test]
    fn batch_saturation_stops_where_intervals_overlap() {
        let cat = catalog();
        let sel = CostSelection::resolve(&spec(BASE), &cat, None, None).unwrap();
        let st = vec![
            cell("b1", "cpu", 1, &[10.0, 11.0, 12.0], &[], &[1.0; 3]),
            cell("b2", "cpu", 2, &[20.0, 21.0, 22.0], &[], &[1.0; 3]),
            cell("b4", "cpu", 4, &[21.0, 22.0, 23.0], &[], &[1.0; 3]),
        ];
        let costs = cost_run(&st, &sel, &cat, &host());
        assert_eq!(costs.batch_saturation.len(), 1);
        assert_eq!(costs.batch_saturation[0].saturates_at, 2);
        assert!(costs.batch_saturation[0].evidence.contains("batch 4"));
    }
}
