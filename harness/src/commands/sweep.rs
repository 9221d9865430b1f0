//! `tcobench sweep RUN --variants DIR`: re-cost the *same measurements* under other pricing and
//! energy selections, without running inference again.
//!
//! Each `*.yaml` file in the variants folder has the shape of a scenario's costing sections
//! (`name`, `description`, `pricing`, `energy`, `slo`, `workload`); it is laid key by key over
//! the run's own selection (from `manifest.json`), resolved against the catalog and priced by
//! the same code as `analyze` ([`tcobench_analysis::price_run`]). The comparison is written as
//! `sweep.json` and `sweep.md` in the run folder (or `--out`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use tcobench_analysis::RunStats;
use tcobench_cost::costing::RunCosts;
use tcobench_report::render::{fmt_mean_ci, md_escape, md_prose, missing_recommendations};
use tcobench_results::schema::SCHEMA_VERSION;
use tcobench_results::spec::{CostingSpec, RawEnergy, RawPricing, RawSlo, RawWorkload};

use crate::commands::EXIT_BAD_INPUT;

/// Arguments of `tcobench sweep`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Run folder (with manifest.json and stats.json).
    pub run_dir: PathBuf,
    /// Folder of variant files (`*.yaml`), e.g. scenarios/variants/.
    #[arg(long)]
    pub variants: PathBuf,
    /// Where to write sweep.json and sweep.md (default: the run folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print sweep.json to stdout as well.
    #[arg(long)]
    pub json: bool,
}

/// One variant file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    name: Option<String>,
    description: Option<String>,
    pricing: Option<RawPricing>,
    energy: Option<RawEnergy>,
    slo: Option<RawSlo>,
    workload: Option<RawWorkload>,
}

/// One priced variant in `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SweptVariant {
    /// Variant name (`name:`, else the file stem).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Variant file.
    pub file: String,
    /// The costs under this variant.
    pub costing: RunCosts,
}

/// `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// Results schema version.
    pub schema_version: u32,
    /// Run id.
    pub run_id: String,
    /// Variants, in file-name order.
    pub variants: Vec<SweptVariant>,
}

struct Bad(String);

/// Runs `tcobench sweep`.
pub fn run(args: &SweepArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match sweep(args) {
        Ok((sweep, md, dir)) => {
            let json = serde_json::to_vec_pretty(&sweep)?;
            tcobench_results::io::write_atomic(
                &dir.join("sweep.json"),
                &[json.as_slice(), b"\n"].concat(),
            )?;
            tcobench_results::io::write_atomic(&dir.join("sweep.md"), md.as_bytes())?;
            if args.json {
                out.write_all(&json)?;
                writeln!(out)?;
            } else {
                out.write_all(md.as_bytes())?;
                writeln!(
                    out,
                    "wrote {} and {}",
                    dir.join("sweep.json").display(),
                    dir.join("sweep.md").display()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Bad(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

/// Reads one variant file: its name (`name:`, else the file stem), description and sections.
pub(crate) fn read_variant(path: &Path) -> Result<(String, String, CostingSpec), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: VariantFile = serde_yaml::from_str(&text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        let mut msg = e.to_string();
        if let Some(i) = msg.rfind(" at line ") {
            msg.truncate(i);
        }
        format!("{}{loc}: {msg}", path.display())
    })?;
    let mut spec = CostingSpec {
        pricing: v.pricing,
        energy: v.energy,
        slo: v.slo,
        workload: v.workload,
        ..CostingSpec::default()
    };
    if let Some(p) = spec.pricing.as_mut() {
        if let Some(dir) = &p.catalog {
            let base = path.parent().unwrap_or(Path::new("."));
            p.catalog = Some(base.join(dir).display().to_string());
        }
    }
    let name = v.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok((name, v.description.unwrap_or_default(), spec))
}

fn sweep(args: &SweepArgs) -> Result<(Sweep, String, PathBuf), Bad> {
    let run_dir = &args.run_dir;
    let manifest = tcobench_analysis::read_run_manifest(run_dir).map_err(|e| Bad(e.to_string()))?;
    let stats_path = run_dir.join(tcobench_results::schema::files::STATS);
    let text = std::fs::read_to_string(&stats_path).map_err(|e| {
        Bad(format!(
            "{}: {e} (run `tcobench analyze {}` first)",
            stats_path.display(),
            run_dir.display()
        ))
    })?;
    let stats: RunStats =
        serde_json::from_str(&text).map_err(|e| Bad(format!("{}: {e}", stats_path.display())))?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.variants)
        .map_err(|e| Bad(format!("--variants {}: {e}", args.variants.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Bad(format!(
            "--variants {}: no *.yaml variant files",
            args.variants.display()
        )));
    }

    let base = manifest.costing.clone().unwrap_or_default();
    let mut variants = Vec::new();
    for path in &files {
        let (name, description, layer) = read_variant(path).map_err(Bad)?;
        let mut spec = base.clone();
        spec.overlay(&layer);
        let costing = tcobench_analysis::price_run(&stats, &manifest, &spec, Some(name.clone()))
            .map_err(|e| Bad(format!("{}: {e}", path.display())))?;
        variants.push(SweptVariant {
            name,
            description,
            file: path.display().to_string(),
            costing,
        });
    }
    let sweep = Sweep {
        schema_version: SCHEMA_VERSION,
        run_id: stats.run_id.clone(),
        variants,
    };
    let md = markdown(&sweep, &stats);
    let dir = args.out.clone().unwrap_or_else(|| run_dir.clone());
    std::fs::create_dir_all(&dir).map_err(|e| Bad(format!("{}: {e}", dir.display())))?;
    Ok((sweep, md, dir))
}

fn fig(f: Option<tcobench_cost::costing::Figure>) -> String {
    match f {
        Some(f) => fmt_mean_ci(f.value, f.ci95),
        None => "—".into(),
    }
}

/// The comparison table: per variant and tier, the recommendation; then every priced row.
fn markdown(sweep: &Sweep, stats: &RunStats) -> String {
    let label = |id: &str| {
        stats
            .cells
            .iter()
            .find(|c| c.cell_id == id)
            .map(|c| c.label())
            .unwrap_or_else(|| id.to_string())
    };
    let mut s = format!(
        "# Sweep of run `{}`\n\nThe same measurements priced under {} variants; figures are mean [95 % CI].\n\n",
        sweep.run_id,
        sweep.variants.len()
    );
    s.push_str("## Recommendation per variant and tier\n\n");
    s.push_str("| Variant | Tier | Model | Cheapest configuration | Instance | $/1M tokens | J/token | gCO2e per 1M tokens | How sure |\n|---|---|---|---|---|---:|---:|---:|---|\n");
    for v in &sweep.variants {
        for r in &v.costing.recommendations {
            s.push_str(&format!(
                "| {} | {} | {} | {} | `{}` | {} | {} | {} | {} |\n",
                md_escape(&v.name),
                r.tier,
                md_escape(&r.model),
                md_escape(&r.cell_label),
                r.instance,
                fig(Some(r.usd_per_1m_tokens)),
                fig(r.j_per_token),
                fig(r.gco2e_per_1m_tokens),
                md_escape(&r.confidence)
            ));
        }
        // Why a tier has no recommendation: nothing priced (no price in the catalog, …) is
        // not the same finding as nothing meeting the SLO.
        for m in missing_recommendations(stats, &v.costing) {
            s.push_str(&format!(
                "| {} | {} | {} | no recommendation: {} | — | — | — | — | — |\n",
                md_escape(&v.name),
                m.tier,
                md_escape(&m.model),
                md_prose(&m.reason)
            ));
        }
    }
    s.push_str("\n## Every priced cell\n\n| Variant | Cell | Instance | Tier | $/h | $/1M tokens | kWh per 1M tokens | gCO2e per 1M tokens | Catalog row |\n|---|---|---|---|---:|---:|---:|---:|---|\n");
    for v in &sweep.variants {
        for c in &v.costing.cells {
            let kwh = c.energy.as_ref().map(|e| e.kwh_per_1m_tokens);
            let co2 = c.energy.as_ref().and_then(|e| e.gco2e_per_1m_tokens);
            for p in &c.prices {
                s.push_str(&format!(
                    "| {} | {} | `{}` | {} | {} | {} | {} | {} | {} `{}` |\n",
                    md_escape(&v.name),
                    md_escape(&label(&c.cell_id)),
                    p.instance,
                    p.tier,
                    p.usd_per_hour,
                    fig(Some(p.usd_per_1m_tokens)),
                    fig(kwh),
                    fig(co2),
                    p.reference.file,
                    p.reference.key
                ));
            }
        }
    }
    let gaps: Vec<String> = sweep
        .variants
        .iter()
        .flat_map(|v| {
            v.costing.cells.iter().flat_map(move |c| {
                c.unpriced.iter().map(move |u| {
                    format!(
                        "- {}: {} — {}",
                        md_escape(&v.name),
                        md_escape(&label(&c.cell_id)),
                        md_escape(&u.reason)
                    )
                })
            })
        })
        .collect();
    if !gaps.is_empty() {
        s.push_str("\n## Not priced\n\n");
        s.push_str(&gaps.join("\n"));
        s.push('\n');
    }
    s
}
