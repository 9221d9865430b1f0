//! The validity warnings: everything a reader must know before trusting the numbers (power
//! basis, energy windows, throttling, agreement, cell outcomes, repetitions, pricing, outliers,
//! host load), one source per topic, in [`VALIDITY_SOURCES`] order.

use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_results::schema::{CellOutcome, Manifest};

/// One thing a reader must know before trusting the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidityWarning {
    /// What it concerns (`power`, `energy window`, `throttling`, `agreement`, `cells`,
    /// `repetitions`, `pricing`, `outliers`).
    pub topic: &'static str,
    /// The warning, in one sentence.
    pub text: String,
}

/// A source of validity warnings: reads the run and adds what it finds.
type ValiditySource = fn(&RunStats, &Manifest, &mut Vec<ValidityWarning>);

/// Every source, in the order the report lists them; a new source is one more line here.
const VALIDITY_SOURCES: &[ValiditySource] = &[
    validity_power_basis,
    validity_energy_windows,
    validity_agreement,
    validity_cell_outcomes,
    validity_repetitions,
    validity_pricing,
    validity_outliers,
    validity_host_load,
];

/// Fewer timed requests than this make a cell's intervals wide and its tests weak.
pub const FEW_REQUESTS: usize = 5;

/// Everything a reader must know before trusting the numbers, from every
/// [`VALIDITY_SOURCES`] entry.
pub fn validity_warnings(stats: &RunStats, manifest: &Manifest) -> Vec<ValidityWarning> {
    let mut out = Vec::new();
    for source in VALIDITY_SOURCES {
        source(stats, manifest, &mut out);
    }
    out
}

fn warn(out: &mut Vec<ValidityWarning>, topic: &'static str, text: String) {
    out.push(ValidityWarning { topic, text });
}

fn short(id: &str) -> &str {
    // Cell ids are short and readable already; a prefix could name two cells.
    id
}

fn validity_power_basis(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    match (m.power.method.as_str(), m.power.basis.as_str()) {
        ("none", _) => warn(
            out,
            "power",
            "energy was not measured: no J/token, kWh or carbon figure is a measurement".into(),
        ),
        (method, "estimated") => warn(
            out,
            "power",
            format!(
                "power is estimated by a model (method `{method}`, scope {}), not measured: energy, kWh and carbon figures carry the model's error, which no interval here includes",
                m.power.scope
            ),
        ),
        (method, basis) if basis != "measured" => warn(
            out,
            "power",
            format!("power basis is `{basis}` (method `{method}`): not a measurement of real hardware"),
        ),
        _ => {}
    }
    if let Some(b) = &m.power.idle_baseline {
        if b.window.validity == tcobench_results::schema::EnergyValidity::Invalid {
            warn(
                out,
                "energy window",
                format!(
                    "the idle baseline's energy window is invalid ({}): net-of-idle figures are imprecise",
                    b.window.invalid_reason.as_deref().unwrap_or("no reason recorded")
                ),
            );
        }
    }
}

fn validity_host_load(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &m.cells {
        if let Some(why) = c.host_load.as_ref().and_then(|l| l.not_quiet()) {
            warn(
                out,
                "host load",
                format!(
                    "cell `{}`: the host was not quiet while it was timed ({why}): its timings \
                     may be slower for reasons other than its configuration, and a comparison \
                     with it may call noise a difference",
                    short(&c.cell_id)
                ),
            );
        }
    }
}

fn validity_energy_windows(_: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &m.cells {
        let Some(e) = &c.energy else {
            continue;
        };
        if e.validity == tcobench_results::schema::EnergyValidity::Invalid {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: energy window of {:.0} ms is invalid ({}; shortest valid {:.0} ms)",
                    short(&c.cell_id),
                    e.window_ms,
                    e.invalid_reason.as_deref().unwrap_or("no reason recorded"),
                    e.min_window_ms
                ),
            );
        } else if e.requests_below_min_window > 0 {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: {} timed requests were shorter than the {:.0} ms an energy reading needs; use the cell's whole-window figure, not per-request energy",
                    short(&c.cell_id),
                    e.requests_below_min_window,
                    e.min_window_ms
                ),
            );
        }
        if let Some(x) = e.cross_check.as_ref().filter(|x| x.flagged) {
            warn(
                out,
                "energy window",
                format!(
                    "cell `{}`: the energy counter and integrated instant power ({}) disagree by {:.1} % (tolerance {:.1} %)",
                    short(&c.cell_id),
                    x.method,
                    x.disagreement_rel * 100.0,
                    x.tolerance_rel * 100.0
                ),
            );
        }
        if let Some(t) = e.throttling.as_ref().filter(|t| t.flagged) {
            warn(
                out,
                "throttling",
                format!(
                    "cell `{}`: {} slowdown during the window ({}): its timings are not representative",
                    short(&c.cell_id),
                    if t.hw_slowdown { "hardware" } else { "thermal" },
                    t.reasons.join(", ")
                ),
            );
        }
    }
}

fn validity_agreement(stats: &RunStats, m: &Manifest, out: &mut Vec<ValidityWarning>) {
    use tcobench_results::schema::AgreementStatus as S;
    for c in &stats.cells {
        let Some(a) = &c.agreement else {
            continue;
        };
        let what = match a.status {
            S::Failed => "failed the logits-agreement gate",
            S::Error => "could not be checked by the logits-agreement gate",
            _ => continue,
        };
        let fate = if m.allow_disagreement {
            "it is still compared (`--allow-disagreement`)"
        } else {
            "it is excluded from comparisons"
        };
        warn(
            out,
            "agreement",
            format!(
                "cell `{}` ({}) {what}: {fate}",
                short(&c.cell_id),
                c.label()
            ),
        );
    }
}

fn validity_cell_outcomes(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &stats.cells {
        match c.status {
            CellOutcome::Ok => {
                if c.n_failed_excluded > 0 {
                    warn(
                        out,
                        "cells",
                        format!(
                            "cell `{}`: {} timed requests failed and are excluded",
                            short(&c.cell_id),
                            c.n_failed_excluded
                        ),
                    );
                }
            }
            CellOutcome::Failed => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) failed: {}; it has no figures",
                    short(&c.cell_id),
                    c.label(),
                    c.error.as_deref().unwrap_or("no error recorded")
                ),
            ),
            CellOutcome::Skipped => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) was skipped ({}): the results are partial",
                    short(&c.cell_id),
                    c.label(),
                    c.error.as_deref().unwrap_or("no reason recorded")
                ),
            ),
            CellOutcome::Pending => warn(
                out,
                "cells",
                format!(
                    "cell `{}` ({}) was not run: the results are partial",
                    short(&c.cell_id),
                    c.label()
                ),
            ),
        }
    }
}

fn validity_repetitions(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    let few: Vec<String> = stats
        .cells
        .iter()
        .filter(|c| c.status == CellOutcome::Ok && c.n_requests < FEW_REQUESTS)
        .map(|c| format!("`{}` (n = {})", short(&c.cell_id), c.n_requests))
        .collect();
    if !few.is_empty() {
        warn(
            out,
            "repetitions",
            format!(
                "fewer than {FEW_REQUESTS} timed requests in {}: their intervals are wide and tests on them have little power",
                few.join(", ")
            ),
        );
    }
}

fn validity_pricing(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    // Costing's own findings: vCPU mismatch between host and priced instance, instances that
    // fit no cell, no cell meeting the SLO, estimated energy.
    if let Some(c) = &stats.costing {
        for w in &c.warnings {
            warn(out, "pricing", w.clone());
        }
    }
}

fn validity_outliers(stats: &RunStats, _: &Manifest, out: &mut Vec<ValidityWarning>) {
    for c in &stats.cells {
        let parts: Vec<String> = c
            .robust
            .iter()
            .filter(|(_, r)| r.outliers.severe > 0)
            .map(|(m, r)| {
                format!(
                    "{m}: {} severe, {} mild",
                    r.outliers.severe, r.outliers.mild
                )
            })
            .collect();
        if !parts.is_empty() {
            warn(
                out,
                "outliers",
                format!(
                    "cell `{}`: outliers beyond 3 × IQR ({}), kept in every statistic",
                    short(&c.cell_id),
                    parts.join("; ")
                ),
            );
        }
    }
}
