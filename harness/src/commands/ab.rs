//! `tcobench ab --base BIN_A --new BIN_B SCENARIO`: two tcobench builds (or two builds of an
//! engine behind them) compared on this host the way a CI gate should compare a pull request
//! with main.
//!
//! Each build runs the scenario `--runs N` times, in ABBA blocks (A B B A A B B A …), each run a
//! separate invocation of that build's `tcobench run`, so drift of the host while they run
//! falls on both alike and every run is an execution of its own. The runs land in
//! `OUT/ab-<time>-<scenario>/base/` and `…/new/`; `ab.json` records the order, each run's start
//! and end, the binaries and their versions. The verdict is `compare`'s on the two folders, at
//! the executions level: the run is the unit.
//!
//! Exit codes: `0` done (also when cells regressed, unless `--fail-on-regression`); `2` bad input
//! (a binary that does not run, a bad scenario, a run that failed to start or exited with an
//! error); `3` `--fail-on-regression` and the gate did not pass ([`super::compare::gate_failures`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use serde::Serialize;
use tcobench_analysis::compare::{self, CompareOptions};
use tcobench_stats::inference::Bootstrap;

use crate::commands::compare::{parse_metric_or_bad, warn_and_gate, write_text};
use crate::commands::{write_json, EXIT_BAD_INPUT};
use crate::plan::sanitize;
use crate::run::process::EXIT_CELL_FAILED;

/// Arguments of `tcobench ab`.
#[derive(clap::Args, Debug)]
pub struct AbArgs {
    /// The baseline build's tcobench executable.
    #[arg(long, value_name = "BIN_A")]
    pub base: PathBuf,
    /// The new build's tcobench executable.
    #[arg(long, value_name = "BIN_B")]
    pub new: PathBuf,
    /// Scenario YAML file both builds run.
    pub scenario: PathBuf,
    /// Runs per build (at least 2; the run is the unit, so more runs find smaller changes).
    #[arg(long, default_value_t = 4)]
    pub runs: usize,
    /// Parent folder of the A/B folder.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Metric compared.
    #[arg(long, default_value = "tokens_per_s")]
    pub metric: String,
    /// Noise threshold on the relative change (0.02 = ±2 %).
    #[arg(long, default_value_t = 0.02)]
    pub threshold: f64,
    /// Significance level of the test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Print the comparison as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit with code 3 when a cell regressed, no cell was compared, or a base cell is missing.
    #[arg(long)]
    pub fail_on_regression: bool,
}

/// One run of the design, as `ab.json` records it.
#[derive(Debug, Serialize)]
struct AbRun {
    /// Position in the order (0-based).
    order: usize,
    /// `base` or `new`.
    side: &'static str,
    /// The run folder the build printed.
    run_dir: String,
    /// When the invocation started and ended (RFC 3339).
    started_at: String,
    ended_at: String,
    /// Its exit code (0 complete, 3 cells failed).
    exit_code: Option<i32>,
}

/// `ab.json`.
#[derive(Debug, Serialize)]
struct AbRecord {
    scenario: String,
    base_bin: String,
    new_bin: String,
    base_version: String,
    new_version: String,
    runs_per_side: usize,
    design: &'static str,
    order: Vec<AbRun>,
}

/// The ABBA order of `runs` runs per side: `false` is base, `true` is new.
pub fn abba(runs: usize) -> Vec<bool> {
    (0..runs)
        .flat_map(|k| {
            if k % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            }
        })
        .collect()
}

fn bad(message: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

fn version(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: cannot run it: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: `--version` exited with {}",
            bin.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `tcobench ab`.
pub fn run(args: &AbArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let metric = match parse_metric_or_bad(&args.metric) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    if args.runs < 2 {
        return bad(format!(
            "--runs must be at least 2 per build (the run is the unit of the comparison), got {}",
            args.runs
        ));
    }
    if !args.scenario.is_file() {
        return bad(format!(
            "{}: no such scenario file",
            args.scenario.display()
        ));
    }
    let (base_version, new_version) = match (version(&args.base), version(&args.new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let name = sanitize(
        &args
            .scenario
            .file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().to_string()),
    );
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let folder = args.out.join(format!("ab-{stamp}-{name}"));
    for side in ["base", "new"] {
        std::fs::create_dir_all(folder.join(side))
            .with_context(|| format!("creating {}", folder.join(side).display()))?;
    }
    let mut record = AbRecord {
        scenario: args.scenario.display().to_string(),
        base_bin: args.base.display().to_string(),
        new_bin: args.new.display().to_string(),
        base_version,
        new_version,
        runs_per_side: args.runs,
        design: "ABBA blocks: A B B A A B B A …, each run a separate invocation",
        order: Vec::new(),
    };
    let order = abba(args.runs);
    for (i, &is_new) in order.iter().enumerate() {
        let (side, bin) = if is_new {
            ("new", &args.new)
        } else {
            ("base", &args.base)
        };
        eprintln!(
            "ab: run {} of {}: {side} ({})",
            i + 1,
            order.len(),
            bin.display()
        );
        let started_at = chrono::Utc::now().to_rfc3339();
        let child = Command::new(bin)
            .arg("run")
            .arg(&args.scenario)
            .arg("--out")
            .arg(folder.join(side))
            .args(["--no-log", "--quiet"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", bin.display()))?;
        let ended_at = chrono::Utc::now().to_rfc3339();
        let code = child.status.code();
        let printed = String::from_utf8_lossy(&child.stdout);
        let run_dir = printed.lines().last().unwrap_or("").trim().to_string();
        record.order.push(AbRun {
            order: i,
            side,
            run_dir: run_dir.clone(),
            started_at,
            ended_at,
            exit_code: code,
        });
        write_json(&folder.join("ab.json"), &record)?;
        let ran = matches!(code, Some(0)) || code == Some(i32::from(EXIT_CELL_FAILED));
        if !ran || !Path::new(&run_dir).join("manifest.json").is_file() {
            return bad(format!(
                "{side} run {} ({} run {}) exited with {} and left no run folder; the design is \
                 incomplete (runs so far in {})",
                i + 1,
                bin.display(),
                args.scenario.display(),
                child.status,
                folder.display()
            ));
        }
    }
    let opts = CompareOptions {
        metric,
        threshold: args.threshold,
        threshold_auto: false,
        alpha: args.alpha,
        bootstrap: Bootstrap::default(),
    };
    let comparison =
        match compare::compare_runs(&folder.join("base"), &folder.join("new"), &opts, None) {
            Ok(c) => c,
            Err(e) => return bad(e),
        };
    write_json(&folder.join("comparison.json"), &comparison)?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&comparison)?)?;
    } else {
        write_text(&comparison, out)?;
        writeln!(out, "runs, order and comparison: {}", folder.display())?;
    }
    Ok(warn_and_gate(&comparison, args.fail_on_regression, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abba_blocks() {
        let o: String = abba(4).iter().map(|&n| if n { 'B' } else { 'A' }).collect();
        assert_eq!(o, "ABBAABBA");
    }
}
