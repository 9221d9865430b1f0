//! The scenario's workload on each recommended configuration, costed per month against owning the
//! fleet (`onprem:`) and per-token APIs (`api:`), cheapest first with a verdict on how clear the
//! ranking is ([`WorkloadTco`], [`TcoOption`]), and what the scenario lacks for these comparisons.

use serde::{Deserialize, Serialize};

use super::cell::{CellCost, Figure};
use super::recommend::Recommendation;
use super::selection::{CostSelection, Sourced};
use crate::catalog::Tier;
use crate::formulas::{self as f, Sizing, Workload};
use tcobench_results::{fmt_sig, CellStats};

/// One option of a [`WorkloadTco`] (self-hosting in the cloud, owning, an API) and its monthly
/// cost at the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcoOption {
    /// What it is (`cloud: aws/…`, `on-prem: scenario`, `API: provider/model`).
    pub option: String,
    /// Cost per month, $, with the interval the measured throughput and energy imply.
    pub usd_per_month: Figure,
    /// Where its price comes from, in words (catalog row or scenario input).
    pub source: String,
}

/// The scenario's workload on a recommended configuration, against owning and APIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadTco {
    /// Tier of the recommendation.
    pub tier: Tier,
    /// Model served.
    pub model: String,
    /// Recommended cell.
    pub cell_id: String,
    /// Its label.
    pub cell_label: String,
    /// The instance it is priced on.
    pub instance: String,
    /// The price of that instance under the tier, $/h.
    pub usd_per_hour: f64,
    /// Requests per day of the workload.
    pub requests_per_day: f64,
    /// Generated tokens per request.
    pub tokens_per_request: f64,
    /// The cloud fleet at the measured mean throughput.
    pub sizing: Sizing,
    /// Owning the same fleet (`None` without `onprem:` or without a power figure).
    pub onprem: Option<f::OnPremVsCloud>,
    /// The power of one owned system used, W, and where it came from.
    pub onprem_watts: Option<(f64, String)>,
    /// Per API: name and the comparison.
    pub apis: Vec<(String, f::ApiVsSelfHost)>,
    /// Requests per day the sized fleet can serve at the measured mean throughput and the
    /// workload's peak factor; an API break-even above it would need a larger fleet.
    #[serde(default)]
    pub fleet_capacity_requests_per_day: Option<f64>,
    /// Every option's monthly cost, cheapest first.
    pub options: Vec<TcoOption>,
    /// Which option is cheapest and whether the intervals make that clear, in words.
    pub verdict: String,
    /// Why an option could not be compared.
    pub notes: Vec<String>,
}

/// An interval of `f`, a point when it has none.
fn bounds(f: &Figure) -> [f64; 2] {
    f.ci95.unwrap_or([f.value, f.value])
}

/// Where a figure comes from, in words.
fn describe(s: &Sourced) -> String {
    match &s.reference {
        Some(r) => format!("{} row `{}`", r.file, r.key),
        None => "scenario input".into(),
    }
}

/// The workload on each recommendation, against owning (`onprem:`) and APIs (`api:`).
pub(super) fn workload_tco(
    cells: &[CellStats],
    costs: &[CellCost],
    recs: &[Recommendation],
    sel: &CostSelection,
) -> Vec<WorkloadTco> {
    let Some(w) = sel.workload else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in recs {
        let Some((cs, cc)) = cells
            .iter()
            .zip(costs)
            .find(|(c, _)| c.cell_id == r.cell_id)
        else {
            continue;
        };
        let Some(p) = cc
            .prices
            .iter()
            .find(|p| p.instance == r.instance && p.tier == r.tier)
        else {
            continue;
        };
        let Some(sizing) = p.workload else {
            continue;
        };
        let tokens_per_request = w
            .tokens_per_request
            .unwrap_or(f64::from(cs.config.new_tokens));
        let n_at = |t: f64| {
            f::size_workload(&Workload {
                requests_per_day: w.requests_per_day,
                tokens_per_request,
                peak_factor: w.peak_factor,
                capacity_tokens_per_s: t,
                price_usd_per_hour: p.usd_per_hour,
                watts: None,
                idle_watts: None,
                pue: sel.pue.value,
                grid_g_per_kwh: None,
                embodied_kg_and_lifetime_years: None,
            })
            .map(|s| s.instances as f64)
            .unwrap_or(f64::NAN)
        };
        // Fewer instances at the upper throughput bound, more at the lower.
        let [t_lo, t_hi] = bounds(&p.instance_tokens_per_s);
        let (n_lo, n_hi) = (n_at(t_hi), n_at(t_lo));
        let n = sizing.instances as f64;
        let month = |n: f64, usd_per_hour: f64| n * usd_per_hour * f::HOURS_PER_MONTH;
        let mut options = vec![TcoOption {
            option: format!("cloud: {} {}", p.instance, p.tier),
            usd_per_month: Figure {
                value: sizing.usd_per_month,
                ci95: p
                    .instance_tokens_per_s
                    .ci95
                    .map(|_| [month(n_lo, p.usd_per_hour), month(n_hi, p.usd_per_hour)]),
            },
            source: format!(
                "{} instances × {} $/h ({} row `{}`) × 730 h; instances from the measured throughput",
                sizing.instances, p.usd_per_hour, p.reference.file, p.reference.key
            ),
        }];
        let mut notes = Vec::new();
        let energy = cc.energy.as_ref();
        let replicas = f64::from(p.replicas);
        let mut onprem = None;
        let mut onprem_watts = None;
        if let Some(o) = &sel.onprem {
            let watts = match (&o.watts, energy) {
                (Some(wt), _) => Some((wt.value, None, describe(wt))),
                (None, Some(e)) => {
                    // An owned system draws power around the clock: busy power for the fleet's
                    // busy share U, idle power (`formulas::average_watts`) for the rest.
                    let u = sizing.utilization;
                    let idle = sel.idle_watts.map(|w| w * replicas);
                    let avg = |busy: f64| f::average_watts(busy, idle, u).unwrap_or(f64::NAN);
                    let source = f::IdlePowerSource::of(sel.idle_watts, sel.idle_watts_source);
                    Some((
                        avg(e.watts * replicas),
                        e.j_per_token.ci95.map(|[lo, hi]| {
                            [
                                avg(lo * e.watts / e.j_per_token.value * replicas),
                                avg(hi * e.watts / e.j_per_token.value * replicas),
                            ]
                        }),
                        format!(
                            "average at U = {} (busy {:.1} W measured{}: {} replica(s) × J/token × tokens/s; {})",
                            fmt_sig(u, 3),
                            e.watts * replicas,
                            if e.estimated { " (estimated)" } else { "" },
                            p.replicas,
                            match idle {
                                Some(w) => format!("idle {w:.1} W, {}", source.describe()),
                                None => source.describe().to_string(),
                            }
                        ),
                    ))
                }
                (None, None) => None,
            };
            match watts {
                None => notes.push(
                    "on-prem: no power figure (energy was not measured in this cell): add `onprem.watts`".into(),
                ),
                Some((wv, w_ci, w_src)) => {
                    let cost = |watts: f64| f::OnPremCost {
                        capex_usd: o.capex_usd.value,
                        residual_fraction: o.residual_fraction.value,
                        lifetime_years: o.lifetime_years.value,
                        watts,
                        pue: o.pue.value,
                        usd_per_kwh: o.usd_per_kwh.value,
                        maintenance_usd_per_hour: o.maintenance_usd_per_hour.value,
                    };
                    match f::compare_onprem(
                        &cost(wv),
                        p.instance_tokens_per_s.value,
                        sel.utilization,
                        n,
                        Some(p.usd_per_hour),
                        o.horizon_months,
                    ) {
                        Ok(cmp) => {
                            let hourly = |watts: f64| {
                                f::onprem_usd_per_hour(&cost(watts)).unwrap_or(f64::NAN)
                            };
                            let [w_lo, w_hi] = w_ci.unwrap_or([wv, wv]);
                            let ci = (p.instance_tokens_per_s.ci95.is_some() || w_ci.is_some())
                                .then(|| [month(n_lo, hourly(w_lo)), month(n_hi, hourly(w_hi))]);
                            options.push(TcoOption {
                                option: format!("on-prem: {}", o.name),
                                usd_per_month: Figure {
                                    value: cmp.usd_per_month,
                                    ci95: ci,
                                },
                                source: format!(
                                    "{} systems × {:.4} $/h (capex {} $ from {}, {} years from {}, residual {} from {}, maintenance {} $/h from {}, {:.1} W {}, PUE {} from {}, {} $/kWh from {}) × 730 h",
                                    sizing.instances,
                                    cmp.usd_per_hour,
                                    o.capex_usd.value,
                                    describe(&o.capex_usd),
                                    o.lifetime_years.value,
                                    describe(&o.lifetime_years),
                                    o.residual_fraction.value,
                                    describe(&o.residual_fraction),
                                    o.maintenance_usd_per_hour.value,
                                    describe(&o.maintenance_usd_per_hour),
                                    wv,
                                    w_src,
                                    o.pue.value,
                                    describe(&o.pue),
                                    o.usd_per_kwh.value,
                                    describe(&o.usd_per_kwh),
                                ),
                            });
                            onprem_watts = Some((wv, w_src));
                            onprem = Some(cmp);
                        }
                        Err(e) => notes.push(format!("on-prem not computed: {e}")),
                    }
                }
            }
        }
        let mut apis = Vec::new();
        for a in &sel.api {
            let input = a
                .input_tokens_per_request
                .unwrap_or(f64::from(cs.config.prompt_tokens));
            match f::compare_api(
                &a.pricing,
                input,
                tokens_per_request,
                a.cached_fraction,
                p.usd_per_hour,
                n,
                Some(w.requests_per_day),
            ) {
                Ok(cmp) => {
                    let m = cmp.usd_per_month.unwrap_or(f64::NAN);
                    options.push(TcoOption {
                        option: format!("API: {}", a.name),
                        usd_per_month: Figure {
                            value: m,
                            ci95: None,
                        },
                        source: format!(
                            "{} requests/day × {:.6} $/request ({} input + {} output tokens at {} / {} $ per 1M, {}) × 730/24 days",
                            w.requests_per_day,
                            cmp.usd_per_request,
                            input,
                            tokens_per_request,
                            a.pricing.input_usd_per_1m,
                            a.pricing.output_usd_per_1m,
                            a.reference
                                .as_ref()
                                .map(|r| format!("{} row `{}`", r.file, r.key))
                                .unwrap_or_else(|| "scenario input".into())
                        ),
                    });
                    apis.push((a.name.clone(), cmp));
                }
                Err(e) => notes.push(format!("API {} not computed: {e}", a.name)),
            }
        }
        options.sort_by(|a, b| a.usd_per_month.value.total_cmp(&b.usd_per_month.value));
        let verdict = tco_verdict(&options, w.requests_per_day);
        out.push(WorkloadTco {
            tier: r.tier,
            model: r.model.clone(),
            cell_id: r.cell_id.clone(),
            cell_label: r.cell_label.clone(),
            instance: r.instance.clone(),
            usd_per_hour: p.usd_per_hour,
            requests_per_day: w.requests_per_day,
            tokens_per_request,
            sizing,
            onprem,
            onprem_watts,
            apis,
            fleet_capacity_requests_per_day: (tokens_per_request > 0.0 && w.peak_factor > 0.0)
                .then(|| {
                    n * p.instance_tokens_per_s.value * 86_400.0
                        / (tokens_per_request * w.peak_factor)
                })
                .filter(|c| c.is_finite()),
            options,
            verdict,
            notes,
        });
    }
    out
}

/// Which option is cheapest, and whether its interval lies wholly below every other's.
fn tco_verdict(options: &[TcoOption], requests_per_day: f64) -> String {
    let Some(first) = options.first() else {
        return "nothing to compare".into();
    };
    let Some(second) = options.get(1) else {
        return format!(
            "only {} is priced; add `onprem:` or `api:` to compare",
            first.option
        );
    };
    let [_, first_hi] = bounds(&first.usd_per_month);
    let clear = options[1..]
        .iter()
        .all(|o| bounds(&o.usd_per_month)[0] > first_hi);
    format!(
        "At {} requests/day, {} is cheapest ({} $/month, next {} at {} $/month): {}",
        fmt_sig(requests_per_day, 4),
        first.option,
        fmt_sig(first.usd_per_month.value, 4),
        second.option,
        fmt_sig(second.usd_per_month.value, 4),
        if clear {
            "clear, its 95 % interval lies below every other option's"
        } else {
            "not settled by the measurements, the 95 % intervals overlap"
        }
    )
}

/// What to add to the scenario for the comparisons it lacks.
pub(super) fn tco_missing(sel: &CostSelection, recs: &[Recommendation]) -> Vec<String> {
    let mut out = Vec::new();
    if sel.workload.is_none() {
        out.push("a `workload:` section (`requests_per_day`, optionally `tokens_per_request` and `peak_factor`) to size a fleet and cost a month".into());
    }
    if recs.is_empty() {
        out.push(
            "a priced configuration meeting the SLO (`pricing.instances`, `slo`) to build on"
                .into(),
        );
    }
    if sel.onprem.is_none() {
        out.push("an `onprem:` section (`capex_usd`, `lifetime_years`, `usd_per_kwh` or `electricity: ZONE`, optionally `residual_fraction`, `maintenance_usd_per_hour`, `watts`, `pue`), or `onprem: {system: NAME}` from the catalog's onprem.csv, to compare renting with owning".into());
    }
    if sel.api.is_empty() {
        out.push("an `api:` list (`- catalog: PROVIDER/MODEL` from api_prices.csv, or `- {name: …, input_usd_per_1m: …, output_usd_per_1m: …}`) to compare self-hosting with a per-token API".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::catalog::Tier;
    use crate::costing::fixtures::{catalog, cell, close, host, spec, BASE};
    use crate::costing::{cost_run, CostSelection};

    #[test]
    fn workload_tco_against_onprem_and_api_hand_computed() {
        let cat = catalog();
        let yaml = format!(
            "{BASE}workload:\n  requests_per_day: 864000\n  peak_factor: 2\n\
             onprem:\n  capex_usd: 8760\n  lifetime_years: 1\n  maintenance_usd_per_hour: 0.025\n  usd_per_kwh: 0.25\n\
             api:\n  - name: x\n    input_usd_per_1m: 1\n    output_usd_per_1m: 2\n"
        );
        let sel = CostSelection::resolve(&spec(&yaml), &cat, None, None).unwrap();
        let c = cell("a", "cpu", 1, &[100.0; 3], &[2.0; 3], &[1.0; 3]);
        let costs = cost_run(&[c], &sel, &cat, &host());
        assert!(costs.tco_missing.is_empty(), "{:?}", costs.tco_missing);
        // One TCO per recommendation: on_demand (1 $/h) and spot (0.40 $/h) on the CPU instance.
        assert_eq!(costs.tco.len(), 2);
        let t = &costs.tco[0];
        assert_eq!(t.tier, Tier::OnDemand);
        // 864000 req/day × 10 tokens = 100 tokens/s, × 2 at peak over T = 100 → 2 instances.
        assert_eq!(t.sizing.instances, 2);
        let cloud = 2.0 * 1.0 * 730.0;
        // Owned: 8760 $ / (1 y · 8760 h) = 1 $/h; 200 W (2 J/token × 100 tokens/s) × PUE 1.5 ×
        // 0.25 $/kWh / 1000 = 0.075 $/h; + 0.025 $/h maintenance = 1.1 $/h.
        let o = t.onprem.unwrap();
        close(o.usd_per_hour, 1.1);
        close(o.usd_per_month, 2.0 * 1.1 * 730.0);
        // Payback: 2 · 8760 / (1460 − 2 · 0.1 · 730) = 17520 / 1314 months.
        close(o.break_even_months.unwrap(), 17_520.0 / 1314.0);
        // U* = 1.0 · 1.1 / 1.0: owning never matches the cloud's $/1M tokens.
        close(o.break_even_utilization.unwrap(), 1.1);
        // API: (8 input × 1 + 10 output × 2) / 1e6 = 2.8e-5 $/request;
        // 864000 × 2.8e-5 × 730 / 24 = 735.84 $/month; break-even 2 · 1 · 24 / 2.8e-5 req/day.
        let (name, a) = &t.apis[0];
        assert_eq!(name, "x");
        close(a.usd_per_request, 2.8e-5);
        close(a.usd_per_month.unwrap(), 735.84);
        close(a.break_even_requests_per_day, 48.0 / 2.8e-5);
        // The fleet serves 2 × 100 tokens/s × 86400 s / (10 tokens × peak 2) = 864000 req/day,
        // so the break-even of 1.71 M req/day lies beyond it (the report says so).
        close(t.fleet_capacity_requests_per_day.unwrap(), 864_000.0);
        assert!(a.break_even_requests_per_day > t.fleet_capacity_requests_per_day.unwrap());
        // Cheapest first; identical samples give point intervals, so the ranking is clear.
        let order: Vec<&str> = t.options.iter().map(|o| o.option.as_str()).collect();
        assert_eq!(
            order,
            [
                "API: x",
                "cloud: aws/c.cpu/us-east-1 on_demand",
                "on-prem: scenario"
            ]
        );
        close(t.options[1].usd_per_month.value, cloud);
        assert!(t.verdict.contains("API: x is cheapest"), "{}", t.verdict);
        assert!(t.verdict.contains("clear"), "{}", t.verdict);
        assert!(t.options[2].source.contains("scenario input"));

        // Without the sections, the report is told what to add instead of printing zeros.
        let sel = CostSelection::resolve(&spec(BASE), &cat, None, None).unwrap();
        let c = cell("a", "cpu", 1, &[100.0; 3], &[2.0; 3], &[1.0; 3]);
        let costs = cost_run(&[c], &sel, &cat, &host());
        assert!(costs.tco.is_empty());
        let missing = costs.tco_missing.join("\n");
        for key in ["`workload:`", "`onprem:`", "`api:`"] {
            assert!(missing.contains(key), "{missing}");
        }
    }
}
