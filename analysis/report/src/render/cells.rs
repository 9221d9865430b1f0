//! The view of each cell handed to the templates (its label, outcome, whether it has notes, its
//! energy basis and agreement verdict in words) and the run's protocol (warm-up, repetitions).

use std::collections::BTreeSet;

use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_results::schema::{CellOutcome, Manifest};
use tcobench_results::{CellStats, Metric};

use super::MISSING;

/// The run's protocol, as the templates show it.
#[derive(Serialize)]
pub(super) struct Protocol {
    warmup: String,
    repetitions: String,
}

/// The run's protocol: warm-up and timed repetitions per cell, a range where cells differ.
pub(super) fn protocol(manifest: &Manifest) -> Protocol {
    Protocol {
        warmup: uniform(manifest.cells.iter().map(|c| c.warmup)),
        repetitions: uniform(manifest.cells.iter().map(|c| c.repetitions)),
    }
}

/// The value every one of `values` has, `lo–hi (varies by cell)` where they differ, `—` when
/// there is none.
fn uniform(values: impl Iterator<Item = u32>) -> String {
    let set: BTreeSet<u32> = values.collect();
    match (set.first(), set.last()) {
        (None, _) | (_, None) => MISSING.to_string(),
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b} (varies by cell)"),
    }
}

/// The level the run's intervals are at, as the templates say it.
#[derive(Serialize)]
pub(super) struct Levels {
    /// Whether the cells ran in several executions each.
    replicated: bool,
    /// Executions per cell (a range where cells differ).
    executions: String,
    /// What the per-cell intervals are across, in a sentence.
    cell_note: String,
    /// What the comparisons treat as independent, in a sentence.
    comparison_note: String,
    /// Per replicated cell, the variance components of its throughput.
    components: Vec<ComponentRow>,
}

/// One cell's variance components (tokens/s), formatted.
#[derive(Serialize)]
pub(super) struct ComponentRow {
    index: usize,
    label: String,
    executions: usize,
    within_sd: String,
    between_sd: String,
    factor: String,
    icc: String,
}

/// The levels of `stats`: across executions for a replicated run, else across requests, with
/// the variance components of each replicated cell.
pub(super) fn levels(stats: &RunStats) -> Levels {
    use tcobench_results::{fmt_sig, Level};
    let counts = stats
        .cells
        .iter()
        .filter_map(|c| c.replication.as_ref())
        .map(|r| r.executions.len() as u32);
    let replicated = stats.replicated();
    let executions = uniform(counts);
    let cell_note = if replicated {
        format!(
            "Intervals {}: every cell ran in {executions} executions (each a fresh process with \
             its model loaded anew, in a seeded order shuffled and mirrored per pair of \
             replicates); a cell's mean is the mean of its executions' means and its 95 % \
             Student-t interval has one degree of freedom fewer than it has executions, so the \
             variance between runs is inside it. Percentiles pool the executions' requests.",
            Level::Executions.words()
        )
    } else {
        format!(
            "Intervals {}: every cell ran once, in one process, and its timed requests are \
             taken as independent draws. The interval cannot see what varies from one run to the \
             next (the process, its memory layout, the host's state); run with `--replicates R` \
             (R ≥ 2) for intervals across executions.",
            Level::Requests.words()
        )
    };
    let unit = stats
        .comparisons
        .first()
        .map(|c| c.unit)
        .or(replicated.then_some(Level::Executions));
    let comparison_note = match unit {
        Some(Level::Executions) => "The unit of these tests is the execution: each cell \
            contributes one value per execution (its mean), so a difference is significant only \
            if it exceeds what varies from run to run."
            .to_string(),
        _ => "The unit of these tests is the request, within one execution per cell: a \
            difference can be significant here and still be run-to-run noise (`tcobench noise` \
            measures how much; `--replicates R` makes the execution the unit)."
            .to_string(),
    };
    let components = stats
        .cells
        .iter()
        .filter_map(|c| {
            let r = c.replication.as_ref()?;
            let level = r.metrics.get(Metric::TokensPerS.name())?;
            let comp = level.components.as_ref()?;
            Some(ComponentRow {
                index: c.index,
                label: c.label(),
                executions: level.n_executions,
                within_sd: fmt_sig(comp.var_within.sqrt(), 3),
                between_sd: fmt_sig(comp.var_between.sqrt(), 3),
                factor: comp
                    .between_factor
                    .map_or_else(|| MISSING.to_string(), |f| format!("{}×", fmt_sig(f, 3))),
                icc: fmt_sig(comp.icc, 2),
            })
        })
        .collect();
    Levels {
        replicated,
        executions,
        cell_note,
        comparison_note,
        components,
    }
}

/// One cell as the templates see it: its statistics and what they say about it in words.
#[derive(Serialize)]
pub(super) struct CellView<'a> {
    #[serde(flatten)]
    cell: &'a CellStats,
    label: String,
    ok: bool,
    has_notes: bool,
    energy_label: String,
    agreement_label: String,
}

/// Every cell of the run, as the templates see it.
pub(super) fn cell_views<'a>(stats: &'a RunStats, manifest: &Manifest) -> Vec<CellView<'a>> {
    stats
        .cells
        .iter()
        .map(|c| CellView {
            cell: c,
            label: c.label(),
            ok: c.status == CellOutcome::Ok,
            has_notes: c.status == CellOutcome::Ok
                && !(c.unavailable.is_empty() && c.warnings.is_empty()),
            energy_label: energy_label(c, manifest),
            agreement_label: agreement_label(c),
        })
        .collect()
}

/// The agreement gate in words: `passed (2.1e-7 ≤ 1e-4 vs candle/f32/cpu)`.
fn agreement_label(cell: &CellStats) -> String {
    use tcobench_results::schema::AgreementStatus as S;
    let Some(a) = &cell.agreement else {
        return MISSING.to_string();
    };
    let kv = match cell.backend_info.get("kv_cache").map(String::as_str) {
        Some("false") => "; model.onnx without key/value cache",
        Some("true") => "; model.onnx with key/value cache",
        _ => "",
    };
    let text = match a.status {
        S::Passed | S::Failed => format!(
            "{} ({} {} {:.0e} vs {})",
            if a.status == S::Passed {
                "passed"
            } else {
                "FAILED"
            },
            a.max_rel_diff
                .map_or_else(|| MISSING.to_string(), |d| format!("{d:.1e}")),
            if a.status == S::Passed { "≤" } else { ">" },
            a.tolerance,
            a.reference
        ),
        S::Reference => "reference".to_string(),
        S::NotApplicable => "n/a (no logits)".to_string(),
        S::Error => format!("not checked: {}", a.note.as_deref().unwrap_or("error")),
    };
    format!("{text}{kv}")
}

/// How the cell's energy was obtained, method and power basis; `not measured` without J/token.
fn energy_label(cell: &CellStats, manifest: &Manifest) -> String {
    if cell.metric(Metric::EnergyJPerToken).is_none() {
        return "not measured".into();
    }
    let method = cell
        .energy_method
        .as_deref()
        .unwrap_or(&manifest.power.method);
    if manifest.power.basis == "estimated" {
        format!("{method}, estimated")
    } else {
        format!("{method}, {}", manifest.power.basis)
    }
}
