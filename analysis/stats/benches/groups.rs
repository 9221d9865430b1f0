//! `analyze_groups` at scale, without I/O: 1 000 000 rows in 100 groups (10 000 each),
//! 10 000 bootstrap resamples of every group's median, all 4 950 pairwise Welch/Student tests
//! with Holm, one-way and Welch ANOVA, Kruskal–Wallis. Target: ≤ 10 s on 2 cores.
//!
//! The data are seeded and synthetic: lognormal-ish latencies `exp(μ_g + σ_g·z)` with `z` from
//! Box–Muller over an inline SplitMix64 stream (the crate has no `rand` dependency).
//! `benches/scipy_groups.py` in the repository root generates the same values (the same stream,
//! vectorised in NumPy) and times the same computation in SciPy; `--write FILE.parquet` there
//! gives the file for timing `tcobench stats FILE.parquet --by group --metric value` end to end.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tcobench_stats::groups::{analyze_groups, GroupOptions};
use tcobench_stats::inference::{Adjust, Bootstrap};

const ROWS: usize = 1_000_000;
const GROUPS: usize = 100;
const RESAMPLES: usize = 10_000;

/// SplitMix64: enough randomness for synthetic data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1_u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `ROWS` values in `GROUPS` equal groups, named `g00` … `g99`.
fn data(seed: u64) -> Vec<(String, Vec<f64>)> {
    let mut rng = SplitMix64(seed);
    (0..GROUPS)
        .map(|g| {
            let mu = (100.0_f64).ln() + 0.002 * g as f64;
            let sigma = 0.2 + 0.001 * g as f64;
            let xs = (0..ROWS / GROUPS)
                .map(|_| (mu + sigma * rng.normal()).exp())
                .collect();
            (format!("g{g:02}"), xs)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let groups = data(42);
    let opts = GroupOptions {
        bootstrap: Bootstrap {
            resamples: RESAMPLES,
            seed: 0,
        },
        adjust: Adjust::Holm,
        pooled_pairwise: false,
    };
    let mut g = c.benchmark_group("groups");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("analyze_groups/1M rows, 100 groups, 10k resamples", |b| {
        b.iter(|| analyze_groups(black_box(&groups), black_box(&opts)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
