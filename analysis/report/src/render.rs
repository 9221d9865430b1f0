//! Report rendering with minijinja: `report.md` and a single self-contained `report.html`.
//!
//! The default templates live in `report-templates/` and are embedded at compile time; a
//! directory passed to [`render`] can override them. The HTML template is rendered with HTML
//! auto-escaping switched on explicitly, so every user-provided string (scenario, model, error
//! messages, host names…) is escaped; the only values marked safe are the inline SVG plots, whose
//! text plotters has already XML-escaped (see [`crate::plots`]). The Markdown template escapes
//! table-breaking characters with the `md` filter.
//!
//! The HTML report carries an interactive TCO calculator: the script
//! `report-templates/tco-calculator.js` ([`TCO_CALCULATOR_JS`], whose formulas mirror
//! [`tcobench_cost::formulas`] one for one) and its data, the measured means and catalog offers
//! of each cell as JSON in `<script type="application/json" id="tco-data">`, written by
//! [`script_safe_json`] so no `</script>` or `<!--` can occur in it. The page's
//! Content-Security-Policy ([`content_security_policy`]) lets nothing load and only that script,
//! by its hash, run.
//!
//! Filters available to templates:
//!
//! | filter | input | output |
//! |---|---|---|
//! | `num(sig=3)` | number, none, undefined | `sig` significant digits, `—` when missing |
//! | `mean_ci` | a descriptives map or undefined | `mean [lo, hi]`, precision from the CI width |
//! | `stat(name)` | a descriptives map or undefined | one field (`p50`, `p99`, `sd`…) via `num` |
//! | `mib` | bytes | mebibytes, 3 significant digits |
//! | `md` | string | Markdown-safe text (`\|`, `<`, `>`, `*`, `_`… escaped, newlines flattened) |
//! | `code` | string | text for an inline code span (backticks replaced, `\|` escaped) |
//! | `shell_join` | list of strings | a copy-pasteable POSIX shell command line |

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use tcobench_results::schema::{CellOutcome, Manifest};
use tcobench_analysis::RunStats;
use tcobench_results::{fmt_sig, CellStats, Metric};

use crate::plots::Plot;
use crate::ReportError;

/// Template name of the Markdown report.
pub const MD_TEMPLATE: &str = "report.md.j2";
/// Template name of the HTML report.
pub const HTML_TEMPLATE: &str = "report.html.j2";
/// Built-in Markdown template.
pub const DEFAULT_MD_TEMPLATE: &str = include_str!("../../../report-templates/report.md.j2");
/// Built-in HTML template.
pub const DEFAULT_HTML_TEMPLATE: &str = include_str!("../../../report-templates/report.html.j2");

const MISSING: &str = "—";

/// The rendered reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `report.md` contents.
    pub markdown: String,
    /// `report.html` contents.
    pub html: String,
}

fn template_err(name: &str) -> impl Fn(minijinja::Error) -> ReportError + '_ {
    move |source| ReportError::Template {
        name: name.to_string(),
        source,
    }
}

fn value_f64(v: &Value) -> Option<f64> {
    if v.is_number() {
        f64::try_from(v.clone()).ok()
    } else {
        None
    }
}

/// `num` filter: a number with `sig` significant digits (default 3); `—` for none/undefined.
fn filter_num(v: Value, sig: Option<usize>) -> String {
    match value_f64(&v) {
        Some(x) => fmt_sig(x, sig.unwrap_or(3).clamp(1, 12)),
        None if v.is_none() || v.is_undefined() => MISSING.to_string(),
        None => v.to_string(),
    }
}

/// Decimals needed to show `x` with `sig` significant digits in fixed notation.
fn decimals_for(x: f64, sig: i64) -> i64 {
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    (sig - 1 - x.abs().log10().floor() as i64).max(0)
}

/// Formats a mean with its CI: the precision shows the mean to at least 3 significant digits
/// and the CI half-width to 2.
pub fn fmt_mean_ci(mean: f64, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() => {
            let half = (hi - lo) / 2.0;
            let d = if half > 0.0 {
                decimals_for(mean, 3).max(decimals_for(half, 2)).min(9)
            } else {
                decimals_for(mean, 3).min(9)
            } as usize;
            if (1e-4..1e6).contains(&mean.abs()) || mean == 0.0 {
                format!("{mean:.d$} [{lo:.d$}, {hi:.d$}]")
            } else {
                format!(
                    "{} [{}, {}]",
                    fmt_sig(mean, 3),
                    fmt_sig(lo, 3),
                    fmt_sig(hi, 3)
                )
            }
        }
        _ => fmt_sig(mean, 3),
    }
}

/// `mean_ci` filter.
fn filter_mean_ci(d: Value) -> Result<String, minijinja::Error> {
    if d.is_undefined() || d.is_none() {
        return Ok(MISSING.to_string());
    }
    let Some(mean) = value_f64(&d.get_attr("mean")?) else {
        return Ok(MISSING.to_string());
    };
    let ci = d.get_attr("ci95_mean")?;
    let ci = match (ci.get_item_by_index(0), ci.get_item_by_index(1)) {
        (Ok(lo), Ok(hi)) => value_f64(&lo).zip(value_f64(&hi)).map(|(a, b)| [a, b]),
        _ => None,
    };
    Ok(fmt_mean_ci(mean, ci))
}

/// `fig` filter: a costing figure (`{value, ci95}`) as `value [lo, hi]`; `—` for none.
fn filter_fig(f: Value) -> Result<String, minijinja::Error> {
    if f.is_undefined() || f.is_none() {
        return Ok(MISSING.to_string());
    }
    let Some(value) = value_f64(&f.get_attr("value")?) else {
        return Ok(MISSING.to_string());
    };
    let ci = f.get_attr("ci95")?;
    let ci = match (ci.get_item_by_index(0), ci.get_item_by_index(1)) {
        (Ok(lo), Ok(hi)) => value_f64(&lo).zip(value_f64(&hi)).map(|(a, b)| [a, b]),
        _ => None,
    };
    Ok(fmt_mean_ci(value, ci))
}

/// `stat` filter: one field of a descriptives map.
fn filter_stat(d: Value, field: String, sig: Option<usize>) -> Result<String, minijinja::Error> {
    if d.is_undefined() || d.is_none() {
        return Ok(MISSING.to_string());
    }
    Ok(filter_num(d.get_attr(&field)?, sig))
}

/// `mib` filter: bytes as MiB.
fn filter_mib(v: Value) -> String {
    match value_f64(&v) {
        Some(b) => fmt_sig(b / (1024.0 * 1024.0), 3),
        None => MISSING.to_string(),
    }
}

/// `md` filter: text safe inside a Markdown table cell or paragraph.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push_str("\\`"),
            '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {}
            '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `prose` filter: a sentence tcobench wrote, whose `code spans` stay code spans (their text
/// through [`md_code`]) while everything between them is escaped like [`md_escape`]. With an odd
/// number of backticks the whole text is escaped.
pub fn md_prose(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return md_escape(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("`{}`", md_code(part))
            } else {
                md_escape(part)
            }
        })
        .collect()
}

/// `prose_html` filter: like [`md_prose`] for HTML — every part HTML-escaped, the parts between
/// backticks wrapped in `<code>`. The result is marked safe: nothing in it is unescaped input.
pub fn html_prose(s: &str) -> String {
    let escape = |t: &str| {
        let mut out = String::with_capacity(t.len());
        for c in t.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#x27;"),
                c => out.push(c),
            }
        }
        out
    };
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return escape(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

/// `code` filter: text for an inline Markdown code span (backticks replaced, `|` escaped for
/// tables, newlines flattened).
pub fn md_code(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => "'".to_string(),
            '|' => "\\|".to_string(),
            c if c.is_control() => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn filter_code(v: Value) -> String {
    match v.as_str() {
        Some(s) => md_code(s),
        None if v.is_none() || v.is_undefined() => MISSING.to_string(),
        None => md_code(&v.to_string()),
    }
}

fn filter_md(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return MISSING.to_string();
    }
    match v.as_str() {
        Some(s) => md_escape(s),
        None => md_escape(&v.to_string()),
    }
}

/// Quotes one argument for a POSIX shell when needed.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn filter_shell_join(v: Value) -> Result<String, minijinja::Error> {
    let mut parts = Vec::new();
    for item in v.try_iter()? {
        parts.push(shell_quote(
            &item
                .as_str()
                .map_or_else(|| item.to_string(), str::to_owned),
        ));
    }
    Ok(parts.join(" "))
}

/// Builds the template environment: built-in templates, overrides from `templates`, filters,
/// explicit auto-escaping (HTML for `*.html.j2`, none otherwise), semi-strict undefined handling.
pub fn environment(templates: Option<&Path>) -> Result<Environment<'static>, ReportError> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(template_err("syntax"))?,
    );
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|name| {
        let stem = name.strip_suffix(".j2").unwrap_or(name);
        if stem.ends_with(".html") || stem.ends_with(".htm") || stem.ends_with(".svg") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_filter("num", filter_num);
    env.add_filter("mean_ci", filter_mean_ci);
    env.add_filter("stat", filter_stat);
    env.add_filter("mib", filter_mib);
    env.add_filter("md", filter_md);
    env.add_filter("prose_html", |v: Value| -> Value {
        if v.is_none() || v.is_undefined() {
            return Value::from(MISSING);
        }
        let text = match v.as_str() {
            Some(s) => html_prose(s),
            None => html_prose(&v.to_string()),
        };
        // Safe: `html_prose` escapes every character of its input (tested).
        Value::from_safe_string(text)
    });
    env.add_filter("prose", |v: Value| -> String {
        if v.is_none() || v.is_undefined() {
            return MISSING.to_string();
        }
        match v.as_str() {
            Some(s) => md_prose(s),
            None => md_prose(&v.to_string()),
        }
    });
    env.add_filter("code", filter_code);
    env.add_filter("shell_join", filter_shell_join);
    env.add_filter("fig", filter_fig);

    let mut loaded = BTreeSet::new();
    if let Some(dir) = templates {
        let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ReportError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".j2") || !entry.path().is_file() {
                continue;
            }
            let source =
                std::fs::read_to_string(entry.path()).map_err(|source| ReportError::Io {
                    path: entry.path(),
                    source,
                })?;
            env.add_template_owned(name.clone(), source)
                .map_err(template_err(&name))?;
            loaded.insert(name);
        }
    }
    for (name, source) in [
        (MD_TEMPLATE, DEFAULT_MD_TEMPLATE),
        (HTML_TEMPLATE, DEFAULT_HTML_TEMPLATE),
    ] {
        if !loaded.contains(name) {
            env.add_template(name, source).map_err(template_err(name))?;
        }
    }
    Ok(env)
}

/// One priced (cell, instance, tier) row of the cost table.
#[derive(Serialize)]
struct CostRow<'a> {
    cell_id: &'a str,
    label: String,
    #[serde(flatten)]
    price: &'a tcobench_cost::costing::PriceFigures,
    slo_met: Option<bool>,
}

/// One cell's energy row.
#[derive(Serialize)]
struct EnergyRow<'a> {
    cell_id: &'a str,
    label: String,
    #[serde(flatten)]
    energy: &'a tcobench_cost::costing::EnergyFigures,
}

/// A figure that could not be computed, for the notes list.
#[derive(Serialize)]
struct CostGap {
    label: String,
    what: String,
    reason: String,
}

#[derive(Serialize)]
struct CostingView<'a> {
    costs: &'a tcobench_cost::costing::RunCosts,
    prices: Vec<CostRow<'a>>,
    energy: Vec<EnergyRow<'a>>,
    gaps: Vec<CostGap>,
    /// Per tier and model without a recommendation, why ([`missing_recommendations`]).
    missing_recommendations: Vec<MissingRecommendation>,
    /// The idle power behind kWh/month, kgCO2e/month and on-prem electricity, in words
    /// ([`idle_power_label`]).
    idle_power: String,
}

/// A tier and model of a priced run without a recommendation, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingRecommendation {
    /// Pricing tier, as the catalog and scenarios name it (`reserved_1y`).
    pub tier: String,
    /// Model served.
    pub model: String,
    /// Why no configuration is recommended, in words (`code spans` for keys).
    pub reason: String,
}

/// Every tier × model of `costs` that has no recommendation, with the reason — which tells
/// *nothing could be priced* (no instance selected, no price of that tier in the catalog for the
/// instances, no instance fits the cells, no measured throughput) apart from *nothing priced meets
/// the SLO*. Tiers in selection order, models in cell order.
pub fn missing_recommendations(
    stats: &RunStats,
    costs: &tcobench_cost::costing::RunCosts,
) -> Vec<MissingRecommendation> {
    let sel = &costs.selection;
    let mut models: Vec<&str> = Vec::new();
    for c in &stats.cells {
        if !models.contains(&c.config.model.as_str()) {
            models.push(&c.config.model);
        }
    }
    let meets =
        |c: &tcobench_cost::costing::CellCost| sel.slo.is_none() || c.slo.is_some_and(|s| s.met);
    let slo = sel
        .slo
        .map(|s| format!("p{} `{}` ≤ {} ms", s.percentile, s.metric.name(), s.max_ms));
    let mut out = Vec::new();
    for &tier in &sel.tiers {
        for &model in &models {
            if costs
                .recommendations
                .iter()
                .any(|r| r.tier == tier && r.model == model)
            {
                continue;
            }
            let cells: Vec<_> = stats
                .cells
                .iter()
                .zip(&costs.cells)
                .filter(|(s, _)| s.config.model == model)
                .map(|(_, c)| c)
                .collect();
            let priced = |c: &&tcobench_cost::costing::CellCost| {
                c.prices
                    .iter()
                    .any(|p| p.tier == tier && p.usd_per_1m_tokens.value.is_finite())
            };
            // Why the cells in `of` have no price in this tier, one clause per cause.
            let why_unpriced = |of: &[&tcobench_cost::costing::CellCost]| -> String {
                if sel.instances.is_empty() {
                    return "no instances selected (`pricing.instances`)".into();
                }
                let mut no_price: Vec<&str> = Vec::new();
                let mut other: Vec<String> = Vec::new();
                for c in of {
                    for u in &c.unpriced {
                        match u.tier {
                            Some(t) if t == tier => {
                                if !no_price.contains(&u.instance.as_str()) {
                                    no_price.push(&u.instance);
                                }
                            }
                            Some(_) => {}
                            None => {
                                if !other.contains(&u.reason) {
                                    other.push(u.reason.clone());
                                }
                            }
                        }
                    }
                    if c.tokens_per_s
                        .is_none_or(|t| t.value <= 0.0 || t.value.is_nan())
                    {
                        let why = c
                            .unavailable
                            .iter()
                            .find(|u| u.metric == "usd_per_1m_tokens")
                            .map_or("no positive measured throughput", |u| u.reason.as_str());
                        let why = format!("no measured throughput ({why})");
                        if !other.contains(&why) {
                            other.push(why);
                        }
                    }
                }
                let mut clauses = Vec::new();
                if !no_price.is_empty() {
                    clauses.push(format!(
                        "catalog {} has no {tier} price for {}",
                        sel.catalog.version,
                        no_price.join(", ")
                    ));
                }
                clauses.extend(other);
                if clauses.is_empty() {
                    "no price of this tier was computed".into()
                } else {
                    clauses.join("; ")
                }
            };
            let reason = if !cells.iter().any(priced) {
                format!("nothing could be priced ({})", why_unpriced(&cells))
            } else if cells.iter().filter(|c| priced(c)).any(|c| meets(c)) {
                continue; // a candidate exists: `recommendations` ranks it (not reached)
            } else if cells.iter().any(|c| meets(c)) {
                let slo_cells: Vec<_> = cells.iter().copied().filter(|c| meets(c)).collect();
                format!(
                    "the configurations that meet the SLO ({}) could not be priced in this tier ({})",
                    slo.as_deref().unwrap_or("none set"),
                    why_unpriced(&slo_cells)
                )
            } else {
                format!(
                    "no priced configuration meets the SLO ({})",
                    slo.as_deref().unwrap_or("none set")
                )
            };
            out.push(MissingRecommendation {
                tier: tier.name().to_string(),
                model: model.to_string(),
                reason,
            });
        }
    }
    out
}

/// Which idle power the workload's kWh/month, kgCO2e/month and on-prem electricity charge for
/// the `(1 − U)` share, and where it comes from — never left unsaid.
pub fn idle_power_label(
    selection: &tcobench_cost::costing::CostSelection,
    manifest: &Manifest,
) -> String {
    use tcobench_cost::formulas::IdlePowerSource;
    let source = IdlePowerSource::of(selection.idle_watts, selection.idle_watts_source);
    match (selection.idle_watts, source) {
        (Some(w), IdlePowerSource::MeasuredBaseline) => {
            let basis = manifest
                .power
                .idle_baseline
                .as_ref()
                .map(|b| b.window.basis.as_str())
                .filter(|b| *b != "measured");
            format!(
                "idle time at {} W per replica: {}{}",
                fmt_sig(w, 4),
                source.describe(),
                basis.map_or_else(String::new, |b| format!(", {b}"))
            )
        }
        (Some(w), _) => format!(
            "idle time at {} W per replica: {}",
            fmt_sig(w, 4),
            source.describe()
        ),
        (None, _) => source.describe().to_string(),
    }
}

fn costing_view<'a>(stats: &'a RunStats, manifest: &Manifest) -> Option<CostingView<'a>> {
    let costs = stats.costing.as_ref()?;
    let label = |id: &str| {
        stats
            .cells
            .iter()
            .find(|c| c.cell_id == id)
            .map(CellStats::label)
            .unwrap_or_else(|| id.to_string())
    };
    let mut prices = Vec::new();
    let mut energy = Vec::new();
    let mut gaps = Vec::new();
    for c in &costs.cells {
        let cell_label = label(&c.cell_id);
        for p in &c.prices {
            prices.push(CostRow {
                cell_id: &c.cell_id,
                label: cell_label.clone(),
                price: p,
                slo_met: c.slo.map(|s| s.met),
            });
        }
        if let Some(e) = &c.energy {
            energy.push(EnergyRow {
                cell_id: &c.cell_id,
                label: cell_label.clone(),
                energy: e,
            });
        }
        for u in &c.unpriced {
            gaps.push(CostGap {
                label: cell_label.clone(),
                what: match u.tier {
                    Some(t) => format!("{} {t}", u.instance),
                    None => u.instance.clone(),
                },
                reason: u.reason.clone(),
            });
        }
        for u in &c.unavailable {
            gaps.push(CostGap {
                label: cell_label.clone(),
                what: u.metric.clone(),
                reason: u.reason.clone(),
            });
        }
    }
    Some(CostingView {
        costs,
        prices,
        energy,
        gaps,
        missing_recommendations: missing_recommendations(stats, costs),
        idle_power: idle_power_label(&costs.selection, manifest),
    })
}

#[derive(Serialize)]
struct Protocol {
    warmup: String,
    repetitions: String,
}

fn uniform(values: impl Iterator<Item = u32>) -> String {
    let set: BTreeSet<u32> = values.collect();
    match (set.first(), set.last()) {
        (None, _) | (_, None) => MISSING.to_string(),
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b} (varies by cell)"),
    }
}

#[derive(Serialize)]
struct CellView<'a> {
    #[serde(flatten)]
    cell: &'a CellStats,
    label: String,
    ok: bool,
    has_notes: bool,
    energy_label: String,
    agreement_label: String,
}

/// The agreement gate in words: `passed (2.1e-7 ≤ 1e-4 vs candle/f32/cpu)`.
fn agreement_label(cell: &CellStats) -> String {
    use tcobench_results::schema::AgreementStatus as S;
    let Some(a) = &cell.agreement else {
        return MISSING.to_string();
    };
    let kv = match cell.backend_info.get("kv_cache").map(String::as_str) {
        Some("false") => "; model.onnx without key/value cache",
        Some("true") => "; model.onnx with key/value cache",
        _ => "",
    };
    let text = match a.status {
        S::Passed | S::Failed => format!(
            "{} ({} {} {:.0e} vs {})",
            if a.status == S::Passed {
                "passed"
            } else {
                "FAILED"
            },
            a.max_rel_diff
                .map_or_else(|| MISSING.to_string(), |d| format!("{d:.1e}")),
            if a.status == S::Passed { "≤" } else { ">" },
            a.tolerance,
            a.reference
        ),
        S::Reference => "reference".to_string(),
        S::NotApplicable => "n/a (no logits)".to_string(),
        S::Error => format!("not checked: {}", a.note.as_deref().unwrap_or("error")),
    };
    format!("{text}{kv}")
}

fn energy_label(cell: &CellStats, manifest: &Manifest) -> String {
    if cell.metric(Metric::EnergyJPerToken).is_none() {
        return "not measured".into();
    }
    let method = cell
        .energy_method
        .as_deref()
        .unwrap_or(&manifest.power.method);
    if manifest.power.basis == "estimated" {
        format!("{method}, estimated")
    } else {
        format!("{method}, {}", manifest.power.basis)
    }
}

/// One pair of a comparison set, with its verdict in words.
#[derive(Serialize)]
struct PairView {
    a: String,
    b: String,
    diff_ci: String,
    welch_p: String,
    p_holm: String,
    hedges_g: String,
    sentence: String,
}

/// One metric of one comparison set.
#[derive(Serialize)]
struct ComparisonView {
    title: String,
    metric: String,
    unit: String,
    pairs: Vec<PairView>,
    omnibus: Option<String>,
}

/// Significance level of the verdicts in words.
const ALPHA: f64 = 0.05;

fn pair_view(p: &tcobench_stats::groups::PairwiseComparison, a: &tcobench_stats::groups::GroupAnalysis) -> PairView {
    let mean_of = |name: &str| a.groups.iter().find(|g| g.name == name).map(|g| g.mean);
    let w = p.welch.as_ref();
    let sentence = match (w, mean_of(&p.a), mean_of(&p.b)) {
        (Some(w), Some(ma), Some(mb)) if ma != 0.0 => {
            let rel = (mb - ma) / ma * 100.0;
            let dir = if rel >= 0.0 { "higher" } else { "lower" };
            let sig = if w.p_holm < ALPHA {
                "significant"
            } else {
                "not significant"
            };
            format!(
                "{} is {} % {dir} than {}: {sig} at α = {ALPHA} after Holm",
                p.b,
                fmt_sig(rel.abs(), 3),
                p.a
            )
        }
        _ => p.note.clone().unwrap_or_else(|| "test undefined".into()),
    };
    let ci = |v: f64, [lo, hi]: [f64; 2]| {
        format!("{} [{}, {}]", fmt_sig(v, 3), fmt_sig(lo, 3), fmt_sig(hi, 3))
    };
    PairView {
        a: p.a.clone(),
        b: p.b.clone(),
        // The CI is of a − b; the table shows b − a, which reads as "change from a to b".
        diff_ci: w.map_or(MISSING.into(), |w| {
            ci(
                -(w.ci95_diff[0] + w.ci95_diff[1]) / 2.0,
                [-w.ci95_diff[1], -w.ci95_diff[0]],
            )
        }),
        welch_p: w.map_or(MISSING.into(), |w| fmt_sig(w.p, 3)),
        p_holm: w.map_or(MISSING.into(), |w| fmt_sig(w.p_holm, 3)),
        // Effect sizes are computed as a − b; shown as b − a like the difference.
        hedges_g: match (p.hedges_g, p.hedges_g_ci95) {
            (Some(g), Some([lo, hi])) => ci(-g, [-hi, -lo]),
            _ => MISSING.into(),
        },
        sentence,
    }
}

fn omnibus(a: &tcobench_stats::groups::GroupAnalysis) -> Option<String> {
    if a.groups.len() < 3 {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(an) = &a.anova {
        parts.push(format!(
            "ANOVA F({}, {}) = {}, p = {}",
            an.df_between,
            an.df_within,
            fmt_sig(an.f, 4),
            fmt_sig(an.p, 3)
        ));
    }
    if let Some(w) = &a.welch_anova {
        parts.push(format!(
            "Welch F({}, {}) = {}, p = {}",
            fmt_sig(w.df1, 3),
            fmt_sig(w.df2, 4),
            fmt_sig(w.f, 4),
            fmt_sig(w.p, 3)
        ));
    }
    if let Some(k) = &a.kruskal_wallis {
        parts.push(format!(
            "Kruskal–Wallis H({}) = {}, p = {}",
            k.df,
            fmt_sig(k.h, 4),
            fmt_sig(k.p, 3)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn comparison_views(stats: &RunStats) -> Vec<ComparisonView> {
    let mut out = Vec::new();
    for set in &stats.comparisons {
        let fixed: Vec<String> = set.fixed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        for metric in Metric::ALL {
            let Some(a) = set.metrics.get(metric.name()) else {
                continue;
            };
            out.push(ComparisonView {
                title: format!("Only the {} differs ({})", set.varies, fixed.join(", ")),
                metric: metric.name().into(),
                unit: metric.unit().into(),
                pairs: a.pairwise.iter().map(|p| pair_view(p, a)).collect(),
                omnibus: omnibus(a),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validity warnings
// ---------------------------------------------------------------------------------------------

/// One thing a reader must know before trusting the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidityWarning {
    /// What it concerns (`power`, `energy window`, `throttling`, `agreement`, `cells`,
    /// `repetitions`, `pricing`, `outliers`).
    pub topic: &'static str,
    /// The warning, in one sentence.
    pub text: String,
}

/// A source of validity warnings: reads the run and adds what it finds.
type ValiditySource = fn(&RunStats, &Manifest, &mut Vec<ValidityWarning>);

/// Every source, in the order the report lists them; a new source is one more line here.
const VALIDITY_SOURCES: &[ValiditySource] = &[
    validity_power_basis,
    validity_energy_windows,
    validity_agreement,
    validity_cell_outcomes,
    validity_repetitions,
    validity_pricing,
    validity_outliers,
    validity_host_load,
];

/// Fewer timed requests than this make a cell's intervals wide and its tests weak.
pub const FEW_REQUESTS: usize = 5;

/// Everything a reader must know before trusting the numbers, from every
/// [`VALIDITY_SOURCES`] entry.
pub fn validity_warnings(stats: &RunStats, manifest: &Manifest) -> Vec<ValidityWarning> {
    let mut out = Vec::new();
    for source in VALIDITY_SOURCES {
        source(stats, manifest, &mut out);
    }
    out
}

fn warn(out: &mut Vec<ValidityWarning>, topic: &'static str, text: String) {
    out.push(ValidityWarning { topic, text });
}

fn short(id: &str) -> &str {
    // Cell ids are short and readable already; a prefix could name two cells.
    id
}

fn validity_power_basis(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    match (m.power.method.as_str(), m.power.basis.as_str()) {
        ("none", _) => warn(
            out,
            "power",
            "energy was not measured: no J/token, kWh or carbon figure is a measurement".into(),
        ),
        (method, "estimated") => warn(
            out,
            "power",
            format!(
                "power is estimated by a model (method `{method}`, scope {}), not measured: energy, kWh and carbon figures carry the model's error, which no interval here includes",
                m.power.scope
            ),
        ),
        (method, basis) if basis != "measured" => warn(
            out,
            "power",
            format!("power basis is `{basis}` (method `{method}`): not a measurement of real hardware"),
        ),
        _ => {}
    }
    if let Some(b) = &m.power.idle_baseline {
        if b.window.validity == tcobench_results::schema::EnergyValidity::Invalid {
            warn(
                out,
                "energy window",
                format!(
                    "the idle baseline's energy window is invalid ({}): net-of-idle figures are imprecise",
                    b.window.invalid_reason.as_deref().unwrap_or("no reason recorded")
                ),
            );
        }
    }
}

fn validity_host_load(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &m.cells {
        if let Some(why) = c.host_load.as_ref().and_then(|l| l.not_quiet()) {
            warn(
                out,
                "host load",
                format!(
                    "cell `{}`: the host was not quiet while it was timed ({why}): its timings \
                     may be slower for reasons other than its configuration, and a comparison \
                     with it may call noise a difference",
                    short(&c.cell_id)
                ),
            );
        }
    }
}

fn validity_energy_windows(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &m.cells {
        let Some(e) = &c.energy else {
            continue;
        };
        if e.validity == tcobench_results::schema::EnergyValidity::Invalid {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: energy window of {:.0} ms is invalid ({}; shortest valid {:.0} ms)",
                    short(&c.cell_id),
                    e.window_ms,
                    e.invalid_reason.as_deref().unwrap_or("no reason recorded"),
                    e.min_window_ms
                ),
            );
        } else if e.requests_below_min_window > 0 {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: {} timed requests were shorter than the {:.0} ms an energy reading needs; use the cell's whole-window figure, not per-request energy",
                    short(&c.cell_id),
                    e.requests_below_min_window,
                    e.min_window_ms
                ),
            );
        }
        if let Some(x) = e.cross_check.as_ref().filter(|x| x.flagged) {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: the energy counter and integrated instant power ({}) disagree by {:.1} % (tolerance {:.1} %)",
                    short(&c.cell_id),
                    x.method,
                    x.disagreement_rel * 100.0,
                    x.tolerance_rel * 100.0
                ),
            );
        }
        if let Some(t) = e.throttling.as_ref().filter(|t| t.flagged) {
            warn(
                out,
                "throttling",
                format!(
                    "cell `{}`: {} slowdown during the window ({}): its timings are not representative",
                    short(&c.cell_id),
                    if t.hw_slowdown { "hardware" } else { "thermal" },
                    t.reasons.join(", ")
                ),
            );
        }
    }
}

fn validity_agreement(stats: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    use tcobench_results::schema::AgreementStatus as S;
    for c in &stats.cells {
        let Some(a) = &c.agreement else {
            continue;
        };
        let what = match a.status {
            S::Failed => "failed the logits-agreement gate",
            S::Error => "could not be checked by the logits-agreement gate",
            _ => continue,
        };
        let fate = if m.allow_disagreement {
            "it is still compared (`--allow-disagreement`)"
        } else {
            "it is excluded from comparisons"
        };
        warn(
            out,
            "agreement",
            format!(
                "cell `{}` ({}) {what}: {fate}",
                short(&c.cell_id),
                c.label()
            ),
        );
    }
}

fn validity_cell_outcomes(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &stats.cells {
        match c.status {
            CellOutcome::Ok => {
                if c.n_failed_excluded > 0 {
                    warn(
                        out,
                        "cells",
                        format!(
                            "cell `{}`: {} timed requests failed and are excluded",
                            short(&c.cell_id),
                            c.n_failed_excluded
                        ),
                    );
                }
            }
            CellOutcome::Failed => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) failed: {}; it has no figures",
                    short(&c.cell_id),
                    c.label(),
                    c.error.as_deref().unwrap_or("no error recorded")
                ),
            ),
            CellOutcome::Skipped => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) was skipped ({}): the results are partial",
                    short(&c.cell_id),
                    c.label(),
                    c.error.as_deref().unwrap_or("no reason recorded")
                ),
            ),
            CellOutcome::Pending => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) was not run: the results are partial",
                    short(&c.cell_id),
                    c.label()
                ),
            ),
        }
    }
}

fn validity_repetitions(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    let few: Vec<String> = stats
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Ok && c.n_requests < FEW_REQUESTS)
        .map(|c| format!("`{}` (n = {})", short(&c.cell_id), c.n_requests))
        .collect();
    if !few.is_empty() {
        warn(
            out,
            "repetitions",
            format!(
                "fewer than {FEW_REQUESTS} timed requests in {}: their intervals are wide and tests on them have little power",
                few.join(", ")
            ),
        );
    }
}

fn validity_pricing(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    // Costing's own findings: vCPU mismatch between host and priced instance, instances that
    // fit no cell, no cell meeting the SLO, estimated energy.
    if let Some(c) = &stats.costing {
        for w in &c.warnings {
            warn(out, "pricing", w.clone());
        }
    }
}

fn validity_outliers(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &stats.cells {
        let parts: Vec<String> = c
            .robust
            .iter()
            .filter(|(_, r)| r.outliers.severe > 0)
            .map(|(m, r)| {
                format!(
                    "{m}: {} severe, {} mild",
                    r.outliers.severe, r.outliers.mild
                )
            })
            .collect();
        if !parts.is_empty() {
            warn(
                out,
                "outliers",
                format!(
                    "cell `{}`: outliers beyond 3 × IQR ({}), kept in every statistic",
                    short(&c.cell_id),
                    parts.join("; ")
                ),
            );
        }
    }
}

/// One offer of the calculator: a priced (instance, tier) of a cell, from `stats.json` costing.
#[derive(Serialize)]
struct TcoOffer<'a> {
    instance: &'a str,
    tier: &'static str,
    usd_per_hour: f64,
    replicas: u32,
}

/// One cell of the calculator: its measured means (one replica) and its catalog offers.
#[derive(Serialize)]
struct TcoCell<'a> {
    cell_id: &'a str,
    label: String,
    tokens_per_s: f64,
    j_per_token: Option<f64>,
    new_tokens: u32,
    prompt_tokens: u32,
    slo_met: Option<bool>,
    offers: Vec<TcoOffer<'a>>,
}

/// The calculator's starting inputs: the scenario's costing selection and its first
/// recommendation, or neutral values when the run was not priced.
#[derive(Serialize)]
struct TcoDefaults<'a> {
    cell_id: Option<&'a str>,
    instance: Option<&'a str>,
    tier: Option<&'static str>,
    utilization: f64,
    pue: f64,
    idle_watts: Option<f64>,
    usd_per_kwh: Option<f64>,
    grid_g_per_kwh: Option<f64>,
    embodied_kg: Option<f64>,
    lifetime_years: Option<f64>,
    requests_per_day: Option<f64>,
    tokens_per_request: Option<f64>,
    peak_factor: f64,
    capex_usd: Option<f64>,
    onprem_lifetime_years: Option<f64>,
    residual_fraction: Option<f64>,
    maintenance_usd_per_hour: Option<f64>,
    api_name: Option<&'a str>,
    api_input_usd_per_1m: Option<f64>,
    api_output_usd_per_1m: Option<f64>,
    api_cached_input_usd_per_1m: Option<f64>,
    cached_fraction: Option<f64>,
    input_tokens_per_request: Option<f64>,
}

/// Everything the calculator reads (`<script type="application/json" id="tco-data">`).
#[derive(Serialize)]
struct TcoData<'a> {
    cells: Vec<TcoCell<'a>>,
    defaults: TcoDefaults<'a>,
}

/// The calculator's data: every completed cell with a positive mean throughput (the cells
/// `tcobench tco --run` accepts), the same means it reads, and the run's catalog offers.
fn tco_data(stats: &RunStats) -> TcoData<'_> {
    let positive_mean = |d: Option<&tcobench_stats::descriptive::Descriptives>| {
        d.map(|d| d.mean).filter(|m| m.is_finite() && *m > 0.0)
    };
    let costs = stats.costing.as_ref();
    let cells = stats
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Ok)
        .filter_map(|c| {
            let tokens_per_s = positive_mean(c.metric(Metric::TokensPerS))?;
            let cost = costs.and_then(|k| k.cells.iter().find(|k| k.cell_id == c.cell_id));
            Some(TcoCell {
                cell_id: &c.cell_id,
                label: c.label(),
                tokens_per_s,
                j_per_token: c
                    .metric(Metric::EnergyJPerToken)
                    .map(|d| d.mean)
                    .filter(|m| m.is_finite()),
                new_tokens: c.config.new_tokens,
                prompt_tokens: c.config.prompt_tokens,
                slo_met: cost.and_then(|k| k.slo).map(|s| s.met),
                offers: cost
                    .map(|k| {
                        k.prices
                            .iter()
                            .map(|p| TcoOffer {
                                instance: &p.instance,
                                tier: p.tier.name(),
                                usd_per_hour: p.usd_per_hour,
                                replicas: p.replicas,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect::<Vec<_>>();
    let first = costs.and_then(|k| {
        k.recommendations
            .iter()
            .find(|r| cells.iter().any(|c| c.cell_id == r.cell_id))
    });
    let sel = costs.map(|k| &k.selection);
    let workload = sel.and_then(|s| s.workload);
    let onprem = sel.and_then(|s| s.onprem.as_ref());
    let api = sel.and_then(|s| s.api.first());
    TcoData {
        defaults: TcoDefaults {
            cell_id: first.map(|r| r.cell_id.as_str()),
            instance: first.map(|r| r.instance.as_str()),
            tier: first.map(|r| r.tier.name()),
            utilization: sel.map_or(1.0, |s| s.utilization),
            pue: sel.map_or(1.0, |s| s.pue.value),
            idle_watts: sel.and_then(|s| s.idle_watts),
            usd_per_kwh: onprem.map(|o| o.usd_per_kwh.value),
            grid_g_per_kwh: sel.and_then(|s| s.grid.as_ref().map(|g| g.value)),
            embodied_kg: sel.and_then(|s| s.embodied.map(|e| e.0)),
            lifetime_years: sel.and_then(|s| s.embodied.map(|e| e.1)),
            requests_per_day: workload.map(|w| w.requests_per_day),
            tokens_per_request: workload.and_then(|w| w.tokens_per_request),
            peak_factor: workload.map_or(1.0, |w| w.peak_factor),
            capex_usd: onprem.map(|o| o.capex_usd.value),
            onprem_lifetime_years: onprem.map(|o| o.lifetime_years.value),
            residual_fraction: onprem.map(|o| o.residual_fraction.value),
            maintenance_usd_per_hour: onprem.map(|o| o.maintenance_usd_per_hour.value),
            api_name: api.map(|a| a.name.as_str()),
            api_input_usd_per_1m: api.map(|a| a.pricing.input_usd_per_1m),
            api_output_usd_per_1m: api.map(|a| a.pricing.output_usd_per_1m),
            api_cached_input_usd_per_1m: api.and_then(|a| a.pricing.cached_input_usd_per_1m),
            cached_fraction: api.map(|a| a.cached_fraction),
            input_tokens_per_request: api.and_then(|a| a.input_tokens_per_request),
        },
        cells,
    }
}

/// The calculator's script (`report-templates/tco-calculator.js`), inlined in `report.html`.
pub const TCO_CALCULATOR_JS: &str = include_str!("../../../report-templates/tco-calculator.js");

/// Serialises `value` as JSON that is safe inside an HTML `<script>` element: `<`, `>` and `&`
/// become `\u003c`, `\u003e`, `\u0026` (so neither `</script>` nor `<!--` can occur) and
/// U+2028/U+2029 are escaped too. These characters only ever occur inside JSON strings, where a
/// `\uXXXX` escape means the same character, so `JSON.parse` returns the original value.
pub fn script_safe_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let json = serde_json::to_string(value)?;
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Standard base64 (with padding), for the CSP hash of the inline script.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The report's Content-Security-Policy: nothing may load (no network, no file besides the
/// report), styles are inline, and the only script allowed to run is the calculator, by hash —
/// markup smuggled in through data could not run even if it escaped the template's escaping.
pub fn content_security_policy() -> String {
    use sha2::{Digest, Sha256};
    let hash = base64(&Sha256::digest(TCO_CALCULATOR_JS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'"
    )
}

/// The calculator's context: `data` (script-safe JSON), `script`, `csp`, `cells` (how many
/// cells it offers).
fn tco_context(stats: &RunStats) -> Result<Value, ReportError> {
    let data = tco_data(stats);
    let json = script_safe_json(&data).map_err(|source| ReportError::Json {
        path: tcobench_results::schema::files::REPORT_HTML.into(),
        source,
    })?;
    Ok(context! {
        cells => data.cells.len(),
        // Safe: `script_safe_json` leaves no `<`, `>` or `&` (tested).
        data => Value::from_safe_string(json),
        // Safe: a constant of this crate, checked to hold no `</script` or `<!--` (tested).
        script => Value::from_safe_string(TCO_CALCULATOR_JS.to_string()),
        csp => content_security_policy(),
    })
}

/// A report format `tcobench report --format` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportFormat {
    /// `report.md` (and the plots it links, `plots/*.svg`).
    Markdown,
    /// `report.html`, self-contained.
    Html,
}

impl ReportFormat {
    /// Both formats.
    pub const ALL: [ReportFormat; 2] = [ReportFormat::Markdown, ReportFormat::Html];

    /// The name on the command line: `md` or `html`.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
        }
    }

    /// Parses `md` / `markdown` or `html`.
    pub fn parse(s: &str) -> Option<ReportFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(ReportFormat::Markdown),
            "html" => Some(ReportFormat::Html),
            _ => None,
        }
    }

    /// The template that renders it.
    pub fn template(self) -> &'static str {
        match self {
            ReportFormat::Markdown => MD_TEMPLATE,
            ReportFormat::Html => HTML_TEMPLATE,
        }
    }

    /// The file it is written to, inside the run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ReportFormat::Markdown => tcobench_results::schema::files::REPORT_MD,
            ReportFormat::Html => tcobench_results::schema::files::REPORT_HTML,
        }
    }
}

/// Renders both reports. `plots` are inlined in the HTML and linked (`plots/<name>.svg`) from the
/// Markdown.
pub fn render(
    stats: &RunStats,
    manifest: &Manifest,
    plots: &[Plot],
    templates: Option<&Path>,
) -> Result<Rendered, ReportError> {
    let mut out = render_formats(stats, manifest, plots, templates, &ReportFormat::ALL)?;
    let html = out.pop().map(|(_, s)| s).unwrap_or_default();
    let markdown = out.pop().map(|(_, s)| s).unwrap_or_default();
    Ok(Rendered { markdown, html })
}

/// Renders the reports in `formats` (in that order), each with its template.
pub fn render_formats(
    stats: &RunStats,
    manifest: &Manifest,
    plots: &[Plot],
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<(ReportFormat, String)>, ReportError> {
    let env = environment(templates)?;
    let cells: Vec<CellView<'_>> = stats
        .cells
        .iter()
        .map(|c| CellView {
            cell: c,
            label: c.label(),
            ok: c.status == CellOutcome::Ok,
            has_notes: c.status == CellOutcome::Ok
                && !(c.unavailable.is_empty() && c.warnings.is_empty()),
            energy_label: energy_label(c, manifest),
            agreement_label: agreement_label(c),
        })
        .collect();
    let plot_values: Vec<Value> = plots
        .iter()
        .map(|p| {
            context! {
                name => p.name,
                title => p.title.clone(),
                file => format!("{}/{}.svg", tcobench_results::schema::files::PLOTS, p.name),
                // Safe: plotters XML-escapes all text and attribute values (tested).
                svg => Value::from_safe_string(p.inline_svg()),
            }
        })
        .collect();
    let protocol = Protocol {
        warmup: uniform(manifest.cells.iter().map(|c| c.warmup)),
        repetitions: uniform(manifest.cells.iter().map(|c| c.repetitions)),
    };
    let ctx = context! {
        stats => Value::from(Serde(stats)),
        manifest => Value::from(Serde(manifest)),
        cells => Value::from(Serde(&cells)),
        headline => stats.headline(),
        counts => Value::from(Serde(stats.counts())),
        protocol => Value::from(Serde(&protocol)),
        estimated => manifest.power.basis == "estimated",
        metrics => Value::from(Serde(&stats.metrics)),
        plots => plot_values,
        comparisons => Value::from(Serde(&comparison_views(stats))),
        costing => Value::from(Serde(&costing_view(stats, manifest))),
        tco => tco_context(stats)?,
        validity => Value::from(Serde(&validity_warnings(stats, manifest))),
    };
    let render_one = |name: &str| -> Result<String, ReportError> {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(template_err(name))
    };
    formats
        .iter()
        .map(|&f| Ok((f, render_one(f.template())?)))
        .collect()
}

/// Writes the reports in `formats` into `run_dir`, each atomically; with Markdown, also the
/// plots it links (`plots/<name>.svg`, a stale plot from an earlier render removed). Returns the
/// paths written, reports first. Raw requests and power samples are re-read from `run_dir`.
pub fn write_formats(
    run_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<std::path::PathBuf>, ReportError> {
    write_formats_to(run_dir, run_dir, stats, templates, formats)
}

/// [`write_formats`] reading the run folder `run_dir` and writing the report files (and, for
/// Markdown, `plots/*.svg`) into `out_dir` instead — for a report that is not the run's own,
/// such as one re-priced with other sections, which must not replace the report that agrees
/// with the folder's `stats.json`. `out_dir` must exist.
pub fn write_formats_to(
    run_dir: &Path,
    out_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<std::path::PathBuf>, ReportError> {
    use tcobench_results::schema::files;
    let manifest = tcobench_analysis::read_run_manifest(run_dir)?;
    let requests = tcobench_results::load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    let power = tcobench_results::load::load_power(&run_dir.join(files::POWER))?;
    let plots = crate::plots::render_run(run_dir, stats, &manifest, &requests, &power)?;
    let rendered = render_formats(stats, &manifest, &plots, templates, formats)?;
    let mut written = Vec::new();
    for (format, text) in &rendered {
        let path = out_dir.join(format.file_name());
        tcobench_results::io::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    if formats.contains(&ReportFormat::Markdown) {
        let plot_dir = out_dir.join(files::PLOTS);
        std::fs::create_dir_all(&plot_dir).map_err(|source| ReportError::Io {
            path: plot_dir.clone(),
            source,
        })?;
        for name in crate::plots::PLOT_NAMES {
            let path = plot_dir.join(format!("{name}.svg"));
            match plots.iter().find(|p| p.name == name) {
                Some(p) => {
                    tcobench_results::io::write_atomic(&path, p.svg.as_bytes())?;
                    written.push(path);
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ReportError::Io { path, source }),
                },
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::testutil::{write_run, NASTY};
    use crate::write_report;
    use tcobench_analysis::analyze;
    use tcobench_results::schema::files;

    #[test]
    fn prose_html_wraps_code_and_escapes_everything() {
        assert_eq!(
            html_prose("method `<x>` & \"q\" <script>"),
            "method <code>&lt;x&gt;</code> &amp; &quot;q&quot; &lt;script&gt;"
        );
        assert_eq!(html_prose("odd ` <b>"), "odd ` &lt;b&gt;");
    }

    #[test]
    fn prose_keeps_code_spans_and_escapes_the_rest() {
        assert_eq!(
            md_prose("method `cpu_estimate` is *estimated* | <b>"),
            "method `cpu_estimate` is \\*estimated\\* \\| &lt;b&gt;"
        );
        // A span cannot be closed early by data: an odd count escapes everything.
        assert_eq!(md_prose("a `b"), "a \\`b");
        assert_eq!(md_prose("`x|y`"), "`x\\|y`");
    }

    #[test]
    fn filters() {
        assert_eq!(filter_num(Value::from(1234.5678), None), "1235");
        assert_eq!(filter_num(Value::from(0.012345), Some(2)), "0.012");
        assert_eq!(filter_num(Value::from(()), None), MISSING);
        assert_eq!(filter_num(Value::UNDEFINED, None), MISSING);
        assert_eq!(fmt_mean_ci(115.0, Some([99.57, 130.43])), "115 [100, 130]");
        assert_eq!(
            fmt_mean_ci(4.86, Some([4.651562, 5.068438])),
            "4.86 [4.65, 5.07]"
        );
        assert_eq!(fmt_mean_ci(50.0, Some([50.0, 50.0])), "50.0 [50.0, 50.0]");
        assert_eq!(fmt_mean_ci(50.0, None), "50.0");
        assert_eq!(md_escape("a|b\n<c>"), "a\\|b &lt;c&gt;");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("run"), "run");
        assert_eq!(filter_mib(Value::from(3u64 << 20)), "3.00");
    }

    fn render_run(scenario: &str, model: &str) -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), scenario, model);
        let stats = analyze(dir.path()).unwrap();
        write_report(dir.path(), &stats, None).unwrap();
        let md = std::fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
        let html = std::fs::read_to_string(dir.path().join(files::REPORT_HTML)).unwrap();
        (dir, md, html)
    }

    #[test]
    fn reports_contain_every_cell_and_no_external_resources() {
        let (dir, md, html) = render_run("smoke", "tiny-model");
        for id in ["aaaa", "bbbb", "cccc"] {
            assert!(md.contains(id), "md lacks {id}");
            assert!(html.contains(id), "html lacks {id}");
        }
        for bad in ["http://", "https://", "<link", "@import", "src="] {
            assert!(!html.contains(bad), "html contains {bad}");
        }
        assert_only_calculator_scripts(&html);
        assert!(html.contains("<svg"), "plots are inlined");
        assert!(html.contains("<style>"));
        assert!(html.contains("estimated"));
        assert!(md.contains("plots/throughput.svg"));
        // warm-up excluded: n = 4 for the ok cells.
        assert!(md.contains("| 4 |"), "{md}");
        assert!(md.contains("not run") || md.contains("cccc"));
        for p in ["throughput", "latency", "power"] {
            let svg =
                std::fs::read_to_string(dir.path().join("plots").join(format!("{p}.svg"))).unwrap();
            assert!(svg.starts_with("<svg"));
        }
        // Units in the headers.
        for unit in ["(ms)", "(tokens/s)", "(J/token)", "(MiB)"] {
            assert!(md.contains(unit) && html.contains(unit), "{unit}");
        }
    }

    #[test]
    fn user_strings_are_escaped_everywhere_in_html() {
        let (dir, md, html) = render_run(NASTY, &format!("org/{NASTY}"));
        assert_only_calculator_scripts(&html);
        // The calculator's data carries the strings, escaped for a script element.
        let data = tco_blob(&html);
        assert!(!data.contains('<') && !data.contains('>') && !data.contains('&'));
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert!(parsed["cells"][0]["label"]
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script> \"q\" 'a' & co"));
        assert!(!html.contains("alert(1)</"), "unescaped closing tag");
        assert!(
            !html.contains("\"q\""),
            "unescaped double quotes from user data"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "SVG text escaped"
        );
        assert!(!md.contains("<script"), "raw script tag in Markdown");
        for p in ["throughput", "latency"] {
            let svg =
                std::fs::read_to_string(dir.path().join("plots").join(format!("{p}.svg"))).unwrap();
            assert!(!svg.contains("<script"), "{p}.svg");
            assert!(
                svg.contains("&lt;script&gt;"),
                "{p}.svg keeps the text, escaped"
            );
        }
    }

    /// The only `<script` elements are the calculator's data block and its code, verbatim.
    fn assert_only_calculator_scripts(html: &str) {
        assert_eq!(html.matches("<script").count(), 2, "script elements");
        assert_eq!(html.matches("</script").count(), 2, "script ends");
        assert_eq!(
            html.matches("<script type=\"application/json\" id=\"tco-data\">")
                .count(),
            1
        );
        assert!(html.contains(&format!("<script>{TCO_CALCULATOR_JS}</script>")));
        // The policy as the template writes it: an attribute value, HTML-escaped.
        let csp = environment(None)
            .unwrap()
            .render_named_str(
                "x.html.j2",
                "{{ v }}",
                context! { v => content_security_policy() },
            )
            .unwrap();
        assert!(html.contains(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
        )));
    }

    /// The text of the `tco-data` element.
    fn tco_blob(html: &str) -> &str {
        let open = "<script type=\"application/json\" id=\"tco-data\">";
        let start = html.find(open).unwrap() + open.len();
        let len = html[start..].find("</script>").unwrap();
        &html[start..start + len]
    }

    #[test]
    fn script_safe_json_cannot_close_the_element() {
        let nasty = serde_json::json!({
            "a": "</script><script>alert(1)</script>",
            "b": "<!-- x --> & \u{2028}\u{2029} \"q\" \\<",
        });
        let out = script_safe_json(&nasty).unwrap();
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!out.contains(bad), "{out} contains {bad:?}");
        }
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            nasty
        );
        assert_eq!(script_safe_json("<").unwrap(), r#""\u003c""#);
    }

    #[test]
    fn calculator_script_is_inert_text_and_hashed_in_the_policy() {
        let js = TCO_CALCULATOR_JS.to_ascii_lowercase();
        for bad in [
            "</script",
            "<!--",
            "http:",
            "https:",
            "fetch(",
            "xmlhttprequest",
            "innerhtml",
            "eval(",
        ] {
            assert!(!js.contains(bad), "calculator contains {bad}");
        }
        // RFC 4648 test vectors.
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
    }

    #[test]
    fn calculator_data_holds_the_measured_means() {
        let (dir, _, html) = render_run("smoke", "m");
        let stats: RunStats =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(files::STATS)).unwrap())
                .unwrap();
        let data: serde_json::Value = serde_json::from_str(tco_blob(&html)).unwrap();
        let cells = data["cells"].as_array().unwrap();
        let ok: Vec<&CellStats> = stats
            .cells
            .iter()
            .filter(|c| c.status == CellOutcome::Ok)
            .collect();
        assert_eq!(cells.len(), ok.len());
        for (d, c) in cells.iter().zip(ok) {
            assert_eq!(d["cell_id"], c.cell_id.as_str());
            // Bit for bit: the page computes from the same numbers `tcobench tco --run` reads.
            assert_eq!(
                d["tokens_per_s"].as_f64().unwrap(),
                c.metric(Metric::TokensPerS).unwrap().mean
            );
            match c.metric(Metric::EnergyJPerToken) {
                Some(e) => assert_eq!(d["j_per_token"].as_f64().unwrap(), e.mean),
                None => assert!(d["j_per_token"].is_null()),
            }
            assert_eq!(d["new_tokens"], c.config.new_tokens);
        }
        // Unpriced run: neutral defaults, no offers.
        assert_eq!(data["defaults"]["pue"], 1.0);
        assert_eq!(data["defaults"]["utilization"], 1.0);
        assert!(cells
            .iter()
            .all(|c| c["offers"].as_array().unwrap().is_empty()));
    }

    #[test]
    fn formats_render_alone() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), "smoke", "m");
        let stats = analyze(dir.path()).unwrap();
        let written = write_formats(dir.path(), &stats, None, &[ReportFormat::Html]).unwrap();
        assert_eq!(written, vec![dir.path().join(files::REPORT_HTML)]);
        assert!(!dir.path().join(files::REPORT_MD).exists());
        assert!(!dir.path().join(files::PLOTS).exists());
        let written = write_formats(dir.path(), &stats, None, &[ReportFormat::Markdown]).unwrap();
        assert_eq!(written[0], dir.path().join(files::REPORT_MD));
        assert!(dir
            .path()
            .join(files::PLOTS)
            .join("throughput.svg")
            .is_file());
        assert_eq!(ReportFormat::parse(" HTML "), Some(ReportFormat::Html));
        assert_eq!(
            ReportFormat::parse("markdown"),
            Some(ReportFormat::Markdown)
        );
        assert_eq!(ReportFormat::parse("pdf"), None);
    }

    #[test]
    fn template_override_directory() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), "smoke", "m");
        let stats = analyze(dir.path()).unwrap();
        let tpl = tempfile::tempdir().unwrap();
        std::fs::write(
            tpl.path().join(MD_TEMPLATE),
            "custom {{ stats.run_id }} {{ cells | length }}\n",
        )
        .unwrap();
        write_report(dir.path(), &stats, Some(tpl.path())).unwrap();
        let md = std::fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
        assert_eq!(md, "custom run-1 3\n");
        // The HTML falls back to the built-in template.
        let html = std::fs::read_to_string(dir.path().join(files::REPORT_HTML)).unwrap();
        assert!(html.contains("aaaa"));

        // A broken template is a located template error, not a panic.
        std::fs::write(tpl.path().join(MD_TEMPLATE), "{{ stats.run_id ").unwrap();
        let err = write_report(dir.path(), &stats, Some(tpl.path())).unwrap_err();
        assert!(matches!(err, ReportError::Template { .. }), "{err}");
    }

    #[test]
    fn html_autoescape_is_explicit() {
        let env = environment(None).unwrap();
        let t = env.get_template(HTML_TEMPLATE).unwrap();
        assert_eq!(t.name(), HTML_TEMPLATE);
        let out = env
            .render_named_str("x.html.j2", "{{ v }}", context! { v => "<b>" })
            .unwrap();
        assert_eq!(out, "&lt;b&gt;");
        let out = env
            .render_named_str("x.md.j2", "{{ v }}", context! { v => "<b>" })
            .unwrap();
        assert_eq!(out, "<b>");
    }
}
