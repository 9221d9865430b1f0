//! A whole run under one selection ([`cost_run`] → [`RunCosts`]): every measured cell costed,
//! the modelling assumptions in words, the run-level warnings, and the recommendations, batch
//! knees and workload TCO built on the cells.

use serde::{Deserialize, Serialize};

use super::cell::{cost_cell, instance_name, replicas, CellCost};
use super::recommend::{batch_saturation, recommendations, BatchSaturation, Recommendation};
use super::selection::CostSelection;
use super::tco::{tco_missing, workload_tco, WorkloadTco};
use crate::catalog::Catalog;
use tcobench_results::schema::HostInfo;
use tcobench_results::CellStats;

/// Costs of a whole run under one selection (`stats.json` → `costing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCosts {
    /// The resolved selection.
    pub selection: CostSelection,
    /// Modelling assumptions behind every figure, in words.
    pub assumptions: Vec<String>,
    /// Per-cell figures, in cell order.
    pub cells: Vec<CellCost>,
    /// Per tier, the cheapest configuration meeting the SLO.
    pub recommendations: Vec<Recommendation>,
    /// Per configuration, the batch size beyond which $/1M tokens stops improving.
    pub batch_saturation: Vec<BatchSaturation>,
    /// Run-level findings (no instance fits, no cell meets the SLO…).
    pub warnings: Vec<String>,
    /// The scenario's workload served by each recommendation, against owning and per-token APIs.
    #[serde(default)]
    pub tco: Vec<WorkloadTco>,
    /// What to add to the scenario for the TCO comparisons it lacks (empty when complete).
    #[serde(default)]
    pub tco_missing: Vec<String>,
    /// Files whose sections replaced the run's own when these costs were computed (`tcobench
    /// report --pricing/--energy`), in words; empty for the run's own selection.
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// Costs every measured cell under `sel`, with recommendations and the batch knee.
pub fn cost_run(
    measured: &[CellStats],
    sel: &CostSelection,
    catalog: &Catalog,
    host: &HostInfo,
) -> RunCosts {
    let cells: Vec<CellCost> = measured
        .iter()
        .map(|c| cost_cell(c, sel, catalog))
        .collect();
    let mut assumptions = vec![
        format!(
            "Throughput and energy were measured on this host ({}, {} logical CPUs{}); prices are the catalog's for the instances named, as if they delivered the same throughput per replica.",
            host.cpu_model,
            host.cpu_logical_cores,
            if host.gpus.is_empty() { String::new() } else { format!(", GPUs: {}", host.gpus.join(", ")) }
        ),
        "One model replica per accelerator on GPU instances and one per CPU-only instance; instance throughput = replicas × measured tokens/s.".into(),
        format!(
            "Utilisation U = {} (busy fraction of paid time): $/1M tokens = P·10⁶/(3600·T·U).",
            sel.utilization
        ),
        format!(
            "PUE = {} ({}).",
            sel.pue.value,
            sel.pue.reference.as_ref().map(|r| format!("{} row `{}`", r.file, r.key)).unwrap_or_else(|| "given in the scenario".into())
        ),
        "Intervals are 95 % t intervals of the mean over timed repetitions, mapped through each formula.".into(),
    ];
    if let Some(g) = &sel.grid {
        assumptions.push(format!(
            "Grid intensity {} gCO2e/kWh ({}).",
            g.value,
            g.reference
                .as_ref()
                .map(|r| format!("{} row `{}`, {}", r.file, r.key, r.source))
                .unwrap_or_else(|| "given in the scenario".into())
        ));
    }
    if sel.embodied.is_none() {
        assumptions
            .push("Embodied emissions are not included (no `energy.embodied_kg` selected).".into());
    }
    let mut warnings = Vec::new();
    for si in &sel.instances {
        let fits = measured.iter().any(|c| replicas(c, &si.instance).is_ok());
        if !fits {
            warnings.push(format!(
                "instance {} fits no cell of this run (CPU cells price on CPU-only instances, GPU cells on GPU instances)",
                instance_name(&si.instance)
            ));
        }
        if let Some(vcpus) = si
            .instance
            .vcpus
            .filter(|_| si.instance.accelerator.is_none())
        {
            if (vcpus - host.cpu_logical_cores as f64).abs() > 0.5 {
                warnings.push(format!(
                    "{} has {vcpus} vCPUs, the measuring host {} logical CPUs: its real throughput differs, so treat its $/1M tokens as indicative",
                    instance_name(&si.instance),
                    host.cpu_logical_cores
                ));
            }
        }
    }
    if sel.instances.is_empty() {
        warnings.push("no instances selected (pricing.instances): energy and carbon only".into());
    }
    if let Some(slo) = sel.slo {
        if !cells.iter().any(|c| c.slo.is_some_and(|s| s.met)) {
            warnings.push(format!(
                "no cell meets the SLO (p{} {} ≤ {} ms): no recommendation",
                slo.percentile,
                slo.metric.name(),
                slo.max_ms
            ));
        }
    }
    if cells
        .iter()
        .any(|c| c.energy.as_ref().is_some_and(|e| e.estimated))
    {
        warnings.push("energy is a model estimate (labelled `estimated`), not a measurement: kWh and gCO2e inherit its uncertainty".into());
    }
    let recommendations = recommendations(measured, &cells, sel);
    let batch_saturation = batch_saturation(measured, &cells);
    let tco = workload_tco(measured, &cells, &recommendations, sel);
    let tco_missing = tco_missing(sel, &recommendations);
    RunCosts {
        tco,
        tco_missing,
        overrides: Vec::new(),
        selection: sel.clone(),
        assumptions,
        cells,
        recommendations,
        batch_saturation,
        warnings,
    }
}
