//! How long a plan will take and what it will cost, before it runs.
//!
//! A cell's wall time comes from the newest earlier run that completed the same cell (same
//! `cell_id`, so the same configuration, seed and repetitions): its `ended_at − started_at`.
//! Cells never run before fall back to a stated heuristic, per request
//!
//! ```text
//! 2 · params · batch · (prompt + new) / 2e10 s  +  new_tokens · 2 ms  +  5 ms
//! ```
//!
//! — a forward pass costs about 2 FLOPs per parameter per token, and 2·10¹⁰ FLOP/s is a modest
//! CPU; each decode step pays about 2 ms of framework and memory-bound overhead, and each
//! request 5 ms of set-up. Those constants are deliberately rough: when some cells of the plan
//! were found in earlier runs, the heuristic is scaled by measured ÷ heuristic summed over them,
//! which calibrates it to the machine. The run loop uses the same heuristic, calibrated by the
//! cells the run has finished, to predict whether the next cell fits the budget.
//!
//! The cost is the predicted time at the budget's rate (`budget_usd` with `pricing.host` or
//! `pricing.host_usd_per_hour`), or at the host rate the pricing section names when the scenario
//! sets no budget.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tcobench_backends::model::{self, BuiltinModel};
use tcobench_backends::Device;
use tcobench_cost::{Catalog, LoadOptions, Tier};
use tcobench_results::fmt_sig;
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome};

use crate::plan::{Cell, Plan};
use crate::scenario::Scenario;

/// Arithmetic rate the heuristic assumes, FLOP/s.
pub const HEURISTIC_FLOP_PER_S: f64 = 2e10;
/// Overhead of each decode step, seconds.
pub const HEURISTIC_S_PER_NEW_TOKEN: f64 = 2e-3;
/// Overhead of each request, seconds.
pub const HEURISTIC_S_PER_REQUEST: f64 = 5e-3;

/// The heuristic in words, for output.
pub const HEURISTIC_FORMULA: &str =
    "per request 2·params·batch·(prompt+new)/2e10 s + new_tokens·2 ms + 5 ms";

/// Parameters of a built-in model, or of a model directory whose `config.json` reads.
pub fn parameter_count(model: &str) -> Option<u64> {
    match model.parse::<BuiltinModel>() {
        Ok(m) => Some(m.config().parameter_count()),
        Err(_) => model::load_config(Path::new(model))
            .ok()
            .map(|c| c.parameter_count()),
    }
}

/// The heuristic time of one request, seconds.
pub fn heuristic_request_s(params: u64, batch: u32, prompt_tokens: u32, new_tokens: u32) -> f64 {
    let tokens = f64::from(prompt_tokens) + f64::from(new_tokens);
    2.0 * params as f64 * f64::from(batch) * tokens / HEURISTIC_FLOP_PER_S
        + f64::from(new_tokens) * HEURISTIC_S_PER_NEW_TOKEN
        + HEURISTIC_S_PER_REQUEST
}

/// The heuristic time of a whole cell (warm-up included), seconds; `None` when the model's size
/// is unknown.
pub fn heuristic_cell_s(cell: &Cell) -> Option<f64> {
    let params = parameter_count(&cell.config.model)?;
    Some(
        cell.total_requests() as f64
            * heuristic_request_s(
                params,
                cell.config.batch_size,
                cell.config.prompt_tokens,
                cell.config.new_tokens,
            ),
    )
}

/// Measured ÷ heuristic time, summed over the cells measured so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Calibration {
    /// Measured seconds of the calibrating cells.
    pub measured_s: f64,
    /// Heuristic seconds of the same cells.
    pub heuristic_s: f64,
    /// How many cells.
    pub cells: usize,
}

impl Calibration {
    /// Adds one measured cell.
    pub fn add(&mut self, measured_s: f64, heuristic_s: f64) {
        if measured_s.is_finite() && heuristic_s.is_finite() && heuristic_s > 0.0 {
            self.measured_s += measured_s;
            self.heuristic_s += heuristic_s;
            self.cells += 1;
        }
    }

    /// The factor applied to the heuristic: 1 until a cell has been measured.
    pub fn factor(&self) -> f64 {
        if self.cells > 0 && self.heuristic_s > 0.0 && self.measured_s > 0.0 {
            self.measured_s / self.heuristic_s
        } else {
            1.0
        }
    }

    /// `heuristic × 0.123 (calibrated on 2 cells)`, or `heuristic (uncalibrated)`.
    pub fn describe(&self, on_what: &str) -> String {
        if self.cells == 0 {
            "heuristic (uncalibrated)".into()
        } else {
            format!(
                "heuristic × {} (calibrated on {} {on_what})",
                fmt_sig(self.factor(), 3),
                plural(self.cells, "cell")
            )
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A cell completed by an earlier run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousCell {
    /// Run id of the run.
    pub run_id: String,
    /// Its run folder.
    pub run_dir: PathBuf,
    /// The cell's `ended_at − started_at`, seconds.
    pub seconds: f64,
}

/// Cells completed (status ok, with start and end times) by the runs under `results`, by cell id;
/// each from the newest run (by `started_at`) that has it. Unreadable manifests are skipped and
/// named in the returned notes.
pub fn previous_cells(results: &Path) -> (BTreeMap<String, PreviousCell>, Vec<String>) {
    let mut notes = Vec::new();
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(results) else {
        notes.push(format!(
            "no earlier runs: {} is not a readable folder",
            results.display()
        ));
        return (found, notes);
    };
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(files::MANIFEST);
        if !path.is_file() {
            continue;
        }
        match io::read_manifest(&path) {
            Ok(m) => {
                let started = parse_time(&m.started_at);
                runs.push((started, entry.path(), m));
            }
            Err(e) => notes.push(format!("skipped {}: {e}", path.display())),
        }
    }
    // Newest first; a run without a readable start time goes last.
    runs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    for (_, dir, m) in runs {
        for c in &m.cells {
            if c.status != CellOutcome::Ok || found.contains_key(&c.cell_id) {
                continue;
            }
            let (Some(t0), Some(t1)) = (
                c.started_at.as_deref().and_then(parse_time),
                c.ended_at.as_deref().and_then(parse_time),
            ) else {
                continue;
            };
            let seconds = (t1 - t0).num_nanoseconds().map(|ns| ns as f64 / 1e9);
            if let Some(seconds) = seconds.filter(|s| *s >= 0.0) {
                found.insert(
                    c.cell_id.clone(),
                    PreviousCell {
                        run_id: m.run_id.clone(),
                        run_dir: dir.clone(),
                        seconds,
                    },
                );
            }
        }
    }
    (found, notes)
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Where a cell's estimate comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// The same cell in an earlier run.
    PreviousRun {
        /// That run's id.
        run_id: String,
    },
    /// The heuristic, times the calibration factor.
    Heuristic,
    /// No estimate: the model's size is unknown.
    Unknown,
}

/// The estimate of one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellEstimate {
    /// Position in execution order.
    pub index: usize,
    /// Cell id.
    pub cell_id: String,
    /// Readable label.
    pub label: String,
    /// Predicted wall time, seconds (`None`: unknown).
    pub seconds: Option<f64>,
    /// Where it comes from.
    pub source: Source,
    /// The uncalibrated heuristic, seconds.
    pub heuristic_s: Option<f64>,
}

/// What the predicted time costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostEstimate {
    /// Predicted cost, $.
    pub usd: f64,
    /// Rate, $/h.
    pub usd_per_hour: f64,
    /// Where the rate comes from.
    pub rate_source: String,
    /// The scenario's budget, $.
    pub budget_usd: Option<f64>,
    /// Whether the predicted cost fits the budget.
    pub budget_suffices: Option<bool>,
}

/// The prediction for a whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Scenario name.
    pub scenario_name: String,
    /// Folder searched for earlier runs.
    pub results: PathBuf,
    /// Per cell, in execution order.
    pub cells: Vec<CellEstimate>,
    /// Idle-baseline measurement before the matrix, seconds.
    pub idle_baseline_s: f64,
    /// Sum of the known cell estimates plus the idle baseline, seconds.
    pub total_s: f64,
    /// Cells without an estimate (not in `total_s`).
    pub cells_unknown: usize,
    /// The heuristic, in words.
    pub heuristic: String,
    /// Its calibration on the cells found in earlier runs.
    pub calibration: Calibration,
    /// The cost, when the scenario names a rate.
    pub cost: Option<CostEstimate>,
    /// Anything the reader should know (skipped manifests, rates that did not resolve).
    pub notes: Vec<String>,
}

/// Predicts the wall time and cost of `plan` from the runs under `results` and the heuristic.
pub fn estimate(plan: &Plan, scenario: &Scenario, results: &Path) -> Estimate {
    let (previous, mut notes) = previous_cells(results);
    let mut calibration = Calibration::default();
    for cell in &plan.cells {
        if let (Some(p), Some(h)) = (previous.get(&cell.cell_id), heuristic_cell_s(cell)) {
            calibration.add(p.seconds, h);
        }
    }
    let factor = calibration.factor();
    let cells: Vec<CellEstimate> = plan
        .cells
        .iter()
        .map(|cell| {
            let heuristic_s = heuristic_cell_s(cell);
            let (seconds, source) = match (previous.get(&cell.cell_id), heuristic_s) {
                (Some(p), _) => (
                    Some(p.seconds),
                    Source::PreviousRun {
                        run_id: p.run_id.clone(),
                    },
                ),
                (None, Some(h)) => (Some(h * factor), Source::Heuristic),
                (None, None) => (None, Source::Unknown),
            };
            CellEstimate {
                index: cell.index,
                cell_id: cell.cell_id.clone(),
                label: cell.label(),
                seconds,
                source,
                heuristic_s,
            }
        })
        .collect();
    let idle_baseline_s = scenario.power.idle_baseline_s;
    let total_s = cells.iter().filter_map(|c| c.seconds).sum::<f64>() + idle_baseline_s;
    let cells_unknown = cells.iter().filter(|c| c.seconds.is_none()).count();
    if cells_unknown > 0 {
        notes.push(format!(
            "{} without an estimate: the model size is unknown (its config.json does not read)",
            plural(cells_unknown, "cell")
        ));
    }
    let cost = match host_rate(scenario) {
        Ok(Some((usd_per_hour, rate_source))) => {
            let usd = total_s / 3600.0 * usd_per_hour;
            let budget_usd = scenario.budget.as_ref().map(|b| b.usd);
            Some(CostEstimate {
                usd,
                usd_per_hour,
                rate_source,
                budget_usd,
                budget_suffices: budget_usd.map(|b| usd <= b),
            })
        }
        Ok(None) => None,
        Err(e) => {
            notes.push(format!("no cost: {e}"));
            None
        }
    };
    Estimate {
        scenario_name: scenario.name.clone(),
        results: results.to_path_buf(),
        cells,
        idle_baseline_s,
        total_s,
        cells_unknown,
        heuristic: HEURISTIC_FORMULA.into(),
        calibration,
        cost,
        notes,
    }
}

/// The hourly rate of the machine running the benchmark: the budget's, else
/// `pricing.host_usd_per_hour`, else the on-demand price of `pricing.host` (or of the first
/// selected instance that fits the scenario's devices). `Ok(None)` when the scenario names none.
fn host_rate(scenario: &Scenario) -> Result<Option<(f64, String)>, String> {
    if let Some(b) = &scenario.budget {
        return Ok(Some((b.usd_per_hour, b.rate_source.clone())));
    }
    let Some(pricing) = scenario.costing.as_ref().and_then(|c| c.pricing.as_ref()) else {
        return Ok(None);
    };
    if let Some(rate) = pricing.host_usd_per_hour {
        return Ok(Some((rate, "pricing.host_usd_per_hour".into())));
    }
    let cpu_only = scenario.device.iter().all(|d| matches!(d, Device::Cpu));
    let catalog = Catalog::load(
        None,
        pricing.catalog.as_deref().map(Path::new),
        &LoadOptions::default(),
    )
    .map_err(|e| format!("the catalog does not load: {e}"))?;
    let host = match &pricing.host {
        Some(h) => Some(h.clone()),
        None => pricing
            .instances
            .iter()
            .flatten()
            .find(|spec| {
                catalog
                    .find_instances(
                        spec.provider.as_deref(),
                        &spec.instance_type,
                        spec.region.as_deref(),
                    )
                    .first()
                    .is_some_and(|i| i.accelerator.is_none() == cpu_only)
            })
            .cloned(),
    };
    let Some(host) = host else {
        return Ok(None);
    };
    let quote = catalog
        .price(
            host.provider.as_deref(),
            &host.instance_type,
            Tier::OnDemand,
            host.region.as_deref(),
        )
        .map_err(|e| format!("host rate of `{host}`: {e}"))?;
    Ok(Some((
        quote.usd_per_hour,
        format!(
            "{} on_demand ({} row `{}`, catalog {})",
            quote.instance.key(),
            quote.reference.file,
            quote.reference.key,
            quote.reference.catalog_version
        ),
    )))
}

/// Seconds as `12.3 s`, `4.5 min` or `1.2 h`.
pub fn fmt_duration(s: f64) -> String {
    if s < 120.0 {
        format!("{} s", fmt_sig(s, 3))
    } else if s < 7200.0 {
        format!("{} min", fmt_sig(s / 60.0, 3))
    } else {
        format!("{} h", fmt_sig(s / 3600.0, 3))
    }
}

/// Dollars with four significant digits.
pub fn fmt_usd(usd: f64) -> String {
    format!("${}", fmt_sig(usd, 4))
}

/// The estimate as text: one line per cell, then the total, the heuristic and the cost.
pub fn write_text(e: &Estimate, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "scenario `{}`: {}, estimated from earlier runs under {} and the heuristic",
        e.scenario_name,
        plural(e.cells.len(), "cell"),
        e.results.display()
    )?;
    for c in &e.cells {
        let seconds = c
            .seconds
            .map_or_else(|| "?".to_string(), |s| format!("{} s", fmt_sig(s, 3)));
        let source = match &c.source {
            Source::PreviousRun { run_id } => format!("previous run {run_id}"),
            Source::Heuristic => e.calibration.describe("in earlier runs"),
            Source::Unknown => "unknown (model size unknown)".into(),
        };
        writeln!(
            out,
            "{:>4}  {:<48}  {:>10}  {source}",
            c.index, c.label, seconds
        )?;
    }
    let from_runs = e
        .cells
        .iter()
        .filter(|c| matches!(c.source, Source::PreviousRun { .. }))
        .count();
    let heuristic = e
        .cells
        .iter()
        .filter(|c| c.source == Source::Heuristic)
        .count();
    let mut total = format!(
        "total: {} ({} from earlier runs, {} from the heuristic",
        fmt_duration(e.total_s),
        plural(from_runs, "cell"),
        heuristic
    );
    if e.cells_unknown > 0 {
        total.push_str(&format!(", {} unknown and not counted", e.cells_unknown));
    }
    total.push(')');
    if e.idle_baseline_s > 0.0 {
        total.push_str(&format!(
            ", idle baseline {} included",
            fmt_duration(e.idle_baseline_s)
        ));
    }
    writeln!(out, "{total}")?;
    if heuristic > 0 {
        writeln!(
            out,
            "heuristic: {}; {}",
            e.heuristic,
            match e.calibration.cells {
                0 => "uncalibrated: no cell of this plan was found in an earlier run".to_string(),
                n => format!(
                    "scaled × {} = measured/heuristic over {} found in earlier runs",
                    fmt_sig(e.calibration.factor(), 3),
                    plural(n, "cell")
                ),
            }
        )?;
    }
    match &e.cost {
        Some(c) => {
            let mut line = format!(
                "cost: {} at {} $/h ({})",
                fmt_usd(c.usd),
                fmt_sig(c.usd_per_hour, 4),
                c.rate_source
            );
            if let (Some(b), Some(ok)) = (c.budget_usd, c.budget_suffices) {
                line.push_str(&format!(
                    "; budget {}: {}",
                    fmt_usd(b),
                    if ok {
                        format!("suffices ({} % of it)", fmt_sig(100.0 * c.usd / b, 3))
                    } else {
                        format!(
                            "does NOT suffice (short by {}); the run will skip the cells that do not fit",
                            fmt_usd(c.usd - b)
                        )
                    }
                ));
            }
            writeln!(out, "{line}")?;
        }
        None => writeln!(
            out,
            "cost: no rate (set budget_usd with pricing.host or pricing.host_usd_per_hour)"
        )?,
    }
    for n in &e.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heuristic_matches_its_formula() {
        // 2·1e9·2·(30+10)/2e10 = 8 s of arithmetic, 10·2 ms decode, 5 ms request.
        let s = heuristic_request_s(1_000_000_000, 2, 30, 10);
        assert!((s - (8.0 + 0.02 + 0.005)).abs() < 1e-12, "{s}");
        assert!(parameter_count("tiny").is_some());
        assert_eq!(parameter_count("/nonexistent/model"), None);
    }

    #[test]
    fn calibration_is_measured_over_heuristic() {
        let mut c = Calibration::default();
        assert_eq!(c.factor(), 1.0);
        c.add(1.0, 4.0);
        c.add(3.0, 4.0);
        assert_eq!(c.cells, 2);
        assert!((c.factor() - 0.5).abs() < 1e-15);
        // Unusable pairs are ignored.
        c.add(1.0, 0.0);
        assert_eq!(c.cells, 2);
    }
}
