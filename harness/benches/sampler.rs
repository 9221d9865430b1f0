//! Cost and timing of the power timeline at 100 Hz: the sampling thread's own CPU time
//! (`getrusage(RUSAGE_THREAD)`) as a share of one core, and the jitter of its sample timestamps
//! against the fixed schedule (start + k × period), over 5 s with the sources this machine has
//! (RAPL when readable, the CPU estimate always).
//!
//! `cargo bench -p tcobench --bench sampler` prints one line per source; targets: ≤ 1 % of one
//! core and p99 jitter ≤ 2 ms.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tcobench::power::{self, CpuEstimate, PowerSampler, Rapl};
use tcobench::scenario::{PowerSettings, PowerSource};

fn thread_cpu_s() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_THREAD only writes into it.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Type-7 quantile of sorted values.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn measure(name: &str, sampler: Box<dyn PowerSampler>, period: Duration, run: Duration) {
    let sampler = Arc::new(Mutex::new(sampler));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (sampler.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let mut stamps = Vec::with_capacity(1024);
        let cpu0 = thread_cpu_s();
        let t0 = Instant::now();
        power::sample_every(period, &st, || {
            let r = s.lock().expect("lock").read();
            std::hint::black_box(r);
            stamps.push(Instant::now());
        });
        (thread_cpu_s() - cpu0, t0.elapsed().as_secs_f64(), stamps)
    });
    std::thread::sleep(run);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.thread().unpark();
    let (cpu_s, wall_s, stamps) = thread.join().expect("sampler thread");
    let first = stamps[0];
    let mut jitter_ms: Vec<f64> = stamps
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let due = first + period * k as u32;
            let d = if *t >= due { *t - due } else { due - *t };
            d.as_secs_f64() * 1e3
        })
        .collect();
    jitter_ms.sort_by(f64::total_cmp);
    println!(
        "sampler/{name}: {} samples at {} Hz over {:.2} s: CPU {:.3} % of one core; timestamp \
         jitter p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        stamps.len(),
        1000 / period.as_millis(),
        wall_s,
        100.0 * cpu_s / wall_s,
        quantile(&jitter_ms, 0.5),
        quantile(&jitter_ms, 0.99),
        jitter_ms.last().copied().unwrap_or(0.0)
    );
}

fn main() {
    // `cargo test --benches` passes `--bench`-less arguments: run briefly there.
    let quick = std::env::args().any(|a| a == "--test");
    let run = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let period = Duration::from_millis(10);
    match Rapl::open(Path::new(power::RAPL_ROOT)) {
        Ok(r) => measure("rapl", Box::new(r), period, run),
        Err(e) => println!("sampler/rapl: not measured ({e})"),
    }
    let settings = PowerSettings {
        source: PowerSource::CpuEstimate,
        sample_ms: 10,
        idle_baseline_s: 0.0,
        cpu_tdp_w: 65.0,
        cpu_tdp_from_user: false,
        cpu_idle_fraction: 0.3,
        mock_watts: 0.0,
        target_uncertainty: 0.01,
        min_window_ms: 0.0,
        cross_check_tolerance: 0.1,
        pad_requests_max: 0,
    };
    measure(
        "cpu_estimate",
        Box::new(CpuEstimate::new(&settings)),
        period,
        run,
    );
}
