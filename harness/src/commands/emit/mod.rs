//! `tcobench emit slurm|k8s INPUT`: a run on an existing scheduler, one `run-cell` per task.
//!
//! tcobench has no scheduler of its own. `emit` prepares a run folder exactly as `tcobench run`
//! does (`manifest.json` with every cell pending, `plan.json`) and writes, into it, a job for a
//! scheduler that already exists: a Slurm batch script whose array tasks run
//! `tcobench run-cell --plan RUN_DIR/plan.json --index "$SLURM_ARRAY_TASK_ID"`
//! (`RUN_DIR/submit.sbatch`), or a Kubernetes Indexed Job whose pods run the same with
//! `$JOB_COMPLETION_INDEX` (`RUN_DIR/job.yaml`). Every task commits its cell into the shared run
//! folder; `tcobench collect RUN_DIR` then merges, analyses and reports, and `tcobench run
//! --resume RUN_DIR` can finish on one machine what the cluster did not.
//!
//! INPUT is a scenario YAML (a new run folder under `--out`), a plan file written by `tcobench
//! plan --json` (its scenario is resolved again and must still give the same cells), or the
//! `plan.json` of an existing run folder (the job is written into that folder; a Slurm array then
//! covers only the cells not yet committed).
//!
//! A task runs its cell in its own process, with no `tcobench run` watching the clock, so the
//! cell's time limit is the scheduler's: unless `--time-limit-min` says otherwise, each task (a
//! Slurm array task, a Kubernetes pod) may run the scenario's `cell_timeout_s` (else `run`'s
//! default) plus [`TASK_MARGIN_S`], after which the scheduler kills it and its cell stays
//! uncommitted (`collect` lists it missing).
//!
//! The run folder's path is printed last on standard output; the file to submit and the commands
//! to use go to standard error. Exit codes: `0` written; `2` bad input (an unreadable scenario or
//! plan, a device the job cannot give its tasks, a path a Slurm directive cannot hold).
//!
//! What every target shares is here (the run folder, the tasks' GPUs and time limit); each
//! scheduler's job is written by its own module, [`slurm`] and [`k8s`].

pub mod k8s;
pub mod slurm;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_backends::{Device, VirtualClock};
use tcobench_results::schema::files;

use self::k8s::K8sArgs;
use self::slurm::SlurmArgs;
use crate::plan::{Plan, PlanOverrides, PLAN_FILE};
use crate::power;
use crate::run::writer::RunDir;
use crate::run::{default_models_dir, prepare_run, run_plan, RunOptions};
use crate::scenario::{Overrides, Scenario};

use crate::commands::EXIT_BAD_INPUT;

/// What a scheduler's task may take beyond its cell's time limit, seconds: starting the task
/// (for a pod, pulling the image), and building the built-in model into the node's cache or
/// loading it, which every task does afresh where `run`'s cells of one model share a loaded one.
pub const TASK_MARGIN_S: f64 = 600.0;

/// A task's wall-clock limit, derived from the plan's scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskLimit {
    /// The cell's own limit, seconds.
    pub cell_timeout_s: f64,
    /// Whether the scenario set it (`cell_timeout_s`), rather than `run`'s default.
    pub from_scenario: bool,
}

impl TaskLimit {
    /// The limit of the cells of `plan`: its scenario's `cell_timeout_s`, else `run`'s default.
    pub fn of(plan: &Plan) -> TaskLimit {
        match plan.scenario["cell_timeout_s"].as_f64() {
            Some(t) => TaskLimit {
                cell_timeout_s: t,
                from_scenario: true,
            },
            None => TaskLimit {
                cell_timeout_s: crate::run::process::DEFAULT_CELL_TIMEOUT_S,
                from_scenario: false,
            },
        }
    }

    /// The task's limit: the cell's plus [`TASK_MARGIN_S`], whole seconds rounded up.
    pub fn seconds(&self) -> u64 {
        (self.cell_timeout_s + TASK_MARGIN_S).ceil() as u64
    }

    /// The task's limit in whole minutes, rounded up (`#SBATCH --time`).
    pub fn minutes(&self) -> u32 {
        u32::try_from(self.seconds().div_ceil(60)).unwrap_or(u32::MAX)
    }

    /// How the limit was reached, for a comment line: `the scenario's cell_timeout_s (90 s) +
    /// 600 s …`.
    pub fn explained(&self) -> String {
        let cell = if self.from_scenario {
            format!("the scenario's cell_timeout_s ({} s)", self.cell_timeout_s)
        } else {
            format!(
                "the default cell timeout ({} s; the scenario sets no cell_timeout_s)",
                self.cell_timeout_s
            )
        };
        format!(
            "{cell} + {TASK_MARGIN_S} s for starting the task and building or loading its model"
        )
    }
}

/// `tcobench emit` options.
#[derive(clap::Args, Debug)]
pub struct EmitArgs {
    /// The scheduler to write a job for.
    #[command(subcommand)]
    pub target: EmitTarget,
}

/// The schedulers `emit` writes jobs for.
#[derive(clap::Subcommand, Debug)]
pub enum EmitTarget {
    /// A Slurm batch script (`sbatch --array`): one array task per cell.
    Slurm(SlurmArgs),
    /// A Kubernetes Indexed Job: one completion index (one pod) per cell.
    K8s(K8sArgs),
}

/// What every target needs: the plan and the shape of one task.
#[derive(clap::Args, Debug)]
pub struct PlanSource {
    /// Scenario YAML, a plan file (`tcobench plan --json`), or the plan.json of a run folder.
    pub input: PathBuf,
    /// Override the scenario seed (scenario input only).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the scenario's devices with one device (scenario input only).
    #[arg(long, value_parser = crate::commands::parse_device)]
    pub device: Option<Device>,
    /// Parent folder of the new run folder (it must be reachable by every task).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// At most this many tasks at once (default: as many as the scheduler allows).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// GPUs per task (default: enough for the highest CUDA device a cell uses, 0 on CPU).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
}

fn bad(msg: impl std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

/// Quotes `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Escapes a user string for one comment line.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A run folder ready for a scheduler's tasks.
struct Prepared {
    plan: Plan,
    run_dir: RunDir,
    /// Cells already committed (an existing run folder).
    committed: std::collections::BTreeSet<String>,
}

/// What went wrong with the input, said to the user with exit code 2.
struct BadInput(String);

/// Whether `input` names a plan file rather than a scenario.
fn is_plan_file(input: &Path) -> bool {
    input.extension().is_some_and(|e| e == "json")
}

/// Prepares (or, for the plan.json of a run folder, opens) the run folder.
fn prepare(source: &PlanSource) -> Result<std::result::Result<Prepared, BadInput>> {
    let input = &source.input;
    if is_plan_file(input) {
        if source.seed.is_some() || source.device.is_some() {
            return Ok(Err(BadInput(
                "--seed and --device apply to a scenario; a plan's cells are already resolved"
                    .into(),
            )));
        }
        let plan = match Plan::read(input) {
            Ok(p) => p,
            Err(e) => return Ok(Err(BadInput(format!("{e:#}")))),
        };
        let folder = input.parent().filter(|p| !p.as_os_str().is_empty());
        let folder = folder.unwrap_or(Path::new("."));
        if input.file_name().is_some_and(|n| n == PLAN_FILE)
            && folder.join(files::MANIFEST).is_file()
        {
            let run_dir = RunDir::open(&folder.canonicalize()?)?;
            let committed = run_dir.committed_ids()?;
            return Ok(Ok(Prepared {
                plan,
                run_dir,
                committed,
            }));
        }
        // A plan written by `tcobench plan --json`: resolve its scenario again, so the run
        // folder carries the same manifest as any run.
        let scenario_path = match &plan.scenario_file {
            Some(abs) if abs.is_file() => abs.clone(),
            _ => PathBuf::from(&plan.scenario_path),
        };
        let scenario = Scenario::load(
            &scenario_path,
            &Overrides {
                seed: plan.overrides.seed,
                device: plan.overrides.device,
                replicates: plan.overrides.replicates,
            },
        )?;
        let now = run_plan(&scenario, &scenario_path, &plan.overrides);
        if now.cell_ids() != plan.cell_ids() || now.scenario != plan.scenario {
            return Ok(Err(BadInput(format!(
                "{}: its scenario {} now resolves to other cells or settings (or the plan was \
                 made with --seed/--device); emit from the scenario instead",
                input.display(),
                scenario_path.display()
            ))));
        }
        return prepare_new(&scenario, &scenario_path, now, source).map(Ok);
    }
    let overrides = PlanOverrides {
        seed: source.seed,
        device: source.device,
        replicates: None,
    };
    let scenario = Scenario::load(
        input,
        &Overrides {
            seed: source.seed,
            device: source.device,
            replicates: None,
        },
    )?;
    let plan = run_plan(&scenario, input, &overrides);
    prepare_new(&scenario, input, plan, source).map(Ok)
}

fn prepare_new(
    scenario: &Scenario,
    scenario_path: &Path,
    plan: Plan,
    source: &PlanSource,
) -> Result<Prepared> {
    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    // The power source is opened here only to describe it; each cell opens its own on its node.
    let mut notes = BTreeMap::new();
    notes.insert(
        "measured_by".to_string(),
        "each cell's own process on its node (a scheduler's tasks)".to_string(),
    );
    let info = match power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    ) {
        Ok((sampler, why)) => {
            notes.extend(why);
            power::power_info(sampler.as_ref(), scenario.power.sample_ms, &notes)
        }
        Err(e) => {
            notes.insert("unavailable_where_emitted".into(), e);
            power::power_info(&power::NoPower, scenario.power.sample_ms, &notes)
        }
    };
    let opts = RunOptions {
        out: source.out.clone(),
        models_dir: default_models_dir(),
        progress: false,
        experiment_log: None,
        command: crate::commands::command_line(),
        allow_disagreement: false,
    };
    let prepared = prepare_run(
        scenario,
        scenario_path,
        plan,
        &opts,
        info,
        chrono::Utc::now(),
    )?;
    let mut manifest = prepared.manifest;
    // Not running yet: the tasks have not been submitted.
    manifest.status = "prepared".into();
    prepared.run_dir.write_manifest(&manifest)?;
    // Absolute, so that tasks started in any folder find it.
    let path = prepared
        .run_dir
        .path
        .canonicalize()
        .with_context(|| format!("resolving {}", prepared.run_dir.path.display()))?;
    Ok(Prepared {
        plan: prepared.plan,
        run_dir: RunDir {
            path,
            run_id: prepared.run_dir.run_id,
        },
        committed: Default::default(),
    })
}

/// GPUs a task needs: enough that the highest CUDA index a cell names exists in it (a
/// scheduler numbers a task's GPUs from 0).
fn gpus_needed(plan: &Plan) -> Option<(u32, usize)> {
    plan.cells
        .iter()
        .filter_map(|c| match c.config.device {
            Device::Cuda(i) => Some((
                u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1),
                c.index,
            )),
            Device::Cpu => None,
        })
        .max_by_key(|(n, _)| *n)
}

fn gpus_per_task(plan: &Plan, asked: Option<u32>) -> std::result::Result<u32, BadInput> {
    let needed = gpus_needed(plan);
    let n = asked.unwrap_or(needed.map_or(0, |(n, _)| n));
    if let Some((want, index)) = needed {
        if n < want {
            let cell = &plan.cells[index];
            return Err(BadInput(format!(
                "cell {index} `{}` runs on {}, which a task with {n} GPU(s) does not have (the \
                 scheduler numbers a task's GPUs from 0): give --gpus-per-task {want} or more",
                cell.cell_id, cell.config.device
            )));
        }
    }
    Ok(n)
}

/// Runs `tcobench emit`, printing the run folder on `out`.
pub fn run(args: &EmitArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let source = match &args.target {
        EmitTarget::Slurm(a) => &a.source,
        EmitTarget::K8s(a) => &a.source,
    };
    // The device check comes first, so a refused job leaves no run folder behind.
    let cells = if is_plan_file(&source.input) {
        match Plan::read(&source.input) {
            Ok(p) => p,
            Err(e) => return bad(format!("{e:#}")),
        }
    } else {
        let s = Scenario::load(
            &source.input,
            &Overrides {
                seed: source.seed,
                device: source.device,
                replicates: None,
            },
        )?;
        Plan::from_scenario(&s, &source.input.display().to_string())
    };
    if let Err(BadInput(why)) = gpus_per_task(&cells, source.gpus_per_task) {
        return bad(why);
    }
    let prepared = match prepare(source)? {
        Ok(p) => p,
        Err(BadInput(why)) => return bad(why),
    };
    let gpus = match gpus_per_task(&prepared.plan, source.gpus_per_task) {
        Ok(n) => n,
        Err(BadInput(why)) => return bad(why),
    };
    match &args.target {
        EmitTarget::Slurm(a) => slurm::emit(a, &prepared, gpus, out),
        EmitTarget::K8s(a) => k8s::emit(a, &prepared, gpus, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_a_shell() {
        for s in [
            "plain/path",
            "with space",
            "it's",
            "$HOME `x` \"q\"",
            "",
            "a\nb",
        ] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(s))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn task_limits_add_the_margin_and_round_up() {
        let limit = |t: f64| TaskLimit {
            cell_timeout_s: t,
            from_scenario: true,
        };
        // 90 s + 600 s = 690 s = 11.5 min.
        assert_eq!(limit(90.0).seconds(), 690);
        assert_eq!(limit(90.0).minutes(), 12);
        assert_eq!(limit(1.25).seconds(), 602);
        assert_eq!(limit(1.25).minutes(), 11);
        assert_eq!(limit(3000.0).minutes(), 60);
        let default = TaskLimit {
            cell_timeout_s: crate::run::process::DEFAULT_CELL_TIMEOUT_S,
            from_scenario: false,
        };
        assert_eq!(default.minutes(), 70);
        assert!(default.explained().contains("sets no cell_timeout_s"));
    }
}
