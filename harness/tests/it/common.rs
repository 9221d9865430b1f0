//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes a file under `dir` and returns its path.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the tcobench binary.
pub(crate) fn tcobench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcobench"))
        .args(args)
        .current_dir(cwd)
        .env("TCOBENCH_MODELS_DIR", models_dir())
        // The tests' own cache: no noise profile of this host leaks into them.
        .env("TCOBENCH_CACHE", test_cache())
        .output()
        .expect("tcobench runs")
}

/// Runs the scenario file `scenario` with the CLI into `dir/results`, asserts success and returns
/// the run folder (the last line printed).
pub(crate) fn run_scenario(dir: &Path, scenario: &Path) -> PathBuf {
    let out = tcobench(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            dir.join("results").to_str().unwrap(),
            "--no-log",
            "--quiet",
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap().trim())
}

/// The cache root the CLI tests run with (`TCOBENCH_CACHE`): noise profiles land here.
pub(crate) fn test_cache() -> PathBuf {
    std::env::temp_dir().join(format!("tcobench-test-cache-{}", std::process::id()))
}

/// A shared model cache for the tests (models are deterministic, so sharing is safe).
pub(crate) fn models_dir() -> PathBuf {
    std::env::temp_dir().join("tcobench-test-models")
}

/// A mock-backend scenario with `cells` = 2 models × 2 batch sizes.
pub(crate) const MOCK: &str = "\
name: mock-run
description: mock backend, deterministic virtual timings
seed: 7
warmup: 1
repetitions: 4
matrix:
  backend: [mock]
  model: [tiny, small]
  batch_size: [1, 2]
  prompt_tokens: [16]
  new_tokens: [8]
power:
  source: mock
  mock_watts: 50
";
