//! A cell's executions in a run with `replicates` ≥ 2: each execution's means, the estimate
//! across executions with its Student-t interval, and the variance split into its within- and
//! between-execution parts.
//!
//! Only executions that completed count: a failed execution's partial requests say nothing
//! about the configuration's typical run.

use std::collections::BTreeMap;

use tcobench_results::load::CellSamples;
use tcobench_results::replicates::Execution;
use tcobench_results::schema::CellOutcome;
use tcobench_results::{ExecutionLevel, ExecutionSummary, Metric, Replication};
use tcobench_stats::descriptive::{mean, sd, t_ci95_mean};
use tcobench_stats::inference::variance_components;

/// The [`Replication`] of one cell from its executions.
pub fn replication(executions: &[Execution]) -> Replication {
    let summaries = executions
        .iter()
        .map(|e| ExecutionSummary {
            cell_id: e.record.cell_id.clone(),
            number: e.record.replicate.as_ref().map_or(1, |r| r.number),
            order: e.record.index,
            started_at: e.record.started_at.clone(),
            status: e.record.status,
            n_requests: e.samples.n_used,
            means: Metric::ALL
                .into_iter()
                .filter_map(|m| Some((m.name().to_string(), mean(e.samples.metric(m))?)))
                .collect(),
        })
        .collect();
    let mut metrics = BTreeMap::new();
    for metric in Metric::ALL {
        let groups: Vec<&[f64]> = usable(executions)
            .map(|e| e.samples.metric(metric))
            .filter(|v| !v.is_empty())
            .collect();
        let means: Vec<f64> = groups.iter().filter_map(|g| mean(g)).collect();
        if means.len() < 2 {
            continue;
        }
        metrics.insert(
            metric.name().to_string(),
            ExecutionLevel {
                n_executions: means.len(),
                mean: mean(&means).expect("two means"),
                sd_of_means: sd(&means).expect("two means"),
                ci95_mean: t_ci95_mean(&means),
                components: variance_components(&groups).ok(),
            },
        );
    }
    Replication {
        executions: summaries,
        metrics,
    }
}

/// The cell's completed executions' means as the samples of the in-run comparisons (one value
/// per execution and metric), under the cell's id.
pub fn execution_means(cell_id: &str, executions: &[Execution]) -> CellSamples {
    let mut values: BTreeMap<Metric, Vec<f64>> = BTreeMap::new();
    for e in usable(executions) {
        for metric in Metric::ALL {
            if let Some(m) = mean(e.samples.metric(metric)) {
                values.entry(metric).or_default().push(m);
            }
        }
    }
    CellSamples {
        cell_id: cell_id.to_string(),
        n_used: usable(executions).count(),
        values,
        ..CellSamples::default()
    }
}

fn usable(executions: &[Execution]) -> impl Iterator<Item = &Execution> {
    executions
        .iter()
        .filter(|e| e.record.status == CellOutcome::Ok && e.samples.n_used > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::replicates::{execution_id, replicate};
    use tcobench_results::testutil::manifest;

    fn execution(number: u32, status: CellOutcome, tps: &[f64]) -> Execution {
        let mut record = manifest("r", "s", "tiny").cells[0].clone();
        record.replicate = Some(replicate("aaaa", 0, number, 3));
        record.cell_id = execution_id("aaaa", number);
        record.index = number as usize * 2;
        record.status = status;
        Execution {
            record,
            samples: CellSamples {
                cell_id: execution_id("aaaa", number),
                n_used: tps.len(),
                values: BTreeMap::from([(Metric::TokensPerS, tps.to_vec())]),
                ..CellSamples::default()
            },
        }
    }

    #[test]
    fn executions_means_interval_and_components() {
        let e = [
            execution(1, CellOutcome::Ok, &[1.0, 2.0, 3.0]),
            execution(2, CellOutcome::Ok, &[4.0, 5.0, 6.0]),
            execution(3, CellOutcome::Ok, &[7.0, 8.0, 9.0]),
        ];
        let r = replication(&e);
        assert_eq!(r.executions.len(), 3);
        assert_eq!(r.executions[1].means["tokens_per_s"], 5.0);
        assert_eq!(r.executions[2].order, 6);
        let level = &r.metrics["tokens_per_s"];
        assert_eq!(level.n_executions, 3);
        assert_eq!(level.mean, 5.0);
        assert_eq!(level.sd_of_means, 3.0);
        // 5 ± t(0.975, 2) · 3/√3 = 5 ± 4.302653 · 1.732051.
        let [lo, hi] = level.ci95_mean.unwrap();
        assert!(
            (hi - 5.0 - 4.302_652_729_911 * 3f64.sqrt()).abs() < 1e-6,
            "{hi}"
        );
        assert!((lo + hi - 10.0).abs() < 1e-12);
        let c = level.components.unwrap();
        assert!((c.var_between - 26.0 / 3.0).abs() < 1e-12);
        let units = execution_means("aaaa", &e);
        assert_eq!(units.metric(Metric::TokensPerS), [2.0, 5.0, 8.0]);
    }

    #[test]
    fn failed_executions_do_not_count() {
        let e = [
            execution(1, CellOutcome::Ok, &[1.0, 2.0]),
            execution(2, CellOutcome::Failed, &[100.0]),
            execution(3, CellOutcome::Ok, &[3.0, 4.0]),
        ];
        let r = replication(&e);
        assert_eq!(r.executions.len(), 3, "every execution is listed");
        assert_eq!(r.metrics["tokens_per_s"].n_executions, 2);
        assert_eq!(r.metrics["tokens_per_s"].mean, 2.5);
        assert_eq!(execution_means("aaaa", &e).n_used, 2);
        // One usable execution: no execution-level estimate.
        assert!(replication(&e[..2]).metrics.is_empty());
    }
}
