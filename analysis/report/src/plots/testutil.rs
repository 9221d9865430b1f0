//! Fixtures and checks shared by the plot tests: statistics of request rows ([`stats_for`]), a
//! priced run ([`priced_stats`]), runs of many cells ([`many_cells`]), power samples, the SVG
//! check every plot passes ([`check_svg`]) and the `<text>` elements of an SVG ([`svg_texts`]).

use std::path::Path;

use tcobench_analysis::{compute_stats, RunStats};
use tcobench_results::load::{self, LoadedRequests};
use tcobench_results::schema::{CellRecord, Manifest, PowerSample};
use tcobench_results::testutil::{manifest, request};

/// The statistics of request `rows` of the run `m`, and the rows as loaded.
pub(crate) fn stats_for(
    rows: &[tcobench_results::schema::RequestRecord],
    m: &Manifest,
) -> (RunStats, LoadedRequests) {
    let df = tcobench_results::io::requests_frame(rows).unwrap();
    let loaded = load::requests_from_frame(&df, Path::new("requests.parquet"), m).unwrap();
    (compute_stats(m, &loaded), loaded)
}

const COSTING: &str = "
pricing:
  instances: [gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1]
  tiers: [on_demand, spot]
  utilization: 1.0
energy:
  pue: uptime_2023_average
  grid: gcp:us-central1
";

/// The test manifest's run (cells aaaa and bbbb completed, cccc failed), priced on two
/// instances under two tiers with a grid intensity.
pub(crate) fn priced_stats() -> RunStats {
    let m = manifest("r", "s", "org/model");
    let rows: Vec<_> = m.cells[..2]
        .iter()
        .flat_map(|c| (0..4).map(move |r| request(c, r, false, Some(100.0 + f64::from(r)))))
        .collect();
    let (mut stats, _) = stats_for(&rows, &m);
    let spec: tcobench_results::spec::CostingSpec = serde_yaml::from_str(COSTING).unwrap();
    stats.costing = Some(tcobench_analysis::price_run(&stats, &m, &spec, None).unwrap());
    stats
}

/// A small XML well-formedness check: every tag closed in order, attributes quoted, no raw
/// `<` or bare `&` in text or attribute values, and one root element.
fn check_well_formed(svg: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    let check_text = |t: &str| {
        let mut parts = t.split('&');
        parts.next();
        for p in parts {
            let end = p.find(';').unwrap_or_else(|| panic!("bare & in {t:?}"));
            let entity = &p[..end];
            assert!(
                ["lt", "gt", "amp", "quot", "apos"].contains(&entity) || entity.starts_with('#'),
                "unknown entity &{entity};"
            );
        }
    };
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open]);
        let close = rest[open..].find('>').expect("unterminated tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().expect("tag name");
        // Attributes: name="value" pairs, values without `<` and with valid entities.
        let mut attrs = body[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs
                .find('=')
                .unwrap_or_else(|| panic!("attribute without value in <{tag}>"));
            let quote = attrs[eq + 1..].chars().next().unwrap();
            assert!(
                quote == '"' || quote == '\'',
                "unquoted attribute in <{tag}>"
            );
            let value_end = attrs[eq + 2..].find(quote).expect("unterminated attribute") + eq + 2;
            let value = &attrs[eq + 2..value_end];
            assert!(!value.contains('<'), "< in attribute of <{tag}>");
            check_text(value);
            for token in value.split([' ', ',']) {
                if let Ok(x) = token.parse::<f64>() {
                    assert!(x.is_finite(), "non-finite number {token:?} in <{tag}>");
                }
            }
            attrs = attrs[value_end + 1..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1, "one root element");
}

/// Checks that `svg` is one well-formed SVG document with no script, NaN or infinity in it.
pub(crate) fn check_svg(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("<script"), "unescaped user text in SVG");
    assert!(!svg.contains("NaN") && !svg.contains("=\"inf") && !svg.contains("=\"-inf"));
    check_well_formed(svg);
}

/// `n` RAPL samples of one device, 100 ms apart, between 20 and 26 W.
pub(crate) fn power_samples(n: u32) -> Vec<PowerSample> {
    (0..n)
        .map(|i| PowerSample {
            t_ms: 100.0 * f64::from(i),
            source: "rapl".into(),
            device: "cpu-package".into(),
            cell_id: None,
            watts: Some(20.0 + f64::from(i % 7)),
            energy_j_cum: None,
            temp_c: None,
            sm_clock_mhz: None,
            throttle_reasons: None,
        })
        .collect()
}

/// `n` completed cells over 2 backends × 5 batch sizes × as many models as needed, each with
/// `reps` requests, priced like [`priced_stats`].
pub(crate) fn many_cells(n: usize, reps: u32, model: &str) -> (RunStats, Manifest, LoadedRequests) {
    many_cells_with(n, reps, model, |_, _| {})
}

/// [`many_cells`] with each cell record edited by `edit(index, cell)` first.
pub(crate) fn many_cells_with(
    n: usize,
    reps: u32,
    model: &str,
    edit: impl Fn(usize, &mut CellRecord),
) -> (RunStats, Manifest, LoadedRequests) {
    let mut m = manifest("r", "s", model);
    let template = m.cells[0].clone();
    m.cells = (0..n)
        .map(|i| {
            let mut c = template.clone();
            c.index = i;
            c.cell_id = format!("{i:04x}");
            c.config.backend = ["candle", "onnxruntime"][i % 2].into();
            c.config.batch_size = 1 << ((i / 2) % 5);
            c.config.model = format!("{model}-{}", i / 10);
            c.window_start_ms = Some(1000.0 * i as f64);
            c.window_end_ms = Some(1000.0 * i as f64 + 800.0);
            edit(i, &mut c);
            c
        })
        .collect();
    let rows: Vec<_> = m
        .cells
        .iter()
        .flat_map(|c| {
            let base = 50.0 + 10.0 * c.index as f64;
            (0..reps).map(move |r| request(c, r, false, Some(base + f64::from(r))))
        })
        .collect();
    let (mut stats, loaded) = stats_for(&rows, &m);
    let spec: tcobench_results::spec::CostingSpec = serde_yaml::from_str(COSTING).unwrap();
    stats.costing = Some(tcobench_analysis::price_run(&stats, &m, &spec, None).unwrap());
    (stats, m, loaded)
}

/// A `<text>` element of an SVG: position, anchor, vertical shift, font size and content
/// (entities decoded).
#[derive(Debug)]
pub(crate) struct SvgText {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) anchor: String,
    pub(crate) dy: String,
    pub(crate) size: f64,
    pub(crate) text: String,
}

/// Every `<text>` element of `svg`, in document order.
pub(crate) fn svg_texts(svg: &str) -> Vec<SvgText> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text ") {
        let el = &rest[start..];
        let open = el.find('>').expect("unterminated <text");
        let close = el.find("</text>").expect("unclosed <text>");
        let tag = &el[..open];
        let attr = |name: &str| -> String {
            let key = format!(" {name}=\"");
            let at = tag
                .find(&key)
                .unwrap_or_else(|| panic!("no {name} in {tag}"))
                + key.len();
            tag[at..at + tag[at..].find('"').unwrap()].to_string()
        };
        let text = el[open + 1..close]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        out.push(SvgText {
            x: attr("x").parse().unwrap(),
            y: attr("y").parse().unwrap(),
            anchor: attr("text-anchor"),
            dy: attr("dy"),
            size: attr("font-size").parse().unwrap(),
            text,
        });
        rest = &el[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_check_rejects_broken_markup() {
        check_well_formed("<svg a=\"1\"><g><text>a &amp; b</text></g></svg>");
        for bad in [
            "<svg><g></svg>",
            "<svg><text>a & b</text></svg>",
            "<svg><text>a</g></svg>",
            "<svg a=1></svg>",
            "<svg a=\"<\"></svg>",
            "<svg></svg><svg></svg>",
            "<svg x=\"NaN\"></svg>",
            "<svg points=\"1,2 inf,3\"></svg>",
        ] {
            let caught = std::panic::catch_unwind(|| check_well_formed(bad));
            assert!(caught.is_err(), "accepted {bad}");
        }
    }
}
