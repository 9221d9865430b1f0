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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use tcobench_analysis::pricing::catalog::{Accelerator, Tier};
use tcobench_analysis::pricing::costing::{PriceFigures, RunCosts};
use tcobench_analysis::pricing::{Catalog, LoadOptions};
use tcobench_analysis::schema::{self, files, CellOutcome, CellRecord, Manifest};
use tcobench_analysis::{fmt_sig, CellStats, Metric, RunStats};
use tcobench_backends::Device;

use crate::estimate;
use crate::run::writer::RUN_POWER;

/// Exit code when an input file is missing or malformed.
pub const EXIT_BAD_INPUT: u8 = 2;
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

/// Splits a device or catalog name into upper-case alphanumeric words.
fn name_words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The catalog accelerator a host GPU name (as NVML reports it, e.g. `NVIDIA H100 80GB HBM3`,
/// perhaps followed by ` (driver …)`) denotes: the row all of whose name words appear in the
/// GPU's name, the most specific one when several do.
pub fn match_accelerator<'a>(
    gpu: &str,
    accelerators: &'a [Accelerator],
) -> Result<&'a Accelerator, String> {
    let name = gpu.split(" (driver").next().unwrap_or(gpu).trim();
    let words = name_words(name);
    let mut best: Vec<(&Accelerator, usize)> = Vec::new();
    for a in accelerators {
        let wanted = name_words(&a.name);
        if wanted.is_empty() || !wanted.iter().all(|w| words.contains(w)) {
            continue;
        }
        match best.first().map(|b| b.1) {
            Some(n) if n > wanted.len() => {}
            Some(n) if n == wanted.len() => best.push((a, n)),
            _ => best = vec![(a, wanted.len())],
        }
    }
    match best.as_slice() {
        [(a, _)] => Ok(a),
        [] => Err(format!(
            "GPU `{name}` matches no row of the catalog's accelerators.csv"
        )),
        many => Err(format!(
            "GPU `{name}` matches several rows of accelerators.csv ({})",
            many.iter()
                .map(|(a, _)| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The power limit of a cell's device, W, and where it comes from; `Err` says why it is unknown.
fn power_limit(
    cell: &CellStats,
    manifest: &Manifest,
    catalog: Option<&Catalog>,
) -> Result<(f64, String), String> {
    let device: Device = cell.device.parse()?;
    match device {
        Device::Cuda(i) => {
            let Some(gpu) = manifest.host.gpus.get(i) else {
                return Err(format!(
                    "the manifest lists no GPU {i} (host.gpus has {})",
                    manifest.host.gpus.len()
                ));
            };
            let Some(catalog) = catalog else {
                return Err("the catalog did not load".into());
            };
            let a = match_accelerator(gpu, &catalog.accelerators)?;
            match a.tdp_w {
                Some(w) => Ok((w, format!("TDP of {} ({} {})", a.name, a.vendor, a.variant))),
                None => Err(format!("accelerators.csv gives no TDP for {}", a.name)),
            }
        }
        Device::Cpu => {
            let notes = &manifest.power.notes;
            let from_notes = notes.get("tdp_w").and_then(|v| v.parse::<f64>().ok());
            let power = manifest.scenario.get("power");
            let from_user = power
                .filter(|p| p.get("cpu_tdp_from_user").and_then(|v| v.as_bool()) == Some(true))
                .and_then(|p| p.get("cpu_tdp_w"))
                .and_then(|v| v.as_f64());
            let (tdp, source) = match (from_notes, from_user) {
                (Some(w), _) => (w, "CPU TDP of the run's power estimate (power.notes.tdp_w)"),
                (None, Some(w)) => (w, "CPU TDP from the scenario's power.cpu_tdp_w"),
                (None, None) => {
                    return Err(
                        "the CPU TDP is unknown (set power.cpu_tdp_w in the scenario)".into(),
                    )
                }
            };
            let packages = notes
                .get("rapl_packages")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|n| *n >= 1.0)
                .unwrap_or(1.0);
            if packages > 1.0 {
                Ok((
                    tdp * packages,
                    format!("{source} × {packages} RAPL packages"),
                ))
            } else {
                Ok((tdp, source.to_string()))
            }
        }
    }
}

fn check_cell(
    c: &mut Checks,
    cell: &CellStats,
    record: Option<&CellRecord>,
    manifest: &Manifest,
    catalog: Option<&Catalog>,
) {
    let id = Some(cell.cell_id.as_str());
    let tps = cell.metric(Metric::TokensPerS);
    let e2e = cell.metric(Metric::E2eMs);
    let jpt = cell.metric(Metric::EnergyJPerToken);
    let tokens = f64::from(cell.batch_size) * f64::from(cell.new_tokens);

    if let (Some(t), Some(e)) = (tps, e2e) {
        let product = t.mean * e.mean / 1000.0;
        let off = if tokens > 0.0 {
            (product - tokens).abs() / tokens
        } else {
            f64::INFINITY
        };
        c.check(
            "throughput_latency",
            id,
            &[
                ("tokens_per_s_mean", t.mean),
                ("e2e_ms_mean", e.mean),
                ("product_tokens", product),
                ("tokens_per_request", tokens),
            ],
            (!at_most(off, THROUGHPUT_TOLERANCE)).then(|| {
                format!(
                    "mean tokens/s × mean e2e = {} × {} ms = {} tokens per request, but a request generates batch × new_tokens = {} ({} % off, more than {} %)",
                    sig(t.mean),
                    sig(e.mean),
                    sig(product),
                    tokens,
                    sig(100.0 * off),
                    THROUGHPUT_TOLERANCE * 100.0
                )
            }),
        );
    }

    if let Some(r) = record {
        if let (Some(a), Some(b)) = (r.window_start_ms, r.window_end_ms) {
            c.check(
                "energy_window",
                id,
                &[("window_start_ms", a), ("window_end_ms", b)],
                (!positive(b - a)).then(|| {
                    format!(
                        "the measured window lasts {} ms (from {} to {} ms): not positive",
                        sig(b - a),
                        sig(a),
                        sig(b)
                    )
                }),
            );
        }
    }

    let Some(j) = jpt else {
        c.note(format!(
            "energy per token not measured in cell {}: power and energy checks skipped",
            cell.cell_id
        ));
        return;
    };
    c.check(
        "energy_window",
        id,
        &[("energy_j_per_token_min", j.min)],
        (!positive(j.min)).then(|| {
            format!(
                "the smallest request energy is {} J/token: every request window must take energy",
                sig(j.min)
            )
        }),
    );

    if let Some(t) = tps {
        let watts = j.mean * t.mean;
        let values = |limit: Option<f64>| {
            let mut v = vec![
                ("energy_j_per_token_mean", j.mean),
                ("tokens_per_s_mean", t.mean),
                ("implied_watts", watts),
            ];
            if let Some(l) = limit {
                v.push(("limit_watts", l));
            }
            v
        };
        if !positive(watts) {
            c.fail(
                "power_within_limit",
                id,
                &values(None),
                format!(
                    "implied power {} W = {} J/token × {} tokens/s is not positive",
                    sig(watts),
                    sig(j.mean),
                    sig(t.mean)
                ),
            );
        } else {
            match power_limit(cell, manifest, catalog) {
                Ok((limit, source)) => c.check(
                    "power_within_limit",
                    id,
                    &values(Some(limit)),
                    (watts > limit * (1.0 + POWER_TOLERANCE)).then(|| {
                        format!(
                            "implied power {} W = {} J/token × {} tokens/s exceeds the {} of {} W by {} % (more than {} %)",
                            sig(watts),
                            sig(j.mean),
                            sig(t.mean),
                            source,
                            sig(limit),
                            sig(100.0 * (watts / limit - 1.0)),
                            POWER_TOLERANCE * 100.0
                        )
                    }),
                ),
                Err(why) => c.note(format!(
                    "cell {}: power check skipped: {why}",
                    cell.cell_id
                )),
            }
        }
    }

    let Some(params) = estimate::parameter_count(&cell.model) else {
        c.note(format!(
            "cell {}: energy bounds skipped: the size of model `{}` is unknown (its config.json does not read)",
            cell.cell_id, cell.model
        ));
        return;
    };
    let flops = 2.0 * params as f64;
    let floor = flops / FLOOR_FLOP_PER_J;
    let ceiling = flops / CEILING_FLOP_PER_J + CEILING_OVERHEAD_J_PER_TOKEN;
    let values = [
        ("energy_j_per_token_mean", j.mean),
        ("parameters", params as f64),
        ("floor_j_per_token", floor),
        ("ceiling_j_per_token", ceiling),
    ];
    let low = if !positive(j.mean) {
        Some(format!(
            "mean energy per token is {} J: not positive",
            sig(j.mean)
        ))
    } else if j.mean < floor {
        Some(format!(
            "mean energy per token {} J is below the floor {} J = 2 × {} parameters / {:e} FLOP/J: no device is that efficient",
            sig(j.mean),
            sig(floor),
            params,
            FLOOR_FLOP_PER_J
        ))
    } else {
        None
    };
    c.check("energy_per_token_floor", id, &values, low);
    c.check(
        "energy_per_token_ceiling",
        id,
        &values,
        (j.mean > ceiling).then(|| {
            format!(
                "mean energy per token {} J is above the ceiling {} J = 2 × {} parameters / {:e} FLOP/J + {} J overhead",
                sig(j.mean),
                sig(ceiling),
                params,
                CEILING_FLOP_PER_J,
                CEILING_OVERHEAD_J_PER_TOKEN
            )
        }),
    );
}

fn price_values(p: &PriceFigures) -> Vec<(&'static str, f64)> {
    vec![
        ("usd_per_hour", p.usd_per_hour),
        ("usd_per_1m_tokens", p.usd_per_1m_tokens.value),
        ("tokens_per_usd", p.tokens_per_usd.value),
    ]
}

fn check_costs(c: &mut Checks, costs: &RunCosts, catalog: Option<&Catalog>) {
    let same_catalog = catalog.filter(|cat| cat.identity.sha256 == costs.selection.catalog.sha256);
    if catalog.is_some() && same_catalog.is_none() {
        c.note(format!(
            "the catalog differs from the one the run was priced with (catalog {}): price rows are not cross-checked",
            costs.selection.catalog.version
        ));
    }
    for (what, sourced) in [
        ("pue", Some(&costs.selection.pue)),
        ("grid", costs.selection.grid.as_ref()),
    ] {
        let Some(s) = sourced else { continue };
        let missing = s.origin == "catalog"
            && s.reference
                .as_ref()
                .is_none_or(|r| r.file.is_empty() || r.key.is_empty());
        c.check(
            "catalog_reference",
            None,
            &[(what, s.value)],
            missing.then(|| {
                format!(
                    "the selection's {what} ({}) comes from the catalog but names no row",
                    sig(s.value)
                )
            }),
        );
    }
    for cell in &costs.cells {
        let id = Some(cell.cell_id.as_str());
        for p in &cell.prices {
            let label = format!("{} {}", p.instance, p.tier);
            let r = &p.reference;
            let problem = if r.file.trim().is_empty() || r.key.trim().is_empty() {
                Some(format!(
                    "{label}: {} $/h names no catalog row (file `{}`, key `{}`)",
                    sig(p.usd_per_hour),
                    r.file,
                    r.key
                ))
            } else if let Some(cat) = same_catalog {
                match cat.prices.iter().find(|row| row.key() == r.key) {
                    None => Some(format!(
                        "{label}: row `{}` of {} is not in catalog {}",
                        r.key, r.file, cat.identity.version
                    )),
                    Some(row) if rel_diff(row.usd_per_hour, p.usd_per_hour) > REL_TOL => {
                        Some(format!(
                            "{label}: {} $/h, but row `{}` of {} says {} $/h",
                            sig(p.usd_per_hour),
                            r.key,
                            r.file,
                            sig(row.usd_per_hour)
                        ))
                    }
                    Some(_) => None,
                }
            } else {
                None
            };
            c.check("catalog_reference", id, &price_values(p), problem);

            let product = p.usd_per_1m_tokens.value * p.tokens_per_usd.value;
            c.check(
                "tokens_per_usd",
                id,
                &price_values(p),
                (!at_most(rel_diff(product, 1e6), REL_TOL)).then(|| {
                    format!(
                        "{label}: $/1M tokens × tokens per $ = {} × {} = {}, not 10⁶",
                        sig(p.usd_per_1m_tokens.value),
                        sig(p.tokens_per_usd.value),
                        sig(product)
                    )
                }),
            );
        }

        let mut by_instance: BTreeMap<&str, Vec<&PriceFigures>> = BTreeMap::new();
        for p in &cell.prices {
            by_instance.entry(p.instance.as_str()).or_default().push(p);
        }
        for (instance, prices) in by_instance {
            let Some(first) = prices.first() else {
                continue;
            };
            for p in prices.iter().skip(1) {
                let cost_ratio = p.usd_per_1m_tokens.value / first.usd_per_1m_tokens.value;
                let price_ratio = p.usd_per_hour / first.usd_per_hour;
                c.check(
                    "tier_price_ratio",
                    id,
                    &[
                        ("usd_per_1m_tokens_a", first.usd_per_1m_tokens.value),
                        ("usd_per_1m_tokens_b", p.usd_per_1m_tokens.value),
                        ("usd_per_hour_a", first.usd_per_hour),
                        ("usd_per_hour_b", p.usd_per_hour),
                    ],
                    (!at_most(rel_diff(cost_ratio, price_ratio), REL_TOL)).then(|| {
                        format!(
                            "{instance}: $/1M tokens {} / {} = {} ({} / {}), but the prices are in the ratio {} ({} / {} $/h)",
                            p.tier,
                            first.tier,
                            sig(cost_ratio),
                            sig(p.usd_per_1m_tokens.value),
                            sig(first.usd_per_1m_tokens.value),
                            sig(price_ratio),
                            sig(p.usd_per_hour),
                            sig(first.usd_per_hour)
                        )
                    }),
                );
            }
            let of = |tier: Tier| prices.iter().find(|p| p.tier == tier).copied();
            let pairs = [
                (Tier::Spot, Tier::OnDemand),
                (Tier::Reserved1y, Tier::OnDemand),
                (Tier::Reserved3y, Tier::Reserved1y),
                (Tier::Reserved3y, Tier::OnDemand),
            ];
            for (cheap, dear) in pairs {
                let (Some(a), Some(b)) = (of(cheap), of(dear)) else {
                    continue;
                };
                let flagged = cheap == Tier::Spot
                    && catalog.is_some_and(|cat| {
                        cat.prices
                            .iter()
                            .any(|row| row.key() == a.reference.key && row.spot_above_on_demand_ok)
                    });
                let (x, y) = (a.usd_per_1m_tokens.value, b.usd_per_1m_tokens.value);
                c.check(
                    "tier_order",
                    id,
                    &[("usd_per_1m_tokens_cheaper", x), ("usd_per_1m_tokens_dearer", y)],
                    (x > y * (1.0 + REL_TOL) && !flagged).then(|| {
                        format!(
                            "{instance}: {cheap} costs {} $/1M tokens, more than {dear} at {} (the catalog does not flag it)",
                            sig(x),
                            sig(y)
                        )
                    }),
                );
            }
        }
    }
}

/// One data file of the results contract: present, matching its `FILE.sha256`, decodable.
/// `why` says why the contract requires it (for the message when it is missing).
fn check_data_file(c: &mut Checks, path: &Path, cell: Option<&str>, why: &str) {
    let sidecar = schema::checksum_path(path);
    if !path.is_file() {
        let trace = if sidecar.is_file() {
            format!(
                "; its checksum {} is there, so it was written and is gone since",
                sidecar.display()
            )
        } else {
            String::new()
        };
        c.fail(
            "data_file",
            cell,
            &[],
            format!("{}: missing ({why}){trace}", path.display()),
        );
        return;
    }
    // The read `analyze` does: checksum first (a damaged file is never decoded), then Parquet.
    match schema::read_parquet(path) {
        Ok(_) => {
            c.pass();
            if !sidecar.is_file() {
                c.note(format!(
                    "{} has no {}: it decodes, but its bytes could not be checked against a \
                     checksum written with it",
                    path.display(),
                    sidecar
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let message = if text.contains(&path.display().to_string()) {
                text
            } else {
                format!("{}: {text}", path.display())
            };
            c.fail("data_file", cell, &[], message);
        }
    }
}

/// The data files the results contract says a finished run folder holds ([`check_data_file`]).
fn check_data_files(c: &mut Checks, run_dir: &Path, manifest: &Manifest) {
    let merged = "every run folder holds it, merged from the committed cells; `tcobench collect` \
                  merges them again";
    check_data_file(c, &run_dir.join(files::REQUESTS), None, merged);
    check_data_file(c, &run_dir.join(files::POWER), None, merged);
    let run_power = run_dir.join(RUN_POWER);
    if manifest.power.idle_baseline.is_some() {
        check_data_file(
            c,
            &run_power,
            None,
            "manifest.json records an idle baseline, whose power samples it holds",
        );
    } else if run_power.is_file() || schema::checksum_path(&run_power).is_file() {
        check_data_file(c, &run_power, None, "the power samples taken between cells");
    }
    for record in &manifest.cells {
        let id = record.cell_id.as_str();
        let dir = run_dir.join(files::CELLS).join(id);
        if dir.join(files::CELL_STATUS).is_file() {
            for name in [files::REQUESTS, files::POWER] {
                check_data_file(
                    c,
                    &dir.join(name),
                    Some(id),
                    "the cell is committed (its status.json is there); its measurements are \
                     what the run's files are merged from",
                );
            }
        } else if record.status == CellOutcome::Ok {
            c.fail(
                "data_file",
                Some(id),
                &[],
                format!(
                    "{}: missing (manifest.json records cell {id} as ok, but its committed files \
                     are not there: `tcobench collect` and `run --resume` need them)",
                    dir.join(files::CELL_STATUS).display()
                ),
            );
        } else {
            c.pass();
        }
    }
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

    fn accelerators() -> Vec<Accelerator> {
        Catalog::builtin(&LoadOptions::default())
            .expect("the shipped catalog loads")
            .accelerators
    }

    #[test]
    fn nvml_names_match_catalog_rows() {
        let acc = accelerators();
        let name = |gpu: &str| match_accelerator(gpu, &acc).map(|a| a.name.clone());
        assert_eq!(
            name("NVIDIA H100 80GB HBM3 (driver 550.54.15)").unwrap(),
            "H100"
        );
        assert_eq!(name("NVIDIA H200").unwrap(), "H200");
        assert_eq!(name("NVIDIA A100-SXM4-40GB").unwrap(), "A100-40GB");
        assert_eq!(name("NVIDIA A100-SXM4-80GB").unwrap(), "A100-80GB");
        assert_eq!(name("NVIDIA A100 80GB PCIe").unwrap(), "A100-80GB-PCIe");
        assert_eq!(name("Tesla T4").unwrap(), "T4");
        assert_eq!(name("NVIDIA L4").unwrap(), "L4");
        assert!(name("NVIDIA L40S").is_err());
        assert!(name("NVIDIA GeForce RTX 4090").is_err());
    }

    #[test]
    fn relative_difference_is_symmetric() {
        assert_eq!(rel_diff(2.0, 2.0), 0.0);
        assert!((rel_diff(1.0, 2.0) - 0.5).abs() < 1e-15);
        assert_eq!(rel_diff(1.0, 2.0), rel_diff(2.0, 1.0));
    }
}
