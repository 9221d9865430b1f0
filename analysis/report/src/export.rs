//! A run's per-cell figures in the formats continuous-benchmarking services read.
//!
//! * [`to_csv`]: one row per cell × measured metric, for spreadsheets and ad-hoc scripts;
//! * [`to_bmf`]: [Bencher Metric Format](https://bencher.dev/docs/reference/bencher-metric-format)
//!   JSON, `{ benchmark: { measure: { value, lower_value, upper_value } } }`;
//! * [`to_github_action_benchmark`]: the JSON array read by
//!   [github-action-benchmark](https://github.com/benchmark-action/github-action-benchmark)'s
//!   `customBiggerIsBetter` / `customSmallerIsBetter` tools.
//!
//! Every export reports the **mean** of the cell's timed, successful requests with its Student-t
//! 95 % confidence interval, exactly as `stats.json` does. A metric a cell has no values for (energy
//! when no power source was available, every metric of a failed cell) is **omitted**, never
//! exported as zero. [`load_run_stats`] recomputes the statistics from the run's files through the
//! loader, so any run folder can be exported, with or without a `stats.json`, and nothing is
//! written.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use tcobench_analysis::compare::higher_is_better;
use tcobench_analysis::RunStats;
use tcobench_results::schema::files;
use tcobench_results::{fmt_sig, load, CellStats, Metric};
use tcobench_stats::descriptive::Descriptives;

use crate::ReportError;

/// Reads `run_dir` (manifest + `requests.parquet`) and computes its statistics, without writing
/// anything (unlike [`crate::analyze`], which also writes `stats.json`).
///
/// # Errors
/// As [`tcobench_analysis::read_run_manifest`] and [`load::load_requests`]; the message names the file.
pub fn load_run_stats(run_dir: &Path) -> Result<RunStats, ReportError> {
    let manifest = tcobench_analysis::read_run_manifest(run_dir)?;
    let requests = load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    Ok(tcobench_analysis::compute_stats(&manifest, &requests).at_execution_level())
}

/// Measure slug of a metric, as used for BMF measures: `e2e-ms`, `ttft-ms`, `tpot-ms`,
/// `tokens-per-s`, `energy-j-per-token`.
pub fn measure_slug(metric: Metric) -> &'static str {
    match metric {
        Metric::E2eMs => "e2e-ms",
        Metric::TtftMs => "ttft-ms",
        Metric::TpotMs => "tpot-ms",
        Metric::TokensPerS => "tokens-per-s",
        Metric::EnergyJPerToken => "energy-j-per-token",
    }
}

/// The benchmark name of every cell of `stats`, in cell order: [`CellConfig::label`]
/// (`candle/small/f32/cpu/b1/p32/n16`), stable across runs and seeds. Should two cells of one run
/// share a label (two model folders with the same last component), each of them gets its cell id
/// appended in brackets so that no figure overwrites another.
pub fn benchmark_names(stats: &RunStats) -> Vec<String> {
    let labels: Vec<String> = stats.cells.iter().map(|c| c.config.label()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in &labels {
        *seen.entry(l.as_str()).or_default() += 1;
    }
    labels
        .iter()
        .zip(&stats.cells)
        .map(|(l, c)| {
            if seen[l.as_str()] > 1 {
                format!("{l} [{}]", c.cell_id)
            } else {
                l.clone()
            }
        })
        .collect()
}

/// The measured metrics of a cell, in [`Metric::ALL`] order.
fn measured(cell: &CellStats) -> impl Iterator<Item = (Metric, &Descriptives)> {
    Metric::ALL
        .into_iter()
        .filter_map(|m| cell.metric(m).map(|d| (m, d)))
}

/// The CSV header written by [`to_csv`].
pub const CSV_HEADER: [&str; 17] = [
    "run_id",
    "cell_id",
    "backend",
    "model",
    "device",
    "dtype",
    "batch_size",
    "prompt_tokens",
    "new_tokens",
    "metric",
    "unit",
    "n",
    "mean",
    "ci95_lo",
    "ci95_hi",
    "p50",
    "p99",
];

/// Quotes a CSV field as RFC 4180 requires: fields containing a comma, a double quote, CR or LF
/// are enclosed in double quotes, with inner double quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV row per cell × measured metric, under [`CSV_HEADER`], cells in manifest order and
/// metrics in [`Metric::ALL`] order. Numbers use the shortest representation that reads back
/// exactly; `ci95_lo`/`ci95_hi` are empty when there is no interval (`n = 1`). Fields are quoted
/// per RFC 4180 ([`csv_field`]); lines end with `\n`. Failed cells have no rows.
pub fn to_csv(stats: &RunStats) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for cell in &stats.cells {
        for (metric, d) in measured(cell) {
            let (lo, hi) = match d.ci95_mean {
                Some([lo, hi]) => (lo.to_string(), hi.to_string()),
                None => (String::new(), String::new()),
            };
            let fields = [
                stats.run_id.clone(),
                cell.cell_id.clone(),
                cell.config.backend.clone(),
                cell.config.model.clone(),
                cell.config.device.clone(),
                cell.config.dtype.clone(),
                cell.config.batch_size.to_string(),
                cell.config.prompt_tokens.to_string(),
                cell.config.new_tokens.to_string(),
                metric.name().to_string(),
                metric.unit().to_string(),
                d.n.to_string(),
                d.mean.to_string(),
                lo,
                hi,
                d.p50.to_string(),
                d.p99.to_string(),
            ];
            let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

/// One BMF metric: the mean and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BmfMetric {
    /// Mean.
    pub value: f64,
    /// Lower end of the 95 % CI of the mean (absent for `n = 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_value: Option<f64>,
    /// Upper end of the 95 % CI of the mean (absent for `n = 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_value: Option<f64>,
}

/// Bencher Metric Format: benchmark name → measure slug → metric. Serialises to the BMF JSON
/// object (keys sorted, so the output is stable).
pub type Bmf = BTreeMap<String, BTreeMap<String, BmfMetric>>;

/// The run as Bencher Metric Format: one benchmark per cell ([`benchmark_names`]), one measure per
/// measured metric ([`measure_slug`]), `value` = mean, `lower_value`/`upper_value` = its 95 % CI.
/// Cells without any measured metric (failed, not run) are left out.
pub fn to_bmf(stats: &RunStats) -> Bmf {
    let mut bmf = Bmf::new();
    for (cell, name) in stats.cells.iter().zip(benchmark_names(stats)) {
        let measures: BTreeMap<String, BmfMetric> = measured(cell)
            .map(|(m, d)| {
                (
                    measure_slug(m).to_string(),
                    BmfMetric {
                        value: d.mean,
                        lower_value: d.ci95_mean.map(|c| c[0]),
                        upper_value: d.ci95_mean.map(|c| c[1]),
                    },
                )
            })
            .collect();
        if !measures.is_empty() {
            bmf.insert(name, measures);
        }
    }
    bmf
}

/// Which of github-action-benchmark's two custom tools a file is for. One file holds one
/// direction, because the action's `tool` input decides for the whole file whether a larger value
/// is an improvement or a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GabDirection {
    /// `tool: customBiggerIsBetter` — the metrics where larger is better (`tokens_per_s`).
    BiggerIsBetter,
    /// `tool: customSmallerIsBetter` — the metrics where smaller is better (`e2e_ms`, `ttft_ms`,
    /// `tpot_ms`, `energy_j_per_token`).
    SmallerIsBetter,
}

impl GabDirection {
    /// The value of the action's `tool` input for this file.
    pub fn tool(self) -> &'static str {
        match self {
            GabDirection::BiggerIsBetter => "customBiggerIsBetter",
            GabDirection::SmallerIsBetter => "customSmallerIsBetter",
        }
    }

    /// The metrics exported in this direction, in [`Metric::ALL`] order.
    pub fn metrics(self) -> Vec<Metric> {
        let bigger = self == GabDirection::BiggerIsBetter;
        Metric::ALL
            .into_iter()
            .filter(|&m| higher_is_better(m) == bigger)
            .collect()
    }
}

/// One entry of a github-action-benchmark custom JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GabEntry {
    /// `<cell label> <metric>`, e.g. `candle/small/f32/cpu/b1/p32/n16 e2e_ms`.
    pub name: String,
    /// The metric's unit.
    pub unit: String,
    /// Mean.
    pub value: f64,
    /// `± half-width` of the 95 % CI of the mean (absent for `n = 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// Tooltip lines: n, the 95 % CI, p50, p99 and the cell id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// The run as a github-action-benchmark `customBiggerIsBetter` / `customSmallerIsBetter` file:
/// one entry per cell × measured metric of `direction` ([`GabDirection::metrics`]), cells in
/// manifest order. To track every metric, export twice and feed the two files to two action
/// steps with the matching `tool` ([`GabDirection::tool`]).
pub fn to_github_action_benchmark(stats: &RunStats, direction: GabDirection) -> Vec<GabEntry> {
    let metrics = direction.metrics();
    let mut out = Vec::new();
    for (cell, label) in stats.cells.iter().zip(benchmark_names(stats)) {
        for (metric, d) in measured(cell).filter(|(m, _)| metrics.contains(m)) {
            let ci = d
                .ci95_mean
                .map(|[lo, hi]| format!("95% CI [{}, {}]", fmt_sig(lo, 4), fmt_sig(hi, 4)));
            let mut extra = vec![format!("n: {}", d.n)];
            extra.extend(ci);
            extra.push(format!("p50: {}", fmt_sig(d.p50, 4)));
            extra.push(format!("p99: {}", fmt_sig(d.p99, 4)));
            extra.push(format!("cell: {}", cell.cell_id));
            out.push(GabEntry {
                name: format!("{label} {}", metric.name()),
                unit: metric.unit().to_string(),
                value: d.mean,
                range: d.ci95_half_width().map(|h| format!("± {}", fmt_sig(h, 4))),
                extra: Some(extra.join("\n")),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcobench_results::schema::CellOutcome;
    use tcobench_results::testutil::{write_synthetic_run, SynthCell};

    /// Two ok cells (energy not measured) and one failed cell; `run-x`.
    fn run() -> (tempfile::TempDir, RunStats) {
        let tmp = tempfile::tempdir().unwrap();
        write_synthetic_run(
            tmp.path(),
            "run-x",
            &[
                SynthCell {
                    model: "small",
                    batch: 1,
                    tps: Some(vec![100.0, 110.0, 90.0, 100.0]),
                },
                SynthCell {
                    model: "odd,\"name\"",
                    batch: 2,
                    tps: Some(vec![50.0, 50.0]),
                },
                SynthCell {
                    model: "broken",
                    batch: 1,
                    tps: None,
                },
            ],
            false,
        );
        let stats = load_run_stats(tmp.path()).unwrap();
        assert!(
            !tmp.path().join(files::STATS).exists(),
            "export writes nothing"
        );
        (tmp, stats)
    }

    #[test]
    fn csv_rows_header_quoting_and_no_energy() {
        let (_t, stats) = run();
        let csv = to_csv(&stats);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "run_id,cell_id,backend,model,device,dtype,batch_size,prompt_tokens,new_tokens,\
             metric,unit,n,mean,ci95_lo,ci95_hi,p50,p99"
        );
        // 2 ok cells × 4 measured metrics (energy unmeasured, failed cell absent).
        assert_eq!(lines.len(), 1 + 2 * 4, "{csv}");
        assert!(!csv.contains("energy"), "{csv}");
        assert!(!csv.contains("broken"), "{csv}");
        let tps = lines
            .iter()
            .find(|l| l.contains(",small,") && l.contains(",tokens_per_s,"))
            .unwrap();
        let f: Vec<&str> = tps.split(',').collect();
        assert_eq!(f.len(), 17);
        assert_eq!(
            &f[..12],
            [
                "run-x",
                "run-x-small-b1",
                "mock",
                "small",
                "cpu",
                "f32",
                "1",
                "16",
                "8",
                "tokens_per_s",
                "tokens/s",
                "4"
            ]
        );
        assert_eq!(f[12], "100");
        let (lo, hi): (f64, f64) = (f[13].parse().unwrap(), f[14].parse().unwrap());
        assert!(lo < 100.0 && hi > 100.0);
        // A model name with a comma and quotes is quoted, quotes doubled.
        assert!(csv.contains(",\"odd,\"\"name\"\"\",cpu,"), "{csv}");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn bmf_layout() {
        let (_t, stats) = run();
        let bmf = to_bmf(&stats);
        let json = serde_json::to_value(&bmf).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 2, "failed cell left out: {json:#}");
        let small = &json["mock/small/f32/cpu/b1/p16/n8"];
        let mut measures: Vec<&str> = small
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        measures.sort_unstable();
        assert_eq!(measures, ["e2e-ms", "tokens-per-s", "tpot-ms", "ttft-ms"]);
        let tps = small["tokens-per-s"].as_object().unwrap();
        let mut keys: Vec<&str> = tps.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["lower_value", "upper_value", "value"]);
        assert_eq!(tps["value"], 100.0);
        let d = stats.cells[0].metric(Metric::TokensPerS).unwrap();
        assert_eq!(tps["lower_value"], d.ci95_mean.unwrap()[0]);
        assert_eq!(tps["upper_value"], d.ci95_mean.unwrap()[1]);
        // Exact layout of one measure (constant data: CI collapses onto the mean).
        let odd = &json["mock/odd,\"name\"/f32/cpu/b2/p16/n8"]["tokens-per-s"];
        assert_eq!(
            odd,
            &serde_json::json!({"value": 50.0, "lower_value": 50.0, "upper_value": 50.0})
        );
        // n = 1: no interval, so only `value`.
        let one = BmfMetric {
            value: 1.5,
            lower_value: None,
            upper_value: None,
        };
        assert_eq!(serde_json::to_string(&one).unwrap(), r#"{"value":1.5}"#);
    }

    #[test]
    fn github_action_benchmark_layout_and_directions() {
        let (_t, stats) = run();
        let bigger = to_github_action_benchmark(&stats, GabDirection::BiggerIsBetter);
        assert_eq!(bigger.len(), 2);
        let json = serde_json::to_value(&bigger).unwrap();
        let first = &json[0];
        let mut keys: Vec<&str> = first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["extra", "name", "range", "unit", "value"]);
        assert_eq!(first["name"], "mock/small/f32/cpu/b1/p16/n8 tokens_per_s");
        assert_eq!(first["unit"], "tokens/s");
        assert_eq!(first["value"], 100.0);
        let half = stats.cells[0]
            .metric(Metric::TokensPerS)
            .unwrap()
            .ci95_half_width()
            .unwrap();
        assert_eq!(first["range"], format!("± {}", fmt_sig(half, 4)));
        let extra = first["extra"].as_str().unwrap();
        assert!(extra.starts_with("n: 4\n95% CI ["), "{extra}");
        assert!(extra.ends_with("cell: run-x-small-b1"), "{extra}");
        // Field order of the serialised entry follows the README: name, unit, value, range, extra.
        let text = serde_json::to_string(&bigger[0]).unwrap();
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("name") < pos("unit") && pos("unit") < pos("value"));
        assert!(pos("value") < pos("range") && pos("range") < pos("extra"));

        let smaller = to_github_action_benchmark(&stats, GabDirection::SmallerIsBetter);
        let names: Vec<&str> = smaller.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 2 * 3, "{names:?}");
        assert!(names
            .iter()
            .all(|n| !n.contains("energy") && !n.contains("tokens_per_s")));
        assert_eq!(names[0], "mock/small/f32/cpu/b1/p16/n8 e2e_ms");
        assert_eq!(smaller[0].unit, "ms");

        assert_eq!(GabDirection::BiggerIsBetter.tool(), "customBiggerIsBetter");
        assert_eq!(
            GabDirection::SmallerIsBetter.metrics(),
            [
                Metric::E2eMs,
                Metric::TtftMs,
                Metric::TpotMs,
                Metric::EnergyJPerToken
            ]
        );
    }

    #[test]
    fn measured_energy_is_exported() {
        let tmp = tempfile::tempdir().unwrap();
        write_synthetic_run(
            tmp.path(),
            "r",
            &[SynthCell {
                model: "m",
                batch: 1,
                tps: Some(vec![10.0, 12.0]),
            }],
            true,
        );
        let stats = load_run_stats(tmp.path()).unwrap();
        assert_eq!(stats.cells[0].status, CellOutcome::Ok);
        let bmf = to_bmf(&stats);
        assert!(bmf["mock/m/f32/cpu/b1/p16/n8"].contains_key("energy-j-per-token"));
        assert!(to_csv(&stats).contains("energy_j_per_token,J/token,2,"));
        let smaller = to_github_action_benchmark(&stats, GabDirection::SmallerIsBetter);
        assert!(smaller
            .iter()
            .any(|e| e.name.ends_with("energy_j_per_token")));
    }

    #[test]
    fn duplicate_labels_get_the_cell_id() {
        let (_t, mut stats) = run();
        stats.cells[1] = CellStats {
            cell_id: "other".into(),
            ..stats.cells[0].clone()
        };
        let names = benchmark_names(&stats);
        assert_eq!(names[0], "mock/small/f32/cpu/b1/p16/n8 [run-x-small-b1]");
        assert_eq!(names[1], "mock/small/f32/cpu/b1/p16/n8 [other]");
        assert_eq!(to_bmf(&stats).len(), 2);
    }
}
