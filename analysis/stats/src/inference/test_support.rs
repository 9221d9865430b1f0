//! Test-only fixtures shared by the inference unit tests: the tolerance check, the R and SciPy
//! reference data sets, and deterministic random samples.

use super::rng::Xoshiro256StarStar;

/// Asserts `|got − want| ≤ tol·|want|` (absolute `tol` when `want = 0`).
#[track_caller]
pub(super) fn close(got: f64, want: f64, tol: f64) {
    let scale = if want == 0.0 { 1.0 } else { want.abs() };
    assert!(
        (got - want).abs() <= tol * scale,
        "got {got:.17e}, want {want:.17e} (rel tol {tol:e})"
    );
}

// R `sleep` data.
pub(super) const SLEEP1: [f64; 10] = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
pub(super) const SLEEP2: [f64; 10] = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

// R `PlantGrowth`.
const CTRL: [f64; 10] = [4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14];
const TRT1: [f64; 10] = [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69];
const TRT2: [f64; 10] = [6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26];

// SciPy `f_oneway` documentation example (McDonald et al. 1991 mussel shells).
const TILLAMOOK: [f64; 10] = [
    0.0571, 0.0813, 0.0831, 0.0976, 0.0817, 0.0859, 0.0735, 0.0659, 0.0923, 0.0836,
];
const NEWPORT: [f64; 8] = [
    0.0873, 0.0662, 0.0672, 0.0819, 0.0749, 0.0649, 0.0835, 0.0725,
];
const PETERSBURG: [f64; 7] = [0.0974, 0.1352, 0.0817, 0.1016, 0.0968, 0.1064, 0.105];
const MAGADAN: [f64; 8] = [
    0.1033, 0.0915, 0.0781, 0.0685, 0.0677, 0.0697, 0.0764, 0.0689,
];
const TVARMINNE: [f64; 6] = [0.0703, 0.1026, 0.0956, 0.0973, 0.1039, 0.1045];

pub(super) fn plant() -> [&'static [f64]; 3] {
    [&CTRL, &TRT1, &TRT2]
}

pub(super) fn mussels() -> [&'static [f64]; 5] {
    [&TILLAMOOK, &NEWPORT, &PETERSBURG, &MAGADAN, &TVARMINNE]
}

/// Deterministic test data: `n` values `loc + scale·u` with `u` uniform in [0, 1).
pub(super) fn random_sample(
    rng: &mut Xoshiro256StarStar,
    n: usize,
    loc: f64,
    scale: f64,
) -> Vec<f64> {
    (0..n)
        .map(|_| loc + scale * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect()
}
