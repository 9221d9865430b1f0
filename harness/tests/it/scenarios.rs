//! Scenario validation and matrix expansion: every error class names file, line, column and key.

use tcobench::scenario::{Overrides, Scenario};
use tcobench::Plan;

use crate::common::{tcobench, write, MOCK};

fn load_err(text: &str) -> tcobench::ScenarioError {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.yaml", text);
    Scenario::load(&path, &Overrides::default()).expect_err("must be rejected")
}

#[test]
fn unknown_top_level_key() {
    let e = load_err(&format!("{MOCK}repetitons: 3\n"));
    assert_eq!(e.key.as_deref(), Some("repetitons"));
    assert_eq!((e.line, e.column), (Some(15), Some(1)), "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn wrong_type() {
    let e = load_err(&MOCK.replace("repetitions: 4", "repetitions: four"));
    assert_eq!(e.key.as_deref(), Some("repetitions"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
}

#[test]
fn impossible_value_in_a_list() {
    let e = load_err(&MOCK.replace("batch_size: [1, 2]", "batch_size: [1, 0]"));
    assert_eq!(e.key.as_deref(), Some("matrix.batch_size"), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.message.contains("at least 1"), "{e}");
}

#[test]
fn unknown_backend_and_dtype_words() {
    let e = load_err(&MOCK.replace("backend: [mock]", "backend: [tensorflow]"));
    assert_eq!(e.key.as_deref(), Some("matrix.backend[0]"), "{e}");
    assert!(e.message.contains("candle"), "lists the choices: {e}");
    let e = load_err(&MOCK.replace("  batch_size", "  dtype: f8\n  batch_size"));
    assert!(e.message.contains("unknown dtype `f8`"), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
}

#[test]
fn context_longer_than_the_model() {
    let e = load_err(&MOCK.replace("prompt_tokens: [16]", "prompt_tokens: [600]"));
    assert_eq!(e.key.as_deref(), Some("matrix.prompt_tokens"), "{e}");
    assert_eq!((e.line, e.column), (Some(10), Some(3)), "{e}");
    assert!(e.message.contains("tiny"), "{e}");
}

#[test]
fn unknown_model_is_neither_builtin_nor_directory() {
    let e = load_err(&MOCK.replace("model: [tiny, small]", "model: [tiny, huge]"));
    assert_eq!(e.key.as_deref(), Some("matrix.model[1]"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");
}

#[test]
fn missing_required_key() {
    let e = load_err("name: x\nmatrix:\n  backend: [mock]\n  model: [tiny]\n  batch_size: 1\n  prompt_tokens: 4\n");
    assert_eq!(e.key.as_deref(), Some("matrix.new_tokens"), "{e}");
}

#[test]
fn exclude_rules_are_checked() {
    let e = load_err(&format!(
        "{MOCK}exclude:\n  - model: tiny\n  - modle: small\n"
    ));
    assert_eq!(e.key.as_deref(), Some("exclude[1].modle"), "{e}");
    assert_eq!((e.line, e.column), (Some(17), Some(5)), "{e}");
    let e = load_err(&format!("{MOCK}exclude:\n  - batch_size: 3\n"));
    assert!(e.message.contains("not a value"), "{e}");
    assert_eq!(e.line, Some(16), "{e}");
}

#[test]
fn extends_merges_per_key_and_errors_point_at_the_right_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", MOCK);
    let child = write(
        dir.path(),
        "child.yaml",
        "extends: base.yaml\nname: child\nmatrix:\n  batch_size: [4]\n",
    );
    let s = Scenario::load(&child, &Overrides::default()).unwrap();
    assert_eq!(s.name, "child");
    assert_eq!(s.matrix.batch_size, vec![4]);
    assert_eq!(s.matrix.model, vec!["tiny", "small"], "inherited");
    assert_eq!(s.repetitions, 4, "inherited");

    let bad = write(dir.path(), "bad.yaml", "extends: nothere.yaml\nname: x\n");
    let e = Scenario::load(&bad, &Overrides::default()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("extends"));
    assert_eq!(e.line, Some(1));

    let a = write(dir.path(), "a.yaml", "extends: b.yaml\nname: a\n");
    write(dir.path(), "b.yaml", "extends: a.yaml\nname: b\n");
    let e = Scenario::load(&a, &Overrides::default()).unwrap_err();
    assert!(e.message.contains("cycle"), "{e}");

    // A bad value in the parent is reported in the parent file.
    write(
        dir.path(),
        "base2.yaml",
        &MOCK.replace("repetitions: 4", "repetitions: 0"),
    );
    let child2 = write(dir.path(), "child2.yaml", "extends: base2.yaml\nname: c\n");
    let e = Scenario::load(&child2, &Overrides::default()).unwrap_err();
    assert!(e.path.ends_with("base2.yaml"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
}

#[test]
fn matrix_expansion_excludes_and_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{MOCK}exclude:\n  - model: small\n    batch_size: 2\n");
    let path = write(dir.path(), "s.yaml", &text);
    let s = Scenario::load(&path, &Overrides::default()).unwrap();
    let plan = Plan::from_scenario(&s, "s.yaml");
    let labels: Vec<_> = plan
        .cells
        .iter()
        .map(|c| (c.config.model.as_str(), c.config.batch_size))
        .collect();
    assert_eq!(labels, vec![("tiny", 1), ("tiny", 2), ("small", 1)]);
    assert_eq!(
        plan.cells.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let again = Plan::from_scenario(
        &Scenario::load(&path, &Overrides::default()).unwrap(),
        "s.yaml",
    );
    assert_eq!(plan.cells, again.cells, "ids are stable");
    let other_seed = Plan::from_scenario(
        &Scenario::load(
            &path,
            &Overrides {
                seed: Some(8),
                device: None,
                replicates: None,
            },
        )
        .unwrap(),
        "s.yaml",
    );
    assert_ne!(plan.cells[0].cell_id, other_seed.cells[0].cell_id);
    let mut ids: Vec<_> = plan.cells.iter().map(|c| c.cell_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[test]
fn shipped_scenarios_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in ["smoke.yaml", "baseline.yaml", "matrix.yaml"] {
        let s = Scenario::load(&root.join(name), &Overrides::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!Plan::from_scenario(&s, name).cells.is_empty(), "{name}");
    }
}

#[test]
fn cli_rejects_bad_scenarios_with_exit_code_2_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        &MOCK.replace("new_tokens: [8]", "new_tokens: [8]\n  colour: red"),
    );
    let out = tcobench(
        &[
            "run",
            bad.to_str().unwrap(),
            "--out",
            dir.path().join("res").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:12:3: key `matrix.colour`"),
        "{stderr}"
    );
    assert!(!dir.path().join("res").exists(), "no work started");
}

#[test]
fn cli_plan_prints_cells_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let out = tcobench(&["plan", s.to_str().unwrap()], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 cells"), "{text}");
    let out = tcobench(
        &["plan", s.to_str().unwrap(), "--json", "--seed", "9"],
        dir.path(),
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["cells"].as_array().unwrap().len(), 4);
    assert_eq!(plan["seed"], 9);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_devices_are_rejected_early_by_a_cpu_build() {
    let e = load_err(&MOCK.replace("seed: 7", "seed: 7\ndevice: [cpu, cuda:0]"));
    assert_eq!(e.key.as_deref(), Some("device"), "{e}");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("--features cuda"), "{e}");
}
