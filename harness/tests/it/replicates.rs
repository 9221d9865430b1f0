//! Replicates as the unit of replication: the plan's interleaved executions, the statistics at
//! the execution level, the noise profile and A/B of two builds — and the proof that the
//! execution-level gate keeps A/A false alarms at alpha where the per-request gate does not.

use std::path::{Path, PathBuf};

use tcobench::run::{Execution, RunOptions};
use tcobench::scenario::{Overrides, Scenario};
use tcobench_analysis::compare::{self, CompareLevel, CompareOptions};
use tcobench_analysis::noise::{NoiseProfile, ProfileOptions};
use tcobench_results::schema::files;
use tcobench_results::Metric;
use tcobench_stats::inference::{Bootstrap, Verdict};

use crate::common::{models_dir, run_scenario, tcobench, test_cache, write, MOCK};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_replicated_run_interleaves_fresh_executions_and_analyses_them_as_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    // Two backends would need real models; two dtypes make a comparison set of two mock cells.
    let yaml = MOCK
        .replace(
            "  model: [tiny, small]\n",
            "  model: [tiny]\n  dtype: [f32, bf16]\n",
        )
        .replace("  batch_size: [1, 2]\n", "  batch_size: [1]\n")
        + "replicates: 3\nmock:\n  execution_drift: 0.05\n  drift_seed: 11\n";
    let scenario = write(dir.path(), "rep.yaml", &yaml);
    let run_dir = run_scenario(dir.path(), &scenario);

    let manifest = json(&run_dir.join(files::MANIFEST));
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6, "2 configurations × 3 executions");
    let mut seen = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["status"], "ok");
        assert!(
            c["started_at"].is_string(),
            "each execution's start is kept"
        );
        let r = &c["replicate"];
        let id = r["configuration_id"].as_str().unwrap().to_string();
        assert_eq!(
            c["cell_id"].as_str().unwrap(),
            format!("{id}-r{}", r["number"])
        );
        assert_eq!(r["of"], 3);
        seen.entry(id)
            .or_default()
            .push(r["number"].as_u64().unwrap());
        // Fresh processes with their own drift: each execution's time factor differs.
        assert!(c["backend_info"]["mock_time_factor"].is_string(), "{c}");
    }
    assert_eq!(seen.len(), 2);
    // Replicates 1 and 2 mirror each other: A B B A.
    let first: Vec<&str> = cells[..2]
        .iter()
        .map(|c| c["replicate"]["configuration_id"].as_str().unwrap())
        .collect();
    let second: Vec<&str> = cells[2..4]
        .iter()
        .map(|c| c["replicate"]["configuration_id"].as_str().unwrap())
        .collect();
    assert_eq!(first, second.iter().rev().copied().collect::<Vec<_>>());

    let stats = json(&run_dir.join(files::STATS));
    let scells = stats["cells"].as_array().unwrap();
    assert_eq!(scells.len(), 2, "one entry per configuration");
    for c in scells {
        assert_eq!(c["n_requests"], 12, "3 executions × 4 repetitions pooled");
        let rep = &c["replication"];
        assert_eq!(rep["executions"].as_array().unwrap().len(), 3);
        let level = &rep["metrics"]["tokens_per_s"];
        assert_eq!(level["n_executions"], 3);
        let comp = &level["components"];
        assert!(comp["var_between"].as_f64().unwrap() > 0.0, "{comp}");
        assert!(comp["between_factor"].as_f64().unwrap() > 1.0, "{comp}");
    }
    let comparisons = stats["comparisons"].as_array().unwrap();
    assert!(!comparisons.is_empty());
    assert!(comparisons.iter().all(|s| s["unit"] == "executions"));
    let n = comparisons[0]["metrics"]["tokens_per_s"]["groups"][0]["n"].clone();
    assert_eq!(n, 3, "the executions' means are the observations");

    let report = std::fs::read_to_string(run_dir.join(files::REPORT_MD)).unwrap();
    assert!(
        report.contains("across executions"),
        "the report names the level"
    );

    // `plan --replicates` lists every execution; `run --replicates 1` is an ordinary run.
    let out = tcobench(
        &[
            "plan",
            scenario.to_str().unwrap(),
            "--replicates",
            "2",
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["cells"].as_array().unwrap().len(), 4);
    let out = tcobench(
        &["plan", scenario.to_str().unwrap(), "--replicates", "0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--replicates"), "{}", text(&out).1);

    // A single run against the replicated one: the single side is widened by the variance
    // between the other side's executions, and says where it came from.
    let out = tcobench(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--replicates",
            "1",
            "--out",
            dir.path().join("single").to_str().unwrap(),
            "--no-log",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let single = text(&out).0.lines().last().unwrap().trim().to_string();
    assert_eq!(
        json(&Path::new(&single).join(files::MANIFEST))["cells"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let out = tcobench(
        &[
            "compare",
            run_dir.to_str().unwrap(),
            &single,
            "--json",
            "--no-noise-profile",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = c["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{c}");
    for cell in cells {
        assert_eq!(cell["level"], "requests_widened", "{cell}");
        assert_eq!(cell["base"]["executions"], 3);
        assert_eq!(cell["new"]["executions"], 1);
        assert!(
            cell["between_source"]
                .as_str()
                .unwrap()
                .contains("other side's 3 executions"),
            "{cell}"
        );
    }
}

/// A scenario of ten mock configurations whose executions drift by `drift` (relative sd),
/// seeded by `drift_seed`, every time scaled by `time_scale`.
fn drifting(replicates: u32, drift_seed: u64, time_scale: f64) -> String {
    format!(
        "name: drift\nseed: 3\nwarmup: 0\nrepetitions: 8\nreplicates: {replicates}\n\
         matrix:\n  backend: [mock]\n  model: [tiny]\n  batch_size: [1, 2, 4, 8, 16]\n  \
         prompt_tokens: [16]\n  new_tokens: [8, 16]\n\
         power:\n  source: mock\n  mock_watts: 50\n  idle_baseline_s: 0\n\
         mock:\n  execution_drift: 0.03\n  drift_seed: {drift_seed}\n  time_scale: {time_scale}\n"
    )
}

fn run_in_process(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = write(dir, name, text);
    let s = Scenario::load(&path, &Overrides::default()).unwrap();
    let opts = RunOptions {
        out: dir.join("results"),
        models_dir: models_dir(),
        progress: false,
        experiment_log: None,
        command: vec!["tcobench".into(), "run".into()],
        allow_disagreement: false,
    };
    tcobench::run::run_with(&s, &path, &opts, &Default::default(), &Execution::InProcess)
        .unwrap()
        .run_dir
        .path
}

/// Verdicts of `pairs` A/B comparisons of ten cells each: (alarms either way, regressed,
/// compared, levels seen).
fn verdicts(
    dir: &Path,
    tag: &str,
    pairs: u64,
    replicates: u32,
    new_scale: f64,
    profile: Option<&NoiseProfile>,
) -> (usize, usize, usize, Vec<CompareLevel>) {
    let opts = CompareOptions {
        metric: Metric::TokensPerS,
        bootstrap: Bootstrap {
            resamples: 2000,
            seed: 1,
        },
        ..CompareOptions::default()
    };
    let (mut alarms, mut regressed, mut compared, mut levels) = (0, 0, 0, Vec::new());
    for k in 0..pairs {
        let a = run_in_process(
            dir,
            &format!("{tag}-a{k}.yaml"),
            &drifting(replicates, 2 * k + 1, 1.0),
        );
        let b = run_in_process(
            dir,
            &format!("{tag}-b{k}.yaml"),
            &drifting(replicates, 2 * k + 2, new_scale),
        );
        let c = compare::compare_loaded(
            &[compare::load_run(&a).unwrap()],
            &[compare::load_run(&b).unwrap()],
            &opts,
            profile,
        );
        for cell in &c.cells {
            compared += 1;
            levels.push(cell.level);
            match cell.verdict {
                Verdict::Regressed => {
                    alarms += 1;
                    regressed += 1
                }
                Verdict::Improved => alarms += 1,
                Verdict::NoChange | Verdict::WithinNoise => {}
            }
        }
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
    (alarms, regressed, compared, levels)
}

#[test]
fn execution_level_gate_holds_alpha_under_run_level_drift_where_the_per_request_gate_fails() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = 0.05;
    // Today's gate: one execution per side, the requests as the unit. Each execution's times are
    // off by a 3 % random effect that its 8 requests cannot show.
    let (old_alarms, _, old_n, levels) = verdicts(dir.path(), "old", 20, 1, 1.0, None);
    assert_eq!(old_n, 200);
    assert!(levels.iter().all(|l| *l == CompareLevel::Requests));
    let old_rate = old_alarms as f64 / old_n as f64;
    // The new gate: five executions per side, the execution as the unit.
    let (new_alarms, _, new_n, levels) = verdicts(dir.path(), "new", 20, 5, 1.0, None);
    assert_eq!(new_n, 200);
    assert!(levels.iter().all(|l| *l == CompareLevel::Executions));
    let new_rate = new_alarms as f64 / new_n as f64;
    eprintln!("A/A false alarms over 200 comparisons: per-request {old_rate:.3}, execution-level {new_rate:.3}");
    assert!(
        old_rate > 4.0 * alpha,
        "the per-request gate must be seen failing: {old_rate}"
    );
    assert!(
        new_rate <= alpha,
        "the execution-level gate must hold alpha: {new_rate}"
    );
    // And a real change is still found: the new build 10 % slower (tokens/s −9.1 %).
    let (_, regressed, n, _) = verdicts(dir.path(), "slow", 20, 5, 1.1, None);
    let power = regressed as f64 / n as f64;
    eprintln!("a 10 % slowdown found as a regression in {regressed} of {n} comparisons");
    assert!(power >= 0.8, "a 10 % slowdown must be found: {power}");
    // One run per side still, widened by a noise profile of ten other runs of this host.
    let profile_runs: Vec<_> = (0..10)
        .map(|k| {
            let run = run_in_process(
                dir.path(),
                &format!("profile{k}.yaml"),
                &drifting(1, 1000 + k, 1.0),
            );
            compare::load_run(&run).unwrap()
        })
        .collect();
    let profile =
        NoiseProfile::build(&profile_runs, &ProfileOptions::default(), "now".into()).unwrap();
    let (wide_alarms, _, wide_n, levels) = verdicts(dir.path(), "wide", 20, 1, 1.0, Some(&profile));
    assert!(levels.iter().all(|l| *l == CompareLevel::RequestsWidened));
    let wide_rate = wide_alarms as f64 / wide_n as f64;
    eprintln!("single runs widened by a 10-run profile: A/A false alarms {wide_rate:.3}");
    assert!(
        wide_rate <= alpha,
        "the widened gate must hold alpha: {wide_rate}"
    );
}

#[test]
fn noise_profile_widens_single_runs_and_sets_auto_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = MOCK.replace("  batch_size: [1, 2]\n", "  batch_size: [1]\n")
        + "mock:\n  execution_drift: 0.04\n";
    let scenario = write(dir.path(), "noisy.yaml", &yaml);
    let out_dir = dir.path().join("results");
    let out = tcobench(
        &[
            "noise",
            scenario.to_str().unwrap(),
            "--runs",
            "4",
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("A/A comparisons: 12 (6 pairs of runs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("installed as this host's noise profile"),
        "{stdout}"
    );
    let noise_dir = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let profile = json(&noise_dir.join("noise-profile.json"));
    assert_eq!(profile["runs"], 4);
    let cells = profile["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    let m = &cells[0]["metrics"]["tokens_per_s"];
    assert!(m["cv_of_run_means"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["threshold"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(m["false_alarms"]["comparisons"], 6);
    let installed = std::fs::read_dir(test_cache().join("noise"))
        .unwrap()
        .count();
    assert!(installed >= 1);

    // compare on two of those runs now widens them with the profile, and --threshold auto
    // takes the profile's thresholds.
    let mut runs: Vec<PathBuf> = std::fs::read_dir(noise_dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    let (a, b) = (runs[0].to_str().unwrap(), runs[1].to_str().unwrap());
    let out = tcobench(
        &["compare", a, b, "--json", "--threshold", "auto"],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(c["profile"]["path"].is_string(), "{stdout}");
    for cell in c["cells"].as_array().unwrap() {
        assert_eq!(cell["level"], "requests_widened", "{cell}");
        assert!(cell["between_source"]
            .as_str()
            .unwrap()
            .contains("noise profile"));
        assert!(cell["threshold"].as_f64().unwrap() > 0.0);
    }
    // Without a profile the comparison says what it cannot see.
    let out = tcobench(&["compare", a, b, "--no-noise-profile"], dir.path());
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("between-run variance UNSEEN"), "{stdout}");
    assert!(stderr.contains("tcobench noise"), "{stderr}");
    // A folder of runs is a side: four executions per cell, the executions level.
    let runs_dir = noise_dir.join("runs");
    let out = tcobench(
        &[
            "compare",
            runs_dir.to_str().unwrap(),
            runs_dir.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(c["cells"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["level"] == "executions"));
    assert_eq!(c["counts"]["regressed"], 0, "a side against itself");
    // --from makes the same profile without running.
    let out = tcobench(
        &[
            "noise",
            "--from",
            noise_dir.to_str().unwrap(),
            "--no-install",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out)
        .0
        .contains("A/A comparisons: 12 (6 pairs of runs"));
    // Too few runs is bad input.
    let out = tcobench(
        &["noise", scenario.to_str().unwrap(), "--runs", "2"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ab_runs_two_builds_in_abba_blocks_and_compares_runs_as_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = MOCK.replace("  batch_size: [1, 2]\n", "  batch_size: [1]\n")
        + "mock:\n  execution_drift: 0.04\n";
    let scenario = write(dir.path(), "ab.yaml", &yaml);
    let bin = env!("CARGO_BIN_EXE_tcobench");
    let out_dir = dir.path().join("results");
    let out = tcobench(
        &[
            "ab",
            "--base",
            bin,
            "--new",
            bin,
            scenario.to_str().unwrap(),
            "--runs",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(c["base_runs"].as_array().unwrap().len(), 2);
    assert_eq!(c["new_runs"].as_array().unwrap().len(), 2);
    let cells = c["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|x| x["level"] == "executions"), "{stdout}");
    let ab_dir = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = json(&ab_dir.join("ab.json"));
    let sides: Vec<&str> = record["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["side"].as_str().unwrap())
        .collect();
    assert_eq!(sides, ["base", "new", "new", "base"]);
    assert!(record["order"][0]["started_at"].is_string());
    assert!(record["base_version"]
        .as_str()
        .unwrap()
        .starts_with("tcobench"));
    assert!(ab_dir.join("comparison.json").is_file());
    // A binary that does not run is bad input, named.
    let out = tcobench(
        &[
            "ab",
            "--base",
            "/no/such/tcobench",
            "--new",
            bin,
            scenario.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("/no/such/tcobench"));
}
