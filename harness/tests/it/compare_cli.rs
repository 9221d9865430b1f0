//! `tcobench compare` and `tcobench export`, end to end through the binary, on synthetic run
//! folders with noise and real shifts (mock runs have zero variance, so they are built here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tcobench_results::io::{requests_frame, write_parquet};
use tcobench_results::schema::{
    files, CellOutcome, CellRecord, HostInfo, Manifest, PowerInfo, RequestRecord, SCHEMA_VERSION,
};
use tcobench_results::CellConfig;

/// A cell of a synthetic run: model name (distinct per cell) and tokens/s values; `None` = failed.
struct Synth {
    model: &'static str,
    tps: Option<Vec<f64>>,
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

fn label(model: &str) -> String {
    format!("mock/{model}/f32/cpu/b2/p16/n8")
}

/// Writes `manifest.json` + `requests.parquet` for `cells` under `dir/run_id` and returns the
/// folder. Every cell: batch 2, 16 prompt tokens, 8 new tokens; one warm-up request with an absurd
/// value (must be excluded). Energy is measured only when `energy`.
fn write_run(dir: &Path, run_id: &str, cells: &[Synth], energy: bool) -> PathBuf {
    let run_dir = dir.join(run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let method = if energy { "mock" } else { "none" };
    let records: Vec<CellRecord> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| CellRecord {
            // Real ids hash the configuration with the seed: differ between runs.
            cell_id: format!("{}-{run_id}", c.model),
            index: i,
            config: CellConfig {
                backend: "mock".into(),
                model: c.model.into(),
                device: "cpu".into(),
                dtype: "f32".into(),
                batch_size: 2,
                prompt_tokens: 16,
                new_tokens: 8,
            },
            warmup: 1,
            repetitions: c.tps.as_ref().map_or(4, |v| v.len() as u32),
            status: if c.tps.is_some() {
                CellOutcome::Ok
            } else {
                CellOutcome::Failed
            },
            error: c.tps.is_none().then(|| "out of memory".to_string()),
            peak_rss_bytes: Some(1 << 20),
            gpu_mem_bytes: None,
            energy_method: Some(method.into()),
            started_at: None,
            ended_at: None,
            window_start_ms: None,
            window_end_ms: None,
            agreement: None,
            backend_info: Default::default(),
            energy: None,
            host_load: None,
            replicate: None,
        })
        .collect();
    let request = |c: &CellRecord, rep: u32, warmup: bool, tps: Option<f64>| {
        let tokens = f64::from(c.config.batch_size * c.config.new_tokens);
        let e2e = tps.map(|t| tokens / t * 1000.0);
        RequestRecord {
            run_id: run_id.into(),
            cell_id: c.cell_id.clone(),
            config: CellConfig {
                backend: c.config.backend.clone(),
                model: c.config.model.clone(),
                device: c.config.device.clone(),
                dtype: c.config.dtype.clone(),
                batch_size: c.config.batch_size,
                prompt_tokens: c.config.prompt_tokens,
                new_tokens: c.config.new_tokens,
            },
            rep,
            warmup,
            ttft_ms: e2e.map(|e| e / 4.0),
            e2e_ms: e2e,
            tpot_ms: e2e.map(|e| e * 0.75 / 7.0),
            tokens_per_s: tps,
            energy_j: e2e.filter(|_| energy).map(|e| 0.05 * e),
            energy_method: method.into(),
            energy_valid: None,
            input_hash: "0123456789abcdef".into(),
            output_hash: tps.map(|_| "fedcba9876543210".into()),
            status: if tps.is_some() { "ok" } else { "error" }.into(),
            error: tps.is_none().then(|| "out of memory".into()),
        }
    };
    let mut rows = Vec::new();
    for (record, c) in records.iter().zip(cells) {
        rows.push(request(record, 0, true, Some(1.0e-3)));
        match &c.tps {
            Some(values) => {
                for (rep, &v) in values.iter().enumerate() {
                    rows.push(request(record, rep as u32, false, Some(v)));
                }
            }
            None => rows.push(request(record, 0, false, None)),
        }
    }
    let mut df = requests_frame(&rows).unwrap();
    write_parquet(&mut df, &run_dir.join(files::REQUESTS)).unwrap();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.into(),
        scenario_name: "synthetic".into(),
        scenario_path: "synthetic.yaml".into(),
        scenario: serde_json::json!({"name": "synthetic"}),
        seed: 1,
        model_seed: 0,
        command: vec!["test".into()],
        git_revision: None,
        git_dirty_files: Vec::new(),
        versions: BTreeMap::new(),
        host: HostInfo::default(),
        power: PowerInfo {
            method: method.into(),
            scope: "none".into(),
            basis: "measured".into(),
            sample_period_ms: 100.0,
            notes: BTreeMap::new(),
            idle_baseline: None,
        },
        started_at: "2025-01-01T00:00:00Z".into(),
        ended_at: Some("2025-01-01T00:01:00Z".into()),
        status: "complete".into(),
        cells: records,
        costing: None,
        budget: None,
        allow_disagreement: false,
    };
    std::fs::write(
        run_dir.join(files::MANIFEST),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    run_dir
}

/// Base and new runs. `regress`: tokens/s N(100, 3) → N(90, 3), a 10 % regression; `improve`:
/// → N(120, 3); `same`: the same values, reordered; `tiny`: N(100, 0.2) → N(100.5, 0.2), a
/// significant 0.5 % shift; `fails`: failed in the new run; `gone` only in base, `fresh` only in
/// new. The base run measured energy, the new one did not.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let same = normal(&mut rng, 100.0, 3.0, 20);
    let same_rev: Vec<f64> = same.iter().rev().copied().collect();
    let base = write_run(
        tmp.path(),
        "run-base",
        &[
            Synth {
                model: "regress",
                tps: Some(normal(&mut rng, 100.0, 3.0, 20)),
            },
            Synth {
                model: "improve",
                tps: Some(normal(&mut rng, 100.0, 3.0, 20)),
            },
            Synth {
                model: "same",
                tps: Some(same),
            },
            Synth {
                model: "tiny",
                tps: Some(normal(&mut rng, 100.0, 0.2, 30)),
            },
            Synth {
                model: "fails",
                tps: Some(normal(&mut rng, 100.0, 3.0, 8)),
            },
            Synth {
                model: "gone",
                tps: Some(normal(&mut rng, 100.0, 3.0, 8)),
            },
        ],
        true,
    );
    let new = write_run(
        tmp.path(),
        "run-new",
        &[
            Synth {
                model: "fresh",
                tps: Some(normal(&mut rng, 100.0, 3.0, 8)),
            },
            Synth {
                model: "tiny",
                tps: Some(normal(&mut rng, 100.5, 0.2, 30)),
            },
            Synth {
                model: "fails",
                tps: None,
            },
            Synth {
                model: "same",
                tps: Some(same_rev),
            },
            Synth {
                model: "improve",
                tps: Some(normal(&mut rng, 120.0, 3.0, 20)),
            },
            Synth {
                model: "regress",
                tps: Some(normal(&mut rng, 90.0, 3.0, 20)),
            },
        ],
        false,
    );
    (tmp, base, new)
}

fn tcobench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcobench"))
        .args(args)
        .env("TCOBENCH_CACHE", crate::common::test_cache())
        .output()
        .expect("tcobench runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn row<'a>(stdout: &'a str, model: &str) -> &'a str {
    let l = label(model);
    stdout
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{l} ")))
        .unwrap_or_else(|| panic!("no row for {l}:\n{stdout}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compare_table_verdicts_and_exit_codes() {
    let (_t, base, new) = fixture();
    let out = tcobench(&["compare", s(&base), s(&new), "--resamples", "2000"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    assert!(
        stdout.starts_with("compare tokens_per_s (tokens/s, higher is better)"),
        "{stdout}"
    );
    let header = stdout.lines().find(|l| l.starts_with("cell ")).unwrap();
    for col in ["base mean", "new mean", "change [95% CI]", "p", "verdict"] {
        assert!(header.contains(col), "{header}");
    }
    let regress = row(&stdout, "regress");
    assert!(regress.ends_with("regressed"), "{regress}");
    assert!(regress.contains("20/20"), "{regress}");
    assert!(regress.contains("<0.0001"), "{regress}");
    assert!(row(&stdout, "improve").ends_with("improved"));
    let same = row(&stdout, "same");
    assert!(same.ends_with("no change"), "{same}");
    assert!(same.contains("+0.00%") || same.contains("-0.00%"), "{same}");
    let tiny = row(&stdout, "tiny");
    assert!(tiny.ends_with("within noise"), "{tiny}");
    assert!(tiny.contains("+0.5"), "{tiny}");
    // Columns are aligned: every table row has its verdict at the same offset.
    let offsets: Vec<usize> = [
        ("regress", "regressed"),
        ("improve", "improved"),
        ("same", "no change"),
        ("tiny", "within noise"),
    ]
    .iter()
    .map(|(m, verdict)| row(&stdout, m).chars().count() - verdict.len())
    .collect();
    assert!(offsets.windows(2).all(|w| w[0] == w[1]), "{stdout}");

    assert!(stdout.contains("not compared (1):"), "{stdout}");
    let fails = row(&stdout, "fails");
    assert!(
        fails.contains("failed in the new run: out of memory"),
        "{fails}"
    );
    assert!(stdout.contains("only in base run (1):"), "{stdout}");
    assert!(row(&stdout, "gone").contains("cell gone-run-base"));
    assert!(stdout.contains("only in new run (1):"), "{stdout}");
    assert!(row(&stdout, "fresh").contains("cell fresh-run-new"));
    let last = stdout.lines().last().unwrap();
    assert_eq!(
        last,
        "summary: 1 regressed, 1 improved, 1 within noise, 1 no change; 1 not compared; \
         1 only in base, 1 only in new"
    );

    let out = tcobench(&[
        "compare",
        s(&base),
        s(&new),
        "--resamples",
        "2000",
        "--fail-on-regression",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("1 cell(s) regressed: {}", label("regress"))),
        "{stderr}"
    );

    // Same folder on both sides: nothing regressed, so the flag does not fail.
    let out = tcobench(&["compare", s(&base), s(&base), "--fail-on-regression"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("0 regressed, 0 improved, 0 within noise, 6 no change"),
        "{stdout}"
    );
}

#[test]
fn compare_json_has_counts_and_settings() {
    let (_t, base, new) = fixture();
    let out = tcobench(&[
        "compare",
        s(&base),
        s(&new),
        "--json",
        "--seed",
        "9",
        "--resamples",
        "1000",
        "--threshold",
        "0.05",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["base_run_id"], "run-base");
    assert_eq!(v["new_run_id"], "run-new");
    assert_eq!(v["metric"], "tokens_per_s");
    assert_eq!(v["threshold"], 0.05);
    assert_eq!(v["alpha"], 0.05);
    assert_eq!(v["bootstrap"]["seed"], 9);
    assert_eq!(v["bootstrap"]["resamples"], 1000);
    let counts = &v["counts"];
    for (k, n) in [
        ("regressed", 1),
        ("improved", 1),
        ("within_noise", 1),
        ("no_change", 1),
        ("not_compared", 1),
        ("only_in_base", 1),
        ("only_in_new", 1),
    ] {
        assert_eq!(counts[k], n, "{k}: {counts}");
    }
    let regress = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["config"]["model"] == "regress")
        .unwrap();
    assert_eq!(regress["verdict"], "Regressed");
    let rel = regress["rel_change"].as_f64().unwrap();
    assert!((-0.15..-0.05).contains(&rel), "{rel}");
    let ci = regress["rel_change_ci95"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() < rel && rel < ci[1].as_f64().unwrap());

    // Lower is better for latency: the same regression, seen through e2e_ms.
    let out = tcobench(&["compare", s(&base), s(&new), "--json", "--metric", "e2e_ms"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["higher_is_better"], false);
    assert_eq!(v["counts"]["regressed"], 1);
    assert_eq!(v["counts"]["improved"], 1);

    // Energy was not measured in the new run: not compared, with the reason.
    let out = tcobench(&[
        "compare",
        s(&base),
        s(&new),
        "--json",
        "--metric",
        "energy_j_per_token",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cells"].as_array().unwrap().len(), 0);
    assert_eq!(v["counts"]["not_compared"], 5);
    let reason = v["not_compared"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("not measured"), "{reason}");
}

#[test]
fn bad_input_exits_2_naming_the_path() {
    let (t, base, _new) = fixture();
    let missing = t.path().join("no-such-run");
    let out = tcobench(&["compare", s(&base), s(&missing)]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-run"), "{stderr}");

    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tcobench(&["compare", s(&empty), s(&base)]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("empty") && stderr.contains("manifest.json"),
        "{stderr}"
    );

    let out = tcobench(&["compare", s(&base), s(&base), "--metric", "latency"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tokens_per_s") && stderr.contains("e2e_ms"),
        "{stderr}"
    );

    let out = tcobench(&["export", s(&missing), "--format", "csv"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-run"), "{stderr}");
}

#[test]
fn export_formats_parse_and_omit_unmeasured_energy() {
    let (_t, base, new) = fixture();

    // CSV: header + one row per ok cell × measured metric (new run: no energy, failed cell none).
    let out = tcobench(&["export", s(&new), "--format", "csv"]);
    let (csv, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "run_id,cell_id,backend,model,device,dtype,batch_size,prompt_tokens,new_tokens,metric,\
         unit,n,mean,ci95_lo,ci95_hi,p50,p99"
    );
    assert_eq!(lines.len(), 1 + 5 * 4, "{csv}");
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 17));
    assert!(!csv.contains("energy_j_per_token"), "{csv}");
    assert!(!csv.contains("fails-run-new"), "{csv}");
    let tps = lines
        .iter()
        .find(|l| l.starts_with("run-new,regress-run-new,") && l.contains(",tokens_per_s,"))
        .unwrap();
    let f: Vec<&str> = tps.split(',').collect();
    assert_eq!(f[11], "20");
    let mean: f64 = f[12].parse().unwrap();
    assert!((85.0..95.0).contains(&mean), "{mean}");
    // The base run measured energy: it is exported there.
    let out = tcobench(&["export", s(&base), "--format", "csv"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(",energy_j_per_token,J/token,"));

    // BMF.
    let out = tcobench(&["export", s(&new), "--format", "bmf"]);
    assert_eq!(out.status.code(), Some(0));
    let bmf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let benchmarks = bmf.as_object().unwrap();
    assert_eq!(benchmarks.len(), 5, "{bmf:#}");
    let regress = &bmf[label("regress")];
    let mut measures: Vec<&str> = regress
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    measures.sort_unstable();
    assert_eq!(measures, ["e2e-ms", "tokens-per-s", "tpot-ms", "ttft-ms"]);
    let m = &regress["tokens-per-s"];
    let (lo, v, hi) = (
        m["lower_value"].as_f64().unwrap(),
        m["value"].as_f64().unwrap(),
        m["upper_value"].as_f64().unwrap(),
    );
    // (serde_json's default float parser may differ from Rust's in the last ulp.)
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
    assert!(lo < v && v < hi && close(v, mean), "{lo} {v} {hi} {mean}");
    let out = tcobench(&["export", s(&base), "--format", "bmf"]);
    let bmf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(bmf[label("regress")]["energy-j-per-token"]["value"].is_f64());

    // github-action-benchmark: bigger-is-better (default) and smaller-is-better files.
    let out = tcobench(&["export", s(&new), "--format", "github-action-benchmark"]);
    assert_eq!(out.status.code(), Some(0));
    let gab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = gab.as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let e = entries
        .iter()
        .find(|e| e["name"] == format!("{} tokens_per_s", label("regress")))
        .unwrap();
    assert_eq!(e["unit"], "tokens/s");
    assert!(close(e["value"].as_f64().unwrap(), mean), "{e}");
    assert!(e["range"].as_str().unwrap().starts_with("± "));
    assert!(e["extra"].as_str().unwrap().contains("n: 20"));
    let out = tcobench(&[
        "export",
        s(&new),
        "--format",
        "github-action-benchmark",
        "--direction",
        "smaller-is-better",
    ]);
    let gab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = gab
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5 * 3, "{names:?}");
    assert!(names
        .iter()
        .all(|n| !n.contains("energy") && !n.contains("tokens_per_s")));
    let out = tcobench(&[
        "export",
        s(&base),
        "--format",
        "github-action-benchmark",
        "--direction",
        "smaller-is-better",
    ]);
    let gab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(gab.as_array().unwrap().len(), 6 * 4);

    // --direction belongs to github-action-benchmark only.
    let out = tcobench(&[
        "export",
        s(&new),
        "--format",
        "csv",
        "--direction",
        "bigger-is-better",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// `--fail-on-regression` is a gate: it passes only when every cell the base run measured was
/// compared and none regressed. Nothing compared, or a base cell missing from the new run
/// (absent, failed), fails it with exit 3 and the reason; `--allow-missing` lets missing cells
/// pass, never an empty comparison.
#[test]
fn fail_on_regression_fails_when_nothing_or_not_everything_was_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let steady = normal(&mut rng, 100.0, 3.0, 12);
    let other = normal(&mut rng, 100.0, 3.0, 12);
    let base = write_run(
        tmp.path(),
        "run-base",
        &[
            Synth {
                model: "steady",
                tps: Some(steady.clone()),
            },
            Synth {
                model: "renamed",
                tps: Some(other.clone()),
            },
            Synth {
                model: "crashes",
                tps: Some(other.clone()),
            },
        ],
        true,
    );
    // The new run: `steady` unchanged (reordered values), `renamed` gone under another name,
    // `crashes` failed. No cell regressed.
    let steady_rev: Vec<f64> = steady.iter().rev().copied().collect();
    let new = write_run(
        tmp.path(),
        "run-new",
        &[
            Synth {
                model: "steady",
                tps: Some(steady_rev),
            },
            Synth {
                model: "renamed-v2",
                tps: Some(other.clone()),
            },
            Synth {
                model: "crashes",
                tps: None,
            },
        ],
        true,
    );
    // Informational use: exit 0, as before.
    let out = tcobench(&["compare", s(&base), s(&new), "--resamples", "500"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // The gate: nothing regressed, but two measured base cells are missing from the new run.
    let gate = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            s(&base),
            s(&new),
            "--resamples",
            "500",
            "--fail-on-regression",
        ];
        args.extend_from_slice(extra);
        tcobench(&args)
    };
    let out = gate(&[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 regressed"), "{stdout}");
    assert!(
        stderr.contains("2 cell(s) measured in the base run are missing from the new run"),
        "{stderr}"
    );
    assert!(stderr.contains(&label("renamed")), "{stderr}");
    assert!(
        stderr.contains(&label("crashes")) && stderr.contains("failed in the new run"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-missing"), "{stderr}");
    assert!(!stderr.contains("regressed:"), "{stderr}");

    // Explicitly allowed: the one compared cell did not regress, so the gate passes.
    let out = gate(&["--allow-missing"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // Runs that share no configuration: nothing compared, the gate fails even with the flag.
    let disjoint = write_run(
        tmp.path(),
        "run-disjoint",
        &[Synth {
            model: "unrelated",
            tps: Some(other),
        }],
        true,
    );
    for extra in [&[][..], &["--allow-missing"][..]] {
        let mut args = vec!["compare", s(&base), s(&disjoint), "--fail-on-regression"];
        args.extend_from_slice(extra);
        let out = tcobench(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {stdout}\n{stderr}");
        assert!(stdout.contains("no cell could be compared"), "{stdout}");
        assert!(
            stderr.contains("no cell could be compared (0 in both runs but not compared, 3 only in base, 1 only in new)"),
            "{stderr}"
        );
        // JSON output stays parseable; the reasons go to stderr.
        args.push("--json");
        let out = tcobench(&args);
        assert_eq!(out.status.code(), Some(3));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cells"].as_array().unwrap().len(), 0);
    }
    // Without the gate it is information only.
    let out = tcobench(&["compare", s(&base), s(&disjoint)]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // --allow-missing belongs to the gate: alone it is a usage error (exit 2).
    let out = tcobench(&["compare", s(&base), s(&new), "--allow-missing"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--fail-on-regression"), "{stderr}");
}
