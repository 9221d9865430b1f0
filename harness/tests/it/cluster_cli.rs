//! `tcobench emit slurm|k8s` and `tcobench collect`: the jobs are pinned by snapshots and parsed
//! back, and the command each task runs is run here, index by index, as the scheduler would run
//! it; the collected run must hold exactly the cells of a plain `tcobench run`. (A real Slurm
//! runs the same in `tests/slurm/run-single-node.sh`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;
use tcobench::run::writer::RunDir;
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome, CellRecord};

use crate::common::{models_dir, run_scenario, tcobench, write, MOCK};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last line of standard output: the run folder.
fn last_line(out: &Output) -> PathBuf {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    PathBuf::from(stdout.lines().last().expect("a run folder").trim())
}

fn emit(args: &[&str], cwd: &Path) -> PathBuf {
    let out = tcobench(args, cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    last_line(&out)
}

fn collect(run: &Path, cwd: &Path) -> Output {
    tcobench(&["collect", run.to_str().unwrap()], cwd)
}

/// A cell's record without what depends on the process, the moment or where on the run's clock
/// the cell happened to start (a scheduler's tasks run side by side, a plain run one by one).
fn comparable(record: &CellRecord) -> CellRecord {
    let mut r = record.clone();
    r.started_at = None;
    r.ended_at = None;
    r.peak_rss_bytes = None;
    r.window_start_ms = None;
    r.window_end_ms = None;
    r
}

/// `a` equals `b`, numbers to 1e-9 relative: a mock request's energy is the difference of two
/// cumulative readings on the virtual clock, and a task starts its clock at 0 where a plain run's
/// cell starts after the cells before it, so only the last bits of energy figures may differ.
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * y.abs(),
                "{at}: {x}, in the plain run {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_close(v, w, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn requests_without_run_id(run: &Path) -> DataFrame {
    io::read_parquet(&run.join(files::REQUESTS))
        .unwrap()
        .drop("run_id")
        .unwrap()
}

/// The collected run is complete and holds the reference run's cells, outcomes and request rows.
fn assert_same_cells(run: &Path, reference: &Path) {
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    let r = io::read_manifest(&reference.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "complete");
    let ids: Vec<_> = m.cells.iter().map(|c| c.cell_id.as_str()).collect();
    let ref_ids: Vec<_> = r.cells.iter().map(|c| c.cell_id.as_str()).collect();
    assert_eq!(ids, ref_ids);
    for (cell, reference_cell) in m.cells.iter().zip(&r.cells) {
        assert_eq!(cell.status, CellOutcome::Ok, "{}", cell.cell_id);
        assert_close(
            &serde_json::to_value(comparable(cell)).unwrap(),
            &serde_json::to_value(comparable(reference_cell)).unwrap(),
            &cell.cell_id,
        );
    }
    // The mock backend's virtual timings depend on the prompts only: every timing, token count
    // and hash is the reference's.
    let (a, b) = (
        requests_without_run_id(run),
        requests_without_run_id(reference),
    );
    // 4 cells × (1 warm-up + 4 timed requests).
    assert_eq!(a.height(), 20);
    let (a_rest, b_rest) = (a.drop("energy_j").unwrap(), b.drop("energy_j").unwrap());
    assert!(
        a_rest.equals_missing(&b_rest),
        "request rows differ\n{a_rest}\n{b_rest}"
    );
    // Energy to 1e-9 relative (see `assert_close`).
    let energy = |df: &DataFrame| -> Vec<Option<f64>> {
        let column = df.column("energy_j").unwrap().f64().unwrap().clone();
        (0..column.len()).map(|i| column.get(i)).collect()
    };
    for (i, (x, y)) in energy(&a).into_iter().zip(energy(&b)).enumerate() {
        let (x, y) = (x.expect("mock energy"), y.expect("mock energy"));
        assert!(
            (x - y).abs() <= 1e-9 * y.abs() && y > 0.0,
            "request {i}: energy {x} J, in the plain run {y} J"
        );
    }
}

/// Replaces what differs between machines and moments with fixed names.
fn stable(text: &str, replacements: &[(&str, &str)]) -> String {
    let mut s = text.to_string();
    for (from, to) in replacements {
        s = s.replace(from, to);
    }
    s
}

#[test]
fn k8s_job_is_an_indexed_job_whose_command_runs_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", MOCK);
    // The folder the claim is mounted on, here a local folder (with a space, to be quoted).
    let mount = dir.path().join("the volume");
    let exe = env!("CARGO_BIN_EXE_tcobench");
    let run = emit(
        &[
            "emit",
            "k8s",
            scenario.to_str().unwrap(),
            "--out",
            mount.to_str().unwrap(),
            "--image",
            "registry.example/tcobench:0.1",
            "--pvc",
            "bench-results",
            "--mount-path",
            mount.to_str().unwrap(),
            "--tcobench",
            exe,
            "--gpus-per-task",
            "1",
            "--max-parallel",
            "2",
        ],
        dir.path(),
    );
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(run.join("job.yaml")).unwrap();
    insta::assert_snapshot!(
        "k8s_job",
        stable(
            &text,
            &[
                (exe, "[TCOBENCH]"),
                (mount.to_str().unwrap(), "[MOUNT]"),
                (&run_id, "[RUN_ID]"),
                (&run_id.to_ascii_lowercase(), "[run_id]"),
            ]
        )
    );

    // Parsed back: the structure Kubernetes reads.
    let job: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let plan = tcobench::Plan::read(&run.join("plan.json")).unwrap();
    assert_eq!(plan.cells.len(), 4);
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"].as_u64(), Some(4));
    assert_eq!(spec["parallelism"].as_u64(), Some(2));
    assert_eq!(spec["backoffLimit"].as_u64(), Some(4));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "bench-results"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/tcobench:0.1");
    assert_eq!(
        container["resources"]["limits"]["nvidia.com/gpu"].as_u64(),
        Some(1)
    );
    assert_eq!(
        container["volumeMounts"][0]["name"],
        pod["volumes"][0]["name"]
    );
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        name.len() <= 52
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{name}"
    );
    let command: Vec<&str> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["sh", "-c"]);

    // Every completion index, as Kubernetes starts it: the command with JOB_COMPLETION_INDEX.
    for index in 0..plan.cells.len() {
        let out = Command::new(command[0])
            .args(&command[1..])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("TCOBENCH_MODELS_DIR", models_dir())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "index {index}: {}", stderr(&out));
    }
    let out = collect(&run, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_line(&out), run);
    assert!(run.join("report.html").is_file());

    let reference = run_scenario(dir.path(), &scenario);
    assert_same_cells(&run, &reference);

    // No GPU asked for: no GPU limit.
    let cpu = emit(
        &[
            "emit",
            "k8s",
            scenario.to_str().unwrap(),
            "--out",
            dir.path().join("cpu").to_str().unwrap(),
            "--image",
            "tcobench",
        ],
        dir.path(),
    );
    let job: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(cpu.join("job.yaml")).unwrap()).unwrap();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("resources").is_none(), "{container:?}");
    assert_eq!(
        job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "tcobench-results-CHANGEME"
    );
}

#[test]
fn slurm_array_runs_cells_by_task_id_and_collect_lists_the_missing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", MOCK);
    // A shared folder whose path needs quoting, for the shell and for #SBATCH lines alike.
    let shared = dir.path().join("team's shared results");
    let exe = env!("CARGO_BIN_EXE_tcobench");
    let run = emit(
        &[
            "emit",
            "slurm",
            scenario.to_str().unwrap(),
            "--out",
            shared.to_str().unwrap(),
            "--partition",
            "gpu",
            "--gpus-per-task",
            "1",
            "--max-parallel",
            "2",
            "--time-limit-min",
            "30",
        ],
        dir.path(),
    );
    assert!(run.is_absolute());
    assert!(run.join("slurm").is_dir(), "the tasks' log folder exists");
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let script = run.join("submit.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    let canonical_exe = Path::new(exe).canonicalize().unwrap();
    let shared_canonical = shared.canonicalize().unwrap();
    insta::assert_snapshot!(
        "slurm_script",
        stable(
            &text,
            &[
                (canonical_exe.to_str().unwrap(), "[TCOBENCH]"),
                (shared_canonical.to_str().unwrap(), "[SHARED]"),
                (
                    // The same folder inside a quoted word of the shell comment lines.
                    &shared_canonical.to_str().unwrap().replace('\'', r"'\''"),
                    "[SHARED]"
                ),
                (&run_id, "[RUN_ID]"),
            ]
        )
    );

    // Outside an array task, the script says what is missing instead of running a cell.
    let out = Command::new("bash")
        .arg(&script)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SLURM_ARRAY_TASK_ID: is not set"),
        "{}",
        stderr(&out)
    );

    // Array tasks 0, 1 and 3 run (as Slurm runs the script: bash, the index in the
    // environment); task 2 never does.
    let task = |index: usize| {
        let out = Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", index.to_string())
            .env("TCOBENCH_MODELS_DIR", models_dir())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "task {index}: {}", stderr(&out));
    };
    for index in [0, 1, 3] {
        task(index);
    }
    let plan = tcobench::Plan::read(&run.join("plan.json")).unwrap();
    let missing = &plan.cells[2];
    let out = collect(&run, dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("missing cell 2 {}", missing.cell_id)),
        "{err}"
    );
    let listed = |err: &str| {
        err.lines()
            .filter(|l| l.starts_with("missing cell "))
            .count()
    };
    assert_eq!(listed(&err), 1, "{err}");
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "incomplete");
    assert_eq!(m.cells[2].status, CellOutcome::Pending);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains(&missing.cell_id), "the report lists it");
    assert!(report.contains("not committed when collected"));
    let merged = io::read_parquet(&run.join(files::REQUESTS)).unwrap();
    assert_eq!(merged.height(), 15, "three cells' requests are merged");

    // The run folder's own plan: a new array for the cell still missing, in the same folder.
    let again = emit(
        &["emit", "slurm", run.join("plan.json").to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(again, run);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=2\n"), "{text}");
    task(2);
    let out = collect(&run, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = run_scenario(dir.path(), &scenario);
    assert_same_cells(&run, &reference);
}

#[test]
fn emit_and_collect_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", MOCK);
    let out_dir = dir.path().join("results");

    // A cell on the second GPU cannot run in a task given one GPU (this build may lack CUDA,
    // so the plan file says cuda:1 itself); no folder is left behind.
    let plan = tcobench(&["plan", scenario.to_str().unwrap(), "--json"], dir.path());
    assert!(plan.status.success(), "{}", stderr(&plan));
    let mut plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    plan["cells"][3]["device"] = "cuda:1".into();
    let plan_file = write(dir.path(), "gpu-plan.json", &plan.to_string());
    let out = tcobench(
        &[
            "emit",
            "slurm",
            plan_file.to_str().unwrap(),
            "--gpus-per-task",
            "1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cell 3 ") && stderr(&out).contains("--gpus-per-task 2"),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());

    // A broken scenario: located, exit 2.
    let broken = write(
        dir.path(),
        "broken.yaml",
        &MOCK.replace("seed: 7", "seed: seven"),
    );
    let out = tcobench(
        &["emit", "k8s", broken.to_str().unwrap(), "--image", "x"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.yaml:"), "{}", stderr(&out));

    // Not a run folder.
    let out = collect(dir.path(), dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a run folder"),
        "{}",
        stderr(&out)
    );

    // A run folder another process holds.
    let run = emit(
        &[
            "emit",
            "slurm",
            scenario.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    let held = RunDir::open(&run)
        .unwrap()
        .lock_run(std::time::Duration::ZERO)
        .unwrap();
    let out = collect(&run, dir.path());
    drop(held);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another tcobench process"),
        "{}",
        stderr(&out)
    );
    // Released: nothing has run, so every cell is missing.
    let out = collect(&run, dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let listed = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("missing cell "))
        .count();
    assert_eq!(listed, 4, "{}", stderr(&out));
}

/// A task runs its cell with no `tcobench run` to time it, so the scheduler does: the scenario's
/// `cell_timeout_s` (else the default 3600 s) + 600 s for starting the task and loading its
/// model, per Slurm array task and per pod; `--time-limit-min` overrides it for Slurm.
#[test]
fn task_time_limits_come_from_the_scenarios_cell_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let timed = write(
        dir.path(),
        "timed.yaml",
        &format!("{MOCK}cell_timeout_s: 90\n"),
    );
    let plain = write(dir.path(), "plain.yaml", MOCK);
    let out = dir.path().join("results");
    let out = out.to_str().unwrap();
    let slurm = |input: &Path, extra: &[&str]| {
        let mut args = vec!["emit", "slurm", input.to_str().unwrap(), "--out", out];
        args.extend_from_slice(extra);
        let run = emit(&args, dir.path());
        std::fs::read_to_string(run.join("submit.sbatch")).unwrap()
    };
    let time_lines = |script: &str| -> Vec<String> {
        script
            .lines()
            .filter(|l| l.starts_with("#SBATCH --time") || l.starts_with("# --time"))
            .map(str::to_string)
            .collect()
    };

    // 90 s + 600 s = 690 s: 11.5 minutes, rounded up.
    let script = slurm(&timed, &[]);
    assert_eq!(
        time_lines(&script),
        [
            "# --time: the scenario's cell_timeout_s (90 s) + 600 s for starting the task and \
             building or loading its model, in minutes rounded up; past it Slurm kills the task \
             and its cell stays uncommitted (--time-limit-min sets another).",
            "#SBATCH --time=12",
        ],
        "{script}"
    );
    // The directives Slurm reads come before the first command.
    let first_command = script
        .lines()
        .position(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    let time_at = script
        .lines()
        .position(|l| l.starts_with("#SBATCH --time"))
        .unwrap();
    assert!(time_at < first_command, "{script}");
    // The user's limit wins, and needs no explaining.
    assert_eq!(
        time_lines(&slurm(&timed, &["--time-limit-min", "30"])),
        ["#SBATCH --time=30"]
    );
    // No cell_timeout_s: `run`'s default, 3600 s + 600 s = 70 minutes.
    let lines = time_lines(&slurm(&plain, &[]));
    assert_eq!(lines[1], "#SBATCH --time=70");
    assert!(
        lines[0].starts_with(
            "# --time: the default cell timeout (3600 s; the scenario sets no cell_timeout_s)"
        ),
        "{lines:?}"
    );

    // The plan.json of a run folder: the limit of the scenario it was planned from.
    let run = emit(
        &["emit", "slurm", timed.to_str().unwrap(), "--out", out],
        dir.path(),
    );
    std::fs::write(&timed, MOCK).unwrap();
    let again = emit(
        &["emit", "slurm", run.join("plan.json").to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(again, run);
    let script = std::fs::read_to_string(run.join("submit.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --time=12\n"), "{script}");
    std::fs::write(&timed, format!("{MOCK}cell_timeout_s: 90\n")).unwrap();

    // Kubernetes: every pod's own deadline, from its start; the Job as a whole has none.
    let k8s = |input: &Path| {
        let run = emit(
            &[
                "emit",
                "k8s",
                input.to_str().unwrap(),
                "--out",
                out,
                "--image",
                "tcobench",
            ],
            dir.path(),
        );
        std::fs::read_to_string(run.join("job.yaml")).unwrap()
    };
    let text = k8s(&timed);
    let job: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["activeDeadlineSeconds"].as_u64(),
        Some(690),
        "{text}"
    );
    assert!(job["spec"].get("activeDeadlineSeconds").is_none(), "{text}");
    assert!(
        text.contains(
            "# Each pod may run 690 s (activeDeadlineSeconds): the scenario's cell_timeout_s \
             (90 s) + 600 s"
        ),
        "{text}"
    );
    let job: serde_yaml::Value = serde_yaml::from_str(&k8s(&plain)).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["activeDeadlineSeconds"].as_u64(),
        Some(4200)
    );
}
