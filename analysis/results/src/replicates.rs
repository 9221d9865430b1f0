//! A run whose configurations were each carried out in several executions (`replicates: R`) seen
//! one configuration at a time.
//!
//! In such a run the manifest holds one record per execution (`cell_id` ending in `-r<number>`,
//! [`Replicate`] saying whose execution it is) and `requests.parquet` one `cell_id` per
//! execution. The statistics, the comparisons and the report speak of configurations:
//! [`configuration_view`] gives one record and one pooled set of samples per configuration, in
//! the scenario's order, and keeps each configuration's executions beside it, so the analysis
//! can use the execution as its unit.
//!
//! A run without replicates is its own view: every record is a configuration with one execution.

use std::collections::BTreeMap;

use crate::load::{CellSamples, LoadedRequests};
use crate::schema::{CellOutcome, CellRecord, EnergyValidity, EnergyWindow, Manifest, Replicate};

/// One execution of a configuration: its record and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// The execution's manifest record (its own `cell_id`, its place in the run's order).
    pub record: CellRecord,
    /// Its timed, successful requests.
    pub samples: CellSamples,
}

/// A run seen one configuration at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationView {
    /// The manifest with one record per configuration, in configuration order ([`combine`]).
    pub manifest: Manifest,
    /// One pooled set of samples per configuration, parallel to `manifest.cells`.
    pub requests: LoadedRequests,
    /// Each configuration's executions in their number order, parallel to `manifest.cells`.
    pub executions: Vec<Vec<Execution>>,
}

impl ConfigurationView {
    /// Whether the run carried out its configurations as replicates (`replicates` ≥ 2).
    pub fn replicated(&self) -> bool {
        self.executions
            .iter()
            .flatten()
            .any(|e| e.record.replicate.is_some())
    }
}

/// The run of `manifest` and its loaded `requests` one configuration at a time (see the
/// [module documentation](self)).
pub fn configuration_view(manifest: &Manifest, requests: &LoadedRequests) -> ConfigurationView {
    // Configuration id → executions, keyed by the configuration's index.
    let mut groups: BTreeMap<(usize, String), Vec<Execution>> = BTreeMap::new();
    for (i, record) in manifest.cells.iter().enumerate() {
        let samples = requests
            .cells
            .get(i)
            .cloned()
            .unwrap_or_else(|| CellSamples {
                cell_id: record.cell_id.clone(),
                ..CellSamples::default()
            });
        let key = match &record.replicate {
            Some(r) => (r.configuration_index, r.configuration_id.clone()),
            None => (usize::MAX, format!("{i:020}")),
        };
        groups.entry(key).or_default().push(Execution {
            record: record.clone(),
            samples,
        });
    }
    // Unreplicated records keep their manifest order after any replicated ones (a run has one
    // kind or the other; a mixture is kept apart rather than merged).
    let mut cells = Vec::new();
    let mut pooled = Vec::new();
    let mut executions = Vec::new();
    for (_, mut group) in groups {
        group.sort_by_key(|e| e.record.replicate.as_ref().map_or(0, |r| r.number));
        let records: Vec<&CellRecord> = group.iter().map(|e| &e.record).collect();
        cells.push(combine(&records));
        pooled.push(pool(
            &cells.last().expect("just pushed").cell_id,
            group.iter().map(|e| &e.samples),
        ));
        executions.push(group);
    }
    ConfigurationView {
        manifest: Manifest {
            cells,
            ..manifest.clone()
        },
        requests: LoadedRequests {
            cells: pooled,
            ..requests.clone()
        },
        executions,
    }
}

/// One record for a configuration from the records of its executions: the configuration's id
/// and index, `ok` only when every execution is (else the first execution that is not, named in
/// the error), the largest memory figures, the first start and the last end, the energy of all
/// windows together ([`combine_energy`]) and the busiest host load. A single record without
/// [`Replicate`] is returned as it is.
pub fn combine(records: &[&CellRecord]) -> CellRecord {
    let first = records.first().expect("a configuration has an execution");
    let Some(rep) = &first.replicate else {
        return (*first).clone();
    };
    let mut out = (*first).clone();
    out.cell_id = rep.configuration_id.clone();
    out.index = rep.configuration_index;
    out.replicate = None;
    let number = |r: &CellRecord| r.replicate.as_ref().map_or(0, |x| x.number);
    if let Some(bad) = records.iter().find(|r| r.status != CellOutcome::Ok) {
        out.status = bad.status;
        out.error = Some(format!(
            "execution {} of {}: {}",
            number(bad),
            rep.of.max(records.len() as u32),
            bad.error.as_deref().unwrap_or(match bad.status {
                CellOutcome::Pending => "not run",
                CellOutcome::Skipped => "skipped",
                _ => "failed",
            })
        ));
    } else {
        out.status = CellOutcome::Ok;
        out.error = None;
    }
    out.peak_rss_bytes = records.iter().filter_map(|r| r.peak_rss_bytes).max();
    out.gpu_mem_bytes = records.iter().filter_map(|r| r.gpu_mem_bytes).max();
    let methods: Vec<&str> = records
        .iter()
        .filter_map(|r| r.energy_method.as_deref())
        .collect();
    out.energy_method = match methods.as_slice() {
        [] => None,
        [one, rest @ ..] if rest.iter().all(|m| m == one) => Some((*one).to_string()),
        many => {
            let mut distinct: Vec<&str> = many.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            Some(format!("mixed({})", distinct.join(",")))
        }
    };
    out.started_at = records.iter().filter_map(|r| r.started_at.clone()).min();
    out.ended_at = records.iter().filter_map(|r| r.ended_at.clone()).max();
    out.window_start_ms = records
        .iter()
        .filter_map(|r| r.window_start_ms)
        .reduce(f64::min);
    out.window_end_ms = records
        .iter()
        .filter_map(|r| r.window_end_ms)
        .reduce(f64::max);
    out.agreement = records
        .iter()
        .find_map(|r| r.agreement.clone().filter(|a| !a.comparable()))
        .or_else(|| first.agreement.clone());
    let windows: Vec<(u32, &EnergyWindow)> = records
        .iter()
        .filter_map(|r| Some((number(r), r.energy.as_ref()?)))
        .collect();
    out.energy = (windows.len() == records.len())
        .then(|| combine_energy(&windows))
        .flatten();
    out.host_load = records
        .iter()
        .filter_map(|r| r.host_load.clone())
        .max_by(|a, b| a.other_cores.total_cmp(&b.other_cores));
    out
}

/// The energy of several executions' windows as one: lengths, energies, tokens and counts
/// summed; the absolute uncertainty bounds summed (so the relative bound is their
/// energy-weighted mean); invalid when any window is, naming it; the first flagged cross-check
/// and the first throttled window kept. `None` for no windows, or windows of different methods
/// or devices (which cannot be added).
pub fn combine_energy(windows: &[(u32, &EnergyWindow)]) -> Option<EnergyWindow> {
    let (_, first) = windows.first()?;
    if windows
        .iter()
        .any(|(_, w)| w.method != first.method || w.device != first.device)
    {
        return None;
    }
    let mut out = (*first).clone();
    out.window_ms = windows.iter().map(|(_, w)| w.window_ms).sum();
    out.generated_tokens = windows.iter().map(|(_, w)| w.generated_tokens).sum();
    out.energy_j = windows.iter().map(|(_, w)| w.energy_j).sum();
    let abs_u: Option<f64> = windows
        .iter()
        .map(|(_, w)| Some(w.energy_j? * w.uncertainty_rel?))
        .sum();
    out.uncertainty_rel = out
        .energy_j
        .zip(abs_u)
        .map(|(e, u)| if e > 0.0 { u / e } else { 0.0 });
    out.quantisation_rel = (out.window_ms > 0.0 && first.quantisation_rel.is_some())
        .then(|| out.update_period_ms / out.window_ms);
    out.requests_below_min_window = windows
        .iter()
        .map(|(_, w)| w.requests_below_min_window)
        .sum();
    out.padding_requests = windows.iter().map(|(_, w)| w.padding_requests).sum();
    out.dram_energy_j = windows.iter().map(|(_, w)| w.dram_energy_j).sum();
    if let Some((n, bad)) = windows
        .iter()
        .find(|(_, w)| w.validity == EnergyValidity::Invalid)
    {
        out.validity = EnergyValidity::Invalid;
        out.invalid_reason = Some(format!(
            "execution {n}: {}",
            bad.invalid_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        ));
    }
    out.cross_check = windows
        .iter()
        .find_map(|(_, w)| w.cross_check.clone().filter(|c| c.flagged))
        .or_else(|| first.cross_check.clone());
    out.throttling = windows
        .iter()
        .find_map(|(_, w)| {
            w.throttling
                .clone()
                .filter(|t| t.hw_slowdown || t.thermal_slowdown)
        })
        .or_else(|| first.throttling.clone());
    Some(out)
}

/// The samples of several executions as one configuration's: values concatenated in execution
/// order, counts summed.
fn pool<'a>(cell_id: &str, parts: impl Iterator<Item = &'a CellSamples>) -> CellSamples {
    let mut out = CellSamples {
        cell_id: cell_id.to_string(),
        ..CellSamples::default()
    };
    for s in parts {
        out.n_used += s.n_used;
        out.n_warmup += s.n_warmup;
        out.n_error += s.n_error;
        for (m, v) in &s.values {
            out.values.entry(*m).or_default().extend_from_slice(v);
        }
        for (m, n) in &s.nulls {
            *out.nulls.entry(*m).or_default() += n;
        }
        for (m, n) in &s.non_finite {
            *out.non_finite.entry(*m).or_default() += n;
        }
        out.energy_methods.extend(s.energy_methods.iter().cloned());
    }
    out
}

/// The execution id of execution `number` of the configuration `configuration_id`.
pub fn execution_id(configuration_id: &str, number: u32) -> String {
    format!("{configuration_id}-r{number}")
}

/// The [`Replicate`] of execution `number` of `of` of a configuration.
pub fn replicate(
    configuration_id: &str,
    configuration_index: usize,
    number: u32,
    of: u32,
) -> Replicate {
    Replicate {
        number,
        of,
        configuration_id: configuration_id.to_string(),
        configuration_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::manifest;
    use crate::Metric;

    fn samples(id: &str, v: &[f64]) -> CellSamples {
        CellSamples {
            cell_id: id.into(),
            n_used: v.len(),
            n_warmup: 1,
            values: BTreeMap::from([(Metric::TokensPerS, v.to_vec())]),
            ..CellSamples::default()
        }
    }

    /// Two configurations, two executions each, interleaved B A A B.
    fn replicated() -> (Manifest, LoadedRequests) {
        let m0 = manifest("r", "s", "tiny");
        let (a, b) = (m0.cells[0].clone(), m0.cells[1].clone());
        let exec = |base: &CellRecord, idx: usize, number: u32, order: usize| {
            let mut r = base.clone();
            r.replicate = Some(replicate(&base.cell_id, idx, number, 2));
            r.cell_id = execution_id(&base.cell_id, number);
            r.index = order;
            r
        };
        let mut m = m0.clone();
        m.cells = vec![
            exec(&b, 1, 1, 0),
            exec(&a, 0, 1, 1),
            exec(&a, 0, 2, 2),
            exec(&b, 1, 2, 3),
        ];
        m.cells[3].status = CellOutcome::Failed;
        m.cells[3].error = Some("boom".into());
        let requests = LoadedRequests {
            cells: vec![
                samples("bbbb-r1", &[5.0, 6.0]),
                samples("aaaa-r1", &[1.0, 2.0]),
                samples("aaaa-r2", &[3.0]),
                samples("bbbb-r2", &[]),
            ],
            ..LoadedRequests::default()
        };
        (m, requests)
    }

    #[test]
    fn executions_are_grouped_by_configuration_in_its_order() {
        let (m, r) = replicated();
        let v = configuration_view(&m, &r);
        assert!(v.replicated());
        let ids: Vec<&str> = v
            .manifest
            .cells
            .iter()
            .map(|c| c.cell_id.as_str())
            .collect();
        assert_eq!(ids, ["aaaa", "bbbb"]);
        assert_eq!(v.manifest.cells[0].index, 0);
        assert_eq!(v.manifest.cells[1].index, 1);
        assert_eq!(
            v.requests.cells[0].metric(Metric::TokensPerS),
            [1.0, 2.0, 3.0]
        );
        assert_eq!(v.requests.cells[0].n_used, 3);
        assert_eq!(v.requests.cells[0].n_warmup, 2);
        assert_eq!(v.requests.cells[0].cell_id, "aaaa");
        assert_eq!(v.executions[1].len(), 2);
        assert_eq!(v.executions[1][0].record.cell_id, "bbbb-r1");
        // One failed execution fails the configuration, and says which.
        assert_eq!(v.manifest.cells[0].status, CellOutcome::Ok);
        assert_eq!(v.manifest.cells[1].status, CellOutcome::Failed);
        assert_eq!(
            v.manifest.cells[1].error.as_deref(),
            Some("execution 2 of 2: boom")
        );
        assert!(v.manifest.cells.iter().all(|c| c.replicate.is_none()));
    }

    #[test]
    fn a_run_without_replicates_is_its_own_view() {
        let m = manifest("r", "s", "tiny");
        let r = LoadedRequests {
            cells: m
                .cells
                .iter()
                .map(|c| samples(&c.cell_id, &[1.0]))
                .collect(),
            ..LoadedRequests::default()
        };
        let v = configuration_view(&m, &r);
        assert!(!v.replicated());
        assert_eq!(v.manifest, m);
        assert_eq!(v.requests, r);
        assert!(v.executions.iter().all(|e| e.len() == 1));
    }

    #[test]
    fn energy_windows_add_up_and_an_invalid_one_is_named() {
        let w = |e: f64, ms: f64, u: f64| EnergyWindow {
            method: "rapl".into(),
            scope: "cpu-package".into(),
            basis: "measured".into(),
            device: "cpu-package".into(),
            sample_period_ms: 100.0,
            update_period_ms: 1.0,
            window_ms: ms,
            min_window_ms: 10.0,
            energy_j: Some(e),
            generated_tokens: 100,
            quantisation_rel: Some(1.0 / ms),
            gain_error_rel: 0.05,
            uncertainty_rel: Some(u),
            validity: EnergyValidity::Valid,
            invalid_reason: None,
            requests_below_min_window: 1,
            padding_requests: 0,
            dram_energy_j: None,
            cross_check: None,
            throttling: None,
        };
        let a = w(10.0, 1000.0, 0.1);
        let mut b = w(30.0, 3000.0, 0.2);
        let c = combine_energy(&[(1, &a), (2, &b)]).unwrap();
        assert_eq!(c.energy_j, Some(40.0));
        assert_eq!(c.window_ms, 4000.0);
        assert_eq!(c.generated_tokens, 200);
        // (10·0.1 + 30·0.2) / 40 = 7 / 40.
        assert!((c.uncertainty_rel.unwrap() - 0.175).abs() < 1e-12);
        assert_eq!(c.quantisation_rel, Some(1.0 / 4000.0));
        assert_eq!(c.requests_below_min_window, 2);
        assert_eq!(c.validity, EnergyValidity::Valid);
        b.validity = EnergyValidity::Invalid;
        b.invalid_reason = Some("too short".into());
        let c = combine_energy(&[(1, &a), (2, &b)]).unwrap();
        assert_eq!(c.invalid_reason.as_deref(), Some("execution 2: too short"));
        b.method = "estimate".into();
        assert!(combine_energy(&[(1, &a), (2, &b)]).is_none());
    }
}
