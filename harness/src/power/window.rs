//! Energy windows: how long a window must be for a source, and the figure of one window with
//! its uncertainty, validity, cross-check and throttling ([`EnergyWindow`]).
//!
//! A counter that moves every `P` ms can be read up to one update stale at either edge of a
//! window of `T` ms, so its relative quantisation error is about `P / T`; a window is valid when
//! that is at most `power.target_uncertainty` (and at least `power.min_window_ms` long). The run
//! loop measures each cell's timed requests as one window (first request's start to the last
//! one's end) and marks the per-request figures whose own window is shorter than the minimum.

use tcobench_results::schema::{CrossCheck, EnergyValidity, EnergyWindow, PowerSample, Throttling};

use super::nvml::reasons;
use super::{PowerSampler, Reading};
use crate::scenario::PowerSettings;

/// The scenario's demands on an energy window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPolicy {
    /// Largest acceptable quantisation error, relative.
    pub target_uncertainty: f64,
    /// Floor under the minimum window, ms.
    pub min_window_ms: f64,
    /// Counter vs instant-power disagreement beyond which a window is flagged, relative.
    pub cross_check_tolerance: f64,
    /// Timeline period, ms.
    pub sample_ms: f64,
    /// At most this many untimed requests lengthen a window that ends short of the minimum.
    pub pad_requests_max: u32,
}

impl From<&PowerSettings> for WindowPolicy {
    fn from(p: &PowerSettings) -> Self {
        WindowPolicy {
            target_uncertainty: p.target_uncertainty,
            min_window_ms: p.min_window_ms,
            cross_check_tolerance: p.cross_check_tolerance,
            sample_ms: f64::from(p.sample_ms),
            pad_requests_max: p.pad_requests_max,
        }
    }
}

impl WindowPolicy {
    /// The shortest valid window for a source updating every `update_period_ms`.
    pub fn min_window_ms(&self, update_period_ms: f64) -> f64 {
        (update_period_ms / self.target_uncertainty).max(self.min_window_ms)
    }
}

/// What a sampler is, frozen for summaries (a sampler is behind a lock while the run goes on).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Method.
    pub method: String,
    /// Scope.
    pub scope: String,
    /// Basis.
    pub basis: String,
    /// Device label.
    pub device: String,
    /// Counter update period, ms.
    pub update_period_ms: f64,
    /// Gain error, relative.
    pub gain_error_rel: f64,
}

impl SourceInfo {
    /// Describes `s`.
    pub fn of(s: &dyn PowerSampler) -> Self {
        SourceInfo {
            method: s.method().into(),
            scope: s.scope().into(),
            basis: s.basis().into(),
            device: s.device(),
            update_period_ms: s.update_period_ms(),
            gain_error_rel: s.gain_error_rel(),
        }
    }
}

/// A reading at a window edge, on the run clock.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Edge {
    /// Run-clock time, ms.
    pub t_ms: f64,
    /// The reading.
    pub reading: Reading,
}

/// Whether a window of `window_ms` meets the policy for `source`.
pub fn long_enough(source: &SourceInfo, policy: &WindowPolicy, window_ms: f64) -> bool {
    window_ms >= policy.min_window_ms(source.update_period_ms)
}

/// The figure of the window between `start` and `end`; `samples` are the timeline's samples
/// (only those inside the window are used), `generated_tokens` the tokens made inside it and
/// `requests_below_min_window` how many of its requests were individually too short.
pub fn summarise(
    source: &SourceInfo,
    policy: &WindowPolicy,
    start: &Edge,
    end: &Edge,
    samples: &[PowerSample],
    generated_tokens: u64,
    requests_below_min_window: u32,
) -> EnergyWindow {
    let window_ms = (end.t_ms - start.t_ms).max(0.0);
    let min_window_ms = policy.min_window_ms(source.update_period_ms);
    let (a, b) = (start.reading, end.reading);
    let energy_j = match (a.energy_j_cum, b.energy_j_cum) {
        (Some(x), Some(y)) if source.method != "none" => Some(y - x),
        _ => None,
    };
    let quantisation_rel = (window_ms > 0.0).then(|| source.update_period_ms / window_ms);
    let mut invalid = Vec::new();
    let validity = if source.method == "none" {
        EnergyValidity::NotMeasured
    } else {
        if energy_j.is_none() {
            invalid.push("the source gave no reading at an edge of the window".to_string());
        }
        if window_ms < min_window_ms {
            invalid.push(format!(
                "window {window_ms:.1} ms is shorter than the {min_window_ms:.1} ms needed for \
                 ±{:.2} % quantisation with a {:.1} ms update period",
                policy.target_uncertainty * 100.0,
                source.update_period_ms
            ));
        }
        if b.counter_resets > a.counter_resets {
            invalid.push("the energy counter was reset inside the window".into());
        }
        if invalid.is_empty() {
            EnergyValidity::Valid
        } else {
            EnergyValidity::Invalid
        }
    };
    let cross_check = match (a.instant_energy_j_cum, b.instant_energy_j_cum, energy_j) {
        (Some(x), Some(y), Some(e))
            if source.method == "nvml_energy_counter"
                && b.instant_readings >= a.instant_readings + 2
                && e > 0.0 =>
        {
            let disagreement_rel = ((y - x) - e).abs() / e;
            Some(CrossCheck {
                method: "nvml_power_instant".into(),
                energy_j: y - x,
                readings: (b.instant_readings - a.instant_readings) as u32,
                disagreement_rel,
                tolerance_rel: policy.cross_check_tolerance,
                flagged: disagreement_rel > policy.cross_check_tolerance,
            })
        }
        _ => None,
    };
    let inside: Vec<&PowerSample> = samples
        .iter()
        .filter(|s| s.t_ms >= start.t_ms && s.t_ms <= end.t_ms)
        .collect();
    EnergyWindow {
        method: source.method.clone(),
        scope: source.scope.clone(),
        basis: source.basis.clone(),
        device: source.device.clone(),
        sample_period_ms: policy.sample_ms,
        update_period_ms: source.update_period_ms,
        window_ms,
        min_window_ms,
        energy_j,
        generated_tokens,
        quantisation_rel,
        gain_error_rel: source.gain_error_rel,
        uncertainty_rel: quantisation_rel
            .filter(|_| energy_j.is_some())
            .map(|q| q + source.gain_error_rel),
        validity,
        invalid_reason: (!invalid.is_empty()).then(|| invalid.join("; ")),
        requests_below_min_window,
        padding_requests: 0,
        dram_energy_j: a
            .dram_energy_j_cum
            .zip(b.dram_energy_j_cum)
            .map(|(x, y)| y - x),
        cross_check,
        throttling: throttling(start, end, &inside),
    }
}

/// Throttling over a window, from its edges (violation counters, power limit) and the timeline
/// samples inside it; `None` for sources that report no clocks or throttle reasons.
fn throttling(start: &Edge, end: &Edge, inside: &[&PowerSample]) -> Option<Throttling> {
    let (a, b) = (start.reading, end.reading);
    let bits: Vec<(f64, u64)> = std::iter::once((start.t_ms, a.throttle_reasons))
        .chain(inside.iter().map(|s| (s.t_ms, s.throttle_reasons)))
        .chain(std::iter::once((end.t_ms, b.throttle_reasons)))
        .filter_map(|(t, r)| r.map(|r| (t, r)))
        .collect();
    let temps: Vec<f64> = [a.temp_c, b.temp_c]
        .into_iter()
        .chain(inside.iter().map(|s| s.temp_c))
        .flatten()
        .collect();
    let clocks: Vec<f64> = [a.sm_clock_mhz, b.sm_clock_mhz]
        .into_iter()
        .chain(inside.iter().map(|s| s.sm_clock_mhz))
        .flatten()
        .collect();
    if bits.is_empty() && temps.is_empty() && clocks.is_empty() {
        return None;
    }
    let reasons_bits = bits.iter().fold(0, |acc, (_, r)| acc | r);
    let diff_ms =
        |x: Option<u64>, y: Option<u64>| x.zip(y).map(|(x, y)| y.saturating_sub(x) as f64 / 1e6);
    let power_violation_ms = diff_ms(a.power_violation_ns, b.power_violation_ns);
    let thermal_violation_ms = diff_ms(a.thermal_violation_ns, b.thermal_violation_ns);
    // Sampled time at the cap: each interval counts when the bit is set at its start.
    let sampled_cap_ms = (bits.len() >= 2).then(|| {
        bits.windows(2)
            .filter(|w| w[0].1 & reasons::SW_POWER_CAP != 0)
            .map(|w| w[1].0 - w[0].0)
            .sum::<f64>()
    });
    let hw_slowdown = reasons_bits & reasons::HARDWARE != 0;
    let thermal_slowdown =
        reasons_bits & reasons::THERMAL != 0 || thermal_violation_ms.is_some_and(|ms| ms > 0.0);
    let fold = |v: &[f64], f: fn(f64, f64) -> f64| v.iter().copied().reduce(f);
    Some(Throttling {
        reasons_bits,
        reasons: reasons::names(reasons_bits),
        hw_slowdown,
        thermal_slowdown,
        sw_power_cap_ms: power_violation_ms.or(sampled_cap_ms),
        power_violation_ms,
        thermal_violation_ms,
        max_temp_c: fold(&temps, f64::max),
        min_sm_clock_mhz: fold(&clocks, f64::min),
        max_sm_clock_mhz: fold(&clocks, f64::max),
        power_limit_w: b.power_limit_w.or(a.power_limit_w),
        flagged: hw_slowdown || thermal_slowdown,
    })
}
