//! The checks on the data files of the results contract: present, matching the SHA-256 of their
//! sidecar, and decodable with the read `analyze` and `collect` do.

use std::path::Path;

use tcobench_results::io;
use tcobench_results::schema::{files, CellOutcome, Manifest};

use super::Checks;
use crate::run::writer::RUN_POWER;

/// One data file of the results contract: present, matching its `FILE.sha256`, decodable.
/// `why` says why the contract requires it (for the message when it is missing).
fn check_data_file(c: &mut Checks, path: &Path, cell: Option<&str>, why: &str) {
    let sidecar = io::checksum_path(path);
    if !path.is_file() {
        let trace = if sidecar.is_file() {
            format!(
                "; its checksum {} is there, so it was written and is gone since",
                sidecar.display()
            )
        } else {
            String::new()
        };
        c.fail(
            "data_file",
            cell,
            &[],
            format!("{}: missing ({why}){trace}", path.display()),
        );
        return;
    }
    // The read `analyze` does: checksum first (a damaged file is never decoded), then Parquet.
    match io::read_parquet(path) {
        Ok(_) => {
            c.pass();
            if !sidecar.is_file() {
                c.note(format!(
                    "{} has no {}: it decodes, but its bytes could not be checked against a \
                     checksum written with it",
                    path.display(),
                    sidecar
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let message = if text.contains(&path.display().to_string()) {
                text
            } else {
                format!("{}: {text}", path.display())
            };
            c.fail("data_file", cell, &[], message);
        }
    }
}

/// The data files the results contract says a finished run folder holds ([`check_data_file`]).
pub(super) fn check_data_files(c: &mut Checks, run_dir: &Path, manifest: &Manifest) {
    let merged = "every run folder holds it, merged from the committed cells; `tcobench collect` \
                  merges them again";
    check_data_file(c, &run_dir.join(files::REQUESTS), None, merged);
    check_data_file(c, &run_dir.join(files::POWER), None, merged);
    let run_power = run_dir.join(RUN_POWER);
    if manifest.power.idle_baseline.is_some() {
        check_data_file(
            c,
            &run_power,
            None,
            "manifest.json records an idle baseline, whose power samples it holds",
        );
    } else if run_power.is_file() || io::checksum_path(&run_power).is_file() {
        check_data_file(c, &run_power, None, "the power samples taken between cells");
    }
    for record in &manifest.cells {
        let id = record.cell_id.as_str();
        let dir = run_dir.join(files::CELLS).join(id);
        if dir.join(files::CELL_STATUS).is_file() {
            for name in [files::REQUESTS, files::POWER] {
                check_data_file(
                    c,
                    &dir.join(name),
                    Some(id),
                    "the cell is committed (its status.json is there); its measurements are \
                     what the run's files are merged from",
                );
            }
        } else if record.status == CellOutcome::Ok {
            c.fail(
                "data_file",
                Some(id),
                &[],
                format!(
                    "{}: missing (manifest.json records cell {id} as ok, but its committed files \
                     are not there: `tcobench collect` and `run --resume` need them)",
                    dir.join(files::CELL_STATUS).display()
                ),
            );
        } else {
            c.pass();
        }
    }
}
