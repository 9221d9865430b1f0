//! The text of axis labels: labels cleaned of what XML forbids ([`sanitize_label`]), per-cell
//! labels showing what varies between cells ([`short_labels`]) or only `#index`, the label at a
//! category position and numeric tick labels.

use tcobench_results::CellStats;

/// Replaces characters XML 1.0 does not allow (control characters) and truncates to `max` chars.
pub fn sanitize_label(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > max {
        let mut t: String = clean.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        clean
    }
}

/// The last path component of `model` (`org/name` → `name`), or `model` when it has none.
fn last_component(model: &str) -> &str {
    model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(model)
}

/// Short axis labels for `cells`: `#index` followed by the configuration fields that differ
/// between them (model shown by its last path component).
pub fn short_labels(cells: &[&CellStats]) -> Vec<String> {
    type Field = fn(&CellStats) -> String;
    let fields: [Field; 7] = [
        |c| c.config.backend.clone(),
        |c| last_component(&c.config.model).to_string(),
        |c| c.config.device.clone(),
        |c| c.config.dtype.clone(),
        |c| format!("b{}", c.config.batch_size),
        |c| format!("p{}", c.config.prompt_tokens),
        |c| format!("n{}", c.config.new_tokens),
    ];
    let varying: Vec<&Field> = fields
        .iter()
        .filter(|f| cells.iter().any(|c| f(c) != f(cells[0])))
        .collect();
    cells
        .iter()
        .map(|c| {
            let mut parts = vec![format!("#{}", c.index)];
            parts.extend(varying.iter().map(|f| f(c)));
            sanitize_label(&parts.join(" "), 28)
        })
        .collect()
}

/// `#index` of each of `cells`: their labels on a category axis too narrow for [`short_labels`]
/// (the key under the chart, [`key_lines`](super::key::key_lines), and the report's tables name
/// every cell by it).
pub(super) fn index_labels(cells: &[&CellStats]) -> Vec<String> {
    cells.iter().map(|c| format!("#{}", c.index)).collect()
}

/// `labels[x]` where `x` is a category position (an integer in range), else nothing.
pub(super) fn label_at(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

/// Tick label: 4 significant digits, trailing zeros removed (`50`, `0.5`, `1.25`).
pub(super) fn fmt_tick(v: f64) -> String {
    let s = tcobench_results::fmt_sig(v, 4);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::testutil::stats_for;
    use tcobench_results::testutil::manifest;

    #[test]
    fn short_labels_show_what_varies() {
        let m = manifest("r", "s", "org/model");
        let (stats, _) = stats_for(&[], &m);
        let cells: Vec<&CellStats> = stats.cells.iter().collect();
        assert_eq!(short_labels(&cells), ["#0 b2", "#1 b4", "#2 b1"]);
        assert_eq!(short_labels(&cells[..1]), ["#0"]);
        assert_eq!(index_labels(&cells), ["#0", "#1", "#2"]);
        assert_eq!(sanitize_label("a\u{1}b", 10), "a b");
        assert_eq!(sanitize_label("abcdef", 4), "abc…");
        assert_eq!(fmt_tick(50.0), "50");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(1.25), "1.25");
        assert_eq!(fmt_tick(1500.0), "1500");
        assert_eq!(fmt_tick(0.0), "0");
    }
}
