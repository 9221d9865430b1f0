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
//!
//! # Where things are
//!
//! * `selection.rs`: the resolved selection ([`CostSelection::resolve`]): instances, tiers,
//!   utilisation, PUE, grid, idle and embodied figures, the SLO and the workload, each checked
//!   under its dotted key ([`SelectionError`]) and each catalog figure with its row ([`Sourced`]).
//! * `alternatives.rs`: what renting is compared with, resolved: the owned system of `onprem:`
//!   ([`OnPremSelection`]) and the per-token APIs of `api:` ([`ApiSelection`]).
//! * `cell.rs`: the figures of one cell ([`cost_cell`]): [`Figure`], $/1M tokens per instance
//!   and tier ([`PriceFigures`], [`Unpriced`]), energy and carbon ([`EnergyFigures`]), the SLO
//!   check ([`SloCheck`]), all in [`CellCost`].
//! * `recommend.rs`: the cheapest configuration per tier and model meeting the SLO
//!   ([`Recommendation`]) and the batch size where $/1M tokens stops improving
//!   ([`BatchSaturation`]).
//! * `tco.rs`: the scenario's workload on each recommendation against owning and APIs
//!   ([`WorkloadTco`], [`TcoOption`]) and what the scenario lacks for those comparisons.
//! * `run.rs`: a whole run ([`cost_run`] → [`RunCosts`]): every cell, the assumptions in
//!   words, the run-level warnings.
//!
//! [`CostingSpec`]: tcobench_results::spec::CostingSpec
//! [`Catalog`]: crate::catalog::Catalog
//! [`CatalogRef`]: crate::catalog::CatalogRef

mod alternatives;
mod cell;
mod recommend;
mod run;
mod selection;
mod tco;

#[cfg(test)]
mod fixtures;

pub use alternatives::{ApiSelection, OnPremSelection};
pub use cell::{cost_cell, CellCost, EnergyFigures, Figure, PriceFigures, SloCheck, Unpriced};
pub use recommend::{BatchSaturation, Recommendation};
pub use run::{cost_run, RunCosts};
pub use selection::{
    CostSelection, SelectedInstance, SelectionError, Slo, SloMetric, Sourced, WorkloadSpec,
};
pub use tco::{TcoOption, WorkloadTco};
