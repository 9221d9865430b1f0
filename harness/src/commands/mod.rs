//! The subcommands of `tcobench`, one file each: options, printing and exit codes on top of the
//! pipeline (scenario → plan → run → results → analysis).
//!
//! * [`plan`] — `tcobench plan`: the cells a scenario would run, the plan file, the estimate;
//! * [`run`] — `tcobench run` (and `run --resume`): every cell of a scenario, then the report;
//! * [`cell`] — `tcobench run-cell`: one cell of a plan in a process of its own, the primitive
//!   `run` and a scheduler's tasks share;
//! * [`emit`] — `tcobench emit slurm|k8s`: a run folder and a scheduler job that runs its cells;
//! * [`collect`] — `tcobench collect`: merges what a scheduler's tasks committed and reports;
//! * [`analyze`] — `tcobench analyze`: `stats.json` and the report of a run folder again;
//! * [`report`] — `tcobench report`: a run's report re-rendered, optionally re-priced;
//! * [`stats`] — `tcobench stats`: the statistics of any CSV or Parquet table;
//! * [`compare`] — `tcobench compare` and `tcobench export`: two runs (or folders of runs) cell by
//!   cell at the level they allow, and a run's figures for continuous-benchmarking services;
//! * [`noise`] — `tcobench noise`: a scenario run N times, this host's noise profile from them;
//! * [`ab`] — `tcobench ab`: two builds interleaved in ABBA blocks, the verdict with the run as
//!   the unit;
//! * [`validate`] — `tcobench validate`: data-file, physical and arithmetic checks on a run;
//! * [`sweep`] — `tcobench sweep`: a run's measurements re-costed under pricing/energy variants;
//! * [`tco`] — `tcobench tco`: the cost, energy and carbon calculator;
//! * [`catalog`] — `tcobench catalog`: the pricing catalog (list, show, import, diff);
//! * [`meter`] — `tcobench meter`: an external power meter's log and calibrations from it;
//! * [`model`] — `tcobench model build`: a built-in model written to a folder.

pub mod ab;
pub mod analyze;
pub mod catalog;
pub mod cell;
pub mod collect;
pub mod compare;
pub mod emit;
pub mod meter;
pub mod model;
pub mod noise;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod sweep;
pub mod tco;
pub mod validate;

/// Exit code for bad input: a scenario, file, option or name the user can fix.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Writes `value` to `path` as pretty JSON with a final newline, atomically.
pub(crate) fn write_json(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    tcobench_results::io::write_atomic(path, &json)?;
    Ok(())
}

/// The command line as a user would retype it: the program's own name, not its install path.
pub(crate) fn command_line() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "tcobench".to_string();
    }
    args
}

/// A `--device` value (`cpu`, `cuda`, `cuda:N`), for clap.
pub fn parse_device(s: &str) -> Result<tcobench_backends::Device, String> {
    s.parse()
}
