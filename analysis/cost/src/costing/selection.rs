//! The resolved selection: a spec's `pricing:`, `energy:`, `slo:` and `workload:` sections
//! checked and looked up in a catalog ([`CostSelection::resolve`]), every problem named by its
//! dotted key ([`SelectionError`]) and every figure with where it came from ([`Sourced`]).

use serde::{Deserialize, Serialize};

use super::alternatives::{resolve_api, resolve_onprem, ApiSelection, OnPremSelection};
use crate::catalog::{Catalog, CatalogIdentity, CatalogRef, Instance, LookupError, Tier};
use crate::formulas as f;
use tcobench_results::spec::{CostingSpec, InstanceSpec, NumberOrName, RawSlo, RawWorkload};
use tcobench_stats::descriptive::Descriptives;

/// A selection that failed to resolve: the dotted key and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SelectionError {
    /// Dotted key (`pricing.instances[1]`, `energy.grid`, …).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// An `Err` of [`SelectionError`] at `key`.
pub(super) fn sel_err<T>(
    key: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, SelectionError> {
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
    /// A value the selection gives itself.
    pub(super) fn user(value: f64) -> Sourced {
        Sourced {
            value,
            reference: None,
            origin: "user".into(),
        }
    }
    /// A value read from a catalog row.
    pub(super) fn catalog(value: f64, reference: CatalogRef) -> Sourced {
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

/// A selection resolved against a catalog: what [`cost_run`](super::cost_run) needs.
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

/// `v` when it is finite and in `[lo, hi]`, else an error at `key` saying `what`.
pub(super) fn finite_in(
    key: &str,
    v: f64,
    lo: f64,
    hi: f64,
    what: &str,
) -> Result<f64, SelectionError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        sel_err(key, format!("{v} is out of range: {what}"))
    }
}

/// A catalog lookup's error as a [`SelectionError`] at `key`.
pub(super) fn lookup<T>(key: &str, r: Result<T, LookupError>) -> Result<T, SelectionError> {
    r.map_err(|e| SelectionError {
        key: key.into(),
        message: e.to_string(),
    })
}

/// The PUE written under `key`: a number in [1, 10], or a preset of the catalog's `pue.csv`.
pub(super) fn resolve_pue(
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

        let instances =
            resolve_instances(pricing.instances.as_deref().unwrap_or_default(), catalog)?;
        let tiers = resolve_tiers(pricing.tiers.clone())?;
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
        let grid = resolve_grid(energy.grid.as_ref(), catalog)?;
        let idle_watts = energy
            .idle_watts
            .map(|w| finite_in("energy.idle_watts", w, 0.0, 1e6, "watts, ≥ 0"))
            .transpose()?;
        let embodied = resolve_embodied(energy.embodied_kg, energy.lifetime_years)?;

        let slo = spec.slo.as_ref().map(resolve_slo).transpose()?;
        let workload = spec.workload.as_ref().map(resolve_workload).transpose()?;
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

/// The catalog rows of `pricing.instances`: each must match exactly one row, none twice.
fn resolve_instances(
    specs: &[InstanceSpec],
    catalog: &Catalog,
) -> Result<Vec<SelectedInstance>, SelectionError> {
    let mut instances = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
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
                );
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
    Ok(instances)
}

/// The tiers of `pricing.tiers` (`on_demand` when not given), each known and listed once.
fn resolve_tiers(given: Option<Vec<String>>) -> Result<Vec<Tier>, SelectionError> {
    let mut tiers = Vec::new();
    for (i, t) in given
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
    Ok(tiers)
}

/// `energy.grid`: gCO2e/kWh given, or a zone of the catalog's `grid_carbon.csv`.
fn resolve_grid(
    grid: Option<&NumberOrName>,
    catalog: &Catalog,
) -> Result<Option<Sourced>, SelectionError> {
    Ok(match grid {
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
    })
}

/// `energy.embodied_kg` with `energy.lifetime_years`: both or neither.
fn resolve_embodied(
    embodied_kg: Option<f64>,
    lifetime_years: Option<f64>,
) -> Result<Option<(f64, f64)>, SelectionError> {
    Ok(match (embodied_kg, lifetime_years) {
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
    })
}

/// The `slo:` section: metric (`e2e_ms` by default), percentile (95 by default) and limit.
fn resolve_slo(s: &RawSlo) -> Result<Slo, SelectionError> {
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
    Ok(Slo {
        metric,
        percentile,
        max_ms: finite_in("slo.max_ms", max_ms, f64::MIN_POSITIVE, 1e9, "ms, > 0")?,
    })
}

/// The `workload:` section: the request rate, with optional tokens per request and peak factor.
fn resolve_workload(w: &RawWorkload) -> Result<WorkloadSpec, SelectionError> {
    let Some(r) = w.requests_per_day else {
        return sel_err(
            "workload.requests_per_day",
            "a workload needs its request rate",
        );
    };
    Ok(WorkloadSpec {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::costing::fixtures::{catalog, spec, BASE};

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
