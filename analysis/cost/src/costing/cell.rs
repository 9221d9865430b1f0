//! The figures of one measured cell under a selection ([`cost_cell`]): $/1M tokens and tokens
//! per $ on each instance and tier ([`PriceFigures`], or [`Unpriced`] with the reason), energy
//! and carbon per 1M tokens ([`EnergyFigures`]), the SLO check ([`SloCheck`]), and the workload
//! sized on each instance; [`Figure`] carries each estimate with its 95 % interval.

use serde::{Deserialize, Serialize};

use super::selection::{CostSelection, SloMetric};
use crate::catalog::{Catalog, CatalogRef, Instance, Tier};
use crate::formulas::{self as f, Sizing, Workload};
use tcobench_results::{CellStats, Metric};
use tcobench_stats::descriptive::Descriptives;

/// A point estimate with its 95 % interval when one exists.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Point estimate.
    pub value: f64,
    /// 95 % interval (low, high).
    pub ci95: Option<[f64; 2]>,
}

impl Figure {
    /// Maps the estimate and interval through a monotone function (decreasing ones swap ends).
    fn map(self, g: impl Fn(f64) -> f64) -> Figure {
        Figure {
            value: g(self.value),
            ci95: self.ci95.map(|[lo, hi]| {
                let (a, b) = (g(lo), g(hi));
                if a <= b {
                    [a, b]
                } else {
                    [b, a]
                }
            }),
        }
    }

    fn from_mean(d: &Descriptives) -> Figure {
        Figure {
            value: d.mean,
            ci95: d
                .ci95_mean
                .filter(|[lo, hi]| lo.is_finite() && hi.is_finite()),
        }
    }
}

/// Cost of one cell on one instance under one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceFigures {
    /// `provider/type/region`.
    pub instance: String,
    /// Tier.
    pub tier: Tier,
    /// Price, $/h (from `reference`).
    pub usd_per_hour: f64,
    /// Model replicas per instance (one per accelerator; one on a CPU-only instance).
    pub replicas: u32,
    /// Throughput of the whole instance: replicas × the cell's measured tokens/s.
    pub instance_tokens_per_s: Figure,
    /// $/1M generated tokens at the selection's utilisation.
    pub usd_per_1m_tokens: Figure,
    /// Generated tokens per $.
    pub tokens_per_usd: Figure,
    /// The price row.
    pub reference: CatalogRef,
    /// The workload sized on this instance (when a workload is selected and the cell meets
    /// the SLO).
    pub workload: Option<Sizing>,
}

/// A price that could not be computed, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unpriced {
    /// `provider/type/region`.
    pub instance: String,
    /// Tier (`None`: the instance does not fit the cell at all).
    pub tier: Option<Tier>,
    /// Why.
    pub reason: String,
}

/// Energy and carbon of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyFigures {
    /// How the energy was obtained (`rapl`, `nvml-energy`, `estimated-cpu`…).
    pub method: String,
    /// Whether the energy is a model estimate rather than a measurement.
    pub estimated: bool,
    /// Energy per generated token, J (measured, mean over timed repetitions).
    pub j_per_token: Figure,
    /// Implied average power, W = J/token × tokens/s.
    pub watts: f64,
    /// PUE applied.
    pub pue: f64,
    /// Facility energy per 1M generated tokens, kWh (busy energy, plus idle power for the
    /// 1 − U share when `energy.idle_watts` is given).
    pub kwh_per_1m_tokens: Figure,
    /// Grid intensity applied, gCO2e/kWh.
    pub grid_g_per_kwh: Option<f64>,
    /// Emissions per 1M generated tokens, gCO2e (operational + embodied share).
    pub gco2e_per_1m_tokens: Option<Figure>,
    /// The embodied share inside `gco2e_per_1m_tokens`, gCO2e per 1M tokens.
    pub embodied_gco2e_per_1m_tokens: Option<f64>,
}

/// Whether a cell meets the selection's SLO.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// The cell's value of the SLO percentile, ms.
    pub value_ms: f64,
    /// The limit, ms.
    pub max_ms: f64,
    /// Whether `value_ms ≤ max_ms`.
    pub met: bool,
    /// Timed requests behind the percentile.
    pub n: usize,
}

/// Cost, energy and carbon of one cell under one selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellCost {
    /// Cell id.
    pub cell_id: String,
    /// Measured generated tokens/s of one replica (mean, t CI).
    pub tokens_per_s: Option<Figure>,
    /// Prices per instance and tier.
    pub prices: Vec<PriceFigures>,
    /// Prices that could not be computed.
    pub unpriced: Vec<Unpriced>,
    /// Energy and carbon (`None`: see `unavailable`).
    pub energy: Option<EnergyFigures>,
    /// The SLO check, when an SLO is selected and the latency was measured.
    pub slo: Option<SloCheck>,
    /// Figures that could not be computed, with the reason.
    pub unavailable: Vec<tcobench_results::Unavailable>,
}

fn unavailable(metric: &str, reason: impl Into<String>) -> tcobench_results::Unavailable {
    tcobench_results::Unavailable {
        metric: metric.into(),
        reason: reason.into(),
    }
}

/// Why `cell` has no `metric`, as its statistics say; `otherwise` when they do not say.
fn unavailable_reason(cell: &CellStats, metric: &str, otherwise: &str) -> String {
    cell.unavailable
        .iter()
        .find(|u| u.metric == metric)
        .map_or_else(|| otherwise.into(), |u| u.reason.clone())
}

fn is_cpu(device: &str) -> bool {
    device == "cpu"
}

/// The name an instance is reported by (`provider/type/region`).
pub(super) fn instance_name(i: &Instance) -> String {
    i.key()
}

/// Replicas of a cell's configuration that fit an instance, or why none do.
pub(super) fn replicas(cell: &CellStats, instance: &Instance) -> Result<u32, String> {
    let has_accel = instance.accelerator.is_some() && instance.accelerator_count > 0;
    match (is_cpu(&cell.config.device), has_accel) {
        (true, false) => Ok(1),
        (false, true) => Ok(instance.accelerator_count),
        (true, true) => Err(format!(
            "a CPU cell is not priced on a GPU instance ({} × {})",
            instance.accelerator_count,
            instance.accelerator.as_deref().unwrap_or("?")
        )),
        (false, false) => Err(format!(
            "a {} cell needs an instance with an accelerator",
            cell.config.device
        )),
    }
}

/// Energy and carbon of a cell whose throughput is `t`, or `None` with the reasons in
/// `unavail`.
fn energy_figures(
    cell: &CellStats,
    t: Figure,
    sel: &CostSelection,
    unavail: &mut Vec<tcobench_results::Unavailable>,
) -> Option<EnergyFigures> {
    let method = cell.energy_method.clone().unwrap_or_else(|| "none".into());
    let Some(jpt) = cell.metric(Metric::EnergyJPerToken) else {
        let why = unavailable_reason(cell, "energy_j_per_token", "energy per token not measured");
        unavail.push(unavailable("kwh_per_1m_tokens", why.clone()));
        unavail.push(unavailable("gco2e_per_1m_tokens", why));
        return None;
    };
    let j = Figure::from_mean(jpt);
    if j.value.is_nan() || j.value <= 0.0 {
        unavail.push(unavailable(
            "kwh_per_1m_tokens",
            format!("mean energy per token is {} J, not positive", j.value),
        ));
        return None;
    }
    let watts = j.value * t.value;
    let pue = sel.pue.value;
    // kWh/1M = PUE · (J/token · 10⁶ + W_idle · 10⁶ · (1 − U)/(T · U)) / 3.6e6: the formula of
    // `kwh_per_1m_tokens` with W = J/token · T, written in J/token so the CI maps linearly.
    let kwh_of = |jpt: f64| {
        f::kwh_per_1m_tokens(jpt * t.value, pue, t.value, sel.utilization, sel.idle_watts)
            .unwrap_or(f64::NAN)
    };
    let kwh = j.map(kwh_of);
    let embodied = sel.embodied.and_then(|(kg, years)| {
        f::embodied_gco2e_per_1m_tokens(kg, years, t.value, sel.utilization).ok()
    });
    let gco2e = match &sel.grid {
        Some(g) => Some(kwh.map(|k| k * g.value + embodied.unwrap_or(0.0))),
        None => {
            unavail.push(unavailable(
                "gco2e_per_1m_tokens",
                "no grid intensity selected (energy.grid)",
            ));
            None
        }
    };
    Some(EnergyFigures {
        estimated: method.contains("estimate"),
        method,
        j_per_token: j,
        watts,
        pue,
        kwh_per_1m_tokens: kwh,
        grid_g_per_kwh: sel.grid.as_ref().map(|g| g.value),
        gco2e_per_1m_tokens: gco2e,
        embodied_gco2e_per_1m_tokens: embodied,
    })
}

/// Costs one cell under `sel`.
pub fn cost_cell(cell: &CellStats, sel: &CostSelection, catalog: &Catalog) -> CellCost {
    let mut unavail = Vec::new();
    let t = cell.metric(Metric::TokensPerS).map(Figure::from_mean);
    let slo = sel.slo.and_then(|s| {
        let metric = match s.metric {
            SloMetric::E2eMs => Metric::E2eMs,
            SloMetric::TtftMs => Metric::TtftMs,
            SloMetric::TpotMs => Metric::TpotMs,
        };
        match cell.metric(metric) {
            Some(d) => {
                let v = s.value(d);
                Some(SloCheck {
                    value_ms: v,
                    max_ms: s.max_ms,
                    met: v <= s.max_ms,
                    n: d.n,
                })
            }
            None => {
                unavail.push(unavailable(
                    "slo",
                    format!("{} not measured in this cell", s.metric.name()),
                ));
                None
            }
        }
    });
    let mut prices = Vec::new();
    let mut unpriced = Vec::new();
    let energy = match t {
        Some(t) if t.value > 0.0 => energy_figures(cell, t, sel, &mut unavail),
        _ => None,
    };
    match t {
        Some(t) if t.value > 0.0 => {
            for si in &sel.instances {
                let name = instance_name(&si.instance);
                let n = match replicas(cell, &si.instance) {
                    Ok(n) => n,
                    Err(reason) => {
                        unpriced.push(Unpriced {
                            instance: name,
                            tier: None,
                            reason,
                        });
                        continue;
                    }
                };
                let t_inst = t.map(|x| x * f64::from(n));
                for &tier in &sel.tiers {
                    let Some(row) = catalog.price_row(&si.instance, tier) else {
                        unpriced.push(Unpriced {
                            instance: name.clone(),
                            tier: Some(tier),
                            reason: format!(
                                "catalog {} has no {tier} price for {name}",
                                catalog.identity.version
                            ),
                        });
                        continue;
                    };
                    let p = row.usd_per_hour;
                    let usd = t_inst
                        .map(|x| f::usd_per_1m_tokens(p, x, sel.utilization).unwrap_or(f64::NAN));
                    let per_usd = t_inst
                        .map(|x| f::tokens_per_usd(p, x, sel.utilization).unwrap_or(f64::NAN));
                    let workload = match (sel.workload, slo) {
                        (Some(_), Some(c)) if !c.met => None,
                        (Some(w), _) => f::size_workload(&Workload {
                            requests_per_day: w.requests_per_day,
                            tokens_per_request: w
                                .tokens_per_request
                                .unwrap_or(f64::from(cell.config.new_tokens)),
                            peak_factor: w.peak_factor,
                            capacity_tokens_per_s: t_inst.value,
                            price_usd_per_hour: p,
                            watts: energy.as_ref().map(|e| e.watts * f64::from(n)),
                            idle_watts: sel.idle_watts.map(|w| w * f64::from(n)),
                            pue: sel.pue.value,
                            grid_g_per_kwh: sel.grid.as_ref().map(|g| g.value),
                            // Embodied figures are per replica; an instance holds `n`.
                            embodied_kg_and_lifetime_years: sel
                                .embodied
                                .map(|(kg, years)| (kg * f64::from(n), years)),
                        })
                        .ok(),
                        (None, _) => None,
                    };
                    prices.push(PriceFigures {
                        instance: name.clone(),
                        tier,
                        usd_per_hour: p,
                        replicas: n,
                        instance_tokens_per_s: t_inst,
                        usd_per_1m_tokens: usd,
                        tokens_per_usd: per_usd,
                        reference: catalog.reference(
                            &row.origin,
                            row.key(),
                            row.retrieved,
                            &row.source,
                        ),
                        workload,
                    });
                }
            }
            if sel.workload.is_some() && slo.is_some_and(|c| !c.met) {
                unavail.push(unavailable(
                    "workload",
                    "not sized: the cell misses the latency SLO",
                ));
            }
        }
        _ => {
            let why = unavailable_reason(cell, "tokens_per_s", "no positive measured throughput");
            unavail.push(unavailable("usd_per_1m_tokens", why));
        }
    }
    CellCost {
        cell_id: cell.cell_id.clone(),
        tokens_per_s: t,
        prices,
        unpriced,
        energy,
        slo,
        unavailable: unavail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::costing::fixtures::{catalog, cell, close, spec, BASE, T_975_DF2};
    use tcobench_results::spec::RawWorkload;

    #[test]
    fn cpu_cell_hand_computed() {
        let cat = catalog();
        let sel = CostSelection::resolve(&spec(BASE), &cat, None, None).unwrap();
        assert_eq!(sel.pue.value, 1.5);
        assert_eq!(sel.pue.reference.as_ref().unwrap().key, "p15");
        let c = cell(
            "a",
            "cpu",
            1,
            &[100.0, 110.0, 90.0],
            &[2.0, 2.0, 2.0],
            &[10.0, 11.0, 12.0],
        );
        let cost = cost_cell(&c, &sel, &cat);
        // The GPU instance does not fit a CPU cell.
        assert_eq!(cost.unpriced.len(), 1);
        assert_eq!(cost.unpriced[0].tier, None);
        assert_eq!(cost.prices.len(), 2);
        let od = &cost.prices[0];
        assert_eq!(od.tier, Tier::OnDemand);
        assert_eq!(od.reference.file, "prices.csv");
        assert_eq!(od.reference.key, "aws/c.cpu/us-east-1/on_demand");
        // $/1M = 1.0 · 10⁶ / (3600 · 100 · 1).
        close(od.usd_per_1m_tokens.value, 1e6 / 360_000.0);
        // sd = 10, CI of T = 100 ± t · 10/√3, mapped through 1/T (ends swap).
        let h = T_975_DF2 * 10.0 / 3f64.sqrt();
        let [lo, hi] = od.usd_per_1m_tokens.ci95.unwrap();
        close(lo, 1e6 / (3600.0 * (100.0 + h)));
        close(hi, 1e6 / (3600.0 * (100.0 - h)));
        close(od.tokens_per_usd.value, 360_000.0);
        close(od.usd_per_1m_tokens.value * od.tokens_per_usd.value, 1e6);
        let spot = &cost.prices[1];
        close(spot.usd_per_1m_tokens.value, 0.4e6 / 360_000.0);
        // kWh/1M = 2 J · 10⁶ · 1.5 / 3.6e6; gCO2e = kWh · 400.
        let e = cost.energy.unwrap();
        close(e.watts, 200.0);
        close(e.kwh_per_1m_tokens.value, 2.0 * 1e6 * 1.5 / 3.6e6);
        close(
            e.gco2e_per_1m_tokens.unwrap().value,
            2.0 * 1e6 * 1.5 / 3.6e6 * 400.0,
        );
    }

    #[test]
    fn utilisation_and_idle_power() {
        let cat = catalog();
        let mut s = spec(BASE);
        s.pricing.as_mut().unwrap().utilization = Some(0.5);
        s.energy.as_mut().unwrap().idle_watts = Some(50.0);
        let sel2 = CostSelection::resolve(&s, &cat, None, None).unwrap();
        let c = cell(
            "a",
            "cpu",
            1,
            &[100.0, 100.0, 100.0],
            &[2.0, 2.0, 2.0],
            &[1.0, 1.0, 1.0],
        );
        let cost = cost_cell(&c, &sel2, &cat);
        close(
            cost.prices[0].usd_per_1m_tokens.value,
            1e6 / (3600.0 * 100.0 * 0.5),
        );
        // PUE · (2 J · 10⁶ + 50 W · 10⁶ · 0.5 / (100 · 0.5)) / 3.6e6 = 1.5 · 2.5e6 / 3.6e6.
        close(
            cost.energy.unwrap().kwh_per_1m_tokens.value,
            1.5 * 2.5e6 / 3.6e6,
        );
    }

    #[test]
    fn gpu_instance_counts_one_replica_per_accelerator() {
        let cat = catalog();
        let sel = CostSelection::resolve(&spec(BASE), &cat, None, None).unwrap();
        let c = cell("g", "cuda:0", 1, &[50.0, 50.0, 50.0], &[], &[1.0, 1.0, 1.0]);
        let cost = cost_cell(&c, &sel, &cat);
        assert_eq!(cost.prices.len(), 1, "{:?}", cost.unpriced);
        let p = &cost.prices[0];
        assert_eq!(p.replicas, 8);
        close(p.instance_tokens_per_s.value, 400.0);
        close(p.usd_per_1m_tokens.value, 16.0 * 1e6 / (3600.0 * 400.0));
        // The CPU instance does not fit, spot has no row: both say why.
        assert!(cost
            .unpriced
            .iter()
            .any(|u| u.reason.contains("accelerator")));
        assert!(cost
            .unpriced
            .iter()
            .any(|u| u.tier == Some(Tier::Spot) && u.reason.contains("no spot price")));
        // No energy measured: labelled, not zero.
        assert!(cost.energy.is_none());
        assert!(cost
            .unavailable
            .iter()
            .any(|u| u.metric == "kwh_per_1m_tokens"));
    }

    #[test]
    fn workload_sizing_uses_the_instance_capacity() {
        let cat = catalog();
        let mut s = spec(BASE);
        s.workload = Some(RawWorkload {
            requests_per_day: Some(864_000.0),
            tokens_per_request: None,
            peak_factor: Some(2.0),
        });
        let sel = CostSelection::resolve(&s, &cat, None, None).unwrap();
        let c = cell(
            "a",
            "cpu",
            1,
            &[100.0, 100.0, 100.0],
            &[2.0, 2.0, 2.0],
            &[1.0, 1.0, 1.0],
        );
        let w = cost_cell(&c, &sel, &cat).prices[0].workload.unwrap();
        // 864 000 req/day × 10 tokens = 100 tokens/s average, 200 at peak → 2 instances, U = 0.5.
        close(w.avg_tokens_per_s, 100.0);
        assert_eq!(w.instances, 2);
        close(w.utilization, 0.5);
        close(w.usd_per_month, 2.0 * 1.0 * 730.0);
        // Busy 200 W, idle draws the busy power when not given: 2 · 200 · 1.5 · 730 / 1000 kWh.
        close(w.kwh_per_month.unwrap(), 2.0 * 200.0 * 1.5 * 730.0 / 1000.0);
    }
}
