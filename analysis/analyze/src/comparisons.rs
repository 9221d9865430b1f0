//! "Regression comparison inside one run": for every set of cells that differ in exactly one
//! way of running — only the backend, only the dtype, or only the device — the pairwise tests,
//! effect sizes and ANOVA of each metric, through [`tcobench_stats::groups::analyze_groups`].
//!
//! In a run with `replicates` ≥ 2 the values are the executions' means ([`Level::Executions`]):
//! the tests then see the variance between executions, and the order the executions ran in (shuffled
//! and mirrored per pair of replicates) cannot favour one cell. Otherwise they are the requests of
//! each cell's one execution ([`Level::Requests`]), and the set says so.
//!
//! Cells that did not complete, or have fewer than two usable values of a metric, are left out
//! of that metric's comparison and listed with the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tcobench_results::schema::CellOutcome;
use tcobench_results::{load, CellStats, Level, Metric};
use tcobench_stats::groups::{analyze_groups, GroupAnalysis, GroupOptions};

/// The dimensions a comparison set may vary in.
pub const DIMENSIONS: [&str; 3] = ["backend", "dtype", "device"];

/// One set of cells equal in everything but `varies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonSet {
    /// The dimension that differs between the cells (`backend`, `dtype` or `device`).
    pub varies: String,
    /// What the cells share, as `key=value` pairs (model, device or dtype, batch, lengths).
    pub fixed: BTreeMap<String, String>,
    /// Cell ids in the set, in manifest order.
    pub cell_ids: Vec<String>,
    /// Group name (the varying value, `#index value`) per cell id.
    pub group_names: BTreeMap<String, String>,
    /// The analysis per metric name.
    pub metrics: BTreeMap<String, GroupAnalysis>,
    /// Cells or metrics left out, with the reason.
    pub excluded: Vec<String>,
    /// What the tests treat as independent: the cells' executions (a run with `replicates` ≥ 2,
    /// one mean per execution) or their requests.
    #[serde(default = "requests_level")]
    pub unit: Level,
}

fn requests_level() -> Level {
    Level::Requests
}

fn dimension_value(cell: &CellStats, dim: &str) -> String {
    match dim {
        "backend" => cell.config.backend.clone(),
        "dtype" => cell.config.dtype.clone(),
        _ => cell.config.device.clone(),
    }
}

/// Everything that identifies a cell's configuration (the same [`CellConfig`] `compare` matches
/// runs by) except `dim`, as `key → value`.
fn fixed_part(cell: &CellStats, dim: &str) -> BTreeMap<String, String> {
    let config = serde_json::to_value(&cell.config).expect("a config serialises");
    let serde_json::Value::Object(fields) = config else {
        unreachable!("a struct serialises to an object")
    };
    fields
        .into_iter()
        .filter(|(k, _)| k != dim)
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// Builds every comparison set of a run. `samples` is parallel to `cells` (manifest order) and
/// holds the values of `unit`: each request, or each execution's mean.
pub fn comparison_sets(
    cells: &[CellStats],
    samples: &[load::CellSamples],
    unit: Level,
    opts: &GroupOptions,
) -> Vec<ComparisonSet> {
    let mut sets = Vec::new();
    for dim in DIMENSIONS {
        // Group cell indices by their fixed part, keeping first-appearance order.
        let mut buckets: Vec<(BTreeMap<String, String>, Vec<usize>)> = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let key = fixed_part(cell, dim);
            match buckets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => buckets.push((key, vec![i])),
            }
        }
        for (fixed, members) in buckets {
            if members.len() < 2 {
                continue;
            }
            let mut set = ComparisonSet {
                varies: dim.to_string(),
                fixed,
                cell_ids: members.iter().map(|&i| cells[i].cell_id.clone()).collect(),
                group_names: members
                    .iter()
                    .map(|&i| {
                        let c = &cells[i];
                        (
                            c.cell_id.clone(),
                            format!("#{} {}", c.index, dimension_value(c, dim)),
                        )
                    })
                    .collect(),
                metrics: BTreeMap::new(),
                excluded: Vec::new(),
                unit,
            };
            let usable: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| {
                    let ok = cells[i].status == CellOutcome::Ok;
                    if !ok {
                        set.excluded.push(format!(
                            "{}: {}",
                            set.group_names[&cells[i].cell_id],
                            match cells[i].status {
                                CellOutcome::Ok => "excluded",
                                _ if cells[i]
                                    .agreement
                                    .as_ref()
                                    .is_some_and(|a| !a.comparable()) =>
                                {
                                    "its logits disagree with the reference (agreement gate)"
                                }
                                _ => "cell did not complete",
                            }
                        ));
                    }
                    ok
                })
                .collect();
            for metric in Metric::ALL {
                let mut groups = Vec::new();
                for &i in &usable {
                    let values = samples[i].metric(metric);
                    let name = set.group_names[&cells[i].cell_id].clone();
                    if values.len() < 2 {
                        let what = match unit {
                            Level::Executions => "execution mean(s)",
                            Level::Requests => "value(s)",
                        };
                        set.excluded.push(format!(
                            "{name}: {} has {} usable {what}",
                            metric.name(),
                            values.len()
                        ));
                    } else {
                        groups.push((name, values.to_vec()));
                    }
                }
                if groups.len() < 2 {
                    continue;
                }
                match analyze_groups(&groups, opts) {
                    Ok(a) => {
                        set.metrics.insert(metric.name().to_string(), a);
                    }
                    Err(e) => set.excluded.push(format!("{}: {e}", metric.name())),
                }
            }
            if !set.metrics.is_empty() || !set.excluded.is_empty() {
                sets.push(set);
            }
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute_stats;
    use tcobench_results::load::{CellSamples, LoadedRequests};
    use tcobench_results::testutil::manifest;

    fn samples(id: &str, tokens_per_s: &[f64]) -> CellSamples {
        CellSamples {
            cell_id: id.into(),
            n_used: tokens_per_s.len(),
            values: BTreeMap::from([(Metric::TokensPerS, tokens_per_s.to_vec())]),
            ..CellSamples::default()
        }
    }

    #[test]
    fn cells_differing_only_in_backend_are_tested_and_failed_ones_listed() {
        let mut m = manifest("r", "s", "tiny");
        // aaaa and bbbb differ only in backend; cccc (failed) would join them.
        m.cells[1].config.batch_size = m.cells[0].config.batch_size;
        m.cells[1].config.backend = "candle".into();
        m.cells[2].config.batch_size = m.cells[0].config.batch_size;
        m.cells[2].config.backend = "onnxruntime".into();
        let loaded = LoadedRequests {
            cells: vec![
                samples("aaaa", &[100.0, 101.0, 99.0, 100.5]),
                samples("bbbb", &[120.0, 121.0, 119.0, 120.5]),
                samples("cccc", &[]),
            ],
            ..LoadedRequests::default()
        };
        let stats = compute_stats(&m, &loaded);
        assert_eq!(stats.comparisons.len(), 1, "{:#?}", stats.comparisons);
        let set = &stats.comparisons[0];
        assert_eq!(set.varies, "backend");
        assert_eq!(set.cell_ids.len(), 3);
        assert!(
            set.excluded.iter().any(|e| e.contains("did not complete")),
            "{:?}",
            set.excluded
        );
        let a = &set.metrics["tokens_per_s"];
        assert_eq!(a.groups.len(), 2);
        let w = a.pairwise[0].welch.unwrap();
        // mean(a) − mean(b) = 100.125 − 120.125 = −20.
        assert!(((w.ci95_diff[0] + w.ci95_diff[1]) / 2.0 + 20.0).abs() < 1e-9);
        assert!(w.p < 1e-6, "{}", w.p);
        assert!(!set.metrics.contains_key("e2e_ms"), "no values, no test");
        assert_eq!(stats.bootstrap.seed, 42, "the scenario seed");
    }

    #[test]
    fn cells_differing_in_two_dimensions_are_not_compared() {
        let mut m = manifest("r", "s", "tiny");
        m.cells[1].config.backend = "candle".into(); // also differs in batch size
        let loaded = LoadedRequests {
            cells: vec![
                samples("aaaa", &[1.0, 2.0]),
                samples("bbbb", &[3.0, 4.0]),
                samples("cccc", &[]),
            ],
            ..LoadedRequests::default()
        };
        assert!(compute_stats(&m, &loaded).comparisons.is_empty());
    }
}
