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
//!
//! # Where things are
//!
//! * `date.rs`: [`Date`], the `YYYY-MM-DD` calendar date of the catalog's date columns.
//! * `csv.rs`: the RFC 4180 reader and field quoting ([`parse_csv`], [`csv_field`]).
//! * `error.rs`: what loading and lookups report ([`ValidationError`], [`CatalogError`],
//!   [`CatalogWarning`], [`LookupError`]).
//! * `rows.rs`: the row types, one per file ([`Instance`], [`Price`], [`Accelerator`],
//!   [`OnPremSystem`], [`GridIntensity`], [`PuePreset`], [`ElectricityPrice`], [`ApiPrice`]),
//!   with [`Tier`] and [`RowOrigin`].
//! * `table.rs`: the generic table reader: each file's columns ([`header`]), the header check,
//!   typed field access with located errors, duplicate keys.
//! * `parse.rs`: the files of one layer parsed into typed rows, with the rules of a single row.
//! * `layer.rs`: the raw text of one layer: the built-in files, a directory or an overlay.
//! * `identity.rs`: [`CatalogIdentity`] (version, content hash, sources) and [`CatalogRef`], the
//!   provenance of a looked-up figure.
//! * `load.rs`: [`Catalog`] and [`LoadOptions`]: layers parsed, the overlay merged, validated.
//! * `validate.rs`: the rules that span rows or files, and the staleness warnings.
//! * `lookup.rs`: the lookups ([`Catalog::price`], [`Catalog::grid_intensity`], …) and
//!   [`PriceQuote`].

mod csv;
mod date;
mod error;
mod identity;
mod layer;
mod load;
mod lookup;
mod parse;
mod rows;
mod table;
mod validate;

#[cfg(test)]
mod fixtures;

pub use csv::{csv_field, parse_csv, CsvRecord};
pub use date::Date;
pub use error::{CatalogError, CatalogWarning, LookupError, ValidationError};
pub use identity::{CatalogIdentity, CatalogRef};
pub use load::{Catalog, LoadOptions};
pub use lookup::PriceQuote;
pub use rows::{
    Accelerator, ApiPrice, ElectricityPrice, GridIntensity, Instance, OnPremSystem, Price,
    PuePreset, RowOrigin, Tier,
};
pub use table::header;

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
