//! Statistical inference for comparing benchmark runs.
//!
//! Pure functions only: no formatting, no I/O. Every function validates its input and returns an
//! [`InferenceError`] instead of a meaningless number when the input is degenerate (too few
//! observations, zero variance, non-finite values).
//!
//! What is here:
//!
//! * two-sample *t*-tests: [`welch_t_test`] (unequal variances) and [`student_t_test`] (pooled
//!   variance), with a 95 % confidence interval for the difference of means `a − b`;
//! * standardized effect sizes with normal-approximation 95 % intervals: [`cohens_d`],
//!   [`hedges_g`];
//! * k-sample tests: [`one_way_anova`], [`welch_anova`] (R's `oneway.test`), [`kruskal_wallis`];
//! * multiplicity: [`p_adjust`] (R's `p.adjust` for `"holm"`, `"BH"`, `"none"`) and
//!   [`pairwise_t_pooled`] (R's `pairwise.t.test` default);
//! * seeded, reproducible percentile bootstraps: [`bootstrap_ci_median`],
//!   [`bootstrap_ci_relative_change`];
//! * outlier screening by Tukey fences and robust z-scores: [`outliers`];
//! * two-level data (requests inside executions): [`variance_components`] and [`ratio_test`]
//!   on [`MeanEstimate`]s whose variance keeps its parts;
//! * a decision rule combining significance and practical relevance: [`regression_verdict`].
//!
//! Quantiles are type 7 (the default of R and NumPy), from [`crate::descriptive::quantile_sorted`].
//! Two-sided *p*-values are computed from the distributions' survival functions (`sf`), not as
//! `1 − cdf`, so small *p*-values keep their relative precision.
//!
//! Where it lives (everything public is re-exported here, so callers use
//! `tcobench_stats::inference::X`):
//!
//! * `ttest`: [`TTest`], [`EffectSize`], [`welch_t_test`], [`student_t_test`], [`cohens_d`],
//!   [`hedges_g`];
//! * `ksample`: [`Anova`], [`WelchAnova`], [`KruskalWallis`], [`one_way_anova`],
//!   [`welch_anova`], [`kruskal_wallis`];
//! * `multiplicity`: [`Adjust`], [`p_adjust`], [`pairwise_t_pooled`], [`pairwise_t_pooled_with`];
//! * `bootstrap`: [`Bootstrap`], [`GroupBootstrap`], [`bootstrap_ci_median`], [`bootstrap_group`],
//!   [`relative_change_ci`], [`bootstrap_ci_relative_change`], with the random generators in
//!   `rng`;
//! * `levels`: [`VarianceComponents`], [`variance_components`], [`MeanEstimate`],
//!   [`VarianceTerm`], [`RatioTest`], [`ratio_test`];
//! * `robust`: [`Outliers`], [`outliers`];
//! * `verdict`: [`Verdict`], [`regression_verdict`];
//! * `common`: private helpers shared by the above (input checks, means, distribution tails,
//!   type-7 quantiles);
//! * `test_support` (tests only): fixtures shared by the unit tests;
//! * this file: [`InferenceError`], the error type of every fallible function.

mod bootstrap;
mod common;
mod ksample;
mod levels;
mod multiplicity;
mod rng;
mod robust;
#[cfg(test)]
mod test_support;
mod ttest;
mod verdict;

pub use bootstrap::{
    bootstrap_ci_median, bootstrap_ci_relative_change, bootstrap_group, relative_change_ci,
    Bootstrap, GroupBootstrap,
};
pub use ksample::{kruskal_wallis, one_way_anova, welch_anova, Anova, KruskalWallis, WelchAnova};
pub use levels::{
    ratio_test, variance_components, MeanEstimate, RatioTest, VarianceComponents, VarianceTerm,
};
pub use multiplicity::{p_adjust, pairwise_t_pooled, pairwise_t_pooled_with, Adjust};
pub use robust::{outliers, Outliers};
pub use ttest::{cohens_d, hedges_g, student_t_test, welch_t_test, EffectSize, TTest};
pub use verdict::{regression_verdict, Verdict};

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// A group (0-based index `group`) has fewer observations than the statistic needs.
    #[error("group {group} has too few observations ({n}) for this statistic")]
    TooFewObservations {
        /// Index of the offending group (0 for a one-sample statistic; for two-sample
        /// functions, 0 is `a`/`base` and 1 is `b`/`new`).
        group: usize,
        /// Number of observations the group has.
        n: usize,
    },
    /// Fewer groups than the test needs (at least two).
    #[error("{k} group(s) given; at least 2 are needed")]
    TooFewGroups {
        /// Number of groups given.
        k: usize,
    },
    /// Every group is large enough on its own but the pooled residual degrees of freedom
    /// (total observations minus number of groups) are zero.
    #[error("no residual degrees of freedom ({n} observations in {k} groups)")]
    NoResidualDf {
        /// Total number of observations.
        n: usize,
        /// Number of groups.
        k: usize,
    },
    /// The variance the statistic divides by is zero (e.g. all observations equal).
    #[error("zero variance: the statistic is undefined")]
    ZeroVariance,
    /// An input value (or a derived quantity) is NaN or infinite.
    #[error("non-finite value in input or intermediate result")]
    NonFinite,
    /// The baseline mean is zero, so a relative change is undefined.
    #[error("baseline mean is zero: relative change is undefined")]
    ZeroMean,
    /// An argument outside its valid range (the message names it).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

#[cfg(test)]
mod tests {
    use super::test_support::SLEEP1;
    use super::*;

    #[test]
    fn degenerate_inputs_are_errors() {
        assert_eq!(
            welch_t_test(&[1.0], &[1.0, 2.0]),
            Err(InferenceError::TooFewObservations { group: 0, n: 1 })
        );
        assert_eq!(
            welch_t_test(&[1.0, 2.0], &[]),
            Err(InferenceError::TooFewObservations { group: 1, n: 0 })
        );
        assert_eq!(
            welch_t_test(&[1.0, 1.0], &[2.0, 2.0]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            welch_t_test(&[1.0, f64::NAN], &[2.0, 3.0]),
            Err(InferenceError::NonFinite)
        );
        assert_eq!(
            student_t_test(&[3.0, 3.0], &[3.0]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            cohens_d(&[1.0], &[2.0]),
            Err(InferenceError::TooFewObservations { group: 0, n: 1 })
        );
        assert_eq!(
            one_way_anova(&[&SLEEP1]),
            Err(InferenceError::TooFewGroups { k: 1 })
        );
        assert_eq!(
            one_way_anova(&[&[1.0], &[2.0]]),
            Err(InferenceError::NoResidualDf { n: 2, k: 2 })
        );
        assert_eq!(
            welch_anova(&[&[1.0, 2.0], &[3.0, 3.0]]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            kruskal_wallis(&[&[1.0, 1.0], &[1.0]]),
            Err(InferenceError::ZeroVariance)
        );
        assert_eq!(
            outliers(&[]),
            Err(InferenceError::TooFewObservations { group: 0, n: 0 })
        );
        let cfg = Bootstrap {
            resamples: 0,
            seed: 1,
        };
        assert!(matches!(
            bootstrap_ci_median(&SLEEP1, &cfg),
            Err(InferenceError::InvalidArgument(_))
        ));
        assert_eq!(
            bootstrap_ci_relative_change(&[-1.0, 1.0], &SLEEP1, &Bootstrap::default()),
            Err(InferenceError::ZeroMean)
        );
    }
}
