//! The report templates and the minijinja environment that renders them: the template names,
//! the built-in templates embedded at compile time, overrides read from a directory, the syntax,
//! explicit auto-escaping and semi-strict undefined handling.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::ReportError;

/// Template name of the Markdown report.
pub const MD_TEMPLATE: &str = "report.md.j2";
/// Template name of the HTML report.
pub const HTML_TEMPLATE: &str = "report.html.j2";
/// Built-in Markdown template.
pub const DEFAULT_MD_TEMPLATE: &str = include_str!("../../../../report-templates/report.md.j2");
/// Built-in HTML template.
pub const DEFAULT_HTML_TEMPLATE: &str = include_str!("../../../../report-templates/report.html.j2");

/// A minijinja error as a [`ReportError::Template`] naming template `name`.
pub(super) fn template_err(name: &str) -> impl Fn(minijinja::Error) -> ReportError + '_ {
    move |source| ReportError::Template {
        name: name.to_string(),
        source,
    }
}

/// Builds the template environment: built-in templates, overrides from `templates`, filters,
/// explicit auto-escaping (HTML for `*.html.j2`, none otherwise), semi-strict undefined handling.
pub fn environment(templates: Option<&Path>) -> Result<Environment<'static>, ReportError> {
    let mut env = Environment::new();
    env.set_syntax(syntax()?);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(auto_escape);
    super::filters::add_filters(&mut env);
    let loaded = match templates {
        Some(dir) => add_overrides(&mut env, dir)?,
        None => BTreeSet::new(),
    };
    add_builtins(&mut env, &loaded)?;
    Ok(env)
}

/// The template syntax: block tags trimmed and left-stripped, the trailing newline kept.
fn syntax() -> Result<SyntaxConfig, ReportError> {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(template_err("syntax"))
}

/// The auto-escaping of template `name`: HTML for an `.html`, `.htm` or `.svg` name (with or
/// without `.j2` after it), none otherwise.
fn auto_escape(name: &str) -> AutoEscape {
    let stem = name.strip_suffix(".j2").unwrap_or(name);
    if stem.ends_with(".html") || stem.ends_with(".htm") || stem.ends_with(".svg") {
        AutoEscape::Html
    } else {
        AutoEscape::None
    }
}

/// Adds every `*.j2` file of `dir` as a template of its file name; returns the names added.
fn add_overrides(
    env: &mut Environment<'static>,
    dir: &Path,
) -> Result<BTreeSet<String>, ReportError> {
    let mut loaded = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".j2") || !entry.path().is_file() {
            continue;
        }
        let source = std::fs::read_to_string(entry.path()).map_err(|source| ReportError::Io {
            path: entry.path(),
            source,
        })?;
        env.add_template_owned(name.clone(), source)
            .map_err(template_err(&name))?;
        loaded.insert(name);
    }
    Ok(loaded)
}

/// Adds the built-in templates whose names are not in `loaded` (not overridden).
fn add_builtins(
    env: &mut Environment<'static>,
    loaded: &BTreeSet<String>,
) -> Result<(), ReportError> {
    for (name, source) in [
        (MD_TEMPLATE, DEFAULT_MD_TEMPLATE),
        (HTML_TEMPLATE, DEFAULT_HTML_TEMPLATE),
    ] {
        if !loaded.contains(name) {
            env.add_template(name, source).map_err(template_err(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_report;
    use minijinja::context;
    use tcobench_analysis::analyze;
    use tcobench_results::schema::files;
    use tcobench_results::testutil::write_run;

    #[test]
    fn template_override_directory() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), "smoke", "m");
        let stats = analyze(dir.path()).unwrap();
        let tpl = tempfile::tempdir().unwrap();
        std::fs::write(
            tpl.path().join(MD_TEMPLATE),
            "custom {{ stats.run_id }} {{ cells | length }}\n",
        )
        .unwrap();
        write_report(dir.path(), &stats, Some(tpl.path())).unwrap();
        let md = std::fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
        assert_eq!(md, "custom run-1 3\n");
        // The HTML falls back to the built-in template.
        let html = std::fs::read_to_string(dir.path().join(files::REPORT_HTML)).unwrap();
        assert!(html.contains("aaaa"));

        // A broken template is a located template error, not a panic.
        std::fs::write(tpl.path().join(MD_TEMPLATE), "{{ stats.run_id ").unwrap();
        let err = write_report(dir.path(), &stats, Some(tpl.path())).unwrap_err();
        assert!(matches!(err, ReportError::Template { .. }), "{err}");
    }

    #[test]
    fn html_autoescape_is_explicit() {
        let env = environment(None).unwrap();
        let t = env.get_template(HTML_TEMPLATE).unwrap();
        assert_eq!(t.name(), HTML_TEMPLATE);
        let out = env
            .render_named_str("x.html.j2", "{{ v }}", context! { v => "<b>" })
            .unwrap();
        assert_eq!(out, "&lt;b&gt;");
        let out = env
            .render_named_str("x.md.j2", "{{ v }}", context! { v => "<b>" })
            .unwrap();
        assert_eq!(out, "<b>");
    }
}
