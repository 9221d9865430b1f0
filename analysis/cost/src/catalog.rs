//! The pricing catalog: types, loading (built-in, directory, overlay), validation and lookups.
//!
//! # Layout
//!
//! A catalog is a directory of plain CSV files (see [`FILES`]) plus a `VERSION` file whose first
//! line is the version (`2026.11.0`) and second line the release date (`2026-11-23`). The shipped
//! catalog (`catalog/` at the repository root) is compiled into the binary
//! ([`Catalog::builtin`]); [`Catalog::load`] reads a directory with the same layout instead and
//! applies an optional overlay directory on top.
//!
//! # Overlay precedence ("most specific row wins")
//!
//! * Every row has a key (see each type's `key()`): an overlay row with the same key as a base
//!   row **replaces** it (all columns); an overlay row with a new key is **added**. Rows are never
//!   deleted by an overlay. An overlay may hold any subset of the files; a missing file changes
//!   nothing.
//! * Price rows may use the region `*`: such a row applies to every region of that provider and
//!   instance type that has **no row of its own** for that tier. An exact region always beats `*`,
//!   whichever layer it comes from — so an overlay `*` row re-prices only the regions without an
//!   exact row; to override an exact region, use that region.
//!
//! # Validation
//!
//! Load-time errors name the file, the line (the physical line where the CSV record starts; the
//! header is line 1), the column and the row key: files that are not UTF-8, rows with more fields
//! than the header (an unquoted comma), unparsable or missing values, prices ≤ 0,
//! unknown tiers, duplicate keys within one file, spot above on-demand for the same instance and
//! region (unless the spot row sets `spot_above_on_demand_ok`), accelerator counts inconsistent
//! with the accelerator columns, accelerators missing from `accelerators.csv`, prices for unknown
//! instances. Rows retrieved more than `max_age_days` before the `today` passed in
//! [`LoadOptions`] are *warnings* ([`CatalogWarning`]); the library never reads the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The data files of a catalog, in hashing order.
pub const FILES: [&str; 8] = [
    "instances.csv",
    "prices.csv",
    "accelerators.csv",
    "onprem.csv",
    "grid_carbon.csv",
    "pue.csv",
    "electricity_prices.csv",
    "api_prices.csv",
];

/// Name of the version file.
pub const VERSION_FILE: &str = "VERSION";

/// Default maximum age of a row before it is reported stale, days.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 180;

const BUILTIN: [(&str, &str); 9] = [
    (
        "instances.csv",
        include_str!("../../../catalog/instances.csv"),
    ),
    ("prices.csv", include_str!("../../../catalog/prices.csv")),
    (
        "accelerators.csv",
        include_str!("../../../catalog/accelerators.csv"),
    ),
    ("onprem.csv", include_str!("../../../catalog/onprem.csv")),
    (
        "grid_carbon.csv",
        include_str!("../../../catalog/grid_carbon.csv"),
    ),
    ("pue.csv", include_str!("../../../catalog/pue.csv")),
    (
        "electricity_prices.csv",
        include_str!("../../../catalog/electricity_prices.csv"),
    ),
    (
        "api_prices.csv",
        include_str!("../../../catalog/api_prices.csv"),
    ),
    ("VERSION", include_str!("../../../catalog/VERSION")),
];

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/// A calendar date (proleptic Gregorian), written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day, 1–31.
    pub day: u32,
}

impl Date {
    /// Parses `YYYY-MM-DD` (a valid calendar date).
    pub fn parse(s: &str) -> Option<Date> {
        let mut it = s.trim().splitn(3, '-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let date = Date {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
            day: d.parse().ok()?,
        };
        let leap = (date.year % 4 == 0 && date.year % 100 != 0) || date.year % 400 == 0;
        let days_in_month = match date.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (date.day >= 1 && date.day <= days_in_month).then_some(date)
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Date::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid date `{s}`")))
    }
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// One CSV record with the physical line it starts on (the header is line 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRecord {
    /// Line number of the record's first character.
    pub line: usize,
    /// Fields, unquoted.
    pub fields: Vec<String>,
}

/// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF). Blank lines are skipped.
/// Returns the records including the header, or `(line, message)` for an unterminated quote.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut record_has_content = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                record_has_content = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                record_has_content = true;
            }
            '\r' => {}
            '\n' => {
                if record_has_content || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    out.push(CsvRecord {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                record_has_content = false;
                line += 1;
                start_line = line;
            }
            _ => {
                field.push(c);
                record_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err((start_line, "unterminated quoted field".into()));
    }
    if record_has_content || !field.is_empty() {
        fields.push(field);
        out.push(CsvRecord {
            line: start_line,
            fields,
        });
    }
    Ok(out)
}

/// Quotes a CSV field when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// One validation problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// File (path for a directory catalog, `catalog/<name>` for the built-in one).
    pub file: String,
    /// CSV line (header = 1); 0 for file-level problems.
    pub line: usize,
    /// Column concerned, if one.
    pub column: Option<String>,
    /// Row key, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(c) = &self.column {
            write!(f, ": column `{c}`")?;
        }
        if let Some(k) = &self.key {
            write!(f, " [{k}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Errors of catalog loading.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The catalog is invalid; every problem found is listed.
    #[error("invalid pricing catalog ({} problem(s)):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ValidationError>),
}

/// A non-fatal finding (stale rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogWarning {
    /// File.
    pub file: String,
    /// CSV line.
    pub line: usize,
    /// Row key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CatalogWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} [{}]: {}",
            self.file, self.line, self.key, self.message
        )
    }
}

/// Errors of catalog lookups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matches.
    #[error("{what} `{query}` is not in the pricing catalog{hint}")]
    NotFound {
        /// Kind of row.
        what: &'static str,
        /// The query.
        query: String,
        /// Suggestions (", known: …").
        hint: String,
    },
    /// Several rows match; the query must be narrowed.
    #[error("{what} `{query}` is ambiguous: {choices}; narrow it down (e.g. with --{narrow})")]
    Ambiguous {
        /// Kind of row.
        what: &'static str,
        /// The query.
        query: String,
        /// The candidates.
        choices: String,
        /// Which option narrows it.
        narrow: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// Row types
// ---------------------------------------------------------------------------------------------

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
    /// 1-year reservation / committed-use price, per hour.
    Reserved1y,
    /// 3-year reservation / committed-use price, per hour.
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

// ---------------------------------------------------------------------------------------------
// Generic table parsing
// ---------------------------------------------------------------------------------------------

/// Header of each file (the exact column order written by `catalog import` and shipped).
pub(crate) fn columns(file: &str) -> &'static [&'static str] {
    match file {
        "instances.csv" => &[
            "provider",
            "instance_type",
            "region",
            "accelerator",
            "accelerator_count",
            "accelerator_memory_gib",
            "vcpus",
            "memory_gib",
            "arch",
            "notes",
        ],
        "prices.csv" => &[
            "provider",
            "instance_type",
            "region",
            "tier",
            "usd_per_hour",
            "effective_date",
            "retrieved",
            "source",
            "spot_above_on_demand_ok",
            "notes",
        ],
        "accelerators.csv" => &[
            "name",
            "vendor",
            "variant",
            "memory_gb",
            "tdp_w",
            "idle_w",
            "embodied_kgco2e",
            "retrieved",
            "source",
            "notes",
        ],
        "onprem.csv" => &[
            "system",
            "accelerator",
            "accelerator_count",
            "capex_usd",
            "lifetime_years",
            "residual_fraction",
            "power_w",
            "maintenance_usd_per_hour",
            "effective_date",
            "retrieved",
            "source",
            "notes",
        ],
        "grid_carbon.csv" => &[
            "zone",
            "year",
            "g_per_kwh",
            "basis",
            "retrieved",
            "source",
            "notes",
        ],
        "pue.csv" => &["preset", "pue", "year", "retrieved", "source", "notes"],
        "electricity_prices.csv" => &[
            "zone",
            "sector",
            "year",
            "usd_per_kwh",
            "retrieved",
            "source",
            "notes",
        ],
        "api_prices.csv" => &[
            "provider",
            "model",
            "input_usd_per_1m",
            "output_usd_per_1m",
            "cached_input_usd_per_1m",
            "effective_date",
            "retrieved",
            "source",
            "notes",
        ],
        _ => &[],
    }
}

/// The header line of a catalog file.
pub fn header(file: &str) -> String {
    columns(file).join(",")
}

/// A record with named access and error reporting.
struct Rec<'a> {
    file: &'a str,
    line: usize,
    index: &'a BTreeMap<&'a str, usize>,
    fields: &'a [String],
    key: Option<String>,
    errors: &'a mut Vec<ValidationError>,
}

impl Rec<'_> {
    fn raw(&self, col: &str) -> &str {
        self.index
            .get(col)
            .and_then(|&i| self.fields.get(i))
            .map(|s| s.trim())
            .unwrap_or("")
    }

    fn error(&mut self, col: &str, message: String) {
        self.errors.push(ValidationError {
            file: self.file.to_string(),
            line: self.line,
            column: Some(col.to_string()),
            key: self.key.clone(),
            message,
        });
    }

    fn text(&mut self, col: &str) -> String {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            self.error(col, "is empty (required)".into());
        }
        v
    }

    fn opt_text(&self, col: &str) -> Option<String> {
        let v = self.raw(col);
        (!v.is_empty()).then(|| v.to_string())
    }

    fn opt_num(&mut self, col: &str, check: Check) -> Option<f64> {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return None;
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => match check.violated(x) {
                None => Some(x),
                Some(req) => {
                    self.error(col, format!("{req}, got {v}"));
                    None
                }
            },
            _ => {
                self.error(col, format!("`{v}` is not a number"));
                None
            }
        }
    }

    fn num(&mut self, col: &str, check: Check) -> f64 {
        if self.raw(col).is_empty() {
            self.error(col, "is empty (required)".into());
            return f64::NAN;
        }
        self.opt_num(col, check).unwrap_or(f64::NAN)
    }

    fn count(&mut self, col: &str) -> u32 {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return 0;
        }
        match v.parse::<f64>() {
            Ok(x) if x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) => x as u32,
            _ => {
                self.error(col, format!("`{v}` is not a whole number >= 0"));
                0
            }
        }
    }

    fn year(&mut self, col: &str) -> i32 {
        let v = self.text(col);
        match v.parse::<i32>() {
            Ok(y) if (1900..=2200).contains(&y) => y,
            _ => {
                if !v.is_empty() {
                    self.error(col, format!("`{v}` is not a year"));
                }
                0
            }
        }
    }

    fn date(&mut self, col: &str) -> Date {
        let v = self.text(col);
        match Date::parse(&v) {
            Some(d) => d,
            None => {
                if !v.is_empty() {
                    self.error(col, format!("`{v}` is not a YYYY-MM-DD date"));
                }
                Date {
                    year: 1970,
                    month: 1,
                    day: 1,
                }
            }
        }
    }

    fn opt_date(&mut self, col: &str) -> Option<Date> {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return None;
        }
        let d = Date::parse(&v);
        if d.is_none() {
            self.error(col, format!("`{v}` is not a YYYY-MM-DD date"));
        }
        d
    }

    fn flag(&mut self, col: &str) -> bool {
        match self.raw(col).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" => false,
            "true" | "1" | "yes" => true,
            other => {
                let other = other.to_string();
                self.error(col, format!("`{other}` is not a boolean (true/false)"));
                false
            }
        }
    }

    fn origin(&self, overlay: bool) -> RowOrigin {
        RowOrigin {
            file: self.file.to_string(),
            line: self.line,
            overlay,
        }
    }
}

#[derive(Clone, Copy)]
enum Check {
    Positive,
    NonNegative,
    AtLeastOne,
    Fraction,
}

impl Check {
    fn violated(self, x: f64) -> Option<&'static str> {
        match self {
            Check::Positive if x <= 0.0 => Some("must be > 0"),
            Check::NonNegative if x < 0.0 => Some("must be >= 0"),
            Check::AtLeastOne if x < 1.0 => Some("must be >= 1"),
            Check::Fraction if !(0.0..1.0).contains(&x) => Some("must be in [0, 1)"),
            _ => None,
        }
    }
}

/// The raw text of one layer (built-in, directory or overlay).
#[derive(Debug, Clone)]
struct Layer {
    /// Prefix for file names in messages (directory path or `catalog`).
    label: String,
    /// File name → content (missing = absent).
    files: BTreeMap<String, String>,
    overlay: bool,
}

impl Layer {
    fn builtin() -> Layer {
        Layer {
            label: "catalog".into(),
            files: BUILTIN
                .iter()
                .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
                .collect(),
            overlay: false,
        }
    }

    fn read_dir(dir: &Path, overlay: bool) -> Result<Layer, CatalogError> {
        if !dir.is_dir() {
            return Err(CatalogError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a catalog directory",
                ),
            });
        }
        let mut files = BTreeMap::new();
        for name in FILES.iter().chain(std::iter::once(&VERSION_FILE)) {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes).map_err(|e| {
                        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                        CatalogError::Invalid(vec![ValidationError {
                            file: p.display().to_string(),
                            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
                            column: None,
                            key: None,
                            message: format!(
                                "not UTF-8 (byte {} of the line); save the file as UTF-8",
                                valid.len()
                                    - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
                                    + 1
                            ),
                        }])
                    })?;
                    files.insert((*name).to_string(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CatalogError::Io { path: p, source }),
            }
        }
        Ok(Layer {
            label: dir.display().to_string(),
            files,
            overlay,
        })
    }

    fn path(&self, file: &str) -> String {
        format!("{}/{file}", self.label.trim_end_matches('/'))
    }
}

/// Parses one file of a layer into `(line, index, fields)` records after checking the header.
fn records(
    layer: &Layer,
    file: &str,
    errors: &mut Vec<ValidationError>,
) -> Vec<(usize, Vec<String>)> {
    let Some(text) = layer.files.get(file) else {
        if !layer.overlay {
            errors.push(ValidationError {
                file: layer.path(file),
                line: 0,
                column: None,
                key: None,
                message: "file is missing (a catalog directory needs every file; an overlay may omit files)".into(),
            });
        }
        return Vec::new();
    };
    let recs = match parse_csv(text) {
        Ok(r) => r,
        Err((line, message)) => {
            errors.push(ValidationError {
                file: layer.path(file),
                line,
                column: None,
                key: None,
                message,
            });
            return Vec::new();
        }
    };
    let Some((head, body)) = recs.split_first() else {
        errors.push(ValidationError {
            file: layer.path(file),
            line: 1,
            column: None,
            key: None,
            message: format!("no header; expected `{}`", header(file)),
        });
        return Vec::new();
    };
    let cols = columns(file);
    let missing: Vec<_> = cols
        .iter()
        .filter(|c| !head.fields.iter().any(|h| h.trim() == **c))
        .collect();
    if !missing.is_empty() {
        errors.push(ValidationError {
            file: layer.path(file),
            line: 1,
            column: None,
            key: None,
            message: format!(
                "header lacks column(s) {}; expected `{}`",
                missing
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                header(file)
            ),
        });
        return Vec::new();
    }
    // A row longer than the header has lost or shifted a value (typically an unquoted comma).
    for r in body.iter().filter(|r| r.fields.len() > head.fields.len()) {
        errors.push(ValidationError {
            file: layer.path(file),
            line: r.line,
            column: None,
            key: None,
            message: format!(
                "{} fields where the header has {} (quote a value that contains a comma)",
                r.fields.len(),
                head.fields.len()
            ),
        });
    }
    // Reorder fields into the canonical column order.
    body.iter()
        .map(|r| {
            let fields = cols
                .iter()
                .map(|c| {
                    head.fields
                        .iter()
                        .position(|h| h.trim() == *c)
                        .and_then(|i| r.fields.get(i))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            (r.line, fields)
        })
        .collect()
}

/// Runs `f` on each record of `file` in `layer` with a [`Rec`] whose key is set by `key_of`.
fn parse_file<T>(
    layer: &Layer,
    file: &str,
    errors: &mut Vec<ValidationError>,
    key_of: impl Fn(&dyn Fn(&str) -> String) -> String,
    mut build: impl FnMut(&mut Rec<'_>) -> T,
) -> Vec<(String, T)> {
    let recs = records(layer, file, errors);
    let cols = columns(file);
    let index: BTreeMap<&str, usize> = cols.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let path = layer.path(file);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (line, fields) in &recs {
        let get = |c: &str| {
            index
                .get(c)
                .and_then(|&i| fields.get(i))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let key = key_of(&get);
        if let Some(first) = seen.insert(key.clone(), *line) {
            errors.push(ValidationError {
                file: path.clone(),
                line: *line,
                column: None,
                key: Some(key.clone()),
                message: format!("duplicate key (first defined on line {first})"),
            });
            continue;
        }
        let mut rec = Rec {
            file: &path,
            line: *line,
            index: &index,
            fields,
            key: Some(key.clone()),
            errors,
        };
        let row = build(&mut rec);
        out.push((key, row));
    }
    out
}

/// Merges an overlay into base rows: same key replaces in place, new keys are appended.
fn merge<T>(base: Vec<(String, T)>, overlay: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut rows = base;
    for (k, v) in overlay {
        match rows.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => rows.push((k, v)),
        }
    }
    rows
}

fn strip<T>(rows: Vec<(String, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, v)| v).collect()
}

// ---------------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------------

/// Options of [`Catalog::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The current date for staleness checks (`None`: no staleness warnings).
    pub today: Option<Date>,
    /// Maximum age of a row's `retrieved` date before a warning, days.
    pub max_age_days: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            today: None,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }
}

/// Identity of a loaded catalog, for manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogIdentity {
    /// Version (`VERSION` line 1), with `+overlay` when an overlay was applied.
    pub version: String,
    /// Release date (`VERSION` line 2).
    pub date: Option<Date>,
    /// SHA-256 (hex) of every file of every layer (name, NUL, content, in [`FILES`] order, base
    /// then overlay).
    pub sha256: String,
    /// Where the catalog came from: `builtin`, or directory paths (base, then overlay).
    pub sources: Vec<String>,
}

/// Provenance of a computed figure: the catalog row and catalog it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRef {
    /// File of the row (`prices.csv`, …).
    pub file: String,
    /// Row key.
    pub key: String,
    /// Whether the row came from the overlay.
    pub overlay: bool,
    /// Catalog version.
    pub catalog_version: String,
    /// Catalog content hash.
    pub catalog_sha256: String,
    /// The row's `retrieved` date.
    pub retrieved: Date,
    /// The row's source.
    pub source: String,
}

/// A resolved instance price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuote {
    /// The instance row.
    pub instance: Instance,
    /// Tier.
    pub tier: Tier,
    /// Price, $/h.
    pub usd_per_hour: f64,
    /// Provenance (key of the price row used, which may be a `*` row).
    pub reference: CatalogRef,
}

/// A loaded, validated pricing catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Version, hash and origin.
    pub identity: CatalogIdentity,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Prices.
    pub prices: Vec<Price>,
    /// Accelerators.
    pub accelerators: Vec<Accelerator>,
    /// On-prem systems.
    pub onprem: Vec<OnPremSystem>,
    /// Grid carbon intensities.
    pub grid: Vec<GridIntensity>,
    /// PUE presets.
    pub pue: Vec<PuePreset>,
    /// Electricity prices.
    pub electricity: Vec<ElectricityPrice>,
    /// API prices.
    pub api_prices: Vec<ApiPrice>,
    /// Stale rows and other non-fatal findings.
    pub warnings: Vec<CatalogWarning>,
}

/// Parsed tables of one layer, with keys.
struct Tables {
    instances: Vec<(String, Instance)>,
    prices: Vec<(String, Price)>,
    accelerators: Vec<(String, Accelerator)>,
    onprem: Vec<(String, OnPremSystem)>,
    grid: Vec<(String, GridIntensity)>,
    pue: Vec<(String, PuePreset)>,
    electricity: Vec<(String, ElectricityPrice)>,
    api: Vec<(String, ApiPrice)>,
}

fn parse_layer(layer: &Layer, errors: &mut Vec<ValidationError>) -> Tables {
    let ov = layer.overlay;
    let instances = parse_file(
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
    );
    let prices = parse_file(
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
    );
    let accelerators = parse_file(
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
    );
    let onprem = parse_file(
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
    );
    let grid = parse_file(
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
    );
    let pue = parse_file(
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
    );
    let electricity = parse_file(
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
    );
    let api = parse_file(
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
    );
    Tables {
        instances,
        prices,
        accelerators,
        onprem,
        grid,
        pue,
        electricity,
        api,
    }
}

fn version_of(layer: &Layer, errors: &mut Vec<ValidationError>) -> (String, Option<Date>) {
    let Some(text) = layer.files.get(VERSION_FILE) else {
        if !layer.overlay {
            errors.push(ValidationError {
                file: layer.path(VERSION_FILE),
                line: 0,
                column: None,
                key: None,
                message: "file is missing (line 1: version, line 2: YYYY-MM-DD date)".into(),
            });
        }
        return (String::new(), None);
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let version = lines.next().unwrap_or("").to_string();
    if version.is_empty() {
        errors.push(ValidationError {
            file: layer.path(VERSION_FILE),
            line: 1,
            column: None,
            key: None,
            message: "empty version".into(),
        });
    }
    let date = lines.next().and_then(Date::parse);
    (version, date)
}

fn hash_layers(layers: &[&Layer]) -> String {
    let mut h = Sha256::new();
    for layer in layers {
        for name in std::iter::once(&VERSION_FILE).chain(FILES.iter()) {
            if let Some(text) = layer.files.get(*name) {
                if layer.overlay {
                    h.update(b"overlay/");
                }
                h.update(name.as_bytes());
                h.update([0u8]);
                h.update(text.as_bytes());
                h.update([0u8]);
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// The shipped catalog compiled into the binary.
    pub fn builtin(opts: &LoadOptions) -> Result<Catalog, CatalogError> {
        Catalog::from_layers(Layer::builtin(), None, opts)
    }

    /// The catalog in `base` (or the built-in one when `None`), with `overlay` applied on top.
    pub fn load(
        base: Option<&Path>,
        overlay: Option<&Path>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let base = match base {
            Some(dir) => Layer::read_dir(dir, false)?,
            None => Layer::builtin(),
        };
        let overlay = overlay.map(|d| Layer::read_dir(d, true)).transpose()?;
        Catalog::from_layers(base, overlay, opts)
    }

    /// Builds a catalog from in-memory file contents (tests, tools): `files` maps file names to
    /// CSV text; `overlay` likewise.
    pub fn from_texts(
        base: &BTreeMap<String, String>,
        overlay: Option<&BTreeMap<String, String>>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let base = Layer {
            label: "base".into(),
            files: base.clone(),
            overlay: false,
        };
        let overlay = overlay.map(|f| Layer {
            label: "overlay".into(),
            files: f.clone(),
            overlay: true,
        });
        Catalog::from_layers(base, overlay, opts)
    }

    fn from_layers(
        base: Layer,
        overlay: Option<Layer>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let mut errors = Vec::new();
        let (mut version, date) = version_of(&base, &mut errors);
        let b = parse_layer(&base, &mut errors);
        let mut layers = vec![&base];
        let t = match &overlay {
            Some(ov) => {
                let o = parse_layer(ov, &mut errors);
                version_of(ov, &mut errors);
                version.push_str("+overlay");
                layers.push(ov);
                Tables {
                    instances: merge(b.instances, o.instances),
                    prices: merge(b.prices, o.prices),
                    accelerators: merge(b.accelerators, o.accelerators),
                    onprem: merge(b.onprem, o.onprem),
                    grid: merge(b.grid, o.grid),
                    pue: merge(b.pue, o.pue),
                    electricity: merge(b.electricity, o.electricity),
                    api: merge(b.api, o.api),
                }
            }
            None => b,
        };
        let sha256 = hash_layers(&layers);
        let sources = layers
            .iter()
            .map(|l| {
                if l.label == "catalog" && !l.overlay {
                    "builtin".to_string()
                } else {
                    l.label.clone()
                }
            })
            .collect();
        let cat = Catalog {
            identity: CatalogIdentity {
                version,
                date,
                sha256,
                sources,
            },
            instances: strip(t.instances),
            prices: strip(t.prices),
            accelerators: strip(t.accelerators),
            onprem: strip(t.onprem),
            grid: strip(t.grid),
            pue: strip(t.pue),
            electricity: strip(t.electricity),
            api_prices: strip(t.api),
            warnings: Vec::new(),
        };
        cat.cross_check(&mut errors);
        if !errors.is_empty() {
            return Err(CatalogError::Invalid(errors));
        }
        let mut cat = cat;
        cat.warnings = cat.stale(opts);
        Ok(cat)
    }

    /// Rules that span rows or files.
    fn cross_check(&self, errors: &mut Vec<ValidationError>) {
        let accels: BTreeSet<&str> = self.accelerators.iter().map(|a| a.name.as_str()).collect();
        for i in &self.instances {
            if let Some(a) = &i.accelerator {
                if !accels.contains(a.as_str()) {
                    errors.push(ValidationError {
                        file: i.origin.file.clone(),
                        line: i.origin.line,
                        column: Some("accelerator".into()),
                        key: Some(i.key()),
                        message: format!("accelerator `{a}` is not in accelerators.csv"),
                    });
                }
            }
        }
        for s in &self.onprem {
            if let Some(a) = &s.accelerator {
                if !accels.contains(a.as_str()) {
                    errors.push(ValidationError {
                        file: s.origin.file.clone(),
                        line: s.origin.line,
                        column: Some("accelerator".into()),
                        key: Some(s.system.clone()),
                        message: format!("accelerator `{a}` is not in accelerators.csv"),
                    });
                }
            }
        }
        for p in &self.prices {
            let known = self.instances.iter().any(|i| {
                i.provider == p.provider
                    && i.instance_type == p.instance_type
                    && (p.region == "*" || i.region == p.region)
            });
            if !known {
                errors.push(ValidationError {
                    file: p.origin.file.clone(),
                    line: p.origin.line,
                    column: Some("instance_type".into()),
                    key: Some(p.key()),
                    message: "no matching row in instances.csv (provider, instance_type, region)"
                        .into(),
                });
            }
            if p.tier == Tier::Spot && !p.spot_above_on_demand_ok {
                let od = self.prices.iter().find(|q| {
                    q.tier == Tier::OnDemand
                        && q.provider == p.provider
                        && q.instance_type == p.instance_type
                        && q.region == p.region
                });
                if let Some(od) = od {
                    if p.usd_per_hour > od.usd_per_hour {
                        errors.push(ValidationError {
                            file: p.origin.file.clone(),
                            line: p.origin.line,
                            column: Some("usd_per_hour".into()),
                            key: Some(p.key()),
                            message: format!(
                                "spot price {} is above the on-demand price {} ({}:{}); set \
                                 spot_above_on_demand_ok=true if that is real",
                                p.usd_per_hour, od.usd_per_hour, od.origin.file, od.origin.line
                            ),
                        });
                    }
                }
            }
        }
    }

    fn stale(&self, opts: &LoadOptions) -> Vec<CatalogWarning> {
        let Some(today) = opts.today else {
            return Vec::new();
        };
        let limit = i64::from(opts.max_age_days);
        let mut out = Vec::new();
        let mut check = |origin: &RowOrigin, key: String, retrieved: Date| {
            let age = today.days_since_epoch() - retrieved.days_since_epoch();
            if age > limit {
                out.push(CatalogWarning {
                    file: origin.file.clone(),
                    line: origin.line,
                    key,
                    message: format!(
                        "retrieved {retrieved}, {age} days before {today} (older than {limit} days)"
                    ),
                });
            }
        };
        for p in &self.prices {
            check(&p.origin, p.key(), p.retrieved);
        }
        for a in &self.accelerators {
            check(&a.origin, a.name.clone(), a.retrieved);
        }
        for s in &self.onprem {
            check(&s.origin, s.system.clone(), s.retrieved);
        }
        for g in &self.grid {
            check(&g.origin, g.key(), g.retrieved);
        }
        for p in &self.pue {
            check(&p.origin, p.preset.clone(), p.retrieved);
        }
        for e in &self.electricity {
            check(&e.origin, e.key(), e.retrieved);
        }
        for a in &self.api_prices {
            check(&a.origin, a.key(), a.retrieved);
        }
        out
    }

    /// A [`CatalogRef`] for a row of this catalog.
    pub fn reference(
        &self,
        origin: &RowOrigin,
        key: String,
        retrieved: Date,
        source: &str,
    ) -> CatalogRef {
        CatalogRef {
            file: Path::new(&origin.file)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| origin.file.clone()),
            key,
            overlay: origin.overlay,
            catalog_version: self.identity.version.clone(),
            catalog_sha256: self.identity.sha256.clone(),
            retrieved,
            source: source.to_string(),
        }
    }

    /// Instance rows matching `instance_type` (and `provider`/`region` when given).
    pub fn find_instances(
        &self,
        provider: Option<&str>,
        instance_type: &str,
        region: Option<&str>,
    ) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| {
                i.instance_type == instance_type
                    && provider.is_none_or(|p| i.provider == p)
                    && region.is_none_or(|r| i.region == r)
            })
            .collect()
    }

    /// The price of `instance_type` under `tier`. `provider` and `region` may be omitted when
    /// only one candidate exists. An exact-region price row beats a `*` row.
    pub fn price(
        &self,
        provider: Option<&str>,
        instance_type: &str,
        tier: Tier,
        region: Option<&str>,
    ) -> Result<PriceQuote, LookupError> {
        let instances = self.find_instances(provider, instance_type, region);
        if instances.is_empty() {
            let all = self.find_instances(provider, instance_type, None);
            let hint = if all.is_empty() {
                String::new()
            } else {
                format!(
                    "; regions with this instance: {}",
                    all.iter()
                        .map(|i| i.region.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(LookupError::NotFound {
                what: "instance",
                query: [provider.unwrap_or(""), instance_type, region.unwrap_or("")]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
                hint,
            });
        }
        let providers: BTreeSet<&str> = instances.iter().map(|i| i.provider.as_str()).collect();
        if providers.len() > 1 {
            return Err(LookupError::Ambiguous {
                what: "instance",
                query: instance_type.into(),
                choices: format!(
                    "offered by {}",
                    providers.into_iter().collect::<Vec<_>>().join(", ")
                ),
                narrow: "provider",
            });
        }
        // Candidates that actually have a price for this tier.
        let priced: Vec<(&Instance, &Price)> = instances
            .iter()
            .filter_map(|i| self.price_row(i, tier).map(|p| (*i, p)))
            .collect();
        match priced.as_slice() {
            [] => Err(LookupError::NotFound {
                what: "price",
                query: format!(
                    "{instance_type} {tier}{}",
                    region.map(|r| format!(" in {r}")).unwrap_or_default()
                ),
                hint: {
                    let tiers: BTreeSet<&str> = instances
                        .iter()
                        .flat_map(|i| {
                            Tier::ALL
                                .into_iter()
                                .filter(|t| self.price_row(i, *t).is_some())
                        })
                        .map(Tier::name)
                        .collect();
                    if tiers.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; tiers with a price: {}",
                            tiers.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    }
                },
            }),
            [(i, p)] => Ok(PriceQuote {
                instance: (*i).clone(),
                tier,
                usd_per_hour: p.usd_per_hour,
                reference: self.reference(&p.origin, p.key(), p.retrieved, &p.source),
            }),
            many => Err(LookupError::Ambiguous {
                what: "price",
                query: format!("{instance_type} {tier}"),
                choices: format!(
                    "regions {}",
                    many.iter()
                        .map(|(i, _)| i.region.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                narrow: "region",
            }),
        }
    }

    /// The price row for an instance row and tier: the exact region, else a `*` row.
    pub fn price_row(&self, instance: &Instance, tier: Tier) -> Option<&Price> {
        let matching = |region: &str| {
            self.prices.iter().find(|p| {
                p.tier == tier
                    && p.provider == instance.provider
                    && p.instance_type == instance.instance_type
                    && p.region == region
            })
        };
        matching(&instance.region).or_else(|| matching("*"))
    }

    /// The accelerator named `name`.
    pub fn accelerator(&self, name: &str) -> Option<&Accelerator> {
        self.accelerators.iter().find(|a| a.name == name)
    }

    /// The most recent grid intensity of `zone`.
    pub fn grid_intensity(&self, zone: &str) -> Result<&GridIntensity, LookupError> {
        self.grid
            .iter()
            .filter(|g| g.zone == zone)
            .max_by_key(|g| g.year)
            .ok_or_else(|| LookupError::NotFound {
                what: "grid zone",
                query: zone.into(),
                hint: known(self.grid.iter().map(|g| g.zone.as_str())),
            })
    }

    /// The PUE preset `name`.
    pub fn pue_preset(&self, name: &str) -> Result<&PuePreset, LookupError> {
        self.pue
            .iter()
            .find(|p| p.preset == name)
            .ok_or_else(|| LookupError::NotFound {
                what: "PUE preset",
                query: name.into(),
                hint: known(self.pue.iter().map(|p| p.preset.as_str())),
            })
    }

    /// The on-prem system `name`.
    pub fn onprem_system(&self, name: &str) -> Result<&OnPremSystem, LookupError> {
        self.onprem
            .iter()
            .find(|s| s.system == name)
            .ok_or_else(|| LookupError::NotFound {
                what: "on-prem system",
                query: name.into(),
                hint: known(self.onprem.iter().map(|s| s.system.as_str())),
            })
    }

    /// The latest average electricity price of `key`: a zone (`US-OH`) or `zone/sector`
    /// (`US-OH/industrial`). A zone with several sectors needs the sector.
    pub fn electricity_price(&self, key: &str) -> Result<&ElectricityPrice, LookupError> {
        let (zone, sector) = match key.split_once('/') {
            Some((z, s)) => (z, Some(s)),
            None => (key, None),
        };
        let rows: Vec<&ElectricityPrice> = self
            .electricity
            .iter()
            .filter(|e| e.zone == zone && sector.is_none_or(|s| e.sector == s))
            .collect();
        let sectors: BTreeSet<&str> = rows.iter().map(|e| e.sector.as_str()).collect();
        if sectors.len() > 1 {
            return Err(LookupError::NotFound {
                what: "electricity price",
                query: key.into(),
                hint: format!(
                    "; the zone has several sectors, write `{zone}/SECTOR` with one of: {}",
                    sectors.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        rows.into_iter()
            .max_by_key(|e| e.year)
            .ok_or_else(|| LookupError::NotFound {
                what: "electricity price",
                query: key.into(),
                hint: known(self.electricity.iter().map(|e| e.zone.as_str())),
            })
    }

    /// The API price `provider/model`.
    pub fn api_price(&self, key: &str) -> Result<&ApiPrice, LookupError> {
        self.api_prices
            .iter()
            .find(|a| a.key() == key)
            .ok_or_else(|| LookupError::NotFound {
                what: "API model",
                query: key.into(),
                hint: known(
                    self.api_prices
                        .iter()
                        .map(|a| a.key())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                ),
            })
    }
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let set: BTreeSet<&str> = names.collect();
    if set.is_empty() {
        "; the catalog has none".into()
    } else {
        format!(
            "; known: {}",
            set.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    /// A minimal valid catalog: one GPU instance in one region with on-demand and spot prices.
    fn base() -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = FILES
            .iter()
            .map(|f| ((*f).to_string(), format!("{}\n", header(f))))
            .collect();
        m.insert("VERSION".into(), "1.0.0\n2026-01-01\n".into());
        m.insert(
            "instances.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,T4,1,16,4,16,x86_64,\naws,g.x,eu-west-1,T4,1,16,4,16,x86_64,\n",
                header("instances.csv")
            ),
        );
        m.insert(
            "prices.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.5,,2026-01-01,src,,\naws,g.x,us-east-1,spot,0.2,,2026-01-01,src,,\n",
                header("prices.csv")
            ),
        );
        m.insert(
            "accelerators.csv".into(),
            format!(
                "{}\nT4,NVIDIA,PCIe,16,70,,,2026-01-01,datasheet,\n",
                header("accelerators.csv")
            ),
        );
        m
    }

    fn with(file: &str, extra_rows: &str) -> BTreeMap<String, String> {
        let mut m = base();
        m.get_mut(file).unwrap().push_str(extra_rows);
        m
    }

    fn errors(m: &BTreeMap<String, String>) -> Vec<ValidationError> {
        match Catalog::from_texts(m, None, &LoadOptions::default()) {
            Err(CatalogError::Invalid(e)) => e,
            Ok(_) => panic!("expected validation errors"),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    fn only(errs: &[ValidationError]) -> &ValidationError {
        assert_eq!(errs.len(), 1, "{errs:#?}");
        &errs[0]
    }

    #[test]
    fn builtin_catalog_is_valid() {
        let c = Catalog::builtin(&LoadOptions::default()).unwrap();
        assert!(!c.instances.is_empty());
        assert!(c.prices.iter().all(|p| p.usd_per_hour > 0.0));
        assert_eq!(c.identity.sources, vec!["builtin".to_string()]);
        assert_eq!(c.identity.sha256.len(), 64);
        assert!(!c.identity.version.is_empty());
        // Every shipped price names its source and retrieval date.
        assert!(c.prices.iter().all(|p| !p.source.is_empty()));
    }

    #[test]
    fn base_is_valid_and_quotes_resolve() {
        let c = Catalog::from_texts(&base(), None, &LoadOptions::default()).unwrap();
        let q = c.price(None, "g.x", Tier::Spot, Some("us-east-1")).unwrap();
        assert_eq!(q.usd_per_hour, 0.2);
        assert_eq!(q.reference.key, "aws/g.x/us-east-1/spot");
        assert_eq!(q.reference.file, "prices.csv");
        assert_eq!(q.reference.catalog_version, "1.0.0");
        // Only us-east-1 has prices, so the region may be omitted.
        assert!(c.price(None, "g.x", Tier::OnDemand, None).is_ok());
        assert!(matches!(
            c.price(None, "g.x", Tier::Reserved1y, None),
            Err(LookupError::NotFound { .. })
        ));
        assert!(matches!(
            c.price(None, "nope", Tier::OnDemand, None),
            Err(LookupError::NotFound { .. })
        ));
    }

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
    fn spot_above_on_demand_needs_the_flag() {
        let mut m = base();
        m.insert(
            "prices.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.5,,2026-01-01,src,,\naws,g.x,us-east-1,spot,0.7,,2026-01-01,src,,\n",
                header("prices.csv")
            ),
        );
        let e = errors(&m);
        let e = only(&e);
        assert_eq!((e.line, e.column.as_deref()), (3, Some("usd_per_hour")));
        assert!(e.message.contains("above the on-demand price 0.5"), "{e}");
        let flagged = m["prices.csv"].replace("0.7,,2026-01-01,src,,", "0.7,,2026-01-01,src,true,");
        m.insert("prices.csv".into(), flagged);
        assert!(Catalog::from_texts(&m, None, &LoadOptions::default()).is_ok());
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
    fn keys_must_be_unique() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,us-east-1,on-demand,0.6,,2026-01-01,src,,\n",
        ));
        let e = only(&e);
        assert_eq!(e.line, 4);
        assert_eq!(e.key.as_deref(), Some("aws/g.x/us-east-1/on_demand"));
        assert!(e
            .message
            .contains("duplicate key (first defined on line 2)"));
    }

    #[test]
    fn rows_longer_than_the_header_are_errors() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,on_demand,0.6,,2026-01-01,src,,a note, with a comma\n",
        ));
        let e = only(&e);
        assert_eq!((e.line, e.column.as_deref()), (4, None));
        assert!(
            e.message.contains("11 fields where the header has 10"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pue.csv"), b"preset,pue\nx,1\xff\n").unwrap();
        match Catalog::load(None, Some(dir.path()), &LoadOptions::default()) {
            Err(CatalogError::Invalid(e)) => {
                let e = only(&e);
                assert!(e.file.ends_with("pue.csv"), "{e}");
                assert_eq!(e.line, 2);
                assert!(e.message.contains("not UTF-8 (byte 4 of the line)"), "{e}");
            }
            other => panic!("expected a located error, got {other:?}"),
        }
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

    #[test]
    fn stale_rows_are_warnings() {
        let opts = LoadOptions {
            today: Some(d("2026-12-31")),
            max_age_days: 180,
        };
        let c = Catalog::from_texts(&base(), None, &opts).unwrap();
        // 2 prices + 1 accelerator retrieved 2026-01-01, 364 days before.
        assert_eq!(c.warnings.len(), 3, "{:#?}", c.warnings);
        assert!(c.warnings[0].message.contains("364 days before 2026-12-31"));
        let fresh = LoadOptions {
            today: Some(d("2026-02-01")),
            max_age_days: 180,
        };
        assert!(Catalog::from_texts(&base(), None, &fresh)
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn overlay_same_key_replaces_and_new_keys_add() {
        let mut ov = BTreeMap::new();
        ov.insert(
            "prices.csv".to_string(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.45,,2026-02-01,my contract,,\naws,g.x,us-east-1,reserved_1y,0.3,,2026-02-01,my contract,,\n",
                header("prices.csv")
            ),
        );
        let c = Catalog::from_texts(&base(), Some(&ov), &LoadOptions::default()).unwrap();
        let base_c = Catalog::from_texts(&base(), None, &LoadOptions::default()).unwrap();
        let od = c
            .price(None, "g.x", Tier::OnDemand, Some("us-east-1"))
            .unwrap();
        assert_eq!(od.usd_per_hour, 0.45);
        assert!(od.reference.overlay);
        assert_eq!(od.reference.source, "my contract");
        assert_eq!(
            c.price(None, "g.x", Tier::Reserved1y, None)
                .unwrap()
                .usd_per_hour,
            0.3
        );
        // Untouched rows stay, from the base.
        let spot = c.price(None, "g.x", Tier::Spot, None).unwrap();
        assert!(!spot.reference.overlay);
        assert_eq!(c.prices.len(), 3);
        assert_eq!(c.identity.version, "1.0.0+overlay");
        assert_ne!(c.identity.sha256, base_c.identity.sha256);
        // The overlay is validated like the base: spot 0.2 stays below the new on-demand 0.45.
        let mut bad = ov.clone();
        bad.insert(
            "prices.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.1,,2026-02-01,x,,\n",
                header("prices.csv")
            ),
        );
        let e = match Catalog::from_texts(&base(), Some(&bad), &LoadOptions::default()) {
            Err(CatalogError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(only(&e).message.contains("above the on-demand price 0.1"));
        assert!(
            only(&e).file.starts_with("base/"),
            "the spot row is the base one"
        );
    }

    #[test]
    fn exact_region_beats_star_rows() {
        let mut ov = BTreeMap::new();
        ov.insert(
            "prices.csv".to_string(),
            format!(
                "{}\naws,g.x,*,on_demand,0.9,,2026-02-01,list,,\n",
                header("prices.csv")
            ),
        );
        let c = Catalog::from_texts(&base(), Some(&ov), &LoadOptions::default()).unwrap();
        // us-east-1 has its own row: the `*` row does not apply.
        let q = c
            .price(None, "g.x", Tier::OnDemand, Some("us-east-1"))
            .unwrap();
        assert_eq!(q.usd_per_hour, 0.5);
        // eu-west-1 has none: the `*` row applies, and names itself.
        let q = c
            .price(None, "g.x", Tier::OnDemand, Some("eu-west-1"))
            .unwrap();
        assert_eq!(q.usd_per_hour, 0.9);
        assert_eq!(q.reference.key, "aws/g.x/*/on_demand");
        // Without a region both regions now have an on-demand price: ambiguous.
        assert!(matches!(
            c.price(None, "g.x", Tier::OnDemand, None),
            Err(LookupError::Ambiguous {
                narrow: "region",
                ..
            })
        ));
    }

    #[test]
    fn csv_parser_handles_quotes_and_lines() {
        let r =
            parse_csv("a,b\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",2\r\nlast,3").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].fields, vec!["x,1", "say \"hi\""]);
        assert_eq!((r[2].line, r[2].fields[0].as_str()), (4, "multi\nline"));
        assert_eq!((r[3].line, r[3].fields[1].as_str()), (6, "3"));
        assert!(parse_csv("a\n\"open").is_err());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn dates() {
        assert_eq!(d("1970-01-01").days_since_epoch(), 0);
        assert_eq!(d("2000-03-01").days_since_epoch(), 11_017);
        assert_eq!(d("2024-02-29").to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("2023-1-01").is_none());
        assert_eq!(Tier::parse("Committed-3y"), Some(Tier::Reserved3y));
    }
}
