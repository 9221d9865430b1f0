//! `tcobench emit slurm`: a Slurm batch script whose array tasks run one cell each,
//! `tcobench run-cell --plan RUN_DIR/plan.json --index "$SLURM_ARRAY_TASK_ID"`, written as
//! `RUN_DIR/submit.sbatch`; a run folder emitted before gets an array of the cells not yet
//! committed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{bad, comment_text, shell_quote, PlanSource, Prepared, TaskLimit};
use crate::plan::{sanitize, PLAN_FILE};
use crate::run::writer::write_atomic;

/// The Slurm batch script's name inside the run folder.
pub const SLURM_SCRIPT: &str = "submit.sbatch";

/// The folder of the Slurm tasks' output and error files inside the run folder.
pub const SLURM_LOGS: &str = "slurm";

/// `tcobench emit slurm` options.
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// The plan and the task shape.
    #[command(flatten)]
    pub source: PlanSource,
    /// Slurm partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// CPU cores per task.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus_per_task: Option<u32>,
    /// Wall-clock limit of one task, minutes (`#SBATCH --time`) [default: the scenario's
    /// `cell_timeout_s` (else 3600 s) + 600 s for starting the task and loading its model].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub time_limit_min: Option<u32>,
    /// The tcobench executable the tasks run (default: this one, by absolute path; it must be
    /// at the same path on the compute nodes).
    #[arg(long, value_name = "PATH")]
    pub tcobench: Option<PathBuf>,
    /// Where the tasks generate and cache built-in models (default: each node's cache, or
    /// `TCOBENCH_MODELS_DIR` exported from the submitting shell).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// Quotes `s` as one argument of an `#SBATCH` line (sbatch groups quoted text and takes a
/// backslash as an escape); `None` when the line cannot hold it (a line break).
pub fn sbatch_quote(s: &str) -> Option<String> {
    if s.contains(['\n', '\r']) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        s.replace('\\', r"\\").replace('"', "\\\"")
    ))
}

/// A Slurm array specification for `indexes` (ascending): ranges joined by commas, `%K` when
/// at most K tasks may run at once.
pub fn array_spec(indexes: &[usize], max_parallel: Option<u32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end = indexes[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(k) = max_parallel {
        spec.push_str(&format!("%{k}"));
    }
    spec
}

/// Everything a Slurm batch script says.
#[derive(Debug, Clone)]
pub struct SlurmJob {
    /// Scenario name (for the job name and a comment).
    pub scenario_name: String,
    /// The run folder, absolute.
    pub run_dir: PathBuf,
    /// Cells of the plan.
    pub cells: usize,
    /// The plan indexes to run (ascending).
    pub indexes: Vec<usize>,
    /// At most this many tasks at once.
    pub max_parallel: Option<u32>,
    /// GPUs per task.
    pub gpus_per_task: u32,
    /// Partition.
    pub partition: Option<String>,
    /// CPU cores per task.
    pub cpus_per_task: Option<u32>,
    /// Wall-clock limit per task, minutes (`--time-limit-min`).
    pub time_limit_min: Option<u32>,
    /// The limit derived from the scenario, used without `time_limit_min`.
    pub derived_limit: TaskLimit,
    /// The tcobench executable.
    pub tcobench: PathBuf,
    /// Model cache for the tasks.
    pub models_dir: Option<PathBuf>,
}

fn path_str(p: &Path) -> std::result::Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", p.display()))
}

impl SlurmJob {
    /// The batch script; an error says which path a Slurm directive cannot hold.
    pub fn script(&self) -> std::result::Result<String, String> {
        let run_dir = path_str(&self.run_dir)?;
        let plan = self.run_dir.join(PLAN_FILE);
        let plan = path_str(&plan)?;
        let tcobench = path_str(&self.tcobench)?;
        let directive = |value: &str| {
            sbatch_quote(value).ok_or_else(|| {
                format!(
                    "`{}` holds a line break, which an #SBATCH line cannot hold",
                    comment_text(value)
                )
            })
        };
        // `%` starts a file-name pattern in Slurm (`%A`, `%a`); `%%` is a literal one.
        let logs = format!("{}/{SLURM_LOGS}", run_dir.replace('%', "%%"));
        let script = self.run_dir.join(SLURM_SCRIPT);
        let mut s = String::new();
        s.push_str("#!/bin/bash\n");
        s.push_str(&format!(
            "# tcobench: {} of the {} cells of scenario \"{}\", one Slurm array task per cell.\n",
            self.indexes.len(),
            self.cells,
            comment_text(&self.scenario_name)
        ));
        s.push_str(&format!(
            "# Submit:  sbatch {}\n",
            comment_text(&shell_quote(path_str(&script)?))
        ));
        s.push_str(&format!(
            "# Then:    tcobench collect {}\n",
            comment_text(&shell_quote(run_dir))
        ));
        s.push_str(
            "# Every task commits its cell into the run folder, which every node must reach at the same path.\n",
        );
        let job_name = format!("tcobench-{}", sanitize(&self.scenario_name));
        s.push_str(&format!("#SBATCH --job-name={}\n", directive(&job_name)?));
        s.push_str(&format!(
            "#SBATCH --array={}\n",
            array_spec(&self.indexes, self.max_parallel)
        ));
        s.push_str("#SBATCH --ntasks=1\n");
        s.push_str(&format!(
            "#SBATCH --output={}\n",
            directive(&format!("{logs}/%A_%a.out"))?
        ));
        s.push_str(&format!(
            "#SBATCH --error={}\n",
            directive(&format!("{logs}/%A_%a.err"))?
        ));
        if let Some(p) = &self.partition {
            s.push_str(&format!("#SBATCH --partition={}\n", directive(p)?));
        }
        if self.gpus_per_task > 0 {
            s.push_str(&format!("#SBATCH --gres=gpu:{}\n", self.gpus_per_task));
        }
        if let Some(c) = self.cpus_per_task {
            s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
        }
        match self.time_limit_min {
            Some(t) => s.push_str(&format!("#SBATCH --time={t}\n")),
            None => {
                let limit = &self.derived_limit;
                s.push_str(&format!(
                    "# --time: {}, in minutes rounded up; past it Slurm kills the task and its cell \
                     stays uncommitted (--time-limit-min sets another).\n",
                    limit.explained()
                ));
                s.push_str(&format!("#SBATCH --time={}\n", limit.minutes()));
            }
        }
        s.push_str("\nset -eu\n");
        s.push_str("# The array index is the cell's index in the plan.\n");
        let mut line = format!(
            "exec {} run-cell --plan {} --index \"${{SLURM_ARRAY_TASK_ID:?is not set: submit this script with sbatch}}\"",
            shell_quote(tcobench),
            shell_quote(plan)
        );
        if let Some(m) = &self.models_dir {
            line.push_str(&format!(" --models-dir {}", shell_quote(path_str(m)?)));
        }
        s.push_str(&line);
        s.push('\n');
        Ok(s)
    }
}

/// Writes the batch script of the cells not yet committed in the run folder of `prepared`, each
/// task with `gpus` GPUs, says how to submit it, and prints the run folder on `out`.
pub(super) fn emit(
    a: &SlurmArgs,
    prepared: &Prepared,
    gpus: u32,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let source = &a.source;
    let Prepared {
        plan,
        run_dir,
        committed,
    } = prepared;
    let run_dir_text = shell_quote(&run_dir.path.display().to_string());
    let indexes: Vec<usize> = plan
        .cells
        .iter()
        .filter(|c| !committed.contains(&c.cell_id))
        .map(|c| c.index)
        .collect();
    if indexes.is_empty() {
        eprintln!(
            "every cell of {} is committed; nothing to submit: `tcobench collect {run_dir_text}`",
            run_dir.path.display()
        );
        writeln!(out, "{}", run_dir.path.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    let tcobench = match &a.tcobench {
        Some(p) => std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?,
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .context("locating the tcobench executable")?,
    };
    let models_dir = match &a.models_dir {
        Some(m) => {
            Some(std::path::absolute(m).with_context(|| format!("resolving {}", m.display()))?)
        }
        None => None,
    };
    let job = SlurmJob {
        scenario_name: plan.scenario_name.clone(),
        run_dir: run_dir.path.clone(),
        cells: plan.cells.len(),
        indexes,
        max_parallel: source.max_parallel,
        gpus_per_task: gpus,
        partition: a.partition.clone(),
        cpus_per_task: a.cpus_per_task,
        time_limit_min: a.time_limit_min,
        derived_limit: TaskLimit::of(plan),
        tcobench,
        models_dir,
    };
    let script = match job.script() {
        Ok(s) => s,
        Err(why) => return bad(why),
    };
    let logs = run_dir.path.join(SLURM_LOGS);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let path = run_dir.path.join(SLURM_SCRIPT);
    write_atomic(&path, script.as_bytes())?;
    eprintln!(
        "{} of {} cells in {}",
        job.indexes.len(),
        job.cells,
        run_dir.path.display()
    );
    eprintln!(
        "submit:  sbatch {}",
        shell_quote(&path.display().to_string())
    );
    eprintln!("then:    tcobench collect {run_dir_text}");
    writeln!(out, "{}", run_dir.path.display())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_indexes() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[1, 3, 4, 5, 9], None), "1,3-5,9");
        assert_eq!(array_spec(&[7], Some(1)), "7%1");
    }

    #[test]
    fn sbatch_arguments_are_quoted_and_escaped() {
        assert_eq!(sbatch_quote("a b").unwrap(), "\"a b\"");
        assert_eq!(sbatch_quote(r#"x"y\z"#).unwrap(), r#""x\"y\\z""#);
        assert_eq!(sbatch_quote("a\nb"), None);
    }
}
