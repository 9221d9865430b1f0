//! Energy windows end to end: a mock run records each cell's whole-window energy with its
//! provenance and validity, and the statistics derive gross energy per token from it.

use tcobench_results::io;
use tcobench_results::schema::{files, EnergyValidity};

use crate::common::{run_scenario, write, MOCK};

#[test]
fn mock_cells_carry_a_valid_whole_window_energy_equal_to_watts_times_time() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write(
        tmp.path(),
        "s.yaml",
        &format!("{MOCK}  target_uncertainty: 0.02\n  min_window_ms: 0\n"),
    );
    let run = run_scenario(tmp.path(), &scenario);
    let manifest = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    let stats: tcobench_analysis::RunStats =
        serde_json::from_slice(&std::fs::read(run.join(files::STATS)).unwrap()).unwrap();
    for (record, cell) in manifest.cells.iter().zip(&stats.cells) {
        let w = record.energy.as_ref().expect("energy window recorded");
        assert_eq!((w.method.as_str(), w.basis.as_str()), ("mock", "synthetic"));
        assert_eq!(w.validity, EnergyValidity::Valid, "{:?}", w.invalid_reason);
        // The window is the timed requests, from the first start to the last end.
        let span = record.window_end_ms.unwrap() - record.window_start_ms.unwrap();
        assert!((w.window_ms - span).abs() < 1e-9);
        // A constant 50 W source: energy = 50 W × window.
        let e = w.energy_j.unwrap();
        assert!(
            (e - 50.0 * w.window_ms / 1e3).abs() < 1e-9 * e.max(1.0),
            "{e}"
        );
        let tokens =
            u64::from(record.repetitions * record.config.batch_size * record.config.new_tokens);
        assert_eq!(w.generated_tokens, tokens);
        let energy = cell.energy.as_ref().expect("energy in the statistics");
        let jpt = energy.gross_j_per_token.unwrap();
        assert!((jpt - e / tokens as f64).abs() < 1e-12, "{jpt}");
        assert!(
            energy.net_unavailable.is_some(),
            "no idle baseline on a virtual clock"
        );
    }
    let requests = io::read_parquet(&run.join(files::REQUESTS)).unwrap();
    let valid = requests.column("energy_valid").unwrap().bool().unwrap();
    assert!(valid.null_count() == 0 && valid.all(), "{valid:?}");
}

/// Cells shorter than the minimum window: untimed padding requests lengthen the window until it
/// is long enough (energy and tokens grow, the timed requests stay as they are); without padding
/// the short window is invalid.
#[test]
fn short_windows_are_padded_to_the_minimum_or_marked_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let padded = write(
        tmp.path(),
        "padded.yaml",
        &format!("{MOCK}  min_window_ms: 60\n"),
    );
    let unpadded = write(
        tmp.path(),
        "unpadded.yaml",
        &format!("{MOCK}  min_window_ms: 60\n  pad_requests_max: 0\n"),
    );
    let padded_run = run_scenario(tmp.path(), &padded);
    let plain_run = run_scenario(tmp.path(), &unpadded);
    let read = |run: &std::path::Path| io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    let (padded_m, plain_m) = (read(&padded_run), read(&plain_run));
    for (p, u) in padded_m.cells.iter().zip(&plain_m.cells) {
        let (pw, uw) = (p.energy.as_ref().unwrap(), u.energy.as_ref().unwrap());
        // Unpadded: the mock's cells last a few ms of virtual time, far below 60 ms.
        assert!(uw.window_ms < 60.0, "{}", uw.window_ms);
        assert_eq!(uw.validity, EnergyValidity::Invalid);
        assert_eq!(uw.padding_requests, 0);
        // Padded: just long enough, no more than one request past the minimum.
        assert_eq!(
            pw.validity,
            EnergyValidity::Valid,
            "{:?}",
            pw.invalid_reason
        );
        assert!(pw.window_ms >= 60.0 && pw.padding_requests > 0, "{pw:?}");
        let per_request = uw.window_ms / f64::from(u.repetitions);
        assert!(pw.window_ms < 60.0 + 3.0 * per_request, "{pw:?}");
        let tokens = |n: u32| u64::from(n * p.config.batch_size * p.config.new_tokens);
        assert_eq!(
            pw.generated_tokens,
            tokens(p.repetitions + pw.padding_requests)
        );
        // A constant 50 W source: the padded window's energy is still 50 W × its length.
        let e = pw.energy_j.unwrap();
        assert!((e - 50.0 * pw.window_ms / 1e3).abs() < 1e-9 * e, "{e}");
        assert!(
            (p.window_end_ms.unwrap() - p.window_start_ms.unwrap() - pw.window_ms).abs() < 1e-9
        );
    }
    // The timed requests are the same rows either way: padding adds none.
    let rows = |run: &std::path::Path| {
        io::read_parquet(&run.join(files::REQUESTS))
            .unwrap()
            .height()
    };
    assert_eq!(rows(&padded_run), rows(&plain_run));
}
