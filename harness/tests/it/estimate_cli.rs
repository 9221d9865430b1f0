//! `tcobench plan --estimate` (earlier runs first, then the calibrated heuristic) and the run
//! budget that uses the same prediction (mock runs: virtual time, so the spending is exact).

use std::path::{Path, PathBuf};
use std::process::Output;

use polars::prelude::*;
use serde_json::Value;
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome};

use crate::common::{tcobench, write, MOCK};

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(o: &Output) -> Value {
    let (stdout, stderr) = out(o);
    assert!(o.status.success(), "{stdout}{stderr}");
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

/// Runs `scenario` with the CLI into `dir/res`; returns the run folder and the output.
fn cli_run(dir: &Path, name: &str, scenario: &str) -> (PathBuf, Output) {
    let s = write(dir, name, scenario);
    let o = tcobench(
        &["run", s.to_str().unwrap(), "--out", "res", "--no-log"],
        dir,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let run = dir.join(stdout.lines().last().expect("the run folder is printed"));
    (run, o)
}

/// The heuristic of one tiny-model cell, 1 warm-up + 4 timed requests, as the docs state it.
fn heuristic_s(batch: f64, prompt: f64, new: f64) -> f64 {
    let params = tcobench_backends::BuiltinModel::Tiny
        .config()
        .parameter_count() as f64;
    5.0 * (2.0 * params * batch * (prompt + new) / 2e10 + new * 2e-3 + 5e-3)
}

#[test]
fn estimate_takes_earlier_runs_first_and_calibrates_the_heuristic_for_new_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (run, o) = cli_run(dir.path(), "s.yaml", MOCK);
    assert!(o.status.success(), "{}", out(&o).1);
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let manifest = io::read_manifest(&run.join(files::MANIFEST)).unwrap();

    // Same scenario: every cell from the earlier run, with that run's cell duration.
    let v = json(&tcobench(
        &["plan", "s.yaml", "--estimate", "--results", "res", "--json"],
        dir.path(),
    ));
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let mut sum = 0.0;
    for (c, record) in cells.iter().zip(&manifest.cells) {
        assert_eq!(c["cell_id"], record.cell_id.as_str());
        assert_eq!(c["source"]["kind"], "previous_run", "{c:#}");
        assert_eq!(c["source"]["run_id"], run_id.as_str());
        let t = |s: &Option<String>| {
            chrono::DateTime::parse_from_rfc3339(s.as_deref().unwrap()).unwrap()
        };
        let want = (t(&record.ended_at) - t(&record.started_at))
            .num_nanoseconds()
            .unwrap() as f64
            / 1e9;
        let got = c["seconds"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
        sum += got;
    }
    assert!((v["total_s"].as_f64().unwrap() - sum).abs() < 1e-12);
    assert_eq!(v["calibration"]["cells"], 4);
    let text = out(&tcobench(
        &["plan", "s.yaml", "--estimate", "--results", "res"],
        dir.path(),
    ))
    .0;
    assert!(text.contains(&format!("previous run {run_id}")), "{text}");
    assert!(
        text.contains("4 cells from earlier runs, 0 from the heuristic"),
        "{text}"
    );

    // A batch size never run: the heuristic, scaled by measured/heuristic of the known cells.
    let wider = MOCK.replace("batch_size: [1, 2]", "batch_size: [1, 2, 4]");
    write(dir.path(), "wider.yaml", &wider);
    let v = json(&tcobench(
        &[
            "plan",
            "wider.yaml",
            "--estimate",
            "--results",
            "res",
            "--json",
        ],
        dir.path(),
    ));
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    let factor = v["calibration"]["measured_s"].as_f64().unwrap()
        / v["calibration"]["heuristic_s"].as_f64().unwrap();
    for c in cells {
        let label = c["label"].as_str().unwrap();
        if label.contains(" b4 ") {
            assert_eq!(c["source"]["kind"], "heuristic", "{c:#}");
            let h = c["heuristic_s"].as_f64().unwrap();
            let got = c["seconds"].as_f64().unwrap();
            assert!((got - h * factor).abs() <= 1e-12 * got.abs(), "{c:#}");
        } else {
            assert_eq!(c["source"]["kind"], "previous_run", "{c:#}");
        }
    }
    let tiny_b4 = cells
        .iter()
        .find(|c| c["label"] == "mock/tiny/f32/cpu b4 p16 n8")
        .unwrap();
    let h = tiny_b4["heuristic_s"].as_f64().unwrap();
    assert!((h - heuristic_s(4.0, 16.0, 8.0)).abs() < 1e-12, "{h}");
    let text = out(&tcobench(
        &["plan", "wider.yaml", "--estimate", "--results", "res"],
        dir.path(),
    ))
    .0;
    assert!(
        text.contains("calibrated on 4 cells in earlier runs"),
        "{text}"
    );
    assert!(
        text.contains(
            "heuristic: per request 2·params·batch·(prompt+new)/2e10 s + new_tokens·2 ms + 5 ms"
        ),
        "{text}"
    );
    assert!(
        text.contains("4 cells from earlier runs, 2 from the heuristic"),
        "{text}"
    );
}

#[test]
fn estimate_without_earlier_runs_is_the_uncalibrated_heuristic_priced_at_the_budget_rate() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = MOCK.replace("model: [tiny, small]", "model: [tiny]")
        + "pricing:\n  host_usd_per_hour: 3600\nbudget_usd: 0.1\n";
    write(dir.path(), "s.yaml", &scenario);
    let v = json(&tcobench(
        &[
            "plan",
            "s.yaml",
            "--estimate",
            "--results",
            "empty",
            "--json",
        ],
        dir.path(),
    ));
    let want = heuristic_s(1.0, 16.0, 8.0) + heuristic_s(2.0, 16.0, 8.0);
    for c in v["cells"].as_array().unwrap() {
        assert_eq!(c["source"]["kind"], "heuristic");
    }
    let total = v["total_s"].as_f64().unwrap();
    assert!((total - want).abs() < 1e-12, "{total} vs {want}");
    assert_eq!(v["calibration"]["cells"], 0);
    // $3600/h = $1/s, so the cost in $ is the time in s: ~0.21 s against a $0.10 budget.
    let cost = &v["cost"];
    assert!(
        (cost["usd"].as_f64().unwrap() - want).abs() < 1e-12,
        "{cost:#}"
    );
    assert_eq!(cost["rate_source"], "pricing.host_usd_per_hour");
    assert_eq!(cost["budget_usd"], 0.1);
    assert_eq!(cost["budget_suffices"], false);
    let text = out(&tcobench(
        &["plan", "s.yaml", "--estimate", "--results", "empty"],
        dir.path(),
    ))
    .0;
    assert!(text.contains("heuristic (uncalibrated)"), "{text}");
    assert!(text.contains("budget $0.1000: does NOT suffice"), "{text}");

    // Without --estimate, plan is unchanged.
    let plain = out(&tcobench(&["plan", "s.yaml"], dir.path())).0;
    assert!(plain.starts_with("scenario `mock-run`: 2 cells"), "{plain}");
}

/// Six mock cells of nearly equal cost (~0.11 s of virtual time each: batch 16, where the
/// heuristic is close to the mock's cost model) at $3600/h = $1 per virtual second.
fn budget_scenario(budget_usd: f64) -> String {
    format!(
        "\
name: budget
seed: 7
warmup: 1
repetitions: 4
matrix:
  backend: [mock]
  model: [tiny]
  dtype: [f32, f16, bf16]
  batch_size: [16]
  prompt_tokens: [16, 20]
  new_tokens: [8]
power:
  source: mock
  mock_watts: 50
pricing:
  host_usd_per_hour: 3600
budget_usd: {budget_usd}
"
    )
}

/// Virtual seconds the run's requests took (the only thing that advances the mock clock).
fn virtual_seconds(run: &Path) -> f64 {
    let req = io::read_parquet(&run.join(files::REQUESTS)).unwrap();
    req.column("e2e_ms").unwrap().f64().unwrap().sum().unwrap() / 1e3
}

#[test]
fn a_small_budget_skips_the_cells_that_would_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let (run, o) = cli_run(dir.path(), "b.yaml", &budget_scenario(0.4));
    let (_, stderr) = out(&o);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    // Three cells cost ~$0.34; a fourth would pass $0.40.
    assert_eq!(
        stderr.matches("warning: budget 50 % spent").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("warning: budget 75 % spent").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("90 % spent"), "{stderr}");
    assert!(
        stderr.contains("budget: stopping before cell mock/tiny/f16/cpu b16 p20 n8"),
        "{stderr}"
    );

    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "incomplete");
    let status: Vec<CellOutcome> = m.cells.iter().map(|c| c.status).collect();
    assert_eq!(status[..3], [CellOutcome::Ok; 3]);
    assert_eq!(status[3..], [CellOutcome::Skipped; 3]);
    let first = m.cells[3].error.as_deref().unwrap();
    assert!(
        first.starts_with("skipped for budget: spent $0.3"),
        "{first}"
    );
    assert!(first.contains("> $0.4000"), "{first}");
    assert!(
        first.contains("calibrated on 3 cells of this run"),
        "{first}"
    );
    for c in &m.cells[4..] {
        let e = c.error.as_deref().unwrap();
        assert!(
            e.starts_with("skipped for budget: the run stopped before cell #3"),
            "{e}"
        );
    }
    // Spending is the run's virtual time × the rate, exactly.
    let b = m.budget.as_ref().expect("the manifest records the budget");
    assert_eq!(b.usd, 0.4);
    assert_eq!(b.usd_per_hour, 3600.0);
    assert_eq!(b.rate_source, "pricing.host_usd_per_hour");
    let spent = virtual_seconds(&run) / 3600.0 * b.usd_per_hour;
    assert!(
        (b.spent_usd - spent).abs() < 1e-9,
        "{} vs {spent}",
        b.spent_usd
    );
    assert!(b.spent_usd > 0.3 && b.spent_usd <= 0.4, "{}", b.spent_usd);

    // Analysis and report ran: skipped cells have no statistics and show why.
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join(files::STATS)).unwrap()).unwrap();
    let skipped = &stats["cells"][4];
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["n_requests"], 0);
    assert!(skipped["metrics"].as_object().unwrap().is_empty());
    assert_eq!(
        skipped["unavailable"][0]["reason"],
        "cell not run: skipped for budget"
    );
    let md = std::fs::read_to_string(run.join(files::REPORT_MD)).unwrap();
    assert!(md.contains("3 not run"), "{md}");
    assert!(md.contains("skipped for budget: the run stopped before cell #3"));
}

#[test]
fn an_ample_budget_runs_every_cell_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let (run, o) = cli_run(dir.path(), "b.yaml", &budget_scenario(100.0));
    let (_, stderr) = out(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning: budget"), "{stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "complete");
    assert!(m.cells.iter().all(|c| c.status == CellOutcome::Ok));
    let b = m.budget.unwrap();
    assert!((b.spent_usd - virtual_seconds(&run)).abs() < 1e-9);
}
