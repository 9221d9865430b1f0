//! `tcobench compare BASE NEW` and `tcobench export RUN`.
//!
//! `BASE` and `NEW` are run folders, or folders of run folders (what `tcobench ab` and
//! `tcobench noise` write): each side's executions are every replicate of every run in it, and
//! the comparison is made at the level they allow (`tcobench_analysis::compare`). A side with a
//! single execution is widened by this host's noise profile when there is one
//! (`--noise-profile`, else the one `tcobench noise` installed for this host), and says so
//! plainly when there is none.
//!
//! Both commands only read run folders. The logic lives in `tcobench_analysis::compare` and
//! `tcobench_report::export`; this module parses options, renders text and picks exit codes:
//!
//! * `0`: done (for `compare`, also when cells regressed unless `--fail-on-regression`);
//! * `2`: bad input — a path that is not a readable run folder (the message names it), an unknown
//!   metric, an option out of range (`--allow-missing` without `--fail-on-regression`);
//! * `3`: `compare --fail-on-regression` and the gate did not pass: at least one cell regressed,
//!   no cell could be compared at all, or (unless `--allow-missing`) a cell measured in the base
//!   run is missing from the new run — absent (renamed, dropped), failed, not run, or without
//!   usable values of the metric. A gate that checked nothing, or not what the base measured,
//!   must not pass; each reason is printed on standard error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tcobench_analysis::compare::{
    self, CompareLevel, CompareOptions, Comparison, ProfileChoice, Side,
};
use tcobench_analysis::noise::NoiseProfile;
use tcobench_report::export::{self, GabDirection};
use tcobench_results::fmt_sig;
use tcobench_results::schema::CellOutcome;
use tcobench_stats::inference::{Bootstrap, Verdict};

use crate::commands::EXIT_BAD_INPUT;
/// Exit code of `compare --fail-on-regression` when the gate did not pass: a cell regressed, no
/// cell was compared, or a base cell is missing from the new run ([`gate_failures`]).
pub const EXIT_REGRESSED: u8 = 3;

/// Arguments of `tcobench compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Baseline: a run folder, or a folder of run folders.
    pub base: PathBuf,
    /// New: a run folder, or a folder of run folders.
    pub new: PathBuf,
    /// Metric compared (a column of requests.parquet, or energy_j_per_token).
    #[arg(long, default_value = "tokens_per_s")]
    pub metric: String,
    /// Noise threshold on the relative change (0.02 = ±2 %), or `auto`: each cell's threshold
    /// from the noise profile (the change A/A runs of this host stay within).
    #[arg(long, default_value = "0.02", value_parser = parse_threshold)]
    pub threshold: Threshold,
    /// Significance level of the test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Noise profile to widen single-execution sides with (default: this host's, written by
    /// `tcobench noise`, used only for runs of this host).
    #[arg(long, value_name = "FILE", conflicts_with = "no_noise_profile")]
    pub noise_profile: Option<PathBuf>,
    /// Use no noise profile: single-execution sides are compared on their requests alone.
    #[arg(long)]
    pub no_noise_profile: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit with code 3 when any cell regressed, when no cell could be compared, or when a cell
    /// measured in the base run is missing from the new run (absent, failed, not run, or without
    /// usable values): a gate that compared nothing, or less than the base measured, fails.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// With --fail-on-regression: let base cells missing from the new run pass the gate (they
    /// are still listed). A comparison of no cell at all still fails.
    #[arg(long, requires = "fail_on_regression")]
    pub allow_missing: bool,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One row per cell and metric.
    Csv,
    /// Bencher Metric Format (JSON).
    Bmf,
    /// github-action-benchmark custom JSON.
    GithubActionBenchmark,
}

/// Which github-action-benchmark custom tool the exported file is for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `tool: customBiggerIsBetter`: tokens_per_s.
    BiggerIsBetter,
    /// `tool: customSmallerIsBetter`: e2e_ms, ttft_ms, tpot_ms, energy_j_per_token.
    SmallerIsBetter,
}

impl From<Direction> for GabDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::BiggerIsBetter => GabDirection::BiggerIsBetter,
            Direction::SmallerIsBetter => GabDirection::SmallerIsBetter,
        }
    }
}

/// Arguments of `tcobench export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Run folder.
    pub run: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// For `--format github-action-benchmark` only: which metrics the file holds. One file feeds
    /// one action step, whose `tool` input fixes the direction for the whole file; export twice
    /// (and use two steps) to track both throughput and latency/energy. Default: bigger-is-better.
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
}

/// `--threshold`: a fraction, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A fixed fraction.
    Fixed(f64),
    /// Each cell's from the noise profile.
    Auto,
}

fn parse_threshold(s: &str) -> Result<Threshold, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Threshold::Auto);
    }
    match s.trim().parse::<f64>() {
        Ok(t) => Ok(Threshold::Fixed(t)),
        Err(_) => Err(format!(
            "`{s}` is neither a fraction (0.02 = ±2 %) nor `auto`"
        )),
    }
}

/// The noise profile a comparison is offered: the named file, else this host's default (when
/// one exists), else none. A named file that cannot be read is bad input.
pub fn choose_profile(
    named: Option<&std::path::Path>,
    disabled: bool,
) -> Result<Option<(NoiseProfile, PathBuf, bool)>, String> {
    if disabled {
        return Ok(None);
    }
    if let Some(path) = named {
        return crate::commands::noise::read_profile(path)
            .map(|p| Some((p, path.to_path_buf(), true)));
    }
    let path = crate::commands::noise::host_profile_path();
    if !path.is_file() {
        return Ok(None);
    }
    crate::commands::noise::read_profile(&path).map(|p| Some((p, path, false)))
}

fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// Parses a metric name; an unknown one is reported on standard error and becomes the bad-input
/// exit code.
pub fn parse_metric_or_bad(name: &str) -> Result<tcobench_results::Metric, ExitCode> {
    compare::parse_metric(name).map_err(bad_input)
}

/// Runs `tcobench compare`.
pub fn compare(args: &CompareArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let metric = match parse_metric_or_bad(&args.metric) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let (threshold, threshold_auto) = match args.threshold {
        Threshold::Fixed(t) => (t, false),
        Threshold::Auto => (0.02, true),
    };
    let opts = CompareOptions {
        metric,
        threshold,
        threshold_auto,
        alpha: args.alpha,
        bootstrap: Bootstrap {
            resamples: args.resamples,
            seed: args.seed,
        },
    };
    let profile = match choose_profile(args.noise_profile.as_deref(), args.no_noise_profile) {
        Ok(p) => p,
        Err(e) => return Ok(bad_input(e)),
    };
    let choice = profile
        .as_ref()
        .map(|(profile, path, explicit)| ProfileChoice {
            profile,
            path,
            explicit: *explicit,
        });
    let comparison = match compare::compare_runs(&args.base, &args.new, &opts, choice) {
        Ok(c) => c,
        Err(e) => return Ok(bad_input(e)),
    };
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&comparison)?)?;
    } else {
        write_text(&comparison, out)?;
    }
    Ok(warn_and_gate(
        &comparison,
        args.fail_on_regression,
        args.allow_missing,
    ))
}

/// Prints a comparison's warnings on standard error and, with `fail_on_regression`, the
/// reasons the gate did not pass ([`gate_failures`]); returns the exit code.
pub fn warn_and_gate(c: &Comparison, fail_on_regression: bool, allow_missing: bool) -> ExitCode {
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    if !fail_on_regression {
        return ExitCode::SUCCESS;
    }
    let failures = gate_failures(c, allow_missing);
    for f in &failures {
        eprintln!("error: --fail-on-regression: {f}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REGRESSED)
    }
}

/// Whether one side of a cell holds enough values of the metric to be compared.
fn usable(side: &Side) -> bool {
    side.status == CellOutcome::Ok && side.n >= 2
}

/// Why `compare --fail-on-regression` must fail, one sentence each; empty when the gate passes.
///
/// * any cell regressed;
/// * no cell was compared — nothing was checked, whatever the reason (no shared configuration,
///   every cell failed, the metric unmeasured);
/// * unless `allow_missing`: a cell the base run measured (status ok) that the new run lacks —
///   its configuration is absent there (renamed or dropped), or it failed, was not run, was
///   skipped or has fewer than 2 usable values of the metric. Such a cell would otherwise hide a
///   regression.
pub fn gate_failures(c: &Comparison, allow_missing: bool) -> Vec<String> {
    let mut out = Vec::new();
    if c.any_regressed() {
        let cells: Vec<&str> = c
            .cells
            .iter()
            .filter(|x| x.verdict == Verdict::Regressed)
            .map(|x| x.label.as_str())
            .collect();
        out.push(format!(
            "{} cell(s) regressed: {}",
            cells.len(),
            cells.join(", ")
        ));
    }
    if c.cells.is_empty() {
        let k = &c.counts;
        out.push(format!(
            "no cell could be compared ({} in both runs but not compared, {} only in base, {} only in new): a gate that compared nothing cannot pass",
            k.not_compared, k.only_in_base, k.only_in_new
        ));
    }
    if allow_missing {
        return out;
    }
    let mut missing = Vec::new();
    for x in &c.only_in_base {
        if x.status == CellOutcome::Ok {
            missing.push(format!(
                "{} (base cell {}): no cell of this configuration in the new run",
                x.label, x.cell_id
            ));
        }
    }
    for x in &c.not_compared {
        if let (Some(b), Some(n)) = (&x.base, &x.new) {
            if usable(b) && !usable(n) {
                missing.push(format!(
                    "{} (new cell {}): {}",
                    x.label, n.cell_id, x.reason
                ));
            }
        }
    }
    if !missing.is_empty() {
        out.push(format!(
            "{} cell(s) measured in the base run are missing from the new run (pass --allow-missing to let them pass): {}",
            missing.len(),
            missing.join("; ")
        ));
    }
    out
}

/// The word printed for a verdict.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "improved",
        Verdict::Regressed => "regressed",
        Verdict::NoChange => "no change",
        Verdict::WithinNoise => "within noise",
    }
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".to_string()
    } else {
        format!("{p:.4}")
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |v| fmt_sig(v, 4))
}

/// Writes rows as columns padded to their widest cell; `right[i]` right-aligns column `i`.
pub fn write_table(
    out: &mut dyn Write,
    rows: &[Vec<String>],
    right: &[bool],
) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A side in the header: its run id, or for several runs their number and first and last id.
fn side_name(id: &str, runs: &[String]) -> String {
    match runs {
        [first, .., last] => format!("{} runs ({first} … {last})", runs.len()),
        _ => id.to_string(),
    }
}

/// Renders a comparison as the text report of `tcobench compare`.
pub fn write_text(c: &Comparison, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "compare {} ({}, {} is better): base {} → new {}",
        c.metric.name(),
        c.unit,
        if c.higher_is_better {
            "higher"
        } else {
            "lower"
        },
        side_name(&c.base_run_id, &c.base_runs),
        side_name(&c.new_run_id, &c.new_runs)
    )?;
    let threshold = if c.threshold_auto {
        format!(
            "threshold per cell from the noise profile (±{}% where it has none)",
            fmt_sig(100.0 * c.threshold, 3)
        )
    } else {
        format!("threshold ±{}%", fmt_sig(100.0 * c.threshold, 3))
    };
    writeln!(out, "{threshold}, alpha {}", c.alpha)?;
    for (level, n) in c.level_counts() {
        if n == 0 {
            continue;
        }
        let how = match level {
            CompareLevel::Executions => {
                "the executions are the unit: t on their means, delta-method 95% CI of the change"
                    .to_string()
            }
            CompareLevel::RequestsWidened => {
                "one execution on a side, its variance widened by the between-execution variance \
                 (source per cell in --json): t, delta-method 95% CI"
                    .to_string()
            }
            CompareLevel::Requests => format!(
                "one execution per side, between-run variance UNSEEN: Welch t on the requests, \
                 bootstrap 95% CI ({} resamples, seed {})",
                c.bootstrap.resamples, c.bootstrap.seed
            ),
        };
        writeln!(out, "{n} cell(s) at level {}: {how}", level.words())?;
    }
    if let Some(p) = &c.profile {
        writeln!(
            out,
            "noise profile: {} ({} on {}, {} runs, {})",
            p.path, p.scenario_name, p.hostname, p.runs, p.created_at
        )?;
    }
    writeln!(out)?;
    if c.cells.is_empty() {
        writeln!(out, "no cell could be compared")?;
    } else {
        let mut rows = vec![[
            "cell",
            "n base/new",
            "base mean",
            "new mean",
            "change [95% CI]",
            "p",
            "level",
            "verdict",
        ]
        .map(String::from)
        .to_vec()];
        for x in &c.cells {
            rows.push(vec![
                x.label.clone(),
                if x.base.executions > 1 || x.new.executions > 1 {
                    format!(
                        "{}×{}/{}×{}",
                        x.base.executions,
                        x.base.n / x.base.executions.max(1),
                        x.new.executions,
                        x.new.n / x.new.executions.max(1)
                    )
                } else {
                    format!("{}/{}", x.base.n, x.new.n)
                },
                fmt_opt(x.base.mean),
                fmt_opt(x.new.mean),
                format!(
                    "{} [{}, {}]",
                    pct(x.rel_change),
                    pct(x.rel_change_ci95[0]),
                    pct(x.rel_change_ci95[1])
                ),
                fmt_p(x.p),
                x.level.words().to_string(),
                verdict_word(x.verdict).to_string(),
            ]);
        }
        write_table(
            out,
            &rows,
            &[false, true, true, true, true, true, false, false],
        )?;
    }
    if !c.not_compared.is_empty() {
        writeln!(out)?;
        writeln!(out, "not compared ({}):", c.not_compared.len())?;
        let rows: Vec<Vec<String>> = c
            .not_compared
            .iter()
            .map(|x| vec![format!("  {}", x.label), x.reason.clone()])
            .collect();
        write_table(out, &rows, &[])?;
    }
    for (title, list) in [
        ("only in base run", &c.only_in_base),
        ("only in new run", &c.only_in_new),
    ] {
        if list.is_empty() {
            continue;
        }
        writeln!(out)?;
        writeln!(out, "{title} ({}):", list.len())?;
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|x| {
                let status = serde_json::to_value(x.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    format!("  {}", x.label),
                    format!("cell {}, {status}", x.cell_id),
                ]
            })
            .collect();
        write_table(out, &rows, &[])?;
    }
    writeln!(out)?;
    writeln!(out, "{}", summary(c))
}

/// The one-line summary: counts per verdict, then cells not compared and unmatched.
pub fn summary(c: &Comparison) -> String {
    let k = &c.counts;
    format!(
        "summary: {} regressed, {} improved, {} within noise, {} no change; {} not compared; \
         {} only in base, {} only in new",
        k.regressed,
        k.improved,
        k.within_noise,
        k.no_change,
        k.not_compared,
        k.only_in_base,
        k.only_in_new
    )
}

/// Runs `tcobench export`.
pub fn export(args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if args.direction.is_some() && args.format != ExportFormat::GithubActionBenchmark {
        return Ok(bad_input(
            "--direction applies to --format github-action-benchmark only",
        ));
    }
    let run = &args.run;
    if !run.is_dir() {
        return Ok(bad_input(format!(
            "{}: not a tcobench run folder (no such directory)",
            run.display()
        )));
    }
    if !run
        .join(tcobench_results::schema::files::MANIFEST)
        .is_file()
    {
        return Ok(bad_input(format!(
            "{}: not a tcobench run folder (no manifest.json)",
            run.display()
        )));
    }
    let stats = match export::load_run_stats(run) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(format!("{}: {e}", run.display()))),
    };
    match args.format {
        ExportFormat::Csv => write!(out, "{}", export::to_csv(&stats))?,
        ExportFormat::Bmf => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&export::to_bmf(&stats))?
        )?,
        ExportFormat::GithubActionBenchmark => {
            let direction = args.direction.unwrap_or(Direction::BiggerIsBetter).into();
            let entries = export::to_github_action_benchmark(&stats, direction);
            writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
