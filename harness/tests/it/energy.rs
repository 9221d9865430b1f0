//! Energy windows end to end: a mock run records each cell's whole-window energy with its
//! provenance and validity, and the statistics derive gross energy per token from it.

use tcobench_analysis::schema::{self, files, EnergyValidity};

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
    let manifest = schema::read_manifest(&run.join(files::MANIFEST)).unwrap();
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
        let tokens = u64::from(record.repetitions * record.batch_size * record.new_tokens);
        assert_eq!(w.generated_tokens, tokens);
        let energy = cell.energy.as_ref().expect("energy in the statistics");
        let jpt = energy.gross_j_per_token.unwrap();
        assert!((jpt - e / tokens as f64).abs() < 1e-12, "{jpt}");
        assert!(
            energy.net_unavailable.is_some(),
            "no idle baseline on a virtual clock"
        );
    }
    let requests = schema::read_parquet(&run.join(files::REQUESTS)).unwrap();
    let valid = requests.column("energy_valid").unwrap().bool().unwrap();
    assert!(valid.null_count() == 0 && valid.all(), "{valid:?}");
}
