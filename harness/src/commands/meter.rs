//! `tcobench meter`: an external power meter's log beside our energy, and a calibration from it.
//!
//! * `tcobench meter import RUN_DIR LOG.csv [--offset-ms X | --align] [--scope TEXT]` places a
//!   power-meter or IPMI/Redfish log (`timestamp,watts`) on the run's clock, integrates it over
//!   each cell's measured window, writes `meter.json` beside our figures and re-renders the report.
//! * `tcobench meter calibrate RUN_DIR… --device LABEL --out FILE` fits
//!   `E_meter = gain · E_ours + offset_w · T` over the imported windows of one or more runs.
//! * `tcobench meter apply RUN_DIR FILE` attaches such a calibration to a later run of the same
//!   energy method: its report shows calibrated J/token beside the measured figure.
//!
//! The arithmetic is [`tcobench_analysis::meter`]'s.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tcobench_analysis::meter::{self, Calibration, MeterImport, Trace};
use tcobench_results::schema::files;
use tcobench_results::Metric;

use crate::run::writer::RUN_POWER;

use crate::commands::EXIT_BAD_INPUT;

/// `tcobench meter` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum MeterCommand {
    /// Import a power-meter log (CSV of timestamp, watts) into a run folder.
    Import(ImportArgs),
    /// Fit a gain/offset calibration from the imported meter logs of one or more runs.
    Calibrate(CalibrateArgs),
    /// Attach a calibration to a run (same energy method) and re-render its report.
    Apply(ApplyArgs),
}

/// `tcobench meter import` options.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The meter's log: a header naming a timestamp and a watts column, then one sample per line.
    pub log: PathBuf,
    /// Milliseconds to add to the meter's timestamps (positive: the meter's clock is behind).
    #[arg(long, conflicts_with = "align", allow_hyphen_values = true)]
    pub offset_ms: Option<f64>,
    /// Find the offset by correlating the meter's power with our power timeline.
    #[arg(long)]
    pub align: bool,
    /// With --align: the largest offset searched, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub max_offset_s: f64,
    /// What the meter measures, for the report (e.g. "wall plug, whole server").
    #[arg(long, default_value = "external meter")]
    pub scope: String,
}

/// `tcobench meter calibrate` options.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Run folders with an imported meter log.
    #[arg(required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// The device the calibration belongs to (host name, GPU serial, …).
    #[arg(long)]
    pub device: String,
    /// Where to write the calibration (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// `tcobench meter apply` options.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// A calibration written by `tcobench meter calibrate`.
    pub calibration: PathBuf,
}

fn bad(msg: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Runs a `tcobench meter` subcommand.
pub fn run(cmd: &MeterCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        MeterCommand::Import(a) => import(a, out),
        MeterCommand::Calibrate(a) => calibrate(a, out),
        MeterCommand::Apply(a) => apply(a, out),
    }
}

/// The run's manifest, or the reason the folder is not a run folder.
fn manifest_of(run_dir: &Path) -> Result<tcobench_results::schema::Manifest, String> {
    if !run_dir.join(files::MANIFEST).is_file() {
        return Err(format!(
            "`{}` is not a run folder: it has no {}",
            run_dir.display(),
            files::MANIFEST
        ));
    }
    tcobench_analysis::read_run_manifest(run_dir).map_err(|e| e.to_string())
}

/// Re-analyses the run and re-renders its report, so they include the meter figures.
fn refresh(run_dir: &Path) -> Result<()> {
    let stats = tcobench_analysis::analyze(run_dir)
        .with_context(|| format!("analysing {}", run_dir.display()))?;
    tcobench_report::write_report(run_dir, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.display()))?;
    Ok(())
}

fn import(a: &ImportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let manifest = match manifest_of(&a.run_dir) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let bytes = match std::fs::read(&a.log) {
        Ok(b) => b,
        Err(e) => return bad(format_args!("{}: {e}", a.log.display())),
    };
    let log_name = a.log.display().to_string();
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return bad(format_args!("{log_name}: not UTF-8 text"));
    };
    let log = match meter::parse_meter_csv(text, &log_name) {
        Ok(l) => l,
        Err(e) => return bad(e),
    };
    let origin = match chrono::DateTime::parse_from_rfc3339(&manifest.started_at) {
        Ok(t) => t.timestamp_micros() as f64 / 1000.0,
        Err(e) => {
            return bad(format_args!(
                "{}: key started_at: `{}` is not an RFC 3339 time: {e}",
                a.run_dir.join(files::MANIFEST).display(),
                manifest.started_at
            ))
        }
    };
    let mut power = Vec::new();
    for name in [files::POWER, RUN_POWER] {
        let path = a.run_dir.join(name);
        if path.is_file() {
            match tcobench_results::load::load_power(&path) {
                Ok(p) => power.extend(p),
                Err(e) => return bad(e),
            }
        }
    }
    let requests =
        match tcobench_results::load::load_requests(&a.run_dir.join(files::REQUESTS), &manifest) {
            Ok(r) => r,
            Err(e) => return bad(e),
        };
    // Our energy per cell from its requests: J/token × tokens per request, summed.
    let request_energy: BTreeMap<String, f64> = requests
        .cells
        .iter()
        .filter_map(|c| {
            let record = manifest.cells.iter().find(|r| r.cell_id == c.cell_id)?;
            let tokens = f64::from(record.config.batch_size) * f64::from(record.config.new_tokens);
            let per_token = c.metric(Metric::EnergyJPerToken);
            (!per_token.is_empty())
                .then(|| (c.cell_id.clone(), per_token.iter().sum::<f64>() * tokens))
        })
        .collect();
    let median_ms = log.median_interval_ms().unwrap_or(f64::NAN);
    let ours = meter::our_trace(&power);
    let mut notes = log.notes.clone();
    if a.offset_ms
        .is_some_and(|o| !o.is_finite() || o.abs() > 86_400_000.0)
    {
        return bad(format_args!(
            "--offset-ms must be a finite number of milliseconds within a day, got {}",
            a.offset_ms.unwrap_or_default()
        ));
    }
    if !(a.max_offset_s.is_finite() && a.max_offset_s > 0.0 && a.max_offset_s <= 3600.0) {
        return bad(format_args!(
            "--max-offset-s must be between 0 and 3600 seconds, got {}",
            a.max_offset_s
        ));
    }
    let (offset_ms, offset_method, search) = if a.align {
        let step = (median_ms / 2.0).clamp(10.0, 1000.0);
        match meter::estimate_offset(&ours, &log, origin, a.max_offset_s * 1000.0, step) {
            Some(e) if e.correlation >= 0.5 => (e.offset_ms, "correlation", Some(e)),
            Some(e) => {
                return bad(format_args!(
                    "--align: the meter's power correlates with ours at r = {:.2} at best \
                     (offset {:.0} ms): too weakly to trust; give --offset-ms instead",
                    e.correlation, e.offset_ms
                ))
            }
            None => {
                return bad(
                    "--align: our power timeline and the meter's log overlap too little \
                     (or one is flat) to correlate; give --offset-ms instead",
                )
            }
        }
    } else {
        (a.offset_ms.unwrap_or(0.0), "given", None)
    };
    if manifest.power.method == "mock" {
        notes.push(
            "this run's energy comes from the mock power source on a virtual clock; the meter \
             comparison is only a test of the procedure"
                .into(),
        );
    }
    let trace = Trace::on_run_clock(&log, origin, offset_ms);
    let cells = meter::compare_cells(&manifest, &power, &request_energy, &trace, median_ms);
    let covered = |c: &meter::CellMeter| {
        c.why_not
            .as_deref()
            .is_none_or(|w| !w.contains("does not cover"))
    };
    if !cells.iter().any(covered) {
        let (m0, m1) = trace.span().unwrap_or_default();
        return bad(format_args!(
            "{log_name}: the log covers run-clock {:.1} s to {:.1} s, which holds no cell's \
             measured window (check the meter's clock and time zone, or --offset-ms/--align)",
            m0 / 1000.0,
            m1 / 1000.0
        ));
    }
    if cells.iter().all(|c| c.meter_j.is_none()) {
        eprintln!(
            "warning: no cell's window could be compared (see the notes per cell): the meter's \
             samples ({median_ms:.0} ms apart) are too coarse for windows this short; run more \
             repetitions per cell or log the meter faster"
        );
    }
    let import = MeterImport {
        schema_version: meter::METER_SCHEMA_VERSION,
        source: a
            .log
            .file_name()
            .map_or(log_name.clone(), |n| n.to_string_lossy().into_owned()),
        source_sha256: format!("{:x}", Sha256::digest(&bytes)),
        scope: a.scope.clone(),
        time_format: log.time_format.clone(),
        samples: log.samples.len(),
        median_interval_ms: median_ms,
        offset_ms,
        offset_method: offset_method.into(),
        offset_search: search,
        ours_method: manifest.power.method.clone(),
        ours_scope: manifest.power.scope.clone(),
        median_ratio: meter::median_ratio(&cells),
        cells,
        notes,
    };
    let path = a.run_dir.join(meter::METER_FILE);
    crate::commands::write_json(&path, &import)?;
    write_import_table(&import, out)?;
    refresh(&a.run_dir)?;
    writeln!(out, "{}", path.display())?;
    Ok(ExitCode::SUCCESS)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

fn write_import_table(import: &MeterImport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "meter log {} ({} samples, median interval {:.0} ms, offset {:+.0} ms {}); ours: {} ({})",
        import.source,
        import.samples,
        import.median_interval_ms,
        import.offset_ms,
        import.offset_method,
        import.ours_method,
        import.ours_scope
    )?;
    // Whole cell ids: cells that differ only in batch size or lengths differ at the end.
    let width = import
        .cells
        .iter()
        .map(|c| c.cell_id.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "{:<width$} {:>9} {:>12} {:>12} {:>8}  note",
        "cell", "window s", "ours J", "meter J", "ratio"
    )?;
    for c in &import.cells {
        writeln!(
            out,
            "{:<width$} {:>9.3} {:>12} {:>12} {:>8}  {}",
            c.cell_id,
            (c.window_end_ms - c.window_start_ms) / 1000.0,
            fmt_opt(c.ours_j, 3),
            fmt_opt(c.meter_j, 3),
            fmt_opt(c.ratio, 3),
            c.why_not.as_deref().unwrap_or("")
        )?;
    }
    writeln!(
        out,
        "median meter/ours ratio: {}",
        fmt_opt(import.median_ratio, 3)
    )?;
    Ok(())
}

fn calibrate(a: &CalibrateArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut points = Vec::new();
    let mut methods = BTreeMap::new();
    let mut runs = Vec::new();
    let mut meter_scope = None;
    for dir in &a.run_dirs {
        let path = dir.join(meter::METER_FILE);
        if !path.is_file() {
            return bad(format_args!(
                "{}: no meter log imported (run `tcobench meter import {} LOG.csv` first)",
                dir.display(),
                dir.display()
            ));
        }
        let import: MeterImport = match meter::read_json(&path) {
            Ok(i) => i,
            Err(e) => return bad(e),
        };
        methods.insert(
            (import.ours_method.clone(), import.ours_scope.clone()),
            dir.display().to_string(),
        );
        meter_scope.get_or_insert_with(|| import.scope.clone());
        points.extend(meter::fit_points(&import));
        runs.push(dir.file_name().map_or(dir.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        }));
    }
    if methods.len() > 1 {
        return bad(format_args!(
            "the runs measured energy with different methods ({}); a calibration is per method",
            methods
                .iter()
                .map(|((m, s), d)| format!("{m}/{s} in {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let Some((method, scope)) = methods.into_keys().next() else {
        return bad("no run folder given");
    };
    let Some(fit) = meter::fit(&points) else {
        return bad(format_args!(
            "{} valid window(s) with energy > 0 across the runs: nothing to fit",
            points.len()
        ));
    };
    let cal = Calibration {
        schema_version: meter::METER_SCHEMA_VERSION,
        device: a.device.clone(),
        ours_method: method,
        ours_scope: scope,
        meter_scope: meter_scope.unwrap_or_default(),
        gain: fit.gain,
        gain_se: fit.gain_se,
        offset_w: fit.offset_w,
        offset_se: fit.offset_se,
        offset_fitted: fit.offset_fitted,
        r_squared: fit.r_squared,
        max_rel_residual: fit.max_rel_residual,
        windows: points.len(),
        runs,
        fitted_at: chrono::Utc::now().to_rfc3339(),
    };
    crate::commands::write_json(&a.out, &cal)?;
    writeln!(
        out,
        "E_meter = {:.4}{} · E_ours + {:.2}{} W · T over {} window(s){}; R² {}, largest residual {:.2} %",
        cal.gain,
        cal.gain_se.map_or(String::new(), |s| format!(" (±{s:.4})")),
        cal.offset_w,
        cal.offset_se.map_or(String::new(), |s| format!(" (±{s:.2})")),
        cal.windows,
        if cal.offset_fitted {
            ""
        } else {
            " (offset fixed at 0: the windows' mean power did not vary enough to separate it)"
        },
        fmt_opt(cal.r_squared, 4),
        100.0 * cal.max_rel_residual
    )?;
    writeln!(out, "{}", a.out.display())?;
    Ok(ExitCode::SUCCESS)
}

fn apply(a: &ApplyArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let manifest = match manifest_of(&a.run_dir) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let cal: Calibration = match meter::read_json(&a.calibration) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    if cal.schema_version != meter::METER_SCHEMA_VERSION {
        return bad(format_args!(
            "{}: key schema_version: {} is not supported (this build reads {})",
            a.calibration.display(),
            cal.schema_version,
            meter::METER_SCHEMA_VERSION
        ));
    }
    if !(cal.gain.is_finite() && cal.gain > 0.0 && cal.offset_w.is_finite()) {
        return bad(format_args!(
            "{}: key gain: a calibration needs a finite gain > 0 and a finite offset_w",
            a.calibration.display()
        ));
    }
    if cal.ours_method != manifest.power.method || cal.ours_scope != manifest.power.scope {
        return bad(format_args!(
            "{} calibrates `{}` energy ({}); this run measured with `{}` ({})",
            a.calibration.display(),
            cal.ours_method,
            cal.ours_scope,
            manifest.power.method,
            manifest.power.scope
        ));
    }
    let path = a.run_dir.join(meter::CALIBRATION_FILE);
    crate::commands::write_json(&path, &cal)?;
    refresh(&a.run_dir)?;
    writeln!(out, "{}", path.display())?;
    Ok(ExitCode::SUCCESS)
}
