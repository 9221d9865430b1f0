//! Pure statistics for tcobench: numbers in, numbers out — no I/O, no formatting, no knowledge of
//! run folders, catalogs or reports.
//!
//! * [`descriptive`]: n, mean, sd, type-7 quantiles (the one quantile definition of the project),
//!   median, MAD and the Student-t 95 % CI of the mean.
//! * [`inference`]: Welch and Student t-tests, Cohen's d and Hedges' g, one-way and Welch ANOVA,
//!   Kruskal–Wallis, Holm/BH adjustment, seeded percentile bootstraps, outlier screening and the
//!   regression verdict; checked against R and SciPy.
//! * [`groups`]: k named groups of one metric assembled into every statistic above (the shape of
//!   `tcobench stats --json`, reused by run analysis and `compare`).
//!
//! It depends on nothing of tcobench; every other analysis crate depends on it.

pub mod descriptive;
pub mod groups;
pub mod inference;
