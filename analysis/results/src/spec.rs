//! The scenario's cost sections as written — `pricing:`, `energy:`, `slo:`, `workload:`,
//! `onprem:`, `api:` — kept in the manifest so that a run folder can be priced again later. Plain
//! serde structs (`deny_unknown_fields`); resolving them against a catalog is the cost model's
//! job (`tcobench-cost`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `pricing:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Instances the measured throughput is priced on: `provider/type/region`, `provider/type`
    /// or `type`.
    pub instances: Option<Vec<InstanceSpec>>,
    /// Purchase options (`on_demand`, `spot`, `reserved_1y`, `reserved_3y`).
    pub tiers: Option<Vec<String>>,
    /// Busy fraction of wall-clock time, (0, 1].
    pub utilization: Option<f64>,
    /// Overlay catalog directory (relative to the file that names it).
    pub catalog: Option<String>,
    /// The instance the benchmark itself runs on, for `budget_usd` and `plan --estimate`
    /// (default: the first of `instances`, on demand).
    pub host: Option<InstanceSpec>,
    /// The benchmark host's price, $/h, instead of a catalog row.
    pub host_usd_per_hour: Option<f64>,
}

/// `energy:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnergy {
    /// PUE: a number ≥ 1 or a preset name from `pue.csv`.
    pub pue: Option<NumberOrName>,
    /// Grid carbon intensity: gCO2e/kWh or a zone from `grid_carbon.csv`.
    pub grid: Option<NumberOrName>,
    /// Power of one replica while idle, W (charged for the 1 − U share).
    pub idle_watts: Option<f64>,
    /// Embodied emissions of the hardware one replica runs on (one accelerator, or one
    /// CPU-only instance), kgCO2e (needs `lifetime_years`).
    pub embodied_kg: Option<f64>,
    /// Hardware lifetime, years.
    pub lifetime_years: Option<f64>,
}

/// `slo:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Latency metric: `e2e_ms`, `ttft_ms` or `tpot_ms`.
    pub metric: Option<String>,
    /// Percentile: 50, 90, 95 or 99.
    pub percentile: Option<u32>,
    /// Limit, ms.
    pub max_ms: Option<f64>,
}

/// `workload:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    /// Requests per day.
    pub requests_per_day: Option<f64>,
    /// Generated tokens per request (default: each cell's `new_tokens`).
    pub tokens_per_request: Option<f64>,
    /// Peak rate over average rate (≥ 1, default 1).
    pub peak_factor: Option<f64>,
}

/// `onprem:` as written: an owned system to compare renting with. Either a row of the
/// catalog's `onprem.csv` (`system:`) or the figures themselves; a figure written here wins
/// over the row's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnPrem {
    /// A system of `onprem.csv`.
    pub system: Option<String>,
    /// Purchase price of one system, $.
    pub capex_usd: Option<f64>,
    /// Depreciation period, years.
    pub lifetime_years: Option<f64>,
    /// Resale value at end of life, fraction of capex in [0, 1) (default 0).
    pub residual_fraction: Option<f64>,
    /// Maintenance, support and space, $/h (default 0).
    pub maintenance_usd_per_hour: Option<f64>,
    /// Average power of one system while busy, W (default: the measured power of the
    /// configuration it replaces).
    pub watts: Option<f64>,
    /// Electricity price, $/kWh.
    pub usd_per_kwh: Option<f64>,
    /// Electricity price from `electricity_prices.csv`: `ZONE` or `ZONE/SECTOR`.
    pub electricity: Option<String>,
    /// PUE of the owned facility: a number ≥ 1 or a preset (default: `energy.pue`).
    pub pue: Option<NumberOrName>,
    /// Horizon of the return on investment, months (default 36).
    pub horizon_months: Option<f64>,
}

/// One entry of `api:` as written: a per-token API to compare self-hosting with, from the
/// catalog's `api_prices.csv` (`catalog: PROVIDER/MODEL`) or given by its prices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `provider/model` of `api_prices.csv`.
    pub catalog: Option<String>,
    /// Display name of an API given by its prices.
    pub name: Option<String>,
    /// Input tokens, $/1M.
    pub input_usd_per_1m: Option<f64>,
    /// Output tokens, $/1M.
    pub output_usd_per_1m: Option<f64>,
    /// Cached input tokens, $/1M.
    pub cached_input_usd_per_1m: Option<f64>,
    /// Cached share of the input tokens, [0, 1] (default 0).
    pub cached_fraction: Option<f64>,
    /// Input tokens per request (default: each cell's `prompt_tokens`).
    pub input_tokens_per_request: Option<f64>,
}

/// A number or a catalog name (`pue: 1.2` or `pue: uptime_2023_average`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberOrName {
    /// A literal value.
    Number(f64),
    /// A catalog row name.
    Name(String),
}

/// An instance named in a selection: `provider/type/region`, `provider/type` or `type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceSpec {
    /// Provider, when given.
    pub provider: Option<String>,
    /// Instance type.
    pub instance_type: String,
    /// Region, when given.
    pub region: Option<String>,
}

impl fmt::Display for InstanceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.provider {
            write!(f, "{p}/")?;
        }
        f.write_str(&self.instance_type)?;
        if let Some(r) = &self.region {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl FromStr for InstanceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "`{s}` is not an instance (expected `provider/type/region`, `provider/type` or `type`)"
            ));
        }
        let own = |p: &str| p.to_string();
        match parts.as_slice() {
            [t] => Ok(InstanceSpec {
                provider: None,
                instance_type: own(t),
                region: None,
            }),
            [p, t] => Ok(InstanceSpec {
                provider: Some(own(p)),
                instance_type: own(t),
                region: None,
            }),
            [p, t, r] => Ok(InstanceSpec {
                provider: Some(own(p)),
                instance_type: own(t),
                region: Some(own(r)),
            }),
            _ => Err(format!(
                "`{s}` has too many `/` (expected `provider/type/region`)"
            )),
        }
    }
}

impl Serialize for InstanceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The costing sections together, as one file of a chain writes them (a scenario or a
/// sweep variant). Later layers win key by key ([`CostingSpec::overlay`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostingSpec {
    /// `pricing:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<RawPricing>,
    /// `energy:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<RawEnergy>,
    /// `slo:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<RawSlo>,
    /// `workload:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<RawWorkload>,
    /// `onprem:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onprem: Option<RawOnPrem>,
    /// `api:` (a later layer replaces the whole list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Vec<RawApi>>,
}

macro_rules! overlay_fields {
    ($dst:expr, $src:expr, $($field:ident),+) => {
        $( if $src.$field.is_some() { $dst.$field = $src.$field.clone(); } )+
    };
}

impl CostingSpec {
    /// Applies `top` over `self` key by key: a key `top` sets wins, the rest is kept.
    pub fn overlay(&mut self, top: &CostingSpec) {
        if let Some(t) = &top.pricing {
            let d = self.pricing.get_or_insert_with(Default::default);
            overlay_fields!(
                d,
                t,
                instances,
                tiers,
                utilization,
                catalog,
                host,
                host_usd_per_hour
            );
        }
        if let Some(t) = &top.energy {
            let d = self.energy.get_or_insert_with(Default::default);
            overlay_fields!(d, t, pue, grid, idle_watts, embodied_kg, lifetime_years);
        }
        if let Some(t) = &top.slo {
            let d = self.slo.get_or_insert_with(Default::default);
            overlay_fields!(d, t, metric, percentile, max_ms);
        }
        if let Some(t) = &top.workload {
            let d = self.workload.get_or_insert_with(Default::default);
            overlay_fields!(d, t, requests_per_day, tokens_per_request, peak_factor);
        }
        if let Some(t) = &top.onprem {
            let d = self.onprem.get_or_insert_with(Default::default);
            overlay_fields!(
                d,
                t,
                system,
                capex_usd,
                lifetime_years,
                residual_fraction,
                maintenance_usd_per_hour,
                watts,
                usd_per_kwh,
                electricity,
                pue,
                horizon_months
            );
        }
        if top.api.is_some() {
            self.api = top.api.clone();
        }
    }

    /// Whether no section is present.
    pub fn is_empty(&self) -> bool {
        self.pricing.is_none()
            && self.energy.is_none()
            && self.slo.is_none()
            && self.workload.is_none()
            && self.onprem.is_none()
            && self.api.is_none()
    }
}
