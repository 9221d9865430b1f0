//! A simulated GPU for testing the NVML sampler without one: [`FakeNvml`] draws a synthetic
//! power function of time on a clock the test controls ([`FakeClock`]), and reports it the way a
//! board does — an energy counter that only moves every update period (optionally wrapping), an
//! instant-power sensor that averages only part of each sensor period (so it can alias), readings
//! that fail now and then, throttle reasons and violation counters as functions of time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::nvml::{reasons, NvmlDevice, ViolationKind};

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
    /// Moves the clock forward by `s` seconds.
    pub fn advance_s(&self, s: f64) {
        self.0.fetch_add((s * 1e9).round() as u64, Ordering::SeqCst);
    }
    /// Seconds since 0.
    pub fn now_s(&self) -> f64 {
        self.0.load(Ordering::SeqCst) as f64 / 1e9
    }
}

/// A function of time in seconds.
pub type TimeFn = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// Integral of `f` over `[a, b]` by composite Simpson with steps of at most `h` seconds.
pub fn integrate(f: &dyn Fn(f64) -> f64, a: f64, b: f64, h: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let n = (((b - a) / h).ceil() as usize).max(1) * 2;
    let dx = (b - a) / n as f64;
    let mut sum = f(a) + f(b);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(a + i as f64 * dx);
    }
    sum * dx / 3.0
}

/// ∫₀ᵗ f, cached so that reads at increasing times cost only the new stretch.
struct Cumulative {
    f: TimeFn,
    t: f64,
    acc: f64,
}

impl Cumulative {
    fn at(&mut self, t: f64) -> f64 {
        if t < self.t {
            self.t = 0.0;
            self.acc = 0.0;
        }
        self.acc += integrate(&*self.f, self.t, t, 1e-4);
        self.t = t;
        self.acc
    }
}

/// A simulated NVML device; every knob is a builder method.
pub struct FakeNvml {
    clock: FakeClock,
    power_w: TimeFn,
    energy: Mutex<Cumulative>,
    counter_period_s: f64,
    has_counter: bool,
    counter_offset_mj: u64,
    wrap_mj: Option<u64>,
    sensor_period_s: f64,
    sensor_window_s: f64,
    drop_every: Option<u64>,
    calls: AtomicU64,
    throttle: Arc<dyn Fn(f64) -> u64 + Send + Sync>,
    power_violation: Mutex<Cumulative>,
    thermal_violation: Mutex<Cumulative>,
    temp_c: TimeFn,
    sm_clock_mhz: TimeFn,
    power_limit_mw: u32,
}

impl FakeNvml {
    /// A device drawing `power_w(t)` watts on `clock`: counter updated every 100 ms, sensor that
    /// averages the last 25 ms of each 100 ms period, no throttling, no failures.
    pub fn new(clock: FakeClock, power_w: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        let power_w: TimeFn = Arc::new(power_w);
        let throttle: Arc<dyn Fn(f64) -> u64 + Send + Sync> = Arc::new(|_| 0);
        let mut fake = FakeNvml {
            clock,
            energy: Mutex::new(Cumulative {
                f: power_w.clone(),
                t: 0.0,
                acc: 0.0,
            }),
            power_w,
            counter_period_s: 0.1,
            has_counter: true,
            counter_offset_mj: 0,
            wrap_mj: None,
            sensor_period_s: 0.1,
            sensor_window_s: 0.025,
            drop_every: None,
            calls: AtomicU64::new(0),
            throttle: throttle.clone(),
            power_violation: Mutex::new(Cumulative {
                f: Arc::new(|_| 0.0),
                t: 0.0,
                acc: 0.0,
            }),
            thermal_violation: Mutex::new(Cumulative {
                f: Arc::new(|_| 0.0),
                t: 0.0,
                acc: 0.0,
            }),
            temp_c: Arc::new(|_| 60.0),
            sm_clock_mhz: Arc::new(|_| 1410.0),
            power_limit_mw: 400_000,
        };
        fake.set_violations();
        fake
    }

    /// The energy counter moves every `s` seconds (0: continuously).
    pub fn counter_period_s(mut self, s: f64) -> Self {
        self.counter_period_s = s;
        self
    }

    /// No energy counter (a GPU before Volta).
    pub fn without_counter(mut self) -> Self {
        self.has_counter = false;
        self
    }

    /// The counter starts at `offset_mj` and wraps to 0 at `wrap_mj`.
    pub fn counter_wraps(mut self, offset_mj: u64, wrap_mj: u64) -> Self {
        self.counter_offset_mj = offset_mj;
        self.wrap_mj = Some(wrap_mj);
        self
    }

    /// The instant sensor refreshes every `period_s` with the mean of the last `window_s`.
    pub fn sensor(mut self, period_s: f64, window_s: f64) -> Self {
        self.sensor_period_s = period_s;
        self.sensor_window_s = window_s;
        self
    }

    /// Every `n`-th call of an energy or power query fails.
    pub fn drop_every(mut self, n: u64) -> Self {
        self.drop_every = Some(n);
        self
    }

    /// Throttle reason bits as a function of time; violation counters grow while the power-cap
    /// (power) or thermal bits are set.
    pub fn throttle(mut self, f: impl Fn(f64) -> u64 + Send + Sync + 'static) -> Self {
        self.throttle = Arc::new(f);
        self.set_violations();
        self
    }

    /// Temperature as a function of time.
    pub fn temperature(mut self, f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        self.temp_c = Arc::new(f);
        self
    }

    /// SM clock as a function of time.
    pub fn sm_clock(mut self, f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        self.sm_clock_mhz = Arc::new(f);
        self
    }

    fn set_violations(&mut self) {
        let (a, b) = (self.throttle.clone(), self.throttle.clone());
        let bit = move |mask: u64, f: &Arc<dyn Fn(f64) -> u64 + Send + Sync>, t: f64| {
            if f(t) & mask != 0 {
                1.0
            } else {
                0.0
            }
        };
        *self.power_violation.get_mut().expect("lock") = Cumulative {
            f: Arc::new(move |t| bit(reasons::SW_POWER_CAP, &a, t)),
            t: 0.0,
            acc: 0.0,
        };
        *self.thermal_violation.get_mut().expect("lock") = Cumulative {
            f: Arc::new(move |t| bit(reasons::THERMAL, &b, t)),
            t: 0.0,
            acc: 0.0,
        };
    }

    /// Exact energy drawn over `[a, b]` seconds, J.
    pub fn true_energy_j(&self, a: f64, b: f64) -> f64 {
        integrate(&*self.power_w, a, b, 1e-4)
    }

    fn fails(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.drop_every.is_some_and(|k| n.is_multiple_of(k))
    }
}

impl NvmlDevice for FakeNvml {
    fn label(&self) -> String {
        "cuda:0".into()
    }
    fn now_s(&self) -> f64 {
        self.clock.now_s()
    }
    fn sleep(&self, d: Duration) {
        self.clock.advance(d);
    }
    fn energy_mj(&self) -> Result<u64, String> {
        if !self.has_counter {
            return Err("Not Supported".into());
        }
        if self.fails() {
            return Err("Unknown Error (simulated dropped sample)".into());
        }
        let t = self.clock.now_s();
        let tick = if self.counter_period_s > 0.0 {
            (t / self.counter_period_s).floor() * self.counter_period_s
        } else {
            t
        };
        let j = self.energy.lock().expect("lock").at(tick);
        let mj = self.counter_offset_mj + (j * 1e3).floor() as u64;
        Ok(match self.wrap_mj {
            Some(w) => mj % w,
            None => mj,
        })
    }
    fn energy_wrap_mj(&self) -> Option<u64> {
        self.wrap_mj
    }
    fn instant_power_mw(&self) -> Result<u32, String> {
        if self.fails() {
            return Err("Unknown Error (simulated dropped sample)".into());
        }
        let t = self.clock.now_s();
        let tick = (t / self.sensor_period_s).floor() * self.sensor_period_s;
        let from = (tick - self.sensor_window_s).max(0.0);
        let w = if tick > from {
            integrate(&*self.power_w, from, tick, 1e-4) / (tick - from)
        } else {
            (self.power_w)(tick)
        };
        Ok((w * 1e3).round().max(0.0) as u32)
    }
    fn temperature_c(&self) -> Result<u32, String> {
        Ok((self.temp_c)(self.clock.now_s()).round() as u32)
    }
    fn sm_clock_mhz(&self) -> Result<u32, String> {
        Ok((self.sm_clock_mhz)(self.clock.now_s()).round() as u32)
    }
    fn power_limit_mw(&self) -> Result<u32, String> {
        Ok(self.power_limit_mw)
    }
    fn throttle_reasons(&self) -> Result<u64, String> {
        Ok((self.throttle)(self.clock.now_s()))
    }
    fn violation_ns(&self, kind: ViolationKind) -> Result<u64, String> {
        let t = self.clock.now_s();
        let s = match kind {
            ViolationKind::Power => self.power_violation.lock().expect("lock").at(t),
            ViolationKind::Thermal => self.thermal_violation.lock().expect("lock").at(t),
        };
        Ok((s * 1e9).round() as u64)
    }
    fn describe(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("gpu".into(), "simulated".into())])
    }
}
