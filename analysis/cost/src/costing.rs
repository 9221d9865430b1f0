//! Cost, energy and carbon of a run's measured cells under a pricing and energy selection.
//!
//! A scenario's `pricing:`, `energy:`, `slo:` and `workload:` sections (and each sweep variant,
//! which has the same shape) are read into [`CostingSpec`] — every key optional so files can be
//! layered — and resolved against a [`Catalog`] into a [`CostSelection`]. [`cost_run`] then
//! turns each cell's *measured* throughput and energy into $/1M tokens, kWh and gCO2e per 1M
//! tokens per instance and tier, sizes the scenario's workload, and picks the recommendation per
//! tier. Every catalog figure names its row ([`CatalogRef`]); every missing figure says why.
//!
//! Intervals: `T` and `J/token` carry the t-based 95 % CI of their mean over the cell's timed
//! repetitions; $/1M tokens (∝ 1/T) and kWh/1M (∝ J/token) map those bounds through their
//! monotone formulas, so the intervals are exact transformations, not new estimates.

use std::collections::BTreeMap;



use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogIdentity, CatalogRef, Instance, LookupError, Tier};
use crate::formulas::{self as f, Sizing, Workload};
use tcobench_results::schema::HostInfo;
use tcobench_results::spec::{CostingSpec, InstanceSpec, NumberOrName, RawApi, RawOnPrem};
use tcobench_results::{fmt_sig, CellStats, Metric};
use tcobench_stats::descriptive::Descriptives;

// ---------------------------------------------------------------------------------------------
// The resolved selection
// ---------------------------------------------------------------------------------------------

/// A selection that failed to resolve: the dotted key and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SelectionError {
    /// Dotted key (`pricing.instances[1]`, `energy.grid`, …).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn sel_err<T>(key: impl Into<String>, message: impl Into<String>) -> Result<T, SelectionError> {
    Err(SelectionError {
        key: key.into(),
        message: message.into(),
    })
}

/// The latency metric an SLO bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloMetric {
    /// End-to-end latency.
    E2eMs,
    /// Time to first token.
    TtftMs,
    /// Time per output token.
    TpotMs,
}

impl SloMetric {
    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            SloMetric::E2eMs => "e2e_ms",
            SloMetric::TtftMs => "ttft_ms",
            SloMetric::TpotMs => "tpot_ms",
        }
    }
}

/// A latency objective: the `percentile` of `metric` must not exceed `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Metric.
    pub metric: SloMetric,
    /// Percentile (50, 90, 95, 99).
    pub percentile: u32,
    /// Limit, ms.
    pub max_ms: f64,
}

impl Slo {
    /// The cell's value of the SLO's percentile, ms.
    pub fn value(&self, d: &Descriptives) -> f64 {
        match self.percentile {
            50 => d.p50,
            90 => d.p90,
            95 => d.p95,
            _ => d.p99,
        }
    }
}

/// A resolved instance row of the selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectedInstance {
    /// As written.
    pub spec: InstanceSpec,
    /// The catalog row (`provider/type/region`).
    pub instance: Instance,
}

/// A value with where it came from: a catalog row, or the selection itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sourced {
    /// Value.
    pub value: f64,
    /// The catalog row, `None` when the user gave the number.
    pub reference: Option<CatalogRef>,
    /// `catalog` or `user`.
    pub origin: String,
}

impl Sourced {
    fn user(value: f64) -> Sourced {
        Sourced {
            value,
            reference: None,
            origin: "user".into(),
        }
    }
    fn catalog(value: f64, reference: CatalogRef) -> Sourced {
        Sourced {
            value,
            reference: Some(reference),
            origin: "catalog".into(),
        }
    }
}

/// The workload to size for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Requests per day.
    pub requests_per_day: f64,
    /// Generated tokens per request (`None`: each cell's `new_tokens`).
    pub tokens_per_request: Option<f64>,
    /// Peak rate over average rate.
    pub peak_factor: f64,
}

/// The owned system of `onprem:`, resolved: each figure with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnPremSelection {
    /// The `onprem.csv` system, or `scenario` for figures given in the scenario.
    pub name: String,
    /// Purchase price, $.
    pub capex_usd: Sourced,
    /// Depreciation period, years.
    pub lifetime_years: Sourced,
    /// Resale fraction.
    pub residual_fraction: Sourced,
    /// Maintenance, $/h.
    pub maintenance_usd_per_hour: Sourced,
    /// Power of one system, W (`None`: the measured power of each configuration).
    pub watts: Option<Sourced>,
    /// Electricity price, $/kWh.
    pub usd_per_kwh: Sourced,
    /// PUE.
    pub pue: Sourced,
    /// ROI horizon, months.
    pub horizon_months: f64,
}

/// One API of `api:`, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSelection {
    /// `provider/model` or the given name.
    pub name: String,
    /// Its prices.
    pub pricing: f::ApiPricing,
    /// The `api_prices.csv` row (`None`: prices given in the scenario).
    pub reference: Option<CatalogRef>,
    /// Cached share of the input.
    pub cached_fraction: f64,
    /// Input tokens per request (`None`: each cell's `prompt_tokens`).
    pub input_tokens_per_request: Option<f64>,
}

/// A selection resolved against a catalog: what [`cost_run`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSelection {
    /// Variant label (`None` for the scenario's own selection).
    pub label: Option<String>,
    /// Instances to price on.
    pub instances: Vec<SelectedInstance>,
    /// Tiers.
    pub tiers: Vec<Tier>,
    /// Utilisation.
    pub utilization: f64,
    /// PUE.
    pub pue: Sourced,
    /// Grid intensity, gCO2e/kWh, when selected.
    pub grid: Option<Sourced>,
    /// Idle power of one replica, W.
    pub idle_watts: Option<f64>,
    /// Where `idle_watts` comes from (`None` in costs written before it was recorded; read it
    /// through [`f::IdlePowerSource::of`]).
    #[serde(default)]
    pub idle_watts_source: Option<f::IdlePowerSource>,
    /// Embodied emissions per replica, kg, and lifetime, years.
    pub embodied: Option<(f64, f64)>,
    /// Latency objective.
    pub slo: Option<Slo>,
    /// Workload.
    pub workload: Option<WorkloadSpec>,
    /// Overlay directory applied to the catalog, as resolved.
    pub catalog_overlay: Option<String>,
    /// The catalog the selection was resolved in.
    pub catalog: CatalogIdentity,
    /// The owned system to compare with (`onprem:`).
    #[serde(default)]
    pub onprem: Option<OnPremSelection>,
    /// Per-token APIs to compare with (`api:`).
    #[serde(default)]
    pub api: Vec<ApiSelection>,
}

fn finite_in(key: &str, v: f64, lo: f64, hi: f64, what: &str) -> Result<f64, SelectionError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        sel_err(key, format!("{v} is out of range: {what}"))
    }
}

fn lookup<T>(key: &str, r: Result<T, LookupError>) -> Result<T, SelectionError> {
    r.map_err(|e| SelectionError {
        key: key.into(),
        message: e.to_string(),
    })
}

/// The PUE written under `key`: a number in [1, 10], or a preset of the catalog's `pue.csv`.
fn resolve_pue(
    key: &str,
    pue: &NumberOrName,
    catalog: &Catalog,
) -> Result<Sourced, SelectionError> {
    match pue {
        NumberOrName::Number(p) => Ok(Sourced::user(finite_in(
            key,
            *p,
            1.0,
            10.0,
            "PUE is total facility power over IT power, in [1, 10]",
        )?)),
        NumberOrName::Name(n) => {
            let row = lookup(key, catalog.pue_preset(n))?;
            Ok(Sourced::catalog(
                row.pue,
                catalog.reference(&row.origin, row.preset.clone(), row.retrieved, &row.source),
            ))
        }
    }
}

impl CostSelection {
    /// Resolves a spec's sections against `catalog` (which must already include the overlay that
    /// `pricing.catalog` names). `label` names a sweep variant.
    pub fn resolve(
        spec: &CostingSpec,
        catalog: &Catalog,
        label: Option<String>,
        catalog_overlay: Option<String>,
    ) -> Result<CostSelection, SelectionError> {
        let pricing = spec.pricing.clone().unwrap_or_default();
        let energy = spec.energy.clone().unwrap_or_default();

        let mut instances = Vec::new();
        for (i, spec) in pricing.instances.iter().flatten().enumerate() {
            let key = format!("pricing.instances[{i}]");
            let rows = catalog.find_instances(
                spec.provider.as_deref(),
                &spec.instance_type,
                spec.region.as_deref(),
            );
            let instance = match rows.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return sel_err(
                        key,
                        format!(
                            "no instance `{spec}` in catalog {} (list them with `tcobench catalog list`)",
                            catalog.identity.version
                        ),
                    )
                }
                many => {
                    return sel_err(
                        key,
                        format!(
                            "`{spec}` matches {} catalog rows ({}); write `provider/type/region`",
                            many.len(),
                            many.iter()
                                .map(|i| format!("{}/{}/{}", i.provider, i.instance_type, i.region))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                }
            };
            if instances
                .iter()
                .any(|s: &SelectedInstance| s.instance.key() == instance.key())
            {
                return sel_err(key, format!("`{spec}` is listed twice"));
            }
            instances.push(SelectedInstance {
                spec: spec.clone(),
                instance,
            });
        }

        let mut tiers = Vec::new();
        for (i, t) in pricing
            .tiers
            .clone()
            .unwrap_or_else(|| vec!["on_demand".into()])
            .iter()
            .enumerate()
        {
            let key = format!("pricing.tiers[{i}]");
            let tier = Tier::parse(t).ok_or_else(|| SelectionError {
                key: key.clone(),
                message: format!(
                    "`{t}` is not a tier (known: {})",
                    Tier::ALL.map(Tier::name).join(", ")
                ),
            })?;
            if tiers.contains(&tier) {
                return sel_err(key, format!("tier `{tier}` is listed twice"));
            }
            tiers.push(tier);
        }
        let utilization = finite_in(
            "pricing.utilization",
            pricing.utilization.unwrap_or(1.0),
            f64::MIN_POSITIVE,
            1.0,
            "utilisation is a busy fraction in (0, 1]",
        )?;

        let pue = match &energy.pue {
            None => Sourced::user(1.0),
            Some(p) => resolve_pue("energy.pue", p, catalog)?,
        };
        let grid = match &energy.grid {
            None => None,
            Some(NumberOrName::Number(g)) => Some(Sourced::user(finite_in(
                "energy.grid",
                *g,
                0.0,
                5000.0,
                "grid intensity is gCO2e/kWh, in [0, 5000]",
            )?)),
            Some(NumberOrName::Name(z)) => {
                let row = lookup("energy.grid", catalog.grid_intensity(z))?;
                Some(Sourced::catalog(
                    row.g_per_kwh,
                    catalog.reference(&row.origin, row.key(), row.retrieved, &row.source),
                ))
            }
        };
        let idle_watts = energy
            .idle_watts
            .map(|w| finite_in("energy.idle_watts", w, 0.0, 1e6, "watts, ≥ 0"))
            .transpose()?;
        let embodied = match (energy.embodied_kg, energy.lifetime_years) {
            (None, None) => None,
            (Some(kg), Some(y)) => Some((
                finite_in("energy.embodied_kg", kg, 0.0, 1e7, "kgCO2e, ≥ 0")?,
                finite_in(
                    "energy.lifetime_years",
                    y,
                    f64::MIN_POSITIVE,
                    100.0,
                    "years, > 0",
                )?,
            )),
            (Some(_), None) => {
                return sel_err(
                    "energy.embodied_kg",
                    "needs `energy.lifetime_years` to spread the embodied emissions over",
                )
            }
            (None, Some(_)) => {
                return sel_err(
                    "energy.lifetime_years",
                    "is only used with `energy.embodied_kg`",
                )
            }
        };

        let slo = match &spec.slo {
            None => None,
            Some(s) => {
                let metric = match s.metric.as_deref().unwrap_or("e2e_ms") {
                    "e2e_ms" => SloMetric::E2eMs,
                    "ttft_ms" => SloMetric::TtftMs,
                    "tpot_ms" => SloMetric::TpotMs,
                    other => {
                        return sel_err(
                            "slo.metric",
                            format!("`{other}` is not a latency metric (e2e_ms, ttft_ms, tpot_ms)"),
                        )
                    }
                };
                let percentile = s.percentile.unwrap_or(95);
                if ![50, 90, 95, 99].contains(&percentile) {
                    return sel_err(
                        "slo.percentile",
                        format!("{percentile} is not one of 50, 90, 95, 99"),
                    );
                }
                let Some(max_ms) = s.max_ms else {
                    return sel_err("slo.max_ms", "an SLO needs its limit, ms");
                };
                Some(Slo {
                    metric,
                    percentile,
                    max_ms: finite_in("slo.max_ms", max_ms, f64::MIN_POSITIVE, 1e9, "ms, > 0")?,
                })
            }
        };
        let workload = match &spec.workload {
            None => None,
            Some(w) => {
                let Some(r) = w.requests_per_day else {
                    return sel_err(
                        "workload.requests_per_day",
                        "a workload needs its request rate",
                    );
                };
                Some(WorkloadSpec {
                    requests_per_day: finite_in(
                        "workload.requests_per_day",
                        r,
                        f64::MIN_POSITIVE,
                        1e15,
                        "requests per day, > 0",
                    )?,
                    tokens_per_request: w
                        .tokens_per_request
                        .map(|t| {
                            finite_in(
                                "workload.tokens_per_request",
                                t,
                                f64::MIN_POSITIVE,
                                1e9,
                                "tokens, > 0",
                            )
                        })
                        .transpose()?,
                    peak_factor: finite_in(
                        "workload.peak_factor",
                        w.peak_factor.unwrap_or(1.0),
                        1.0,
                        1e6,
                        "peak over average rate, ≥ 1",
                    )?,
                })
            }
        };
        let onprem = spec
            .onprem
            .as_ref()
            .map(|o| resolve_onprem(o, catalog, &pue))
            .transpose()?;
        let api = spec
            .api
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| resolve_api(i, a, catalog))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CostSelection {
            onprem,
            api,
            label,
            instances,
            tiers,
            utilization,
            pue,
            grid,
            idle_watts,
            idle_watts_source: Some(match idle_watts {
                Some(_) => f::IdlePowerSource::Scenario,
                None => f::IdlePowerSource::BusyAssumed,
            }),
            embodied,
            slo,
            workload,
            catalog_overlay,
            catalog: catalog.identity.clone(),
        })
    }
}

fn resolve_onprem(
    o: &RawOnPrem,
    catalog: &Catalog,
    energy_pue: &Sourced,
) -> Result<OnPremSelection, SelectionError> {
    let row = o
        .system
        .as_deref()
        .map(|name| lookup("onprem.system", catalog.onprem_system(name)))
        .transpose()?;
    let row_ref =
        row.map(|r| catalog.reference(&r.origin, r.system.clone(), r.retrieved, &r.source));
    // A figure written in the scenario wins over the row's; each keeps its origin.
    let pick = |key: &str,
                given: Option<f64>,
                from_row: Option<f64>,
                default: Option<f64>,
                lo: f64,
                hi: f64,
                what: &str|
     -> Result<Option<Sourced>, SelectionError> {
        match (given, from_row.zip(row_ref.clone()), default) {
            (Some(v), _, _) => Ok(Some(Sourced::user(finite_in(key, v, lo, hi, what)?))),
            (None, Some((v, r)), _) => Ok(Some(Sourced::catalog(v, r))),
            (None, None, Some(v)) => Ok(Some(Sourced::user(v))),
            (None, None, None) => Ok(None),
        }
    };
    let required = |key: &str, v: Option<Sourced>| {
        v.ok_or_else(|| SelectionError {
            key: key.into(),
            message: "missing: give it here or name a catalog row with `onprem.system`".into(),
        })
    };
    let capex_usd = required(
        "onprem.capex_usd",
        pick(
            "onprem.capex_usd",
            o.capex_usd,
            row.map(|r| r.capex_usd),
            None,
            f64::MIN_POSITIVE,
            1e12,
            "dollars, > 0",
        )?,
    )?;
    let lifetime_years = required(
        "onprem.lifetime_years",
        pick(
            "onprem.lifetime_years",
            o.lifetime_years,
            row.map(|r| r.lifetime_years),
            None,
            f64::MIN_POSITIVE,
            100.0,
            "years, > 0",
        )?,
    )?;
    let residual_fraction = pick(
        "onprem.residual_fraction",
        o.residual_fraction,
        row.map(|r| r.residual_fraction),
        Some(0.0),
        0.0,
        1.0 - f64::EPSILON,
        "a fraction of capex in [0, 1)",
    )?
    .unwrap_or_else(|| Sourced::user(0.0));
    let maintenance_usd_per_hour = pick(
        "onprem.maintenance_usd_per_hour",
        o.maintenance_usd_per_hour,
        row.map(|r| r.maintenance_usd_per_hour),
        Some(0.0),
        0.0,
        1e9,
        "$/h, >= 0",
    )?
    .unwrap_or_else(|| Sourced::user(0.0));
    let watts = pick(
        "onprem.watts",
        o.watts,
        row.map(|r| r.power_w),
        None,
        f64::MIN_POSITIVE,
        1e7,
        "watts, > 0",
    )?;
    let usd_per_kwh = match (o.usd_per_kwh, &o.electricity) {
        (Some(_), Some(_)) => {
            return sel_err(
                "onprem.electricity",
                "give either `usd_per_kwh` or `electricity` (a catalog zone), not both",
            )
        }
        (Some(v), None) => Sourced::user(finite_in(
            "onprem.usd_per_kwh",
            v,
            0.0,
            100.0,
            "$/kWh, in [0, 100]",
        )?),
        (None, Some(zone)) => {
            let e = lookup("onprem.electricity", catalog.electricity_price(zone))?;
            Sourced::catalog(
                e.usd_per_kwh,
                catalog.reference(&e.origin, e.key(), e.retrieved, &e.source),
            )
        }
        (None, None) => {
            return sel_err(
                "onprem",
                "needs the electricity price: `usd_per_kwh: 0.12` or `electricity: ZONE` from the catalog",
            )
        }
    };
    let pue = match &o.pue {
        None => energy_pue.clone(),
        Some(p) => resolve_pue("onprem.pue", p, catalog)?,
    };
    let horizon_months = finite_in(
        "onprem.horizon_months",
        o.horizon_months.unwrap_or(36.0),
        f64::MIN_POSITIVE,
        1200.0,
        "months, > 0",
    )?;
    Ok(OnPremSelection {
        name: o.system.clone().unwrap_or_else(|| "scenario".into()),
        capex_usd,
        lifetime_years,
        residual_fraction,
        maintenance_usd_per_hour,
        watts,
        usd_per_kwh,
        pue,
        horizon_months,
    })
}

fn resolve_api(i: usize, a: &RawApi, catalog: &Catalog) -> Result<ApiSelection, SelectionError> {
    let key = |field: &str| format!("api[{i}].{field}");
    let price = |field: &str, v: f64| finite_in(&key(field), v, 0.0, 1e6, "$ per 1M tokens, >= 0");
    let cached_fraction = finite_in(
        &key("cached_fraction"),
        a.cached_fraction.unwrap_or(0.0),
        0.0,
        1.0,
        "a share in [0, 1]",
    )?;
    let input_tokens_per_request = a
        .input_tokens_per_request
        .map(|t| {
            finite_in(
                &key("input_tokens_per_request"),
                t,
                0.0,
                1e9,
                "tokens, >= 0",
            )
        })
        .transpose()?;
    match (&a.catalog, &a.name) {
        (Some(_), Some(_)) => sel_err(
            key("name"),
            "an API is either a catalog row (`catalog: PROVIDER/MODEL`) or given by `name` and its prices, not both",
        ),
        (Some(model), None) => {
            for field in ["input_usd_per_1m", "output_usd_per_1m", "cached_input_usd_per_1m"] {
                let given = match field {
                    "input_usd_per_1m" => a.input_usd_per_1m,
                    "output_usd_per_1m" => a.output_usd_per_1m,
                    _ => a.cached_input_usd_per_1m,
                };
                if given.is_some() {
                    return sel_err(
                        key(field),
                        "the prices of a catalog API come from its row; drop `catalog` to give your own",
                    );
                }
            }
            let row = lookup(&key("catalog"), catalog.api_price(model))?;
            Ok(ApiSelection {
                name: row.key(),
                pricing: f::ApiPricing {
                    input_usd_per_1m: row.input_usd_per_1m,
                    output_usd_per_1m: row.output_usd_per_1m,
                    cached_input_usd_per_1m: row.cached_input_usd_per_1m,
                },
                reference: Some(catalog.reference(
                    &row.origin,
                    row.key(),
                    row.retrieved,
                    &row.source,
                )),
                cached_fraction,
                input_tokens_per_request,
            })
        }
        (None, name) => {
            // A missing key has no place of its own: errors name the item.
            let Some(name) = name.clone().filter(|n| !n.trim().is_empty()) else {
                return sel_err(
                    format!("api[{i}]"),
                    "an API needs `catalog: PROVIDER/MODEL` (api_prices.csv) or a `name` with `input_usd_per_1m` and `output_usd_per_1m`",
                );
            };
            let (Some(input), Some(output)) = (a.input_usd_per_1m, a.output_usd_per_1m) else {
                let missing = if a.input_usd_per_1m.is_none() {
                    "input_usd_per_1m"
                } else {
                    "output_usd_per_1m"
                };
                return sel_err(
                    format!("api[{i}]"),
                    format!("`{missing}` is missing: an API given by name needs both prices"),
                );
            };
            Ok(ApiSelection {
                name,
                pricing: f::ApiPricing {
                    input_usd_per_1m: price("input_usd_per_1m", input)?,
                    output_usd_per_1m: price("output_usd_per_1m", output)?,
                    cached_input_usd_per_1m: a
                        .cached_input_usd_per_1m
                        .map(|c| price("cached_input_usd_per_1m", c))
                        .transpose()?,
                },
                reference: None,
                cached_fraction,
                input_tokens_per_request,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-cell figures
// ---------------------------------------------------------------------------------------------

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

/// Costs of a whole run under one selection (`stats.json` → `costing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCosts {
    /// The resolved selection.
    pub selection: CostSelection,
    /// Modelling assumptions behind every figure, in words.
    pub assumptions: Vec<String>,
    /// Per-cell figures, in cell order.
    pub cells: Vec<CellCost>,
    /// Per tier, the cheapest configuration meeting the SLO.
    pub recommendations: Vec<Recommendation>,
    /// Per configuration, the batch size beyond which $/1M tokens stops improving.
    pub batch_saturation: Vec<BatchSaturation>,
    /// Run-level findings (no instance fits, no cell meets the SLO…).
    pub warnings: Vec<String>,
    /// The scenario's workload served by each recommendation, against owning and per-token APIs.
    #[serde(default)]
    pub tco: Vec<WorkloadTco>,
    /// What to add to the scenario for the TCO comparisons it lacks (empty when complete).
    #[serde(default)]
    pub tco_missing: Vec<String>,
    /// Files whose sections replaced the run's own when these costs were computed (`tcobench
    /// report --pricing/--energy`), in words; empty for the run's own selection.
    #[serde(default)]
    pub overrides: Vec<String>,
}

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

fn instance_name(i: &Instance) -> String {
    i.key()
}

/// Replicas of a cell's configuration that fit an instance, or why none do.
fn replicas(cell: &CellStats, instance: &Instance) -> Result<u32, String> {
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
    let t = cell
        .metric(Metric::TokensPerS)
        .map(Figure::from_mean);
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

fn overlaps(a: Figure, b: Figure) -> bool {
    match (a.ci95, b.ci95) {
        (Some([alo, ahi]), Some([blo, bhi])) => alo <= bhi && blo <= ahi,
        _ => true,
    }
}

fn recommendations(
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

fn batch_saturation(cells: &[CellStats], costs: &[CellCost]) -> Vec<BatchSaturation> {
    let mut groups: BTreeMap<String, Vec<(u32, Figure)>> = BTreeMap::new();
    for (cs, c) in cells.iter().zip(costs) {
        if let Some(t) = c.tokens_per_s {
            let key = format!(
                "{} {} {} {} p{} n{}",
                cs.config.backend, cs.config.model, cs.config.dtype, cs.config.device, cs.config.prompt_tokens, cs.config.new_tokens
            );
            groups.entry(key).or_default().push((cs.config.batch_size, t));
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

/// An interval of `f`, a point when it has none.
fn bounds(f: &Figure) -> [f64; 2] {
    f.ci95.unwrap_or([f.value, f.value])
}

fn describe(s: &Sourced) -> String {
    match &s.reference {
        Some(r) => format!("{} row `{}`", r.file, r.key),
        None => "scenario input".into(),
    }
}

/// The workload on each recommendation, against owning (`onprem:`) and APIs (`api:`).
fn workload_tco(
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
        let tokens_per_request = w.tokens_per_request.unwrap_or(f64::from(cs.config.new_tokens));
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
fn tco_missing(sel: &CostSelection, recs: &[Recommendation]) -> Vec<String> {
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

/// Costs every measured cell under `sel`, with recommendations and the batch knee.
pub fn cost_run(
    measured: &[CellStats],
    sel: &CostSelection,
    catalog: &Catalog,
    host: &HostInfo,
) -> RunCosts {
    let cells: Vec<CellCost> = measured
        .iter()
        .map(|c| cost_cell(c, sel, catalog))
        .collect();
    let mut assumptions = vec![
        format!(
            "Throughput and energy were measured on this host ({}, {} logical CPUs{}); prices are the catalog's for the instances named, as if they delivered the same throughput per replica.",
            host.cpu_model,
            host.cpu_logical_cores,
            if host.gpus.is_empty() { String::new() } else { format!(", GPUs: {}", host.gpus.join(", ")) }
        ),
        "One model replica per accelerator on GPU instances and one per CPU-only instance; instance throughput = replicas × measured tokens/s.".into(),
        format!(
            "Utilisation U = {} (busy fraction of paid time): $/1M tokens = P·10⁶/(3600·T·U).",
            sel.utilization
        ),
        format!(
            "PUE = {} ({}).",
            sel.pue.value,
            sel.pue.reference.as_ref().map(|r| format!("{} row `{}`", r.file, r.key)).unwrap_or_else(|| "given in the scenario".into())
        ),
        "Intervals are 95 % t intervals of the mean over timed repetitions, mapped through each formula.".into(),
    ];
    if let Some(g) = &sel.grid {
        assumptions.push(format!(
            "Grid intensity {} gCO2e/kWh ({}).",
            g.value,
            g.reference
                .as_ref()
                .map(|r| format!("{} row `{}`, {}", r.file, r.key, r.source))
                .unwrap_or_else(|| "given in the scenario".into())
        ));
    }
    if sel.embodied.is_none() {
        assumptions
            .push("Embodied emissions are not included (no `energy.embodied_kg` selected).".into());
    }
    let mut warnings = Vec::new();
    for si in &sel.instances {
        let fits = measured
            .iter()
            .any(|c| replicas(c, &si.instance).is_ok());
        if !fits {
            warnings.push(format!(
                "instance {} fits no cell of this run (CPU cells price on CPU-only instances, GPU cells on GPU instances)",
                instance_name(&si.instance)
            ));
        }
        if let Some(vcpus) = si
            .instance
            .vcpus
            .filter(|_| si.instance.accelerator.is_none())
        {
            if (vcpus - host.cpu_logical_cores as f64).abs() > 0.5 {
                warnings.push(format!(
                    "{} has {vcpus} vCPUs, the measuring host {} logical CPUs: its real throughput differs, so treat its $/1M tokens as indicative",
                    instance_name(&si.instance),
                    host.cpu_logical_cores
                ));
            }
        }
    }
    if sel.instances.is_empty() {
        warnings.push("no instances selected (pricing.instances): energy and carbon only".into());
    }
    if let Some(slo) = sel.slo {
        if !cells.iter().any(|c| c.slo.is_some_and(|s| s.met)) {
            warnings.push(format!(
                "no cell meets the SLO (p{} {} ≤ {} ms): no recommendation",
                slo.percentile,
                slo.metric.name(),
                slo.max_ms
            ));
        }
    }
    if cells
        .iter()
        .any(|c| c.energy.as_ref().is_some_and(|e| e.estimated))
    {
        warnings.push("energy is a model estimate (labelled `estimated`), not a measurement: kWh and gCO2e inherit its uncertainty".into());
    }
    let recommendations = recommendations(measured, &cells, sel);
    let batch_saturation = batch_saturation(measured, &cells);
    let tco = workload_tco(measured, &cells, &recommendations, sel);
    let tco_missing = tco_missing(sel, &recommendations);
    RunCosts {
        tco,
        tco_missing,
        overrides: Vec::new(),
        selection: sel.clone(),
        assumptions,
        cells,
        recommendations,
        batch_saturation,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::spec::{RawSlo, RawWorkload};
    use tcobench_results::CellConfig;
    use crate::catalog::{header, LoadOptions, FILES};
    use tcobench_results::schema::{CellOutcome, HostInfo};
    use tcobench_stats::descriptive::Descriptives;

    /// t(0.975, 2), for the CI of three samples.
    const T_975_DF2: f64 = 4.302_652_729_749_464;

    fn close(a: f64, b: f64) {
        assert!(
            ((a - b) / b).abs() < 1e-9,
            "{a} vs {b} (relative {})",
            ((a - b) / b).abs()
        );
    }

    /// One CPU instance (on demand $1.00/h, spot $0.40/h), one 8-GPU instance ($16/h on demand),
    /// a PUE preset of 1.5 and a grid zone of 400 g/kWh.
    fn catalog() -> Catalog {
        let mut m: BTreeMap<String, String> = FILES
            .iter()
            .map(|f| ((*f).to_string(), format!("{}\n", header(f))))
            .collect();
        m.insert("VERSION".into(), "9.9.9\n2026-01-01\n".into());
        let add = |m: &mut BTreeMap<String, String>, f: &str, rows: &str| {
            m.get_mut(f).unwrap().push_str(rows)
        };
        add(
            &mut m,
            "instances.csv",
            "aws,c.cpu,us-east-1,,0,,2,8,x86_64,\naws,g.8gpu,us-east-1,T4,8,16,64,512,x86_64,\n",
        );
        add(
            &mut m,
            "prices.csv",
            "aws,c.cpu,us-east-1,on_demand,1.0,,2026-01-01,src,,\naws,c.cpu,us-east-1,spot,0.4,,2026-01-01,src,,\naws,g.8gpu,us-east-1,on_demand,16,,2026-01-01,src,,\n",
        );
        add(
            &mut m,
            "accelerators.csv",
            "T4,NVIDIA,PCIe,16,70,,,2026-01-01,datasheet,\n",
        );
        add(&mut m, "pue.csv", "p15,1.5,2024,2026-01-01,src,\n");
        add(
            &mut m,
            "grid_carbon.csv",
            "zone-a,2024,400,average,2026-01-01,src,\n",
        );
        Catalog::from_texts(&m, None, &LoadOptions::default()).unwrap()
    }

    fn desc(xs: &[f64]) -> Descriptives {
        Descriptives::compute(xs).unwrap()
    }

    fn cell(
        id: &str,
        device: &str,
        batch: u32,
        tps: &[f64],
        jpt: &[f64],
        e2e: &[f64],
    ) -> CellStats {
        let mut metrics = BTreeMap::new();
        metrics.insert("tokens_per_s".to_string(), desc(tps));
        if !jpt.is_empty() {
            metrics.insert("energy_j_per_token".to_string(), desc(jpt));
        }
        metrics.insert("e2e_ms".to_string(), desc(e2e));
        CellStats {
            cell_id: id.into(),
            index: 0,
            config: CellConfig {
                backend: "mock".into(),
                model: "tiny".into(),
                device: device.into(),
                dtype: "f32".into(),
                batch_size: batch,
                prompt_tokens: 8,
                new_tokens: 10,
            },
            warmup: 0,
            repetitions: tps.len() as u32,
            status: CellOutcome::Ok,
            error: None,
            n_requests: tps.len(),
            n_warmup_excluded: 0,
            n_failed_excluded: 0,
            energy_method: Some("rapl".into()),
            peak_rss_bytes: None,
            gpu_mem_bytes: None,
            metrics,
            robust: BTreeMap::new(),
            unavailable: vec![],
            warnings: vec![],
            agreement: None,
            backend_info: BTreeMap::new(),
            energy: None,
        }
    }

    fn host() -> HostInfo {
        HostInfo {
            os: "Linux".into(),
            cpu_model: "cpu".into(),
            cpu_logical_cores: 2,
            memory_bytes: None,
            gpus: vec![],
            hostname: "h".into(),
        }
    }

    fn spec(yaml: &str) -> CostingSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const BASE: &str = "pricing:\n  instances: [aws/c.cpu/us-east-1, aws/g.8gpu/us-east-1]\n  tiers: [on_demand, spot]\nenergy:\n  pue: p15\n  grid: zone-a\n";

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

    #[test]
    fn onprem_pue_reads_like_energy_pue_under_its_own_key() {
        let cat = catalog();
        let own = "onprem:\n  capex_usd: 1\n  lifetime_years: 4\n  usd_per_kwh: 0.1\n";
        let resolve = |yaml: String| CostSelection::resolve(&spec(&yaml), &cat, None, None);
        for (pue, text) in [("0.9", "[1, 10]"), ("nope", "PUE preset")] {
            let e = resolve(format!("{own}  pue: {pue}\n")).unwrap_err();
            assert_eq!(e.key, "onprem.pue", "{pue}");
            assert!(e.message.contains(text), "{pue}: {}", e.message);
        }
        // The preset p15 (1.5) from the catalog, the same row energy.pue names.
        let sel = resolve(format!("{own}  pue: p15\nenergy:\n  pue: 1.2\n")).unwrap();
        let (onprem, energy) = (sel.onprem.unwrap().pue, sel.pue);
        assert_eq!((onprem.value, onprem.origin.as_str()), (1.5, "catalog"));
        assert_eq!((energy.value, energy.origin.as_str()), (1.2, "user"));
        let by_energy = resolve("energy:\n  pue: p15\n".into()).unwrap().pue;
        assert_eq!(onprem, by_energy);
        // Not given: energy.pue's.
        let sel = resolve(format!("{own}energy:\n  pue: 1.2\n")).unwrap();
        assert_eq!(sel.onprem.unwrap().pue, sel.pue);
    }

    #[test]
    fn onprem_and_api_sections_are_checked() {
        let cat = catalog();
        let err = |yaml: &str| CostSelection::resolve(&spec(yaml), &cat, None, None).unwrap_err();
        let e = err("onprem:\n  lifetime_years: 4\n  usd_per_kwh: 0.1\n");
        assert_eq!(e.key, "onprem.capex_usd");
        let e = err("onprem:\n  capex_usd: 1\n  lifetime_years: 4\n");
        assert_eq!(e.key, "onprem");
        let e = err(
            "onprem:\n  capex_usd: 1\n  lifetime_years: 4\n  usd_per_kwh: 0.1\n  electricity: X\n",
        );
        assert_eq!(e.key, "onprem.electricity");
        let e = err("onprem:\n  capex_usd: 1\n  lifetime_years: 4\n  electricity: nowhere\n");
        assert_eq!(e.key, "onprem.electricity");
        assert!(e.message.contains("not in the pricing catalog"), "{e}");
        let e = err(
            "onprem:\n  capex_usd: 1\n  lifetime_years: 4\n  usd_per_kwh: 0.1\n  residual_fraction: 1\n",
        );
        assert_eq!(e.key, "onprem.residual_fraction");
        let e = err("onprem:\n  system: nope\n  usd_per_kwh: 0.1\n");
        assert_eq!(e.key, "onprem.system");
        let e = err("api:\n  - name: a\n    input_usd_per_1m: 1\n");
        assert_eq!(e.key, "api[0]");
        assert!(e.message.contains("output_usd_per_1m"), "{e}");
        let e = err("api:\n  - catalog: p/m\n    name: a\n");
        assert_eq!(e.key, "api[0].name");
        let e = err("api:\n  - catalog: p/m\n");
        assert_eq!(e.key, "api[0].catalog");
        let e = err("api:\n  - name: a\n    input_usd_per_1m: -1\n    output_usd_per_1m: 1\n");
        assert_eq!(e.key, "api[0].input_usd_per_1m");
        let e = err("api:\n  - name: a\n    input_usd_per_1m: 1\n    output_usd_per_1m: 1\n    cached_fraction: 2\n");
        assert_eq!(e.key, "api[0].cached_fraction");
        // Layers: onprem key by key, api replaced whole.
        let mut base = spec("onprem:\n  capex_usd: 1\n  lifetime_years: 4\napi:\n  - name: a\n");
        base.overlay(&spec("onprem:\n  capex_usd: 2\napi:\n  - name: b\n"));
        let o = base.onprem.as_ref().unwrap();
        assert_eq!((o.capex_usd, o.lifetime_years), (Some(2.0), Some(4.0)));
        let api = base.api.as_ref().unwrap();
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].name.as_deref(), Some("b"));
    }

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

    #[test]
    fn selection_errors_name_their_key() {
        let cat = catalog();
        let cases = [
            (
                "pricing:\n  instances: [nope]\n",
                "pricing.instances[0]",
                "no instance",
            ),
            (
                "pricing:\n  tiers: [weekly]\n",
                "pricing.tiers[0]",
                "not a tier",
            ),
            (
                "pricing:\n  utilization: 1.5\n",
                "pricing.utilization",
                "(0, 1]",
            ),
            ("energy:\n  pue: 0.9\n", "energy.pue", "[1, 10]"),
            ("energy:\n  pue: nope\n", "energy.pue", "PUE preset"),
            ("energy:\n  grid: mars\n", "energy.grid", "grid zone"),
            (
                "energy:\n  embodied_kg: 100\n",
                "energy.embodied_kg",
                "lifetime_years",
            ),
            ("slo:\n  percentile: 95\n", "slo.max_ms", "limit"),
            (
                "slo:\n  metric: watts\n  max_ms: 1\n",
                "slo.metric",
                "latency metric",
            ),
            (
                "workload:\n  peak_factor: 2\n",
                "workload.requests_per_day",
                "request rate",
            ),
            (
                "workload:\n  requests_per_day: 10\n  peak_factor: 0.5\n",
                "workload.peak_factor",
                "≥ 1",
            ),
        ];
        for (yaml, key, text) in cases {
            let e = CostSelection::resolve(&spec(yaml), &cat, None, None).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert!(e.message.contains(text), "{yaml}: {}", e.message);
        }
        let dup = spec("pricing:\n  instances: [c.cpu, aws/c.cpu/us-east-1]\n");
        assert!(CostSelection::resolve(&dup, &cat, None, None)
            .unwrap_err()
            .message
            .contains("twice"));
    }

    #[test]
    fn overlay_is_key_by_key() {
        let mut base = spec(BASE);
        base.overlay(&spec("pricing:\n  tiers: [spot]\nenergy:\n  grid: 10\n"));
        let p = base.pricing.as_ref().unwrap();
        assert_eq!(p.tiers.as_deref(), Some(&["spot".to_string()][..]));
        assert_eq!(p.instances.as_ref().unwrap().len(), 2, "kept from the base");
        let e = base.energy.as_ref().unwrap();
        assert_eq!(e.grid, Some(NumberOrName::Number(10.0)));
        assert_eq!(e.pue, Some(NumberOrName::Name("p15".into())));
    }

    #[test]
    fn instance_spec_round_trips() {
        for s in ["c.cpu", "aws/c.cpu", "aws/c.cpu/us-east-1"] {
            assert_eq!(s.parse::<InstanceSpec>().unwrap().to_string(), s);
        }
        assert!("a//b".parse::<InstanceSpec>().is_err());
        assert!("a/b/c/d".parse::<InstanceSpec>().is_err());
    }
}
