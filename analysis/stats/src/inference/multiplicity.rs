//! Multiplicity: R's `p.adjust` (Holm, Benjamini–Hochberg, none) and the pooled-sd pairwise
//! *t*-tests of R's `pairwise.t.test`.

use serde::{Deserialize, Serialize};

use super::common::{finite, t_two_sided};
use super::ksample::group_summaries;
use super::InferenceError;

/// Multiple-comparison adjustment for [`p_adjust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Adjust {
    /// Holm's step-down family-wise error rate control (R `"holm"`).
    Holm,
    /// Benjamini–Hochberg false discovery rate control (R `"BH"` / `"fdr"`).
    BenjaminiHochberg,
    /// No adjustment (R `"none"`).
    None,
}

/// Adjusts *p*-values for multiple comparisons, exactly as R's `p.adjust`.
///
/// The output has the input's order. Adjusted values are monotone in the raw values and capped
/// at 1. With `m` the number of non-NaN inputs and `p₍ᵢ₎` the i-th smallest:
///
/// * Holm: `p̃₍ᵢ₎ = min(1, max_{j ≤ i} (m − j + 1)·p₍ⱼ₎)`;
/// * Benjamini–Hochberg: `p̃₍ᵢ₎ = min(1, min_{j ≥ i} m/j·p₍ⱼ₎)`;
/// * None: unchanged.
///
/// NaN entries (R's `NA`) stay NaN and do not count towards `m`.
pub fn p_adjust(ps: &[f64], method: Adjust) -> Vec<f64> {
    let mut out = ps.to_vec();
    let mut idx: Vec<usize> = (0..ps.len()).filter(|&i| !ps[i].is_nan()).collect();
    let m = idx.len() as f64;
    match method {
        Adjust::None => {}
        Adjust::Holm => {
            idx.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
            let mut running = f64::NEG_INFINITY;
            for (rank, &i) in idx.iter().enumerate() {
                running = running.max((m - rank as f64) * ps[i]);
                out[i] = running.min(1.0);
            }
        }
        Adjust::BenjaminiHochberg => {
            idx.sort_by(|&i, &j| ps[j].total_cmp(&ps[i]));
            let mut running = f64::INFINITY;
            for (rank, &i) in idx.iter().enumerate() {
                let position = m - rank as f64; // 1-based rank in ascending order
                running = running.min(m / position * ps[i]);
                out[i] = running.min(1.0);
            }
        }
    }
    out
}

/// All pairwise *t*-tests with the standard deviation pooled over **all** groups and Holm
/// adjustment: R's `pairwise.t.test(y, g)` default (`pool.sd = TRUE`, `p.adjust.method =
/// "holm"`). Equivalent to [`pairwise_t_pooled_with`]`(groups, Adjust::Holm)`.
///
/// Returns `(i, j, adjusted p)` for every pair `i < j`, in the order (0,1), (0,2), …, (1,2), ….
///
/// # Errors
/// As for [`one_way_anova`].
///
/// [`one_way_anova`]: super::one_way_anova
pub fn pairwise_t_pooled(groups: &[&[f64]]) -> Result<Vec<(usize, usize, f64)>, InferenceError> {
    pairwise_t_pooled_with(groups, Adjust::Holm)
}

/// All pairwise pooled-sd *t*-tests (see [`pairwise_t_pooled`]) with a chosen adjustment.
///
/// For groups `i`, `j`: `t = (mᵢ − mⱼ) / (s·sqrt(1/nᵢ + 1/nⱼ))` with `s² = Σ SSᵢ / (N − k)` over
/// all `k` groups and `df = N − k`; two-sided *p*-values, then [`p_adjust`] over all pairs.
///
/// # Errors
/// As for [`one_way_anova`].
///
/// [`one_way_anova`]: super::one_way_anova
pub fn pairwise_t_pooled_with(
    groups: &[&[f64]],
    adjust: Adjust,
) -> Result<Vec<(usize, usize, f64)>, InferenceError> {
    let (s, ss_within) = group_summaries(groups)?;
    if ss_within <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let n_total: f64 = s.iter().map(|g| g.n).sum();
    let df = n_total - s.len() as f64;
    let sd = (ss_within / df).sqrt();
    let mut pairs = Vec::new();
    let mut raw = Vec::new();
    for i in 0..s.len() {
        for j in i + 1..s.len() {
            let se = sd * (1.0 / s[i].n + 1.0 / s[j].n).sqrt();
            let t = finite((s[i].mean - s[j].mean) / se)?;
            pairs.push((i, j));
            raw.push(t_two_sided(t, df)?);
        }
    }
    let adjusted = p_adjust(&raw, adjust);
    Ok(pairs
        .into_iter()
        .zip(adjusted)
        .map(|((i, j), p)| (i, j, p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::test_support::{close, plant};

    #[test]
    fn p_adjust_matches_r() {
        let p = [0.01, 0.02, 0.03, 0.04, 0.05];
        // By hand: Holm multipliers 5,4,3,2,1 → 0.05,0.08,0.09,0.08,0.05 → cummax.
        let holm = p_adjust(&p, Adjust::Holm);
        for (g, w) in holm.iter().zip([0.05, 0.08, 0.09, 0.09, 0.09]) {
            close(*g, w, 1e-12);
        }
        // By hand: BH n/i·p = 0.05 for every i.
        for g in p_adjust(&p, Adjust::BenjaminiHochberg) {
            close(g, 0.05, 1e-12);
        }
        assert_eq!(p_adjust(&p, Adjust::None), p.to_vec());
        // Unsorted input with ties; NumPy transcription of R's p.adjust formulas.
        let p = [0.04, 0.001, 0.3, 0.02, 0.04, 0.7, 0.012];
        let holm = [0.16, 0.007, 0.6, 0.1, 0.16, 0.7, 0.072];
        let bh = [
            0.056,
            0.007,
            0.35,
            0.046_666_666_666_666_67,
            0.056,
            0.7,
            0.042,
        ];
        for (g, w) in p_adjust(&p, Adjust::Holm).iter().zip(holm) {
            close(*g, w, 1e-12);
        }
        for (g, w) in p_adjust(&p, Adjust::BenjaminiHochberg).iter().zip(bh) {
            close(*g, w, 1e-12);
        }
        // Capping at 1 and NaN passthrough (NaN not counted: m = 2).
        let adj = p_adjust(&[0.6, f64::NAN, 0.9], Adjust::Holm);
        assert_eq!(adj[0], 1.0);
        assert!(adj[1].is_nan());
        assert_eq!(adj[2], 1.0);
        assert!(p_adjust(&[], Adjust::Holm).is_empty());
    }

    #[test]
    fn pairwise_plant_growth() {
        // R pairwise.t.test(PlantGrowth$weight, PlantGrowth$group):
        //        ctrl  trt1
        //   trt1 0.194 -
        //   trt2 0.175 0.013
        // Full digits: pooled-sd t in NumPy + scipy.stats.t.sf, Holm by R's formula.
        let r = pairwise_t_pooled(&plant()).unwrap();
        let want = [
            (0, 1, 0.194_387_880_054_302),
            (0, 2, 0.175_363_350_125_365_6),
            (1, 2, 0.013_377_707_814_616_354),
        ];
        assert_eq!(r.len(), 3);
        for (got, want) in r.iter().zip(want) {
            assert_eq!((got.0, got.1), (want.0, want.1));
            close(got.2, want.2, 1e-9);
        }
        // R's printed values (three decimals): within half a unit of the last digit.
        for (got, want) in r.iter().zip([0.194, 0.175, 0.013]) {
            assert!((got.2 - want).abs() <= 5e-4, "{} vs {want}", got.2);
        }
        let raw = pairwise_t_pooled_with(&plant(), Adjust::None).unwrap();
        close(raw[1].2, 0.087_681_675_062_682_8, 1e-9);
        close(raw[2].2, 0.004_459_235_938_205_451_5, 1e-9);
    }
}
