//! `tcobench catalog …` and `tcobench tco` end to end: the shipped catalog, SkyPilot import on a
//! fixture of real rows, overlays, validation errors, diff, and the calculator against
//! hand-computed values.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::{tcobench, write};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn shipped_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).expect("stdout is JSON")
}

fn bad_input(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

fn close(v: &Value, pointer: &str, want: f64) {
    let got = num(v, pointer);
    assert!(
        (got - want).abs() <= 1e-9 * want.abs(),
        "{pointer}: {got} vs {want}"
    );
}

/// Copies the shipped catalog into `dir`.
fn copy_catalog(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(shipped_catalog()).unwrap() {
        let e = e.unwrap();
        if e.path().extension().is_some_and(|x| x == "csv") || e.file_name() == "VERSION" {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn list_filters_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(&tcobench(
        &["catalog", "list", "--gpu", "t4", "--tier", "spot", "--json"],
        dir.path(),
    ));
    let rows = v["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["accelerator"], "T4");
        assert_eq!(r["tier"], "spot");
        assert!(r["usd_per_hour"].as_f64().unwrap() > 0.0);
        assert!(r["source"].as_str().unwrap().contains("skypilot-catalog"));
    }
    assert_eq!(v["catalog"]["sources"][0], "builtin");
    assert_eq!(v["catalog"]["sha256"].as_str().unwrap().len(), 64);

    let text = ok(&tcobench(
        &["catalog", "list", "--provider", "aws", "--gpu", "none"],
        dir.path(),
    ));
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("PROVIDER  INSTANCE"), "{text}");
    assert!(text.contains("m8i.4xlarge"), "{text}");
    assert!(!text.contains("g4dn"), "{text}");
    // Columns are aligned: every data row has the tier at the same offset as the header.
    let tier_at = first.find("TIER").unwrap();
    for l in text.lines().skip(1).filter(|l| l.starts_with("aws")) {
        assert!(
            l[tier_at..].starts_with("on_demand") || l[tier_at..].starts_with("spot"),
            "{l}"
        );
    }

    let e = bad_input(&tcobench(
        &["catalog", "list", "--tier", "monthly"],
        dir.path(),
    ));
    assert!(e.contains("--tier `monthly` is not a tier"), "{e}");
}

#[test]
fn show_names_prices_sources_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let text = ok(&tcobench(
        &["catalog", "show", "aws/g4dn.xlarge/us-east-1"],
        dir.path(),
    ));
    assert!(text.contains("aws/g4dn.xlarge/us-east-1"), "{text}");
    assert!(text.contains("1× T4"), "{text}");
    assert!(text.contains("on_demand"), "{text}");
    assert!(text.contains("0.5260 $/h"), "{text}");
    assert!(text.contains("retrieved 2026-11-23"), "{text}");
    assert!(
        text.contains("source: skypilot-org/skypilot-catalog@"),
        "{text}"
    );
    let v = json(&tcobench(
        &["catalog", "show", "g4dn.xlarge", "--json"],
        dir.path(),
    ));
    assert!(v["instances"].as_array().unwrap().len() >= 2);
    assert_eq!(v["instances"][0]["accelerator"]["tdp_w"], 70.0);
    let e = bad_input(&tcobench(&["catalog", "show", "g4dn"], dir.path()));
    assert!(e.contains("similar: aws/g4dn.xlarge"), "{e}");
}

#[test]
fn skypilot_import_on_a_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("skypilot_aws_vms.csv");
    let args = [
        "catalog",
        "import",
        "--skypilot",
        f.to_str().unwrap(),
        "--retrieved",
        "2026-11-23",
        "--source",
        "fixture",
    ];
    let o = tcobench(&args, dir.path());
    let text = ok(&o);
    // Inferred provider, zones grouped per region: on-demand as listed, spot = lowest zone.
    assert!(
        text.contains("# instances.csv\nprovider,instance_type,region,"),
        "{text}"
    );
    assert!(
        text.contains("aws,g4dn.xlarge,us-east-1,T4,1,16,4,16,x86_64,"),
        "{text}"
    );
    assert!(text.contains("aws,g4dn.xlarge,us-east-1,on_demand,0.526,,2026-11-23,fixture,,"));
    assert!(text.contains("aws,g4dn.xlarge,us-east-1,spot,0.2,,2026-11-23,fixture,,"));
    assert!(text.contains("aws,p5.4xlarge,us-east-1,on_demand,6.88,"));
    assert!(
        !text.contains("p5.4xlarge,us-east-1,spot"),
        "no spot price listed"
    );
    assert!(text.contains("aws,m8i.4xlarge,us-east-1,,,,16,64,x86_64,"));
    assert!(text.contains("aws,m8i.4xlarge,us-east-1,spot,0.3868,"));
    // The H200 row has no on-demand price: skipped, said so, nothing invented.
    assert!(!text.contains("p5e.48xlarge"));
    assert!(
        stderr(&o).contains("skipped: line 5: p5e.48xlarge use2-az1"),
        "{}",
        stderr(&o)
    );

    // --out writes files that load as an overlay on the shipped catalog.
    let out = dir.path().join("imported");
    let mut with_out = args.to_vec();
    with_out.extend(["--out", out.to_str().unwrap()]);
    ok(&tcobench(&with_out, dir.path()));
    assert!(out.join("instances.csv").is_file() && out.join("prices.csv").is_file());
    let v = json(&tcobench(
        &[
            "catalog",
            "list",
            "--overlay",
            out.to_str().unwrap(),
            "--provider",
            "aws",
            "--region",
            "us-east-1",
            "--gpu",
            "T4",
            "--json",
        ],
        dir.path(),
    ));
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["source"] == "fixture"), "{v:#}");
    assert!(v["catalog"]["version"]
        .as_str()
        .unwrap()
        .ends_with("+overlay"));

    let e = bad_input(&tcobench(
        &["catalog", "import", "--skypilot", "missing.csv"],
        dir.path(),
    ));
    assert!(e.contains("missing.csv"), "{e}");
    let not_sky = write(dir.path(), "x.csv", "a,b\n1,2\n");
    let e = bad_input(&tcobench(
        &["catalog", "import", "--skypilot", not_sky.to_str().unwrap()],
        dir.path(),
    ));
    assert!(e.contains("column `InstanceType` is missing"), "{e}");
}

#[test]
fn overlay_precedence_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ov = dir.path().join("overlay");
    std::fs::create_dir_all(&ov).unwrap();
    write(
        &ov,
        "prices.csv",
        "provider,instance_type,region,tier,usd_per_hour,effective_date,retrieved,source,spot_above_on_demand_ok,notes\n\
         aws,g4dn.xlarge,us-east-1,on_demand,0.4,,2026-11-01,negotiated,,\n\
         aws,g4dn.xlarge,*,reserved_1y,0.3,,2026-11-01,negotiated,,\n",
    );
    let base = |region: &str, tier: &str| {
        json(&tcobench(
            &[
                "tco",
                "--tokens-per-s",
                "100",
                "--instance",
                "g4dn.xlarge",
                "--region",
                region,
                "--tier",
                tier,
                "--overlay",
                ov.to_str().unwrap(),
                "--json",
            ],
            dir.path(),
        ))
    };
    // Same key: the overlay replaces the shipped on-demand price.
    let v = base("us-east-1", "on_demand");
    close(&v, "/inputs/price_usd_per_hour", 0.4);
    assert_eq!(
        v["references"]["price"]["key"],
        "aws/g4dn.xlarge/us-east-1/on_demand"
    );
    assert_eq!(v["references"]["price"]["overlay"], true);
    // Untouched region keeps the shipped price.
    let v = base("eu-west-1", "on_demand");
    close(&v, "/inputs/price_usd_per_hour", 0.587);
    assert_eq!(v["references"]["price"]["overlay"], false);
    // `*` fills a tier no region has.
    let v = base("eu-west-1", "reserved_1y");
    close(&v, "/inputs/price_usd_per_hour", 0.3);
    assert_eq!(
        v["references"]["price"]["key"],
        "aws/g4dn.xlarge/*/reserved_1y"
    );
}

#[test]
fn invalid_catalog_names_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat");
    copy_catalog(&cat);
    let prices = cat.join("prices.csv");
    let mut text = std::fs::read_to_string(&prices).unwrap();
    let lines = text.lines().count();
    text.push_str("aws,g4dn.xlarge,us-east-1,reserved_1y,-1,,2026-11-23,me,,\n");
    std::fs::write(&prices, text).unwrap();
    let e = bad_input(&tcobench(
        &["catalog", "list", "--catalog-dir", cat.to_str().unwrap()],
        dir.path(),
    ));
    let want = format!(
        "prices.csv:{}: column `usd_per_hour` [aws/g4dn.xlarge/us-east-1/reserved_1y]: must be > 0, got -1",
        lines + 1
    );
    assert!(e.contains(&want), "{e}");

    // Stale rows warn but do not fail.
    let o = tcobench(
        &["catalog", "list", "--today", "2028-01-01", "--gpu", "H200"],
        dir.path(),
    );
    ok(&o);
    assert!(
        stderr(&o).contains("warning: stale catalog row"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("older than 180 days"));
}

#[test]
fn diff_shows_price_changes_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    copy_catalog(&old);
    copy_catalog(&new);
    let p = new.join("prices.csv");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(
            "aws,g4dn.xlarge,us-east-1,on_demand,0.526,,2026-11-23",
            "aws,g4dn.xlarge,us-east-1,on_demand,0.5786,,2026-12-01",
        )
        .lines()
        .filter(|l| !l.starts_with("aws,p5.4xlarge,us-west-2,"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&p, text).unwrap();
    let out = ok(&tcobench(
        &[
            "catalog",
            "diff",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
        dir.path(),
    ));
    // (0.5786 − 0.526)/0.526 = +10.00 %
    assert!(
        out.contains("~ aws/g4dn.xlarge/us-east-1/on_demand  0.5260 → 0.5786 $/h  (+10.00%)  retrieved 2026-11-23 → 2026-12-01"),
        "{out}"
    );
    assert!(
        out.contains("- prices.csv: aws/p5.4xlarge/us-west-2/on_demand"),
        "{out}"
    );
    let v = json(&tcobench(
        &[
            "catalog",
            "diff",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    ));
    close(
        &v,
        "/price_changes/0/change_pct",
        100.0 * (0.5786 - 0.526) / 0.526,
    );
    let same = ok(&tcobench(
        &["catalog", "diff", "builtin", old.to_str().unwrap()],
        dir.path(),
    ));
    assert!(same.contains("no differences"), "{same}");
}

#[test]
fn tco_json_matches_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(&tcobench(
        &[
            "tco",
            "--tokens-per-s",
            "1000",
            "--price-usd-per-hour",
            "3.6",
            "--utilization",
            "0.5",
            "--watts",
            "300",
            "--pue",
            "1.2",
            "--grid-g-per-kwh",
            "400",
            "--requests-per-day",
            "864000",
            "--tokens-per-request",
            "100",
            "--peak-factor",
            "2.5",
            "--json",
        ],
        dir.path(),
    ));
    // $/1M = 3.6·1e6/(3600·1000·0.5) = 2
    close(&v, "/usd_per_1m_tokens", 2.0);
    // tokens/$ = 3600·1000·0.5/3.6 = 500000
    close(&v, "/tokens_per_usd", 500_000.0);
    // kWh/1M = 300·1.2·1e6/(3600·1000·1000) = 0.1 (no idle watts given)
    close(&v, "/kwh_per_1m_tokens", 0.1);
    // g/1M = 0.1·400 = 40
    close(&v, "/gco2e_per_1m_tokens", 40.0);
    // avg = 864000·100/86400 = 1000 tok/s, peak 2500 → ceil(2500/1000) = 3 instances, U = 1/3
    assert_eq!(v["instances"], 3);
    close(&v, "/utilization", 1.0 / 3.0);
    // $/month = 3·3.6·730 = 7884
    close(&v, "/usd_per_month", 7884.0);
    // kWh/month = 3·300·1.2·730/1000 = 788.4 (idle draws W); kg = 788.4·400/1000 = 315.36
    close(&v, "/kwh_per_month", 788.4);
    close(&v, "/kgco2e_per_month", 315.36);
}

#[test]
fn tco_from_the_catalog_with_onprem_and_api() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(&tcobench(
        &[
            "tco",
            "--tokens-per-s",
            "2000",
            "--instance",
            "p5.4xlarge",
            "--region",
            "us-east-1",
            "--watts",
            "700",
            "--pue-preset",
            "uptime_2023_average",
            "--grid-zone",
            "gcp:us-east4",
            "--capex-usd",
            "43800",
            "--lifetime-years",
            "5",
            "--usd-per-kwh",
            "0.1",
            "--api-input-usd-per-1m",
            "1",
            "--api-output-usd-per-1m",
            "4",
            "--tokens-per-request",
            "500",
            "--input-tokens-per-request",
            "1000",
            "--json",
        ],
        dir.path(),
    ));
    // 6.88·1e6/(3600·2000) = 0.95555…
    close(&v, "/usd_per_1m_tokens", 6.88e6 / 7.2e6);
    assert_eq!(
        v["references"]["price"]["key"],
        "aws/p5.4xlarge/us-east-1/on_demand"
    );
    assert!(v["references"]["price"]["catalog_version"]
        .as_str()
        .unwrap()
        .starts_with("2026."));
    assert_eq!(v["references"]["pue"]["key"], "uptime_2023_average");
    assert_eq!(v["references"]["grid"]["key"], "gcp:us-east4/2024");
    // kWh/1M = 700·1.58·1e6/(3600·2000·1000) = 0.153611…; g = ·323.05
    let kwh = 700.0 * 1.58 * 1e6 / (3600.0 * 2000.0 * 1000.0);
    close(&v, "/kwh_per_1m_tokens", kwh);
    close(&v, "/gco2e_per_1m_tokens", kwh * 323.05);
    // on-prem $/h = 43800/(5·8760) + 700·1.58·0.1/1000 = 1 + 0.1106 = 1.1106
    close(&v, "/onprem/usd_per_hour", 1.1106);
    // break-even: capex 43800 / (6.88·730 − 0.1106·730) = 43800/4941.662
    close(
        &v,
        "/onprem/break_even_months",
        43_800.0 / ((6.88 - 0.1106) * 730.0),
    );
    // API $/request = (1000·1 + 500·4)/1e6 = 0.003; per 1M output = 6; R* = 6.88·24/0.003 = 55040
    close(&v, "/api/usd_per_request", 0.003);
    close(&v, "/api/usd_per_1m_output_tokens", 6.0);
    close(&v, "/api/break_even_requests_per_day", 55_040.0);
}

#[test]
fn tco_from_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    write(
        &run,
        "stats.json",
        r#"{"cells": [
            {"cell_id": "aaaa1111", "metrics": {"tokens_per_s": {"mean": 400.0}, "energy_j_per_token": {"mean": 0.5}}},
            {"cell_id": "bbbb2222", "metrics": {"tokens_per_s": {"mean": 800.0}}}
        ]}"#,
    );
    let r = run.to_str().unwrap();
    let v = json(&tcobench(
        &[
            "tco",
            "--run",
            r,
            "--cell",
            "aaaa",
            "--price-usd-per-hour",
            "1.44",
            "--json",
        ],
        dir.path(),
    ));
    // T = 400, W = 0.5 J/token · 400 tok/s = 200 W
    close(&v, "/inputs/tokens_per_s", 400.0);
    close(&v, "/inputs/watts", 200.0);
    // $/1M = 1.44e6/(3600·400) = 1; kWh/1M = 200·1e6/(3600·400·1000) = 0.13888…
    close(&v, "/usd_per_1m_tokens", 1.0);
    close(&v, "/kwh_per_1m_tokens", 200.0e6 / 1.44e9);
    // No energy measured in cell b: energy figures are null with a reason.
    let v = json(&tcobench(
        &[
            "tco",
            "--run",
            r,
            "--cell",
            "bbbb",
            "--price-usd-per-hour",
            "1",
            "--json",
        ],
        dir.path(),
    ));
    assert!(v["kwh_per_1m_tokens"].is_null());
    assert!(v["unavailable"]["kwh_per_1m_tokens"]
        .as_str()
        .unwrap()
        .contains("--watts"));
    // Two cells and no --cell: ambiguous.
    let e = bad_input(&tcobench(
        &["tco", "--run", r, "--price-usd-per-hour", "1"],
        dir.path(),
    ));
    assert!(e.contains("2 cells match; pick one with --cell"), "{e}");
    // Measured energy plus --watts contradicts.
    let e = bad_input(&tcobench(
        &[
            "tco",
            "--run",
            r,
            "--cell",
            "aaaa",
            "--price-usd-per-hour",
            "1",
            "--watts",
            "100",
        ],
        dir.path(),
    ));
    assert!(e.contains("contradicts"), "{e}");
}

#[test]
fn tco_bad_inputs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| bad_input(&tcobench(args, dir.path()));
    let e = run(&["tco", "--price-usd-per-hour", "1"]);
    assert!(e.contains("missing throughput"), "{e}");
    let e = run(&["tco", "--tokens-per-s", "10"]);
    assert!(e.contains("missing price"), "{e}");
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--utilization",
        "1.5",
    ]);
    assert!(
        e.contains("--utilization: utilization = 1.5: must be in (0, 1]"),
        "{e}"
    );
    let e = run(&["tco", "--tokens-per-s=-3", "--price-usd-per-hour", "1"]);
    assert!(e.contains("tokens_per_s = -3"), "{e}");
    // Contradictory: a manual price and a catalog instance (clap rejects it, exit 2).
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--instance",
        "g4dn.xlarge",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--grid-g-per-kwh",
        "1",
        "--grid-zone",
        "x",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = run(&["tco", "--tokens-per-s", "10", "--instance", "g4dn.xlarge"]);
    assert!(e.contains("ambiguous") && e.contains("--region"), "{e}");
    let e = run(&["tco", "--tokens-per-s", "10", "--instance", "nope.large"]);
    assert!(
        e.contains("`nope.large` is not in the pricing catalog"),
        "{e}"
    );
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--grid-zone",
        "mars",
    ]);
    assert!(e.contains("grid zone `mars`"), "{e}");
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--capex-usd",
        "100",
        "--lifetime-years",
        "3",
    ]);
    assert!(e.contains("needs the power"), "{e}");
    let e = run(&[
        "tco",
        "--tokens-per-s",
        "10",
        "--price-usd-per-hour",
        "1",
        "--requests-per-day",
        "10",
    ]);
    assert!(e.contains("--tokens-per-request"), "{e}");
    let e = run(&["tco", "--run", "/no/such/run", "--price-usd-per-hour", "1"]);
    assert!(e.contains("stats.json"), "{e}");
}

#[test]
fn tco_from_a_run_charges_idle_time_at_its_measured_idle_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    write(
        &run,
        "stats.json",
        r#"{"cells": [{"cell_id": "aaaa1111", "energy_method": "rapl",
            "metrics": {"tokens_per_s": {"mean": 400.0}, "energy_j_per_token": {"mean": 0.5}}}]}"#,
    );
    let manifest = |method: &str| {
        format!(
            r#"{{"power": {{"idle_baseline": {{"watts": 50.0, "window": {{"method": "{method}"}}}}}}}}"#
        )
    };
    write(&run, "manifest.json", &manifest("rapl"));
    let r = run.to_str().unwrap();
    let tco = |extra: &[&str]| {
        let mut args = vec![
            "tco",
            "--run",
            r,
            "--price-usd-per-hour",
            "1",
            "--utilization",
            "0.25",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&tcobench(&args, dir.path()))
    };
    // W = 200, idle 50, T = 400, U = 1/4: kWh/1M = [200·1e6/400 + 50·1e6·(3/4)/(400/4)] / 3.6e6
    //   = (500 000 + 375 000) / 3.6e6.
    let v = tco(&[]);
    close(&v, "/inputs/idle_watts", 50.0);
    close(&v, "/kwh_per_1m_tokens", 875_000.0 / 3.6e6);
    assert!(v.to_string().contains("measured idle baseline"), "{v}");
    // The command line's figure wins.
    let v = tco(&["--idle-watts", "10"]);
    close(&v, "/kwh_per_1m_tokens", (500_000.0 + 75_000.0) / 3.6e6);
    // A baseline measured by another method is not this cell's idle power: none is charged.
    write(&run, "manifest.json", &manifest("cpu_estimate"));
    let v = tco(&[]);
    assert!(v["inputs"]["idle_watts"].is_null(), "{v}");
    close(&v, "/kwh_per_1m_tokens", 500_000.0 / 3.6e6);
}
