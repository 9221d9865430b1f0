//! Analysis of a run folder: from what the harness wrote to `stats.json`.
//!
//! * [`cells`]: one cell's statistics from its records — descriptives and robust statistics per
//!   metric, what is unavailable and why, energy gross and net of the idle baseline.
//! * [`comparisons`]: in-run comparisons of cells that differ only in backend, dtype or device.
//! * [`run_costs`]: the run priced under its scenario's cost sections, idle power from the run's
//!   own baseline.
//! * [`meter`]: an external power meter's log placed on the run's clock, and its calibration.
//! * [`replication`]: a cell's executions, their means and variance components (runs with
//!   `replicates` ≥ 2).
//! * [`compare`]: run-to-run regression verdicts, cell by cell, at the level the runs allow.
//! * [`noise`]: a host's noise profile from repeated runs of one build (`tcobench noise`).
//! * [`table`]: the statistics of any CSV or Parquet table (`tcobench stats`).
//! * this file: [`RunStats`] (everything `stats.json` holds) assembled from the above by
//!   [`compute_stats`] and [`analyze`].
//!
//! It reads the run-folder contract (`tcobench-results`), computes with the pure maths of
//! `tcobench-stats` and prices with `tcobench-cost`; it knows nothing of plots or templates, and
//! nothing of the harness or the backends: anything that writes the files of the contract can be
//! analysed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tcobench_results::io::{self, write_atomic};
use tcobench_results::schema::{files, CellOutcome, Manifest, SchemaError, SCHEMA_VERSION};
use tcobench_results::{fmt_sig, CellStats, Level, Metric, MetricInfo};
use tcobench_results::{load, replicates};
use tcobench_stats::{groups, inference};

pub mod cells;
pub mod compare;
pub mod comparisons;
pub mod meter;
pub mod noise;
pub mod replication;
pub mod run_costs;
pub mod table;

pub use cells::{cell_energy, cell_stats};
pub use run_costs::{idle_power_from_run, price_run};

/// Errors of the analysis entry points.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Reading or validating a results file failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The manifest was written with a results layout this version does not read.
    #[error("{path}: schema_version {found} is not supported (this build reads {expected})")]
    UnsupportedSchema {
        /// Manifest path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// `stats.json` could not be serialised.
    #[error("{path}: {source}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// The run folder's meter log import or calibration cannot be used.
    #[error(transparent)]
    Meter(#[from] meter::MeterError),
}

/// Everything `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Results layout version ([`schema::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Run id.
    pub run_id: String,
    /// Scenario name.
    pub scenario_name: String,
    /// The metrics summarised, with units.
    pub metrics: Vec<MetricInfo>,
    /// One entry per manifest cell, in manifest order.
    pub cells: Vec<CellStats>,
    /// Run-level data-quality notes (rows of unknown cells…).
    pub warnings: Vec<String>,
    /// Bootstrap settings of every bootstrap CI in this file (seed = the scenario seed).
    pub bootstrap: inference::Bootstrap,
    /// Sets of cells that differ only in backend, dtype or device, with their tests.
    pub comparisons: Vec<comparisons::ComparisonSet>,
    /// Cost, energy and carbon per cell under the scenario's selection, with recommendations
    /// (`None` when the scenario selects nothing to price).
    pub costing: Option<tcobench_cost::costing::RunCosts>,
    /// An external power meter's energy beside ours, and the calibration applied to this run
    /// (`meter.json` / `calibration.json` in the run folder; `None` when it has neither).
    #[serde(default)]
    pub meter: Option<meter::MeterStats>,
}

/// Counts of cells by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCounts {
    /// Cells that completed.
    pub ok: usize,
    /// Cells that failed.
    pub failed: usize,
    /// Cells not run.
    pub pending: usize,
}

impl RunStats {
    /// Whether the run's cells ran in several executions each (`replicates` ≥ 2).
    pub fn replicated(&self) -> bool {
        self.cells.iter().any(|c| c.replication.is_some())
    }

    /// The statistics as tables, plots and prices read them: every cell
    /// [at its execution level](CellStats::at_execution_level).
    pub fn at_execution_level(&self) -> RunStats {
        RunStats {
            cells: self
                .cells
                .iter()
                .map(CellStats::at_execution_level)
                .collect(),
            ..self.clone()
        }
    }

    /// Cells by outcome.
    pub fn counts(&self) -> CellCounts {
        let mut c = CellCounts::default();
        for cell in &self.cells {
            match cell.status {
                CellOutcome::Ok => c.ok += 1,
                CellOutcome::Failed => c.failed += 1,
                // A skipped cell was not run either; its error says why.
                CellOutcome::Pending | CellOutcome::Skipped => c.pending += 1,
            }
        }
        c
    }

    /// The completed cell with the highest mean tokens/s.
    pub fn best_throughput(&self) -> Option<&CellStats> {
        self.cells
            .iter()
            .filter(|c| c.status == CellOutcome::Ok)
            .filter_map(|c| c.metric(Metric::TokensPerS).map(|d| (c, d.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c)
    }

    /// One line for an experiment log: the best tokens/s cell with its mean and 95 % CI, and the
    /// number of cells ok/failed.
    pub fn headline(&self) -> String {
        let counts = self.counts();
        let mut cells = format!("cells: {} ok, {} failed", counts.ok, counts.failed);
        if counts.pending > 0 {
            cells.push_str(&format!(", {} not run", counts.pending));
        }
        let best = match self.best_throughput() {
            Some(c) => {
                let d = c
                    .at_execution_level()
                    .metric(Metric::TokensPerS)
                    .expect("best has tokens/s")
                    .clone();
                let ci = match d.ci95_mean {
                    // Throughput cannot be negative: a t interval reaching below 0 is one-sided.
                    Some([lo, hi]) if lo < 0.0 => format!(
                        "95% CI ≤ {}, too few samples for a two-sided interval",
                        fmt_sig(hi, 4)
                    ),
                    Some([lo, hi]) => format!("95% CI {}–{}", fmt_sig(lo, 4), fmt_sig(hi, 4)),
                    None => "no CI".to_string(),
                };
                let n = match c
                    .replication
                    .as_ref()
                    .and_then(|r| r.metrics.get(Metric::TokensPerS.name()))
                {
                    Some(level) => format!("{} executions", level.n_executions),
                    None => format!("n={}", d.n),
                };
                format!(
                    "best {} tokens/s ({ci}, {n}) on #{} {} [{}]",
                    fmt_sig(d.mean, 4),
                    c.index,
                    c.label(),
                    c.cell_id
                )
            }
            None => "no completed cell with a throughput".to_string(),
        };
        format!("{} ({}): {best}; {cells}", self.run_id, self.scenario_name)
    }
}

/// Computes statistics from a manifest and loaded requests (no I/O).
///
/// A run with `replicates` ≥ 2 is read one configuration at a time
/// ([`replicates::configuration_view`]): each cell pools its executions' requests for the
/// descriptives, carries the execution-level estimates ([`replication`]), and the in-run
/// comparisons test the executions' means.
pub fn compute_stats(manifest: &Manifest, requests: &load::LoadedRequests) -> RunStats {
    stats_of_view(&replicates::configuration_view(manifest, requests))
}

/// [`compute_stats`] of a run already seen one configuration at a time.
pub fn stats_of_view(view: &replicates::ConfigurationView) -> RunStats {
    let replicated = view.replicated();
    let (manifest, requests) = (&view.manifest, &view.requests);
    let bootstrap = inference::Bootstrap {
        resamples: 10_000,
        seed: manifest.seed,
    };
    let cells: Vec<CellStats> = manifest
        .cells
        .iter()
        .zip(&requests.cells)
        .zip(&view.executions)
        .map(|((record, samples), executions)| {
            let mut cell = cell_stats(
                record,
                samples,
                &bootstrap,
                manifest.power.idle_baseline.as_ref(),
                executions.len(),
            );
            if replicated {
                cell.replication = Some(replication::replication(executions));
            }
            cell
        })
        .collect();
    // Cells whose logits disagree with the reference run different maths: comparing their
    // timings would mislead, so they stay out unless the run was told otherwise.
    let comparable: Vec<CellStats> = cells
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if !manifest.allow_disagreement && c.agreement.as_ref().is_some_and(|a| !a.comparable())
            {
                c.status = CellOutcome::Failed;
            }
            c
        })
        .collect();
    // The unit of the in-run comparisons: the executions' means where there are several.
    let (units, level) = if replicated {
        (
            view.executions
                .iter()
                .zip(&requests.cells)
                .map(|(e, pooled)| replication::execution_means(&pooled.cell_id, e))
                .collect(),
            Level::Executions,
        )
    } else {
        (requests.cells.clone(), Level::Requests)
    };
    let comparisons = comparisons::comparison_sets(
        &comparable,
        &units,
        level,
        &groups::GroupOptions {
            bootstrap,
            adjust: inference::Adjust::Holm,
            pooled_pairwise: false,
        },
    );
    let warnings = requests
        .unknown_cell_ids
        .iter()
        .map(|id| format!("requests.parquet has rows for cell `{id}`, which the manifest does not list; ignored"))
        .collect();
    RunStats {
        schema_version: SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        scenario_name: manifest.scenario_name.clone(),
        metrics: Metric::ALL.into_iter().map(MetricInfo::from).collect(),
        cells,
        warnings,
        bootstrap,
        comparisons,
        costing: None,
        meter: None,
    }
}

/// Reads and version-checks `manifest.json` of `run_dir`.
pub fn read_run_manifest(run_dir: &Path) -> Result<Manifest, AnalysisError> {
    let path = run_dir.join(files::MANIFEST);
    let manifest = io::read_manifest(&path)?;
    if manifest.schema_version != SCHEMA_VERSION {
        return Err(AnalysisError::UnsupportedSchema {
            path,
            found: manifest.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(manifest)
}

/// Loads `run_dir` (manifest + `requests.parquet`), computes per-cell statistics, writes
/// `stats.json` (pretty JSON, atomically) and returns them.
pub fn analyze(run_dir: &Path) -> Result<RunStats, AnalysisError> {
    let manifest = read_run_manifest(run_dir)?;
    let requests = load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    let mut stats = compute_stats(&manifest, &requests);
    if let Some(spec) = &manifest.costing {
        match price_run(&stats, &manifest, spec, None) {
            Ok(costs) => stats.costing = Some(costs),
            Err(e) => stats.warnings.push(format!("costing skipped: {e}")),
        }
    }
    stats.meter = meter::meter_stats(run_dir, &stats.cells)?;
    let path = run_dir.join(files::STATS);
    let mut json = serde_json::to_vec_pretty(&stats).map_err(|source| AnalysisError::Json {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::{schema, testutil};

    #[test]
    fn analyze_excludes_warmups_and_writes_stats_json() {
        let dir = tempfile::tempdir().unwrap();
        testutil::write_run(dir.path(), "smoke", "tiny-model");
        let stats = analyze(dir.path()).unwrap();
        assert_eq!(stats.cells.len(), 3);
        let a = &stats.cells[0];
        assert_eq!(a.cell_id, "aaaa");
        assert_eq!(a.n_requests, 4, "warm-up must not be counted");
        assert_eq!(a.n_warmup_excluded, 1);
        let e2e = a.metric(Metric::E2eMs).unwrap();
        assert_eq!(e2e.n, 4);
        assert_eq!(e2e.mean, 115.0);
        assert_eq!(e2e.max, 130.0);
        // energy per token = 2·e2e / (2·8)
        assert_eq!(
            a.metric(Metric::EnergyJPerToken).unwrap().mean,
            2.0 * 115.0 / 16.0
        );
        assert!(a.unavailable.is_empty());

        let c = &stats.cells[2];
        assert_eq!(c.status, CellOutcome::Failed);
        assert_eq!((c.n_requests, c.n_failed_excluded), (0, 1));
        assert!(c.metrics.is_empty());
        assert_eq!(c.unavailable.len(), Metric::ALL.len());
        assert!(c.unavailable[0].reason.contains("cell failed"));

        // stats.json round-trips and no temp file is left behind.
        let text = std::fs::read_to_string(dir.path().join(files::STATS)).unwrap();
        // (serde_json's default float parser may differ in the last ulp, so compare numerically.)
        let back: RunStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back.cells.len(), stats.cells.len());
        for (b, s) in back.cells.iter().zip(&stats.cells) {
            assert_eq!(
                (&b.cell_id, b.n_requests, &b.unavailable),
                (&s.cell_id, s.n_requests, &s.unavailable)
            );
            assert_eq!(
                b.metrics.keys().collect::<Vec<_>>(),
                s.metrics.keys().collect::<Vec<_>>()
            );
            for (name, d) in &s.metrics {
                let e = &b.metrics[name];
                assert_eq!(e.n, d.n);
                for (x, y) in [
                    (e.mean, d.mean),
                    (e.p99, d.p99),
                    (e.ci95_mean.unwrap()[0], d.ci95_mean.unwrap()[0]),
                ] {
                    assert!((x - y).abs() <= 1e-12 * y.abs(), "{name}: {x} vs {y}");
                }
            }
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());

        let h = stats.headline();
        assert!(h.contains("#1"), "{h}");
        assert!(h.contains("2 ok, 1 failed"), "{h}");
        assert!(h.contains("95% CI"), "{h}");
        // A throughput interval reaching below zero is said one-sided, never negative.
        let mut wide = stats.clone();
        for c in &mut wide.cells {
            if let Some(d) = c.metrics.get_mut("tokens_per_s") {
                d.ci95_mean = Some([-1969.0, 4609.0]);
            }
        }
        let h = wide.headline();
        assert!(
            h.contains("95% CI ≤ 4609, too few samples for a two-sided interval"),
            "{h}"
        );
        assert!(!h.contains("-1969"), "{h}");
    }

    fn window(method: &str, energy_j: f64, window_ms: f64, tokens: u64) -> schema::EnergyWindow {
        schema::EnergyWindow {
            method: method.into(),
            scope: "gpu-board".into(),
            basis: "measured".into(),
            device: "cuda:0".into(),
            sample_period_ms: 100.0,
            update_period_ms: 100.0,
            window_ms,
            min_window_ms: 10_000.0,
            energy_j: Some(energy_j),
            generated_tokens: tokens,
            quantisation_rel: Some(100.0 / window_ms),
            gain_error_rel: 0.05,
            uncertainty_rel: Some(100.0 / window_ms + 0.05),
            validity: schema::EnergyValidity::Valid,
            invalid_reason: None,
            requests_below_min_window: 0,
            padding_requests: 0,
            dram_energy_j: None,
            cross_check: None,
            throttling: None,
        }
    }

    #[test]
    fn cell_energy_gross_and_net_of_idle_by_hand() {
        // 20 s at 300 W = 6000 J for 4000 tokens; idle 50 W over 10 s, same method and device.
        let w = window("nvml_energy_counter", 6000.0, 20_000.0, 4000);
        let idle = schema::IdleBaseline {
            window: window("nvml_energy_counter", 500.0, 10_000.0, 0),
            watts: Some(50.0),
        };
        let e = cell_energy(&w, Some(&idle));
        assert_eq!(e.gross_j_per_token, Some(1.5));
        // Net: 6000 − 50 × 20 = 5000 J, 1.25 J/token.
        assert_eq!(e.net_energy_j, Some(5000.0));
        assert_eq!(e.net_j_per_token, Some(1.25));
        // Gross ±(0.005 + 0.05) × 6000 = 330 J; idle ±(0.01 + 0.05) × 1000 = 60 J; over 5000 J.
        assert!((e.net_uncertainty_rel.unwrap() - 390.0 / 5000.0).abs() < 1e-12);
        assert!((e.gross_uncertainty_j_per_token.unwrap() - 330.0 / 4000.0).abs() < 1e-12);
        assert!(e.flags.is_empty());
        // Another method's baseline is not subtracted; an invalid window is flagged.
        let mut other = idle.clone();
        other.window.method = "rapl".into();
        let mut short = w.clone();
        short.validity = schema::EnergyValidity::Invalid;
        let e = cell_energy(&short, Some(&other));
        assert!(e.net_energy_j.is_none());
        assert!(e.net_unavailable.unwrap().contains("rapl"));
        assert_eq!(e.flags, vec!["invalid_window"]);
        assert!(cell_energy(&w, None)
            .net_unavailable
            .unwrap()
            .contains("idle_baseline_s"));
    }

    #[test]
    fn older_manifests_without_energy_fields_still_load() {
        let m = testutil::manifest("r", "s", "m");
        let mut json = serde_json::to_value(&m).unwrap();
        for c in json["cells"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("energy");
        }
        json["power"]
            .as_object_mut()
            .unwrap()
            .remove("idle_baseline");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert!(back.cells.iter().all(|c| c.energy.is_none()));
        assert!(back.power.idle_baseline.is_none());
    }

    #[test]
    fn missing_energy_is_unavailable_not_zero() {
        let m = testutil::manifest("r", "s", "m");
        let mut rows: Vec<_> = (0..3)
            .map(|rep| testutil::request(&m.cells[0], rep, false, Some(10.0)))
            .collect();
        for r in &mut rows {
            r.energy_j = None;
            r.energy_method = "none".into();
        }
        let df = io::requests_frame(&rows).unwrap();
        let mut m2 = m.clone();
        m2.cells[0].energy_method = None;
        let loaded = load::requests_from_frame(&df, Path::new("requests.parquet"), &m2).unwrap();
        let stats = compute_stats(&m2, &loaded);
        let a = &stats.cells[0];
        assert!(a.metric(Metric::EnergyJPerToken).is_none());
        let u = a
            .unavailable
            .iter()
            .find(|u| u.metric == "energy_j_per_token")
            .unwrap();
        assert!(u.reason.contains("not measured"), "{}", u.reason);
        assert_eq!(a.energy_method.as_deref(), Some("none"));
    }

    #[test]
    fn unsupported_schema_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = testutil::write_run(dir.path(), "s", "m");
        m.schema_version = SCHEMA_VERSION + 1;
        std::fs::write(
            dir.path().join(files::MANIFEST),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            analyze(dir.path()),
            Err(AnalysisError::UnsupportedSchema { .. })
        ));
    }
}
