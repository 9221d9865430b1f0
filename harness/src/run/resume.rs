//! `run --resume`: a killed run finished with its own plan and seeds, once the scenario and the
//! versions are checked to give comparable numbers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use tcobench_backends::{OrtRuntime, VirtualClock};
use tcobench_results::io;
use tcobench_results::schema::{files, Manifest};

use super::clock::Clock;
use super::drive::{drive, Session};
use super::host;
use super::writer::RunDir;
use super::{pending_record, Execution, ResumeRefused, RunOptions, RunOutcome};
use crate::plan::{Plan, PLAN_FILE};
use crate::power;
use crate::scenario::{BackendKind, Overrides, Scenario};

/// Finishes the run in `run_dir`: runs the cells of its `plan.json` that are not committed,
/// with the plan's seeds, then merges, analyses and reports as a run does.
///
/// The scenario (`scenario_path`, by default the one the run was started from, resolved with the
/// same command-line overrides) must still yield the same cells with the same power and thread
/// settings, and this tcobench must carry the versions of itself and its backends that the run
/// recorded; otherwise the numbers would not be comparable and the resume is refused
/// ([`ResumeRefused`]).
///
/// `execution` says how to carry out the cells of the scenario as resolved now: `tcobench run`
/// takes its `cell_timeout_s` when the command line gives no `--cell-timeout-s` (a value
/// changed since the run began is noted on standard error).
pub fn resume(
    run_dir_path: &Path,
    scenario_path: Option<&Path>,
    opts: &RunOptions,
    execution: impl FnOnce(&Scenario) -> Execution,
) -> Result<RunOutcome> {
    let refuse = |reason: String| -> anyhow::Error {
        ResumeRefused {
            run_dir: run_dir_path.to_path_buf(),
            reason,
        }
        .into()
    };
    if !run_dir_path.join(files::MANIFEST).is_file() {
        return Err(refuse(format!(
            "it has no {} (not a run folder, or the run was killed before it began)",
            files::MANIFEST
        )));
    }
    let plan_path = run_dir_path.join(PLAN_FILE);
    if !plan_path.is_file() {
        return Err(refuse(format!(
            "it has no {PLAN_FILE} (written by runs of this version on; the run was killed \
             before it began, or an older tcobench wrote it): start the scenario again"
        )));
    }
    let plan = Plan::read(&plan_path).map_err(|e| refuse(format!("{e:#}")))?;
    let run_dir = RunDir::open(run_dir_path).map_err(|e| refuse(format!("{e:#}")))?;
    let _run_lock = run_dir
        .lock_run(Duration::from_secs(3))
        .map_err(|e| refuse(format!("{e:#}")))?;
    let mut manifest = io::read_manifest(&run_dir.path.join(files::MANIFEST))
        .map_err(|e| refuse(e.to_string()))?;

    let scenario_path = scenario_path.map(Path::to_path_buf).unwrap_or_else(|| {
        let as_given = PathBuf::from(&plan.scenario_path);
        match &plan.scenario_file {
            Some(abs) if !as_given.is_file() => abs.clone(),
            _ => as_given,
        }
    });
    if !scenario_path.is_file() {
        return Err(refuse(format!(
            "its scenario {} is not there any more; name it: \
             `tcobench run SCENARIO --resume {}`",
            scenario_path.display(),
            run_dir_path.display()
        )));
    }
    let scenario = Scenario::load(
        &scenario_path,
        &Overrides {
            seed: plan.overrides.seed,
            device: plan.overrides.device,
            replicates: plan.overrides.replicates,
        },
    )?;
    let now = Plan::from_scenario(&scenario, &plan.scenario_path);
    same_plan(&plan, &now).map_err(|why| {
        refuse(format!(
            "{} now resolves to a different plan: {why}; numbers from both would not be \
             comparable, so start a new run",
            scenario_path.display()
        ))
    })?;

    let committed = run_dir.committed_ids()?;
    manifest.cells = plan
        .cells
        .iter()
        .map(|c| {
            if committed.contains(&c.cell_id) {
                run_dir
                    .read_cell_status(&c.cell_id)
                    .map_err(|e| refuse(format!("committed cell {}: {e:#}", c.cell_id)))
            } else {
                Ok(pending_record(c))
            }
        })
        .collect::<Result<_>>()?;
    same_versions(&manifest, &plan, &committed, &opts.models_dir).map_err(|why| {
        refuse(format!(
            "{why}; numbers measured by different versions would not be comparable, so start \
             a new run (or resume with the tcobench that started this one)"
        ))
    })?;
    if let (Some(then), Some(now)) = (&manifest.git_revision, host::git_revision(&scenario_path)) {
        if *then != now {
            eprintln!(
                "note: the git revision changed from {then} to {now}; tcobench and its backends \
                 have the same versions, so the cells stay comparable"
            );
        }
    }
    let timeout_then = plan.scenario["cell_timeout_s"].as_f64();
    if timeout_then != scenario.cell_timeout_s {
        let said = |t: Option<f64>| t.map_or_else(|| "not set".to_string(), |t| format!("{t} s"));
        eprintln!(
            "note: the scenario's cell_timeout_s changed from {} to {} since the run began; the \
             cells still to run get the new limit (unless --cell-timeout-s gives one)",
            said(timeout_then),
            said(scenario.cell_timeout_s)
        );
    }
    let execution = execution(&scenario);
    let stale = run_dir
        .remove_stale_temp(STALE_WRITER_WAIT)
        .map_err(|e| refuse(format!("{e:#}")))?;
    if stale > 0 {
        tracing::info!("removed {stale} unfinished cell commit(s)");
    }

    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    // Virtual time is replayed cell by cell (see `drive`); wall time goes on from the start.
    let clock = if all_mock {
        Clock::Virtual(virtual_clock.clone())
    } else {
        Clock::wall_since(&manifest.started_at)?
    };
    let (sampler, _) = power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let spent_before_usd = if all_mock {
        0.0
    } else {
        manifest.budget.as_ref().map_or(0.0, |b| b.spent_usd)
    };
    manifest.status = "running".into();
    manifest.ended_at = None;
    manifest.allow_disagreement |= opts.allow_disagreement;
    drive(
        Session {
            scenario: &scenario,
            plan,
            run_dir,
            manifest,
            clock,
            virtual_clock,
            sampler,
            committed,
            spent_before_usd,
            resumed: true,
        },
        opts,
        &execution,
    )
}

/// How long `--resume` waits for the cell processes of a killed attempt to go.
const STALE_WRITER_WAIT: Duration = Duration::from_secs(30);

/// Why `now` is not the same plan as `then`, if it is not.
fn same_plan(then: &Plan, now: &Plan) -> std::result::Result<(), String> {
    let (a, b) = (then.cell_ids(), now.cell_ids());
    if a != b {
        let added: Vec<_> = b.iter().filter(|id| !a.contains(id)).collect();
        let removed: Vec<_> = a.iter().filter(|id| !b.contains(id)).collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!(
                "{} cell(s) not in the run (first: {})",
                added.len(),
                added[0]
            ));
        }
        if !removed.is_empty() {
            parts.push(format!(
                "{} cell(s) of the run gone (first: {})",
                removed.len(),
                removed[0]
            ));
        }
        if parts.is_empty() {
            parts.push("the same cells in another order".into());
        }
        return Err(parts.join(", "));
    }
    // Settings outside the cell ids that shape the numbers.
    let keys = [
        ("power", "source"),
        ("power", "cpu_tdp_w"),
        ("power", "cpu_idle_fraction"),
        ("power", "mock_watts"),
        ("ort_threads", "intra"),
        ("ort_threads", "inter"),
    ];
    let changed: Vec<String> = keys
        .iter()
        .filter(|(section, key)| then.scenario[section][key] != now.scenario[section][key])
        .map(|(section, key)| {
            format!(
                "{section}.{key} {} → {}",
                then.scenario[section][key], now.scenario[section][key]
            )
        })
        .collect();
    if changed.is_empty() {
        Ok(())
    } else {
        Err(changed.join(", "))
    }
}

/// Why this tcobench may not add cells to the run of `manifest`, if it may not: its own version
/// and those of the crates that shape the numbers must be the ones recorded, and so must the ONNX
/// Runtime library when cells still to run use it.
fn same_versions(
    manifest: &Manifest,
    plan: &Plan,
    committed: &BTreeSet<String>,
    models_dir: &Path,
) -> std::result::Result<(), String> {
    let mut changed = Vec::new();
    for (name, now) in host::versions() {
        match manifest.versions.get(&name) {
            Some(then) if *then == now => {}
            Some(then) => changed.push(format!("{name} {then} → {now}")),
            None => changed.push(format!("{name} (not recorded) → {now}")),
        }
    }
    let ort_then = manifest
        .cells
        .iter()
        .find_map(|c| c.backend_info.get("onnxruntime").cloned())
        .or_else(|| manifest.versions.get("onnxruntime").cloned());
    let ort_to_run = plan
        .cells
        .iter()
        .any(|c| c.config.backend == BackendKind::Onnxruntime && !committed.contains(&c.cell_id));
    if let (Some(then), true) = (ort_then, ort_to_run) {
        let cache = models_dir.parent().unwrap_or(models_dir);
        match OrtRuntime::init(cache) {
            Ok(rt) if rt.version() == then => {}
            Ok(rt) => changed.push(format!("onnxruntime {then} → {}", rt.version())),
            Err(e) => changed.push(format!("onnxruntime {then} → not loadable ({e})")),
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!("versions changed: {}", changed.join(", ")))
    }
}
