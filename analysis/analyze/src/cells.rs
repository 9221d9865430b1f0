//! One cell's statistics from its records: descriptives and robust statistics per metric (warm-up
//! and failed requests excluded and counted), what is unavailable and why (never a silent zero),
//! data-quality warnings, and the energy of the cell's window gross and net of the idle baseline.

use std::collections::BTreeMap;

use tcobench_results::load;
use tcobench_results::schema::{self, CellOutcome, CellRecord};
use tcobench_results::{fmt_sig, CellEnergy, CellStats, Metric, RobustStats, Unavailable};
use tcobench_stats::descriptive::{Descriptives, StatsError};
use tcobench_stats::{groups, inference};

/// Gross and net energy of a cell window against the run's idle baseline.
pub fn cell_energy(
    window: &schema::EnergyWindow,
    idle: Option<&schema::IdleBaseline>,
) -> CellEnergy {
    let tokens = window.generated_tokens as f64;
    let per_token = |e: f64| (tokens > 0.0).then(|| e / tokens);
    let gross = window.energy_j;
    let gross_u = gross.zip(window.uncertainty_rel).map(|(e, u)| e * u);
    let window_s = window.window_ms / 1e3;
    let net = match (gross, idle) {
        (None, _) => Err("no gross energy".to_string()),
        (Some(_), None) => Err("no idle baseline (set power.idle_baseline_s)".to_string()),
        (Some(g), Some(b)) => {
            if b.window.method != window.method || b.window.device != window.device {
                Err(format!(
                    "the idle baseline was measured with {} on {}, the cell with {} on {}",
                    b.window.method, b.window.device, window.method, window.device
                ))
            } else if b.window.validity != schema::EnergyValidity::Valid {
                Err(format!(
                    "the idle baseline is invalid: {}",
                    b.window
                        .invalid_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ))
            } else if let Some(w) = b.watts {
                let idle_j = w * window_s;
                let idle_u = idle_j * b.window.uncertainty_rel.unwrap_or(0.0);
                Ok((w, g - idle_j, gross_u.unwrap_or(0.0) + idle_u))
            } else {
                Err("the idle baseline has no power figure".to_string())
            }
        }
    };
    let mut flags = Vec::new();
    if window.validity == schema::EnergyValidity::Invalid {
        flags.push("invalid_window".to_string());
    }
    if window.basis == "estimated" {
        flags.push("estimated".to_string());
    }
    if window.cross_check.as_ref().is_some_and(|c| c.flagged) {
        flags.push("cross_check_disagreement".to_string());
    }
    if let Some(t) = &window.throttling {
        if t.hw_slowdown {
            flags.push("hw_slowdown".to_string());
        }
        if t.thermal_slowdown {
            flags.push("thermal_slowdown".to_string());
        }
        if t.sw_power_cap_ms.is_some_and(|ms| ms > 0.0) {
            flags.push("power_capped".to_string());
        }
    }
    let (idle_watts, net_energy_j, net_u_j, net_unavailable) = match net {
        Ok((w, n, u)) => (Some(w), Some(n), Some(u), None),
        Err(why) => (None, None, None, Some(why)),
    };
    CellEnergy {
        window: window.clone(),
        gross_j_per_token: gross.and_then(per_token),
        gross_uncertainty_j_per_token: gross_u.and_then(per_token),
        idle_watts,
        net_energy_j,
        net_j_per_token: net_energy_j.and_then(per_token),
        net_uncertainty_rel: net_energy_j
            .zip(net_u_j)
            .filter(|(n, _)| *n > 0.0)
            .map(|(n, u)| u / n),
        net_unavailable,
        flags,
    }
}

fn unavailable_reason(
    metric: Metric,
    record: &CellRecord,
    samples: &load::CellSamples,
    energy_method: Option<&str>,
) -> String {
    if samples.n_used == 0 {
        return match record.status {
            CellOutcome::Failed => "cell failed: no successful timed requests".into(),
            CellOutcome::Pending => "cell not run".into(),
            // The cause's first clause (`skipped for budget`); the cell's error has the numbers.
            CellOutcome::Skipped => match &record.error {
                Some(e) => format!("cell not run: {}", e.split(':').next().unwrap_or(e)),
                None => "cell skipped, not run".into(),
            },
            CellOutcome::Ok => "no successful timed requests".into(),
        };
    }
    let nulls = samples.nulls.get(&metric).copied().unwrap_or(0);
    let bad = samples.non_finite.get(&metric).copied().unwrap_or(0);
    match metric {
        Metric::EnergyJPerToken if matches!(energy_method, None | Some("none")) => {
            "energy not measured (energy_method: none)".into()
        }
        Metric::EnergyJPerToken
            if record.config.batch_size == 0 || record.config.new_tokens == 0 =>
        {
            "no generated tokens to divide by".into()
        }
        Metric::TpotMs if record.config.new_tokens <= 1 && nulls > 0 => {
            "undefined for new_tokens ≤ 1".into()
        }
        _ if bad > 0 && nulls == 0 => {
            format!("all {bad} values non-finite (NaN/∞)")
        }
        _ if bad > 0 => format!("{nulls} null and {bad} non-finite values, none usable"),
        Metric::EnergyJPerToken => format!("energy_j is null in all {nulls} requests"),
        _ => format!("null in all {nulls} requests"),
    }
}

/// The statistics of one cell from its manifest record and its loaded requests, pooled over its
/// `executions` (1 unless the run has replicates).
pub fn cell_stats(
    record: &CellRecord,
    samples: &load::CellSamples,
    bootstrap: &inference::Bootstrap,
    idle: Option<&schema::IdleBaseline>,
    executions: usize,
) -> CellStats {
    let energy_method = record.energy_method.clone().or_else(|| {
        let methods: Vec<&str> = samples.energy_methods.iter().map(String::as_str).collect();
        match methods.as_slice() {
            [] => None,
            [one] => Some((*one).to_string()),
            many => Some(format!("mixed({})", many.join(","))),
        }
    });
    let mut metrics = BTreeMap::new();
    let mut robust = BTreeMap::new();
    let mut unavailable = Vec::new();
    let mut warnings = Vec::new();
    for metric in Metric::ALL {
        let values = samples.metric(metric);
        match Descriptives::try_compute(values) {
            Ok(d) => {
                let nulls = samples.nulls.get(&metric).copied().unwrap_or(0);
                let bad = samples.non_finite.get(&metric).copied().unwrap_or(0);
                if nulls > 0 {
                    warnings.push(format!(
                        "{}: {nulls} of {} values null; statistics use {}",
                        metric.name(),
                        samples.n_used,
                        d.n
                    ));
                }
                if bad > 0 {
                    warnings.push(format!(
                        "{}: {bad} non-finite value(s) (NaN/∞) excluded",
                        metric.name()
                    ));
                }
                metrics.insert(metric.name().to_string(), d);
                if let Ok(g) = groups::summarize(metric.name(), samples.metric(metric), bootstrap) {
                    robust.insert(
                        metric.name().to_string(),
                        RobustStats {
                            mad: g.mad,
                            ci95_median: g.ci95_median,
                            outliers: g.outliers,
                        },
                    );
                }
            }
            Err(StatsError::Empty) => unavailable.push(Unavailable {
                metric: metric.name().into(),
                reason: unavailable_reason(metric, record, samples, energy_method.as_deref()),
            }),
            Err(e) => unavailable.push(Unavailable {
                metric: metric.name().into(),
                reason: e.to_string(),
            }),
        }
    }
    let energy = record.energy.as_ref().map(|w| cell_energy(w, idle));
    if let Some(w) = &record.energy {
        if w.requests_below_min_window > 0 {
            warnings.push(format!(
                "energy_j_per_token: {} timed request(s) shorter than the {} ms minimum window \
                 of the energy source (their per-request figures are imprecise); the cell's \
                 whole-window figure is energy.gross_j_per_token",
                w.requests_below_min_window,
                fmt_sig(w.min_window_ms, 3),
            ));
        }
        if w.validity == schema::EnergyValidity::Invalid {
            warnings.push(format!(
                "energy: the cell's window is invalid: {}",
                w.invalid_reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    let configured = record.repetitions as usize * executions.max(1);
    if record.status == CellOutcome::Ok && samples.n_used < configured {
        warnings.push(format!(
            "{} of {configured} configured repetitions usable",
            samples.n_used
        ));
    }
    CellStats {
        cell_id: record.cell_id.clone(),
        index: record.index,
        config: record.config.clone(),
        warmup: record.warmup,
        repetitions: record.repetitions,
        status: record.status,
        error: record.error.clone(),
        n_requests: samples.n_used,
        n_warmup_excluded: samples.n_warmup,
        n_failed_excluded: samples.n_error,
        energy_method,
        peak_rss_bytes: record.peak_rss_bytes,
        gpu_mem_bytes: record.gpu_mem_bytes,
        metrics,
        robust,
        unavailable,
        warnings,
        agreement: record.agreement.clone(),
        backend_info: record.backend_info.clone(),
        energy,
        replication: None,
    }
}
