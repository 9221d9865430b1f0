//! The reports as files: the formats ([`ReportFormat`]), rendering them from a run's statistics
//! and plots ([`render`], [`render_formats`]) and writing them, with the plots the Markdown links,
//! into a folder ([`write_formats`], [`write_formats_to`]).

use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{context, Value};
use tcobench_analysis::RunStats;
use tcobench_results::schema::Manifest;

use super::cells::{cell_views, levels, protocol};
use super::comparisons::comparison_views;
use super::costing::costing_view;
use super::tco::tco_context;
use super::templates::{environment, template_err, HTML_TEMPLATE, MD_TEMPLATE};
use super::validity::validity_warnings;
use crate::plots::Plot;
use crate::ReportError;

/// The rendered reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `report.md` contents.
    pub markdown: String,
    /// `report.html` contents.
    pub html: String,
}

/// A report format `tcobench report --format` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportFormat {
    /// `report.md` (and the plots it links, `plots/*.svg`).
    Markdown,
    /// `report.html`, self-contained.
    Html,
}

impl ReportFormat {
    /// Both formats.
    pub const ALL: [ReportFormat; 2] = [ReportFormat::Markdown, ReportFormat::Html];

    /// The name on the command line: `md` or `html`.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
        }
    }

    /// Parses `md` / `markdown` or `html`.
    pub fn parse(s: &str) -> Option<ReportFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(ReportFormat::Markdown),
            "html" => Some(ReportFormat::Html),
            _ => None,
        }
    }

    /// The template that renders it.
    pub fn template(self) -> &'static str {
        match self {
            ReportFormat::Markdown => MD_TEMPLATE,
            ReportFormat::Html => HTML_TEMPLATE,
        }
    }

    /// The file it is written to, inside the run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ReportFormat::Markdown => tcobench_results::schema::files::REPORT_MD,
            ReportFormat::Html => tcobench_results::schema::files::REPORT_HTML,
        }
    }
}

/// Renders both reports. `plots` are inlined in the HTML and linked (`plots/<name>.svg`) from the
/// Markdown.
pub fn render(
    stats: &RunStats,
    manifest: &Manifest,
    plots: &[Plot],
    templates: Option<&Path>,
) -> Result<Rendered, ReportError> {
    let mut out = render_formats(stats, manifest, plots, templates, &ReportFormat::ALL)?;
    let html = out.pop().map(|(_, s)| s).unwrap_or_default();
    let markdown = out.pop().map(|(_, s)| s).unwrap_or_default();
    Ok(Rendered { markdown, html })
}

/// Renders the reports in `formats` (in that order), each with its template.
pub fn render_formats(
    stats: &RunStats,
    manifest: &Manifest,
    plots: &[Plot],
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<(ReportFormat, String)>, ReportError> {
    let env = environment(templates)?;
    let ctx = report_context(stats, manifest, plots)?;
    let render_one = |name: &str| -> Result<String, ReportError> {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(template_err(name))
    };
    formats
        .iter()
        .map(|&f| Ok((f, render_one(f.template())?)))
        .collect()
}

/// What the templates see: the run's statistics and manifest, the views of its cells,
/// comparisons, costing and calculator, its validity warnings and `plots`.
fn report_context(
    stats: &RunStats,
    manifest: &Manifest,
    plots: &[Plot],
) -> Result<Value, ReportError> {
    let cells = cell_views(stats, manifest);
    let protocol = protocol(manifest);
    Ok(context! {
        stats => Value::from(Serde(stats)),
        manifest => Value::from(Serde(manifest)),
        cells => Value::from(Serde(&cells)),
        headline => stats.headline(),
        counts => Value::from(Serde(stats.counts())),
        protocol => Value::from(Serde(&protocol)),
        levels => Value::from(Serde(&levels(stats))),
        estimated => manifest.power.basis == "estimated",
        metrics => Value::from(Serde(&stats.metrics)),
        plots => plot_values(plots),
        comparisons => Value::from(Serde(&comparison_views(stats))),
        costing => Value::from(Serde(&costing_view(stats, manifest))),
        tco => tco_context(stats)?,
        validity => Value::from(Serde(&validity_warnings(stats, manifest))),
    })
}

/// The plots as the templates see them: name, title, file under the run folder and inline SVG.
fn plot_values(plots: &[Plot]) -> Vec<Value> {
    plots
        .iter()
        .map(|p| {
            context! {
                name => p.name,
                title => p.title.clone(),
                file => format!("{}/{}.svg", tcobench_results::schema::files::PLOTS, p.name),
                // Safe: plotters XML-escapes all text and attribute values (tested).
                svg => Value::from_safe_string(p.inline_svg()),
            }
        })
        .collect()
}

/// Writes the reports in `formats` into `run_dir`, each atomically; with Markdown, also the
/// plots it links (`plots/<name>.svg`, a stale plot from an earlier render removed). Returns the
/// paths written, reports first. Raw requests and power samples are re-read from `run_dir`.
pub fn write_formats(
    run_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<PathBuf>, ReportError> {
    write_formats_to(run_dir, run_dir, stats, templates, formats)
}

/// [`write_formats`] reading the run folder `run_dir` and writing the report files (and, for
/// Markdown, `plots/*.svg`) into `out_dir` instead — for a report that is not the run's own,
/// such as one re-priced with other sections, which must not replace the report that agrees
/// with the folder's `stats.json`. `out_dir` must exist.
pub fn write_formats_to(
    run_dir: &Path,
    out_dir: &Path,
    stats: &RunStats,
    templates: Option<&Path>,
    formats: &[ReportFormat],
) -> Result<Vec<PathBuf>, ReportError> {
    use tcobench_results::schema::files;
    let manifest = tcobench_analysis::read_run_manifest(run_dir)?;
    let requests =
        tcobench_results::load::load_requests(&run_dir.join(files::REQUESTS), &manifest)?;
    // One entry per configuration (its executions pooled) beside the cells of `stats`; the
    // manifest keeps every execution's record, for the windows of the power plot.
    let requests = tcobench_results::replicates::configuration_view(&manifest, &requests).requests;
    let power = tcobench_results::load::load_power(&run_dir.join(files::POWER))?;
    let stats = &stats.at_execution_level();
    let plots = crate::plots::render_run(
        run_dir,
        &interval_floors_at_zero(stats),
        &manifest,
        &requests,
        &power,
    )?;
    let rendered = render_formats(stats, &manifest, &plots, templates, formats)?;
    let mut written = Vec::new();
    for (format, text) in &rendered {
        let path = out_dir.join(format.file_name());
        tcobench_results::io::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    if formats.contains(&ReportFormat::Markdown) {
        write_plots(out_dir, &plots, &mut written)?;
    }
    Ok(written)
}

/// `stats` for the plots: no metric of a cell can be negative, so an interval reaching below
/// zero (a t interval from too few samples; the tables show it one-sided) is drawn from zero, and
/// no axis gets a negative range for it.
fn interval_floors_at_zero(stats: &RunStats) -> RunStats {
    let mut out = stats.clone();
    for cell in &mut out.cells {
        for d in cell.metrics.values_mut() {
            if let Some([lo, _]) = d.ci95_mean.as_mut() {
                if *lo < 0.0 && d.mean >= 0.0 {
                    *lo = 0.0;
                }
            }
        }
    }
    out
}

/// Writes `plots` into `out_dir`'s `plots/` folder as `<name>.svg`, each atomically, and removes
/// the file of every other name in [`PLOT_NAMES`](crate::plots::PLOT_NAMES) (a stale plot of an
/// earlier render); adds each path written to `written`.
fn write_plots(
    out_dir: &Path,
    plots: &[Plot],
    written: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    use tcobench_results::schema::files;
    let plot_dir = out_dir.join(files::PLOTS);
    std::fs::create_dir_all(&plot_dir).map_err(|source| ReportError::Io {
        path: plot_dir.clone(),
        source,
    })?;
    for name in crate::plots::PLOT_NAMES {
        let path = plot_dir.join(format!("{name}.svg"));
        match plots.iter().find(|p| p.name == name) {
            Some(p) => {
                tcobench_results::io::write_atomic(&path, p.svg.as_bytes())?;
                written.push(path);
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ReportError::Io { path, source }),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::{render_run, tco_blob};
    use crate::render::{content_security_policy, TCO_CALCULATOR_JS};
    use tcobench_analysis::analyze;
    use tcobench_results::schema::files;
    use tcobench_results::testutil::{write_run, NASTY};

    #[test]
    fn reports_contain_every_cell_and_no_external_resources() {
        let (dir, md, html) = render_run("smoke", "tiny-model");
        for id in ["aaaa", "bbbb", "cccc"] {
            assert!(md.contains(id), "md lacks {id}");
            assert!(html.contains(id), "html lacks {id}");
        }
        for bad in ["http://", "https://", "<link", "@import", "src="] {
            assert!(!html.contains(bad), "html contains {bad}");
        }
        assert_only_calculator_scripts(&html);
        assert!(html.contains("<svg"), "plots are inlined");
        assert!(html.contains("<style>"));
        assert!(html.contains("estimated"));
        assert!(md.contains("plots/throughput.svg"));
        // warm-up excluded: n = 4 for the ok cells.
        assert!(md.contains("| 4 |"), "{md}");
        assert!(md.contains("not run") || md.contains("cccc"));
        for p in ["throughput", "latency", "power"] {
            let svg =
                std::fs::read_to_string(dir.path().join("plots").join(format!("{p}.svg"))).unwrap();
            assert!(svg.starts_with("<svg"));
        }
        // Units in the headers.
        for unit in ["(ms)", "(tokens/s)", "(J/token)", "(MiB)"] {
            assert!(md.contains(unit) && html.contains(unit), "{unit}");
        }
    }

    #[test]
    fn user_strings_are_escaped_everywhere_in_html() {
        let (dir, md, html) = render_run(NASTY, &format!("org/{NASTY}"));
        assert_only_calculator_scripts(&html);
        // The calculator's data carries the strings, escaped for a script element.
        let data = tco_blob(&html);
        assert!(!data.contains('<') && !data.contains('>') && !data.contains('&'));
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert!(parsed["cells"][0]["label"]
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script> \"q\" 'a' & co"));
        assert!(!html.contains("alert(1)</"), "unescaped closing tag");
        assert!(
            !html.contains("\"q\""),
            "unescaped double quotes from user data"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "SVG text escaped"
        );
        assert!(!md.contains("<script"), "raw script tag in Markdown");
        for p in ["throughput", "latency"] {
            let svg =
                std::fs::read_to_string(dir.path().join("plots").join(format!("{p}.svg"))).unwrap();
            assert!(!svg.contains("<script"), "{p}.svg");
            assert!(
                svg.contains("&lt;script&gt;"),
                "{p}.svg keeps the text, escaped"
            );
        }
    }

    /// The only `<script` elements are the calculator's data block and its code, verbatim.
    fn assert_only_calculator_scripts(html: &str) {
        assert_eq!(html.matches("<script").count(), 2, "script elements");
        assert_eq!(html.matches("</script").count(), 2, "script ends");
        assert_eq!(
            html.matches("<script type=\"application/json\" id=\"tco-data\">")
                .count(),
            1
        );
        assert!(html.contains(&format!("<script>{TCO_CALCULATOR_JS}</script>")));
        // The policy as the template writes it: an attribute value, HTML-escaped.
        let csp = environment(None)
            .unwrap()
            .render_named_str(
                "x.html.j2",
                "{{ v }}",
                context! { v => content_security_policy() },
            )
            .unwrap();
        assert!(html.contains(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
        )));
    }

    #[test]
    fn formats_render_alone() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), "smoke", "m");
        let stats = analyze(dir.path()).unwrap();
        let written = write_formats(dir.path(), &stats, None, &[ReportFormat::Html]).unwrap();
        assert_eq!(written, vec![dir.path().join(files::REPORT_HTML)]);
        assert!(!dir.path().join(files::REPORT_MD).exists());
        assert!(!dir.path().join(files::PLOTS).exists());
        let written = write_formats(dir.path(), &stats, None, &[ReportFormat::Markdown]).unwrap();
        assert_eq!(written[0], dir.path().join(files::REPORT_MD));
        assert!(dir
            .path()
            .join(files::PLOTS)
            .join("throughput.svg")
            .is_file());
        assert_eq!(ReportFormat::parse(" HTML "), Some(ReportFormat::Html));
        assert_eq!(
            ReportFormat::parse("markdown"),
            Some(ReportFormat::Markdown)
        );
        assert_eq!(ReportFormat::parse("pdf"), None);
    }
}
