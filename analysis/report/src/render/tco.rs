//! The HTML report's TCO calculator: its data (each cell's measured means and catalog offers,
//! the starting inputs from the run's costing selection), its script ([`TCO_CALCULATOR_JS`]),
//! JSON that is safe inside a `<script>` element ([`script_safe_json`]) and the page's
//! Content-Security-Policy ([`content_security_policy`]).

use minijinja::{context, Value};
use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_results::schema::CellOutcome;
use tcobench_results::Metric;

use crate::ReportError;

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
    let costs = stats.costing.as_ref();
    let cells = tco_cells(stats, costs);
    let defaults = tco_defaults(costs, &cells);
    TcoData { cells, defaults }
}

/// The calculator's cells: the completed ones with a positive mean throughput, with their offers
/// from `costs`.
fn tco_cells<'a>(
    stats: &'a RunStats,
    costs: Option<&'a tcobench_cost::costing::RunCosts>,
) -> Vec<TcoCell<'a>> {
    let positive_mean = |d: Option<&tcobench_stats::descriptive::Descriptives>| {
        d.map(|d| d.mean).filter(|m| m.is_finite() && *m > 0.0)
    };
    stats
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
                offers: cost.map(tco_offers).unwrap_or_default(),
            })
        })
        .collect()
}

/// The offers of one cell: each priced (instance, tier).
fn tco_offers(cost: &tcobench_cost::costing::CellCost) -> Vec<TcoOffer<'_>> {
    cost.prices
        .iter()
        .map(|p| TcoOffer {
            instance: &p.instance,
            tier: p.tier.name(),
            usd_per_hour: p.usd_per_hour,
            replicas: p.replicas,
        })
        .collect()
}

/// The calculator's starting inputs: the costing selection of `costs` and its first
/// recommendation among `cells`; neutral values when the run was not priced.
fn tco_defaults<'a>(
    costs: Option<&'a tcobench_cost::costing::RunCosts>,
    cells: &[TcoCell<'_>],
) -> TcoDefaults<'a> {
    let first = costs.and_then(|k| {
        k.recommendations
            .iter()
            .find(|r| cells.iter().any(|c| c.cell_id == r.cell_id))
    });
    let sel = costs.map(|k| &k.selection);
    let workload = sel.and_then(|s| s.workload);
    let onprem = sel.and_then(|s| s.onprem.as_ref());
    let api = sel.and_then(|s| s.api.first());
    TcoDefaults {
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
    }
}

/// The calculator's script (`report-templates/tco-calculator.js`), inlined in `report.html`.
pub const TCO_CALCULATOR_JS: &str = include_str!("../../../../report-templates/tco-calculator.js");

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
pub(super) fn tco_context(stats: &RunStats) -> Result<Value, ReportError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::{render_run, tco_blob};
    use tcobench_results::schema::files;
    use tcobench_results::CellStats;

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
}
