//! Costs wired into runs: `stats.json` costing, the report's cost section, and `tcobench sweep`
//! checked against `tcobench tco` on the same measurements.

use std::path::{Path, PathBuf};

use serde_json::Value;

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

fn variants_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/variants")
}

/// Runs `text` with the CLI and returns the run folder.
fn run_cli(dir: &Path, text: &str) -> PathBuf {
    run_scenario(dir, &write(dir, "priced.yaml", text))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rel_close(a: f64, b: f64, what: &str) {
    assert!(
        ((a - b) / b).abs() <= 1e-9,
        "{what}: {a} vs {b} (relative {:e})",
        ((a - b) / b).abs()
    );
}

#[test]
fn runs_price_every_cell_and_report_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_cli(dir.path(), &priced_mock());
    let stats = json(&run.join("stats.json"));
    let costing = &stats["costing"];
    assert_eq!(costing["cells"].as_array().unwrap().len(), 4);
    for cell in costing["cells"].as_array().unwrap() {
        let prices = cell["prices"].as_array().unwrap();
        // Two instances × two tiers, each naming its catalog row and version.
        assert_eq!(prices.len(), 4, "{cell:#}");
        for p in prices {
            assert_eq!(p["reference"]["file"], "prices.csv");
            assert!(p["reference"]["key"]
                .as_str()
                .unwrap()
                .starts_with(p["instance"].as_str().unwrap()));
            assert!(!p["reference"]["catalog_version"]
                .as_str()
                .unwrap()
                .is_empty());
            assert!(p["workload"]["instances"].as_u64().unwrap() >= 1);
        }
        // Mock power is a constant 50 W: the implied power (mean J/token × mean tokens/s, a
        // product of means under timing jitter) recovers it closely.
        let e = &cell["energy"];
        let w = e["watts"].as_f64().unwrap();
        assert!((w / 50.0 - 1.0).abs() < 1e-3, "implied watts {w}");
        assert_eq!(e["method"], "mock");
    }
    let pue_ref = &costing["selection"]["pue"]["reference"];
    assert_eq!(pue_ref["file"], "pue.csv");
    assert_eq!(pue_ref["key"], "uptime_2023_average");
    // Two tiers × two models: configurations are ranked only against the same model.
    assert_eq!(costing["recommendations"].as_array().unwrap().len(), 4);

    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("## Cost, energy and carbon"), "{md}");
    assert!(md.contains("**Recommendation per pricing tier and model**"));
    assert!(md.contains("`gcp/t2d-standard-8/us-central1/on_demand`"));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"costing\""));
}

/// The sweep re-prices the same measurements; every figure equals what `tcobench tco` computes
/// from the run for that cell, instance, tier, PUE and grid.
#[test]
fn sweep_totals_equal_per_variant_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_cli(dir.path(), &priced_mock());
    let out = tcobench(
        &[
            "sweep",
            run.to_str().unwrap(),
            "--variants",
            variants_dir().to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep, json(&run.join("sweep.json")));
    assert!(run.join("sweep.md").is_file());
    let variants = sweep["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "grid-high-carbon",
            "grid-low-carbon",
            "tier1-on-demand",
            "tier2-spot",
            "tier3-reserved"
        ]
    );

    let mut checked = 0;
    for v in variants {
        let sel = &v["costing"]["selection"];
        let pue = sel["pue"]["reference"]["key"].as_str().unwrap().to_string();
        // Grid rows are keyed `zone/year`; `--grid-zone` takes the zone (latest year).
        let grid = sel["grid"]["reference"]["key"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        // One cell per variant keeps the number of processes small; all its rows are checked.
        let cell = &v["costing"]["cells"][1];
        let id = cell["cell_id"].as_str().unwrap();
        for p in cell["prices"].as_array().unwrap() {
            let inst: Vec<&str> = p["instance"].as_str().unwrap().split('/').collect();
            let tier = p["tier"].as_str().unwrap();
            let out = tcobench(
                &[
                    "tco",
                    "--run",
                    run.to_str().unwrap(),
                    "--cell",
                    id,
                    "--provider",
                    inst[0],
                    "--instance",
                    inst[1],
                    "--region",
                    inst[2],
                    "--tier",
                    tier,
                    "--pue-preset",
                    &pue,
                    "--grid-zone",
                    &grid,
                    "--json",
                ],
                dir.path(),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let tco: Value = serde_json::from_slice(&out.stdout).unwrap();
            let what = format!("{} {} {tier}", v["name"], p["instance"]);
            rel_close(
                p["usd_per_1m_tokens"]["value"].as_f64().unwrap(),
                tco["usd_per_1m_tokens"].as_f64().unwrap(),
                &format!("{what} $/1M"),
            );
            rel_close(
                p["tokens_per_usd"]["value"].as_f64().unwrap(),
                tco["tokens_per_usd"].as_f64().unwrap(),
                &format!("{what} tokens/$"),
            );
            rel_close(
                cell["energy"]["kwh_per_1m_tokens"]["value"]
                    .as_f64()
                    .unwrap(),
                tco["kwh_per_1m_tokens"].as_f64().unwrap(),
                &format!("{what} kWh/1M"),
            );
            rel_close(
                cell["energy"]["gco2e_per_1m_tokens"]["value"]
                    .as_f64()
                    .unwrap(),
                tco["gco2e_per_1m_tokens"].as_f64().unwrap(),
                &format!("{what} gCO2e/1M"),
            );
            checked += 1;
        }
    }
    // grid variants: 2 instances × 2 tiers each; tier1: 2; tier2: 2; tier3: none priced.
    assert_eq!(checked, 4 + 4 + 2 + 2);
    // The reserved tier has no catalog rows for these instances: said, not guessed.
    let reserved = &variants[4]["costing"]["cells"][0]["unpriced"];
    assert!(reserved[0]["reason"]
        .as_str()
        .unwrap()
        .contains("has no reserved_1y price"));
    // sweep.md says why the reserved variant recommends nothing: nothing could be priced (every
    // cell meets the SLO), one row per tier and model, as wide as the table.
    let md = std::fs::read_to_string(run.join("sweep.md")).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| tier3-reserved |"))
        .collect();
    assert_eq!(rows.len(), 2 * 2, "{md}");
    for row in &rows {
        assert!(
            row.contains("no recommendation: nothing could be priced (catalog "),
            "{row}"
        );
        assert_eq!(row.matches(" | ").count() + 2, 9 + 1, "{row}");
    }
    assert!(
        rows[0].contains(
            "has no reserved\\_1y price for gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1)"
        ),
        "{}",
        rows[0]
    );
    assert!(!md.contains("meets the SLO"), "{md}");
}

#[test]
fn bad_variants_and_selections_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_cli(dir.path(), &priced_mock());
    let vdir = dir.path().join("variants");
    std::fs::create_dir(&vdir).unwrap();
    write(
        &vdir,
        "bad.yaml",
        "name: bad\nenergy:\n  pue: 1.2\n  wattage: 3\n",
    );
    let out = tcobench(
        &[
            "sweep",
            run.to_str().unwrap(),
            "--variants",
            vdir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:4:"), "{err}");
    assert!(err.contains("wattage"), "{err}");

    write(&vdir, "bad.yaml", "name: bad\nenergy:\n  grid: atlantis\n");
    let out = tcobench(
        &[
            "sweep",
            run.to_str().unwrap(),
            "--variants",
            vdir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("energy.grid") && err.contains("atlantis"),
        "{err}"
    );

    // An unknown instance in a scenario stops `plan` before any work, at its line and column.
    let text = priced_mock().replace("aws/m8i.4xlarge/us-east-1", "aws/m9.huge/us-east-1");
    let scenario = write(dir.path(), "unknown.yaml", &text);
    let out = tcobench(&["plan", scenario.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown.yaml:16:"), "{err}");
    assert!(err.contains("pricing.instances[1]"), "{err}");
    assert!(err.contains("aws/m9.huge/us-east-1"), "{err}");
}
