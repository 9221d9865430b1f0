//! `tcobench emit k8s`: a Kubernetes Indexed Job whose pods run one cell each,
//! `tcobench run-cell --plan MOUNT/RUN_ID/plan.json --index "$JOB_COMPLETION_INDEX"`, written as
//! `RUN_DIR/job.yaml`; the run folder sits at the root of a ReadWriteMany claim.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::{comment_text, shell_quote, PlanSource, Prepared, TaskLimit};
use crate::plan::PLAN_FILE;
use crate::run::writer::write_atomic;

/// The Kubernetes manifest's name inside the run folder.
pub const K8S_MANIFEST: &str = "job.yaml";

/// The claim name written when `--pvc` is not given: it exists nowhere, on purpose.
pub const PVC_PLACEHOLDER: &str = "tcobench-results-CHANGEME";

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

/// Writes the Indexed Job of the cells of `prepared`'s plan, each pod with `gpus` GPUs, says how
/// to apply it, and prints the run folder on `out`.
pub(super) fn emit(
    a: &K8sArgs,
    prepared: &Prepared,
    gpus: u32,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let source = &a.source;
    let Prepared { plan, run_dir, .. } = prepared;
    let run_dir_text = shell_quote(&run_dir.path.display().to_string());
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
        limit: TaskLimit::of(plan),
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
    writeln!(out, "{}", run_dir.path.display())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
