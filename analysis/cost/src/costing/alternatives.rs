//! What renting is compared with, resolved against the catalog: the owned system of `onprem:`
//! ([`OnPremSelection`]) and the per-token APIs of `api:` ([`ApiSelection`]).

use serde::{Deserialize, Serialize};

use super::selection::{finite_in, lookup, resolve_pue, sel_err, SelectionError, Sourced};
use crate::catalog::{Catalog, CatalogRef};
use crate::formulas as f;
use tcobench_results::spec::{RawApi, RawOnPrem};

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

/// The `onprem:` section: figures given in the scenario win over those of the `onprem.system`
/// row; the PUE defaults to `energy_pue`.
pub(super) fn resolve_onprem(
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

/// Item `i` of the `api:` list: a catalog row (`catalog: PROVIDER/MODEL`) or a name with its
/// prices.
pub(super) fn resolve_api(
    i: usize,
    a: &RawApi,
    catalog: &Catalog,
) -> Result<ApiSelection, SelectionError> {
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

#[cfg(test)]
mod tests {
    use crate::costing::fixtures::{catalog, spec};
    use crate::costing::CostSelection;

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
}
