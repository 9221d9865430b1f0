//! Seeded, reproducible percentile bootstraps: the [`Bootstrap`] settings, the chunked
//! (optionally threaded) resampling driver, medians of resamples by counting ranks, and the
//! public intervals for the median and the relative change of means.

use serde::{Deserialize, Serialize};

use super::common::{check_group, mean};
use super::rng::{SplitMix64, Xoshiro256StarStar};
use super::InferenceError;

/// Settings of a seeded bootstrap.
///
/// The same `resamples` and `seed` always give bit-identical results, on any machine and with
/// any number of threads (see [`bootstrap_ci_median`] for how the random streams are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Number of bootstrap resamples (at least 1; 2 000 or more for a 95 % interval).
    pub resamples: usize,
    /// Seed of the random streams.
    pub seed: u64,
}

impl Default for Bootstrap {
    /// 10 000 resamples, seed `0x7C0B_E4C4`.
    fn default() -> Self {
        Self {
            resamples: 10_000,
            seed: 0x7C0B_E4C4,
        }
    }
}

/// Resamples per independently seeded chunk. Fixed, so results never depend on threading.
const CHUNK: usize = 256;
/// Below this many random draws in total the bootstrap runs on the calling thread.
const PARALLEL_MIN_DRAWS: usize = 1 << 18;

/// Runs `stat` once per resample and returns the statistics in resample order.
///
/// Resample `r` belongs to chunk `c = r / CHUNK`; chunk `c` draws from a xoshiro256** stream
/// seeded with the `(c + 1)`-th output of `SplitMix64(seed)`. Chunks are spread over threads
/// (`std::thread::scope`), but every chunk's stream and output slot are fixed, so the result is
/// identical for any thread count.
fn run_bootstrap<T, S, M, F>(
    cfg: &Bootstrap,
    draws_per_resample: usize,
    make_scratch: M,
    stat: F,
) -> Vec<T>
where
    T: Copy + Default + Send,
    M: Fn() -> S + Sync,
    F: Fn(&mut Xoshiro256StarStar, &mut S) -> T + Sync,
{
    let mut out = vec![T::default(); cfg.resamples];
    let run_chunk = |c: usize, slot: &mut [T], scratch: &mut S| {
        let mut rng = Xoshiro256StarStar::from_splitmix(SplitMix64::nth(cfg.seed, c as u64 + 1));
        for v in slot.iter_mut() {
            *v = stat(&mut rng, scratch);
        }
    };
    let mut chunks: Vec<(usize, &mut [T])> = out.chunks_mut(CHUNK).enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(chunks.len());
    let draws = cfg.resamples.saturating_mul(draws_per_resample);
    if threads <= 1 || draws < PARALLEL_MIN_DRAWS {
        let mut scratch = make_scratch();
        for (c, slot) in chunks.iter_mut() {
            run_chunk(*c, slot, &mut scratch);
        }
    } else {
        let per_thread = chunks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            for group in chunks.chunks_mut(per_thread) {
                let run_chunk = &run_chunk;
                let make_scratch = &make_scratch;
                scope.spawn(move || {
                    let mut scratch = make_scratch();
                    for (c, slot) in group.iter_mut() {
                        run_chunk(*c, slot, &mut scratch);
                    }
                });
            }
        });
    }
    out
}

fn check_bootstrap(cfg: &Bootstrap) -> Result<(), InferenceError> {
    if cfg.resamples == 0 {
        Err(InferenceError::InvalidArgument(
            "bootstrap resamples must be ≥ 1",
        ))
    } else {
        Ok(())
    }
}

/// Percentile interval: type-7 2.5 % and 97.5 % quantiles of the bootstrap statistics.
///
/// Selection instead of a sort (O(n)): the type-7 quantile at p only needs the order statistics
/// ⌊h⌋ and ⌊h⌋ + 1 with h = (n − 1)·p, and the result is bit-identical to sorting first.
fn percentile_ci(values: &mut [f64]) -> Result<[f64; 2], InferenceError> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return Err(InferenceError::NonFinite);
    }
    Ok([
        select_quantile7(values, 0.025),
        select_quantile7(values, 0.975),
    ])
}

/// Type-7 quantile of a non-empty, finite slice by selection (reorders `values`).
fn select_quantile7(values: &mut [f64], p: f64) -> f64 {
    let n = values.len();
    let h = (n - 1) as f64 * p;
    let lo = h.floor() as usize;
    let (_, x_lo, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let x_lo = *x_lo;
    if lo + 1 >= n {
        return x_lo;
    }
    let x_hi = above.iter().copied().min_by(f64::total_cmp).unwrap_or(x_lo);
    // Same arithmetic as `descriptive::quantile_sorted`.
    x_lo + (h - lo as f64) * (x_hi - x_lo)
}

/// Ranks of a sample, for medians of resamples by counting (no sorting, no selection).
///
/// A resample is a multiset of positions of `x`; its median depends only on how many draws land
/// on each *rank* (position in the ascending order of `x`, by `f64::total_cmp`). Counting the
/// draws per rank and walking the counts to the middle order statistics gives exactly the values
/// quickselect would find, so the medians are bit-identical to those of the resampled values
/// themselves, at the cost of one table lookup and one increment per draw.
///
/// `T` is the narrowest unsigned type that holds `n` (ranks and counts both fit), so the two
/// tables of a 10 000-value sample (20 KB each) stay in the L1 cache.
struct RankCounter<'a, T> {
    /// `x` itself (for resampled means).
    x: &'a [f64],
    /// `x` in ascending order.
    sorted: &'a [f64],
    /// Rank (index into `sorted`) of every position of `x`.
    rank: &'a [T],
}

/// Counter types of [`RankCounter`].
trait Count: Copy + Default + Send + Sync {
    fn from_usize(v: usize) -> Self;
    fn to_usize(self) -> usize;
    fn incr(&mut self);
}

macro_rules! count_impl {
    ($($t:ty),*) => {$(
        impl Count for $t {
            #[inline(always)]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_usize(self) -> usize {
                self as usize
            }
            #[inline(always)]
            fn incr(&mut self) {
                *self += 1;
            }
        }
    )*};
}
count_impl!(u16, u32, u64);

/// Values per block when summing counts to find the middle of a resample.
const COUNT_BLOCK: usize = 64;

impl<T: Count> RankCounter<'_, T> {
    /// Median of one resample of `n = rank.len()` draws, `counts` being the scratch (zeroed
    /// here). Same result as quickselect (`median_select`) on the drawn values.
    /// Median and mean of one resample, from the same draws: the mean is `Σ counts[r]·x₍ᵣ₎ / n`.
    #[inline]
    fn resample_median_mean(&self, rng: &mut Xoshiro256StarStar, counts: &mut [T]) -> (f64, f64) {
        let n = self.rank.len();
        let counts = &mut counts[..n];
        counts.fill(T::default());
        // The same draws as `resample_median`, summed on the way (four accumulators keep the
        // additions off the critical path; the order is fixed, so the result is reproducible).
        let mut acc = [0.0_f64; 4];
        for k in 0..n {
            let i = rng.below(n);
            counts[self.rank[i].to_usize()].incr();
            acc[k & 3] += self.x[i];
        }
        let sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        (self.median_of_counts(counts), sum / n as f64)
    }

    #[inline]
    fn resample_median(&self, rng: &mut Xoshiro256StarStar, counts: &mut [T]) -> f64 {
        let n = self.rank.len();
        let counts = &mut counts[..n];
        counts.fill(T::default());
        for _ in 0..n {
            counts[self.rank[rng.below(n)].to_usize()].incr();
        }
        self.median_of_counts(counts)
    }

    /// Median of the resample whose draws per rank are `counts` (summing to `n`).
    #[inline]
    fn median_of_counts(&self, counts: &[T]) -> f64 {
        let n = self.rank.len();
        let m = n / 2;
        // Order statistics m − 1 and m (0-based) of the resample.
        let (lo, hi) = order_statistic_ranks(counts, m - 1);
        if n % 2 == 1 {
            self.sorted[hi]
        } else {
            let (x_below, x_m) = (self.sorted[lo], self.sorted[hi]);
            x_below + 0.5 * (x_m - x_below)
        }
    }
}

/// Ranks holding the order statistics `k` and `k + 1` (0-based) of the multiset with `counts[r]`
/// copies of rank `r`; needs `k + 1 < sum(counts)`.
#[inline]
fn order_statistic_ranks<T: Count>(counts: &[T], k: usize) -> (usize, usize) {
    // Whole blocks first (their sums vectorise), then value by value inside the block.
    let mut before = 0_usize;
    let mut r = 0;
    for block in counts.chunks(COUNT_BLOCK) {
        let s: usize = block.iter().map(|c| c.to_usize()).sum();
        if before + s > k {
            break;
        }
        before += s;
        r += block.len();
    }
    loop {
        before += counts[r].to_usize();
        if before > k {
            break;
        }
        r += 1;
    }
    if before > k + 1 {
        return (r, r);
    }
    let mut next = r + 1;
    while counts[next].to_usize() == 0 {
        next += 1;
    }
    (r, next)
}

fn bootstrap_medians<T: Count>(x: &[f64], cfg: &Bootstrap) -> Vec<f64> {
    with_rank_counter::<T, _>(x, |counter| {
        run_bootstrap(
            cfg,
            x.len(),
            || vec![T::default(); x.len()],
            |rng, counts: &mut Vec<T>| counter.resample_median(rng, counts),
        )
    })
}

fn bootstrap_medians_means<T: Count>(x: &[f64], cfg: &Bootstrap) -> Vec<(f64, f64)> {
    with_rank_counter::<T, _>(x, |counter| {
        run_bootstrap(
            cfg,
            x.len(),
            || vec![T::default(); x.len()],
            |rng, counts: &mut Vec<T>| counter.resample_median_mean(rng, counts),
        )
    })
}

fn with_rank_counter<T: Count, R>(x: &[f64], f: impl FnOnce(&RankCounter<'_, T>) -> R) -> R {
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let mut rank = vec![T::default(); n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = T::from_usize(r);
    }
    f(&RankCounter {
        x,
        sorted: &sorted,
        rank: &rank,
    })
}

/// 95 % percentile-bootstrap confidence interval for the median of `x`.
///
/// Each of `cfg.resamples` resamples draws `x.len()` values from `x` with replacement; the
/// interval is the type-7 2.5 % and 97.5 % quantiles of the resampled medians. A resample's
/// median is found by counting the draws per rank of `x` (O(n) per resample, no sorting); it is
/// bit-identical to the type-7 median of the drawn values.
///
/// Reproducibility: resample `r` belongs to chunk `r / 256`; chunk `c` draws indices from a
/// xoshiro256** generator whose state is four SplitMix64 outputs seeded with the `(c + 1)`-th
/// output of `SplitMix64(cfg.seed)`; indices are unbiased (Lemire's method). Chunks may run on
/// several threads, but the result does not depend on how many.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] for fewer than 2 values, [`InferenceError::NonFinite`]
/// for NaN/∞ input, [`InferenceError::InvalidArgument`] for zero resamples.
pub fn bootstrap_ci_median(x: &[f64], cfg: &Bootstrap) -> Result<[f64; 2], InferenceError> {
    check_group(x, 0, 2)?;
    check_bootstrap(cfg)?;
    let mut medians = if x.len() <= usize::from(u16::MAX) {
        bootstrap_medians::<u16>(x, cfg)
    } else if u32::try_from(x.len()).is_ok() {
        bootstrap_medians::<u32>(x, cfg)
    } else {
        bootstrap_medians::<u64>(x, cfg)
    };
    percentile_ci(&mut medians)
}

/// One group's bootstrap: the 95 % CI of the median and every resample's mean, from the same
/// draws (so a group is resampled once however many pairs it is part of).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBootstrap {
    /// Percentile 95 % CI of the median (as [`bootstrap_ci_median`] computes it).
    pub ci95_median: [f64; 2],
    /// Mean of each resample, in resample order.
    pub means: Vec<f64>,
}

/// Resamples `x` once and returns the median's CI and the resampled means. The medians are
/// bit-identical to [`bootstrap_ci_median`] with the same settings.
///
/// # Errors
/// As [`bootstrap_ci_median`].
pub fn bootstrap_group(x: &[f64], cfg: &Bootstrap) -> Result<GroupBootstrap, InferenceError> {
    check_group(x, 0, 2)?;
    check_bootstrap(cfg)?;
    let pairs = if x.len() <= usize::from(u16::MAX) {
        bootstrap_medians_means::<u16>(x, cfg)
    } else if u32::try_from(x.len()).is_ok() {
        bootstrap_medians_means::<u32>(x, cfg)
    } else {
        bootstrap_medians_means::<u64>(x, cfg)
    };
    let (mut medians, means): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    Ok(GroupBootstrap {
        ci95_median: percentile_ci(&mut medians)?,
        means,
    })
}

/// Percentile 95 % CI of the relative change of means `(mean(new) − mean(base)) / mean(base)`
/// from two groups' resampled means (resample `r` of one paired with resample `r` of the other).
/// The groups must have been resampled from independent streams (different seeds).
///
/// # Errors
/// [`InferenceError::InvalidArgument`] for empty or unequal-length inputs,
/// [`InferenceError::NonFinite`] when a resampled baseline mean is zero.
pub fn relative_change_ci(
    base_means: &[f64],
    new_means: &[f64],
) -> Result<[f64; 2], InferenceError> {
    if base_means.is_empty() || base_means.len() != new_means.len() {
        return Err(InferenceError::InvalidArgument(
            "resampled means must be non-empty and of equal length",
        ));
    }
    let mut changes: Vec<f64> = base_means
        .iter()
        .zip(new_means)
        .map(|(b, n)| (n - b) / b)
        .collect();
    if changes.iter().any(|c| !c.is_finite()) {
        return Err(InferenceError::NonFinite);
    }
    percentile_ci(&mut changes)
}

/// 95 % percentile-bootstrap confidence interval for the relative change of means,
/// `(mean(new) − mean(base)) / mean(base)`.
///
/// The two groups are resampled independently (each with replacement, at its own size); the
/// random streams are derived from `cfg.seed` as in [`bootstrap_ci_median`]. Within a resample
/// the `base` draws come first, then the `new` draws.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] for a group with fewer than 2 values,
/// [`InferenceError::NonFinite`] for NaN/∞ input or when some resampled baseline mean is zero
/// (possible only when `base` has values of both signs or zeros),
/// [`InferenceError::ZeroMean`] when `mean(base) = 0`, [`InferenceError::InvalidArgument`] for
/// zero resamples.
pub fn bootstrap_ci_relative_change(
    base: &[f64],
    new: &[f64],
    cfg: &Bootstrap,
) -> Result<[f64; 2], InferenceError> {
    check_group(base, 0, 2)?;
    check_group(new, 1, 2)?;
    check_bootstrap(cfg)?;
    if mean(base) == 0.0 {
        return Err(InferenceError::ZeroMean);
    }
    let (nb, nn) = (base.len(), new.len());
    let mut changes = run_bootstrap(
        cfg,
        nb + nn,
        || (),
        |rng, _: &mut ()| {
            let mut sb = 0.0;
            for _ in 0..nb {
                sb += base[rng.below(nb)];
            }
            let mut sn = 0.0;
            for _ in 0..nn {
                sn += new[rng.below(nn)];
            }
            let mb = sb / nb as f64;
            (sn / nn as f64 - mb) / mb
        },
    );
    percentile_ci(&mut changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptive;
    use crate::inference::common::{median_select, quantile7};
    use crate::inference::test_support::random_sample;

    #[test]
    fn bootstrap_is_reproducible_and_seed_sensitive() {
        let mut rng = Xoshiro256StarStar::from_splitmix(7);
        let x = random_sample(&mut rng, 301, 100.0, 20.0);
        let y = random_sample(&mut rng, 257, 95.0, 20.0);
        let cfg = Bootstrap {
            resamples: 4000,
            seed: 2024,
        };
        let a = bootstrap_ci_median(&x, &cfg).unwrap();
        let b = bootstrap_ci_median(&x, &cfg).unwrap();
        assert_eq!(a, b);
        // Resampled medians take few distinct values, so two seeds can give the same interval;
        // the resampled medians themselves must differ, and so must some of the intervals.
        let other = Bootstrap { seed: 2025, ..cfg };
        let medians = |c: &Bootstrap| {
            run_bootstrap(
                c,
                x.len(),
                || vec![0.0; x.len()],
                |rng, buf: &mut Vec<f64>| {
                    for v in buf.iter_mut() {
                        *v = x[rng.below(x.len())];
                    }
                    median_select(buf)
                },
            )
        };
        assert_eq!(medians(&cfg), medians(&cfg));
        assert_ne!(medians(&cfg), medians(&other));
        assert!((2025..2035)
            .any(|seed| bootstrap_ci_median(&x, &Bootstrap { seed, ..cfg }).unwrap() != a));
        let r1 = bootstrap_ci_relative_change(&x, &y, &cfg).unwrap();
        let r2 = bootstrap_ci_relative_change(&x, &y, &cfg).unwrap();
        assert_eq!(r1, r2);
        assert_ne!(r1, bootstrap_ci_relative_change(&x, &y, &other).unwrap());
        assert!(r1[0] < r1[1]);
        let observed = (mean(&y) - mean(&x)) / mean(&x);
        assert!(r1[0] < observed && observed < r1[1], "{r1:?} vs {observed}");
    }

    #[test]
    fn bootstrap_threaded_equals_serial() {
        // Large enough to take the threaded path on a multi-core machine; the serial result is
        // recomputed here chunk by chunk, exactly as documented.
        let mut rng = Xoshiro256StarStar::from_splitmix(99);
        let x = random_sample(&mut rng, 400, 0.0, 1.0);
        let cfg = Bootstrap {
            resamples: 2000,
            seed: 5,
        };
        assert!(cfg.resamples * x.len() >= PARALLEL_MIN_DRAWS);
        let got = bootstrap_ci_median(&x, &cfg).unwrap();
        let mut medians = Vec::with_capacity(cfg.resamples);
        let mut buf = vec![0.0; x.len()];
        for r in 0..cfg.resamples {
            if r % CHUNK == 0 {
                let seed = SplitMix64::nth(cfg.seed, (r / CHUNK) as u64 + 1);
                rng = Xoshiro256StarStar::from_splitmix(seed);
            }
            for v in buf.iter_mut() {
                *v = x[rng.below(x.len())];
            }
            let mut sorted = buf.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            medians.push(quantile7(&sorted, 0.5).unwrap());
        }
        medians.sort_unstable_by(f64::total_cmp);
        let want = [
            quantile7(&medians, 0.025).unwrap(),
            quantile7(&medians, 0.975).unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn bootstrap_median_ci_contains_sample_median() {
        let mut rng = Xoshiro256StarStar::from_splitmix(11);
        for case in 0..40 {
            let n = 2 + case * 5;
            let x = random_sample(&mut rng, n, -3.0, 9.0);
            let mut s = x.clone();
            s.sort_unstable_by(f64::total_cmp);
            let med = quantile7(&s, 0.5).unwrap();
            let ci = bootstrap_ci_median(
                &x,
                &Bootstrap {
                    resamples: 1000,
                    seed: case as u64,
                },
            )
            .unwrap();
            assert!(ci[0] <= med && med <= ci[1], "n={n}: {ci:?} vs {med}");
        }
    }

    #[test]
    fn counted_medians_equal_selected_medians() {
        // Ties, signed zeros, odd and even sizes, and every counter width: the medians found by
        // counting ranks are bit-identical to quickselect on the drawn values.
        let mut rng = Xoshiro256StarStar::from_splitmix(3);
        let mut samples: Vec<Vec<f64>> = vec![
            vec![1.0, 2.0],
            vec![5.0, -1.0, 5.0],
            vec![0.0, -0.0, 0.0, -0.0, 1.0, -1.0],
            vec![2.5; 7],
        ];
        for n in [2, 3, 10, 11, 64, 65, 129, 1000] {
            samples.push(random_sample(&mut rng, n, 10.0, 3.0));
            // Heavy ties.
            samples.push((0..n).map(|i| f64::from((i % 4) as u8)).collect());
        }
        for (case, x) in samples.iter().enumerate() {
            let cfg = Bootstrap {
                resamples: 600,
                seed: case as u64,
            };
            let want = run_bootstrap(
                &cfg,
                x.len(),
                || vec![0.0; x.len()],
                |rng, buf: &mut Vec<f64>| {
                    for v in buf.iter_mut() {
                        *v = x[rng.below(x.len())];
                    }
                    median_select(buf)
                },
            );
            let bits = |v: &[f64]| v.iter().map(|m| m.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&bootstrap_medians::<u16>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
            assert_eq!(
                bits(&bootstrap_medians::<u32>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
            assert_eq!(
                bits(&bootstrap_medians::<u64>(x, &cfg)),
                bits(&want),
                "case {case}"
            );
        }
        // Beyond u16: the u32 path, through the public function.
        let x = random_sample(&mut rng, 70_000, 0.0, 1.0);
        let cfg = Bootstrap {
            resamples: 5,
            seed: 1,
        };
        let mut want = run_bootstrap(
            &cfg,
            x.len(),
            || vec![0.0; x.len()],
            |rng, buf: &mut Vec<f64>| {
                for v in buf.iter_mut() {
                    *v = x[rng.below(x.len())];
                }
                median_select(buf)
            },
        );
        assert_eq!(
            bootstrap_ci_median(&x, &cfg).unwrap(),
            percentile_ci(&mut want).unwrap()
        );
    }

    #[test]
    fn group_bootstrap_matches_the_median_bootstrap_and_gives_means() {
        let x: Vec<f64> = (0..301).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let cfg = Bootstrap {
            resamples: 2_000,
            seed: 11,
        };
        let g = bootstrap_group(&x, &cfg).unwrap();
        assert_eq!(g.ci95_median, bootstrap_ci_median(&x, &cfg).unwrap());
        assert_eq!(g.means.len(), 2_000);
        let m = mean(&x);
        let avg = g.means.iter().sum::<f64>() / g.means.len() as f64;
        assert!(
            (avg - m).abs() < 0.05 * m,
            "resampled means centre on the mean"
        );
        // Two groups shifted by +10 %: the CI of the relative change contains 0.1.
        let y: Vec<f64> = x.iter().map(|v| v * 1.1).collect();
        let gy = bootstrap_group(&y, &Bootstrap { seed: 12, ..cfg }).unwrap();
        let [lo, hi] = relative_change_ci(&g.means, &gy.means).unwrap();
        assert!(lo < 0.1 && 0.1 < hi, "[{lo}, {hi}]");
        assert!(relative_change_ci(&g.means, &gy.means[1..]).is_err());
    }

    #[test]
    fn percentile_by_selection_equals_percentile_after_sorting() {
        let mut state = 7_u64;
        for n in [1_usize, 2, 3, 39, 40, 41, 1000, 10_001] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    state = SplitMix64::mix(state.wrapping_add(1));
                    ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5).round() * 0.0
                        + (state % 97) as f64
                        - 48.0
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let expected = [
                descriptive::quantile_sorted(&sorted, 0.025).unwrap(),
                descriptive::quantile_sorted(&sorted, 0.975).unwrap(),
            ];
            let mut w = v.clone();
            let got = percentile_ci(&mut w).unwrap();
            assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "n = {n}");
        }
    }
}
