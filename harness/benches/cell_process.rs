//! The price of one process per cell: the same mock cell (no inference, so nothing but the
//! harness is measured) run and committed inside this process, and through `tcobench run-cell`
//! in a child process (spawn, exec, reading the plan, committing, exit). The difference is the
//! fixed cost every cell of `tcobench run` pays; backends that load a model add their load time
//! on top, which a run in one process pays once per model instead of once per cell.

use std::path::Path;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};
use tcobench::plan::Plan;
use tcobench::run::writer::RunDir;
use tcobench::run::{self, CellClockStart};
use tcobench::scenario::{Overrides, Scenario};

const SCENARIO: &str = "\
name: process-overhead
seed: 7
warmup: 1
repetitions: 4
matrix:
  backend: [mock]
  model: [tiny]
  batch_size: [1]
  prompt_tokens: [16]
  new_tokens: [8]
power:
  source: mock
  mock_watts: 50
";

fn uncommit(run_dir: &RunDir, cell_id: &str) {
    let dir = run_dir.cell_dir(cell_id);
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove the cell");
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario_path = dir.path().join("s.yaml");
    std::fs::write(&scenario_path, SCENARIO).expect("scenario");
    let scenario = Scenario::load(&scenario_path, &Overrides::default()).expect("scenario");
    let plan = Plan::from_scenario(&scenario, "s.yaml");
    let run_path = dir.path().join("run");
    std::fs::create_dir(&run_path).expect("run folder");
    let run_dir = RunDir::for_cells(&run_path).expect("run folder");
    run_dir.write_plan(&plan).expect("plan");
    let plan_file = run_path.join(tcobench::plan::PLAN_FILE);
    let cell_id = plan.cells[0].cell_id.clone();
    let models = run::default_models_dir();

    let mut group = c.benchmark_group("one_mock_cell");
    group.sample_size(30);
    group.bench_function("in_this_process", |b| {
        b.iter(|| {
            uncommit(&run_dir, &cell_id);
            let single = run::run_single_cell(
                &plan,
                0,
                &run_dir,
                &models,
                &CellClockStart::Virtual(0),
                &mut run::KeptBackends::default(),
                &mut |_, _| true,
            )
            .expect("cell runs");
            run_dir.commit_cell(&single.result).expect("commit");
        })
    });
    group.bench_function("in_a_child_process", |b| {
        b.iter(|| {
            uncommit(&run_dir, &cell_id);
            run_cell_child(&plan_file, &models);
        })
    });
    group.finish();
}

fn run_cell_child(plan: &Path, models: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_tcobench"))
        .args(["run-cell", "--index", "0", "--plan"])
        .arg(plan)
        .arg("--models-dir")
        .arg(models)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run-cell starts");
    assert!(status.success());
}

criterion_group!(benches, bench);
criterion_main!(benches);
