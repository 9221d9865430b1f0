//! Cells in child processes: how `run` starts `run-cell` children, follows them and tells how
//! each cell ended.
//!
//! A native runtime that aborts, segfaults, hangs or is killed for memory takes its process with
//! it; so cells run in `run-cell --serve` children, and a dying child costs the cell in flight
//! only. Consecutive cells of the same backend, model, device and dtype share a child, which
//! keeps the model loaded (as a run in one process would); any other cell starts a new one, and
//! `run --process-per-cell` gives every cell a fresh process. The parent sends `run INDEX [NS]`
//! lines; the child speaks on its standard output in lines `tcobench-cell {json}`
//! ([`CellEvent`]): one per request (for the progress bar and the budget), one when the cell
//! stopped or finished. Any other line it prints is passed on to our standard error. Our end of
//! its standard input is its leash: the line `stop` asks it to stop after the request in flight,
//! and end-of-file (we died, even by `kill -9`) makes it exit at once without committing the cell
//! in flight; an idle child just exits.
//!
//! Ctrl-C: the first asks the cell in flight to stop after its current request (its partial
//! status goes to the manifest; nothing is committed, so `run --resume` runs it again) and no
//! further cell starts; the second kills the child and stops at once; a third exits on the spot.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tcobench_analysis::schema::CellOutcome;

/// Prefix of the child's protocol lines on its standard output.
pub const EVENT_PREFIX: &str = "tcobench-cell ";

/// What the child reports on its standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CellEvent {
    /// A request finished.
    Request {
        /// Requests done so far, warm-ups included.
        done: u64,
        /// Requests the cell issues in all.
        total: u64,
        /// The run clock now, ns.
        clock_ns: u64,
    },
    /// The cell stopped part-way on request (Ctrl-C, `stop`); nothing was committed.
    Stopped {
        /// Requests done.
        done: u64,
        /// Requests the cell issues in all.
        total: u64,
        /// The run clock now, ns.
        clock_ns: u64,
    },
    /// The cell is committed.
    Finished {
        /// Its outcome.
        status: CellOutcome,
        /// The run clock at its end, ns.
        clock_ns: u64,
    },
}

impl CellEvent {
    /// The protocol line for this event (without the newline).
    pub fn line(&self) -> String {
        format!(
            "{EVENT_PREFIX}{}",
            serde_json::to_string(self).expect("events serialise")
        )
    }

    /// Parses a protocol line; `None` for any other line.
    pub fn parse(line: &str) -> Option<CellEvent> {
        serde_json::from_str(line.strip_prefix(EVENT_PREFIX)?).ok()
    }

    fn clock_ns(&self) -> u64 {
        match self {
            CellEvent::Request { clock_ns, .. }
            | CellEvent::Stopped { clock_ns, .. }
            | CellEvent::Finished { clock_ns, .. } => *clock_ns,
        }
    }
}

/// How `run` starts its cells' processes.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The tcobench executable the children run (`std::env::current_exe()` for `tcobench run`).
    pub exe: PathBuf,
    /// A cell still running after this long is killed and recorded failed.
    pub cell_timeout: Duration,
    /// Handle Ctrl-C (SIGINT) as described in the module documentation; off for library callers
    /// that keep the default.
    pub handle_ctrl_c: bool,
    /// One process per cell, never shared: each cell loads its model in a fresh process. By
    /// default consecutive cells of the same backend, model, device and dtype share one child,
    /// which keeps the model loaded; a crash still costs only the cell in flight.
    pub process_per_cell: bool,
}

/// The default per-cell time limit: generous, it catches hangs, not slow cells.
pub const DEFAULT_CELL_TIMEOUT_S: f64 = 3600.0;

/// How many of the child's last standard-error lines a failure record keeps.
pub const STDERR_TAIL_LINES: usize = 20;

/// Ctrl-C presses counted since the run began.
#[derive(Debug, Clone, Default)]
pub struct CtrlC {
    presses: Arc<AtomicUsize>,
    /// Set once no cell is in flight any more: a Ctrl-C then exits at once.
    finishing: Arc<AtomicBool>,
}

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Exit status of `run-cell` when the cell it committed failed, and of `run`/`collect` when a
/// run is incomplete.
pub const EXIT_CELL_FAILED: u8 = 3;

impl CtrlC {
    /// Counts SIGINT from now on (instead of dying of it).
    pub fn install() -> Result<CtrlC> {
        let ctrl_c = CtrlC::default();
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
            .context("installing the Ctrl-C handler")?;
        let (presses, finishing) = (ctrl_c.presses.clone(), ctrl_c.finishing.clone());
        std::thread::spawn(move || {
            for _ in signals.forever() {
                let n = presses.fetch_add(1, Ordering::SeqCst) + 1;
                if finishing.load(Ordering::SeqCst) || n >= 3 {
                    eprintln!("interrupted");
                    std::process::exit(EXIT_INTERRUPTED);
                }
                if n == 1 {
                    eprintln!(
                        "\nCtrl-C: stopping after the request in flight; the cell is not committed \
                         and `tcobench run --resume` runs it again (Ctrl-C again to stop at once)"
                    );
                } else {
                    eprintln!("\nCtrl-C again: killing the cell in flight");
                }
            }
        });
        Ok(ctrl_c)
    }

    /// Ctrl-C presses so far.
    pub fn presses(&self) -> usize {
        self.presses.load(Ordering::SeqCst)
    }

    /// No cell is in flight any more: the next Ctrl-C exits at once.
    pub fn finishing(&self) {
        self.finishing.store(true, Ordering::SeqCst);
    }
}

/// Where and how to start a child: `run-cell --serve`, which runs the cells it is sent one
/// after the other, keeping the model loaded between them.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSpawn<'a> {
    pub(crate) options: &'a ProcessOptions,
    pub(crate) plan: &'a Path,
    pub(crate) run_dir: &'a Path,
    pub(crate) models_dir: &'a Path,
}

/// How a cell's part of a child ended.
#[derive(Debug)]
pub(crate) enum ChildEnd {
    /// The child reported the cell's end (finished or stopped) and still runs.
    Served,
    /// It exited by itself (or was killed by someone else).
    Exited(ExitStatus),
    /// It ran past the cell timeout and we killed it.
    TimedOut(Duration),
    /// A second Ctrl-C: we killed it.
    KilledOnRequest,
}

/// What we learnt from one child.
#[derive(Debug)]
pub(crate) struct ChildReport {
    pub(crate) end: ChildEnd,
    /// Its last standard-error lines.
    pub(crate) stderr_tail: Vec<String>,
    /// Its last event.
    pub(crate) last_event: Option<CellEvent>,
    /// Requests it reported done.
    pub(crate) done: u64,
}

impl ChildReport {
    /// The run clock at the child's last event.
    pub(crate) fn clock_ns(&self) -> Option<u64> {
        self.last_event.as_ref().map(CellEvent::clock_ns)
    }

    /// Why a child that committed nothing failed, with its last standard-error lines.
    pub(crate) fn failure(&self) -> String {
        let mut cause = match &self.end {
            ChildEnd::TimedOut(limit) => format!(
                "run-cell exceeded the cell timeout of {} s and was killed (--cell-timeout-s)",
                limit.as_secs_f64()
            ),
            ChildEnd::KilledOnRequest => "run-cell was killed by a second Ctrl-C".to_string(),
            ChildEnd::Exited(status) => exit_cause(*status),
            ChildEnd::Served => "run-cell reported the cell's end".to_string(),
        };
        if !self.stderr_tail.is_empty() {
            cause.push_str(&format!(
                "\nlast {} lines of its standard error:\n{}",
                self.stderr_tail.len(),
                self.stderr_tail.join("\n")
            ));
        }
        cause
    }
}

/// How a process exit reads: `killed by signal 6 (SIGABRT, core dumped)`, `exited with code 101`.
pub fn exit_cause(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = signal_hook::low_level::signal_name(sig).unwrap_or("unknown signal");
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        let hint = if sig == signal_hook::consts::SIGKILL {
            "; a SIGKILL from outside tcobench is most often the kernel's out-of-memory killer"
        } else {
            ""
        };
        format!("run-cell was killed by signal {sig} ({name}{core}){hint}")
    } else {
        match status.code() {
            Some(code) => format!("run-cell exited with code {code} without committing the cell"),
            None => format!("run-cell ended without committing the cell ({status})"),
        }
    }
}

enum Msg {
    Event(CellEvent),
    Stdout(String),
    Stderr(String),
    Closed,
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<Msg>,
    wrap: fn(String) -> Msg,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if tx.send(wrap(line)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Msg::Closed);
    })
}

fn stdout_msg(line: String) -> Msg {
    match CellEvent::parse(&line) {
        Some(e) => Msg::Event(e),
        None => Msg::Stdout(line),
    }
}

/// A `run-cell --serve` child: it runs the cells it is sent, one at a time.
pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Msg>,
    readers: Vec<std::thread::JoinHandle<()>>,
    open_streams: usize,
    /// What the child keeps loaded: cells with another key go to another child.
    pub(crate) key: String,
}

impl Worker {
    /// Starts a child.
    pub(crate) fn spawn(spawn: &WorkerSpawn<'_>, key: String) -> Result<Worker> {
        let mut child = Command::new(&spawn.options.exe)
            .arg("run-cell")
            .arg("--plan")
            .arg(spawn.plan)
            .arg("--run-dir")
            .arg(spawn.run_dir)
            .arg("--models-dir")
            .arg(spawn.models_dir)
            .arg("--supervised")
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} run-cell", spawn.options.exe.display()))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            forward_lines(
                child.stdout.take().expect("piped stdout"),
                tx.clone(),
                stdout_msg,
            ),
            forward_lines(child.stderr.take().expect("piped stderr"), tx, Msg::Stderr),
        ];
        Ok(Worker {
            child,
            stdin,
            rx,
            open_streams: readers.len(),
            readers,
            key,
        })
    }

    /// Sends the child cell `index` (with the run's virtual clock reading, on runs that use one)
    /// and follows it until the cell's last event or the child's end: `on_event` sees its
    /// events, `on_output` each line it printed that is not an event (to show the user). Unless
    /// the report says [`ChildEnd::Served`], the child is gone.
    pub(crate) fn run_cell(
        &mut self,
        index: usize,
        virtual_start_ns: Option<u64>,
        options: &ProcessOptions,
        ctrl_c: &CtrlC,
        on_event: &mut dyn FnMut(&CellEvent),
        on_output: &mut dyn FnMut(&str),
    ) -> Result<ChildReport> {
        let command = match virtual_start_ns {
            Some(ns) => format!("run {index} {ns}\n"),
            None => format!("run {index}\n"),
        };
        if let Some(s) = self.stdin.as_mut() {
            // A child that already died has closed its end: its exit status tells why below.
            let _ = s.write_all(command.as_bytes()).and_then(|()| s.flush());
        }
        let started = Instant::now();
        let mut report = ChildReport {
            end: ChildEnd::KilledOnRequest,
            stderr_tail: Vec::new(),
            last_event: None,
            done: 0,
        };
        let mut asked_to_stop = false;
        let end = loop {
            // Once its output is closed the child is exiting: look for its end often.
            let wait = if self.open_streams > 0 {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(1)
            };
            // Every message is followed by the checks below, so a chatty child cannot keep its
            // timeout or a Ctrl-C from being seen.
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    if self.handle(msg, &mut report, on_event, on_output) {
                        break ChildEnd::Served;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.open_streams = 0;
                    std::thread::sleep(wait);
                }
            }
            let presses = ctrl_c.presses();
            if presses >= 2 {
                kill(&mut self.child);
                break ChildEnd::KilledOnRequest;
            }
            if presses == 1 && !asked_to_stop {
                asked_to_stop = true;
                if let Some(s) = self.stdin.as_mut() {
                    let _ = s.write_all(b"stop\n").and_then(|()| s.flush());
                }
            }
            if started.elapsed() > options.cell_timeout {
                kill(&mut self.child);
                break ChildEnd::TimedOut(options.cell_timeout);
            }
            if let Some(status) = self.child.try_wait().context("waiting for run-cell")? {
                break ChildEnd::Exited(status);
            }
        };
        if !matches!(end, ChildEnd::Served) {
            // The child is gone; collect what it wrote last (a grandchild holding the pipes
            // open must not keep us waiting long).
            let drain_until = Instant::now() + Duration::from_secs(2);
            while self.open_streams > 0 {
                let left = drain_until.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(msg) => {
                        self.handle(msg, &mut report, on_event, on_output);
                    }
                    Err(_) => break,
                }
            }
        }
        report.end = end;
        Ok(report)
    }

    /// Whether the child still runs (an idle child can die too, e.g. of the OOM killer).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Takes one message; true when it ends the cell (its `finished` or `stopped` event).
    fn handle(
        &mut self,
        msg: Msg,
        report: &mut ChildReport,
        on_event: &mut dyn FnMut(&CellEvent),
        on_output: &mut dyn FnMut(&str),
    ) -> bool {
        match msg {
            Msg::Event(e) => {
                if let CellEvent::Request { done, .. } | CellEvent::Stopped { done, .. } = e {
                    report.done = done;
                }
                on_event(&e);
                let ended = matches!(e, CellEvent::Finished { .. } | CellEvent::Stopped { .. });
                report.last_event = Some(e);
                ended
            }
            Msg::Stdout(line) => {
                on_output(&line);
                false
            }
            Msg::Stderr(line) => {
                on_output(&line);
                report.stderr_tail.push(line);
                if report.stderr_tail.len() > STDERR_TAIL_LINES {
                    report.stderr_tail.remove(0);
                }
                false
            }
            Msg::Closed => {
                self.open_streams = self.open_streams.saturating_sub(1);
                false
            }
        }
    }

    /// Ends the child: closes its input (an idle child then exits by itself) and waits for it,
    /// killing it if it takes more than a few seconds. Lines it prints meanwhile go to
    /// `on_output`.
    pub(crate) fn close(mut self, on_output: &mut dyn FnMut(&str)) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Closed) => self.open_streams -= 1,
                Ok(Msg::Stdout(line) | Msg::Stderr(line)) => on_output(&line),
                Ok(Msg::Event(_)) => {}
                Err(_) => {
                    kill(&mut self.child);
                    break;
                }
            }
        }
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_other_lines_are_not_events() {
        let e = CellEvent::Request {
            done: 2,
            total: 5,
            clock_ns: 123,
        };
        assert_eq!(CellEvent::parse(&e.line()), Some(e));
        assert_eq!(CellEvent::parse("some library chatter"), None);
        assert_eq!(CellEvent::parse("tcobench-cell {not json"), None);
    }

    #[test]
    fn exit_causes_name_the_signal() {
        let aborted = ExitStatus::from_raw(6);
        assert!(exit_cause(aborted).contains("signal 6 (SIGABRT"));
        let killed = ExitStatus::from_raw(9);
        assert!(exit_cause(killed).contains("out-of-memory"));
        let code = ExitStatus::from_raw(101 << 8);
        assert!(exit_cause(code).contains("code 101"));
    }
}
