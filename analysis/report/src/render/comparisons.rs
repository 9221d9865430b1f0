//! The in-run comparisons as the templates show them: per comparison set and metric, each pair's
//! difference, tests and effect size with a verdict in words, and the omnibus tests.

use serde::Serialize;
use tcobench_analysis::RunStats;
use tcobench_results::{fmt_sig, Metric};

use super::MISSING;

/// One pair of a comparison set, with its verdict in words.
#[derive(Serialize)]
struct PairView {
    a: String,
    b: String,
    diff_ci: String,
    welch_p: String,
    p_holm: String,
    hedges_g: String,
    sentence: String,
}

/// One metric of one comparison set.
#[derive(Serialize)]
pub(super) struct ComparisonView {
    title: String,
    metric: String,
    unit: String,
    pairs: Vec<PairView>,
    omnibus: Option<String>,
}

/// Significance level of the verdicts in words.
const ALPHA: f64 = 0.05;

/// Pair `p` of the analysis `a`: its difference, tests and effect size (as b − a) and verdict.
fn pair_view(
    p: &tcobench_stats::groups::PairwiseComparison,
    a: &tcobench_stats::groups::GroupAnalysis,
) -> PairView {
    let mean_of = |name: &str| a.groups.iter().find(|g| g.name == name).map(|g| g.mean);
    let w = p.welch.as_ref();
    let sentence = match (w, mean_of(&p.a), mean_of(&p.b)) {
        (Some(w), Some(ma), Some(mb)) if ma != 0.0 => {
            let rel = (mb - ma) / ma * 100.0;
            let dir = if rel >= 0.0 { "higher" } else { "lower" };
            let sig = if w.p_holm < ALPHA {
                "significant"
            } else {
                "not significant"
            };
            format!(
                "{} is {} % {dir} than {}: {sig} at α = {ALPHA} after Holm",
                p.b,
                fmt_sig(rel.abs(), 3),
                p.a
            )
        }
        _ => p.note.clone().unwrap_or_else(|| "test undefined".into()),
    };
    let ci = |v: f64, [lo, hi]: [f64; 2]| {
        format!("{} [{}, {}]", fmt_sig(v, 3), fmt_sig(lo, 3), fmt_sig(hi, 3))
    };
    PairView {
        a: p.a.clone(),
        b: p.b.clone(),
        // The CI is of a − b; the table shows b − a, which reads as "change from a to b".
        diff_ci: w.map_or(MISSING.into(), |w| {
            ci(
                -(w.ci95_diff[0] + w.ci95_diff[1]) / 2.0,
                [-w.ci95_diff[1], -w.ci95_diff[0]],
            )
        }),
        welch_p: w.map_or(MISSING.into(), |w| fmt_sig(w.p, 3)),
        p_holm: w.map_or(MISSING.into(), |w| fmt_sig(w.p_holm, 3)),
        // Effect sizes are computed as a − b; shown as b − a like the difference.
        hedges_g: match (p.hedges_g, p.hedges_g_ci95) {
            (Some(g), Some([lo, hi])) => ci(-g, [-hi, -lo]),
            _ => MISSING.into(),
        },
        sentence,
    }
}

/// The omnibus tests of `a` in words, for three groups or more.
fn omnibus(a: &tcobench_stats::groups::GroupAnalysis) -> Option<String> {
    if a.groups.len() < 3 {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(an) = &a.anova {
        parts.push(format!(
            "ANOVA F({}, {}) = {}, p = {}",
            an.df_between,
            an.df_within,
            fmt_sig(an.f, 4),
            fmt_sig(an.p, 3)
        ));
    }
    if let Some(w) = &a.welch_anova {
        parts.push(format!(
            "Welch F({}, {}) = {}, p = {}",
            fmt_sig(w.df1, 3),
            fmt_sig(w.df2, 4),
            fmt_sig(w.f, 4),
            fmt_sig(w.p, 3)
        ));
    }
    if let Some(k) = &a.kruskal_wallis {
        parts.push(format!(
            "Kruskal–Wallis H({}) = {}, p = {}",
            k.df,
            fmt_sig(k.h, 4),
            fmt_sig(k.p, 3)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Every comparison set of `stats`, one view per metric it analyses, in [`Metric::ALL`] order.
pub(super) fn comparison_views(stats: &RunStats) -> Vec<ComparisonView> {
    let mut out = Vec::new();
    for set in &stats.comparisons {
        let fixed: Vec<String> = set.fixed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        for metric in Metric::ALL {
            let Some(a) = set.metrics.get(metric.name()) else {
                continue;
            };
            out.push(ComparisonView {
                title: format!("Only the {} differs ({})", set.varies, fixed.join(", ")),
                metric: metric.name().into(),
                unit: metric.unit().into(),
                pairs: a.pairwise.iter().map(|p| pair_view(p, a)).collect(),
                omnibus: omnibus(a),
            });
        }
    }
    out
}
