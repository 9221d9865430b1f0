//! `tcobench noise SCENARIO --runs N`: how much one build's runs differ on this host.
//!
//! Runs the scenario N times back to back (each a run of its own, carried out as `tcobench run`
//! does), then makes the noise profile of those runs (`tcobench_analysis::noise`): per cell and
//! metric the spread of the runs' means, what the requests inside a run predict for it, the
//! between-run factor, the threshold that keeps A/A false regressions at or below alpha, and how
//! many A/A comparisons the per-request gate and the widened gate got wrong. It writes
//! `noise-profile.json` beside the runs and installs it as this host's profile
//! (`$TCOBENCH_CACHE/noise/<host>.json`, merged with what the host's profile already holds), which
//! `compare` then uses for single-execution sides and `--threshold auto`.
//!
//! `tcobench noise --from DIR` makes the profile from runs already there (a folder of run
//! folders) without running anything.
//!
//! Exit codes: `0` done; `2` bad input (scenario, folder, too few runs); `3` a run did not
//! complete (the profile is still made from what there is, when enough).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_analysis::compare::{load_side, LoadedRun};
use tcobench_analysis::noise::{NoiseProfile, ProfileOptions, MIN_RUNS, PROFILE_VERSION};
use tcobench_results::fmt_sig;
use tcobench_stats::inference::Bootstrap;

use crate::commands::{compare::parse_metric_or_bad, write_json, EXIT_BAD_INPUT};
use crate::plan::{sanitize, PlanOverrides};
use crate::run::process::{ProcessOptions, DEFAULT_CELL_TIMEOUT_S, EXIT_CELL_FAILED};
use crate::run::{cache_root, default_models_dir, run_with, Execution, RunOptions};
use crate::scenario::{Overrides, Scenario};

/// The profile's file name in a noise folder.
pub const PROFILE_FILE: &str = "noise-profile.json";

/// Arguments of `tcobench noise`.
#[derive(clap::Args, Debug)]
pub struct NoiseArgs {
    /// Scenario YAML file to run N times.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub scenario: Option<PathBuf>,
    /// How many runs (at least 3; 10 or more for a threshold worth trusting).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Make the profile from the run folders under DIR instead of running.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Parent folder of the noise folder (its runs and profile).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Metric of the summary table (the profile holds every metric).
    #[arg(long, default_value = "tokens_per_s")]
    pub metric: String,
    /// Significance level of the thresholds and of the gates counted.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// The fixed threshold false alarms are counted at (compare's default).
    #[arg(long, default_value_t = 0.02)]
    pub threshold: f64,
    /// Do not install the profile as this host's.
    #[arg(long)]
    pub no_install: bool,
    /// Where built-in models are generated and cached.
    #[arg(long, env = "TCOBENCH_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// This host's noise profile: `noise/<host name>.json` in the cache.
pub fn host_profile_path() -> PathBuf {
    let host = crate::run::host::host_info().hostname;
    cache_root()
        .join("noise")
        .join(format!("{}.json", sanitize(&host)))
}

/// Reads a noise profile file.
///
/// # Errors
/// A message naming the file: unreadable, not a profile, or of another format version.
pub fn read_profile(path: &Path) -> Result<NoiseProfile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a noise profile: {e}", path.display()))?;
    match value.get("profile_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROFILE_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "{}: profile version {v} is not supported (this tcobench reads {PROFILE_VERSION}); \
                 measure it again with `tcobench noise`",
                path.display()
            ))
        }
        None => {
            return Err(format!(
                "{}: not a noise profile (no profile_version)",
                path.display()
            ))
        }
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{}: not a noise profile: {e}", path.display()))
}

fn bad(message: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Runs `tcobench noise`.
pub fn run(args: &NoiseArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let metric = match parse_metric_or_bad(&args.metric) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    if !(args.alpha > 0.0 && args.alpha < 0.5) {
        return bad(format!("--alpha must lie in (0, 0.5), got {}", args.alpha));
    }
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        return bad(format!(
            "--threshold must be a fraction ≥ 0 (0.02 = 2 %), got {}",
            args.threshold
        ));
    }
    let (folder, incomplete) = match (&args.from, &args.scenario) {
        (Some(dir), _) => (dir.clone(), false),
        (None, Some(scenario)) => {
            if args.runs < MIN_RUNS {
                return bad(format!(
                    "--runs must be at least {MIN_RUNS} (a spread needs runs to spread), got {}",
                    args.runs
                ));
            }
            match run_many(scenario, args)? {
                Ok(done) => done,
                Err(code) => return Ok(code),
            }
        }
        (None, None) => unreachable!("clap requires a scenario without --from"),
    };
    let runs: Vec<LoadedRun> = match load_side(&folder.join("runs")).or_else(|_| load_side(&folder))
    {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let opts = ProfileOptions {
        alpha: args.alpha,
        reference_threshold: args.threshold,
        bootstrap: Bootstrap::default(),
    };
    let profile = match NoiseProfile::build(
        &runs,
        &opts,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ) {
        Ok(p) => p,
        Err(e) => return bad(format!("{}: {e}", folder.display())),
    };
    let path = folder.join(PROFILE_FILE);
    write_json(&path, &profile)?;
    write_summary(&profile, metric, out)?;
    writeln!(out, "profile: {}", path.display())?;
    if !args.no_install {
        let host = host_profile_path();
        if crate::run::host::host_info().hostname != profile.host.hostname {
            eprintln!(
                "note: the runs come from host {}, not this one: the profile is not installed as \
                 this host's (name it with `compare --noise-profile {}`)",
                profile.host.hostname,
                path.display()
            );
        } else {
            let merged = match read_profile(&host) {
                Ok(mut old) if old.host == profile.host => {
                    old.absorb(profile.clone());
                    old
                }
                _ => profile.clone(),
            };
            if let Some(dir) = host.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write_json(&host, &merged)?;
            writeln!(
                out,
                "installed as this host's noise profile: {}",
                host.display()
            )?;
        }
    }
    Ok(if incomplete {
        ExitCode::from(EXIT_CELL_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the scenario `args.runs` times into a new noise folder; returns the folder and whether
/// a run did not complete.
fn run_many(scenario_path: &Path, args: &NoiseArgs) -> Result<Result<(PathBuf, bool), ExitCode>> {
    let scenario = Scenario::load(scenario_path, &Overrides::default())?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let folder = args
        .out
        .join(format!("noise-{stamp}-{}", sanitize(&scenario.name)));
    let runs_dir = folder.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("creating {}", runs_dir.display()))?;
    let opts = RunOptions {
        out: runs_dir.clone(),
        models_dir: args.models_dir.clone().unwrap_or_else(default_models_dir),
        progress: !args.quiet,
        experiment_log: None,
        command: crate::commands::command_line(),
        allow_disagreement: false,
    };
    let exe = std::env::current_exe().context("locating the tcobench executable")?;
    let execution = Execution::Processes(ProcessOptions {
        exe,
        cell_timeout: std::time::Duration::from_secs_f64(
            scenario.cell_timeout_s.unwrap_or(DEFAULT_CELL_TIMEOUT_S),
        ),
        handle_ctrl_c: true,
        // As `tcobench run` carries them out: the profile describes the runs `compare` will see.
        process_per_cell: false,
    });
    let mut incomplete = false;
    for k in 1..=args.runs {
        let outcome = run_with(
            &scenario,
            scenario_path,
            &opts,
            &PlanOverrides::default(),
            &execution,
        )?;
        incomplete |= !outcome.complete();
        eprintln!(
            "noise: run {k} of {} done: {}",
            args.runs,
            outcome.run_dir.path.display()
        );
    }
    Ok(Ok((folder, incomplete)))
}

fn pct(x: f64) -> String {
    format!("{}%", fmt_sig(100.0 * x, 3))
}

/// The profile of one metric as a table, then the false alarms of both gates.
fn write_summary(
    p: &NoiseProfile,
    metric: tcobench_results::Metric,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "noise profile of {} on {} ({} runs), {}:",
        p.scenario_name,
        p.host.hostname,
        p.runs,
        metric.name()
    )?;
    let mut rows = vec![[
        "cell",
        "runs",
        "cv of run means",
        "cv within",
        "factor",
        "threshold",
        "A/A alarms per-request",
        "widened",
    ]
    .map(String::from)
    .to_vec()];
    for cell in &p.cells {
        let Some(m) = cell.metrics.get(metric.name()) else {
            continue;
        };
        let alarms = |f: fn(&tcobench_analysis::noise::FalseAlarms) -> usize| {
            m.false_alarms
                .as_ref()
                .map_or("–".to_string(), |a| format!("{}/{}", f(a), a.comparisons))
        };
        rows.push(vec![
            cell.label.clone(),
            m.runs.to_string(),
            pct(m.cv_of_run_means),
            pct(m.cv_within),
            m.between_factor
                .map_or("–".to_string(), |f| format!("{}×", fmt_sig(f, 3))),
            pct(m.threshold),
            alarms(|a| a.requests.alarms()),
            alarms(|a| a.widened.alarms()),
        ]);
    }
    crate::commands::compare::write_table(
        out,
        &rows,
        &[false, true, true, true, true, true, true, true],
    )?;
    if let Some(total) = p.false_alarms.get(metric.name()) {
        let rate = |n: usize| {
            if total.comparisons == 0 {
                "–".to_string()
            } else {
                pct(n as f64 / total.comparisons as f64)
            }
        };
        writeln!(
            out,
            "A/A comparisons: {} ({} pairs of runs, each cell compared) — per-request gate (compare without a profile): {} regressed, {} \
             improved ({}); widened gate (cross-validated profile): {} regressed, {} improved ({}); \
             threshold ±{}, alpha {}",
            total.comparisons,
            p.runs * p.runs.saturating_sub(1) / 2,
            total.requests.regressed,
            total.requests.improved,
            rate(total.requests.alarms()),
            total.widened.regressed,
            total.widened.improved,
            rate(total.widened.alarms()),
            pct(p.reference_threshold),
            p.alpha
        )?;
    }
    Ok(())
}
