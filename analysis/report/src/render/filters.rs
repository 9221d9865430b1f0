//! The template filters (the table in the module doc of [`crate::render`]) and
//! [`fmt_mean_ci`], which formats a mean with its CI for `mean_ci` and `fig`.

use minijinja::{Environment, Value};
use tcobench_results::fmt_sig;

use super::prose::{html_prose, md_code, md_escape, md_prose, shell_quote};
use super::MISSING;

/// Adds every filter to `env`.
pub(super) fn add_filters(env: &mut Environment<'static>) {
    env.add_filter("num", filter_num);
    env.add_filter("mean_ci", filter_mean_ci);
    env.add_filter("stat", filter_stat);
    env.add_filter("mib", filter_mib);
    env.add_filter("md", filter_md);
    env.add_filter("prose_html", filter_prose_html);
    env.add_filter("prose", filter_prose);
    env.add_filter("code", filter_code);
    env.add_filter("shell_join", filter_shell_join);
    env.add_filter("fig", filter_fig);
}

/// `v` as a number, when it is one.
fn value_f64(v: &Value) -> Option<f64> {
    if v.is_number() {
        f64::try_from(v.clone()).ok()
    } else {
        None
    }
}

/// `num` filter: a number with `sig` significant digits (default 3); `—` for none/undefined.
fn filter_num(v: Value, sig: Option<usize>) -> String {
    match value_f64(&v) {
        Some(x) => fmt_sig(x, sig.unwrap_or(3).clamp(1, 12)),
        None if v.is_none() || v.is_undefined() => MISSING.to_string(),
        None => v.to_string(),
    }
}

/// Decimals needed to show `x` with `sig` significant digits in fixed notation.
fn decimals_for(x: f64, sig: i64) -> i64 {
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    (sig - 1 - x.abs().log10().floor() as i64).max(0)
}

/// The flag of a one-sided interval ([`fmt_mean_ci`]).
const ONE_SIDED: &str = "too few samples for a two-sided interval";

/// Formats a mean with its CI: the precision shows the mean to at least 3 significant digits
/// and the CI half-width to 2.
///
/// Every figure this formats (latency, throughput, energy, cost) cannot be negative: an interval
/// whose lower bound is negative around a non-negative mean — a t interval from too few samples
/// — is shown one-sided, `mean [≤ hi; too few samples for a two-sided interval]`, never with a
/// negative bound (`stats.json` keeps the raw t bounds).
pub fn fmt_mean_ci(mean: f64, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo < 0.0 && mean >= 0.0 => {
            let d = decimals_for(mean, 3).min(9) as usize;
            if (1e-4..1e6).contains(&mean.abs()) || mean == 0.0 {
                format!("{mean:.d$} [≤ {hi:.d$}; {ONE_SIDED}]")
            } else {
                format!("{} [≤ {}; {ONE_SIDED}]", fmt_sig(mean, 3), fmt_sig(hi, 3))
            }
        }
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() => {
            let half = (hi - lo) / 2.0;
            let d = if half > 0.0 {
                decimals_for(mean, 3).max(decimals_for(half, 2)).min(9)
            } else {
                decimals_for(mean, 3).min(9)
            } as usize;
            if (1e-4..1e6).contains(&mean.abs()) || mean == 0.0 {
                format!("{mean:.d$} [{lo:.d$}, {hi:.d$}]")
            } else {
                format!(
                    "{} [{}, {}]",
                    fmt_sig(mean, 3),
                    fmt_sig(lo, 3),
                    fmt_sig(hi, 3)
                )
            }
        }
        _ => fmt_sig(mean, 3),
    }
}

/// `mean_ci` filter.
fn filter_mean_ci(d: Value) -> Result<String, minijinja::Error> {
    if d.is_undefined() || d.is_none() {
        return Ok(MISSING.to_string());
    }
    let Some(mean) = value_f64(&d.get_attr("mean")?) else {
        return Ok(MISSING.to_string());
    };
    let ci = d.get_attr("ci95_mean")?;
    let ci = match (ci.get_item_by_index(0), ci.get_item_by_index(1)) {
        (Ok(lo), Ok(hi)) => value_f64(&lo).zip(value_f64(&hi)).map(|(a, b)| [a, b]),
        _ => None,
    };
    Ok(fmt_mean_ci(mean, ci))
}

/// `fig` filter: a costing figure (`{value, ci95}`) as `value [lo, hi]`; `—` for none.
fn filter_fig(f: Value) -> Result<String, minijinja::Error> {
    if f.is_undefined() || f.is_none() {
        return Ok(MISSING.to_string());
    }
    let Some(value) = value_f64(&f.get_attr("value")?) else {
        return Ok(MISSING.to_string());
    };
    let ci = f.get_attr("ci95")?;
    let ci = match (ci.get_item_by_index(0), ci.get_item_by_index(1)) {
        (Ok(lo), Ok(hi)) => value_f64(&lo).zip(value_f64(&hi)).map(|(a, b)| [a, b]),
        _ => None,
    };
    Ok(fmt_mean_ci(value, ci))
}

/// `stat` filter: one field of a descriptives map.
fn filter_stat(d: Value, field: String, sig: Option<usize>) -> Result<String, minijinja::Error> {
    if d.is_undefined() || d.is_none() {
        return Ok(MISSING.to_string());
    }
    Ok(filter_num(d.get_attr(&field)?, sig))
}

/// `mib` filter: bytes as MiB.
fn filter_mib(v: Value) -> String {
    match value_f64(&v) {
        Some(b) => fmt_sig(b / (1024.0 * 1024.0), 3),
        None => MISSING.to_string(),
    }
}

/// `code` filter: [`md_code`]; `—` for none/undefined.
fn filter_code(v: Value) -> String {
    match v.as_str() {
        Some(s) => md_code(s),
        None if v.is_none() || v.is_undefined() => MISSING.to_string(),
        None => md_code(&v.to_string()),
    }
}

/// `md` filter: [`md_escape`]; `—` for none/undefined.
fn filter_md(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return MISSING.to_string();
    }
    match v.as_str() {
        Some(s) => md_escape(s),
        None => md_escape(&v.to_string()),
    }
}

/// `prose_html` filter: [`html_prose`], marked safe; `—` for none/undefined.
fn filter_prose_html(v: Value) -> Value {
    if v.is_none() || v.is_undefined() {
        return Value::from(MISSING);
    }
    let text = match v.as_str() {
        Some(s) => html_prose(s),
        None => html_prose(&v.to_string()),
    };
    // Safe: `html_prose` escapes every character of its input (tested).
    Value::from_safe_string(text)
}

/// `prose` filter: [`md_prose`]; `—` for none/undefined.
fn filter_prose(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return MISSING.to_string();
    }
    match v.as_str() {
        Some(s) => md_prose(s),
        None => md_prose(&v.to_string()),
    }
}

/// `shell_join` filter: each item through [`shell_quote`], joined by spaces.
fn filter_shell_join(v: Value) -> Result<String, minijinja::Error> {
    let mut parts = Vec::new();
    for item in v.try_iter()? {
        parts.push(shell_quote(
            &item
                .as_str()
                .map_or_else(|| item.to_string(), str::to_owned),
        ));
    }
    Ok(parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(filter_num(Value::from(1234.5678), None), "1235");
        assert_eq!(filter_num(Value::from(0.012345), Some(2)), "0.012");
        assert_eq!(filter_num(Value::from(()), None), MISSING);
        assert_eq!(filter_num(Value::UNDEFINED, None), MISSING);
        assert_eq!(fmt_mean_ci(115.0, Some([99.57, 130.43])), "115 [100, 130]");
        assert_eq!(
            fmt_mean_ci(4.86, Some([4.651562, 5.068438])),
            "4.86 [4.65, 5.07]"
        );
        assert_eq!(fmt_mean_ci(50.0, Some([50.0, 50.0])), "50.0 [50.0, 50.0]");
        assert_eq!(fmt_mean_ci(50.0, None), "50.0");
        // A non-negative figure never gets a negative bound: one-sided, flagged.
        assert_eq!(
            fmt_mean_ci(1320.0, Some([-1969.2, 4609.4])),
            "1320 [≤ 4609; too few samples for a two-sided interval]"
        );
        let small = fmt_mean_ci(0.5, Some([-0.1, 1.1]));
        assert!(
            small.starts_with("0.500 [≤ 1.100;") && !small.contains("-0"),
            "{small}"
        );
        // A figure that may be negative keeps its interval.
        assert_eq!(fmt_mean_ci(-5.0, Some([-7.0, 3.0])), "-5.00 [-7.00, 3.00]");
        assert_eq!(md_escape("a|b\n<c>"), "a\\|b &lt;c&gt;");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("run"), "run");
        assert_eq!(filter_mib(Value::from(3u64 << 20)), "3.00");
    }
}
