//! Power and energy sources behind one [`PowerSampler`] trait.
//!
//! A sampler reports cumulative energy; the run loop reads it at the edges of each request window
//! and a background thread reads it on a timeline for `power.parquet`. Each source is honest about
//! what it is: `nvml_energy_counter` and `rapl` are measurements, `nvml_power_integrated` is a
//! measurement integrated by us, `cpu_estimate` is a model (TDP × load) labelled `estimated`, and
//! `none` yields null energy — never zero. Each also states its counter's update period and its
//! sensor's gain error, from which [`window`] derives the minimum window and the uncertainty of
//! every figure.
//!
//! * [`nvml`]: NVIDIA GPUs behind the [`nvml::NvmlDevice`] trait; [`fake`]: a simulated GPU for
//!   tests;
//! * [`rapl`]: CPU package (and DRAM) energy from powercap;
//! * [`window`]: minimum windows, uncertainty, validity, cross-check and throttling summaries.

pub mod fake;
pub mod nvml;
pub mod rapl;
pub mod window;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tcobench_backends::{Device, VirtualClock};
use tcobench_results::schema::PowerInfo;

use crate::scenario::{PowerSettings, PowerSource};

pub use nvml::NvmlSampler;
pub use rapl::{Rapl, RAPL_ROOT};

/// One reading of a sampler. Cumulative figures count from the sampler's first reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Energy since the sampler started, joules.
    pub energy_j_cum: Option<f64>,
    /// Power, watts: averaged over at least one counter update where there is a counter.
    pub watts: Option<f64>,
    /// Instant power polled beside the counter (the cross-check), watts.
    pub instant_watts: Option<f64>,
    /// Instant power integrated over every reading so far, joules.
    pub instant_energy_j_cum: Option<f64>,
    /// Instant-power readings integrated so far.
    pub instant_readings: u64,
    /// Times the energy counter went backwards without a known wrap (driver reloads).
    pub counter_resets: u64,
    /// DRAM energy since the sampler started, joules (RAPL, where exposed).
    pub dram_energy_j_cum: Option<f64>,
    /// Temperature, °C.
    pub temp_c: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
    /// Driver throttle-reason bitmask.
    pub throttle_reasons: Option<u64>,
    /// Enforced power limit, W.
    pub power_limit_w: Option<f64>,
    /// Cumulative power-violation time, ns.
    pub power_violation_ns: Option<u64>,
    /// Cumulative thermal-violation time, ns.
    pub thermal_violation_ns: Option<u64>,
}

/// A source of energy readings.
pub trait PowerSampler: Send {
    /// The method name stored as `energy_method`.
    fn method(&self) -> &'static str;
    /// What the figures cover (`gpu-board`, `cpu-package`, `none`).
    fn scope(&self) -> &'static str;
    /// `measured` or `estimated`.
    fn basis(&self) -> &'static str;
    /// The device label stored in `power.parquet`.
    fn device(&self) -> String;
    /// Inputs of an estimate or notes on the source.
    fn notes(&self) -> BTreeMap<String, String>;
    /// Takes a reading now.
    fn read(&mut self) -> Reading;
    /// Whether a background timeline makes sense (false on virtual clocks).
    fn wants_timeline(&self) -> bool {
        true
    }
    /// How often the source's energy figure moves, ms (0: continuously).
    fn update_period_ms(&self) -> f64 {
        0.0
    }
    /// Relative gain error of the source's sensor (or model), as stated by its maker.
    fn gain_error_rel(&self) -> f64 {
        0.0
    }
}

/// Calls `take` every `period` until `stop` is set, on a fixed schedule (the k-th call is due at
/// start + k × period, so delays never accumulate; a call that overran is not repeated to catch
/// up). The thread parks between calls: `unpark` it after setting `stop`.
pub fn sample_every(period: Duration, stop: &AtomicBool, mut take: impl FnMut()) {
    let start = Instant::now();
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        take();
        k = k.saturating_add(1);
        let mut due = start + period * k;
        let now = Instant::now();
        if due < now {
            // Overran: skip to the next slot in the future.
            let behind = (now - start).as_nanos() / period.as_nanos().max(1);
            k = u32::try_from(behind).unwrap_or(u32::MAX).saturating_add(1);
            due = start + period * k;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::park_timeout(due - now);
        }
    }
}

/// Describes a sampler for the manifest.
pub fn power_info(
    s: &dyn PowerSampler,
    sample_ms: u32,
    extra: &BTreeMap<String, String>,
) -> PowerInfo {
    let mut notes = s.notes();
    notes.extend(extra.clone());
    notes.insert(
        "update_period_ms".into(),
        format!("{}", s.update_period_ms()),
    );
    notes.insert("gain_error_rel".into(), format!("{}", s.gain_error_rel()));
    PowerInfo {
        method: s.method().to_string(),
        scope: s.scope().to_string(),
        basis: s.basis().to_string(),
        sample_period_ms: f64::from(sample_ms),
        notes,
        idle_baseline: None,
    }
}

/// An opened sampler and notes on why other sources were not used.
pub type Opened = (Box<dyn PowerSampler>, BTreeMap<String, String>);

/// Chooses and opens the sampler a scenario asks for; the notes say why other sources were not
/// used.
pub fn open(
    settings: &PowerSettings,
    devices: &[Device],
    virtual_clock: Option<&VirtualClock>,
) -> Result<Opened, String> {
    let mut why = BTreeMap::new();
    let gpu = devices.iter().find_map(|d| match d {
        Device::Cuda(i) => Some(*i),
        Device::Cpu => None,
    });
    match settings.source {
        PowerSource::None => Ok((Box::new(NoPower), why)),
        PowerSource::Mock => {
            let clock = virtual_clock
                .cloned()
                .ok_or("power source `mock` needs the mock backend's virtual clock")?;
            Ok((Box::new(MockPower::new(settings.mock_watts, clock)), why))
        }
        PowerSource::Nvml => {
            nvml::open(gpu.unwrap_or(0), settings.sample_ms).map(|s| (Box::new(s) as _, why))
        }
        PowerSource::Rapl => Rapl::open(Path::new(RAPL_ROOT)).map(|s| (Box::new(s) as _, why)),
        PowerSource::CpuEstimate => Ok((Box::new(CpuEstimate::new(settings)), why)),
        PowerSource::Auto => {
            if let Some(clock) = virtual_clock {
                return Ok((
                    Box::new(MockPower::new(settings.mock_watts, clock.clone())),
                    why,
                ));
            }
            if let Some(i) = gpu {
                match nvml::open(i, settings.sample_ms) {
                    Ok(s) => return Ok((Box::new(s), why)),
                    Err(e) => {
                        why.insert("nvml_unavailable".into(), e);
                    }
                }
            }
            match Rapl::open(Path::new(RAPL_ROOT)) {
                Ok(s) => return Ok((Box::new(s), why)),
                Err(e) => {
                    why.insert("rapl_unavailable".into(), e);
                }
            }
            Ok((Box::new(CpuEstimate::new(settings)), why))
        }
    }
}

/// No energy source: every figure is null.
#[derive(Debug)]
pub struct NoPower;

impl PowerSampler for NoPower {
    fn method(&self) -> &'static str {
        "none"
    }
    fn scope(&self) -> &'static str {
        "none"
    }
    fn basis(&self) -> &'static str {
        "not measured"
    }
    fn device(&self) -> String {
        "none".into()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    fn read(&mut self) -> Reading {
        Reading::default()
    }
    fn wants_timeline(&self) -> bool {
        false
    }
}

/// Constant power on a virtual clock: deterministic energy for snapshot tests.
#[derive(Debug)]
pub struct MockPower {
    watts: f64,
    clock: VirtualClock,
    origin_ns: u64,
}

impl MockPower {
    /// A source drawing `watts` for as long as the virtual clock advances.
    pub fn new(watts: f64, clock: VirtualClock) -> Self {
        let origin_ns = clock.now_ns();
        MockPower {
            watts,
            clock,
            origin_ns,
        }
    }
}

impl PowerSampler for MockPower {
    fn method(&self) -> &'static str {
        "mock"
    }
    fn scope(&self) -> &'static str {
        "mock"
    }
    fn basis(&self) -> &'static str {
        "synthetic"
    }
    fn device(&self) -> String {
        "mock".into()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("mock_watts".into(), self.watts.to_string())])
    }
    fn read(&mut self) -> Reading {
        let s = (self.clock.now_ns() - self.origin_ns) as f64 / 1e9;
        Reading {
            energy_j_cum: Some(self.watts * s),
            watts: Some(self.watts),
            ..Reading::default()
        }
    }
    fn wants_timeline(&self) -> bool {
        false
    }
}

/// Relative error stated for [`CpuEstimate`]: TDP is a thermal design figure, not a power
/// measurement, and package power at a given utilisation lies well within ±30 % of the linear
/// TDP × load model only on typical server parts (Fan, Weber & Barroso, "Power provisioning for a
/// warehouse-sized computer", ISCA 2007, found linear utilisation models within a few per cent
/// *after calibration*; uncalibrated, the TDP and idle fraction dominate). The figure is a
/// stated assumption, labelled `estimated`, never a measurement.
pub const CPU_ESTIMATE_ERROR: f64 = 0.3;

/// CPU package power modelled as `TDP × (idle + (1 − idle) × load)`, where load is this
/// process's CPU time over wall time and logical cores. Labelled `estimated`.
#[derive(Debug)]
pub struct CpuEstimate {
    tdp_w: f64,
    tdp_from_user: bool,
    idle_fraction: f64,
    cores: f64,
    last_wall: Instant,
    last_cpu_s: f64,
    energy_j: f64,
}

impl CpuEstimate {
    /// A new estimate with the scenario's TDP and idle fraction.
    pub fn new(settings: &PowerSettings) -> Self {
        CpuEstimate {
            tdp_w: settings.cpu_tdp_w,
            tdp_from_user: settings.cpu_tdp_from_user,
            idle_fraction: settings.cpu_idle_fraction,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            last_wall: Instant::now(),
            last_cpu_s: process_cpu_seconds(),
            energy_j: 0.0,
        }
    }
}

/// CPU time (user + system) consumed by this process so far, seconds.
pub fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_PROCESS_CPUTIME_ID is always defined
    // on Linux; the call only writes into `ts`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

impl PowerSampler for CpuEstimate {
    fn method(&self) -> &'static str {
        "cpu_estimate"
    }
    fn scope(&self) -> &'static str {
        "cpu-package"
    }
    fn basis(&self) -> &'static str {
        "estimated"
    }
    fn device(&self) -> String {
        "cpu-package".into()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "model".into(),
                "W = TDP x (idle_fraction + (1 - idle_fraction) x load)".into(),
            ),
            (
                "load".into(),
                "process CPU time / (wall time x logical cores)".into(),
            ),
            ("tdp_w".into(), self.tdp_w.to_string()),
            (
                "tdp_source".into(),
                if self.tdp_from_user {
                    "scenario power.cpu_tdp_w".into()
                } else {
                    "generic default (set power.cpu_tdp_w to this CPU's datasheet TDP)".into()
                },
            ),
            ("idle_fraction".into(), self.idle_fraction.to_string()),
            ("logical_cores".into(), self.cores.to_string()),
            (
                "estimate_uncertainty".into(),
                "±30 % (a model, not a measurement)".into(),
            ),
        ])
    }
    fn gain_error_rel(&self) -> f64 {
        CPU_ESTIMATE_ERROR
    }
    fn read(&mut self) -> Reading {
        let now = Instant::now();
        let cpu = process_cpu_seconds();
        let wall = now.duration_since(self.last_wall).as_secs_f64();
        let mut watts = None;
        if wall > 0.0 {
            let load = ((cpu - self.last_cpu_s) / (wall * self.cores)).clamp(0.0, 1.0);
            let w = self.tdp_w * (self.idle_fraction + (1.0 - self.idle_fraction) * load);
            self.energy_j += w * wall;
            watts = Some(w);
        }
        self.last_wall = now;
        self.last_cpu_s = cpu;
        Reading {
            energy_j_cum: Some(self.energy_j),
            watts,
            ..Reading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_power_is_watts_times_virtual_time() {
        let clock = VirtualClock::new();
        let mut p = MockPower::new(50.0, clock.clone());
        clock.advance_ns(2_000_000_000);
        assert_eq!(p.read().energy_j_cum, Some(100.0));
    }

    #[test]
    fn cpu_estimate_never_exceeds_tdp() {
        let settings = PowerSettings {
            source: PowerSource::CpuEstimate,
            sample_ms: 100,
            idle_baseline_s: 0.0,
            cpu_tdp_w: 10.0,
            cpu_tdp_from_user: true,
            cpu_idle_fraction: 0.5,
            mock_watts: 0.0,
            target_uncertainty: 0.01,
            min_window_ms: 0.0,
            cross_check_tolerance: 0.1,
            pad_requests_max: 0,
        };
        let mut p = CpuEstimate::new(&settings);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = p.read();
        let w = r.watts.unwrap();
        assert!((5.0..=10.0).contains(&w), "{w}");
        assert!(r.energy_j_cum.unwrap() > 0.0);
    }
}
