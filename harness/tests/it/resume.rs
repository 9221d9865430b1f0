//! Crash-safe and resumable: runs killed with SIGKILL at random moments, or stopped by Ctrl-C,
//! and resumed, end with exactly the cells of an uninterrupted run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tcobench::run::writer::{RunDir, RUN_LOCK, WRITERS_LOCK};
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome, CellRecord, Manifest};

use crate::common::{models_dir, write, MOCK};

/// 20 mock cells (1 model × 5 batch sizes × 4 prompt lengths), 1 warm-up + 3 timed requests.
fn twenty_cells() -> String {
    MOCK.replace("model: [tiny, small]", "model: [tiny]")
        .replace("batch_size: [1, 2]", "batch_size: [1, 2, 3, 4, 5]")
        .replace("prompt_tokens: [16]", "prompt_tokens: [4, 8, 16, 32]")
        .replace("repetitions: 4", "repetitions: 3")
}

const REQUESTS_PER_CELL: usize = 4;

fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcobench"));
    cmd.args(args)
        .current_dir(cwd)
        .env("TCOBENCH_MODELS_DIR", models_dir())
        .env_remove("TCOBENCH_MOCK_FAULT");
    cmd
}

/// Starts tcobench in a process group of its own, so that it and its cells can be killed
/// together.
fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = command(args, cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcobench starts")
}

fn signal(pid: u32, sig: &str, whole_group: bool) {
    let target = if whole_group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    // The process may be gone already; that is fine.
    let _ = Command::new("kill")
        .args([sig, "--", &target])
        .stderr(Stdio::null())
        .status();
}

/// `kill -9` of the whole process group: the run and the cell in flight.
fn kill_group(mut child: Child) {
    // A run that already ended has no group left (and its id may be reused).
    if child.try_wait().unwrap().is_none() {
        signal(child.id(), "-KILL", true);
    }
    let _ = child.wait();
}

/// Processes of group `pgid` still running (zombies waiting to be reaped do not count).
fn live_members(pgid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid pgrp …`
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .count()
}

/// `kill -9` of the run alone: the cell in flight loses its parent and must go at once.
fn kill_parent_only(mut child: Child) {
    let pgid = child.id();
    if child.try_wait().unwrap().is_some() {
        return;
    }
    signal(pgid, "-KILL", false);
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while live_members(pgid) > 0 {
        assert!(Instant::now() < deadline, "a cell outlived its run by 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn resume(run: &Path, cwd: &Path) -> Output {
    command(&["run", "--resume", run.to_str().unwrap(), "--no-log"], cwd)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The only run folder under `out`, if one was created.
fn the_run(out: &Path) -> Option<PathBuf> {
    let mut runs: Vec<_> = std::fs::read_dir(out)
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    assert!(runs.len() <= 1, "{runs:?}");
    runs.pop()
}

fn committed(run: &Path) -> usize {
    RunDir {
        path: run.to_path_buf(),
        run_id: String::new(),
    }
    .committed_ids()
    .unwrap()
    .len()
}

/// A cell's record without what depends on the process or the moment (wall-clock times, memory).
fn comparable(record: &CellRecord) -> CellRecord {
    let mut r = record.clone();
    r.started_at = None;
    r.ended_at = None;
    r.peak_rss_bytes = None;
    r
}

fn requests_without_run_id(run: &Path) -> DataFrame {
    io::read_parquet(&run.join(files::REQUESTS))
        .unwrap()
        .drop("run_id")
        .unwrap()
}

/// The run is complete, every cell folder is whole, and its figures equal the reference run's.
fn assert_same_cells(run: &Path, reference: &Path, what: &str) {
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    let r = io::read_manifest(&reference.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "complete", "{what}");
    let ids: Vec<_> = m.cells.iter().map(|c| c.cell_id.as_str()).collect();
    let ref_ids: Vec<_> = r.cells.iter().map(|c| c.cell_id.as_str()).collect();
    assert_eq!(ids, ref_ids, "{what}: same cells in the same order");
    // Exactly one folder per cell: none missing, none duplicated, nothing half-written left.
    let mut on_disk: Vec<String> = std::fs::read_dir(run.join(files::CELLS))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = ref_ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(on_disk, expected, "{what}");
    let rd = RunDir {
        path: run.to_path_buf(),
        run_id: String::new(),
    };
    for (cell, reference_cell) in m.cells.iter().zip(&r.cells) {
        assert_eq!(cell.status, CellOutcome::Ok, "{what}: {}", cell.cell_id);
        let status = rd.read_cell_status(&cell.cell_id).unwrap();
        assert_eq!(&status, cell, "{what}: manifest = status.json");
        assert_eq!(comparable(cell), comparable(reference_cell), "{what}");
        let dir = rd.cell_dir(&cell.cell_id);
        let req = io::read_parquet(&dir.join(files::REQUESTS)).unwrap();
        assert_eq!(req.height(), REQUESTS_PER_CELL, "{what}: {}", cell.cell_id);
        io::read_parquet(&dir.join(files::POWER)).unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.') && ![RUN_LOCK, WRITERS_LOCK].contains(&n.as_str()))
        .collect();
    assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    // The mock backend runs on a virtual clock: every timing, energy and hash is reproducible.
    let (a, b) = (
        requests_without_run_id(run),
        requests_without_run_id(reference),
    );
    assert_eq!(a.height(), 20 * REQUESTS_PER_CELL, "{what}");
    assert!(
        a.equals_missing(&b),
        "{what}: request rows differ\n{a}\n{b}"
    );
}

fn reference_run(dir: &Path, scenario: &Path) -> (PathBuf, Duration) {
    let started = Instant::now();
    let out = command(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "reference",
            "--no-log",
        ],
        dir,
    )
    .output()
    .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    (the_run(&dir.join("reference")).unwrap(), took)
}

#[test]
fn runs_killed_at_random_moments_resume_to_the_uninterrupted_cells() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "twenty.yaml", &twenty_cells());
    let (reference, took) = reference_run(dir.path(), &scenario);
    // A kill lands after a random number of committed cells plus a random part of a cell's
    // time, so it finds the run at every stage: starting, between cells, inside a cell,
    // committing one.
    let m = io::read_manifest(&reference.join(files::MANIFEST)).unwrap();
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let cells_ms = (at(m.cells.last().unwrap().ended_at.as_deref().unwrap()) - at(&m.started_at))
        .num_milliseconds();
    let cell_us = u64::try_from(cells_ms * 1000 / 20).unwrap_or(0).max(1000);
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let (mut part_way, mut before_start, mut killed_twice) = (0, 0, 0);
    let trials = 12;
    for trial in 0..trials {
        let out = dir.path().join(format!("trial{trial}"));
        let after_cells = rng.random_range(0..20);
        let delay = Duration::from_micros(rng.random_range(0..=cell_us));
        let mut child = start(
            &[
                "run",
                scenario.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--no-log",
            ],
            dir.path(),
            &[],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
            && the_run(&out).is_none_or(|run| committed(&run) < after_cells)
        {
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(delay);
        // Mostly the whole group; every third trial the run alone, whose cell must notice.
        if trial % 3 == 2 {
            kill_parent_only(child);
        } else {
            kill_group(child);
        }
        let Some(run) = the_run(&out) else {
            before_start += 1;
            continue;
        };
        if !run.join(files::MANIFEST).is_file() || !run.join("plan.json").is_file() {
            // Killed before the run began: there is nothing to resume, and it says so.
            let o = resume(&run, dir.path());
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            assert!(stderr(&o).contains("cannot resume"), "{}", stderr(&o));
            before_start += 1;
            continue;
        }
        let n = committed(&run);
        if n < 20 {
            part_way += 1;
        }
        // Every other trial kills the resumed run as well.
        if trial % 2 == 1 && n < 20 {
            let child = start(
                &["run", "--resume", run.to_str().unwrap(), "--no-log"],
                dir.path(),
                &[],
            );
            std::thread::sleep(Duration::from_micros(rng.random_range(0..=cell_us * 5)));
            kill_group(child);
            killed_twice += 1;
        }
        let o = resume(&run, dir.path());
        assert!(
            o.status.success(),
            "trial {trial}: resume failed: {}",
            stderr(&o)
        );
        assert_same_cells(&run, &reference, &format!("trial {trial}"));
    }
    eprintln!(
        "{trials} trials: {part_way} killed part-way ({killed_twice} killed again while \
         resuming), {before_start} before the run began; reference run {took:?}, its cells {cells_ms} ms"
    );
    assert!(
        part_way >= trials / 2,
        "too few kills landed inside the run: {part_way}"
    );
}

#[test]
fn ctrl_c_stops_after_the_request_in_flight_and_a_second_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "twenty.yaml", &twenty_cells());
    let (reference, _) = reference_run(dir.path(), &scenario);
    let wait_for = |run_out: &Path, cells: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(run) = the_run(run_out) {
                if committed(&run) >= cells {
                    return run;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the run never got to {cells} cells"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // Cell 3 takes 300 ms per request; a Ctrl-C sent to the run (not to its cell) while cell 3
    // is in flight stops it after the request in flight.
    let out = dir.path().join("once");
    let child = start(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-log",
        ],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "3:slow-300")],
    );
    let run = wait_for(&out, 3);
    std::thread::sleep(Duration::from_millis(400));
    signal(child.id(), "-INT", false);
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let m: Manifest = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "incomplete");
    assert_eq!(committed(&run), 3, "cell 3 is not committed");
    assert_eq!(m.cells[3].status, CellOutcome::Pending);
    let why = m.cells[3].error.as_deref().unwrap();
    assert!(why.starts_with("interrupted by Ctrl-C after "), "{why}");
    assert!(m.cells[4..]
        .iter()
        .all(|c| c.status == CellOutcome::Pending && c.error.is_none()));
    let o = resume(&run, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_cells(&run, &reference, "after one Ctrl-C");

    // Cell 1 never finishes: the first Ctrl-C cannot stop it, the second kills it.
    let out = dir.path().join("twice");
    let child = start(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-log",
        ],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "1:hang")],
    );
    let run = wait_for(&out, 1);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "-INT", false);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "-INT", false);
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(10));
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.status, "incomplete");
    assert_eq!(committed(&run), 1);
    assert_eq!(m.cells[1].status, CellOutcome::Pending);
    assert!(m.cells[1].error.as_deref().unwrap().contains("Ctrl-C"));
    let o = resume(&run, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_cells(&run, &reference, "after two Ctrl-C");
}

#[test]
fn resume_refuses_a_changed_scenario_or_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", MOCK);
    let (run, _) = reference_run(dir.path(), &scenario);
    // A complete run resumes to itself.
    let o = resume(&run, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));

    // Another batch size: other cells.
    std::fs::write(&scenario, MOCK.replace("[1, 2]", "[1, 3]")).unwrap();
    let o = resume(&run, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("now resolves to a different plan"),
        "{}",
        stderr(&o)
    );
    // Same cells, another power figure: the energy would not be comparable.
    std::fs::write(&scenario, MOCK.replace("mock_watts: 50", "mock_watts: 60")).unwrap();
    let o = resume(&run, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("power.mock_watts"), "{}", stderr(&o));

    // Another tcobench version recorded.
    std::fs::write(&scenario, MOCK).unwrap();
    let path = run.join(files::MANIFEST);
    let mut m = io::read_manifest(&path).unwrap();
    m.versions.insert("tcobench".into(), "0.0.1".into());
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let o = resume(&run, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tcobench 0.0.1 →"), "{}", stderr(&o));

    // A run still going: its folder is not resumed under it.
    let out = dir.path().join("busy");
    let child = start(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-log",
        ],
        dir.path(),
        &[("TCOBENCH_MOCK_FAULT", "0:hang")],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        if let Some(run) = the_run(&out)
            .filter(|r| r.join("plan.json").is_file() && r.join(files::MANIFEST).is_file())
        {
            break run;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    let o = resume(&busy, dir.path());
    kill_group(child);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another tcobench process is running"),
        "{}",
        stderr(&o)
    );

    // Not a run folder.
    let o = resume(dir.path(), dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot resume"), "{}", stderr(&o));
}

/// `--resume` with a deadline: a run that takes longer than `limit` is killed (with its cells)
/// and the test fails, instead of waiting for a default cell timeout of an hour.
fn resume_within(run: &Path, cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "run",
        "--resume",
        run.to_str().unwrap(),
        "--no-log",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let child = start(&args, cwd, env);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    loop {
        if let Ok(out) = rx.recv_timeout(Duration::from_millis(50)) {
            return out;
        }
        if Instant::now() > deadline {
            signal(pid, "-KILL", true);
            panic!("the resumed run was still going after 120 s: its cell timeout was not applied");
        }
    }
}

/// A run folder prepared by `emit` (every cell pending) for `scenario`.
fn prepared_run(dir: &Path, scenario: &Path, out: &str) -> PathBuf {
    let o = command(
        &[
            "emit",
            "slurm",
            scenario.to_str().unwrap(),
            "--out",
            out,
            "--time-limit-min",
            "5",
        ],
        dir,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    PathBuf::from(stdout.lines().last().unwrap())
}

/// The error recorded for cell `index` of a run.
fn cell_error(run: &Path, index: usize) -> String {
    let m = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    assert_eq!(m.cells[index].status, CellOutcome::Failed, "{:?}", m.cells);
    m.cells[index].error.clone().unwrap()
}

/// The resumed cells get the limit a fresh run would: `--cell-timeout-s`, else the scenario's
/// `cell_timeout_s` (as the scenario file says now), else the default.
#[test]
fn resumed_cells_keep_the_scenarios_cell_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "timed.yaml",
        &format!("{MOCK}cell_timeout_s: 1.25\n"),
    );
    let hang = [("TCOBENCH_MOCK_FAULT", "1:hang")];

    // The scenario's limit.
    let run = prepared_run(dir.path(), &scenario, "a");
    let o = resume_within(&run, dir.path(), &[], &hang);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let error = cell_error(&run, 1);
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1.25 s"),
        "{error}"
    );
    assert!(
        !stderr(&o).contains("cell_timeout_s changed"),
        "{}",
        stderr(&o)
    );

    // The command line's, over the scenario's.
    let run = prepared_run(dir.path(), &scenario, "b");
    let o = resume_within(&run, dir.path(), &["--cell-timeout-s", "1.5"], &hang);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let error = cell_error(&run, 1);
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1.5 s"),
        "{error}"
    );

    // The scenario file changed its limit since the run began: the new one, with a note.
    let run = prepared_run(dir.path(), &scenario, "c");
    std::fs::write(&scenario, format!("{MOCK}cell_timeout_s: 1.75\n")).unwrap();
    let o = resume_within(&run, dir.path(), &[], &hang);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let error = cell_error(&run, 1);
    assert!(
        error.starts_with("run-cell exceeded the cell timeout of 1.75 s"),
        "{error}"
    );
    assert!(
        stderr(&o).contains("cell_timeout_s changed from 1.25 s to 1.75 s"),
        "{}",
        stderr(&o)
    );
}
