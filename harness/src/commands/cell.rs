//! `tcobench run-cell --plan PLAN --index I`: one cell of a plan, in a process of its own.
//!
//! This is the primitive every way of running a plan shares: `tcobench run` starts one per cell,
//! and a scheduler's array job can do the same. It loads the cell's backend, runs the agreement
//! gate and the requests, samples power while the cell runs, and commits `cells/<cell-id>/` in
//! the run folder atomically. A cell that is already committed is left as it is.
//!
//! Progress goes to standard output as `tcobench-cell {json}` lines (see
//! [`crate::run::process::CellEvent`]). SIGINT or SIGTERM asks the cell to stop after the request
//! in flight: nothing is committed and the exit status is 130; a second one exits at once.
//!
//! For tests only, `TCOBENCH_MOCK_FAULT=INDEX:KIND` makes the mock backend's cell number INDEX
//! misbehave after its first request, so that the harness's handling of dying cells can be
//! exercised without a broken native library. KIND is `abort` (SIGABRT), `exit` (exit code 101
//! without committing), `hang` (never finishes), or `slow-MS` (every request of the cell takes MS
//! more milliseconds of wall time). Cells of real backends ignore it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tcobench_results::io;
use tcobench_results::schema::{self, files};

use crate::plan::Plan;
use crate::run::process::{CellEvent, EXIT_INTERRUPTED};
use crate::run::writer::RunDir;
use crate::run::{default_models_dir, run_single_cell, CellClockStart, KeptBackends};
use crate::scenario::BackendKind;

/// The test-only fault-injection variable (see the module documentation).
pub const MOCK_FAULT_ENV: &str = "TCOBENCH_MOCK_FAULT";

/// Exit status of a supervised child whose parent went away.
const EXIT_ORPHANED: u8 = 125;

/// `tcobench run-cell` options.
#[derive(clap::Args, Debug)]
pub struct RunCellArgs {
    /// The plan file (`plan.json` of a run folder, or `tcobench plan --json` output).
    #[arg(long)]
    plan: PathBuf,
    /// The cell to run: its index in the plan (0-based).
    #[arg(long, required_unless_present = "serve")]
    index: Option<usize>,
    /// The run folder to commit the cell into (default: the folder holding the plan).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Where built-in models are generated and cached.
    #[arg(long, env = "TCOBENCH_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Standard input is the controlling `tcobench run`: `stop` asks for a stop after the
    /// request in flight; end of file means it died, and this process exits at once.
    #[arg(long, hide = true)]
    supervised: bool,
    /// The virtual clock's reading to start from (runs on the mock backend's virtual clock).
    #[arg(long, hide = true)]
    virtual_start_ns: Option<u64>,
    /// Run the cells the controlling `tcobench run` names on standard input, one after the
    /// other, keeping the model loaded between them: lines `run INDEX [VIRTUAL_START_NS]`, and
    /// `stop`; end of file while idle ends the process, while a cell runs it exits at once.
    #[arg(long, hide = true, requires = "supervised", conflicts_with = "index")]
    serve: bool,
}

/// How standard input drives this process.
enum Stdin {
    /// Not read.
    Ignored,
    /// `stop` lines; end of file means the parent died.
    Supervised,
    /// `run INDEX [NS]` lines go to the sender; `stop` lines; end of file ends the process at
    /// once while `busy`, else closes the sender.
    Serve {
        cells: std::sync::mpsc::Sender<(usize, Option<u64>)>,
        /// Cells received and not yet done.
        pending: Arc<std::sync::atomic::AtomicUsize>,
    },
}

/// Parses a `run INDEX [NS]` line.
fn parse_run(line: &str) -> Option<(usize, Option<u64>)> {
    let mut words = line.split_whitespace();
    if words.next()? != "run" {
        return None;
    }
    let index = words.next()?.parse().ok()?;
    let ns = match words.next() {
        Some(w) => Some(w.parse().ok()?),
        None => None,
    };
    words.next().is_none().then_some((index, ns))
}

/// What `TCOBENCH_MOCK_FAULT` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Abort,
    Exit,
    Hang,
    Slow(u64),
}

fn parse_fault(value: &str) -> Option<(usize, Fault)> {
    let (index, kind) = value.split_once(':')?;
    let fault = match kind {
        "abort" => Fault::Abort,
        "exit" => Fault::Exit,
        "hang" => Fault::Hang,
        _ => Fault::Slow(kind.strip_prefix("slow-")?.parse().ok()?),
    };
    Some((index.trim().parse().ok()?, fault))
}

fn inject(fault: Fault, done: u64) {
    if done == 1 {
        eprintln!("{MOCK_FAULT_ENV}: {fault:?} after the first request");
    }
    match fault {
        Fault::Abort if done == 1 => std::process::abort(),
        Fault::Exit if done == 1 => std::process::exit(101),
        Fault::Hang if done == 1 => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Fault::Slow(ms) => std::thread::sleep(Duration::from_millis(ms)),
        _ => {}
    }
}

fn emit(event: &CellEvent) {
    let mut out = std::io::stdout().lock();
    // A parent that stopped listening is noticed through standard input, not here.
    let _ = writeln!(out, "{}", event.line()).and_then(|()| out.flush());
}

/// Installs the stop flag: SIGINT/SIGTERM set it (a second one exits at once) and, when
/// supervised, so does a `stop` line on standard input.
fn stop_flag(stdin: Stdin) -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // The shutdown must be registered first: it fires only once the flag is already set.
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, stop.clone())
            .context("installing the signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handlers")?;
    }
    if matches!(stdin, Stdin::Ignored) {
        return Ok(stop);
    }
    let flag = stop.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => flag.store(true, Ordering::SeqCst),
                Ok(l) => {
                    if let (Stdin::Serve { cells, pending }, Some(cell)) = (&stdin, parse_run(&l)) {
                        // Counted and the stop flag cleared before the cell is handed on, so
                        // an end of input or a `stop` right after it is never lost.
                        pending.fetch_add(1, Ordering::SeqCst);
                        flag.store(false, Ordering::SeqCst);
                        let _ = cells.send(cell);
                    }
                }
                Err(_) => break,
            }
        }
        if let Stdin::Serve { pending, .. } = &stdin {
            if pending.load(Ordering::SeqCst) == 0 {
                // Idle: the parent has no more cells for us; dropping the sender ends the loop.
                return;
            }
        }
        // The parent is gone (killed, perhaps): a cell nobody will account for is not
        // committed; `run --resume` runs it again. At once, without the native runtimes'
        // global teardown, which would run beside the cell in flight, and without flushing
        // standard output, whose lock the main thread holds (and nobody reads it any more).
        #[allow(unsafe_code)]
        // SAFETY: `_exit` only ends the process.
        unsafe {
            libc::_exit(i32::from(EXIT_ORPHANED))
        }
    });
    Ok(stop)
}

/// What became of one cell.
enum Outcome {
    /// It was committed before; nothing was done.
    AlreadyCommitted,
    /// It stopped part-way on request; nothing was committed.
    Stopped,
    /// It ran and is committed with this status.
    Committed(schema::CellOutcome),
}

/// What every cell of this process shares.
struct Shared<'a> {
    plan: &'a Plan,
    plan_path: &'a Path,
    run_dir: &'a RunDir,
    models_dir: &'a Path,
    /// The run's start (RFC 3339), for cells on wall time.
    run_started: Option<String>,
    stop: &'a AtomicBool,
    supervised: bool,
    /// `--serve`: the cells received and not yet answered, counted down before a cell's last
    /// event goes out, so that an end of input after that event finds this process idle.
    pending: Option<&'a std::sync::atomic::AtomicUsize>,
}

impl Shared<'_> {
    /// The cell in flight is over (committed, or stopped): its last event may go out.
    fn answered(&self) {
        if let Some(p) = self.pending {
            p.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Runs one cell of a plan and commits it; `virtual_start_ns`: the parent's virtual clock.
fn one_cell(
    cx: &Shared<'_>,
    index: usize,
    virtual_start_ns: Option<u64>,
    kept: &mut KeptBackends,
) -> Result<Outcome> {
    let Some(cell) = cx.plan.cells.get(index) else {
        anyhow::bail!(
            "{} has {} cells; there is no index {index}",
            cx.plan_path.display(),
            cx.plan.cells.len(),
        );
    };
    if cx.run_dir.is_committed(&cell.cell_id) {
        let record = cx.run_dir.read_cell_status(&cell.cell_id)?;
        eprintln!(
            "cell {} is already committed in {}; nothing to do",
            cell.cell_id,
            cx.run_dir.path.display()
        );
        cx.answered();
        emit(&CellEvent::Finished {
            status: record.status,
            clock_ns: 0,
        });
        return Ok(Outcome::AlreadyCommitted);
    }
    let fault = std::env::var(MOCK_FAULT_ENV)
        .ok()
        .and_then(|v| parse_fault(&v))
        .filter(|(i, _)| *i == index && cell.config.backend == BackendKind::Mock)
        .map(|(_, f)| f);
    // The run's clock: the parent's virtual clock, or wall time since the run started.
    let start = match virtual_start_ns {
        Some(ns) => CellClockStart::Virtual(ns),
        None => CellClockStart::Wall(cx.run_started.clone()),
    };
    let total = cell.total_requests();
    let single = run_single_cell(
        cx.plan,
        index,
        cx.run_dir,
        cx.models_dir,
        &start,
        kept,
        &mut |done, clock_ns| {
            if let Some(f) = fault {
                inject(f, done);
            }
            emit(&CellEvent::Request {
                done,
                total,
                clock_ns,
            });
            !cx.stop.load(Ordering::SeqCst)
        },
    )?;
    if let Some(done) = single.stopped_after {
        cx.answered();
        emit(&CellEvent::Stopped {
            done,
            total,
            clock_ns: single.clock_end_ns,
        });
        eprintln!(
            "cell {}: stopped after {done} of {total} requests; not committed",
            cell.cell_id
        );
        return Ok(Outcome::Stopped);
    }
    cx.run_dir
        .commit_cell(&single.result)
        .with_context(|| format!("committing cell {}", cell.cell_id))?;
    let status = single.result.record.status;
    cx.answered();
    emit(&CellEvent::Finished {
        status,
        clock_ns: single.clock_end_ns,
    });
    if !cx.supervised {
        if let Some(e) = &single.result.record.error {
            eprintln!("cell {} failed: {e}", cell.cell_id);
        }
    }
    Ok(Outcome::Committed(status))
}

/// Runs one cell of a plan and commits it — or, with `--serve`, the cells named on standard
/// input.
pub fn run(args: &RunCellArgs) -> Result<ExitCode> {
    let plan = Plan::read(&args.plan)?;
    let run_dir_path = match &args.run_dir {
        Some(d) => d.clone(),
        None => args
            .plan
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    if let Some(index) = args.index {
        if index >= plan.cells.len() {
            anyhow::bail!(
                "{} has {} cells; there is no index {index}",
                args.plan.display(),
                plan.cells.len(),
            );
        }
    }
    let run_dir = RunDir::for_cells(&run_dir_path)?;
    // Until this process ends, a clean-up of the folder (`run --resume`) waits for it.
    let _writer = run_dir.lock_writer()?;
    let models_dir = args.models_dir.clone().unwrap_or_else(default_models_dir);
    let run_started = io::read_manifest(&run_dir.path.join(files::MANIFEST))
        .ok()
        .map(|m| m.started_at);
    let mut kept = KeptBackends::default();

    if args.serve {
        let (tx, cells) = std::sync::mpsc::channel();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = stop_flag(Stdin::Serve {
            cells: tx,
            pending: pending.clone(),
        })?;
        let cx = Shared {
            plan: &plan,
            plan_path: &args.plan,
            run_dir: &run_dir,
            models_dir: &models_dir,
            run_started,
            stop: &stop,
            supervised: true,
            pending: Some(&pending),
        };
        // Each cell is answered by its events; a failure to run one ends the process (the
        // parent records it against that cell and starts another process for the next).
        while let Ok((index, ns)) = cells.recv() {
            if let Outcome::Stopped = one_cell(&cx, index, ns, &mut kept)? {
                exit_now(EXIT_INTERRUPTED as u8);
            }
        }
        exit_now(0);
    }

    let stop = stop_flag(if args.supervised {
        Stdin::Supervised
    } else {
        Stdin::Ignored
    })?;
    let cx = Shared {
        plan: &plan,
        plan_path: &args.plan,
        run_dir: &run_dir,
        models_dir: &models_dir,
        run_started,
        stop: &stop,
        supervised: args.supervised,
        pending: None,
    };
    let index = args.index.expect("clap requires --index without --serve");
    match one_cell(&cx, index, args.virtual_start_ns, &mut kept)? {
        Outcome::AlreadyCommitted => Ok(ExitCode::SUCCESS),
        Outcome::Stopped => Ok(ExitCode::from(EXIT_INTERRUPTED as u8)),
        // The run this cell belongs to is incomplete when the cell failed.
        Outcome::Committed(status) => exit_now(if status == schema::CellOutcome::Ok {
            0
        } else {
            crate::run::process::EXIT_CELL_FAILED
        }),
    }
}

/// Ends the process now that the cell is committed (its files written and synced) and its last
/// event flushed. Returning from `main` would run the native runtimes' global destructors
/// (ONNX Runtime's environment and thread pools, candle's), which cost tens of milliseconds per
/// cell and save nothing; the lock files are released by the kernel.
fn exit_now(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[allow(unsafe_code)]
    // SAFETY: `_exit` only ends the process; nothing written by it is left buffered.
    unsafe {
        libc::_exit(i32::from(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines_parse() {
        assert_eq!(parse_run("run 3"), Some((3, None)));
        assert_eq!(parse_run("run 3 1200"), Some((3, Some(1200))));
        assert_eq!(parse_run("run x"), None);
        assert_eq!(parse_run("run 3 4 5"), None);
        assert_eq!(parse_run("stop"), None);
    }

    #[test]
    fn faults_parse() {
        assert_eq!(parse_fault("3:abort"), Some((3, Fault::Abort)));
        assert_eq!(parse_fault("0:slow-250"), Some((0, Fault::Slow(250))));
        assert_eq!(parse_fault("x:abort"), None);
        assert_eq!(parse_fault("1:explode"), None);
    }
}
