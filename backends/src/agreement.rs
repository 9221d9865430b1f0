//! Whether two backends compute the same logits: the measure and its tolerances.
//!
//! Before timing two backends against each other the harness feeds both the same prompt and
//! continuation through [`Backend::logits_probe`](crate::Backend::logits_probe) and compares the
//! logits with [`max_relative_diff`]. The differences that remain between correct
//! implementations come from summation order (different matrix-multiply kernels) and from the
//! precision of the dtype, so the tolerance depends on the dtype only.

use crate::DType;

/// Denominator floor of [`max_relative_diff`], so all-zero reference logits do not divide by 0.
pub const RELATIVE_DIFF_FLOOR: f64 = 1e-12;

/// The largest relative difference between two logit sequences.
///
/// For each step `s` (a row of logits), `d_s = max_i |a_s[i] − b_s[i]| / max(max_i |b_s[i]|,
/// 1e-12)`: the largest absolute difference relative to the largest magnitude of the reference
/// `b` in that row. The result is `max_s d_s` (0 for no steps). Rows of different lengths, a
/// different number of rows, or a NaN in either input give `f64::INFINITY`, so a check against
/// any tolerance fails.
pub fn max_relative_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut worst = 0f64;
    for (ra, rb) in a.iter().zip(b) {
        if ra.len() != rb.len() {
            return f64::INFINITY;
        }
        let mut diff = 0f64;
        let mut scale = 0f64;
        for (&x, &y) in ra.iter().zip(rb) {
            if x.is_nan() || y.is_nan() {
                return f64::INFINITY;
            }
            diff = diff.max((f64::from(x) - f64::from(y)).abs());
            scale = scale.max(f64::from(y).abs());
        }
        let d = diff / scale.max(RELATIVE_DIFF_FLOOR);
        if d.is_nan() {
            return f64::INFINITY;
        }
        worst = worst.max(d);
    }
    worst
}

/// The largest [`max_relative_diff`] at which two backends running `dtype` count as computing
/// the same model: 1e-4 for f32, 1e-2 for f16, 5e-2 for bf16 (its 8-bit mantissa alone rounds at
/// about 4e-3 per operation).
pub fn agreement_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        DType::BF16 => 5e-2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_reference_row_maximum() {
        let b = vec![vec![1.0, -4.0, 2.0], vec![10.0, 0.0, 0.0]];
        let a = vec![vec![1.0, -4.0, 2.004], vec![10.0, 0.01, 0.0]];
        // Row 0: 0.004 / 4 = 1e-3; row 1: 0.01 / 10 = 1e-3.
        let d = max_relative_diff(&a, &b);
        assert!((d - 1e-3).abs() < 1e-6, "{d}");
        assert_eq!(max_relative_diff(&b, &b), 0.0);
        assert_eq!(max_relative_diff(&[], &[]), 0.0);
    }

    #[test]
    fn the_worst_step_counts() {
        let b = vec![vec![1.0, 1.0], vec![1.0, 1.0]];
        let a = vec![vec![1.0, 1.0], vec![1.5, 1.0]];
        assert!((max_relative_diff(&a, &b) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn mismatches_and_nan_never_pass() {
        let b = vec![vec![1.0, 2.0]];
        assert_eq!(max_relative_diff(&[vec![1.0]], &b), f64::INFINITY);
        assert_eq!(max_relative_diff(&[], &b), f64::INFINITY);
        assert_eq!(max_relative_diff(&[vec![f32::NAN, 2.0]], &b), f64::INFINITY);
        assert_eq!(
            max_relative_diff(&[vec![1.0, 2.0]], &[vec![1.0, f32::NAN]]),
            f64::INFINITY
        );
        // All-zero reference: the floor keeps it finite and large.
        assert!(max_relative_diff(&[vec![1e-3]], &[vec![0.0]]) > 1.0);
    }

    #[test]
    fn tolerances_grow_with_coarser_dtypes() {
        assert_eq!(agreement_tolerance(DType::F32), 1e-4);
        assert!(agreement_tolerance(DType::F16) < agreement_tolerance(DType::BF16));
    }
}
