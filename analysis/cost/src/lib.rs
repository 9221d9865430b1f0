//! What it costs: the dated, sourced pricing catalog and the cost, energy, carbon and TCO model.
//!
//! * [`catalog`]: the catalog types, loading (built-in, directory, overlay), validation and
//!   lookups. Every looked-up figure carries a [`catalog::CatalogRef`] (file, row key, catalog
//!   version and content hash) so that a computed cost can name the row it came from.
//! * [`formulas`]: the pure formulas ($/1M tokens, kWh and gCO2e per 1M tokens, on-prem $/h,
//!   workload sizing, break-even, ROI, self-host vs API), each documented with its units.
//! * [`costing`]: a run's measured cells priced under a scenario's or variant's selection,
//!   with recommendations per tier.
//! * [`skypilot`]: import of SkyPilot catalog CSVs into the catalog layout.
//! * [`diff`]: differences between two catalogs (price history).

pub mod catalog;
pub mod costing;
pub mod diff;
pub mod formulas;
pub mod skypilot;

pub use catalog::{
    Catalog, CatalogError, CatalogIdentity, CatalogRef, CatalogWarning, Date, LoadOptions,
    LookupError, PriceQuote, Tier, ValidationError,
};
pub use formulas::FormulaError;
