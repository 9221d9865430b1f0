//! Two-sample *t*-tests (Welch, Student) and standardized effect sizes (Cohen's *d*, Hedges'
//! *g*), with their result types.

use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

use super::common::{check_group, finite, mean_ss, students_t, t_two_sided, z975};
use super::InferenceError;

/// Result of a two-sample *t*-test. All differences are `a − b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// The *t* statistic, `(mean(a) − mean(b)) / se`.
    pub t: f64,
    /// Degrees of freedom (Welch–Satterthwaite for [`welch_t_test`], `na + nb − 2` for
    /// [`student_t_test`]).
    pub df: f64,
    /// Two-sided *p*-value.
    pub p: f64,
    /// `mean(a) − mean(b)`.
    pub mean_diff: f64,
    /// 95 % confidence interval for `mean(a) − mean(b)`, `[low, high]`.
    pub ci95_diff: [f64; 2],
}

/// A standardized effect size with a 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffectSize {
    /// Point estimate (sign follows `a − b`).
    pub estimate: f64,
    /// 95 % confidence interval, `[low, high]` (normal approximation; see [`cohens_d`]).
    pub ci95: [f64; 2],
}

/// Welch's unequal-variance two-sample *t*-test (R `t.test(a, b)`, SciPy
/// `ttest_ind(a, b, equal_var=False)`).
///
/// `se = sqrt(va/na + vb/nb)`, `t = (mean(a) − mean(b)) / se`, and the Welch–Satterthwaite
/// degrees of freedom `df = se⁴ / ((va/na)²/(na−1) + (vb/nb)²/(nb−1))`. The 95 % interval is
/// `mean_diff ± t₀.₉₇₅(df)·se`.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] if a group has fewer than 2 values,
/// [`InferenceError::NonFinite`] for NaN/∞ input, [`InferenceError::ZeroVariance`] if both groups
/// are constant.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Result<TTest, InferenceError> {
    check_group(a, 0, 2)?;
    check_group(b, 1, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, ssa) = mean_ss(a);
    let (mb, ssb) = mean_ss(b);
    let qa = ssa / (na - 1.0) / na;
    let qb = ssb / (nb - 1.0) / nb;
    let se2 = qa + qb;
    if se2 <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    let se = se2.sqrt();
    let df = finite(se2 * se2 / (qa * qa / (na - 1.0) + qb * qb / (nb - 1.0)))?;
    t_result(ma - mb, se, df)
}

/// Student's pooled-variance two-sample *t*-test (R `t.test(a, b, var.equal = TRUE)`).
///
/// `sp² = (ssa + ssb) / (na + nb − 2)`, `se = sp·sqrt(1/na + 1/nb)`, `df = na + nb − 2`.
///
/// # Errors
/// [`InferenceError::TooFewObservations`] if a group is empty or both have one value only,
/// [`InferenceError::NonFinite`] for NaN/∞ input, [`InferenceError::ZeroVariance`] if the pooled
/// variance is zero.
pub fn student_t_test(a: &[f64], b: &[f64]) -> Result<TTest, InferenceError> {
    let (ma, mb, sp, na, nb) = pooled(a, b)?;
    let se = sp * (1.0 / na + 1.0 / nb).sqrt();
    t_result(ma - mb, se, na + nb - 2.0)
}

fn t_result(diff: f64, se: f64, df: f64) -> Result<TTest, InferenceError> {
    let t = finite(diff / se)?;
    let p = t_two_sided(t, df)?;
    let q = students_t(df)?.inverse_cdf(0.975);
    Ok(TTest {
        t,
        df,
        p,
        mean_diff: diff,
        ci95_diff: [diff - q * se, diff + q * se],
    })
}

/// Validates two groups for pooled statistics and returns `(ma, mb, sp, na, nb)`.
fn pooled(a: &[f64], b: &[f64]) -> Result<(f64, f64, f64, f64, f64), InferenceError> {
    check_group(a, 0, 1)?;
    check_group(b, 1, 1)?;
    if a.len() + b.len() < 3 {
        return Err(InferenceError::TooFewObservations {
            group: 0,
            n: a.len(),
        });
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, ssa) = mean_ss(a);
    let (mb, ssb) = mean_ss(b);
    let sp2 = (ssa + ssb) / (na + nb - 2.0);
    if sp2 <= 0.0 {
        return Err(InferenceError::ZeroVariance);
    }
    Ok((ma, mb, sp2.sqrt(), na, nb))
}

/// Cohen's *d* with the pooled standard deviation: `d = (mean(a) − mean(b)) / sp`,
/// `sp² = ((na−1)·va + (nb−1)·vb) / (na + nb − 2)`.
///
/// The 95 % interval is the normal approximation `d ± z₀.₉₇₅·SE(d)` with (Hedges & Olkin 1985)
///
/// ```text
/// SE(d) = sqrt( (na + nb) / (na·nb) + d² / (2·(na + nb)) )
/// ```
///
/// # Errors
/// As for [`student_t_test`].
pub fn cohens_d(a: &[f64], b: &[f64]) -> Result<EffectSize, InferenceError> {
    let (ma, mb, sp, na, nb) = pooled(a, b)?;
    let d = finite((ma - mb) / sp)?;
    let se = d_standard_error(d, na, nb);
    let z = z975();
    Ok(EffectSize {
        estimate: d,
        ci95: [d - z * se, d + z * se],
    })
}

/// Hedges' *g*: Cohen's *d* times the small-sample correction `J = 1 − 3 / (4·(na + nb − 2) − 1)`.
///
/// The 95 % interval is `g ± z₀.₉₇₅·J·SE(d)`, with `SE(d)` as in [`cohens_d`] evaluated at the
/// uncorrected *d* (the variance of *g* is `J²·Var(d)`; Borenstein et al. 2009, ch. 4).
///
/// # Errors
/// As for [`student_t_test`].
pub fn hedges_g(a: &[f64], b: &[f64]) -> Result<EffectSize, InferenceError> {
    let d = cohens_d(a, b)?.estimate;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let j = 1.0 - 3.0 / (4.0 * (na + nb - 2.0) - 1.0);
    let g = j * d;
    let se = j * d_standard_error(d, na, nb);
    let z = z975();
    Ok(EffectSize {
        estimate: g,
        ci95: [g - z * se, g + z * se],
    })
}

fn d_standard_error(d: f64, na: f64, nb: f64) -> f64 {
    ((na + nb) / (na * nb) + d * d / (2.0 * (na + nb))).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::rng::Xoshiro256StarStar;
    use crate::inference::test_support::{close, random_sample, SLEEP1, SLEEP2};

    #[test]
    fn welch_sleep_matches_r_and_scipy() {
        let r = welch_t_test(&SLEEP1, &SLEEP2).unwrap();
        // R t.test(extra ~ group, sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
        // CI -3.3654832 0.2054832. Full digits: SciPy 1.17.1
        // ttest_ind(g1, g2, equal_var=False) → statistic, df, pvalue, confidence_interval(0.95).
        close(r.t, -1.860_813_467_486_852_6, 1e-12);
        close(r.df, 17.776_473_516_178_488, 1e-12);
        close(r.p, 0.079_394_140_187_358_3, 1e-9);
        close(r.mean_diff, -1.58, 1e-12);
        close(r.ci95_diff[0], -3.365_483_230_711_710_4, 1e-9);
        close(r.ci95_diff[1], 0.205_483_230_711_711_37, 1e-8);
        // R's printed values.
        close(r.t, -1.860813, 1e-6);
        close(r.df, 17.77647, 1e-6);
        close(r.p, 0.07939, 1e-4);
        close(r.ci95_diff[0], -3.3654832, 1e-7);
        close(r.ci95_diff[1], 0.2054832, 1e-6);
    }

    #[test]
    fn student_sleep_matches_r_and_scipy() {
        let r = student_t_test(&SLEEP1, &SLEEP2).unwrap();
        // R t.test(extra ~ group, sleep, var.equal = TRUE): t = -1.8608, df = 18,
        // p-value = 0.07919. Full digits: SciPy 1.17.1 ttest_ind(g1, g2, equal_var=True).
        close(r.t, -1.860_813_467_486_852_4, 1e-12);
        assert_eq!(r.df, 18.0);
        close(r.p, 0.079_186_714_215_938_22, 1e-9);
        close(r.ci95_diff[0], -3.363_874_032_287_598_4, 1e-9);
        close(r.ci95_diff[1], 0.203_874_032_287_599_15, 1e-8);
        close(r.p, 0.07919, 1e-4);
    }

    #[test]
    fn effect_sizes_sleep() {
        let d = cohens_d(&SLEEP1, &SLEEP2).unwrap();
        let g = hedges_g(&SLEEP1, &SLEEP2).unwrap();
        // R effectsize::cohens_d / hedges_g point estimates.
        close(d.estimate, -0.8321811, 1e-6);
        close(g.estimate, -0.7970185, 1e-6);
        // Intervals: the documented normal-approximation formula evaluated in NumPy/SciPy 1.17.1
        // (z = scipy.stats.norm.ppf(0.975) = 1.959963984540054).
        close(z975(), 1.959_963_984_540_054, 1e-12);
        close(d.ci95[0], -1.745_854_685_380_915_2, 1e-9);
        close(d.ci95[1], 0.081_492_522_681_836_04, 1e-8);
        close(g.ci95[0], -1.672_086_177_547_918_8, 1e-9);
        close(g.ci95[1], 0.078_049_176_653_026_02, 1e-8);
    }

    #[test]
    fn welch_t_shift_invariant_and_antisymmetric() {
        let mut rng = Xoshiro256StarStar::from_splitmix(42);
        for case in 0..200 {
            let na = 2 + case % 17;
            let nb = 2 + (case * 7) % 23;
            let a = random_sample(&mut rng, na, 10.0, 3.0);
            let b = random_sample(&mut rng, nb, 11.0, 5.0);
            let base = welch_t_test(&a, &b).unwrap();
            let shift = (rng.next_u64() % 1000) as f64 - 500.0;
            let sa: Vec<f64> = a.iter().map(|v| v + shift).collect();
            let sb: Vec<f64> = b.iter().map(|v| v + shift).collect();
            let shifted = welch_t_test(&sa, &sb).unwrap();
            close(shifted.t, base.t, 1e-8);
            close(shifted.df, base.df, 1e-8);
            close(shifted.p, base.p, 1e-6);
            let swapped = welch_t_test(&b, &a).unwrap();
            close(swapped.t, -base.t, 1e-12);
            close(swapped.df, base.df, 1e-12);
            close(swapped.p, base.p, 1e-12);
            close(swapped.ci95_diff[0], -base.ci95_diff[1], 1e-12);
            let st = student_t_test(&b, &a).unwrap();
            close(st.t, -student_t_test(&a, &b).unwrap().t, 1e-12);
        }
    }
}
