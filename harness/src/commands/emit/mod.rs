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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tcobench_analysis::schema::files;
use tcobench_backends::{Device, VirtualClock};

use crate::plan::{sanitize, Plan, PlanOverrides, PLAN_FILE};
use crate::power;
use crate::run::writer::{write_atomic, RunDir};
use crate::run::{default_models_dir, prepare_run, run_plan, RunOptions};
use crate::scenario::{Overrides, Scenario};

/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The Slurm batch script's name inside the run folder.
pub const SLURM_SCRIPT: &str = "submit.sbatch";

/// The Kubernetes manifest's name inside the run folder.
pub const K8S_MANIFEST: &str = "job.yaml";

/// The folder of the Slurm tasks' output and error files inside the run folder.
pub const SLURM_LOGS: &str = "slurm";

/// The claim name written when `--pvc` is not given: it exists nowhere, on purpose.
pub const PVC_PLACEHOLDER: &str = "tcobench-results-CHANGEME";

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
    #[arg(long, value_parser = parse_device)]
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

/// `tcobench emit k8s` options.
#[derive(clap::Args, Debug)]
pub struct K8sArgs {
    /// The plan and the task shape.
    #[command(flatten)]
    pub source: PlanSource,
    /// Container image holding tcobench (see the Dockerfile).
    #[arg(long)]
    pub image: String,
    /// PersistentVolumeClaim (ReadWriteMany) that holds the run folder at its root.
    #[arg(long, default_value = PVC_PLACEHOLDER)]
    pub pvc: String,
    /// Where the claim is mounted in the container.
    #[arg(long, default_value = "/results")]
    pub mount_path: String,
    /// The tcobench executable inside the image.
    #[arg(long, value_name = "PATH", default_value = "tcobench")]
    pub tcobench: String,
    /// Failed pods the Job tolerates before it gives up (default: one per cell, so a cell
    /// whose process dies does not stop the others).
    #[arg(long)]
    pub backoff_limit: Option<u32>,
}

fn parse_device(s: &str) -> std::result::Result<Device, String> {
    s.parse()
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

/// Everything a Kubernetes Indexed Job says.
#[derive(Debug, Clone)]
pub struct K8sJob {
    /// Scenario name (an annotation and a comment).
    pub scenario_name: String,
    /// The run id: the run folder's name at the root of the volume.
    pub run_id: String,
    /// Cells of the plan: the Job's completions.
    pub cells: usize,
    /// Pods at once (default: every cell).
    pub max_parallel: Option<u32>,
    /// GPUs per pod.
    pub gpus_per_task: u32,
    /// Container image.
    pub image: String,
    /// PersistentVolumeClaim holding the run folder.
    pub pvc: String,
    /// Where the claim is mounted.
    pub mount_path: String,
    /// The tcobench executable inside the image.
    pub tcobench: String,
    /// Failed pods tolerated.
    pub backoff_limit: u32,
    /// Each pod's limit (`activeDeadlineSeconds` of the pod template).
    pub limit: TaskLimit,
}

/// A DNS-1123 label from `s` with at most `max` characters: lower-case letters, digits, `-`.
fn dns_label(s: &str, max: usize) -> String {
    let lower: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(max)
        .collect();
    lower.trim_matches('-').to_string()
}

impl K8sJob {
    /// The Job's name: `tcobench-<run id>` as a DNS label short enough for the pods' host
    /// names (`<job>-<index>`).
    pub fn name(&self) -> String {
        format!("tcobench-{}", dns_label(&self.run_id, 43))
    }

    /// The shell command every pod runs; `$JOB_COMPLETION_INDEX` is the pod's index, set by
    /// Kubernetes in Indexed Jobs.
    pub fn command(&self) -> String {
        let plan = format!(
            "{}/{}/{PLAN_FILE}",
            self.mount_path.trim_end_matches('/'),
            self.run_id
        );
        format!(
            "exec {} run-cell --plan {} --index \"$JOB_COMPLETION_INDEX\"",
            shell_quote(&self.tcobench),
            shell_quote(&plan)
        )
    }

    /// The manifest: a commented header and the Job as YAML.
    pub fn manifest(&self) -> String {
        let name = self.name();
        let labels = serde_json::json!({
            "app.kubernetes.io/name": "tcobench",
            "app.kubernetes.io/instance": name,
        });
        let mut container = serde_json::json!({
            "name": "run-cell",
            "image": self.image,
            "command": ["sh", "-c", self.command()],
            "volumeMounts": [{ "name": "results", "mountPath": self.mount_path }],
        });
        if self.gpus_per_task > 0 {
            container["resources"] = serde_json::json!({
                "limits": { "nvidia.com/gpu": self.gpus_per_task }
            });
        }
        let job = serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "tcobench/scenario": self.scenario_name,
                    "tcobench/run-id": self.run_id,
                },
            },
            "spec": {
                "completionMode": "Indexed",
                "completions": self.cells,
                "parallelism": self.max_parallel.map_or(self.cells, |k| (k as usize).min(self.cells)),
                "backoffLimit": self.backoff_limit,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        // Per pod, from its start: the Job's own activeDeadlineSeconds would
                        // bound all the cells together.
                        "activeDeadlineSeconds": self.limit.seconds(),
                        "restartPolicy": "Never",
                        "containers": [container],
                        "volumes": [{
                            "name": "results",
                            "persistentVolumeClaim": { "claimName": self.pvc },
                        }],
                    },
                },
            },
        });
        let mut s = String::new();
        s.push_str(&format!(
            "# tcobench: the {} cells of scenario \"{}\" as a Kubernetes Indexed Job, one pod per cell.\n",
            self.cells,
            comment_text(&self.scenario_name)
        ));
        s.push_str(&format!(
            "# The run folder `{}` must sit at the root of the claim `{}` (mounted at {}):\n",
            comment_text(&self.run_id),
            comment_text(&self.pvc),
            comment_text(&self.mount_path)
        ));
        if self.pvc == PVC_PLACEHOLDER {
            s.push_str(
                "# `tcobench-results-CHANGEME` is a placeholder: name a ReadWriteMany claim with --pvc.\n",
            );
        }
        s.push_str("# copy the folder there, `kubectl apply -f job.yaml`, wait for the Job, copy it back,\n");
        s.push_str("# then `tcobench collect RUN_DIR` merges the cells, analyses and reports.\n");
        s.push_str(&format!(
            "# Each pod may run {} s (activeDeadlineSeconds): {}; past it the pod is killed, its \
             cell uncommitted (the Job tries the index again within backoffLimit).\n",
            self.limit.seconds(),
            self.limit.explained()
        ));
        s.push_str(&serde_yaml::to_string(&job).expect("a Job serialises"));
        s
    }
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

fn command_line() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "tcobench".to_string();
    }
    args
}

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
    };
    let scenario = Scenario::load(
        input,
        &Overrides {
            seed: source.seed,
            device: source.device,
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
        command: command_line(),
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
        .filter_map(|c| match c.device {
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
                cell.cell_id, cell.device
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
            },
        )?;
        Plan::from_scenario(&s, &source.input.display().to_string())
    };
    if let Err(BadInput(why)) = gpus_per_task(&cells, source.gpus_per_task) {
        return bad(why);
    }
    let Prepared {
        plan,
        run_dir,
        committed,
    } = match prepare(source)? {
        Ok(p) => p,
        Err(BadInput(why)) => return bad(why),
    };
    let gpus = match gpus_per_task(&plan, source.gpus_per_task) {
        Ok(n) => n,
        Err(BadInput(why)) => return bad(why),
    };
    let run_dir_text = shell_quote(&run_dir.path.display().to_string());
    match &args.target {
        EmitTarget::Slurm(a) => {
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
                Some(p) => {
                    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?
                }
                None => std::env::current_exe()
                    .and_then(|p| p.canonicalize())
                    .context("locating the tcobench executable")?,
            };
            let models_dir = match &a.models_dir {
                Some(m) => Some(
                    std::path::absolute(m).with_context(|| format!("resolving {}", m.display()))?,
                ),
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
                derived_limit: TaskLimit::of(&plan),
                tcobench,
                models_dir,
            };
            let script = match job.script() {
                Ok(s) => s,
                Err(why) => return bad(why),
            };
            let logs = run_dir.path.join(SLURM_LOGS);
            std::fs::create_dir_all(&logs)
                .with_context(|| format!("creating {}", logs.display()))?;
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
        }
        EmitTarget::K8s(a) => {
            let job = K8sJob {
                scenario_name: plan.scenario_name.clone(),
                run_id: run_dir.run_id.clone(),
                cells: plan.cells.len(),
                max_parallel: source.max_parallel,
                gpus_per_task: gpus,
                image: a.image.clone(),
                pvc: a.pvc.clone(),
                mount_path: a.mount_path.clone(),
                tcobench: a.tcobench.clone(),
                backoff_limit: a
                    .backoff_limit
                    .unwrap_or(u32::try_from(plan.cells.len()).unwrap_or(u32::MAX)),
                limit: TaskLimit::of(&plan),
            };
            let path = run_dir.path.join(K8S_MANIFEST);
            write_atomic(&path, job.manifest().as_bytes())?;
            eprintln!("{} cells in {}", job.cells, run_dir.path.display());
            eprintln!(
                "copy the run folder to the root of the claim `{}`, then:  kubectl apply -f {}",
                a.pvc,
                shell_quote(&path.display().to_string())
            );
            if a.pvc == PVC_PLACEHOLDER {
                eprintln!("note: `{PVC_PLACEHOLDER}` is a placeholder: name your claim with --pvc");
            }
            eprintln!("then, with the folder copied back:  tcobench collect {run_dir_text}");
        }
    }
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
    fn sbatch_arguments_are_quoted_and_escaped() {
        assert_eq!(sbatch_quote("a b").unwrap(), "\"a b\"");
        assert_eq!(sbatch_quote(r#"x"y\z"#).unwrap(), r#""x\"y\\z""#);
        assert_eq!(sbatch_quote("a\nb"), None);
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

    #[test]
    fn job_names_are_dns_labels() {
        assert_eq!(
            dns_label("20250101T000000Z-My_Run", 63),
            "20250101t000000z-my-run"
        );
        assert_eq!(dns_label("--x--", 63), "x");
        assert!(dns_label(&"a".repeat(100), 43).len() <= 43);
    }
}
