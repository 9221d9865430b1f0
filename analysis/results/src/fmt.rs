//! How numbers are written wherever tcobench writes text: one rule for significant digits.

/// Formats `x` with `sig` significant digits, in fixed notation for 1e-4 ≤ |x| < 1e6 (integers
/// beyond the significant digits are not rounded away), scientific otherwise.
pub fn fmt_sig(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let ax = x.abs();
    if !(1e-4..1e6).contains(&ax) {
        return format!("{:.*e}", sig.saturating_sub(1), x);
    }
    let magnitude = ax.log10().floor() as i64;
    let decimals = (sig as i64 - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    // A value such as 9.996 rounding up to 10.00 keeps one decimal too many; harmless.
    if s == "-0" || s.starts_with("-0.") && s.trim_start_matches("-0.").chars().all(|c| c == '0') {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_sig_examples() {
        assert_eq!(fmt_sig(123.456, 3), "123");
        assert_eq!(fmt_sig(12.3456, 3), "12.3");
        assert_eq!(fmt_sig(0.0123456, 3), "0.0123");
        assert_eq!(fmt_sig(12345.6, 3), "12346");
        assert_eq!(fmt_sig(0.0, 3), "0");
        assert_eq!(fmt_sig(-1.5, 3), "-1.50");
        assert_eq!(fmt_sig(1.0e-7, 3), "1.00e-7");
        assert_eq!(fmt_sig(f64::NAN, 3), "NaN");
    }
}
