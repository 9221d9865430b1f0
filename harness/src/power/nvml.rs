//! NVIDIA GPUs through NVML, behind the small [`NvmlDevice`] trait so that everything here is
//! tested against [`super::fake::FakeNvml`] on machines without a GPU.
//!
//! Energy comes from the board's energy counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and
//! newer), read at every window edge and on the timeline, with wraparound and counter resets
//! handled. Instant power (field `NVML_FI_DEV_POWER_INSTANT`) is polled beside it and integrated
//! (trapezoids between readings) as an independent cross-check; on GPUs without the counter
//! (before Volta) that integral *is* the energy, labelled `nvml_power_integrated`. The averaged
//! `power_usage` (a one-second mean on Ampere and newer) is never integrated: it is only used as
//! the instant reading on architectures where NVML documents it as instantaneous (GA100 and
//! older).
//!
//! Uncertainty assumed: NVML documents its power readings as "accurate to within +/- 5% of
//! current power draw" (`nvmlDeviceGetPowerUsage`, NVML API reference), so the gain error is
//! ±5 %. The counter's update period is probed when the device opens (boards update every
//! 20–100 ms); when the probe sees no change, 100 ms is assumed. A device in MIG mode is reported
//! as its whole GPU: counter and sensors are per board.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{PowerSampler, Reading};

/// Gain error assumed for NVML board power and energy (see the module doc).
pub const NVML_GAIN_ERROR: f64 = 0.05;

/// Counter update period assumed when probing sees none, ms.
pub const NVML_DEFAULT_UPDATE_MS: f64 = 100.0;

/// NVML's throttle / clock-event reason bits (`nvmlClocksEventReason*` in `nvml.h`).
pub mod reasons {
    /// The GPU is idle.
    pub const GPU_IDLE: u64 = 0x1;
    /// Application clocks setting.
    pub const APPLICATIONS_CLOCKS_SETTING: u64 = 0x2;
    /// The software power cap holds clocks down.
    pub const SW_POWER_CAP: u64 = 0x4;
    /// Hardware slowdown (temperature, power brake or external signal).
    pub const HW_SLOWDOWN: u64 = 0x8;
    /// Sync boost.
    pub const SYNC_BOOST: u64 = 0x10;
    /// Software thermal slowdown.
    pub const SW_THERMAL_SLOWDOWN: u64 = 0x20;
    /// Hardware thermal slowdown.
    pub const HW_THERMAL_SLOWDOWN: u64 = 0x40;
    /// Hardware power-brake slowdown.
    pub const HW_POWER_BRAKE_SLOWDOWN: u64 = 0x80;
    /// Display clock setting.
    pub const DISPLAY_CLOCK_SETTING: u64 = 0x100;

    /// Bits that mean a hardware slowdown.
    pub const HARDWARE: u64 = HW_SLOWDOWN | HW_POWER_BRAKE_SLOWDOWN;
    /// Bits that mean a thermal slowdown.
    pub const THERMAL: u64 = SW_THERMAL_SLOWDOWN | HW_THERMAL_SLOWDOWN;

    /// The names of the bits set in `bits`.
    pub fn names(bits: u64) -> Vec<String> {
        [
            (GPU_IDLE, "gpu_idle"),
            (APPLICATIONS_CLOCKS_SETTING, "applications_clocks_setting"),
            (SW_POWER_CAP, "sw_power_cap"),
            (HW_SLOWDOWN, "hw_slowdown"),
            (SYNC_BOOST, "sync_boost"),
            (SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
            (HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
            (HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"),
            (DISPLAY_CLOCK_SETTING, "display_clock_setting"),
        ]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
    }
}

/// Which violation counter to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// Time held below requested clocks by the power limit.
    Power,
    /// Time held below requested clocks by temperature.
    Thermal,
}

/// The NVML calls the samplers need, for one GPU.
pub trait NvmlDevice: Send {
    /// Device label (`cuda:0`).
    fn label(&self) -> String;
    /// Seconds on the device's monotonic clock.
    fn now_s(&self) -> f64;
    /// Waits `d` (a fake device advances its clock instead).
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
    /// Board energy since the driver loaded, mJ (`total_energy_consumption`).
    fn energy_mj(&self) -> Result<u64, String>;
    /// Where the energy counter wraps to 0 (`None`: it does not; a decrease is a reset).
    fn energy_wrap_mj(&self) -> Option<u64> {
        None
    }
    /// Instant board power, mW (`NVML_FI_DEV_POWER_INSTANT`).
    fn instant_power_mw(&self) -> Result<u32, String>;
    /// GPU temperature, °C.
    fn temperature_c(&self) -> Result<u32, String>;
    /// SM clock, MHz.
    fn sm_clock_mhz(&self) -> Result<u32, String>;
    /// Enforced power limit, mW.
    fn power_limit_mw(&self) -> Result<u32, String>;
    /// Throttle / clock-event reason bits (see [`reasons`]).
    fn throttle_reasons(&self) -> Result<u64, String>;
    /// Cumulative violation time of `kind`, ns.
    fn violation_ns(&self, kind: ViolationKind) -> Result<u64, String>;
    /// Name, driver, architecture, MIG mode and other notes for the manifest.
    fn describe(&self) -> BTreeMap<String, String>;
}

/// Energy from an [`NvmlDevice`]: the counter where it exists, else integrated instant power.
pub struct NvmlSampler<D: NvmlDevice> {
    dev: D,
    counter: bool,
    update_period_ms: f64,
    notes: BTreeMap<String, String>,
    last_mj: Option<u64>,
    total_mj: u128,
    resets: u64,
    dropped: u64,
    last_instant: Option<(f64, f64)>,
    instant_j: f64,
    instant_readings: u64,
    watts_anchor: Option<(f64, u128)>,
    last_watts: Option<f64>,
}

impl<D: NvmlDevice> std::fmt::Debug for NvmlSampler<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSampler")
            .field("device", &self.dev.label())
            .field("counter", &self.counter)
            .finish()
    }
}

/// The counter's update period: the median interval between changes seen while polling every
/// 2 ms for at most `budget`; `None` when fewer than three changes were seen.
pub fn probe_update_period_ms(dev: &dyn NvmlDevice, budget: Duration) -> Option<f64> {
    let start = dev.now_s();
    let mut last = dev.energy_mj().ok()?;
    let mut changes = Vec::new();
    while dev.now_s() - start < budget.as_secs_f64() && changes.len() < 6 {
        dev.sleep(Duration::from_millis(2));
        if let Ok(e) = dev.energy_mj() {
            if e != last {
                changes.push(dev.now_s());
                last = e;
            }
        }
    }
    // The first change ends a partial period; intervals between later changes are whole ones.
    let mut gaps: Vec<f64> = changes.windows(2).map(|w| (w[1] - w[0]) * 1e3).collect();
    if gaps.len() < 2 {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    Some(gaps[gaps.len() / 2])
}

impl<D: NvmlDevice> NvmlSampler<D> {
    /// Opens a sampler on `dev`; `sample_ms` is the timeline period (the resolution of
    /// integrated instant power when there is no counter), `probe` how long to look for the
    /// counter's update period (zero: assume [`NVML_DEFAULT_UPDATE_MS`]).
    pub fn new(dev: D, sample_ms: u32, probe: Duration) -> Self {
        let mut notes = dev.describe();
        let first = dev.energy_mj();
        let counter = first.is_ok();
        let update_period_ms = match &first {
            Ok(_) => match probe_update_period_ms(&dev, probe) {
                Some(ms) => {
                    notes.insert("nvml_counter_update_ms".into(), format!("{ms:.1} (probed)"));
                    ms
                }
                None => {
                    notes.insert(
                        "nvml_counter_update_ms".into(),
                        format!("{NVML_DEFAULT_UPDATE_MS} (assumed; the probe saw no updates)"),
                    );
                    NVML_DEFAULT_UPDATE_MS
                }
            },
            Err(e) => {
                notes.insert(
                    "nvml_energy_counter".into(),
                    format!(
                        "unavailable ({e}; the counter exists from Volta on): energy is instant \
                         power integrated every {sample_ms} ms"
                    ),
                );
                f64::from(sample_ms)
            }
        };
        notes.insert(
            "nvml_uncertainty".into(),
            "±5 % gain (NVML: power readings accurate to within ±5 % of current draw)".into(),
        );
        let mut s = NvmlSampler {
            dev,
            counter,
            update_period_ms,
            notes,
            last_mj: None,
            total_mj: 0,
            resets: 0,
            dropped: 0,
            last_instant: None,
            instant_j: 0.0,
            instant_readings: 0,
            watts_anchor: None,
            last_watts: None,
        };
        // The first reading is the origin of every cumulative figure.
        s.read();
        s
    }

    /// Counter decreases seen (driver reloads), and readings that failed.
    pub fn faults(&self) -> (u64, u64) {
        (self.resets, self.dropped)
    }
}

impl<D: NvmlDevice> PowerSampler for NvmlSampler<D> {
    fn method(&self) -> &'static str {
        if self.counter {
            "nvml_energy_counter"
        } else {
            "nvml_power_integrated"
        }
    }
    fn scope(&self) -> &'static str {
        "gpu-board"
    }
    fn basis(&self) -> &'static str {
        "measured"
    }
    fn device(&self) -> String {
        self.dev.label()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        self.notes.clone()
    }
    fn update_period_ms(&self) -> f64 {
        self.update_period_ms
    }
    fn gain_error_rel(&self) -> f64 {
        NVML_GAIN_ERROR
    }
    fn read(&mut self) -> Reading {
        let t = self.dev.now_s();
        let instant_w = match self.dev.instant_power_mw() {
            Ok(mw) => Some(f64::from(mw) / 1e3),
            Err(_) => {
                self.dropped += 1;
                None
            }
        };
        if let Some(w) = instant_w {
            if let Some((t0, w0)) = self.last_instant {
                self.instant_j += 0.5 * (w0 + w) * (t - t0).max(0.0);
            }
            self.last_instant = Some((t, w));
            self.instant_readings += 1;
        }
        let energy_j_cum = if self.counter {
            match self.dev.energy_mj() {
                Ok(mj) => {
                    if let Some(last) = self.last_mj {
                        let delta = if mj >= last {
                            mj - last
                        } else if let Some(wrap) = self.dev.energy_wrap_mj() {
                            super::rapl::wrapped_delta(last, mj, wrap - 1)
                        } else {
                            // The driver reloaded: the counter restarted from 0.
                            self.resets += 1;
                            mj
                        };
                        self.total_mj += u128::from(delta);
                    }
                    self.last_mj = Some(mj);
                    Some(self.total_mj as f64 / 1e3)
                }
                Err(_) => {
                    self.dropped += 1;
                    None
                }
            }
        } else {
            instant_w.map(|_| self.instant_j)
        };
        // Average power over at least one counter update, so a fast reader never sees 0 W or a
        // spike from a counter step.
        let watts = if self.counter {
            if energy_j_cum.is_some() {
                match self.watts_anchor {
                    Some((t0, e0)) if (t - t0) * 1e3 >= self.update_period_ms => {
                        self.last_watts = Some((self.total_mj - e0) as f64 / 1e3 / (t - t0));
                        self.watts_anchor = Some((t, self.total_mj));
                    }
                    None => self.watts_anchor = Some((t, self.total_mj)),
                    _ => {}
                }
            }
            self.last_watts
        } else {
            instant_w
        };
        Reading {
            energy_j_cum,
            watts,
            instant_watts: instant_w,
            instant_energy_j_cum: Some(self.instant_j),
            instant_readings: self.instant_readings,
            counter_resets: self.resets,
            temp_c: self.dev.temperature_c().ok().map(f64::from),
            sm_clock_mhz: self.dev.sm_clock_mhz().ok().map(f64::from),
            throttle_reasons: self.dev.throttle_reasons().ok(),
            power_limit_w: self.dev.power_limit_mw().ok().map(|mw| f64::from(mw) / 1e3),
            power_violation_ns: self.dev.violation_ns(ViolationKind::Power).ok(),
            thermal_violation_ns: self.dev.violation_ns(ViolationKind::Thermal).ok(),
            dram_energy_j_cum: None,
        }
    }
}

/// A real GPU through nvml-wrapper. The NVML library is loaded at run time, so this builds and
/// opens (with a clear error) on machines without a GPU or driver.
pub struct RealNvml {
    nvml: nvml_wrapper::Nvml,
    index: u32,
    origin: Instant,
    instant_from_power_usage: bool,
}

impl RealNvml {
    /// Opens GPU `index`; the error says why NVML cannot be used.
    pub fn open(index: usize) -> Result<RealNvml, String> {
        use nvml_wrapper::enums::device::DeviceArchitecture;
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            format!("NVML: {e} (no NVIDIA driver, or libnvidia-ml.so is not on the loader path)")
        })?;
        let index = u32::try_from(index).map_err(|_| "GPU index out of range".to_string())?;
        let dev = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML device {index}: {e}"))?;
        // NVML: power_usage is a 1 s average on Ampere and newer except GA100, instantaneous
        // before; it stands in for the instant field only where it is instantaneous.
        let older_than_ampere = matches!(
            dev.architecture(),
            Ok(DeviceArchitecture::Kepler
                | DeviceArchitecture::Maxwell
                | DeviceArchitecture::Pascal
                | DeviceArchitecture::Volta
                | DeviceArchitecture::Turing)
        );
        let ga100 = dev.name().is_ok_and(|n| n.contains("A100"));
        Ok(RealNvml {
            instant_from_power_usage: older_than_ampere || ga100,
            nvml,
            index,
            origin: Instant::now(),
        })
    }

    fn dev(&self) -> Result<nvml_wrapper::Device<'_>, String> {
        self.nvml
            .device_by_index(self.index)
            .map_err(|e| e.to_string())
    }
}

impl NvmlDevice for RealNvml {
    fn label(&self) -> String {
        format!("cuda:{}", self.index)
    }
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    fn energy_mj(&self) -> Result<u64, String> {
        self.dev()?
            .total_energy_consumption()
            .map_err(|e| e.to_string())
    }
    fn instant_power_mw(&self) -> Result<u32, String> {
        use nvml_wrapper::enums::device::SampleValue;
        use nvml_wrapper::structs::device::FieldId;
        use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;
        let dev = self.dev()?;
        let field = dev
            .field_values_for(&[FieldId(NVML_FI_DEV_POWER_INSTANT)])
            .map_err(|e| e.to_string())
            .and_then(|v| {
                let sample = v.into_iter().next().ok_or("no field value")?;
                match sample.map_err(|e| e.to_string())?.value {
                    Ok(SampleValue::U32(v)) => Ok(v),
                    Ok(SampleValue::U64(v)) => u32::try_from(v).map_err(|e| e.to_string()),
                    Ok(SampleValue::I64(v)) => u32::try_from(v).map_err(|e| e.to_string()),
                    Ok(SampleValue::F64(v)) => Ok(v.max(0.0).round() as u32),
                    Err(e) => Err(e.to_string()),
                }
            });
        match field {
            Ok(mw) => Ok(mw),
            Err(_) if self.instant_from_power_usage => dev.power_usage().map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    }
    fn temperature_c(&self) -> Result<u32, String> {
        use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
        self.dev()?
            .temperature(TemperatureSensor::Gpu)
            .map_err(|e| e.to_string())
    }
    fn sm_clock_mhz(&self) -> Result<u32, String> {
        use nvml_wrapper::enum_wrappers::device::Clock;
        self.dev()?.clock_info(Clock::SM).map_err(|e| e.to_string())
    }
    fn power_limit_mw(&self) -> Result<u32, String> {
        self.dev()?
            .enforced_power_limit()
            .map_err(|e| e.to_string())
    }
    fn throttle_reasons(&self) -> Result<u64, String> {
        self.dev()?
            .current_throttle_reasons()
            .map(|r| r.bits())
            .map_err(|e| e.to_string())
    }
    fn violation_ns(&self, kind: ViolationKind) -> Result<u64, String> {
        use nvml_wrapper::enum_wrappers::device::PerformancePolicy;
        let policy = match kind {
            ViolationKind::Power => PerformancePolicy::Power,
            ViolationKind::Thermal => PerformancePolicy::Thermal,
        };
        self.dev()?
            .violation_status(policy)
            .map(|v| v.violation_time)
            .map_err(|e| e.to_string())
    }
    fn describe(&self) -> BTreeMap<String, String> {
        let mut notes = BTreeMap::new();
        if let Ok(dev) = self.dev() {
            if let Ok(name) = dev.name() {
                notes.insert("gpu".into(), name);
            }
            if let Ok(a) = dev.architecture() {
                notes.insert("gpu_architecture".into(), format!("{a:?}"));
            }
            if let Ok(m) = dev.mig_mode() {
                if m.current != 0 {
                    notes.insert(
                        "mig".into(),
                        "enabled: energy, power and clocks are the whole GPU's (NVML reports them \
                         per board)"
                            .into(),
                    );
                }
            }
        }
        if let Ok(v) = self.nvml.sys_driver_version() {
            notes.insert("driver".into(), v);
        }
        if self.instant_from_power_usage {
            notes.insert(
                "instant_power_source".into(),
                "NVML_FI_DEV_POWER_INSTANT, else power_usage (instantaneous on this architecture)"
                    .into(),
            );
        }
        notes
    }
}

/// The sampler for GPU `index`: its counter's update period is probed for up to 300 ms.
pub fn open(index: usize, sample_ms: u32) -> Result<NvmlSampler<RealNvml>, String> {
    Ok(NvmlSampler::new(
        RealNvml::open(index)?,
        sample_ms,
        Duration::from_millis(300),
    ))
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use tcobench_results::schema::{EnergyValidity, PowerSample};

    use super::super::fake::{FakeClock, FakeNvml};
    use super::super::window::{summarise, Edge, SourceInfo, WindowPolicy};
    use super::*;

    const POLICY: WindowPolicy = WindowPolicy {
        target_uncertainty: 0.01,
        min_window_ms: 0.0,
        cross_check_tolerance: 0.1,
        sample_ms: 100.0,
        pad_requests_max: 0,
    };

    /// Reads `s` every `step_s` from `from_s` to `to_s` on the fake clock (edges included), as
    /// the run loop's edges and timeline do.
    fn run<D: NvmlDevice>(
        s: &mut NvmlSampler<D>,
        clock: &FakeClock,
        from_s: f64,
        to_s: f64,
        step_s: f64,
    ) -> (Edge, Edge, Vec<PowerSample>) {
        clock.advance_s(from_s - clock.now_s());
        let start = Edge {
            t_ms: clock.now_s() * 1e3,
            reading: s.read(),
        };
        let mut samples = Vec::new();
        loop {
            let next = clock.now_s() + step_s;
            if next >= to_s {
                break;
            }
            clock.advance_s(step_s);
            let r = s.read();
            samples.push(PowerSample {
                t_ms: clock.now_s() * 1e3,
                source: s.method().into(),
                device: s.device(),
                cell_id: None,
                watts: r.watts,
                energy_j_cum: r.energy_j_cum,
                temp_c: r.temp_c,
                sm_clock_mhz: r.sm_clock_mhz,
                throttle_reasons: r.throttle_reasons,
            });
        }
        clock.advance_s(to_s - clock.now_s());
        let end = Edge {
            t_ms: clock.now_s() * 1e3,
            reading: s.read(),
        };
        (start, end, samples)
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    /// ∫ 200 + 100 sin(2πt/0.7) dt over [a, b], by hand.
    fn sine_energy(a: f64, b: f64) -> f64 {
        let w = 2.0 * PI / 0.7;
        200.0 * (b - a) - 100.0 / w * ((w * b).cos() - (w * a).cos())
    }

    fn sine(t: f64) -> f64 {
        200.0 + 100.0 * (2.0 * PI * t / 0.7).sin()
    }

    #[test]
    fn counter_energy_matches_the_analytic_integral_within_half_a_percent() {
        let clock = FakeClock::new();
        let fake = FakeNvml::new(clock.clone(), sine);
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        assert_eq!(s.method(), "nvml_energy_counter");
        // The probe found the 100 ms update period.
        assert!(
            (s.update_period_ms() - 100.0).abs() < 4.0,
            "{}",
            s.update_period_ms()
        );
        let (a, b) = (1.537, 31.913);
        let (start, end, samples) = run(&mut s, &clock, a, b, 0.1);
        let w = summarise(
            &SourceInfo::of(&s),
            &POLICY,
            &start,
            &end,
            &samples,
            1000,
            0,
        );
        let truth = sine_energy(a, b);
        let e = w.energy_j.unwrap();
        assert!(rel(e, truth) < 0.005, "{e} vs {truth}");
        assert_eq!(w.validity, EnergyValidity::Valid, "{:?}", w.invalid_reason);
        // Quantisation 100 ms / 30.4 s plus the ±5 % gain error.
        let q = s.update_period_ms() / (w.window_ms);
        assert!((w.uncertainty_rel.unwrap() - (q + 0.05)).abs() < 1e-12);
        // The stated bound holds: the error is within the quantisation part.
        assert!(rel(e, truth) <= q);
        let cc = w.cross_check.unwrap();
        assert!(!cc.flagged, "{cc:?}");
        assert!(w.throttling.as_ref().is_some_and(|t| !t.flagged));
    }

    #[test]
    fn wraparound_and_dropped_readings_do_not_lose_energy() {
        let clock = FakeClock::new();
        // Wraps every 1000 J (≈ every 5 s at 200 W); every 4th query fails.
        let fake = FakeNvml::new(clock.clone(), sine)
            .counter_wraps(999_000, 1_000_000)
            .drop_every(4);
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        let (a, b) = (0.5, 30.5);
        let (start, end, samples) = run(&mut s, &clock, a, b, 0.1);
        // An edge read may fail; take the figures from the timeline's readings around it.
        let e0 = start
            .reading
            .energy_j_cum
            .or(samples[0].energy_j_cum)
            .unwrap();
        let e1 = end
            .reading
            .energy_j_cum
            .or(samples.last().unwrap().energy_j_cum)
            .unwrap();
        let t0 = if start.reading.energy_j_cum.is_some() {
            a
        } else {
            samples[0].t_ms / 1e3
        };
        let t1 = if end.reading.energy_j_cum.is_some() {
            b
        } else {
            samples.last().unwrap().t_ms / 1e3
        };
        let truth = sine_energy(t0, t1);
        assert!(rel(e1 - e0, truth) < 0.005, "{} vs {truth}", e1 - e0);
        let (resets, dropped) = s.faults();
        assert_eq!(resets, 0, "a known wrap is not a reset");
        assert!(dropped > 50, "{dropped}");
    }

    #[test]
    fn a_reset_counter_invalidates_its_window() {
        let clock = FakeClock::new();
        // A counter that "wraps" without the sampler knowing the modulus looks like a reset.
        struct Unknown(FakeNvml);
        impl NvmlDevice for Unknown {
            fn label(&self) -> String {
                self.0.label()
            }
            fn now_s(&self) -> f64 {
                self.0.now_s()
            }
            fn sleep(&self, d: Duration) {
                self.0.sleep(d)
            }
            fn energy_mj(&self) -> Result<u64, String> {
                self.0.energy_mj()
            }
            fn instant_power_mw(&self) -> Result<u32, String> {
                self.0.instant_power_mw()
            }
            fn temperature_c(&self) -> Result<u32, String> {
                self.0.temperature_c()
            }
            fn sm_clock_mhz(&self) -> Result<u32, String> {
                self.0.sm_clock_mhz()
            }
            fn power_limit_mw(&self) -> Result<u32, String> {
                self.0.power_limit_mw()
            }
            fn throttle_reasons(&self) -> Result<u64, String> {
                self.0.throttle_reasons()
            }
            fn violation_ns(&self, kind: ViolationKind) -> Result<u64, String> {
                self.0.violation_ns(kind)
            }
            fn describe(&self) -> BTreeMap<String, String> {
                self.0.describe()
            }
        }
        let fake = FakeNvml::new(clock.clone(), |_| 300.0).counter_wraps(0, 3_000_000);
        let mut s = NvmlSampler::new(Unknown(fake), 100, Duration::from_millis(300));
        let (start, end, samples) = run(&mut s, &clock, 1.0, 21.0, 0.1);
        let w = summarise(&SourceInfo::of(&s), &POLICY, &start, &end, &samples, 1, 0);
        assert_eq!(w.validity, EnergyValidity::Invalid);
        assert!(w.invalid_reason.unwrap().contains("reset"));
    }

    #[test]
    fn pre_volta_integrates_instant_power_and_says_so() {
        let clock = FakeClock::new();
        let slow = |t: f64| 150.0 + 50.0 * (2.0 * PI * t / 7.0).sin();
        // A sensor that averages its whole 10 ms period, polled every 100 ms.
        let fake = FakeNvml::new(clock.clone(), slow)
            .without_counter()
            .sensor(0.01, 0.01);
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        assert_eq!(s.method(), "nvml_power_integrated");
        assert_eq!(s.update_period_ms(), 100.0);
        assert!(s.notes()["nvml_energy_counter"].contains("Volta"));
        let (a, b) = (0.25, 30.25);
        let (start, end, samples) = run(&mut s, &clock, a, b, 0.1);
        let w = summarise(&SourceInfo::of(&s), &POLICY, &start, &end, &samples, 1, 0);
        let w7 = 2.0 * PI / 7.0;
        let truth = 150.0 * (b - a) - 50.0 / w7 * ((w7 * b).cos() - (w7 * a).cos());
        assert!(
            rel(w.energy_j.unwrap(), truth) < 0.005,
            "{:?} vs {truth}",
            w.energy_j
        );
        assert_eq!(w.method, "nvml_power_integrated");
        assert!(w.cross_check.is_none(), "no second source to compare with");
    }

    #[test]
    fn aliased_instant_power_is_flagged_while_the_counter_stays_right() {
        let clock = FakeClock::new();
        // 300 W bursts in the first 25 ms of every 100 ms, 100 W otherwise: 150 W on average.
        // The sensor averages the last 25 ms of each 100 ms period and never sees a burst.
        let bursts = |t: f64| {
            if (t / 0.1).fract() < 0.25 {
                300.0
            } else {
                100.0
            }
        };
        let fake = FakeNvml::new(clock.clone(), bursts).counter_period_s(0.02);
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        let (a, b) = (1.0, 21.0);
        let (start, end, samples) = run(&mut s, &clock, a, b, 0.1);
        let w = summarise(&SourceInfo::of(&s), &POLICY, &start, &end, &samples, 1, 0);
        let truth = 150.0 * (b - a);
        assert!(rel(w.energy_j.unwrap(), truth) < 0.005, "{:?}", w.energy_j);
        let cc = w.cross_check.unwrap();
        assert!(cc.flagged, "{cc:?}");
        assert!((cc.disagreement_rel - 1.0 / 3.0).abs() < 0.02, "{cc:?}");
    }

    #[test]
    fn short_windows_are_invalid_not_precise() {
        let clock = FakeClock::new();
        let fake = FakeNvml::new(clock.clone(), |_| 250.0);
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        let (start, end, samples) = run(&mut s, &clock, 1.0, 1.5, 0.1);
        let w = summarise(&SourceInfo::of(&s), &POLICY, &start, &end, &samples, 1, 0);
        assert_eq!(w.validity, EnergyValidity::Invalid);
        // 100 ms / 1 % = 10 s.
        assert!(
            (w.min_window_ms - 10_000.0).abs() < 400.0,
            "{}",
            w.min_window_ms
        );
        assert!(w.invalid_reason.unwrap().contains("shorter than"));
        assert!(w.quantisation_rel.unwrap() > 0.15);
    }

    #[test]
    fn throttling_is_differenced_and_flagged() {
        let clock = FakeClock::new();
        let fake = FakeNvml::new(clock.clone(), |_| 350.0)
            .throttle(|t| {
                if (2.0..5.0).contains(&t) {
                    reasons::SW_POWER_CAP
                } else if (7.0..8.0).contains(&t) {
                    reasons::HW_THERMAL_SLOWDOWN
                } else {
                    0
                }
            })
            .temperature(|t| if t < 7.0 { 70.0 } else { 91.0 })
            .sm_clock(|t| {
                if (2.0..5.0).contains(&t) {
                    1200.0
                } else {
                    1980.0
                }
            });
        let mut s = NvmlSampler::new(fake, 100, Duration::from_millis(300));
        let (start, end, samples) = run(&mut s, &clock, 1.0, 12.0, 0.1);
        let w = summarise(&SourceInfo::of(&s), &POLICY, &start, &end, &samples, 1, 0);
        let th = w.throttling.unwrap();
        assert!(
            (th.power_violation_ms.unwrap() - 3000.0).abs() < 1.0,
            "{th:?}"
        );
        assert!(
            (th.thermal_violation_ms.unwrap() - 1000.0).abs() < 1.0,
            "{th:?}"
        );
        assert_eq!(th.sw_power_cap_ms, th.power_violation_ms);
        assert!(th.thermal_slowdown && !th.hw_slowdown && th.flagged);
        assert_eq!(th.reasons, vec!["sw_power_cap", "hw_thermal_slowdown"]);
        assert_eq!(th.max_temp_c, Some(91.0));
        assert_eq!(
            (th.min_sm_clock_mhz, th.max_sm_clock_mhz),
            (Some(1200.0), Some(1980.0))
        );
        assert_eq!(th.power_limit_w, Some(400.0));
    }

    #[test]
    fn probe_finds_a_fast_update_period_and_falls_back_when_there_is_none() {
        let clock = FakeClock::new();
        let fake = FakeNvml::new(clock.clone(), |_| 100.0).counter_period_s(0.02);
        let ms = probe_update_period_ms(&fake, Duration::from_millis(300)).unwrap();
        assert!((ms - 20.0).abs() <= 2.0, "{ms}");
        // A counter that never moves (0 W) gives the probe nothing: 100 ms is assumed.
        let still = FakeNvml::new(FakeClock::new(), |_| 0.0);
        let s = NvmlSampler::new(still, 100, Duration::from_millis(300));
        assert_eq!(s.update_period_ms(), NVML_DEFAULT_UPDATE_MS);
        assert!(s.notes()["nvml_counter_update_ms"].contains("assumed"));
    }

    #[test]
    fn opening_without_a_gpu_fails_with_a_reason() {
        // This machine class has no NVIDIA driver; where one exists the open may succeed.
        if let Err(e) = RealNvml::open(0) {
            assert!(e.starts_with("NVML"), "{e}");
        }
    }
}
