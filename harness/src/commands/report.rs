//! `tcobench report RUN_DIR`: re-renders a run's report from its stored results.
//!
//! Reads `manifest.json` and `stats.json` and renders the formats asked for (`--format md,html`,
//! both by default) with the built-in templates or a folder of overrides (`--templates DIR`).
//! Nothing is re-measured, and nothing is re-analysed unless `stats.json` is missing, unreadable
//! or written with another results layout (then the run is analysed again from
//! `requests.parquet`, and the reason is printed). Prints each file written, one a line.
//!
//! `--pricing FILE` and `--energy FILE` re-price the stored measurements before rendering: each
//! file is a YAML file in the scenario syntax (like `scenarios/variants/*.yaml`, read by the same
//! code as `tcobench sweep`) whose `pricing:` (respectively `energy:`) section is laid key by key
//! over the run's own; the report states the files used. `stats.json` is left as it is, and so
//! is the run's own report, which agrees with it: the re-priced report goes into its own folder,
//! `RUN_DIR/report-<variant>/` (`report.md`, `report.html`, `plots/`; `<variant>` is each file's
//! `name:`, else its stem, joined with `+`), or `--out DIR`.
//!
//! `--out DIR` writes the report into `DIR` (created when missing) instead of the run folder.
//!
//! Exit codes: `0` done; `2` the folder is not a run, the manifest's layout is not supported, an
//! unknown format, a template folder that is missing or holds a broken template, an override
//! file that is unreadable, lacks its section or does not resolve against the catalog, or
//! `--out` naming the run folder itself for a re-priced report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tcobench_analysis::RunStats;
use tcobench_report::render::{self, ReportFormat};
use tcobench_report::ReportError;
use tcobench_results::schema::{files, SCHEMA_VERSION};

use crate::commands::EXIT_BAD_INPUT;

/// Arguments of `tcobench report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Run folder (the one `tcobench run` prints last; it holds manifest.json).
    pub run_dir: PathBuf,
    /// Formats to write, comma-separated: md, html.
    #[arg(long, value_delimiter = ',', default_value = "md,html", value_parser = parse_format)]
    pub format: Vec<ReportFormat>,
    /// Folder whose report.md.j2 / report.html.j2 replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// YAML file whose `pricing:` section replaces the run's, key by key (scenario syntax).
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
    /// YAML file whose `energy:` section replaces the run's, key by key (scenario syntax).
    #[arg(long, value_name = "FILE")]
    pub energy: Option<PathBuf>,
    /// Folder to write the report into (created when missing). Default: the run folder; with
    /// --pricing/--energy, RUN_DIR/report-<variant>/, so the run's own report (which agrees with
    /// its stats.json) is never replaced.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// A variant name as a folder-name fragment: letters, digits, `.`, `_`, `-`, `+` kept, anything
/// else (spaces, separators) replaced by `-`.
fn file_fragment(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '.' || c == '-').to_string();
    if s.is_empty() {
        "variant".into()
    } else {
        s
    }
}

/// Whether `a` and `b` name the same existing folder.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The run's costing with the `--pricing` / `--energy` sections laid over it, priced again, and
/// the variant's name (the files' names joined with `+`).
fn repriced(
    args: &ReportArgs,
    stats: &RunStats,
    manifest: &tcobench_results::schema::Manifest,
) -> Result<Option<(tcobench_cost::costing::RunCosts, String)>, String> {
    use tcobench_results::spec::CostingSpec;
    if args.pricing.is_none() && args.energy.is_none() {
        return Ok(None);
    }
    let mut spec = manifest.costing.clone().unwrap_or_default();
    let mut names = Vec::new();
    let mut overrides = Vec::new();
    for (flag, section, file) in [
        ("--pricing", "pricing", &args.pricing),
        ("--energy", "energy", &args.energy),
    ] {
        let Some(path) = file else {
            continue;
        };
        let (name, _, layer) =
            crate::commands::sweep::read_variant(path).map_err(|e| format!("{flag}: {e}"))?;
        let top = match section {
            "pricing" => CostingSpec {
                pricing: layer.pricing,
                ..CostingSpec::default()
            },
            _ => CostingSpec {
                energy: layer.energy,
                ..CostingSpec::default()
            },
        };
        if top.is_empty() {
            return Err(format!(
                "{flag}: {} has no `{section}:` section",
                path.display()
            ));
        }
        spec.overlay(&top);
        names.push(name);
        // A code span in the report: a backtick in the path would end it.
        overrides.push(format!(
            "the `{section}:` section of `{}`",
            path.display().to_string().replace('`', "'")
        ));
    }
    let mut costs = tcobench_analysis::price_run(stats, manifest, &spec, Some(names.join(" + ")))
        .map_err(|e| format!("re-pricing with {}: {e}", overrides.join(" and ")))?;
    costs.overrides = overrides;
    Ok(Some((costs, names.join("+"))))
}

fn parse_format(s: &str) -> Result<ReportFormat, String> {
    ReportFormat::parse(s).ok_or_else(|| {
        format!(
            "`{s}` is not a report format (known: {})",
            ReportFormat::ALL.map(ReportFormat::name).join(", ")
        )
    })
}

/// Why `stats.json` cannot be used as it is.
fn stored_stats(run_dir: &Path) -> Result<RunStats, String> {
    let path = run_dir.join(files::STATS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} is missing", files::STATS))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "{} has schema_version {v}; this build writes {SCHEMA_VERSION}",
                files::STATS
            ))
        }
        None => return Err(format!("{} has no schema_version", files::STATS)),
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{} does not have this build's layout: {e}", files::STATS))
}

fn bad(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Runs `tcobench report`, printing each file written to `out`.
pub fn run(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let dir = &args.run_dir;
    if !dir.is_dir() {
        return bad(format_args!(
            "`{}` is not a run folder: no such directory",
            dir.display()
        ));
    }
    if !dir.join(files::MANIFEST).is_file() {
        return bad(format_args!(
            "`{}` is not a run folder: it has no {} (a run folder is what `tcobench run` prints last)",
            dir.display(),
            files::MANIFEST
        ));
    }
    if let Some(t) = &args.templates {
        if !t.is_dir() {
            return bad(format_args!(
                "--templates `{}` is not a directory",
                t.display()
            ));
        }
    }
    // The manifest decides whether this is a run this build reads at all.
    if let Err(e) = tcobench_analysis::read_run_manifest(dir) {
        return bad(format_args!(
            "`{}` is not a run folder this build reads: {e}",
            dir.display()
        ));
    }
    let mut formats = args.format.clone();
    formats.sort();
    formats.dedup();

    let mut stats = match stored_stats(dir) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("{why}: analysing the run again from its stored requests");
            match tcobench_analysis::analyze(dir) {
                Ok(s) => s,
                // A missing or damaged results file is the folder's problem, said once.
                Err(e @ tcobench_analysis::AnalysisError::Schema(_)) => {
                    return bad(format_args!("analysing {}: {e}", dir.display()))
                }
                Err(e) => return Err(e).with_context(|| format!("analysing {}", dir.display())),
            }
        }
    };
    let mut out_dir = args.out.clone().unwrap_or_else(|| dir.clone());
    if args.pricing.is_some() || args.energy.is_some() {
        let manifest = tcobench_analysis::read_run_manifest(dir)
            .with_context(|| format!("reading {}", dir.display()))?;
        match repriced(args, &stats, &manifest) {
            Ok(Some((costs, variant))) => {
                stats.costing = Some(costs);
                match &args.out {
                    None => out_dir = dir.join(format!("report-{}", file_fragment(&variant))),
                    Some(o) if same_dir(o, dir) => {
                        return bad(format_args!(
                            "--out `{}` is the run folder: a re-priced report would replace the \
                             run's own, which agrees with its {}; omit --out (the report then \
                             goes to {}) or name another folder",
                            o.display(),
                            files::STATS,
                            dir.join(format!("report-{}", file_fragment(&variant)))
                                .display()
                        ));
                    }
                    Some(_) => {}
                }
            }
            Ok(None) => {}
            Err(e) => return bad(e),
        }
    }
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        return bad(format_args!("--out `{}`: {e}", out_dir.display()));
    }
    match render::write_formats_to(dir, &out_dir, &stats, args.templates.as_deref(), &formats) {
        Ok(written) => {
            for p in written {
                writeln!(out, "{}", p.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ReportError::Template { .. }) => bad(e),
        // A missing or damaged results file is the folder's problem, said once.
        Err(
            e @ (ReportError::Schema(_)
            | ReportError::Analysis(tcobench_analysis::AnalysisError::Schema(_))),
        ) => bad(format_args!("writing the report in {}: {e}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("writing the report in {}", dir.display())),
    }
}
