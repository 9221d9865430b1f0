//! The files of one layer parsed into typed rows, keyed ([`Tables`]), with the rules of a single
//! row: required and optional columns, ranges, known tiers, accelerator counts consistent with
//! the accelerator column.

use super::layer::Layer;
use super::table::{parse_file, Check};
use super::{
    Accelerator, ApiPrice, ElectricityPrice, GridIntensity, Instance, OnPremSystem, Price,
    PuePreset, Tier, ValidationError,
};

/// Parsed tables of one layer, with keys.
pub(super) struct Tables {
    pub(super) instances: Vec<(String, Instance)>,
    pub(super) prices: Vec<(String, Price)>,
    pub(super) accelerators: Vec<(String, Accelerator)>,
    pub(super) onprem: Vec<(String, OnPremSystem)>,
    pub(super) grid: Vec<(String, GridIntensity)>,
    pub(super) pue: Vec<(String, PuePreset)>,
    pub(super) electricity: Vec<(String, ElectricityPrice)>,
    pub(super) api: Vec<(String, ApiPrice)>,
}

/// Parses the files of `layer` into [`Tables`], recording problems in `errors`.
pub(super) fn parse_layer(layer: &Layer, errors: &mut Vec<ValidationError>) -> Tables {
    Tables {
        instances: parse_instances(layer, errors),
        prices: parse_prices(layer, errors),
        accelerators: parse_accelerators(layer, errors),
        onprem: parse_onprem(layer, errors),
        grid: parse_grid(layer, errors),
        pue: parse_pue(layer, errors),
        electricity: parse_electricity(layer, errors),
        api: parse_api(layer, errors),
    }
}

/// The rows of `instances.csv`.
fn parse_instances(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, Instance)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "instances.csv",
        errors,
        |g| format!("{}/{}/{}", g("provider"), g("instance_type"), g("region")),
        |r| {
            let provider = r.text("provider");
            let instance_type = r.text("instance_type");
            let region = r.text("region");
            let accelerator = r.opt_text("accelerator");
            let accelerator_count = r.count("accelerator_count");
            match (&accelerator, accelerator_count) {
                (Some(a), 0) => r.error(
                    "accelerator_count",
                    format!("accelerator `{a}` given but count is 0/empty"),
                ),
                (None, n) if n > 0 => r.error(
                    "accelerator_count",
                    format!("count {n} given but `accelerator` is empty"),
                ),
                _ => {}
            }
            Instance {
                provider,
                instance_type,
                region,
                accelerator,
                accelerator_count,
                accelerator_memory_gib: r.opt_num("accelerator_memory_gib", Check::Positive),
                vcpus: r.opt_num("vcpus", Check::Positive),
                memory_gib: r.opt_num("memory_gib", Check::Positive),
                arch: r.opt_text("arch"),
                notes: r.raw("notes").to_string(),
                origin: r.origin(ov),
            }
        },
    )
}

/// The rows of `prices.csv`.
fn parse_prices(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, Price)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "prices.csv",
        errors,
        |g| {
            let tier = Tier::parse(&g("tier"))
                .map(|t| t.name().to_string())
                .unwrap_or_else(|| g("tier"));
            format!(
                "{}/{}/{}/{}",
                g("provider"),
                g("instance_type"),
                g("region"),
                tier
            )
        },
        |r| {
            let raw_tier = r.raw("tier").to_string();
            let tier = Tier::parse(&raw_tier).unwrap_or_else(|| {
                r.error(
                    "tier",
                    format!(
                        "unknown tier `{raw_tier}` (known: {})",
                        Tier::ALL.map(Tier::name).join(", ")
                    ),
                );
                Tier::OnDemand
            });
            Price {
                provider: r.text("provider"),
                instance_type: r.text("instance_type"),
                region: r.text("region"),
                tier,
                usd_per_hour: r.num("usd_per_hour", Check::Positive),
                effective_date: r.opt_date("effective_date"),
                retrieved: r.date("retrieved"),
                source: r.text("source"),
                spot_above_on_demand_ok: r.flag("spot_above_on_demand_ok"),
                notes: r.raw("notes").to_string(),
                origin: r.origin(ov),
            }
        },
    )
}

/// The rows of `accelerators.csv`.
fn parse_accelerators(
    layer: &Layer,
    errors: &mut Vec<ValidationError>,
) -> Vec<(String, Accelerator)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "accelerators.csv",
        errors,
        |g| g("name"),
        |r| Accelerator {
            name: r.text("name"),
            vendor: r.text("vendor"),
            variant: r.raw("variant").to_string(),
            memory_gb: r.opt_num("memory_gb", Check::Positive),
            tdp_w: r.opt_num("tdp_w", Check::Positive),
            idle_w: r.opt_num("idle_w", Check::NonNegative),
            embodied_kgco2e: r.opt_num("embodied_kgco2e", Check::Positive),
            retrieved: r.date("retrieved"),
            source: r.text("source"),
            notes: r.raw("notes").to_string(),
            origin: r.origin(ov),
        },
    )
}

/// The rows of `onprem.csv`.
fn parse_onprem(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, OnPremSystem)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "onprem.csv",
        errors,
        |g| g("system"),
        |r| {
            let accelerator = r.opt_text("accelerator");
            let accelerator_count = r.count("accelerator_count");
            if accelerator.is_some() != (accelerator_count > 0) {
                r.error(
                    "accelerator_count",
                    "must be > 0 exactly when `accelerator` is set".into(),
                );
            }
            OnPremSystem {
                system: r.text("system"),
                accelerator,
                accelerator_count,
                capex_usd: r.num("capex_usd", Check::Positive),
                lifetime_years: r.num("lifetime_years", Check::Positive),
                residual_fraction: r.num("residual_fraction", Check::Fraction),
                power_w: r.num("power_w", Check::Positive),
                maintenance_usd_per_hour: r
                    .opt_num("maintenance_usd_per_hour", Check::NonNegative)
                    .unwrap_or(0.0),
                effective_date: r.opt_date("effective_date"),
                retrieved: r.date("retrieved"),
                source: r.text("source"),
                notes: r.raw("notes").to_string(),
                origin: r.origin(ov),
            }
        },
    )
}

/// The rows of `grid_carbon.csv`.
fn parse_grid(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, GridIntensity)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "grid_carbon.csv",
        errors,
        |g| format!("{}/{}", g("zone"), g("year")),
        |r| GridIntensity {
            zone: r.text("zone"),
            year: r.year("year"),
            g_per_kwh: r.num("g_per_kwh", Check::NonNegative),
            basis: r.text("basis"),
            retrieved: r.date("retrieved"),
            source: r.text("source"),
            notes: r.raw("notes").to_string(),
            origin: r.origin(ov),
        },
    )
}

/// The rows of `pue.csv`.
fn parse_pue(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, PuePreset)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "pue.csv",
        errors,
        |g| g("preset"),
        |r| PuePreset {
            preset: r.text("preset"),
            pue: r.num("pue", Check::AtLeastOne),
            year: r.year("year"),
            retrieved: r.date("retrieved"),
            source: r.text("source"),
            notes: r.raw("notes").to_string(),
            origin: r.origin(ov),
        },
    )
}

/// The rows of `electricity_prices.csv`.
fn parse_electricity(
    layer: &Layer,
    errors: &mut Vec<ValidationError>,
) -> Vec<(String, ElectricityPrice)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "electricity_prices.csv",
        errors,
        |g| format!("{}/{}/{}", g("zone"), g("sector"), g("year")),
        |r| ElectricityPrice {
            zone: r.text("zone"),
            sector: r.text("sector"),
            year: r.year("year"),
            usd_per_kwh: r.num("usd_per_kwh", Check::Positive),
            retrieved: r.date("retrieved"),
            source: r.text("source"),
            notes: r.raw("notes").to_string(),
            origin: r.origin(ov),
        },
    )
}

/// The rows of `api_prices.csv`.
fn parse_api(layer: &Layer, errors: &mut Vec<ValidationError>) -> Vec<(String, ApiPrice)> {
    let ov = layer.overlay;
    parse_file(
        layer,
        "api_prices.csv",
        errors,
        |g| format!("{}/{}", g("provider"), g("model")),
        |r| ApiPrice {
            provider: r.text("provider"),
            model: r.text("model"),
            input_usd_per_1m: r.num("input_usd_per_1m", Check::NonNegative),
            output_usd_per_1m: r.num("output_usd_per_1m", Check::NonNegative),
            cached_input_usd_per_1m: r.opt_num("cached_input_usd_per_1m", Check::NonNegative),
            effective_date: r.opt_date("effective_date"),
            retrieved: r.date("retrieved"),
            source: r.text("source"),
            notes: r.raw("notes").to_string(),
            origin: r.origin(ov),
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::catalog::fixtures::{base, errors, only, with};
    use crate::catalog::header;

    #[test]
    fn price_must_be_positive() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,on_demand,0,,2026-01-01,src,,\n",
        ));
        let e = only(&e);
        assert_eq!((e.file.as_str(), e.line), ("base/prices.csv", 4));
        assert_eq!(e.column.as_deref(), Some("usd_per_hour"));
        assert_eq!(e.key.as_deref(), Some("aws/g.x/eu-west-1/on_demand"));
        assert!(e.message.contains("must be > 0"), "{e}");
        assert_eq!(
            e.to_string(),
            "base/prices.csv:4: column `usd_per_hour` [aws/g.x/eu-west-1/on_demand]: must be > 0, got 0"
        );
    }

    #[test]
    fn accelerator_counts_must_be_consistent() {
        let e = errors(&with("instances.csv", "aws,g.y,us-east-1,T4,,16,4,16,,\n"));
        let e = only(&e);
        assert_eq!(
            (e.line, e.column.as_deref()),
            (4, Some("accelerator_count"))
        );
        assert_eq!(e.key.as_deref(), Some("aws/g.y/us-east-1"));
        let e = errors(&with("instances.csv", "aws,c.y,us-east-1,,2,,4,16,,\n"));
        assert_eq!(only(&e).column.as_deref(), Some("accelerator_count"));
        let e = errors(&with("instances.csv", "aws,g.z,us-east-1,H100,1,,4,16,,\n"));
        let e = only(&e);
        assert_eq!(e.column.as_deref(), Some("accelerator"));
        assert!(e.message.contains("not in accelerators.csv"));
    }

    #[test]
    fn tiers_must_be_known() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,monthly,0.6,,2026-01-01,src,,\n",
        ));
        let e = only(&e);
        assert_eq!((e.line, e.column.as_deref()), (4, Some("tier")));
        assert!(e.message.contains("unknown tier `monthly`"));
    }

    #[test]
    fn dates_numbers_and_references_are_checked() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,spot,0.1,,2026-13-01,src,,\n",
        ));
        assert_eq!(only(&e).column.as_deref(), Some("retrieved"));
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,spot,cheap,,2026-01-01,src,,\n",
        ));
        assert!(only(&e).message.contains("`cheap` is not a number"));
        let e = errors(&with(
            "prices.csv",
            "aws,nope,us-east-1,spot,0.1,,2026-01-01,src,,\n",
        ));
        let e = only(&e);
        assert_eq!(e.column.as_deref(), Some("instance_type"));
        assert!(e.message.contains("no matching row in instances.csv"));
        let mut m = base();
        m.insert(
            "pue.csv".into(),
            format!("{}\nbad,0.9,2023,2026-01-01,src,\n", header("pue.csv")),
        );
        assert_eq!(only(&errors(&m)).column.as_deref(), Some("pue"));
        let mut m = base();
        m.remove("grid_carbon.csv");
        let e = errors(&m);
        assert!(only(&e).message.contains("file is missing"));
        let mut m = base();
        m.insert("grid_carbon.csv".into(), "zone,g\nx,1\n".into());
        assert!(only(&errors(&m)).message.contains("header lacks column(s)"));
    }
}
