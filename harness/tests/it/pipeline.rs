//! plan → run → store → analysis → report, on the mock backend (deterministic) and on candle.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use tcobench::run::writer::RunDir;
use tcobench::run::{RunOptions, RunOutcome};
use tcobench::scenario::{Overrides, Scenario};
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome};

use crate::common::{models_dir, tcobench, write, MOCK};

fn run(dir: &Path, text: &str, seed: Option<u64>) -> RunOutcome {
    let path = write(dir, &format!("scenario-{}.yaml", seed.unwrap_or(0)), text);
    let s = Scenario::load(
        &path,
        &Overrides {
            seed,
            ..Overrides::default()
        },
    )
    .unwrap();
    let opts = RunOptions {
        out: dir.join("results"),
        models_dir: models_dir(),
        progress: false,
        experiment_log: Some(dir.join("EXPERIMENT_LOG.md")),
        command: vec!["tcobench".into(), "run".into()],
        allow_disagreement: false,
    };
    tcobench::run::run(&s, &path, &opts).unwrap()
}

fn column_strings(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("<null>").to_string())
        .collect()
}

#[test]
fn mock_run_writes_the_whole_contract_and_a_stable_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // Two dtypes make every cell part of a comparison set ("only the dtype differs").
    let text = MOCK.replace(
        "  model: [tiny, small]\n",
        "  model: [tiny, small]\n  dtype: [f32, bf16]\n",
    );
    let outcome = run(dir.path(), &text, None);
    let run_dir = &outcome.run_dir.path;
    for f in [
        files::MANIFEST,
        files::REQUESTS,
        files::POWER,
        files::STATS,
        files::REPORT_MD,
        files::REPORT_HTML,
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    assert!(outcome.complete());
    let manifest = io::read_manifest(&run_dir.join(files::MANIFEST)).unwrap();
    assert_eq!(manifest.cells.len(), 8);
    assert!(manifest.cells.iter().all(|c| c.status == CellOutcome::Ok));
    assert_eq!(manifest.power.method, "mock");

    // 8 cells × (1 warm-up + 4 timed) rows, warm-ups flagged.
    let req = io::read_parquet(&run_dir.join(files::REQUESTS)).unwrap();
    assert_eq!(req.height(), 40);
    let warm = req
        .column("warmup")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .filter(|v| *v == Some(true))
        .count();
    assert_eq!(warm, 8);

    // Statistics exclude warm-ups and are deterministic under the virtual clock.
    let mut stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join(files::STATS)).unwrap())
            .unwrap();
    stats["run_id"] = "[run-id]".into();
    // Resident memory depends on the allocator and the test harness, not on the run.
    for cell in stats["cells"].as_array_mut().unwrap() {
        assert!(cell["peak_rss_bytes"].as_u64().unwrap() > 0);
        cell["peak_rss_bytes"] = "[bytes]".into();
    }
    assert_eq!(
        stats["comparisons"].as_array().unwrap().len(),
        4,
        "one set per model × batch"
    );
    assert!(stats["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["varies"] == "dtype"));
    insta::assert_json_snapshot!("mock_run_stats", stats);

    // The report names every cell.
    let md = std::fs::read_to_string(run_dir.join(files::REPORT_MD)).unwrap();
    let html = std::fs::read_to_string(run_dir.join(files::REPORT_HTML)).unwrap();
    for c in &manifest.cells {
        assert!(md.contains(&c.cell_id), "report.md lacks {}", c.cell_id);
        assert!(html.contains(&c.cell_id), "report.html lacks {}", c.cell_id);
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    assert!(md.contains("## Statistical comparisons") && md.contains("Only the dtype differs"));

    let log = std::fs::read_to_string(dir.path().join("EXPERIMENT_LOG.md")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("- ")).count(),
        1,
        "{log}"
    );
    assert!(log.contains("mock-run"), "{log}");
}

#[test]
fn same_seed_same_tokens_different_seed_different_inputs_on_candle() {
    let text = "\
name: determinism
warmup: 1
repetitions: 3
matrix:
  backend: [candle]
  model: [tiny]
  dtype: [f32, bf16]
  batch_size: [2]
  prompt_tokens: [12]
  new_tokens: [6]
power:
  source: none
";
    let dir = tempfile::tempdir().unwrap();
    let a = run(dir.path(), text, Some(1));
    let b = run(dir.path(), text, Some(1));
    let c = run(dir.path(), text, Some(2));
    let read = |o: &RunOutcome| io::read_parquet(&o.run_dir.path.join(files::REQUESTS)).unwrap();
    let (ra, rb, rc) = (read(&a), read(&b), read(&c));
    assert_eq!(
        column_strings(&ra, "input_hash"),
        column_strings(&rb, "input_hash")
    );
    assert_eq!(
        column_strings(&ra, "output_hash"),
        column_strings(&rb, "output_hash"),
        "bit-identical on CPU"
    );
    assert!(!column_strings(&ra, "output_hash").contains(&"<null>".to_string()));
    let (ia, ic) = (
        column_strings(&ra, "input_hash"),
        column_strings(&rc, "input_hash"),
    );
    assert!(
        ia.iter().zip(&ic).all(|(x, y)| x != y),
        "another seed draws other prompts"
    );
    // Cells that differ only in dtype see identical prompts.
    let dtype = column_strings(&ra, "dtype");
    let f32_inputs: Vec<_> = ia
        .iter()
        .zip(&dtype)
        .filter(|(_, d)| *d == "f32")
        .map(|(h, _)| h)
        .collect();
    let bf16_inputs: Vec<_> = ia
        .iter()
        .zip(&dtype)
        .filter(|(_, d)| *d == "bf16")
        .map(|(h, _)| h)
        .collect();
    assert_eq!(f32_inputs, bf16_inputs);
    // Energy was not measured: null, never zero.
    assert_eq!(ra.column("energy_j").unwrap().null_count(), ra.height());
}

#[test]
fn a_failing_cell_is_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken-model");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{\"not\": \"a llama\"}").unwrap();
    std::fs::write(broken.join("model.safetensors"), b"garbage").unwrap();
    let text = "\
name: with-a-broken-cell
warmup: 0
repetitions: 2
matrix:
  backend: [candle]
  model: [tiny, broken-model]
  batch_size: [1]
  prompt_tokens: [4]
  new_tokens: [3]
power:
  source: cpu-estimate
";
    let outcome = run(dir.path(), text, None);
    assert!(!outcome.complete());
    let cells = &outcome.manifest.cells;
    assert_eq!(cells[0].status, CellOutcome::Ok);
    assert_eq!(cells[1].status, CellOutcome::Failed);
    assert!(
        cells[1].error.as_deref().unwrap().contains("broken-model"),
        "{:?}",
        cells[1].error
    );
    let md = std::fs::read_to_string(outcome.run_dir.path.join(files::REPORT_MD)).unwrap();
    assert!(md.contains(&cells[1].cell_id));
    // The estimate is labelled as such.
    assert_eq!(outcome.manifest.power.basis, "estimated");
    let req = io::read_parquet(&outcome.run_dir.path.join(files::REQUESTS)).unwrap();
    assert!(column_strings(&req, "energy_method")
        .iter()
        .all(|m| m == "cpu_estimate"));
}

#[test]
fn committed_cells_are_complete_even_when_the_run_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let text = MOCK
        .replace("model: [tiny, small]", "model: [tiny]")
        .replace("batch_size: [1, 2]", "batch_size: [1, 2, 3, 4, 5, 6, 7, 8]")
        .replace("prompt_tokens: [16]", "prompt_tokens: [4, 8, 16, 32]");
    let scenario = write(dir.path(), "many.yaml", &text);
    let mut seen_partial_runs = 0;
    for (trial, delay_ms) in [40u64, 90, 150, 220].into_iter().enumerate() {
        let out = dir.path().join(format!("out{trial}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tcobench"))
            .args([
                "run",
                scenario.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--no-log",
            ])
            .env("TCOBENCH_MODELS_DIR", models_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let Some(run) = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
        else {
            continue;
        };
        let rd = RunDir {
            path: run.clone(),
            run_id: String::new(),
        };
        let cells: Vec<PathBuf> = std::fs::read_dir(run.join(files::CELLS))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
            .collect();
        if cells.len() < 32 {
            seen_partial_runs += 1;
        }
        for cell in cells {
            let id = cell.file_name().unwrap().to_str().unwrap().to_string();
            assert!(rd.is_committed(&id), "{id} has no status");
            let status = rd.read_cell_status(&id).unwrap();
            assert_eq!(status.cell_id, id);
            let req = io::read_parquet(&cell.join(files::REQUESTS)).unwrap();
            assert_eq!(req.height(), 5, "{id}: 1 warm-up + 4 timed");
            io::read_parquet(&cell.join(files::POWER)).unwrap();
        }
    }
    eprintln!("{seen_partial_runs} of 4 runs were killed part-way");
}

#[test]
fn cli_run_prints_the_run_folder_last() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let out = tcobench(&["run", s.to_str().unwrap(), "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let run_dir = dir.path().join(last);
    assert!(run_dir.join(files::REPORT_HTML).is_file(), "{last}");
    assert!(last.starts_with("res/"), "{last}");
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains('\u{1b}'),
        "no progress bar off a terminal"
    );
}

/// A cell timed while another process keeps a core busy records that load and the report warns
/// about it; a mock cell (virtual clock) records none.
#[test]
fn a_busy_host_is_recorded_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write(
        tmp.path(),
        "busy.yaml",
        "name: busy\nwarmup: 1\nrepetitions: 100\nmatrix:\n  backend: [candle, mock]\n  \
         model: [tiny]\n  batch_size: [1]\n  prompt_tokens: [32]\n  new_tokens: [64]\n\
         power:\n  source: none\n",
    );
    let mut spinner = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let out = tcobench(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            tmp.path().join("results").to_str().unwrap(),
            "--no-log",
            "--quiet",
        ],
        tmp.path(),
    );
    spinner.kill().unwrap();
    spinner.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    );
    let manifest = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    let candle = &manifest.cells[0];
    assert_eq!(candle.config.backend, "candle");
    let load = candle.host_load.as_ref().expect("host load recorded");
    // The spinner alone is one core for the whole window.
    assert!(load.other_cores > 0.6, "{load:?}");
    assert!(load.own_cores > 0.0 && load.cpus >= 1, "{load:?}");
    assert!(
        manifest.cells[1].host_load.is_none(),
        "mock cells record none"
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    if load.wall_ticks >= tcobench_results::schema::HostLoad::MIN_WALL_TICKS {
        assert!(
            report.contains("the host was not quiet while it was timed (other processes used"),
            "{report}"
        );
    }
}
