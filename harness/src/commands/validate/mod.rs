//! `tcobench validate RUN_DIR`: physical and arithmetic sanity checks on a finished run.
//!
//! It reads `manifest.json` and `stats.json` (nothing is recomputed from the raw requests) and
//! checks, for every completed cell:
//!
//! * `power_within_limit` — the implied power `W = mean J/token × mean tokens/s` is positive and
//!   at most 10 % above the device's limit: the catalog TDP of the GPU the host reported for a
//!   CUDA cell (its NVML name matched against `accelerators.csv`), the CPU TDP the run used for a
//!   CPU cell (`power.notes.tdp_w` of the CPU estimate, else a `power.cpu_tdp_w` the scenario
//!   set, × the RAPL packages measured); an unknown limit skips the check with a note;
//! * `energy_per_token_floor` — J/token is positive and at least `2 · params / 5e12`: no device
//!   does a forward pass's 2 FLOPs per parameter at more than 5·10¹² FLOP/J;
//! * `energy_per_token_ceiling` — J/token is at most `2 · params / 1e7 + 1`: 10⁷ FLOP/J is far
//!   below any CPU, and 1 J per token covers framework overhead at batch 1;
//! * `throughput_latency` — `mean tokens/s × mean e2e / 1000` is within 5 % of
//!   `batch × new_tokens`, the tokens one request generates;
//! * `energy_window` — the measured window has a positive duration and every request a positive
//!   energy (the minimum J/token is > 0);
//!
//! and, for the cost figures in `stats.json` → `costing`:
//!
//! * `tier_price_ratio` — for one cell and instance, $/1M tokens of two tiers are in the ratio
//!   of their $/h (to 1e-9 relative);
//! * `tier_order` — spot ≤ on-demand (unless the catalog row sets `spot_above_on_demand_ok`),
//!   reserved 3 y ≤ reserved 1 y ≤ on-demand;
//! * `tokens_per_usd` — $/1M tokens × tokens per $ = 10⁶ (to 1e-9 relative);
//! * `catalog_reference` — every price names a catalog row (file and key), and, when the
//!   catalog is the one the run was priced with, that row exists at that price; catalog-sourced
//!   PUE and grid intensity carry their row.
//!
//! and, for the data files of the results contract (`results/README.md`), before any figure:
//!
//! * `data_file` — `requests.parquet` and `power.parquet` of the run, `run_power.parquet` when the
//!   manifest records an idle baseline (or the file or its checksum is there), and the two Parquet
//!   files of every committed cell (`cells/<cell-id>/` with its `status.json`; a cell the
//!   manifest records as ok must have one) are present, match the SHA-256 in their `FILE.sha256`
//!   sidecar and decode — the same read ([`schema::read_parquet`]) `analyze` and `collect` do,
//!   so a folder `validate` passes is one they can read. A file without a sidecar (written by
//!   another tool) is decoded only, with a note.
//!
//! Exit codes: `0` every check passed (one line: `N checks passed`); `2` `manifest.json` or
//! `stats.json` is missing or malformed (the message names the file); `3` at least one finding
//! (a missing, damaged or undecodable data file is one, naming the file).
//!
//! The checks are grouped by what they read: `cells.rs` the physical figures of each completed
//! cell, `costs.rs` the cost figures, `data_files.rs` the files of the results contract.

mod cells;
mod costs;
mod data_files;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_cost::{Catalog, LoadOptions};
use tcobench_results::fmt_sig;
use tcobench_results::schema::{files, CellOutcome, CellRecord, Manifest};

use self::cells::check_cell;
use self::costs::check_costs;
use self::data_files::check_data_files;

pub use self::cells::match_accelerator;

use crate::commands::EXIT_BAD_INPUT;

/// Exit code when a check found something implausible.
pub const EXIT_IMPLAUSIBLE: u8 = 3;

/// How far above its limit the implied power may be (measurement noise, boost clocks).
pub const POWER_TOLERANCE: f64 = 0.10;

/// Most FLOPs per joule any device achieves, generously (the J/token floor).
pub const FLOOR_FLOP_PER_J: f64 = 5e12;

/// Fewest FLOPs per joule a working device achieves, generously (the J/token ceiling).
pub const CEILING_FLOP_PER_J: f64 = 1e7;

/// Overhead energy per token allowed on top of the ceiling's arithmetic, J.
pub const CEILING_OVERHEAD_J_PER_TOKEN: f64 = 1.0;

/// Relative tolerance of identities that hold exactly up to rounding.
pub const REL_TOL: f64 = 1e-9;

/// Relative tolerance of tokens/s × e2e against the tokens of one request.
pub const THROUGHPUT_TOLERANCE: f64 = 0.05;

/// Arguments of `tcobench validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Run folder (holding manifest.json and stats.json).
    pub run_dir: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One implausible figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Check name (`power_within_limit`, `tier_price_ratio`, …).
    pub check: String,
    /// Cell concerned, when the check is per cell.
    pub cell_id: Option<String>,
    /// The numbers involved, by name.
    pub values: BTreeMap<String, f64>,
    /// Why it is implausible, in words.
    pub message: String,
}

/// The outcome of every check on a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    /// Run folder.
    pub run_dir: PathBuf,
    /// Checks evaluated.
    pub checks: usize,
    /// Checks that passed.
    pub passed: usize,
    /// Checks that did not.
    pub findings: Vec<Finding>,
    /// Checks skipped, and why.
    pub notes: Vec<String>,
}

impl Validation {
    /// Whether nothing implausible was found.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Collects check outcomes.
struct Checks {
    checks: usize,
    findings: Vec<Finding>,
    notes: Vec<String>,
}

impl Checks {
    fn pass(&mut self) {
        self.checks += 1;
    }

    fn fail(&mut self, check: &str, cell: Option<&str>, values: &[(&str, f64)], message: String) {
        self.checks += 1;
        self.findings.push(Finding {
            check: check.into(),
            cell_id: cell.map(str::to_string),
            values: values.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            message,
        });
    }

    /// Records the outcome of one check: `problem` is `None` when it passed.
    fn check(
        &mut self,
        check: &str,
        cell: Option<&str>,
        values: &[(&str, f64)],
        problem: Option<String>,
    ) {
        match problem {
            None => self.pass(),
            Some(message) => self.fail(check, cell, values, message),
        }
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// `x > 0`; false for NaN.
fn positive(x: f64) -> bool {
    x > 0.0
}

/// `x ≤ limit`; false for NaN.
fn at_most(x: f64, limit: f64) -> bool {
    x <= limit
}

fn sig(x: f64) -> String {
    fmt_sig(x, 4)
}

/// Runs every check on a run's manifest and statistics. `catalog` (the shipped catalog plus the
/// run's overlay) supplies GPU TDPs and the price rows to cross-check; without it those checks
/// are skipped with a note.
pub fn validate(
    run_dir: &Path,
    manifest: &Manifest,
    stats: &RunStats,
    catalog: Option<&Catalog>,
) -> Validation {
    let mut c = Checks {
        checks: 0,
        findings: Vec::new(),
        notes: Vec::new(),
    };
    check_data_files(&mut c, run_dir, manifest);
    let records: BTreeMap<&str, &CellRecord> = manifest
        .cells
        .iter()
        .map(|r| (r.cell_id.as_str(), r))
        .collect();
    for cell in &stats.cells {
        if cell.status != CellOutcome::Ok {
            continue;
        }
        check_cell(
            &mut c,
            cell,
            records.get(cell.cell_id.as_str()).copied(),
            manifest,
            catalog,
        );
    }
    match &stats.costing {
        Some(costs) => check_costs(&mut c, costs, catalog),
        None => c.note("stats.json has no costing: cost checks skipped".into()),
    }
    Validation {
        run_dir: run_dir.to_path_buf(),
        checks: c.checks,
        passed: c.checks - c.findings.len(),
        findings: c.findings,
        notes: c.notes,
    }
}

fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn read_stats(path: &Path) -> Result<RunStats, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: not found (`tcobench analyze RUN_DIR` writes it)",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a stats.json this version reads: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Runs `tcobench validate`.
pub fn run(args: &ValidateArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let manifest = match tcobench_analysis::read_run_manifest(&args.run_dir) {
        Ok(m) => m,
        Err(e) => {
            let path = args.run_dir.join(files::MANIFEST);
            let text = e.to_string();
            return Ok(if text.contains(&path.display().to_string()) {
                bad_input(text)
            } else {
                bad_input(format!("{}: {text}", path.display()))
            });
        }
    };
    let stats = match read_stats(&args.run_dir.join(files::STATS)) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(e)),
    };
    let overlay = stats
        .costing
        .as_ref()
        .and_then(|c| c.selection.catalog_overlay.clone())
        .or_else(|| {
            manifest
                .costing
                .as_ref()
                .and_then(|c| c.pricing.as_ref())
                .and_then(|p| p.catalog.clone())
        });
    let catalog = Catalog::load(
        None,
        overlay.as_deref().map(Path::new),
        &LoadOptions::default(),
    );
    let mut v = match &catalog {
        Ok(cat) => validate(&args.run_dir, &manifest, &stats, Some(cat)),
        Err(_) => validate(&args.run_dir, &manifest, &stats, None),
    };
    if let Err(e) = &catalog {
        v.notes.push(format!(
            "the catalog did not load ({e}): GPU TDPs and price rows unchecked"
        ));
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for f in &v.findings {
            // A missing or damaged file is a failure, not an implausible figure.
            let kind = if f.check == "data_file" {
                "FAILED"
            } else {
                "IMPLAUSIBLE"
            };
            match &f.cell_id {
                Some(cell) => writeln!(out, "{kind} {} [{cell}]: {}", f.check, f.message)?,
                None => writeln!(out, "{kind} {}: {}", f.check, f.message)?,
            }
        }
        if v.ok() {
            writeln!(out, "{} checks passed", v.checks)?;
        } else {
            writeln!(
                out,
                "{} of {} checks found something implausible",
                v.findings.len(),
                v.checks
            )?;
        }
        for n in &v.notes {
            eprintln!("note: {n}");
        }
    }
    Ok(if v.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_IMPLAUSIBLE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_difference_is_symmetric() {
        assert_eq!(rel_diff(2.0, 2.0), 0.0);
        assert!((rel_diff(1.0, 2.0) - 0.5).abs() < 1e-15);
        assert_eq!(rel_diff(1.0, 2.0), rel_diff(2.0, 1.0));
    }
}
