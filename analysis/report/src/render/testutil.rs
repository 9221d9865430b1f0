//! Helpers shared by the report tests of several files: a synthetic run with its reports
//! written, and the calculator's data read back from the HTML.

use tcobench_analysis::analyze;
use tcobench_results::schema::files;
use tcobench_results::testutil::write_run;

use crate::write_report;

/// A synthetic run of `scenario` serving `model`, written with its reports: the folder, the
/// Markdown and the HTML.
pub(super) fn render_run(scenario: &str, model: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), scenario, model);
    let stats = analyze(dir.path()).unwrap();
    write_report(dir.path(), &stats, None).unwrap();
    let md = std::fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
    let html = std::fs::read_to_string(dir.path().join(files::REPORT_HTML)).unwrap();
    (dir, md, html)
}

/// The text of the `tco-data` element.
pub(super) fn tco_blob(html: &str) -> &str {
    let open = "<script type=\"application/json\" id=\"tco-data\">";
    let start = html.find(open).unwrap() + open.len();
    let len = html[start..].find("</script>").unwrap();
    &html[start..start + len]
}
