//! `tcobench report` re-rendering from stored results, and the HTML report's TCO calculator
//! driven in headless Chromium: its figures equal `tcobench tco` on the same inputs, and markup in
//! a scenario's name and model stays text.
//!
//! The browser tests need Node.js, Debian's `chromium` (or `TCOBENCH_CHROMIUM`) and
//! `npm ci` in `tests/browser`; without them they print `skipped: …` and pass, unless
//! `TCOBENCH_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing prerequisite fails them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{run_scenario, tcobench, write, MOCK};

/// The mock scenario priced on two CPU instances of the shipped catalog.
fn priced_mock() -> String {
    format!(
        "{MOCK}pricing:
  instances: [gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1]
  tiers: [on_demand, spot]
energy:
  pue: uptime_2023_average
  grid: gcp:us-central1
slo:
  max_ms: 1000000
workload:
  requests_per_day: 100000
"
    )
}

/// The priced mock with an owned system and a per-token API to compare with.
fn priced_mock_with_alternatives() -> String {
    format!(
        "{}onprem:
  capex_usd: 5000
  lifetime_years: 4
  residual_fraction: 0.2
  maintenance_usd_per_hour: 0.05
  electricity: US-OH
api:
  - name: some-api
    input_usd_per_1m: 0.5
    output_usd_per_1m: 1.5
",
        priced_mock()
    )
}

#[test]
fn workload_tco_section_with_onprem_and_api_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "alt.yaml", &priced_mock_with_alternatives());
    let run = run_cli(dir.path(), &scenario);
    let stats = json(&run.join("stats.json"));
    let costing = &stats["costing"];
    let tco = costing["tco"].as_array().unwrap();
    assert!(!tco.is_empty(), "{costing}");
    assert_eq!(costing["tco_missing"], json!([]));
    let t = &tco[0];
    let cell = stats["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cell_id"] == t["cell_id"])
        .unwrap();
    // Independent arithmetic from the measured means and the inputs.
    let tps = cell["metrics"]["tokens_per_s"]["mean"].as_f64().unwrap();
    let jpt = cell["metrics"]["energy_j_per_token"]["mean"]
        .as_f64()
        .unwrap();
    let pue = costing["selection"]["pue"]["value"].as_f64().unwrap();
    let kwh_price = 0.0713; // catalog electricity_prices.csv, US-OH industrial 2024
    let hourly = 5000.0 * 0.8 / (4.0 * 8760.0) + jpt * tps * pue * kwh_price / 1000.0 + 0.05;
    let got = t["onprem"]["usd_per_hour"].as_f64().unwrap();
    assert!((got - hourly).abs() <= 1e-9 * hourly, "{got} vs {hourly}");
    let n = t["sizing"]["instances"].as_f64().unwrap();
    let cloud_hourly = t["usd_per_hour"].as_f64().unwrap();
    let opex = jpt * tps * pue * kwh_price / 1000.0 + 0.05;
    let months = n * 5000.0 / (n * cloud_hourly * 730.0 - n * opex * 730.0);
    match t["onprem"]["break_even_months"].as_f64() {
        Some(m) => assert!((m - months).abs() <= 1e-9 * months, "{m} vs {months}"),
        None => assert!(months <= 0.0, "{months}"),
    }
    let per_request = (f64::from(cell["prompt_tokens"].as_u64().unwrap() as u32) * 0.5
        + f64::from(cell["new_tokens"].as_u64().unwrap() as u32) * 1.5)
        / 1e6;
    let api = &t["apis"][0][1];
    let be = n * cloud_hourly * 24.0 / per_request;
    let got = api["break_even_requests_per_day"].as_f64().unwrap();
    assert!((got - be).abs() <= 1e-9 * be, "{got} vs {be}");
    let month = 100_000.0 * per_request * 730.0 / 24.0;
    let got = api["usd_per_month"].as_f64().unwrap();
    assert!((got - month).abs() <= 1e-9 * month, "{got} vs {month}");

    for text in [read(&run.join("report.md")), read(&run.join("report.html"))] {
        for want in [
            "TCO for the scenario's workload",
            "Break-even vs on-prem (scenario)",
            "Break-even vs the API some-api",
            "Verdict:",
            "US-OH",
            "scenario input",
            "Validity warnings",
            "Pricing catalog",
        ] {
            assert!(text.contains(want), "`{want}` missing");
        }
        assert!(!text.contains("To compute this section"));
    }
    // The calculator is prefilled from the scenario's sections.
    let (_, data) = split_tco_data(&read(&run.join("report.html")));
    assert_eq!(data["defaults"]["capex_usd"], 5000.0);
    assert_eq!(data["defaults"]["usd_per_kwh"], kwh_price);
    assert_eq!(data["defaults"]["api_output_usd_per_1m"], 1.5);

    // Without the sections the report says what to add, and prints no zero in their place.
    let plain = run_cli(dir.path(), &write(dir.path(), "plain.yaml", &priced_mock()));
    let md = read(&plain.join("report.md"));
    assert!(
        md.contains("To complete this section, add to the scenario"),
        "{md}"
    );
    assert!(md.contains("an `onprem:` section") || md.contains("an \\`onprem:\\` section"));
    assert!(!md.contains("Break-even vs on-prem"));
}

#[test]
fn report_reprices_with_pricing_and_energy_files() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "priced.yaml", &priced_mock());
    let run = run_cli(dir.path(), &scenario);
    let stats_before = read(&run.join("stats.json"));
    let variants = repo_root().join("scenarios/variants");
    let pricing = variants.join("tier2-spot.yaml");
    let energy = variants.join("grid-low-carbon.yaml");
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--pricing",
            pricing.to_str().unwrap(),
            "--energy",
            energy.to_str().unwrap(),
            "--format",
            "md",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run's own report stays; the re-priced one has its own folder, named after both files.
    let md = read(
        &run.join("report-tier2-spot+grid-low-carbon")
            .join("report.md"),
    );
    assert!(!read(&run.join("report.md")).contains("Re-rendered from stored results"));
    // The override files are named (as code spans).
    let stated: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("> Re-rendered from stored results with"))
        .collect();
    assert_eq!(stated.len(), 2, "{md}");
    assert!(stated[0].contains("pricing:") && stated[0].contains("tier2-spot.yaml"));
    assert!(stated[1].contains("energy:") && stated[1].contains("grid-low-carbon.yaml"));
    assert!(md.contains("variant tier2-spot + grid-low-carbon"));
    // Only the spot tier is recommended now; on demand is gone.
    assert!(md.contains("- **spot, "));
    assert!(!md.contains("- **on_demand, "));
    assert!(md.contains("google_fleet_2021q2") || md.contains("google\\_fleet\\_2021q2"));
    // The stored analysis is untouched.
    assert_eq!(read(&run.join("stats.json")), stats_before);

    // A file without the section asked for is bad input.
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--energy",
            pricing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no `energy:` section"));
}

/// The workload's kWh/month, kgCO2e/month and on-prem electricity charge the `(1 − U)` share of
/// time at an idle power the report names beside them: busy power only when nothing else is known
/// (said so), the run's measured idle baseline when the scenario sets none, the scenario's
/// `energy.idle_watts` when it does. Checked against hand arithmetic on the stored figures.
#[test]
fn workload_energy_charges_idle_time_at_the_idle_power_it_names() {
    let dir = tempfile::tempdir().unwrap();
    // A light workload: the fleet idles almost all the time, where idle power matters most.
    let text = priced_mock_with_alternatives()
        .replace("requests_per_day: 100000", "requests_per_day: 1000");
    let run = run_cli(dir.path(), &write(dir.path(), "idle.yaml", &text));
    let kwh_price = 0.0713; // catalog electricity_prices.csv, US-OH industrial 2024
                            // (instances, U, busy W of one instance, PUE) of the first TCO entry, and the entry.
    let figures = |stats: &Value| -> (f64, f64, f64, f64, Value) {
        let costing = &stats["costing"];
        let t = costing["tco"][0].clone();
        let cell = costing["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cell_id"] == t["cell_id"])
            .unwrap();
        let price = cell["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["instance"] == t["instance"] && p["tier"] == t["tier"])
            .unwrap();
        let replicas = price["replicas"].as_f64().unwrap();
        (
            t["sizing"]["instances"].as_f64().unwrap(),
            t["sizing"]["utilization"].as_f64().unwrap(),
            cell["energy"]["watts"].as_f64().unwrap() * replicas,
            costing["selection"]["pue"]["value"].as_f64().unwrap(),
            t,
        )
    };
    let rel = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{what}: {got} vs {want}"
        );
    };
    let onprem_hourly = |avg_watts: f64, pue: f64| {
        5000.0 * 0.8 / (4.0 * 8760.0) + avg_watts * pue * kwh_price / 1000.0 + 0.05
    };

    // 1. A mock run has no idle baseline (virtual clock) and the scenario no idle power: idle
    //    time is charged at busy power, and the report says so next to kWh/month.
    let stats = json(&run.join("stats.json"));
    let (n, u, w, pue, t) = figures(&stats);
    assert!(
        u < 0.01,
        "the workload should leave the fleet mostly idle: U = {u}"
    );
    rel(
        t["sizing"]["kwh_per_month"].as_f64().unwrap(),
        n * w * pue * 730.0 / 1000.0,
        "kWh/month, busy power all month",
    );
    rel(
        t["onprem"]["usd_per_hour"].as_f64().unwrap(),
        onprem_hourly(w, pue),
        "on-prem $/h, busy power all month",
    );
    let assumed = "kgCO2e/month (idle not measured: busy power assumed for idle time).";
    let md = read(&run.join("report.md"));
    assert!(md.contains(assumed), "{md}");
    assert!(read(&run.join("report.html")).contains(assumed));
    assert!(
        md.contains("tokens/s; idle not measured: busy power assumed for idle time)"),
        "{md}"
    );
    let assumptions = stats["costing"]["assumptions"].to_string();
    assert!(
        assumptions.contains("idle not measured: busy power assumed for idle time"),
        "{assumptions}"
    );

    // 2. The run measured 20 W idle before its matrix (given here to the mock run's manifest):
    //    analysed again, the idle share is charged at 20 W.
    let manifest_path = run.join("manifest.json");
    let mut manifest = json(&manifest_path);
    manifest["power"]["idle_baseline"] = json!({
        "window": {
            "method": "mock", "scope": "mock", "basis": "measured", "device": "mock",
            "sample_period_ms": 100.0, "update_period_ms": 0.0, "window_ms": 2000.0,
            "min_window_ms": 0.0, "energy_j": 40.0, "generated_tokens": 0,
            "quantisation_rel": 0.0, "gain_error_rel": 0.0, "uncertainty_rel": 0.0,
            "validity": "valid", "requests_below_min_window": 0
        },
        "watts": 20.0
    });
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let out = tcobench(&["analyze", run.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = json(&run.join("stats.json"));
    let (n2, u2, w2, pue2, t) = figures(&stats);
    assert_eq!((n2, u2, pue2), (n, u, pue));
    rel(w2, w, "busy watts unchanged");
    let avg = u * w + (1.0 - u) * 20.0;
    rel(
        t["sizing"]["kwh_per_month"].as_f64().unwrap(),
        n * avg * pue * 730.0 / 1000.0,
        "kWh/month with the measured idle baseline",
    );
    let grid = stats["costing"]["selection"]["grid"]["value"]
        .as_f64()
        .unwrap();
    rel(
        t["sizing"]["kgco2e_per_month"].as_f64().unwrap(),
        n * avg * pue * 730.0 / 1000.0 * grid / 1000.0,
        "kgCO2e/month with the measured idle baseline",
    );
    rel(
        t["onprem"]["usd_per_hour"].as_f64().unwrap(),
        onprem_hourly(avg, pue),
        "on-prem $/h with the measured idle baseline",
    );
    assert_eq!(stats["costing"]["selection"]["idle_watts"], 20.0);
    assert_eq!(
        stats["costing"]["selection"]["idle_watts_source"],
        "measured_baseline"
    );
    let measured =
        "kgCO2e/month (idle time at 20.00 W per replica: the run's measured idle baseline).";
    let md = read(&run.join("report.md"));
    assert!(md.contains(measured), "{md}");
    assert!(!md.contains("busy power assumed"), "{md}");
    let html = read(&run.join("report.html"));
    assert!(html.contains(&measured.replace('\'', "&#x27;")), "{html}");
    // The on-prem line names its average power and both of its parts.
    assert!(
        md.contains("idle 20.0 W, the run's measured idle baseline"),
        "{md}"
    );
    // The calculator starts from the same idle power.
    let (_, data) = split_tco_data(&html);
    assert_eq!(data["defaults"]["idle_watts"], 20.0);

    // 3. A scenario's `energy.idle_watts` wins over the baseline, and is named as such.
    let energy = write(
        dir.path(),
        "idle5.yaml",
        "name: idle5\nenergy:\n  idle_watts: 5\n",
    );
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--energy",
            energy.to_str().unwrap(),
            "--format",
            "md",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = read(&run.join("report-idle5").join("report.md"));
    assert!(
        md.contains(
            "kgCO2e/month (idle time at 5.000 W per replica: scenario input `energy.idle_watts`)."
        ),
        "{md}"
    );
}

/// `report --pricing` leaves the run's own report (which agrees with its stats.json) alone and
/// writes the re-priced one into its own folder; where the catalog has no price for a tier, the
/// report says nothing could be priced — not that nothing meets the SLO — and code spans in
/// sentences tcobench wrote render as code, not as escaped backticks.
#[test]
fn repriced_report_goes_beside_the_run_and_says_why_nothing_is_recommended() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_cli(dir.path(), &write(dir.path(), "p.yaml", &priced_mock()));
    let own_md = read(&run.join("report.md"));
    let own_html = read(&run.join("report.html"));
    let own_plot = read(&run.join("plots").join("throughput.svg"));
    let variants = repo_root().join("scenarios/variants");
    let reserved = variants.join("tier3-reserved.yaml");
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--pricing",
            reserved.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run's own files are untouched; the re-priced report and its plots are in their folder.
    assert_eq!(read(&run.join("report.md")), own_md);
    assert_eq!(read(&run.join("report.html")), own_html);
    let folder = run.join("report-tier3-reserved");
    let lines = stdout_lines(&out);
    assert_eq!(lines[0], folder.join("report.md").display().to_string());
    assert_eq!(lines[1], folder.join("report.html").display().to_string());
    assert!(folder.join("plots").join("throughput.svg").is_file());
    assert_eq!(read(&run.join("plots").join("throughput.svg")), own_plot);

    // Every cell meets the SLO; the shipped catalog has no reserved price for these instances.
    let md = read(&folder.join("report.md"));
    let html = read(&folder.join("report.html"));
    assert!(
        !md.contains("meets the SLO") && !md.contains("meet the SLO"),
        "{md}"
    );
    for tier in ["reserved\\_1y", "reserved\\_3y"] {
        for model in ["tiny", "small"] {
            let line = format!(
                "- **{tier}, {model}:** no recommendation: nothing could be priced (catalog "
            );
            assert!(md.contains(&line), "`{line}` missing:\n{md}");
        }
    }
    assert!(
        md.contains("has no reserved\\_1y price for gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1)"),
        "{md}"
    );
    assert!(html.contains("no recommendation: nothing could be priced"));
    assert!(!html.contains("meets the SLO"));
    // Sentences with code spans: code in both formats, no backslash before a backtick.
    assert!(!md.contains("\\`"), "{md}");
    assert!(
        md.contains("> Re-rendered from stored results with the `pricing:` section of `"),
        "{md}"
    );
    assert!(
        html.contains("with the <code>pricing:</code> section of <code>"),
        "{html}"
    );
    assert!(!html.contains("`pricing:`"), "{html}");

    // --out names another folder; the run folder itself is refused for a re-priced report.
    let elsewhere = dir.path().join("elsewhere");
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--pricing",
            reserved.to_str().unwrap(),
            "--format",
            "md",
            "--out",
            elsewhere.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read(&elsewhere.join("report.md")).contains("nothing could be priced"));
    let out = tcobench(
        &[
            "report",
            run.to_str().unwrap(),
            "--pricing",
            reserved.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is the run folder"), "{stderr}");
    assert_eq!(read(&run.join("report.md")), own_md);

    // Nothing meets a tight SLO although everything is priced: that is what the report says.
    let tight = write(
        dir.path(),
        "tight.yaml",
        &priced_mock().replace("max_ms: 1000000", "max_ms: 0.000001"),
    );
    let run = run_cli(dir.path(), &tight);
    let md = read(&run.join("report.md"));
    assert!(
        md.contains("- **on\\_demand, tiny:** no recommendation: no priced configuration meets the SLO (p95 `e2e_ms` ≤ "),
        "{md}"
    );
    assert!(!md.contains("nothing could be priced"), "{md}");
}

/// Runs the scenario file `scenario` with the CLI and returns the run folder.
fn run_cli(dir: &Path, scenario: &Path) -> PathBuf {
    run_scenario(dir, scenario)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The report with its calculator data cut out, and that data parsed.
fn split_tco_data(html: &str) -> (String, Value) {
    let open = "<script type=\"application/json\" id=\"tco-data\">";
    let start = html.find(open).expect("calculator data") + open.len();
    let len = html[start..].find("</script>").unwrap();
    let rest = format!("{}{}", &html[..start], &html[start + len..]);
    (
        rest,
        serde_json::from_str(&html[start..start + len]).unwrap(),
    )
}

/// Equal JSON, numbers to 1e-15 relative: serde_json reads a stored float back to within an
/// ulp of what was written, not always bit for bit.
fn assert_json_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, x) in x {
                assert_json_close(x, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// The same report: identical text outside the calculator data, that data equal as numbers.
fn assert_same_html(a: &str, b: &str) {
    let (a_text, a_data) = split_tco_data(a);
    let (b_text, b_data) = split_tco_data(b);
    assert!(
        a_text == b_text,
        "report.html differs outside the calculator data"
    );
    assert_json_close(&a_data, &b_data, "tco-data");
}

fn stdout_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn report_rerenders_from_stored_results() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "priced.yaml", &priced_mock());
    let run = run_cli(dir.path(), &scenario);
    let run_s = run.to_str().unwrap();
    let html = read(&run.join("report.html"));
    let md = read(&run.join("report.md"));
    let stats = read(&run.join("stats.json"));

    // Both formats by default, the same as the run wrote; stats.json is not rewritten.
    std::fs::remove_file(run.join("report.html")).unwrap();
    std::fs::remove_file(run.join("report.md")).unwrap();
    let out = tcobench(&["report", run_s], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines[0], run.join("report.md").display().to_string());
    assert_eq!(lines[1], run.join("report.html").display().to_string());
    assert!(
        lines.iter().any(|l| l.ends_with("throughput.svg")),
        "{lines:?}"
    );
    assert_same_html(&read(&run.join("report.html")), &html);
    assert_eq!(read(&run.join("report.md")), md);
    assert_eq!(read(&run.join("stats.json")), stats);

    // --format picks the files written.
    std::fs::remove_file(run.join("report.html")).unwrap();
    std::fs::remove_file(run.join("report.md")).unwrap();
    let out = tcobench(&["report", run_s, "--format", "html"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        stdout_lines(&out),
        [run.join("report.html").display().to_string()]
    );
    assert!(!run.join("report.md").exists());
    let out = tcobench(&["report", run_s, "--format", "md,html"], dir.path());
    assert!(out.status.success());
    assert!(run.join("report.md").is_file());

    // Custom templates; the HTML keeps the built-in one.
    let tpl = dir.path().join("templates");
    std::fs::create_dir(&tpl).unwrap();
    write(
        &tpl,
        "report.md.j2",
        "custom {{ stats.scenario_name }} {{ cells | length }}\n",
    );
    let out = tcobench(
        &["report", run_s, "--templates", tpl.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success());
    assert_eq!(read(&run.join("report.md")), "custom mock-run 4\n");
    assert_same_html(&read(&run.join("report.html")), &html);

    // A missing stats.json, or one of another layout, is analysed again, and said so.
    std::fs::remove_file(run.join("stats.json")).unwrap();
    let out = tcobench(&["report", run_s, "--format", "html"], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stats.json is missing"));
    assert_eq!(read(&run.join("stats.json")), stats);
    assert_same_html(&read(&run.join("report.html")), &html);
    let mut old: Value = serde_json::from_str(&stats).unwrap();
    old["schema_version"] = json!(0);
    std::fs::write(run.join("stats.json"), old.to_string()).unwrap();
    let out = tcobench(&["report", run_s, "--format", "html"], dir.path());
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema_version 0") && err.contains("analysing the run again"),
        "{err}"
    );
    assert_eq!(read(&run.join("stats.json")), stats);

    // Not a run: exit 2 with the reason.
    let not_run = dir.path().join("templates");
    for (path, want) in [
        (not_run.clone(), "has no manifest.json"),
        (dir.path().join("nowhere"), "no such directory"),
    ] {
        let out = tcobench(&["report", path.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a run folder") && err.contains(want),
            "{err}"
        );
    }
    let out = tcobench(&["report", run_s, "--format", "pdf"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`pdf` is not a report format"));
    let out = tcobench(&["report", run_s, "--templates", "nowhere"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    // A broken template is bad input too, located by minijinja.
    write(&tpl, "report.md.j2", "{{ stats.run_id ");
    let out = tcobench(
        &["report", run_s, "--templates", tpl.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report.md.j2"));
}

// ---------------------------------------------------------------------------------------------
// In the browser
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where screenshots are kept after the test.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Chromium binary and the checker script, or why the browser tests cannot run here.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("TCOBENCH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "no Chromium at {} (apt-get install chromium, or set TCOBENCH_CHROMIUM)",
            chromium.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("no working `node` on PATH".into()),
    }
    let browser_dir = repo_root().join("tests/browser");
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Err(format!(
            "playwright-core is not installed (run `npm ci` in {})",
            browser_dir.display()
        ));
    }
    Ok((chromium, browser_dir.join("check-report.mjs")))
}

/// The browser prerequisites, or `None` after printing why the test is skipped (a failure when
/// `TCOBENCH_REQUIRE_BROWSER` is set).
fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(b) => Some(b),
        Err(why) if std::env::var_os("TCOBENCH_REQUIRE_BROWSER").is_some() => {
            panic!("{test}: TCOBENCH_REQUIRE_BROWSER is set but {why}")
        }
        Err(why) => {
            // Straight to the process's stderr: the test harness captures `eprintln!` of a
            // passing test, and a skip must be seen.
            let _ = writeln!(std::io::stderr().lock(), "skipped: {test}: {why}");
            None
        }
    }
}

/// Runs the checker on `pages`; fails the test with its output when a check fails.
fn check_in_chromium(dir: &Path, chromium: &Path, script: &Path, pages: Value) {
    let spec = write(
        dir,
        "browser-spec.json",
        &serde_json::to_string_pretty(&json!({ "chromium": chromium, "pages": pages })).unwrap(),
    );
    let out = Command::new("node")
        .arg(script)
        .arg(&spec)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// `tcobench tco --run RUN --cell ID …` with `inputs` (flag → value), as JSON.
fn tco_cli(dir: &Path, run: &Path, cell: &str, inputs: &[(&str, &str)]) -> Value {
    let mut args = vec![
        "tco",
        "--run",
        run.to_str().unwrap(),
        "--cell",
        cell,
        "--json",
    ];
    for (flag, value) in inputs {
        args.push(flag);
        args.push(value);
    }
    let out = tcobench(&args, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every output of the calculator, expected from the CLI's JSON (and kWh × $/kWh for the
/// electricity lines, which the CLI does not print).
fn expected_from_cli(tco: &Value, usd_per_kwh: f64) -> Value {
    let f = |k: &str| tco[k].as_f64();
    json!({
        "tokens_per_s": tco["inputs"]["tokens_per_s"],
        "watts": tco["inputs"]["watts"],
        "usd_per_1m_tokens": f("usd_per_1m_tokens"),
        "tokens_per_usd": f("tokens_per_usd"),
        "kwh_per_1m_tokens": f("kwh_per_1m_tokens"),
        "gco2e_per_1m_tokens": f("gco2e_per_1m_tokens"),
        "electricity_usd_per_1m_tokens": f("kwh_per_1m_tokens").map(|k| k * usd_per_kwh),
        "instances": f("instances"),
        "utilization": f("utilization"),
        "usd_per_month": f("usd_per_month"),
        "kwh_per_month": f("kwh_per_month"),
        "kgco2e_per_month": f("kgco2e_per_month"),
        "electricity_usd_per_month": f("kwh_per_month").map(|k| k * usd_per_kwh),
        "onprem_usd_per_hour": tco["onprem"]["usd_per_hour"].as_f64(),
        "onprem_usd_per_1m_tokens": tco["onprem"]["usd_per_1m_tokens"].as_f64(),
        "onprem_usd_per_month": tco["onprem"]["usd_per_month"].as_f64(),
        "onprem_break_even_months": tco["onprem"]["break_even_months"].as_f64(),
        "onprem_break_even_utilization": tco["onprem"]["break_even_utilization"].as_f64(),
        "api_usd_per_request": tco["api"]["usd_per_request"].as_f64(),
        "api_usd_per_1m_output_tokens": tco["api"]["usd_per_1m_output_tokens"].as_f64(),
        "api_usd_per_month": tco["api"]["usd_per_month"].as_f64(),
        "api_break_even_requests_per_day": tco["api"]["break_even_requests_per_day"].as_f64(),
    })
}

/// One case of typed inputs: the cell, the `tcobench tco` flags (each the twin of a calculator
/// field) and the electricity price.
struct Typed<'a> {
    cell: &'a str,
    flags: &'a [(&'a str, &'a str)],
    usd_per_kwh: f64,
}

#[test]
fn calculator_in_chromium_agrees_with_the_tco_cli() {
    let Some((chromium, script)) =
        browser_or_skip("calculator_in_chromium_agrees_with_the_tco_cli")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "priced.yaml", &priced_mock());
    let run = run_cli(dir.path(), &scenario);
    let stats = json(&run.join("stats.json"));
    let costing = &stats["costing"]["cells"];
    let cell_a = costing[1]["cell_id"].as_str().unwrap().to_string();
    let cell_b = costing[2]["cell_id"].as_str().unwrap().to_string();

    let mut cases = Vec::new();

    // 1. As prefilled, for one catalog offer: the figures of the report's own cost table.
    let price = &costing[1]["prices"][3];
    let energy = &costing[1]["energy"];
    let workload = &price["workload"];
    cases.push(json!({
        "name": "prefilled from the run's costing, offer 3",
        "set": [["tco-cell", cell_a], ["tco-offer", "3"]],
        "expect": {
            "usd_per_1m_tokens": price["usd_per_1m_tokens"]["value"],
            "tokens_per_usd": price["tokens_per_usd"]["value"],
            "tokens_per_s": price["instance_tokens_per_s"]["value"],
            "kwh_per_1m_tokens": energy["kwh_per_1m_tokens"]["value"],
            "gco2e_per_1m_tokens": energy["gco2e_per_1m_tokens"]["value"],
            "instances": workload["instances"],
            "utilization": workload["utilization"],
            "usd_per_month": workload["usd_per_month"],
            "kwh_per_month": workload["kwh_per_month"],
            "kgco2e_per_month": workload["kgco2e_per_month"],
            "electricity_usd_per_1m_tokens": null,
        },
    }));

    // 2 and 3. Typed inputs, every output against `tcobench tco` on the same inputs.
    let typed = [
        Typed {
            cell: &cell_a,
            flags: &[
                ("--price-usd-per-hour", "0.61"),
                ("--utilization", "0.35"),
                ("--pue", "1.3"),
                ("--grid-g-per-kwh", "420"),
                ("--requests-per-day", "250000"),
                ("--tokens-per-request", "37"),
                ("--peak-factor", "2.5"),
                ("--capex-usd", "7200"),
                ("--lifetime-years", "3"),
                ("--residual-fraction", "0.15"),
                ("--maintenance-usd-per-hour", "0.04"),
                ("--api-input-usd-per-1m", "0.3"),
                ("--api-output-usd-per-1m", "1.2"),
                ("--input-tokens-per-request", "410"),
            ],
            usd_per_kwh: 0.12,
        },
        Typed {
            cell: &cell_b,
            flags: &[
                ("--price-usd-per-hour", "3.0417"),
                ("--utilization", "0.8"),
                ("--pue", "1.12"),
                ("--grid-g-per-kwh", "35.5"),
                ("--idle-watts", "20"),
                ("--embodied-kg", "1200"),
                ("--lifetime-years", "4"),
                ("--requests-per-day", "3300000"),
                ("--tokens-per-request", "180"),
                ("--peak-factor", "1.7"),
                ("--capex-usd", "25000"),
                ("--api-input-usd-per-1m", "2.5"),
                ("--api-output-usd-per-1m", "10"),
                ("--api-cached-input-usd-per-1m", "0.25"),
                ("--input-tokens-per-request", "900"),
                ("--cached-fraction", "0.4"),
            ],
            usd_per_kwh: 0.0713,
        },
    ];
    // The calculator's field of a `tcobench tco` flag.
    let field = |flag: &str| -> String {
        match flag {
            "--price-usd-per-hour" => "tco-price".into(),
            "--grid-g-per-kwh" => "tco-grid".into(),
            "--api-input-usd-per-1m"
            | "--api-output-usd-per-1m"
            | "--api-cached-input-usd-per-1m" => format!("tco-{}", flag.trim_start_matches("--")),
            other => format!("tco-{}", other.trim_start_matches("--")),
        }
    };
    for (
        i,
        Typed {
            cell,
            flags: inputs,
            usd_per_kwh,
        },
    ) in typed.into_iter().enumerate()
    {
        // On-prem figures need the electricity price, as the calculator's field gives it.
        let kwh = usd_per_kwh.to_string();
        let mut flags: Vec<(&str, &str)> = inputs.to_vec();
        flags.push(("--usd-per-kwh", &kwh));
        let tco = tco_cli(dir.path(), &run, cell, &flags);
        let mut set = vec![
            json!(["tco-cell", cell]),
            json!(["tco-offer", "custom"]),
            json!(["tco-replicas", "1"]),
            json!(["tco-usd-per-kwh", usd_per_kwh.to_string()]),
        ];
        for id in [
            "tco-idle-watts",
            "tco-embodied-kg",
            "tco-lifetime-years",
            "tco-capex-usd",
            "tco-residual-fraction",
            "tco-maintenance-usd-per-hour",
            "tco-api-input-usd-per-1m",
            "tco-api-output-usd-per-1m",
            "tco-api-cached-input-usd-per-1m",
            "tco-cached-fraction",
        ] {
            set.push(json!([id, ""]));
        }
        // `tcobench tco` reads the input tokens as 0 unless given.
        set.push(json!(["tco-input-tokens-per-request", "0"]));
        for (flag, value) in inputs {
            set.push(json!([field(flag), value]));
            // The CLI's one `--lifetime-years` is both the embodied and the on-prem lifetime.
            if *flag == "--lifetime-years" {
                set.push(json!(["tco-onprem-lifetime-years", value]));
            }
        }
        cases.push(json!({
            "name": format!("typed inputs {} = tcobench tco", i + 1),
            "set": set,
            "expect": expected_from_cli(&tco, usd_per_kwh),
            "all_keys": true,
        }));
    }

    // 4. An input out of range: the same message as the CLI's, and no figure that needs it.
    let out = tcobench(
        &[
            "tco",
            "--run",
            run.to_str().unwrap(),
            "--cell",
            &cell_a,
            "--price-usd-per-hour",
            "0.61",
            "--utilization",
            "1.5",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let message = err
        .trim()
        .strip_prefix("error: --utilization: ")
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    cases.push(json!({
        "name": "utilisation out of range",
        "set": [["tco-utilization", "1.5"]],
        "expect": {
            "usd_per_1m_tokens": null,
            "tokens_per_usd": null,
            "kwh_per_1m_tokens": null,
            "gco2e_per_1m_tokens": null,
        },
        "problems": [message],
    }));

    let shots = artefacts();
    check_in_chromium(
        dir.path(),
        &chromium,
        &script,
        json!([{
            "name": "priced mock run",
            "report": run.join("report.html"),
            "screenshot": shots.join("priced-report.png"),
            "calculator_screenshot": shots.join("priced-calculator.png"),
            "cases": cases,
        }]),
    );
    assert!(shots.join("priced-calculator.png").is_file());
    eprintln!("screenshots kept in {}", shots.display());
}

/// Markup in a scenario's name and a model's folder name.
const SCRIPT_TAG: &str = "<script>alert(1)</script>";
const PWN: &str = "<img src=x onerror=\"window.__pwned=1\">";

#[test]
fn markup_from_run_data_stays_text_in_chromium() {
    let Some((chromium, script)) = browser_or_skip("markup_from_run_data_stays_text_in_chromium")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A user model folder whose path holds the markup (the `/` of `</script>` nests a folder).
    let model_rel = format!("m{SCRIPT_TAG} \"q\" 'a'");
    let out = tcobench(
        &[
            "model",
            "build",
            "--size",
            "tiny",
            "--out",
            dir.path().join(&model_rel).to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("{SCRIPT_TAG}{PWN} \"q\" 'a' & co");
    let yaml_quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let scenario = write(
        dir.path(),
        "nasty.yaml",
        &format!(
            "name: {}\nseed: 3\nwarmup: 1\nrepetitions: 3\nmatrix:\n  backend: [mock]\n  model: [{}]\n  batch_size: [1]\n  prompt_tokens: [8]\n  new_tokens: [4]\npower:\n  source: mock\n  mock_watts: 40\n",
            yaml_quote(&name),
            yaml_quote(&model_rel)
        ),
    );
    let run = run_cli(dir.path(), &scenario);
    let html = read(&run.join("report.html"));
    assert!(!html.contains(SCRIPT_TAG) && !html.contains("<img"));

    let shots = artefacts();
    check_in_chromium(
        dir.path(),
        &chromium,
        &script,
        json!([{
            "name": "markup in scenario and model",
            "report": run.join("report.html"),
            "screenshot": shots.join("markup-report.png"),
            "expect_text": [format!("tcobench report: {name}")],
            "option_text": [format!("{SCRIPT_TAG} \"q\" 'a'")],
            "cases": [{
                "name": "calculator runs on the cell",
                "set": [["tco-price", "1.5"]],
                "expect": { "instances": null },
            }],
        }]),
    );
}

/// A run folder whose `requests.parquet` is gone is bad input (exit 2), named once — whether the
/// report re-renders from `stats.json` or has to analyse the run again.
#[test]
fn a_missing_requests_file_is_bad_input_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", MOCK);
    let run = run_scenario(dir.path(), &scenario);
    std::fs::remove_file(run.join("requests.parquet")).unwrap();
    for stats_json in [true, false] {
        if !stats_json {
            std::fs::remove_file(run.join("stats.json")).unwrap();
        }
        let out = tcobench(&["report", run.to_str().unwrap()], dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("requests.parquet"), "{err}");
        assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    }
}
