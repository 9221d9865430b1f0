//! Power and energy sources behind one [`PowerSampler`] trait.
//!
//! A sampler reports cumulative energy; the run loop reads it at the edges of each request window
//! and a background thread reads it on a timeline for `power.parquet`. Each source is honest about
//! what it is: `nvml_energy_counter` and `rapl` are measurements, `nvml_power_integrated` is a
//! measurement integrated by us, `cpu_estimate` is a model (TDP × load) labelled `estimated`, and
//! `none` yields null energy — never zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tcobench_analysis::schema::PowerInfo;
use tcobench_backends::{Device, VirtualClock};

use crate::scenario::{PowerSettings, PowerSource};

/// One reading of a sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Energy since the sampler started, joules.
    pub energy_j_cum: Option<f64>,
    /// Power now (or averaged since the previous reading), watts.
    pub watts: Option<f64>,
    /// Temperature, °C.
    pub temp_c: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
    /// Driver throttle-reason bitmask.
    pub throttle_reasons: Option<u64>,
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
}

/// Describes a sampler for the manifest.
pub fn power_info(
    s: &dyn PowerSampler,
    sample_ms: u32,
    extra: &BTreeMap<String, String>,
) -> PowerInfo {
    let mut notes = s.notes();
    notes.extend(extra.clone());
    PowerInfo {
        method: s.method().to_string(),
        scope: s.scope().to_string(),
        basis: s.basis().to_string(),
        sample_period_ms: f64::from(sample_ms),
        notes,
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
        PowerSource::Nvml => Nvml::open(gpu.unwrap_or(0)).map(|s| (Box::new(s) as _, why)),
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
                match Nvml::open(i) {
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

/// Where Linux exposes RAPL.
pub const RAPL_ROOT: &str = "/sys/class/powercap";

/// RAPL package energy: the top-level `intel-rapl:N` zones (packages) summed; sub-zones (core,
/// uncore, dram) are inside a package and never added to it. `psys` is skipped for the same reason.
#[derive(Debug)]
pub struct Rapl {
    zones: Vec<RaplZone>,
}

#[derive(Debug)]
struct RaplZone {
    energy_path: PathBuf,
    max_uj: u64,
    last_uj: u64,
    total_uj: u128,
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Rapl {
    /// Opens every package zone under `root`; an error says why RAPL cannot be used.
    pub fn open(root: &Path) -> Result<Rapl, String> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| format!("{}: {e} (no powercap interface)", root.display()))?;
        let mut zones = Vec::new();
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for dir in names {
            let file = dir
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            // Top-level zones only: `intel-rapl:0`, not `intel-rapl:0:1`.
            if !(file.starts_with("intel-rapl:") || file.starts_with("amd-rapl:"))
                || file.matches(':').count() != 1
            {
                continue;
            }
            let name = std::fs::read_to_string(dir.join("name")).unwrap_or_default();
            if name.trim() == "psys" {
                continue;
            }
            let energy_path = dir.join("energy_uj");
            let last_uj = read_u64(&energy_path).map_err(|e| {
                format!("{e} (reading RAPL usually needs root since the PLATYPUS mitigation)")
            })?;
            let max_uj = read_u64(&dir.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            zones.push(RaplZone {
                energy_path,
                max_uj,
                last_uj,
                total_uj: 0,
            });
        }
        if zones.is_empty() {
            return Err(format!("{}: no RAPL package zones", root.display()));
        }
        Ok(Rapl { zones })
    }
}

impl PowerSampler for Rapl {
    fn method(&self) -> &'static str {
        "rapl"
    }
    fn scope(&self) -> &'static str {
        "cpu-package"
    }
    fn basis(&self) -> &'static str {
        "measured"
    }
    fn device(&self) -> String {
        "cpu-package".into()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("rapl_packages".into(), self.zones.len().to_string())])
    }
    fn read(&mut self) -> Reading {
        let mut ok = true;
        for z in &mut self.zones {
            match read_u64(&z.energy_path) {
                Ok(now) => {
                    // The counter wraps at max_energy_range_uj.
                    let delta = if now >= z.last_uj {
                        now - z.last_uj
                    } else {
                        z.max_uj - z.last_uj + now
                    };
                    z.total_uj += u128::from(delta);
                    z.last_uj = now;
                }
                Err(_) => ok = false,
            }
        }
        Reading {
            energy_j_cum: ok.then(|| self.zones.iter().map(|z| z.total_uj as f64 / 1e6).sum()),
            ..Reading::default()
        }
    }
}

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
        ])
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

/// NVIDIA GPU through NVML: the board energy counter (Volta and newer) or, where it is missing,
/// instant power integrated over time (labelled `nvml_power_integrated`).
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    index: u32,
    counter: bool,
    origin_mj: u64,
    integrated_j: f64,
    last: Instant,
}

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvml").field("index", &self.index).finish()
    }
}

impl Nvml {
    /// Opens GPU `index`; an error says why NVML cannot be used.
    pub fn open(index: usize) -> Result<Nvml, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        let index = u32::try_from(index).map_err(|_| "GPU index out of range".to_string())?;
        let (counter, origin_mj) = {
            let dev = nvml
                .device_by_index(index)
                .map_err(|e| format!("NVML device {index}: {e}"))?;
            match dev.total_energy_consumption() {
                Ok(mj) => (true, mj),
                Err(_) => (false, 0),
            }
        };
        Ok(Nvml {
            nvml,
            index,
            counter,
            origin_mj,
            integrated_j: 0.0,
            last: Instant::now(),
        })
    }
}

impl PowerSampler for Nvml {
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
        format!("cuda:{}", self.index)
    }
    fn notes(&self) -> BTreeMap<String, String> {
        let mut notes = BTreeMap::new();
        if let Ok(dev) = self.nvml.device_by_index(self.index) {
            if let Ok(name) = dev.name() {
                notes.insert("gpu".into(), name);
            }
        }
        if let Ok(v) = self.nvml.sys_driver_version() {
            notes.insert("driver".into(), v);
        }
        notes
    }
    fn read(&mut self) -> Reading {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let Ok(dev) = self.nvml.device_by_index(self.index) else {
            return Reading::default();
        };
        let watts = dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
        let now = Instant::now();
        let energy = if self.counter {
            dev.total_energy_consumption()
                .ok()
                .map(|mj| (mj - self.origin_mj) as f64 / 1000.0)
        } else {
            if let Some(w) = watts {
                self.integrated_j += w * now.duration_since(self.last).as_secs_f64();
            }
            Some(self.integrated_j)
        };
        self.last = now;
        Reading {
            energy_j_cum: energy,
            watts,
            temp_c: dev.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            sm_clock_mhz: dev.clock_info(Clock::SM).ok().map(f64::from),
            throttle_reasons: dev.current_throttle_reasons().ok().map(|r| r.bits()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rapl_sums_packages_skips_subzones_and_handles_wraparound() {
        let dir = tempfile::tempdir().unwrap();
        let zone = |name: &str, label: &str, uj: u64, max: u64| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), label).unwrap();
            std::fs::write(d.join("energy_uj"), uj.to_string()).unwrap();
            std::fs::write(d.join("max_energy_range_uj"), max.to_string()).unwrap();
        };
        zone("intel-rapl:0", "package-0", 900, 1000);
        zone("intel-rapl:0:0", "core", 5, 1000);
        zone("intel-rapl:1", "psys", 7, 1000);
        let mut r = Rapl::open(dir.path()).unwrap();
        assert_eq!(r.zones.len(), 1);
        assert_eq!(r.read().energy_j_cum, Some(0.0));
        // Wrap: 900 -> 100 past a 1000 µJ range is 200 µJ.
        std::fs::write(dir.path().join("intel-rapl:0/energy_uj"), "100").unwrap();
        let e = r.read().energy_j_cum.unwrap();
        assert!((e - 200e-6).abs() < 1e-12, "{e}");
    }

    #[test]
    fn missing_rapl_says_why() {
        let e = Rapl::open(Path::new("/nonexistent/powercap")).unwrap_err();
        assert!(e.contains("no powercap"), "{e}");
    }

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
        };
        let mut p = CpuEstimate::new(&settings);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = p.read();
        let w = r.watts.unwrap();
        assert!((5.0..=10.0).contains(&w), "{w}");
        assert!(r.energy_j_cum.unwrap() > 0.0);
    }
}
