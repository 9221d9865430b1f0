//! A run priced under a cost spec: the catalog it names loaded, the spec resolved, every cell
//! costed, and the idle power of the `(1 − U)` share taken from the run's own idle baseline when
//! that describes the cells' device.

use std::path::Path;

use tcobench_cost::costing::{CostSelection, RunCosts};
use tcobench_cost::formulas::IdlePowerSource;
use tcobench_cost::{Catalog, LoadOptions};
use tcobench_results::schema::{self, Manifest};
use tcobench_results::spec::CostingSpec;
use tcobench_results::{fmt_sig, Metric};

use crate::RunStats;

/// Loads the catalog a costing spec names (the built-in one, plus `pricing.catalog` as an
/// overlay), resolves the spec and prices every cell of `stats` — replicated cells at their
/// execution level ([`tcobench_results::CellStats::at_execution_level`]). `label` names a sweep
/// variant.
///
/// When the spec sets no `energy.idle_watts`, the run's measured idle baseline stands in for the
/// idle power of the `(1 − U)` share ([`idle_power_from_run`]); the costs' assumptions say which
/// idle power was used and where it came from.
pub fn price_run(
    stats: &RunStats,
    manifest: &Manifest,
    spec: &CostingSpec,
    label: Option<String>,
) -> Result<RunCosts, String> {
    // Priced at the execution level: "how sure" is then as sure as the executions allow.
    let stats = &stats.at_execution_level();
    let overlay = spec.pricing.as_ref().and_then(|p| p.catalog.clone());
    let catalog = Catalog::load(
        None,
        overlay.as_deref().map(Path::new),
        &LoadOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut selection =
        CostSelection::resolve(spec, &catalog, label, overlay).map_err(|e| e.to_string())?;
    let idle = idle_power_from_run(&mut selection, stats, manifest);
    let mut costs =
        tcobench_cost::costing::cost_run(&stats.cells, &selection, &catalog, &manifest.host);
    costs.assumptions.push(idle);
    Ok(costs)
}

/// Fills a selection's idle power from the run when the spec gives none, and says in one
/// sentence which idle power the figures use.
///
/// The run's idle baseline (`power.idle_baseline`, measured before the matrix with the run's own
/// power method) is used when it has a power figure and every cell with measured energy used
/// that same method — it then describes the same device as the busy power of each replica.
/// Otherwise idle time stays charged at busy power, which the sentence (and the report, next to
/// the figures) states.
pub fn idle_power_from_run(
    selection: &mut CostSelection,
    stats: &RunStats,
    manifest: &Manifest,
) -> String {
    let uses = "kWh per 1M tokens when U is below 1, the workload's kWh/month and \
                kgCO2e/month, and on-prem electricity";
    if let Some(w) = selection.idle_watts {
        selection.idle_watts_source = Some(IdlePowerSource::Scenario);
        return format!(
            "Idle power for the (1 − U) share of time: {} W per replica, {} — used in {uses}.",
            fmt_sig(w, 4),
            IdlePowerSource::Scenario.describe()
        );
    }
    selection.idle_watts_source = Some(IdlePowerSource::BusyAssumed);
    let busy = IdlePowerSource::BusyAssumed.describe();
    let Some(baseline) = &manifest.power.idle_baseline else {
        return format!(
            "{busy} (the run took no idle baseline — `power.idle_baseline_s` was 0, or the clock \
             was virtual — and the scenario sets no `energy.idle_watts`): {uses} charge idle time \
             at busy power, an upper bound at low utilisation."
        );
    };
    let window = &baseline.window;
    let Some(watts) = baseline.watts.filter(|w| w.is_finite() && *w >= 0.0) else {
        return format!(
            "{busy} (the idle baseline has no power figure, and the scenario sets no \
             `energy.idle_watts`): {uses} charge idle time at busy power, an upper bound at low \
             utilisation."
        );
    };
    let mut other: Vec<&str> = stats
        .cells
        .iter()
        .filter(|c| c.metric(Metric::EnergyJPerToken).is_some())
        .filter_map(|c| c.energy_method.as_deref())
        .filter(|m| *m != window.method)
        .collect();
    other.sort_unstable();
    other.dedup();
    if !other.is_empty() {
        return format!(
            "{busy} (the idle baseline was measured with `{}`, but cells were measured with `{}`, \
             so it is not their idle power; set `energy.idle_watts`): {uses} charge idle time at \
             busy power, an upper bound at low utilisation.",
            window.method,
            other.join("`, `")
        );
    }
    selection.idle_watts = Some(watts);
    selection.idle_watts_source = Some(IdlePowerSource::MeasuredBaseline);
    let mut caveats = Vec::new();
    if window.basis != "measured" {
        caveats.push(format!("{}, not a measurement", window.basis));
    }
    if window.validity == schema::EnergyValidity::Invalid {
        caveats.push(format!(
            "its window is marked invalid: {}",
            window
                .invalid_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        ));
    }
    format!(
        "Idle power for the (1 − U) share of time: {} W per replica, {} (`{}`, {}, {} s before \
         the matrix{}; the scenario sets no `energy.idle_watts`) — used in {uses}.",
        fmt_sig(watts, 4),
        IdlePowerSource::MeasuredBaseline.describe(),
        window.method,
        window.device,
        fmt_sig(window.window_ms / 1000.0, 3),
        if caveats.is_empty() {
            String::new()
        } else {
            format!("; {}", caveats.join("; "))
        }
    )
}
