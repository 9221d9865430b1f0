//! `tcobench collect RUN_DIR`: merges the cells a scheduler's tasks committed, analyses and
//! reports, as `tcobench run` does after its last cell.
//!
//! The run folder is one that `tcobench emit` prepared (any run folder with a `plan.json` will
//! do). The cells of its plan that are committed go into the manifest, `requests.parquet` and
//! `power.parquet`; the others are recorded not run, with why, and listed by index and id on
//! standard error and in the report. The folder is taken like `run --resume` takes it, so two
//! collects, or a collect and a resume, never write it at once; tasks still running their cells
//! are not waited for (collect again once they are done, or `tcobench run --resume RUN_DIR`
//! finishes the missing cells here).
//!
//! Prints the run folder last on standard output. Exit codes: `0` every cell ok; `3` a cell
//! failed or is missing (as `tcobench run`); `2` not a run folder, or one another tcobench
//! process holds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome};

use crate::commands::emit::slurm::SLURM_LOGS;
use crate::plan::{Plan, PLAN_FILE};
use crate::run::writer::RunDir;
use crate::run::{analyze_and_report, merge_cells, pending_record};

use crate::commands::EXIT_BAD_INPUT;

/// Exit code when a cell failed or is missing.
pub const EXIT_INCOMPLETE: u8 = crate::run::process::EXIT_CELL_FAILED;

/// The error recorded for a cell that no task committed.
pub const NOT_COMMITTED: &str = "not committed when collected: its task has not run, is still \
                                 running, or died before committing";

/// `tcobench collect` options.
#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// Run folder (prepared by `tcobench emit`, or any run folder with a plan.json).
    pub run_dir: PathBuf,
}

fn bad(msg: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// The Slurm task logs of cell `index` in the run folder, newest last.
fn slurm_logs(run_dir: &Path, index: usize) -> Vec<PathBuf> {
    let suffix = format!("_{index}.err");
    let Ok(entries) = std::fs::read_dir(run_dir.join(SLURM_LOGS)) else {
        return Vec::new();
    };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(&suffix)))
        .map(|e| {
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, p)| p).collect()
}

/// Runs `tcobench collect`, printing the run folder on `out`.
pub fn run(args: &CollectArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let path = &args.run_dir;
    for file in [files::MANIFEST, PLAN_FILE] {
        if !path.join(file).is_file() {
            return bad(format!(
                "{} is not a run folder (it has no {file}; `tcobench emit` prepares one)",
                path.display()
            ));
        }
    }
    let plan = match Plan::read(&path.join(PLAN_FILE)) {
        Ok(p) => p,
        Err(e) => return bad(format!("{e:#}")),
    };
    let run_dir = RunDir::open(path)?;
    let _run_lock = match run_dir.lock_run(Duration::from_secs(3)) {
        Ok(l) => l,
        Err(e) => return bad(format!("{e:#}")),
    };
    let mut manifest = match io::read_manifest(&path.join(files::MANIFEST)) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let committed = run_dir.committed_ids()?;
    let mut cells = Vec::with_capacity(plan.cells.len());
    for c in &plan.cells {
        if committed.contains(&c.cell_id) {
            match run_dir.read_cell_status(&c.cell_id) {
                Ok(r) => cells.push(r),
                Err(e) => return bad(format!("committed cell {}: {e:#}", c.cell_id)),
            }
        } else {
            let mut r = pending_record(c);
            let mut why = NOT_COMMITTED.to_string();
            if let Some(log) = slurm_logs(path, c.index).last() {
                why.push_str(&format!(" (its Slurm task's log: {})", log.display()));
            }
            r.error = Some(why);
            cells.push(r);
        }
    }
    manifest.cells = cells;
    let complete = manifest.cells.iter().all(|c| c.status == CellOutcome::Ok);
    manifest.status = if complete { "complete" } else { "incomplete" }.into();
    manifest.ended_at = Some(chrono::Utc::now().to_rfc3339());
    merge_cells(&run_dir, &mut manifest)?;
    let stats = analyze_and_report(&run_dir.path)?;

    let missing = manifest
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Pending)
        .count();
    for c in manifest
        .cells
        .iter()
        .filter(|c| c.status != CellOutcome::Ok)
    {
        let what = match c.status {
            CellOutcome::Pending => "missing",
            CellOutcome::Skipped => "skipped",
            _ => "failed",
        };
        let error = c.error.as_deref().unwrap_or("unknown");
        eprintln!(
            "{what} cell {} {}: {}",
            c.index,
            c.cell_id,
            error.lines().next().unwrap_or(error)
        );
    }
    eprintln!(
        "collected {} of {} cells ({missing} missing)",
        committed
            .iter()
            .filter(|id| plan.cells.iter().any(|c| &c.cell_id == *id))
            .count(),
        plan.cells.len()
    );
    if missing > 0 {
        eprintln!(
            "finish the missing cells here with `tcobench run --resume {}`, or resubmit them",
            path.display()
        );
    }
    eprintln!("{}", stats.headline());
    writeln!(out, "{}", path.display())?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}
