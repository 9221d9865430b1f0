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
//! stopped or finished. Any other line it prints is passed on to our standard error, and the
//! last of its standard-error lines that belong to a cell go into that cell's failure record: a
//! child marks on its standard error where each cell begins ([`BEGIN_MARK`]), so lines it wrote
//! for the cell before, which may reach us only after that cell's `finished` event (its two
//! streams are read apart), are never taken for the next cell's. Our end of
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
use tcobench_results::schema::CellOutcome;

/// Prefix of the child's protocol lines on its standard output.
pub const EVENT_PREFIX: &str = "tcobench-cell ";

/// Set by the parent in a `run-cell --serve` child's environment: the child then writes
/// [`BEGIN_MARK`] lines on its standard error (see [`mark_cell_begin`]).
pub const STDERR_MARKS_ENV: &str = "TCOBENCH_STDERR_MARKS";

/// Start of the line `BEGIN_MARK INDEX` a supervised child writes on its standard error when it
/// begins cell INDEX: what it writes there from then on is that cell's, up to the next mark.
pub const BEGIN_MARK: &str = "tcobench-cell begin ";

/// In a child started by [`Worker::spawn`] (where [`STDERR_MARKS_ENV`] is set), marks on standard
/// error that cell `index` begins; elsewhere does nothing.
pub fn mark_cell_begin(index: usize) {
    if std::env::var_os(STDERR_MARKS_ENV).is_none() {
        return;
    }
    // One write of a short line: never interleaved with what other threads write there.
    let line = format!("{BEGIN_MARK}{index}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The cell a [`BEGIN_MARK`] line begins; `None` for any other line.
fn parse_begin(line: &str) -> Option<usize> {
    line.strip_prefix(BEGIN_MARK)?.trim().parse().ok()
}

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
    /// Its last standard-error lines that belong to this cell (see [`StderrOwner`]); when it
    /// never began the cell, its last lines of all.
    pub(crate) stderr_tail: Vec<String>,
    /// Whether the child began the cell (its [`BEGIN_MARK`] came). Known for a child that is
    /// gone (its output is read to the end); a served cell's mark may come after its events.
    pub(crate) began: bool,
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
        if !self.began {
            cause.push_str("; it had not begun the cell");
        }
        if !self.stderr_tail.is_empty() {
            cause.push_str(&format!(
                "\nlast {} lines of its standard error{}:\n{}",
                self.stderr_tail.len(),
                if self.began {
                    ""
                } else {
                    " (some may be the previous cell's)"
                },
                self.stderr_tail.join("\n")
            ));
        }
        cause
    }
}

/// Whose a child's standard-error lines are: the cell of the last [`BEGIN_MARK`] read from it,
/// and before any mark, the first cell it was sent (what it printed starting up).
#[derive(Debug, Default)]
pub(crate) struct StderrOwner {
    first_cell: Option<usize>,
    marked: Option<usize>,
}

/// Where one standard-error line of a child goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StderrLine {
    /// A mark: the child begins this cell (not shown to the user).
    Begins(usize),
    /// A line of this cell.
    Of(Option<usize>),
}

impl StderrOwner {
    /// The child is sent cell `index`.
    pub(crate) fn sent(&mut self, index: usize) {
        self.first_cell.get_or_insert(index);
    }

    /// Takes the next line read from the child's standard error.
    pub(crate) fn line(&mut self, line: &str) -> StderrLine {
        match parse_begin(line) {
            Some(index) => {
                self.marked = Some(index);
                StderrLine::Begins(index)
            }
            None => StderrLine::Of(self.marked.or(self.first_cell)),
        }
    }
}

/// Appends `line`, keeping the last [`STDERR_TAIL_LINES`].
fn push_tail(tail: &mut Vec<String>, line: String) {
    tail.push(line);
    if tail.len() > STDERR_TAIL_LINES {
        tail.remove(0);
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
    /// Whose its standard-error lines are.
    stderr_owner: StderrOwner,
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
            .env(STDERR_MARKS_ENV, "1")
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
            stderr_owner: StderrOwner::default(),
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
        self.stderr_owner.sent(index);
        if let Some(s) = self.stdin.as_mut() {
            // A child that already died has closed its end: its exit status tells why below.
            let _ = s.write_all(command.as_bytes()).and_then(|()| s.flush());
        }
        let started = Instant::now();
        let mut report = ChildReport {
            end: ChildEnd::KilledOnRequest,
            stderr_tail: Vec::new(),
            began: false,
            last_event: None,
            done: 0,
        };
        // Lines of the cells before, read meanwhile: the last words of a child that dies before
        // it begins this cell.
        let mut earlier = Vec::new();
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
                    if self.handle(msg, index, &mut report, &mut earlier, on_event, on_output) {
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
                        self.handle(msg, index, &mut report, &mut earlier, on_event, on_output);
                    }
                    Err(_) => break,
                }
            }
            if !report.began {
                earlier.append(&mut report.stderr_tail);
                let keep = earlier.len().saturating_sub(STDERR_TAIL_LINES);
                report.stderr_tail = earlier.split_off(keep);
            }
        }
        report.end = end;
        Ok(report)
    }

    /// Whether the child still runs (an idle child can die too, e.g. of the OOM killer).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Takes one message while cell `index` runs; true when it ends the cell (its `finished` or
    /// `stopped` event). Standard-error lines of another cell go to `earlier`.
    fn handle(
        &mut self,
        msg: Msg,
        index: usize,
        report: &mut ChildReport,
        earlier: &mut Vec<String>,
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
                match self.stderr_owner.line(&line) {
                    StderrLine::Begins(cell) => report.began |= cell == index,
                    StderrLine::Of(cell) => {
                        on_output(&line);
                        if cell == Some(index) {
                            push_tail(&mut report.stderr_tail, line);
                        } else {
                            push_tail(earlier, line);
                        }
                    }
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
                Ok(Msg::Stderr(line)) if parse_begin(&line).is_some() => {}
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
    fn stderr_lines_belong_to_the_cell_of_the_last_mark() {
        let mut owner = StderrOwner::default();
        owner.sent(4);
        // Before any mark: the first cell's (the child starting up).
        assert_eq!(owner.line("loading"), StderrLine::Of(Some(4)));
        assert_eq!(owner.line("tcobench-cell begin 4"), StderrLine::Begins(4));
        assert_eq!(owner.line("warning in cell 4"), StderrLine::Of(Some(4)));
        // Cell 5 is sent while lines of cell 4 are still on their way: they stay cell 4's.
        owner.sent(5);
        assert_eq!(owner.line("late line of cell 4"), StderrLine::Of(Some(4)));
        assert_eq!(owner.line("tcobench-cell begin 5"), StderrLine::Begins(5));
        assert_eq!(owner.line("cell 5 dies"), StderrLine::Of(Some(5)));
        assert_eq!(parse_begin("tcobench-cell begin x"), None);
        assert_eq!(parse_begin("tcobench-cell {\"event\":1}"), None);
    }

    /// A stand-in for `run-cell --serve` in `dir`: cell 0 finishes; cell 1 first writes a line
    /// of cell 0 (as a line written just before cell 0's `finished` event reaches the parent
    /// after it, its two streams being read apart), then begins and dies; cell 2 dies before it
    /// begins.
    fn scripted_child(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let finished = CellEvent::Finished {
            status: CellOutcome::Ok,
            clock_ns: 5,
        };
        let script = format!(
            "#!/bin/sh\n\
             [ \"${STDERR_MARKS_ENV}\" = 1 ] || exit 9\n\
             while read -r word index rest; do\n\
             case \"$index\" in\n\
             0) echo '{BEGIN_MARK}0' >&2; echo 'cell 0 at work' >&2; echo '{}';;\n\
             1) echo 'late line of cell 0' >&2; echo '{BEGIN_MARK}1' >&2;\n\
                echo 'cell 1 dies' >&2; exit 101;;\n\
             2) echo 'dying before any cell' >&2; exit 102;;\n\
             esac\n\
             done\n",
            finished.line()
        );
        let path = dir.join("fake-tcobench");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs `cells` in one scripted child, in order; the reports and every line passed on.
    fn run_scripted(cells: &[usize]) -> (Vec<ChildReport>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let options = ProcessOptions {
            exe: scripted_child(dir.path()),
            cell_timeout: Duration::from_secs(60),
            handle_ctrl_c: false,
            process_per_cell: false,
        };
        let spawn = WorkerSpawn {
            options: &options,
            plan: dir.path(),
            run_dir: dir.path(),
            models_dir: dir.path(),
        };
        // Another test's child may still hold the script open for writing a moment
        // (`ETXTBSY`): try again.
        let mut tries = 0;
        let mut worker = loop {
            match Worker::spawn(&spawn, "key".into()) {
                Ok(w) => break w,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e:#}"),
            }
        };
        let mut shown = Vec::new();
        let reports = cells
            .iter()
            .map(|&index| {
                worker
                    .run_cell(
                        index,
                        None,
                        &options,
                        &CtrlC::default(),
                        &mut |_| {},
                        &mut |line| shown.push(line.to_string()),
                    )
                    .unwrap()
            })
            .collect();
        worker.close(&mut |line| shown.push(line.to_string()));
        (reports, shown)
    }

    #[test]
    fn a_cells_failure_keeps_its_own_stderr_lines_only() {
        let (reports, shown) = run_scripted(&[0, 1]);
        assert!(matches!(reports[0].end, ChildEnd::Served), "{reports:?}");
        let failed = &reports[1];
        assert!(
            matches!(failed.end, ChildEnd::Exited(s) if s.code() == Some(101)),
            "{failed:?}"
        );
        assert!(failed.began);
        assert_eq!(failed.stderr_tail, ["cell 1 dies"]);
        let why = failed.failure();
        assert!(why.starts_with("run-cell exited with code 101"), "{why}");
        assert!(why.ends_with("standard error:\ncell 1 dies"), "{why}");
        // Every line but the marks reaches the user.
        assert_eq!(
            shown,
            ["cell 0 at work", "late line of cell 0", "cell 1 dies"]
        );
    }

    #[test]
    fn a_child_that_dies_before_it_begins_the_cell_says_so_with_its_last_lines() {
        let (reports, _) = run_scripted(&[0, 2]);
        let failed = &reports[1];
        assert!(
            matches!(failed.end, ChildEnd::Exited(s) if s.code() == Some(102)),
            "{failed:?}"
        );
        assert!(!failed.began);
        // Its last words; before them may come cell 0's last lines, if they were still on
        // their way when cell 0's `finished` event came.
        assert_eq!(
            failed.stderr_tail.last().map(String::as_str),
            Some("dying before any cell")
        );
        assert!(
            failed.stderr_tail.len() == 1
                || failed.stderr_tail == ["cell 0 at work", "dying before any cell"],
            "{failed:?}"
        );
        let why = failed.failure();
        assert!(
            why.starts_with(
                "run-cell exited with code 102 without committing the cell; it had not begun \
                 the cell\n"
            ),
            "{why}"
        );
        assert!(why.contains("(some may be the previous cell's)"), "{why}");
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
