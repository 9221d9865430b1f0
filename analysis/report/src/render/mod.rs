//! Report rendering with minijinja: `report.md` and a single self-contained `report.html`.
//!
//! The default templates live in `report-templates/` and are embedded at compile time; a
//! directory passed to [`render`] can override them. The HTML template is rendered with HTML
//! auto-escaping switched on explicitly, so every user-provided string (scenario, model, error
//! messages, host names…) is escaped; the only values marked safe are the inline SVG plots, whose
//! text plotters has already XML-escaped (see [`crate::plots`]). The Markdown template escapes
//! table-breaking characters with the `md` filter.
//!
//! The HTML report carries an interactive TCO calculator: the script
//! `report-templates/tco-calculator.js` ([`TCO_CALCULATOR_JS`], whose formulas mirror
//! [`tcobench_cost::formulas`] one for one) and its data, the measured means and catalog offers
//! of each cell as JSON in `<script type="application/json" id="tco-data">`, written by
//! [`script_safe_json`] so no `</script>` or `<!--` can occur in it. The page's
//! Content-Security-Policy ([`content_security_policy`]) lets nothing load and only that script,
//! by its hash, run.
//!
//! Filters available to templates:
//!
//! | filter | input | output |
//! |---|---|---|
//! | `num(sig=3)` | number, none, undefined | `sig` significant digits, `—` when missing |
//! | `mean_ci` | a descriptives map or undefined | `mean [lo, hi]`, precision from the CI width |
//! | `stat(name)` | a descriptives map or undefined | one field (`p50`, `p99`, `sd`…) via `num` |
//! | `mib` | bytes | mebibytes, 3 significant digits |
//! | `md` | string | Markdown-safe text (`\|`, `<`, `>`, `*`, `_`… escaped, newlines flattened) |
//! | `code` | string | text for an inline code span (backticks replaced, `\|` escaped) |
//! | `shell_join` | list of strings | a copy-pasteable POSIX shell command line |
//!
//! What is where:
//!
//! * `templates`: the template names, the built-in templates and the environment
//!   ([`environment`]): syntax, explicit auto-escaping, overrides from a directory.
//! * `filters`: the filters above, `prose`, `prose_html` and `fig`, and [`fmt_mean_ci`] behind
//!   `mean_ci` and `fig`.
//! * `prose`: escaping and quoting of the templates' text: [`md_escape`], [`md_prose`],
//!   [`html_prose`], [`md_code`], [`shell_quote`].
//! * `cells`: the view of each cell (label, outcome, energy basis, agreement verdict in words)
//!   and the run's protocol.
//! * `comparisons`: the in-run comparisons' pairs and omnibus tests in words.
//! * `costing`: the price, energy and gap tables, [`missing_recommendations`] and
//!   [`idle_power_label`].
//! * `validity`: [`validity_warnings`], one source per topic.
//! * `tco`: the TCO calculator's data and script ([`TCO_CALCULATOR_JS`]), [`script_safe_json`]
//!   and [`content_security_policy`].
//! * `output`: [`ReportFormat`], [`render`], [`render_formats`], [`write_formats`] and
//!   [`write_formats_to`].

mod cells;
mod comparisons;
mod costing;
mod filters;
mod output;
mod prose;
mod tco;
mod templates;
#[cfg(test)]
mod testutil;
mod validity;

pub use costing::{idle_power_label, missing_recommendations, MissingRecommendation};
pub use filters::fmt_mean_ci;
pub use output::{render, render_formats, write_formats, write_formats_to, Rendered, ReportFormat};
pub use prose::{html_prose, md_code, md_escape, md_prose, shell_quote};
pub use tco::{content_security_policy, script_safe_json, TCO_CALCULATOR_JS};
pub use templates::{
    environment, DEFAULT_HTML_TEMPLATE, DEFAULT_MD_TEMPLATE, HTML_TEMPLATE, MD_TEMPLATE,
};
pub use validity::{validity_warnings, ValidityWarning, FEW_REQUESTS};

/// What the reports show for a value that is missing.
const MISSING: &str = "—";
