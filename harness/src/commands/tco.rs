//! `tcobench tco`: the cost, energy and carbon calculator, usable without a run.
//!
//! Throughput `T` comes from `--tokens-per-s` or from a run (`--run RUN_DIR [--cell ID]`: the
//! cell's mean `tokens_per_s` from `stats.json`, batch-level generated tokens per second, and —
//! when energy was measured — `W = mean energy_j_per_token × T`). The price comes from
//! `--price-usd-per-hour` or from the catalog (`--instance NAME [--tier TIER] [--region R]
//! [--provider P]`), or from on-prem figures (`--capex-usd`, `--lifetime-years`, `--watts`,
//! `--usd-per-kwh`, …). Every formula is in `tcobench_cost::formulas`.
//!
//! Exit codes: `0` done; `2` missing, contradictory or out-of-range inputs (the message says which).
//! `--json` prints `usd_per_1m_tokens`, `tokens_per_usd`, `kwh_per_1m_tokens`,
//! `gco2e_per_1m_tokens` (null when the inputs they need are absent — see `unavailable`) and, with
//! a workload, `instances`, `utilization`, `usd_per_month`, `kwh_per_month`, `kgco2e_per_month`;
//! figures taken from the catalog name their row in `references`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use tcobench_cost::catalog::{CatalogRef, Tier};
use tcobench_cost::formulas::{self as f, ApiPricing, OnPremCost, Workload};

use crate::commands::catalog::CatalogSource;

use crate::commands::EXIT_BAD_INPUT;

/// Arguments of `tcobench tco` (boxed: the options are many).
#[derive(clap::Args, Debug, Default)]
pub struct TcoArgs {
    /// The options.
    #[command(flatten)]
    pub opts: Box<TcoOptions>,
}

/// Options of `tcobench tco`.
#[derive(clap::Args, Debug, Default)]
pub struct TcoOptions {
    /// Measured throughput of the whole instance, generated tokens/s.
    #[arg(long, conflicts_with = "run")]
    pub tokens_per_s: Option<f64>,
    /// Take T (and W when energy was measured) from this run folder's stats.json.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// Cell of --run (id or unique prefix); required when the run has several successful cells.
    #[arg(long, requires = "run")]
    pub cell: Option<String>,
    /// Instance price, $/h.
    #[arg(long, conflicts_with_all = ["instance", "tier", "region", "provider"])]
    pub price_usd_per_hour: Option<f64>,
    /// Instance type to price from the catalog.
    #[arg(long)]
    pub instance: Option<String>,
    /// Purchase option of --instance (on_demand, spot, reserved_1y, reserved_3y; default on_demand).
    #[arg(long, requires = "instance")]
    pub tier: Option<String>,
    /// Region of --instance (needed when the catalog has several).
    #[arg(long, requires = "instance")]
    pub region: Option<String>,
    /// Provider of --instance (needed when several offer it).
    #[arg(long, requires = "instance")]
    pub provider: Option<String>,
    /// Utilisation: busy fraction of wall-clock time, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub utilization: f64,
    /// Average power of the instance while busy, W.
    #[arg(long)]
    pub watts: Option<f64>,
    /// Power while idle, W (charged for the 1 − U share).
    #[arg(long)]
    pub idle_watts: Option<f64>,
    /// Facility PUE (default 1.0, i.e. IT power only).
    #[arg(long, conflicts_with = "pue_preset")]
    pub pue: Option<f64>,
    /// PUE preset from the catalog (pue.csv).
    #[arg(long)]
    pub pue_preset: Option<String>,
    /// Electricity price, $/kWh (needed for on-prem cost).
    #[arg(long)]
    pub usd_per_kwh: Option<f64>,
    /// Grid carbon intensity, gCO2e/kWh.
    #[arg(long, conflicts_with = "grid_zone")]
    pub grid_g_per_kwh: Option<f64>,
    /// Grid zone from the catalog (grid_carbon.csv; the latest year is used).
    #[arg(long)]
    pub grid_zone: Option<String>,
    /// Embodied emissions of the hardware, kgCO2e.
    #[arg(long, requires = "lifetime_years")]
    pub embodied_kg: Option<f64>,
    /// Hardware lifetime, years (embodied share and on-prem depreciation).
    #[arg(long)]
    pub lifetime_years: Option<f64>,
    /// On-prem purchase price, $.
    #[arg(long, requires = "lifetime_years")]
    pub capex_usd: Option<f64>,
    /// On-prem resale value at end of life, fraction of capex in [0, 1).
    #[arg(long, default_value_t = 0.0, requires = "capex_usd")]
    pub residual_fraction: f64,
    /// On-prem maintenance, $/h.
    #[arg(long, default_value_t = 0.0, requires = "capex_usd")]
    pub maintenance_usd_per_hour: f64,
    /// Horizon of the ROI of buying instead of renting, months.
    #[arg(long, default_value_t = 36.0)]
    pub horizon_months: f64,
    /// Workload: requests per day.
    #[arg(long, requires = "tokens_per_request")]
    pub requests_per_day: Option<f64>,
    /// Workload: generated tokens per request.
    #[arg(long)]
    pub tokens_per_request: Option<f64>,
    /// Workload: peak rate over average rate (≥ 1).
    #[arg(long, default_value_t = 1.0)]
    pub peak_factor: f64,
    /// API comparison: input price, $/1M tokens.
    #[arg(long, requires = "api_output_usd_per_1m", conflicts_with = "api")]
    pub api_input_usd_per_1m: Option<f64>,
    /// API comparison: output price, $/1M tokens.
    #[arg(long, requires = "api_input_usd_per_1m")]
    pub api_output_usd_per_1m: Option<f64>,
    /// API comparison: cached input price, $/1M tokens.
    #[arg(long, requires = "api_input_usd_per_1m")]
    pub api_cached_input_usd_per_1m: Option<f64>,
    /// API comparison: `PROVIDER/MODEL` from the catalog (api_prices.csv).
    #[arg(long)]
    pub api: Option<String>,
    /// API comparison: input tokens per request.
    #[arg(long, default_value_t = 0.0)]
    pub input_tokens_per_request: f64,
    /// API comparison: cached share of the input tokens, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    pub cached_fraction: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Catalog location.
    #[command(flatten)]
    pub source: CatalogSource,
}

/// A bad-input error.
struct Bad(String);

impl From<f::FormulaError> for Bad {
    fn from(e: f::FormulaError) -> Self {
        Bad(format!("--{}: {e}", e.input.replace('_', "-")))
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, Bad> {
    Err(Bad(msg.into()))
}

/// Runs `tcobench tco`, writing to `out`.
pub fn run(args: &TcoArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let args: &TcoOptions = &args.opts;
    match compute(args) {
        Ok(v) => {
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                write_text(&v, out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Bad(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

/// The run's measured idle power, W, with its method, when the idle baseline was measured by the
/// method that measured `cell` (another method's idle figure is not this cell's idle power).
fn idle_from_run(dir: &std::path::Path, cell: &Value) -> Option<(f64, String)> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).ok()?).ok()?;
    let baseline = &manifest["power"]["idle_baseline"];
    let watts = baseline["watts"]
        .as_f64()
        .filter(|w| w.is_finite() && *w >= 0.0)?;
    let method = baseline["window"]["method"].as_str()?;
    (cell["energy_method"].as_str() == Some(method)).then(|| (watts, method.to_string()))
}

/// T and W from a run folder's stats.json, and its idle power where the run measured it.
#[allow(clippy::type_complexity)]
fn from_run(
    dir: &std::path::Path,
    cell: Option<&str>,
) -> Result<(f64, Option<f64>, String, Option<(f64, String)>), Bad> {
    let path = dir.join("stats.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Bad(format!(
            "--run: {}: {e} (run `tcobench analyze` first?)",
            path.display()
        ))
    })?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Bad(format!("--run: {}: {e}", path.display())))?;
    let cells = v["cells"].as_array().cloned().unwrap_or_default();
    let mean = |c: &Value, m: &str| c["metrics"][m]["mean"].as_f64();
    let usable: Vec<&Value> = cells
        .iter()
        .filter(|c| mean(c, "tokens_per_s").is_some())
        .collect();
    let id = |c: &Value| c["cell_id"].as_str().unwrap_or("").to_string();
    let chosen: Vec<&Value> = match cell {
        Some(want) => usable
            .iter()
            .copied()
            .filter(|c| id(c).starts_with(want))
            .collect(),
        None => usable.clone(),
    };
    let c = match chosen.as_slice() {
        [c] => *c,
        [] => {
            return bad(format!(
                "--run {}: no cell{} with a tokens_per_s mean; cells: {}",
                dir.display(),
                cell.map(|c| format!(" `{c}`")).unwrap_or_default(),
                usable.iter().map(|c| id(c)).collect::<Vec<_>>().join(", ")
            ))
        }
        many => {
            return bad(format!(
                "--run {}: {} cells match; pick one with --cell: {}",
                dir.display(),
                many.len(),
                many.iter().map(|c| id(c)).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let t = mean(c, "tokens_per_s").unwrap_or(f64::NAN);
    let w = mean(c, "energy_j_per_token").map(|j| j * t);
    let idle = w.and_then(|_| idle_from_run(dir, c));
    Ok((t, w, id(c), idle))
}

fn compute(a: &TcoOptions) -> Result<Value, Bad> {
    let mut refs: BTreeMap<&str, CatalogRef> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    let mut unavailable: BTreeMap<&str, String> = BTreeMap::new();
    let needs_catalog =
        a.instance.is_some() || a.pue_preset.is_some() || a.grid_zone.is_some() || a.api.is_some();
    let cat = if needs_catalog {
        Some(a.source.load().map_err(Bad)?)
    } else {
        None
    };

    // Throughput and power.
    let (t, mut watts, run_cell, run_idle) = match (&a.run, a.tokens_per_s) {
        (Some(dir), _) => {
            let (t, w, id, idle) = from_run(dir, a.cell.as_deref())?;
            (t, w, Some(id), idle)
        }
        (None, Some(t)) => (t, None, None, None),
        (None, None) => return bad("missing throughput: give --tokens-per-s T or --run RUN_DIR"),
    };
    f::positive("tokens_per_s", t)?;
    match (watts, a.watts) {
        (Some(_), Some(_)) => {
            return bad("--watts contradicts the energy measured in --run; drop one of them")
        }
        (None, Some(w)) => watts = Some(w),
        (Some(w), None) => notes.push(format!("W = {w} from the run's energy per token × T")),
        (None, None) => {}
    }

    // PUE.
    let pue = match (a.pue, &a.pue_preset, &cat) {
        (Some(p), _, _) => p,
        (None, Some(name), Some(c)) => {
            let p = c
                .pue_preset(name)
                .map_err(|e| Bad(format!("--pue-preset: {e}")))?;
            refs.insert(
                "pue",
                c.reference(&p.origin, p.preset.clone(), p.retrieved, &p.source),
            );
            p.pue
        }
        _ => {
            if watts.is_some() {
                notes.push("PUE = 1.0 (IT power only; give --pue or --pue-preset)".into());
            }
            1.0
        }
    };

    // Grid intensity.
    let grid = match (a.grid_g_per_kwh, &a.grid_zone, &cat) {
        (Some(g), _, _) => Some(g),
        (None, Some(zone), Some(c)) => {
            let g = c
                .grid_intensity(zone)
                .map_err(|e| Bad(format!("--grid-zone: {e}")))?;
            refs.insert(
                "grid",
                c.reference(&g.origin, g.key(), g.retrieved, &g.source),
            );
            Some(g.g_per_kwh)
        }
        _ => None,
    };

    // Cloud price.
    let cloud_price = match (a.price_usd_per_hour, &a.instance, &cat) {
        (Some(p), _, _) => Some(f::positive("price_usd_per_hour", p)?),
        (None, Some(name), Some(c)) => {
            let tier = match &a.tier {
                Some(s) => Tier::parse(s).ok_or_else(|| {
                    Bad(format!(
                        "--tier `{s}` is not a tier (known: {})",
                        Tier::ALL.map(Tier::name).join(", ")
                    ))
                })?,
                None => Tier::OnDemand,
            };
            let q = c
                .price(a.provider.as_deref(), name, tier, a.region.as_deref())
                .map_err(|e| Bad(format!("--instance: {e}")))?;
            refs.insert("price", q.reference.clone());
            notes.push(format!(
                "price {} $/h = {} {} in {} ({})",
                q.usd_per_hour,
                q.instance.instance_type,
                tier,
                q.instance.region,
                q.reference.source
            ));
            Some(q.usd_per_hour)
        }
        _ => None,
    };

    // On-prem price.
    let onprem = match a.capex_usd {
        Some(capex) => {
            let Some(w) = watts else {
                return bad("on-prem cost (--capex-usd) needs the power: give --watts (or a --run with measured energy)");
            };
            let Some(kwh_price) = a.usd_per_kwh else {
                return bad("on-prem cost (--capex-usd) needs --usd-per-kwh");
            };
            let c = OnPremCost {
                capex_usd: capex,
                residual_fraction: a.residual_fraction,
                lifetime_years: a.lifetime_years.unwrap_or(f64::NAN),
                watts: w,
                pue,
                usd_per_kwh: kwh_price,
                maintenance_usd_per_hour: a.maintenance_usd_per_hour,
            };
            let hourly = f::onprem_usd_per_hour(&c)?;
            Some((c, hourly))
        }
        None => None,
    };
    let price = match (cloud_price, &onprem) {
        (Some(p), _) => p,
        (None, Some((_, h))) => {
            notes.push(format!("price = on-prem {h} $/h (no cloud price given)"));
            *h
        }
        (None, None) => {
            return bad("missing price: give --price-usd-per-hour P, --instance NAME [--tier TIER], or on-prem --capex-usd --lifetime-years --watts --usd-per-kwh")
        }
    };

    // Idle power for the (1 − U) share: the command line's, else the run's measured baseline.
    let idle_watts = match (a.idle_watts, run_idle) {
        (Some(w), _) => Some(w),
        (None, Some((w, method))) => {
            notes.push(format!(
                "idle W = {w} from the run's measured idle baseline (method `{method}`, the cell's \
                 own); --idle-watts overrides it"
            ));
            Some(w)
        }
        (None, None) => None,
    };
    let u = a.utilization;
    let usd_1m = f::usd_per_1m_tokens(price, t, u)?;
    let tok_usd = f::tokens_per_usd(price, t, u)?;
    if idle_watts.is_some() && watts.is_none() {
        return bad("--idle-watts needs --watts (busy power)");
    }
    let kwh_1m = match watts {
        Some(w) => Some(f::kwh_per_1m_tokens(w, pue, t, u, idle_watts)?),
        None => {
            unavailable.insert(
                "kwh_per_1m_tokens",
                "no power: give --watts or a --run with measured energy".into(),
            );
            None
        }
    };
    let embodied_g = match (a.embodied_kg, a.lifetime_years) {
        (Some(kg), Some(y)) => f::embodied_gco2e_per_1m_tokens(kg, y, t, u)?,
        _ => 0.0,
    };
    let g_1m = match (kwh_1m, grid) {
        (Some(k), Some(ci)) => Some(f::gco2e_per_1m_tokens(k, ci, embodied_g)?),
        (None, _) => {
            unavailable.insert(
                "gco2e_per_1m_tokens",
                "no energy (see kwh_per_1m_tokens)".into(),
            );
            None
        }
        (_, None) => {
            unavailable.insert(
                "gco2e_per_1m_tokens",
                "no grid intensity: give --grid-g-per-kwh or --grid-zone".into(),
            );
            None
        }
    };

    let mut v = json!({
        "usd_per_1m_tokens": usd_1m,
        "tokens_per_usd": tok_usd,
        "kwh_per_1m_tokens": kwh_1m,
        "gco2e_per_1m_tokens": g_1m,
        "embodied_gco2e_per_1m_tokens": (a.embodied_kg.is_some()).then_some(embodied_g),
        "inputs": {
            "tokens_per_s": t,
            "price_usd_per_hour": price,
            "utilization": u,
            "watts": watts,
            "idle_watts": idle_watts,
            "pue": pue,
            "grid_g_per_kwh": grid,
            "run_cell": run_cell,
        },
    });

    // Workload sizing.
    let mut instances = 1.0;
    if let (Some(r), Some(tok)) = (a.requests_per_day, a.tokens_per_request) {
        let s = f::size_workload(&Workload {
            requests_per_day: r,
            tokens_per_request: tok,
            peak_factor: a.peak_factor,
            capacity_tokens_per_s: t,
            price_usd_per_hour: price,
            watts,
            idle_watts,
            pue,
            grid_g_per_kwh: grid,
            embodied_kg_and_lifetime_years: a.embodied_kg.zip(a.lifetime_years),
        })?;
        instances = s.instances as f64;
        v["instances"] = json!(s.instances);
        v["utilization"] = json!(s.utilization);
        v["usd_per_month"] = json!(s.usd_per_month);
        v["kwh_per_month"] = json!(s.kwh_per_month);
        v["kgco2e_per_month"] = json!(s.kgco2e_per_month);
        v["workload"] = json!(s);
        notes.push(format!(
            "workload sized at T = {t} tokens/s per instance (the capacity at your latency SLO); --utilization is not used for sizing"
        ));
    }

    // Cloud vs on-prem.
    if let Some((c, _)) = &onprem {
        let cmp = f::compare_onprem(c, t, u, instances, cloud_price, a.horizon_months)?;
        let mut o = json!({
            "usd_per_hour": cmp.usd_per_hour,
            "usd_per_1m_tokens": cmp.usd_per_1m_tokens,
            "opex_usd_per_hour": cmp.opex_usd_per_hour,
            "usd_per_month": cmp.usd_per_month,
            "inputs": c,
        });
        if cloud_price.is_some() {
            o["fleet_instances"] = json!(cmp.fleet_instances);
            o["cloud_usd_per_month"] = json!(cmp.cloud_usd_per_month);
            o["break_even_months"] = json!(cmp.break_even_months);
            o["roi"] = json!(cmp.roi);
            o["horizon_months"] = json!(a.horizon_months);
            o["break_even_utilization"] = json!(cmp.break_even_utilization);
        }
        v["onprem"] = o;
    }

    // Self-host vs API.
    let api = match (
        &a.api,
        a.api_input_usd_per_1m,
        a.api_output_usd_per_1m,
        &cat,
    ) {
        (Some(key), _, _, Some(c)) => {
            let p = c.api_price(key).map_err(|e| Bad(format!("--api: {e}")))?;
            refs.insert(
                "api",
                c.reference(&p.origin, p.key(), p.retrieved, &p.source),
            );
            Some(ApiPricing {
                input_usd_per_1m: p.input_usd_per_1m,
                output_usd_per_1m: p.output_usd_per_1m,
                cached_input_usd_per_1m: p.cached_input_usd_per_1m,
            })
        }
        (None, Some(i), Some(o), _) => Some(ApiPricing {
            input_usd_per_1m: i,
            output_usd_per_1m: o,
            cached_input_usd_per_1m: a.api_cached_input_usd_per_1m,
        }),
        _ => None,
    };
    if let Some(api) = api {
        let Some(out_tok) = a.tokens_per_request else {
            return bad(
                "the API comparison needs --tokens-per-request (generated tokens per request)",
            );
        };
        let cmp = f::compare_api(
            &api,
            a.input_tokens_per_request,
            out_tok,
            a.cached_fraction,
            price,
            instances,
            a.requests_per_day,
        )?;
        v["api"] = json!({
            "usd_per_request": cmp.usd_per_request,
            "usd_per_1m_output_tokens": cmp.usd_per_1m_output_tokens,
            "selfhost_usd_per_1m_tokens": usd_1m,
            "selfhost_usd_per_day": cmp.selfhost_usd_per_day,
            "break_even_requests_per_day": cmp.break_even_requests_per_day,
            "selfhost_instances": cmp.selfhost_instances,
            "usd_per_month": cmp.usd_per_month,
        });
    }

    if let Some(c) = &cat {
        v["catalog"] = json!(c.identity);
    }
    v["references"] = json!(refs);
    v["unavailable"] = json!(unavailable);
    v["notes"] = json!(notes);
    Ok(v)
}

fn write_text(v: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let num = |x: &Value| match x.as_f64() {
        Some(f) => tcobench_results::fmt_sig(f, 4),
        None => "n/a".into(),
    };
    let rows = [
        ("usd_per_1m_tokens", "$ per 1M tokens"),
        ("tokens_per_usd", "tokens per $"),
        ("kwh_per_1m_tokens", "kWh per 1M tokens"),
        ("gco2e_per_1m_tokens", "gCO2e per 1M tokens"),
        ("instances", "instances"),
        ("utilization", "fleet utilisation"),
        ("usd_per_month", "$ per month"),
        ("kwh_per_month", "kWh per month"),
        ("kgco2e_per_month", "kgCO2e per month"),
    ];
    for (k, label) in rows {
        if let Some(x) = v.get(k) {
            let shown = match x.as_u64() {
                Some(n) => n.to_string(),
                None => num(x),
            };
            writeln!(out, "{label:<22} {shown}")?;
        }
    }
    if let Some(o) = v.get("onprem") {
        writeln!(out, "{:<22} {}", "on-prem $/h", num(&o["usd_per_hour"]))?;
        writeln!(
            out,
            "{:<22} {}",
            "on-prem $ per 1M",
            num(&o["usd_per_1m_tokens"])
        )?;
        if o.get("break_even_months").is_some() {
            writeln!(
                out,
                "{:<22} {}",
                "break-even months",
                num(&o["break_even_months"])
            )?;
            writeln!(out, "{:<22} {}", "ROI over horizon", num(&o["roi"]))?;
        }
    }
    if let Some(api) = v.get("api") {
        writeln!(
            out,
            "{:<22} {}",
            "API $ per 1M output",
            num(&api["usd_per_1m_output_tokens"])
        )?;
        writeln!(
            out,
            "{:<22} {}",
            "break-even req/day",
            num(&api["break_even_requests_per_day"])
        )?;
    }
    if let Some(u) = v["unavailable"].as_object() {
        for (k, why) in u {
            writeln!(out, "n/a {k}: {}", why.as_str().unwrap_or(""))?;
        }
    }
    if let Some(r) = v["references"].as_object() {
        for (k, r) in r {
            writeln!(
                out,
                "{k} from catalog {} row {} ({})",
                r["catalog_version"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or("")
            )?;
        }
    }
    if let Some(n) = v["notes"].as_array() {
        for n in n {
            writeln!(out, "note: {}", n.as_str().unwrap_or(""))?;
        }
    }
    Ok(())
}
