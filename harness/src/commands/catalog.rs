//! `tcobench catalog list|show|import|diff`: the pricing catalog on the command line.
//!
//! The catalog is `tcobench_cost` (built in, or `--catalog-dir DIR`, with an optional
//! `--overlay DIR`); this module parses options, prints and picks exit codes:
//!
//! * `0`: done;
//! * `2`: bad input — an invalid catalog (every problem is listed with file, line, column and
//!   key), an unknown key or filter value, an unreadable or malformed import file.
//!
//! Stale rows (retrieved more than `--max-age-days` before `--today`, default today) are printed
//! as warnings on stderr and do not change the exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tcobench_cost::catalog::{Catalog, Instance, LoadOptions, Tier};
use tcobench_cost::diff::{diff, CatalogDiff};
use tcobench_cost::skypilot::{import_skypilot, ImportOptions};
use tcobench_cost::Date;

use crate::commands::EXIT_BAD_INPUT;

/// Where the catalog is read from (shared by `catalog` and `tco`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CatalogSource {
    /// Read the catalog from this directory (same layout as `catalog/`) instead of the built-in one.
    #[arg(long, value_name = "DIR")]
    pub catalog_dir: Option<PathBuf>,
    /// Overlay directory (same layout, any subset of files): rows with the same key replace the
    /// catalog's, new keys are added.
    #[arg(long, value_name = "DIR")]
    pub overlay: Option<PathBuf>,
    /// Date for staleness warnings, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_name = "DATE")]
    pub today: Option<String>,
    /// Rows retrieved more than this many days before --today are reported as stale.
    #[arg(long, default_value_t = tcobench_cost::catalog::DEFAULT_MAX_AGE_DAYS)]
    pub max_age_days: u32,
}

/// Today's date (UTC) from the clock — the library never reads it.
pub fn today_utc() -> Date {
    let s = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    Date::parse(&s).expect("chrono formats valid dates")
}

/// Parses a `YYYY-MM-DD` option.
pub fn parse_date(opt: &str, s: &str) -> Result<Date, String> {
    Date::parse(s).ok_or_else(|| format!("{opt} `{s}` is not a YYYY-MM-DD date"))
}

impl CatalogSource {
    /// Loads and validates the catalog; stale-row warnings go to stderr.
    pub fn load(&self) -> Result<Catalog, String> {
        let today = match &self.today {
            Some(s) => parse_date("--today", s)?,
            None => today_utc(),
        };
        let opts = LoadOptions {
            today: Some(today),
            max_age_days: self.max_age_days,
        };
        let cat = Catalog::load(self.catalog_dir.as_deref(), self.overlay.as_deref(), &opts)
            .map_err(|e| e.to_string())?;
        for w in &cat.warnings {
            eprintln!("warning: stale catalog row {w}");
        }
        Ok(cat)
    }
}

/// Arguments of `tcobench catalog`.
#[derive(clap::Args, Debug)]
pub struct CatalogArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// Subcommands of `tcobench catalog`.
#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// List prices (one row per instance, region and tier), filtered.
    List(ListArgs),
    /// Everything the catalog holds about one instance type: regions, specs, prices, sources.
    Show(ShowArgs),
    /// Convert a SkyPilot catalog CSV (catalogs/v*/<cloud>/vms.csv) into our layout.
    Import(ImportArgs),
    /// Added and removed rows and price changes (with %) between two catalogs.
    Diff(DiffArgs),
}

/// Arguments of `tcobench catalog list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this provider (aws, gcp, azure).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this accelerator (case-insensitive; `none` for CPU-only instances).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Only this tier (on_demand, spot, reserved_1y, reserved_3y).
    #[arg(long)]
    pub tier: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Catalog location.
    #[command(flatten)]
    pub source: CatalogSource,
}

/// Arguments of `tcobench catalog show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// `INSTANCE`, `PROVIDER/INSTANCE` or `PROVIDER/INSTANCE/REGION`.
    pub key: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Catalog location.
    #[command(flatten)]
    pub source: CatalogSource,
}

/// Arguments of `tcobench catalog import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// SkyPilot vms.csv file.
    #[arg(long, value_name = "FILE")]
    pub skypilot: PathBuf,
    /// Provider (default: inferred from the zone names).
    #[arg(long)]
    pub provider: Option<String>,
    /// Retrieval date written to the price rows, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_name = "DATE")]
    pub retrieved: Option<String>,
    /// Source written to the price rows (name the repository, path and commit).
    #[arg(long)]
    pub source: Option<String>,
    /// Keep only these regions (repeatable or comma-separated).
    #[arg(long = "region", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Keep only these instance types (repeatable or comma-separated).
    #[arg(long = "instance", value_delimiter = ',')]
    pub instances: Vec<String>,
    /// GCP host + GPU pairing, `INSTANCE=ACCELERATOR:COUNT` (e.g. n1-standard-8=T4:1).
    #[arg(long = "pair")]
    pub pairs: Vec<String>,
    /// Write instances.csv and prices.csv into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Arguments of `tcobench catalog diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Old catalog directory (`builtin` for the compiled-in catalog).
    pub old: String,
    /// New catalog directory (`builtin` for the compiled-in catalog).
    pub new: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn bad(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Runs `tcobench catalog …`, writing to `out`.
pub fn run(args: &CatalogArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match &args.command {
        CatalogCommand::List(a) => list(a, out),
        CatalogCommand::Show(a) => show(a, out),
        CatalogCommand::Import(a) => import(a, out),
        CatalogCommand::Diff(a) => diff_cmd(a, out),
    }
}

/// One line of `catalog list`.
#[derive(Debug, serde::Serialize)]
struct ListRow<'a> {
    key: String,
    provider: &'a str,
    instance_type: &'a str,
    region: &'a str,
    accelerator: Option<&'a str>,
    accelerator_count: u32,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
    tier: Tier,
    usd_per_hour: f64,
    retrieved: Date,
    source: &'a str,
    price_row: String,
}

fn list(a: &ListArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let tier = match a.tier.as_deref().map(|t| (t, Tier::parse(t))) {
        Some((t, None)) => {
            return bad(format!(
                "--tier `{t}` is not a tier (known: {})",
                Tier::ALL.map(Tier::name).join(", ")
            ))
        }
        Some((_, Some(t))) => Some(t),
        None => None,
    };
    let cat = match a.source.load() {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let gpu_matches = |i: &Instance| match a.gpu.as_deref() {
        None => true,
        Some(g) if g.eq_ignore_ascii_case("none") || g.eq_ignore_ascii_case("cpu") => {
            i.accelerator.is_none()
        }
        Some(g) => i
            .accelerator
            .as_deref()
            .is_some_and(|x| x.eq_ignore_ascii_case(g)),
    };
    let mut rows = Vec::new();
    for i in &cat.instances {
        if a.provider.as_deref().is_some_and(|p| p != i.provider)
            || a.region.as_deref().is_some_and(|r| r != i.region)
            || !gpu_matches(i)
        {
            continue;
        }
        for t in Tier::ALL {
            if tier.is_some_and(|x| x != t) {
                continue;
            }
            if let Some(p) = cat.price_row(i, t) {
                rows.push(ListRow {
                    key: format!("{}/{}", i.key(), t),
                    provider: &i.provider,
                    instance_type: &i.instance_type,
                    region: &i.region,
                    accelerator: i.accelerator.as_deref(),
                    accelerator_count: i.accelerator_count,
                    vcpus: i.vcpus,
                    memory_gib: i.memory_gib,
                    tier: t,
                    usd_per_hour: p.usd_per_hour,
                    retrieved: p.retrieved,
                    source: &p.source,
                    price_row: p.key(),
                });
            }
        }
    }
    if a.json {
        let v = serde_json::json!({ "catalog": cat.identity, "rows": rows });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.provider.to_string(),
                r.instance_type.to_string(),
                r.region.to_string(),
                r.accelerator.unwrap_or("-").to_string(),
                if r.accelerator_count > 0 {
                    r.accelerator_count.to_string()
                } else {
                    "-".into()
                },
                r.tier.to_string(),
                format!("{:.4}", r.usd_per_hour),
                r.retrieved.to_string(),
            ]
        })
        .collect();
    let head = [
        "PROVIDER",
        "INSTANCE",
        "REGION",
        "GPU",
        "N",
        "TIER",
        "USD/H",
        "RETRIEVED",
    ];
    print_table(out, &head, &table)?;
    writeln!(
        out,
        "{} price row(s); catalog {} (sha256 {})",
        rows.len(),
        cat.identity.version,
        &cat.identity.sha256[..12]
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes an aligned table (numbers right-aligned in the `USD/H` column).
fn print_table<const N: usize>(
    out: &mut dyn Write,
    head: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                if head[i] == "USD/H" {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn show(a: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let cat = match a.source.load() {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let parts: Vec<&str> = a.key.split('/').collect();
    let (provider, itype, region) = match parts.as_slice() {
        [i] => (None, *i, None),
        [p, i] => (Some(*p), *i, None),
        [p, i, r] => (Some(*p), *i, Some(*r)),
        _ => {
            return bad(format!(
                "`{}` is not INSTANCE, PROVIDER/INSTANCE or PROVIDER/INSTANCE/REGION",
                a.key
            ))
        }
    };
    let found = cat.find_instances(provider, itype, region);
    if found.is_empty() {
        let similar: Vec<String> = cat
            .instances
            .iter()
            .filter(|i| i.instance_type.contains(itype) || itype.contains(&i.instance_type))
            .map(|i| format!("{}/{}", i.provider, i.instance_type))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let hint = if similar.is_empty() {
            "; `tcobench catalog list` shows what there is".to_string()
        } else {
            format!("; similar: {}", similar.join(", "))
        };
        return bad(format!("`{}` is not in the pricing catalog{hint}", a.key));
    }
    if a.json {
        let items: Vec<_> = found
            .iter()
            .map(|i| {
                let prices: Vec<_> = Tier::ALL
                    .iter()
                    .filter_map(|t| cat.price_row(i, *t))
                    .collect();
                serde_json::json!({
                    "key": i.key(),
                    "instance": i,
                    "accelerator": i.accelerator.as_deref().and_then(|n| cat.accelerator(n)),
                    "prices": prices,
                })
            })
            .collect();
        let v = serde_json::json!({ "catalog": cat.identity, "instances": items });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for i in found {
        writeln!(out, "{}", i.key())?;
        let gpu = match &i.accelerator {
            Some(g) => format!(
                "{}× {g}{}",
                i.accelerator_count,
                i.accelerator_memory_gib
                    .map(|m| format!(" ({m} GiB each)"))
                    .unwrap_or_default()
            ),
            None => "none".into(),
        };
        writeln!(out, "  accelerators: {gpu}")?;
        writeln!(
            out,
            "  vCPUs: {}   memory: {} GiB   arch: {}",
            i.vcpus.map_or("?".into(), |v| v.to_string()),
            i.memory_gib.map_or("?".into(), |v| v.to_string()),
            i.arch.as_deref().unwrap_or("?")
        )?;
        if let Some(acc) = i.accelerator.as_deref().and_then(|n| cat.accelerator(n)) {
            writeln!(
                out,
                "  {}: {} {} {} GB, TDP {} W (source: {})",
                acc.name,
                acc.vendor,
                acc.variant,
                acc.memory_gb.map_or("?".into(), |v| v.to_string()),
                acc.tdp_w.map_or("?".into(), |v| v.to_string()),
                acc.source
            )?;
        }
        for t in Tier::ALL {
            if let Some(p) = cat.price_row(i, t) {
                writeln!(
                    out,
                    "  {:<12} {:>10.4} $/h   retrieved {}{}   [{}]",
                    t.name(),
                    p.usd_per_hour,
                    p.retrieved,
                    p.effective_date
                        .map(|d| format!(", effective {d}"))
                        .unwrap_or_default(),
                    p.key()
                )?;
                writeln!(out, "               source: {}", p.source)?;
                if !p.notes.is_empty() {
                    writeln!(out, "               notes: {}", p.notes)?;
                }
            }
        }
    }
    writeln!(
        out,
        "catalog {} (sha256 {})",
        cat.identity.version,
        &cat.identity.sha256[..12]
    )?;
    Ok(ExitCode::SUCCESS)
}

fn import(a: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(&a.skypilot) {
        Ok(t) => t,
        Err(e) => return bad(format!("{}: {e}", a.skypilot.display())),
    };
    let retrieved = match &a.retrieved {
        Some(s) => match parse_date("--retrieved", s) {
            Ok(d) => d,
            Err(e) => return bad(e),
        },
        None => today_utc(),
    };
    let mut pairs = Vec::new();
    for p in &a.pairs {
        let parsed = p.split_once('=').and_then(|(vm, rest)| {
            let (acc, n) = rest.split_once(':')?;
            Some((vm.to_string(), acc.to_string(), n.parse::<u32>().ok()?))
        });
        match parsed {
            Some(x) if x.2 > 0 => pairs.push(x),
            _ => return bad(format!("--pair `{p}` is not INSTANCE=ACCELERATOR:COUNT")),
        }
    }
    if let Some(p) = &a.provider {
        if !["aws", "gcp", "azure"].contains(&p.as_str()) {
            return bad(format!("--provider `{p}` is not one of aws, gcp, azure"));
        }
    }
    let opts = ImportOptions {
        provider: a.provider.clone(),
        retrieved,
        source: a
            .source
            .clone()
            .unwrap_or_else(|| format!("SkyPilot catalog CSV {}", a.skypilot.display())),
        regions: a.regions.clone(),
        instance_types: a.instances.clone(),
        pairs,
    };
    let imported = match import_skypilot(&text, &opts) {
        Ok(i) => i,
        Err(e) => return bad(format!("{}: {e}", a.skypilot.display())),
    };
    for s in &imported.skipped {
        eprintln!("skipped: {s}");
    }
    match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("instances.csv"), &imported.instances_csv)?;
            std::fs::write(dir.join("prices.csv"), &imported.prices_csv)?;
            eprintln!(
                "wrote {} instance row(s) and {} price row(s) ({}) to {}",
                imported.n_instances,
                imported.n_prices,
                imported.provider,
                dir.display()
            );
        }
        None => {
            write!(out, "# instances.csv\n{}", imported.instances_csv)?;
            write!(out, "# prices.csv\n{}", imported.prices_csv)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_for_diff(which: &str) -> Result<Catalog, String> {
    let opts = LoadOptions::default();
    let r = if which == "builtin" {
        Catalog::builtin(&opts)
    } else {
        Catalog::load(Some(Path::new(which)), None, &opts)
    };
    r.map_err(|e| e.to_string())
}

fn diff_cmd(a: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (old, new) = match (load_for_diff(&a.old), load_for_diff(&a.new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let d = diff(&old, &new);
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
    } else {
        write_diff(&d, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_diff(d: &CatalogDiff, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "catalog {} ({}) → {} ({})",
        d.old.version,
        &d.old.sha256[..12],
        d.new.version,
        &d.new.sha256[..12]
    )?;
    if d.is_empty() {
        return writeln!(out, "no differences");
    }
    if !d.price_changes.is_empty() {
        writeln!(out, "price changes ({}):", d.price_changes.len())?;
        for c in &d.price_changes {
            writeln!(
                out,
                "  ~ {}  {:.4} → {:.4} $/h  ({:+.2}%)  retrieved {} → {}",
                c.key,
                c.old_usd_per_hour,
                c.new_usd_per_hour,
                c.change_pct,
                c.old_retrieved,
                c.new_retrieved
            )?;
        }
    }
    for (label, sign, rows) in [("added", '+', &d.added), ("removed", '-', &d.removed)] {
        if !rows.is_empty() {
            writeln!(out, "{label} ({}):", rows.len())?;
            for r in rows {
                writeln!(out, "  {sign} {}: {}", r.file, r.key)?;
            }
        }
    }
    if !d.changed.is_empty() {
        writeln!(out, "changed ({}):", d.changed.len())?;
        for r in &d.changed {
            writeln!(out, "  ~ {}: {}  ({})", r.file, r.key, r.detail.join("; "))?;
        }
    }
    Ok(())
}
