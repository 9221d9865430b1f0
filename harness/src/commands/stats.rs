//! `tcobench stats FILE --by COLUMN --metric COLUMN`: the statistics of any table.
//!
//! The file is read by [`tcobench_analysis::table::read_groups`] and analysed by
//! [`tcobench_stats::groups::analyze_groups`]; this module only validates options, prints
//! and picks exit codes:
//!
//! * `0`: done;
//! * `2`: bad input — an unreadable or malformed file, a missing or non-numeric column, a null
//!   or non-finite value, a group with fewer than two values (the message names the file), or
//!   `--resamples 0`.
//!
//! `--json` prints the [`GroupAnalysis`] exactly as serde writes it; otherwise a plain-text report
//! with four significant digits.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tcobench_analysis::table::{read_groups_with, Rows, TableError};
use tcobench_results::fmt_sig;
use tcobench_stats::groups::{analyze_groups, GroupAnalysis, GroupOptions};
use tcobench_stats::inference::{Adjust, Bootstrap};

use crate::commands::EXIT_BAD_INPUT;

/// Significance level of the pairwise verdicts (on Holm-adjusted Welch p-values).
pub const ALPHA: f64 = 0.05;

/// Significant digits of every number in the text report.
const SIG: usize = 4;

/// Arguments of `tcobench stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// CSV or Parquet file.
    pub file: PathBuf,
    /// Column whose values name the groups.
    #[arg(long)]
    pub by: String,
    /// Numeric column to analyse.
    #[arg(long)]
    pub metric: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Adjustment of the pairwise p-values reported as `p_adj` (`p_holm` is always given).
    #[arg(long, value_enum, default_value_t = AdjustArg::Holm)]
    pub adjust: AdjustArg,
    /// Also run R's `pairwise.t.test` variant: t-tests with the sd pooled over all groups.
    #[arg(long)]
    pub pooled: bool,
    /// In a tcobench `requests.parquet`, keep warm-up and failed requests too (by default only
    /// the timed, successful ones count, as in the run's own statistics).
    #[arg(long)]
    pub all_rows: bool,
}

/// `--adjust` choices.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustArg {
    /// Holm's step-down (family-wise error rate).
    Holm,
    /// Benjamini–Hochberg (false discovery rate).
    Bh,
    /// No adjustment.
    None,
}

/// Runs `tcobench stats`: writes the report (or JSON) to `out`; bad input is reported on stderr
/// as `error: …` with exit code [`EXIT_BAD_INPUT`].
pub fn run(args: &StatsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if args.resamples == 0 {
        eprintln!("error: --resamples must be at least 1");
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let rows = if args.all_rows {
        Rows::All
    } else {
        Rows::Timed
    };
    let (groups, excluded) = match read_groups_with(&args.file, &args.by, &args.metric, rows) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {}", named_once(&e));
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let opts = GroupOptions {
        bootstrap: Bootstrap {
            resamples: args.resamples,
            seed: args.seed,
        },
        adjust: match args.adjust {
            AdjustArg::Holm => Adjust::Holm,
            AdjustArg::Bh => Adjust::BenjaminiHochberg,
            AdjustArg::None => Adjust::None,
        },
        pooled_pairwise: args.pooled,
    };
    let analysis = analyze_groups(&groups, &opts).with_context(|| {
        format!(
            "{}: analysing `{}` by `{}`",
            args.file.display(),
            args.metric,
            args.by
        )
    })?;
    let note = excluded.map(|e| {
        format!(
            "a tcobench requests file: {} warm-up and {} failed request(s) left out, as in the \
             run's statistics (--all-rows keeps them)",
            e.warmup, e.failed
        )
    });
    if args.json {
        let json = serde_json::to_string_pretty(&analysis).context("serialising the analysis")?;
        writeln!(out, "{json}")?;
        if let Some(note) = &note {
            eprintln!("note: {note}");
        }
    } else {
        let rows: usize = groups.iter().map(|(_, xs)| xs.len()).sum();
        write_text(args, rows, &analysis, out)?;
        if let Some(note) = &note {
            writeln!(out, "\n{note}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The message of a read error, naming the file once: `read_groups` passes a failed checksum on
/// as `FILE: cannot read: MESSAGE`, and that message (a [`SchemaError`]) names the file first
/// itself.
///
/// [`SchemaError`]: tcobench_results::schema::SchemaError
fn named_once(e: &TableError) -> String {
    if let TableError::Io { path, source } = e {
        let message = source.to_string();
        if message.starts_with(&format!("{}: ", path.display())) {
            return message;
        }
    }
    e.to_string()
}

/// Column alignment in [`Table`].
#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// A plain-text table with aligned columns.
struct Table {
    header: Vec<&'static str>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.header[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.align[i] {
                    Align::Left => {
                        s.push_str(cell);
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        s.extend(std::iter::repeat_n(' ', pad));
                        s.push_str(cell);
                    }
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "  {}", line(&mut self.header.iter().copied()))?;
        for r in &self.rows {
            writeln!(out, "  {}", line(&mut r.iter().map(String::as_str)))?;
        }
        Ok(())
    }
}

fn num(x: f64) -> String {
    fmt_sig(x, SIG)
}

/// Degrees of freedom: whole numbers without decimals, fractional ones with four digits.
fn df(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        num(x)
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), num)
}

fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(
        || "–".to_string(),
        |[lo, hi]| format!("[{}, {}]", num(lo), num(hi)),
    )
}

fn write_text(
    args: &StatsArgs,
    rows: usize,
    a: &GroupAnalysis,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    use Align::{Left, Right};
    writeln!(
        out,
        "{}: `{}` by `{}` — {} rows in {} groups",
        args.file.display(),
        args.metric,
        args.by,
        rows,
        a.groups.len()
    )?;

    writeln!(out, "\nDescriptives (CIs are 95 %)")?;
    let mut t = Table::new(&[
        ("group", Left),
        ("n", Right),
        ("mean", Right),
        ("CI mean", Left),
        ("sd", Right),
        ("median", Right),
        ("CI median", Left),
        ("MAD", Right),
        ("min", Right),
        ("p90", Right),
        ("p95", Right),
        ("p99", Right),
        ("max", Right),
    ]);
    for g in &a.groups {
        t.push(vec![
            g.name.clone(),
            g.n.to_string(),
            num(g.mean),
            interval(g.ci95_mean),
            opt(g.sd),
            num(g.median),
            interval(g.ci95_median),
            num(g.mad),
            num(g.min),
            num(g.p90),
            num(g.p95),
            num(g.p99),
            num(g.max),
        ]);
    }
    t.write(out)?;

    if !a.pairwise.is_empty() {
        writeln!(
            out,
            "\nPairwise comparisons (Welch t-test, diff = mean(a) − mean(b), Holm-adjusted p, \
             α = {ALPHA})"
        )?;
        let mut t = Table::new(&[
            ("a", Left),
            ("b", Left),
            ("diff", Right),
            ("95% CI diff", Left),
            ("t", Right),
            ("df", Right),
            ("p", Right),
            ("p_holm", Right),
            ("Cohen's d", Right),
            ("Hedges' g", Right),
            ("b vs a %", Right),
            ("95% CI (bootstrap)", Left),
            ("verdict", Left),
        ]);
        let mean_of = |name: &str| a.groups.iter().find(|g| g.name == name).map(|g| g.mean);
        for p in &a.pairwise {
            let diff = mean_of(&p.a).zip(mean_of(&p.b)).map(|(x, y)| x - y);
            let (ci, tt, dfs, pv, ph, verdict) = match &p.welch {
                Some(w) => (
                    interval(Some(w.ci95_diff)),
                    num(w.t),
                    df(w.df),
                    num(w.p),
                    num(w.p_holm),
                    if w.p_holm < ALPHA {
                        "significant"
                    } else {
                        "not significant"
                    },
                ),
                None => {
                    let dash = || "–".to_string();
                    (dash(), dash(), dash(), dash(), dash(), "undefined")
                }
            };
            t.push(vec![
                p.a.clone(),
                p.b.clone(),
                opt(diff),
                ci,
                tt,
                dfs,
                pv,
                ph,
                opt(p.cohens_d),
                opt(p.hedges_g),
                opt(p.rel_change.map(|r| r * 100.0)),
                interval(p.rel_change_ci95.map(|[lo, hi]| [lo * 100.0, hi * 100.0])),
                verdict.to_string(),
            ]);
        }
        t.write(out)?;
    }

    if let Some(pooled) = &a.pairwise_pooled {
        writeln!(
            out,
            "\nPairwise t-tests with the sd pooled over all groups (R's pairwise.t.test), {:?}-adjusted p",
            a.adjust
        )?;
        let mut t = Table::new(&[("a", Left), ("b", Left), ("p_adj", Right)]);
        for p in pooled {
            t.push(vec![p.a.clone(), p.b.clone(), num(p.p_adj)]);
        }
        t.write(out)?;
    }

    writeln!(out, "\nOmnibus tests")?;
    let mut t = Table::new(&[
        ("test", Left),
        ("statistic", Right),
        ("df", Left),
        ("p", Right),
    ]);
    let missing = |name: &str| vec![name.to_string(), "–".into(), "–".into(), "–".into()];
    t.push(match &a.anova {
        Some(x) => vec![
            "one-way ANOVA".into(),
            format!("F = {}", num(x.f)),
            format!("({}, {})", df(x.df_between), df(x.df_within)),
            num(x.p),
        ],
        None => missing("one-way ANOVA"),
    });
    t.push(match &a.welch_anova {
        Some(x) => vec![
            "Welch ANOVA".into(),
            format!("F = {}", num(x.f)),
            format!("({}, {})", df(x.df1), df(x.df2)),
            num(x.p),
        ],
        None => missing("Welch ANOVA"),
    });
    t.push(match &a.kruskal_wallis {
        Some(x) => vec![
            "Kruskal–Wallis".into(),
            format!("H = {}", num(x.h)),
            df(x.df),
            num(x.p),
        ],
        None => missing("Kruskal–Wallis"),
    });
    t.write(out)?;

    writeln!(
        out,
        "\nBootstrap: percentile CIs of the median and of the relative change, {} resamples, seed {}",
        a.bootstrap.resamples, a.bootstrap.seed
    )?;

    writeln!(out, "\nNotes")?;
    let with_outliers: Vec<String> = a
        .groups
        .iter()
        .filter(|g| g.outliers.mild + g.outliers.severe > 0)
        .map(|g| {
            format!(
                "{} ({} mild, {} severe)",
                g.name, g.outliers.mild, g.outliers.severe
            )
        })
        .collect();
    if with_outliers.is_empty() {
        writeln!(out, "  outliers (Tukey fences): none")?;
    } else {
        writeln!(
            out,
            "  outliers (Tukey fences; counted, not removed): {}",
            with_outliers.join(", ")
        )?;
    }
    for note in &a.notes {
        writeln!(out, "  {note}")?;
    }
    for p in &a.pairwise {
        if let Some(note) = &p.note {
            writeln!(out, "  {} vs {}: {note}", p.a, p.b)?;
        }
    }
    Ok(())
}
