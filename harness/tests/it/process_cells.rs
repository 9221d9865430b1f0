//! One cell, one process: a child that aborts, exits, hangs or is alone still costs one cell.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome, Manifest};

use crate::common::{models_dir, write, MOCK};

/// Runs the tcobench binary with extra environment variables.
fn tcobench_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcobench"));
    cmd.args(args)
        .current_dir(cwd)
        .env("TCOBENCH_MODELS_DIR", models_dir())
        .env_remove("TCOBENCH_MOCK_FAULT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tcobench runs")
}

/// The run folder a `run` printed last.
fn run_folder(cwd: &Path, out: &Output) -> PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    cwd.join(stdout.lines().last().expect("the run folder is printed"))
}

fn manifest(run: &Path) -> Manifest {
    io::read_manifest(&run.join(files::MANIFEST)).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The merged requests without the run id (which differs between runs by design).
fn requests_without_run_id(run: &Path) -> DataFrame {
    io::read_parquet(&run.join(files::REQUESTS))
        .unwrap()
        .drop("run_id")
        .unwrap()
}

#[test]
fn a_cell_that_aborts_costs_that_cell_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let out = tcobench_env(
        &["run", s.to_str().unwrap(), "--out", "res", "--no-log"],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "1:abort")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let run = run_folder(dir.path(), &out);
    let m = manifest(&run);
    assert_eq!(m.status, "incomplete");
    let statuses: Vec<_> = m.cells.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            CellOutcome::Ok,
            CellOutcome::Failed,
            CellOutcome::Ok,
            CellOutcome::Ok
        ]
    );
    let error = m.cells[1].error.as_deref().unwrap();
    assert!(
        error.starts_with("run-cell was killed by signal 6 (SIGABRT"),
        "{error}"
    );
    assert!(
        error.contains("standard error") && error.contains("TCOBENCH_MOCK_FAULT: Abort"),
        "the last stderr lines are kept: {error}"
    );
    // The failure is committed like any failed cell, so the folder has every cell.
    let status = std::fs::read_to_string(
        run.join(files::CELLS)
            .join(&m.cells[1].cell_id)
            .join(files::CELL_STATUS),
    )
    .unwrap();
    assert!(status.contains("SIGABRT"), "{status}");
    // The other cells' requests are all there; the aborted one's are not.
    let req = io::read_parquet(&run.join(files::REQUESTS)).unwrap();
    assert_eq!(req.height(), 3 * 5);
    let md = std::fs::read_to_string(run.join(files::REPORT_MD)).unwrap();
    assert!(md.contains(&m.cells[1].cell_id), "the report lists it");
    assert!(
        stderr(&out).contains("SIGABRT"),
        "the user is told: {}",
        stderr(&out)
    );
}

#[test]
fn a_cell_that_exits_or_hangs_is_recorded_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let out = tcobench_env(
        &["run", s.to_str().unwrap(), "--out", "exit", "--no-log"],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "2:exit")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let m = manifest(&run_folder(dir.path(), &out));
    assert_eq!(m.cells[2].status, CellOutcome::Failed);
    assert!(
        m.cells[2]
            .error
            .as_deref()
            .unwrap()
            .starts_with("run-cell exited with code 101"),
        "{:?}",
        m.cells[2].error
    );
    assert_eq!(
        m.cells
            .iter()
            .filter(|c| c.status == CellOutcome::Ok)
            .count(),
        3
    );

    let started = std::time::Instant::now();
    let out = tcobench_env(
        &[
            "run",
            s.to_str().unwrap(),
            "--out",
            "hang",
            "--no-log",
            "--cell-timeout-s",
            "1.5",
        ],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "0:hang")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(started.elapsed().as_secs_f64() < 30.0);
    let m = manifest(&run_folder(dir.path(), &out));
    assert_eq!(m.cells[0].status, CellOutcome::Failed);
    let error = m.cells[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1.5 s"),
        "{error}"
    );
    assert!(m.cells[1..].iter().all(|c| c.status == CellOutcome::Ok));

    // The scenario's `cell_timeout_s` applies when the command line gives none.
    let timed = write(
        dir.path(),
        "timed.yaml",
        &format!("{MOCK}cell_timeout_s: 1.25\n"),
    );
    let out = tcobench_env(
        &["run", timed.to_str().unwrap(), "--out", "hang2", "--no-log"],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "1:hang")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let m = manifest(&run_folder(dir.path(), &out));
    let error = m.cells[1].error.as_deref().unwrap();
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1.25 s"),
        "{error}"
    );
}

/// A cell that keeps reporting progress (a request every 30 ms) must still be stopped by its
/// timeout: the parent checks it after every message, not only when the child is quiet.
#[test]
fn a_busy_cell_past_its_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "busy.yaml",
        &MOCK
            .replace("repetitions: 4", "repetitions: 200")
            .replace("model: [tiny, small]", "model: [tiny]"),
    );
    let started = std::time::Instant::now();
    let out = tcobench_env(
        &[
            "run",
            s.to_str().unwrap(),
            "--out",
            "busy",
            "--no-log",
            "--cell-timeout-s",
            "1",
        ],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "0:slow-30")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // 201 requests × 30 ms would take 6 s; the timeout ends the cell after about 1 s.
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "{:?}",
        started.elapsed()
    );
    let m = manifest(&run_folder(dir.path(), &out));
    assert_eq!(m.cells[0].status, CellOutcome::Failed);
    let error = m.cells[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1 s"),
        "{error}"
    );
    assert_eq!(
        m.cells[1].status,
        CellOutcome::Ok,
        "the next cell gets a new child"
    );
}

#[test]
fn cells_in_processes_measure_what_cells_in_one_process_measure() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let run = |extra: &[&str], out_dir: &str| {
        let mut args = vec!["run", s.to_str().unwrap(), "--out", out_dir, "--no-log"];
        args.extend_from_slice(extra);
        let out = tcobench_env(&args, dir.path(), &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        run_folder(dir.path(), &out)
    };
    let children = run(&[], "children");
    let one = run(&["--in-process"], "one");
    // The mock backend runs on a virtual clock the children continue from their parent's
    // reading, so every figure is the same, timeline included.
    assert!(requests_without_run_id(&children).equals_missing(&requests_without_run_id(&one)));
    let (a, b) = (manifest(&children), manifest(&one));
    assert_eq!(a.cells.len(), b.cells.len());
    for (x, y) in a.cells.iter().zip(&b.cells) {
        let mut x = x.clone();
        x.started_at = y.started_at.clone();
        x.ended_at = y.ended_at.clone();
        x.peak_rss_bytes = y.peak_rss_bytes;
        assert_eq!(&x, y);
    }
    assert!(children.join(tcobench::plan::PLAN_FILE).is_file());
}

#[test]
fn run_cell_alone_commits_one_cell_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let out = tcobench_env(&["plan", s.to_str().unwrap(), "--json"], dir.path(), &[]);
    assert!(out.status.success());
    let run = dir.path().join("by-hand");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("plan.json"), &out.stdout).unwrap();
    let args = ["run-cell", "--plan", "by-hand/plan.json", "--index", "3"];
    let out = tcobench_env(&args, dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        events
            .lines()
            .filter(|l| l.starts_with("tcobench-cell "))
            .count(),
        6,
        "5 requests and the end: {events}"
    );
    assert!(events.lines().last().unwrap().contains("\"finished\""));
    let cells: Vec<_> = std::fs::read_dir(run.join(files::CELLS))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cells.len(), 1);
    assert!(cells[0].starts_with("mock-small-f32-cpu-b2"), "{cells:?}");
    let req =
        io::read_parquet(&run.join(files::CELLS).join(&cells[0]).join(files::REQUESTS)).unwrap();
    assert_eq!(req.height(), 5);

    // Again: already committed, nothing changes.
    let out = tcobench_env(&args, dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already committed"),
        "{}",
        stderr(&out)
    );

    let out = tcobench_env(
        &["run-cell", "--plan", "by-hand/plan.json", "--index", "4"],
        dir.path(),
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no index 4"), "{}", stderr(&out));
}

/// A `run-cell --serve` child whose input ends right after its cell's `finished` event (as
/// `run` closes a child it has no more cells for) is idle: it exits 0, never with the code of a
/// child orphaned in the middle of a cell (125), whose exit would also run the native runtimes'
/// global teardown beside the cell. Closed in the middle of a cell, it exits 125 at once and
/// commits nothing.
#[test]
fn a_serving_child_closed_after_its_cell_exits_cleanly() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "s.yaml", MOCK);
    let plan = tcobench_env(&["plan", s.to_str().unwrap(), "--json"], dir.path(), &[]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let serve = |round: usize, fault: Option<&str>| {
        let run = dir.path().join(format!("run{round}"));
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("plan.json"), &plan.stdout).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcobench"));
        cmd.args(["run-cell", "--plan", "plan.json", "--supervised", "--serve"])
            .current_dir(&run)
            .env("TCOBENCH_MODELS_DIR", models_dir())
            .env_remove("TCOBENCH_MOCK_FAULT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(f) = fault {
            cmd.env("TCOBENCH_MOCK_FAULT", f);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"run 0\n").unwrap();
        stdin.flush().unwrap();
        (run, child, stdin)
    };
    let wait_for = |child: &mut std::process::Child, event: &str| {
        let stdout = BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            if line.unwrap().contains(event) {
                return;
            }
        }
        panic!("no {event} event");
    };
    // The end of input races with the child's own bookkeeping after the event: many rounds.
    for round in 0..20 {
        let (_, mut child, stdin) = serve(round, None);
        wait_for(&mut child, "\"finished\"");
        drop(stdin);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
    }
    // Mid-cell: the parent is gone.
    let (run, mut child, stdin) = serve(20, Some("0:slow-300"));
    wait_for(&mut child, "\"request\"");
    drop(stdin);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(125), "{status:?}");
    let cells = std::fs::read_dir(run.join(files::CELLS)).map_or(0, |d| d.count());
    assert_eq!(cells, 0, "nothing is committed");
}
