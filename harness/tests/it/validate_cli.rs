//! `tcobench validate RUN_DIR`: a mock run passes every check; copies of its manifest and
//! statistics, tampered one figure at a time, trip the check that names the problem.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tcobench_results::io;
use tcobench_results::schema::files;

use crate::common::{tcobench, write, MOCK};

/// The mock scenario with a CPU TDP to check against and two pricing tiers to compare.
fn scenario() -> String {
    format!(
        "{MOCK}  cpu_tdp_w: 65\npricing:\n  instances: [aws/m8i.4xlarge/us-east-1]\n  tiers: [on_demand, spot]\n"
    )
}

/// Runs the scenario in `dir` and returns the run folder.
fn mock_run(dir: &Path) -> PathBuf {
    let s = write(dir, "s.yaml", &scenario());
    let out = tcobench(
        &["run", s.to_str().unwrap(), "--out", "res", "--no-log"],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    dir.join(stdout.lines().last().unwrap())
}

/// Copies a whole run folder (manifest, statistics, data files, cells) into `dir/name`.
fn copy_run(run: &Path, dir: &Path, name: &str) -> PathBuf {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let to = dir.join(name);
    copy_dir(run, &to);
    to
}

fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn validate(run: &Path, cwd: &Path) -> (Option<i32>, Value) {
    let o = tcobench(&["validate", run.to_str().unwrap(), "--json"], cwd);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), v)
}

/// (check, cell) of every finding.
fn findings(v: &Value) -> Vec<(String, Option<String>)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["cell_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn cell_id(run: &Path, i: usize) -> String {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join(files::MANIFEST)).unwrap()).unwrap();
    m["cells"][i]["cell_id"].as_str().unwrap().to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_good_mock_run_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let o = tcobench(&["validate", run.to_str().unwrap()], dir.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.trim_end().ends_with(" checks passed"), "{stdout}");

    let (code, v) = validate(&run, dir.path());
    assert_eq!(code, Some(0));
    assert!(findings(&v).is_empty(), "{v:#}");
    // 4 cells × (throughput, window, energy min, power, floor, ceiling) + per price (row,
    // tokens per $) × 2 tiers + the tier ratio and order + the PUE reference + the data files:
    // requests, power and run_power.parquet of the run, requests and power.parquet of each cell.
    assert_eq!(
        v["checks"],
        4 * 6 + 4 * (2 * 2 + 2) + 1 + 3 + 4 * 2,
        "{v:#}"
    );
    assert_eq!(v["passed"], v["checks"]);
    assert!(v["notes"].as_array().unwrap().is_empty(), "{v:#}");
}

#[test]
fn power_above_the_cpu_tdp_is_implausible() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    // The mock source draws 50 W; a 10 W CPU cannot have.
    let bad = copy_run(&run, dir.path(), "low-tdp");
    edit(&bad.join(files::MANIFEST), |m| {
        m["power"]["notes"]["tdp_w"] = "10".into();
    });
    let (code, v) = validate(&bad, dir.path());
    assert_eq!(code, Some(3), "{v:#}");
    let f = findings(&v);
    assert_eq!(f.len(), 4, "{v:#}");
    assert!(f.iter().all(|(c, _)| c == "power_within_limit"), "{v:#}");
    let first = &v["findings"][0];
    assert_eq!(first["values"]["limit_watts"], 10.0);
    assert!(first["values"]["implied_watts"].as_f64().unwrap() > 45.0);
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("power.notes.tdp_w"),
        "{first:#}"
    );

    // Text mode names the check and the cell, and exits 3 too.
    let o = tcobench(&["validate", bad.to_str().unwrap()], dir.path());
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout.contains(&format!(
            "IMPLAUSIBLE power_within_limit [{}]",
            cell_id(&run, 0)
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 of ") && stdout.contains("checks found something implausible"),
        "{stdout}"
    );

    // A negative energy means a non-positive power, whatever the limit.
    let neg = copy_run(&run, dir.path(), "negative");
    edit(&neg.join(files::STATS), |s| {
        s["cells"][1]["metrics"]["energy_j_per_token"]["mean"] = (-0.01).into();
    });
    let (code, v) = validate(&neg, dir.path());
    assert_eq!(code, Some(3));
    let f = findings(&v);
    let one = Some(cell_id(&run, 1));
    assert!(
        f.contains(&("power_within_limit".into(), one.clone())),
        "{v:#}"
    );
    assert!(f.contains(&("energy_per_token_floor".into(), one)), "{v:#}");
}

#[test]
fn energy_below_the_floor_or_above_the_ceiling_is_implausible() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let bad = copy_run(&run, dir.path(), "floor");
    // tiny has ~1.25e5 parameters: the floor is 2 · 1.25e5 / 5e12 = 5e-8 J/token.
    edit(&bad.join(files::STATS), |s| {
        s["cells"][0]["metrics"]["energy_j_per_token"]["mean"] = 1e-9.into();
        s["cells"][2]["metrics"]["energy_j_per_token"]["mean"] = 500.0.into();
    });
    let (code, v) = validate(&bad, dir.path());
    assert_eq!(code, Some(3));
    let f = findings(&v);
    assert!(
        f.contains(&("energy_per_token_floor".into(), Some(cell_id(&run, 0)))),
        "{v:#}"
    );
    assert!(
        f.contains(&("energy_per_token_ceiling".into(), Some(cell_id(&run, 2)))),
        "{v:#}"
    );
    let floor = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "energy_per_token_floor")
        .unwrap();
    let want = 2.0
        * tcobench_backends::BuiltinModel::Tiny
            .config()
            .parameter_count() as f64
        / 5e12;
    let got = floor["values"]["floor_j_per_token"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
}

#[test]
fn throughput_that_does_not_match_latency_is_implausible() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let bad = copy_run(&run, dir.path(), "latency");
    edit(&bad.join(files::STATS), |s| {
        let e2e = &mut s["cells"][3]["metrics"]["e2e_ms"]["mean"];
        *e2e = (e2e.as_f64().unwrap() * 1.2).into();
    });
    let (code, v) = validate(&bad, dir.path());
    assert_eq!(code, Some(3));
    assert_eq!(
        findings(&v),
        vec![("throughput_latency".to_string(), Some(cell_id(&run, 3)))],
        "{v:#}"
    );
}

#[test]
fn an_inconsistent_tier_ratio_is_implausible() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let bad = copy_run(&run, dir.path(), "ratio");
    edit(&bad.join(files::STATS), |s| {
        let spot = &mut s["costing"]["cells"][1]["prices"][1];
        assert_eq!(spot["tier"], "spot");
        let usd = spot["usd_per_1m_tokens"]["value"].as_f64().unwrap();
        // Keep $/1M × tokens/$ = 10⁶ so only the ratio is off.
        spot["usd_per_1m_tokens"]["value"] = (usd * 1.001).into();
        spot["tokens_per_usd"]["value"] = (1e6 / (usd * 1.001)).into();
    });
    let (code, v) = validate(&bad, dir.path());
    assert_eq!(code, Some(3));
    assert_eq!(
        findings(&v),
        vec![("tier_price_ratio".to_string(), Some(cell_id(&run, 1)))],
        "{v:#}"
    );

    // Spot dearer than on-demand (prices and costs scaled together): the order check.
    let dear = copy_run(&run, dir.path(), "order");
    edit(&dear.join(files::STATS), |s| {
        let spot = &mut s["costing"]["cells"][0]["prices"][1];
        for (key, factor) in [("usd_per_1m_tokens", 10.0), ("tokens_per_usd", 0.1)] {
            let x = spot[key]["value"].as_f64().unwrap();
            spot[key]["value"] = (x * factor).into();
        }
        let p = spot["usd_per_hour"].as_f64().unwrap();
        spot["usd_per_hour"] = (p * 10.0).into();
    });
    let (code, v) = validate(&dear, dir.path());
    assert_eq!(code, Some(3));
    let f = findings(&v);
    assert!(
        f.contains(&("tier_order".into(), Some(cell_id(&run, 0)))),
        "{v:#}"
    );
    // The price no longer matches its catalog row either.
    assert!(
        f.contains(&("catalog_reference".into(), Some(cell_id(&run, 0)))),
        "{v:#}"
    );

    // $/1M tokens × tokens per $ must be 10⁶.
    let product = copy_run(&run, dir.path(), "product");
    edit(&product.join(files::STATS), |s| {
        s["costing"]["cells"][2]["prices"][0]["tokens_per_usd"]["value"] = 1.0.into();
    });
    let (_, v) = validate(&product, dir.path());
    assert_eq!(
        findings(&v),
        vec![("tokens_per_usd".to_string(), Some(cell_id(&run, 2)))],
        "{v:#}"
    );
}

#[test]
fn a_missing_catalog_reference_is_implausible() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let bad = copy_run(&run, dir.path(), "noref");
    edit(&bad.join(files::STATS), |s| {
        s["costing"]["cells"][0]["prices"][0]["reference"]["key"] = "".into();
        s["costing"]["cells"][3]["prices"][1]["reference"]["key"] =
            "aws/m8i.4xlarge/nowhere-1/spot".into();
    });
    let (code, v) = validate(&bad, dir.path());
    assert_eq!(code, Some(3));
    assert_eq!(
        findings(&v),
        vec![
            ("catalog_reference".to_string(), Some(cell_id(&run, 0))),
            ("catalog_reference".to_string(), Some(cell_id(&run, 3))),
        ],
        "{v:#}"
    );
    let msgs: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(msgs[0].contains("names no catalog row"), "{msgs:?}");
    assert!(msgs[1].contains("is not in catalog"), "{msgs:?}");
}

#[test]
fn missing_or_malformed_inputs_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let no_stats = copy_run(&run, dir.path(), "no-stats");
    std::fs::remove_file(no_stats.join(files::STATS)).unwrap();
    let o = tcobench(&["validate", no_stats.to_str().unwrap()], dir.path());
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stats.json: not found"), "{stderr}");

    let broken = copy_run(&run, dir.path(), "broken");
    std::fs::write(broken.join(files::MANIFEST), "{ not json").unwrap();
    let o = tcobench(&["validate", broken.to_str().unwrap()], dir.path());
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("manifest.json"), "{stderr}");

    let o = tcobench(&["validate", "no-such-run"], dir.path());
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-run/manifest.json"), "{stderr}");
}

/// The data files `analyze` reads must be there and intact: a removed, truncated or altered
/// Parquet file fails `validate` with exit 3 naming the file, as `analyze` fails on it.
#[test]
fn a_missing_or_damaged_data_file_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path());
    let data_findings = |v: &Value| -> Vec<(Option<String>, String)> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "data_file")
            .map(|f| {
                (
                    f["cell_id"].as_str().map(str::to_string),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    // requests.parquet removed: validate fails on it, and so does analyze.
    let gone = copy_run(&run, dir.path(), "no-requests");
    std::fs::remove_file(gone.join(files::REQUESTS)).unwrap();
    let (code, v) = validate(&gone, dir.path());
    assert_eq!(code, Some(3), "{v:#}");
    let f = data_findings(&v);
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0].0, None);
    let path = gone.join(files::REQUESTS).display().to_string();
    assert!(f[0].1.starts_with(&format!("{path}: missing")), "{f:?}");
    assert!(f[0].1.contains("requests.parquet.sha256 is there"), "{f:?}");
    let o = tcobench(&["validate", gone.to_str().unwrap()], dir.path());
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!("FAILED data_file: {path}: missing")),
        "{stdout}"
    );
    assert!(!stdout.contains("checks passed"), "{stdout}");
    let o = tcobench(&["analyze", gone.to_str().unwrap()], dir.path());
    assert!(!o.status.success());

    // Truncated requests.parquet and power.parquet: the checksum names each.
    let cut = copy_run(&run, dir.path(), "truncated");
    for name in [files::REQUESTS, files::POWER] {
        let p = cut.join(name);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    }
    let (code, v) = validate(&cut, dir.path());
    assert_eq!(code, Some(3), "{v:#}");
    let f = data_findings(&v);
    assert_eq!(f.len(), 2, "{v:#}");
    for (finding, name) in f.iter().zip([files::REQUESTS, files::POWER]) {
        let path = cut.join(name).display().to_string();
        assert!(
            finding
                .1
                .starts_with(&format!("{path}: corrupt file: its SHA-256 is")),
            "{finding:?}"
        );
    }
    let o = tcobench(&["analyze", cut.to_str().unwrap()], dir.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("corrupt file"));

    // One byte changed in a cell's own file (same length): its cell is named.
    let flip = copy_run(&run, dir.path(), "flipped");
    let id = cell_id(&run, 2);
    let p = flip.join(files::CELLS).join(&id).join(files::POWER);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let (code, v) = validate(&flip, dir.path());
    assert_eq!(code, Some(3), "{v:#}");
    let f = data_findings(&v);
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0].0.as_deref(), Some(id.as_str()));
    assert!(f[0].1.contains(&p.display().to_string()), "{f:?}");

    // A committed cell's folder gone while the manifest says ok.
    let nocell = copy_run(&run, dir.path(), "no-cell");
    let id = cell_id(&run, 1);
    std::fs::remove_dir_all(nocell.join(files::CELLS).join(&id)).unwrap();
    let (code, v) = validate(&nocell, dir.path());
    assert_eq!(code, Some(3), "{v:#}");
    let f = data_findings(&v);
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0].0.as_deref(), Some(id.as_str()));
    assert!(f[0].1.contains("records cell"), "{f:?}");

    // A file written by another tool (no sidecar) that decodes passes, with a note.
    let plain = copy_run(&run, dir.path(), "no-sidecar");
    std::fs::remove_file(io::checksum_path(&plain.join(files::POWER))).unwrap();
    let (code, v) = validate(&plain, dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    let notes = v["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("power.parquet has no power.parquet.sha256")),
        "{v:#}"
    );
}
