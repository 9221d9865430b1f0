//! The row types, one per catalog file, each with its key, plus the purchase [`Tier`] of a
//! price and the [`RowOrigin`] every row records.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Date;

/// Where a row was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowOrigin {
    /// File path as reported in messages.
    pub file: String,
    /// CSV line (header = 1).
    pub line: usize,
    /// Whether the row came from the overlay.
    pub overlay: bool,
}

/// Purchase option of a cloud price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// On-demand list price.
    OnDemand,
    /// Spot / preemptible price.
    Spot,
    /// 1-year reservation / committed-use price, per hour (`reserved_1y`, as in the catalog and
    /// scenarios; files written before read as `reserved1y` too).
    #[serde(rename = "reserved_1y", alias = "reserved1y")]
    Reserved1y,
    /// 3-year reservation / committed-use price, per hour (`reserved_3y`; `reserved3y` read too).
    #[serde(rename = "reserved_3y", alias = "reserved3y")]
    Reserved3y,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 4] = [
        Tier::OnDemand,
        Tier::Spot,
        Tier::Reserved1y,
        Tier::Reserved3y,
    ];

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tier::OnDemand => "on_demand",
            Tier::Spot => "spot",
            Tier::Reserved1y => "reserved_1y",
            Tier::Reserved3y => "reserved_3y",
        }
    }

    /// Parses a tier name (`on_demand`, `spot`, `reserved_1y`, `reserved_3y`; `-` works for `_`,
    /// `committed_1y`/`committed_3y` are aliases of the reserved tiers).
    pub fn parse(s: &str) -> Option<Tier> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "on_demand" | "ondemand" => Some(Tier::OnDemand),
            "spot" | "preemptible" => Some(Tier::Spot),
            "reserved_1y" | "committed_1y" => Some(Tier::Reserved1y),
            "reserved_3y" | "committed_3y" => Some(Tier::Reserved3y),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cloud instance type in one region (`instances.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Provider (`aws`, `gcp`, `azure`).
    pub provider: String,
    /// Instance type name.
    pub instance_type: String,
    /// Region.
    pub region: String,
    /// Accelerator name (a key of `accelerators.csv`), `None` for CPU-only instances.
    pub accelerator: Option<String>,
    /// Accelerators per instance (0 for CPU-only).
    pub accelerator_count: u32,
    /// Memory per accelerator as the source reports it, GiB.
    pub accelerator_memory_gib: Option<f64>,
    /// vCPUs.
    pub vcpus: Option<f64>,
    /// Host memory, GiB.
    pub memory_gib: Option<f64>,
    /// CPU architecture.
    pub arch: Option<String>,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

impl Instance {
    /// `provider/instance_type/region`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.provider, self.instance_type, self.region)
    }
}

/// An hourly price of an instance in a region under a purchase option (`prices.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Provider.
    pub provider: String,
    /// Instance type.
    pub instance_type: String,
    /// Region, or `*` for every region without its own row.
    pub region: String,
    /// Purchase option.
    pub tier: Tier,
    /// Price, $/h.
    pub usd_per_hour: f64,
    /// Date from which the price applies, when the source states it.
    pub effective_date: Option<Date>,
    /// Date the price was read from the source.
    pub retrieved: Date,
    /// Source (repository, path, commit; or URL).
    pub source: String,
    /// Accept a spot price above the on-demand price for this row.
    pub spot_above_on_demand_ok: bool,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

impl Price {
    /// `provider/instance_type/region/tier`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.provider, self.instance_type, self.region, self.tier
        )
    }
}

/// An accelerator model (`accelerators.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accelerator {
    /// Name (key), e.g. `H100`, `A100-40GB`.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Form factor / variant the figures describe (`SXM`, `PCIe`…).
    pub variant: String,
    /// Memory, GB as the vendor states it.
    pub memory_gb: Option<f64>,
    /// Thermal design power / maximum board power, W.
    pub tdp_w: Option<f64>,
    /// Idle power, W (only with a citable source).
    pub idle_w: Option<f64>,
    /// Embodied emissions, kgCO2e (only with a citable source).
    pub embodied_kgco2e: Option<f64>,
    /// Date the figures were read.
    pub retrieved: Date,
    /// Source (datasheet name and URL).
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

/// An owned system (`onprem.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnPremSystem {
    /// System name (key).
    pub system: String,
    /// Accelerator name, `None` for CPU-only systems.
    pub accelerator: Option<String>,
    /// Accelerators per system.
    pub accelerator_count: u32,
    /// Purchase price, $.
    pub capex_usd: f64,
    /// Depreciation period, years.
    pub lifetime_years: f64,
    /// Resale value at end of life, fraction of capex.
    pub residual_fraction: f64,
    /// Average power, W.
    pub power_w: f64,
    /// Maintenance, $/h.
    pub maintenance_usd_per_hour: f64,
    /// Date from which the price applies.
    pub effective_date: Option<Date>,
    /// Date read.
    pub retrieved: Date,
    /// Source.
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

/// Grid carbon intensity of a zone in a year (`grid_carbon.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridIntensity {
    /// Zone (country code, grid region, or cloud region).
    pub zone: String,
    /// Year the average covers.
    pub year: i32,
    /// Intensity, gCO2e/kWh.
    pub g_per_kwh: f64,
    /// Basis (`lifecycle`, `direct`, …).
    pub basis: String,
    /// Date read.
    pub retrieved: Date,
    /// Source.
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

impl GridIntensity {
    /// `zone/year`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.zone, self.year)
    }
}

/// A PUE preset (`pue.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PuePreset {
    /// Preset name (key).
    pub preset: String,
    /// PUE (≥ 1).
    pub pue: f64,
    /// Year the figure covers.
    pub year: i32,
    /// Date read.
    pub retrieved: Date,
    /// Source.
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

/// An average electricity price (`electricity_prices.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectricityPrice {
    /// Zone.
    pub zone: String,
    /// Sector (`industrial`, `commercial`…).
    pub sector: String,
    /// Year.
    pub year: i32,
    /// Price, $/kWh.
    pub usd_per_kwh: f64,
    /// Date read.
    pub retrieved: Date,
    /// Source.
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

impl ElectricityPrice {
    /// `zone/sector/year`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.zone, self.sector, self.year)
    }
}

/// Per-token API list prices (`api_prices.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiPrice {
    /// API provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Input tokens, $/1M.
    pub input_usd_per_1m: f64,
    /// Output tokens, $/1M.
    pub output_usd_per_1m: f64,
    /// Cached input tokens, $/1M.
    pub cached_input_usd_per_1m: Option<f64>,
    /// Date from which the price applies.
    pub effective_date: Option<Date>,
    /// Date read.
    pub retrieved: Date,
    /// Source.
    pub source: String,
    /// Free-form notes.
    pub notes: String,
    /// Where the row was read.
    pub origin: RowOrigin,
}

impl ApiPrice {
    /// `provider/model`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_spelled_as_in_the_catalog_and_old_spellings_still_read() {
        for t in Tier::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()), "one spelling everywhere");
            assert_eq!(serde_json::from_str::<Tier>(&json).unwrap(), t);
            assert_eq!(Tier::parse(t.name()), Some(t));
        }
        // stats.json and sweep.json written before said `reserved1y`.
        assert_eq!(
            serde_json::from_str::<Tier>("\"reserved1y\"").unwrap(),
            Tier::Reserved1y
        );
        assert_eq!(
            serde_json::from_str::<Tier>("\"reserved3y\"").unwrap(),
            Tier::Reserved3y
        );
    }
}
