//! candle and ONNX Runtime in one run: the agreement gate, identical greedy outputs, the
//! backend comparison, a disagreeing model kept out of comparisons, and user model folders.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{tcobench, write};

const BOTH: &str = "\
name: both-backends
seed: 3
warmup: 1
repetitions: 3
matrix:
  backend: [candle, onnxruntime]
  model: [tiny]
  batch_size: [1, 2]
  prompt_tokens: [8]
  new_tokens: [8]
power:
  source: none
onnxruntime:
  intra_threads: 1
";

fn run(dir: &Path, text: &str, extra: &[&str]) -> (std::process::Output, Option<PathBuf>) {
    let scenario = write(dir, "scenario.yaml", text);
    let results = dir.join("results");
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "--no-log",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = tcobench(&args, dir);
    let run_dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .filter(|p| p.join("manifest.json").is_file());
    (out, run_dir)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cell<'a>(stats: &'a Value, backend: &str, batch: u64) -> &'a Value {
    stats["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backend"] == backend && c["batch_size"] == batch)
        .unwrap()
}

#[test]
fn both_backends_agree_produce_the_same_tokens_and_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let (out, run_dir) = run(dir.path(), BOTH, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = run_dir.unwrap();
    let stats = json(&run_dir.join("stats.json"));
    for batch in [1, 2] {
        let c = cell(&stats, "candle", batch);
        assert_eq!(c["agreement"]["status"], "reference");
        let o = cell(&stats, "onnxruntime", batch);
        assert_eq!(o["agreement"]["status"], "passed", "{o:#}");
        assert!(o["agreement"]["max_rel_diff"].as_f64().unwrap() <= 1e-4);
        assert_eq!(o["backend_info"]["kv_cache"], "true");
        assert_eq!(o["backend_info"]["intra_threads"], "1");
    }
    // Same prompts, same weights, greedy: the same generated tokens, request by request.
    let req = tcobench_results::io::read_parquet(&run_dir.join("requests.parquet")).unwrap();
    let col = |name: &str| -> Vec<String> {
        req.column(name)
            .unwrap()
            .cast(&polars::prelude::DataType::String)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect()
    };
    let warm = col("warmup");
    let (backend, batch, rep, input, output) = (
        col("backend"),
        col("batch_size"),
        col("rep"),
        col("input_hash"),
        col("output_hash"),
    );
    let mut pairs = 0;
    for i in 0..backend.len() {
        if backend[i] != "candle" {
            continue;
        }
        for j in 0..backend.len() {
            if backend[j] == "onnxruntime"
                && batch[j] == batch[i]
                && rep[j] == rep[i]
                && warm[j] == warm[i]
            {
                assert_eq!(input[i], input[j], "prompts differ");
                assert_eq!(output[i], output[j], "generated tokens differ");
                pairs += 1;
            }
        }
    }
    // 2 batch sizes × (1 warm-up + 3 timed) requests, warm-up and timed reps numbered apart.
    assert_eq!(pairs, 8);
    let sets = stats["comparisons"].as_array().unwrap();
    assert!(
        sets.iter()
            .any(|s| s.to_string().contains("onnxruntime") && s.to_string().contains("candle")),
        "no backend comparison: {sets:#?}"
    );
    let manifest = json(&run_dir.join("manifest.json"));
    assert!(manifest["versions"]["onnxruntime"].is_string());
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("passed ("), "{md}");
    assert!(md.contains("model.onnx with key/value cache"));
}

/// A model folder whose ONNX file holds other weights than its safetensors: the gate fails, the
/// cell is timed but kept out of comparisons — unless `--allow-disagreement`.
#[test]
fn a_disagreeing_model_is_marked_and_kept_out_of_comparisons() {
    let dir = tempfile::tempdir().unwrap();
    let build = |seed: &str, out: &str| {
        let o = tcobench(
            &[
                "model", "build", "--size", "tiny", "--seed", seed, "--out", out,
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    build("0", "mixed");
    build("1", "other");
    std::fs::copy(
        dir.path().join("other/model.onnx"),
        dir.path().join("mixed/model.onnx"),
    )
    .unwrap();
    let text = BOTH
        .replace("model: [tiny]", "model: [mixed]")
        .replace("batch_size: [1, 2]", "batch_size: [1]");
    let (out, run_dir) = run(dir.path(), &text, &[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logits disagree"), "{err}");
    let stats = json(&run_dir.unwrap().join("stats.json"));
    let o = cell(&stats, "onnxruntime", 1);
    assert_eq!(o["agreement"]["status"], "failed");
    assert!(o["metrics"]["e2e_ms"]["mean"].is_number(), "still timed");
    let sets = stats["comparisons"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert!(
        sets[0]["metrics"].as_object().unwrap().is_empty(),
        "a failed cell entered a comparison: {:#}",
        sets[0]
    );
    assert!(sets[0]["excluded"].to_string().contains("agreement gate"));

    let (out, run_dir) = run(dir.path(), &text, &["--allow-disagreement"]);
    assert!(out.status.success());
    let stats = json(&run_dir.unwrap().join("stats.json"));
    let sets = stats["comparisons"].as_array().unwrap();
    assert!(!sets[0]["metrics"].as_object().unwrap().is_empty());
}

#[test]
fn user_model_folders_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = tcobench(
        &["model", "build", "--size", "tiny", "--out", "mine"],
        dir.path(),
    );
    assert!(o.status.success());
    let listed = String::from_utf8_lossy(&o.stdout);
    for f in ["config.json", "model.safetensors", "model.onnx"] {
        assert!(listed.contains(f), "{listed}");
    }
    // Without model.onnx the scenario is refused before any work, naming the file and the key.
    std::fs::rename(
        dir.path().join("mine/model.onnx"),
        dir.path().join("model.onnx.kept"),
    )
    .unwrap();
    let text = BOTH
        .replace("model: [tiny]", "model: [mine]")
        .replace("batch_size: [1, 2]", "batch_size: [1]");
    let (out, run_dir) = run(dir.path(), &text, &[]);
    assert_eq!(out.status.code(), Some(2), "refused before any work");
    assert!(run_dir.is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario.yaml:7:")
            && err.contains("matrix.model[0]")
            && err.contains("has no model.onnx, which the onnxruntime backend needs"),
        "{err}"
    );
    // Excluding that backend for the folder makes it valid again.
    let excluded = format!("{text}exclude:\n  - backend: onnxruntime\n    model: mine\n");
    let (out, _) = run(dir.path(), &excluded, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An ONNX-only folder (no model.safetensors) runs on ONNX Runtime; with no weights for the
    // reference the agreement gate cannot run, and says why.
    std::fs::rename(
        dir.path().join("model.onnx.kept"),
        dir.path().join("mine/model.onnx"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("mine/model.safetensors")).unwrap();
    let (out, _) = run(dir.path(), &text, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has no model.safetensors, which the candle backend needs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let onnx_only = text.replace("backend: [candle, onnxruntime]", "backend: [onnxruntime]");
    let (out, run_dir) = run(dir.path(), &onnx_only, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = json(&run_dir.unwrap().join("manifest.json"));
    let cell = &manifest["cells"][0];
    assert_eq!(cell["status"], "ok");
    assert_eq!(cell["backend_info"]["model_file"], "model.onnx");
    assert_eq!(cell["agreement"]["status"], "error", "{cell}");
    let note = cell["agreement"]["note"].as_str().unwrap();
    assert!(note.contains("model.safetensors"), "{note}");

    let o = tcobench(
        &["model", "build", "--size", "huge", "--out", "x"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
}
