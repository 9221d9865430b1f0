//! The shipped GPU scenario end to end (`scenarios/cuda.yaml`, reduced to the `tiny` model):
//! every CUDA cell passes the logits-agreement gate against candle on the CPU, and NVML measures
//! each cell's energy, cross-checked against integrated instant power.
//!
//! It needs a build with `--features cuda` and an NVIDIA GPU. Without the feature one test says
//! so; with it but without a GPU (`nvidia-smi -L` lists none) the test prints why it skipped,
//! unless `TCOBENCH_REQUIRE_CUDA=1` turns the skip into a failure.

use std::io::Write;

fn notice(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {message}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn the_cuda_scenario_needs_the_cuda_feature() {
    notice(
        "CUDA scenario test: this build has no `cuda` feature \
         (cargo test -p tcobench --release --features cuda on a GPU machine)",
    );
}

#[cfg(feature = "cuda")]
#[test]
fn the_cuda_scenario_runs_agrees_and_measures_energy_on_the_gpu() {
    use std::path::Path;

    use tcobench_results::io;
    use tcobench_results::schema::{files, AgreementStatus, CellOutcome, EnergyValidity};

    use crate::common::{run_scenario, write};

    let gpus = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if gpus.is_empty() {
        let required = std::env::var("TCOBENCH_REQUIRE_CUDA").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "TCOBENCH_REQUIRE_CUDA=1 but `nvidia-smi -L` lists no GPU"
        );
        notice("CUDA scenario test: `nvidia-smi -L` lists no GPU");
        return;
    }
    eprintln!("{gpus}");

    let tmp = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in ["baseline.yaml", "cuda.yaml"] {
        std::fs::copy(shipped.join(name), tmp.path().join(name)).unwrap();
    }
    let scenario = write(
        tmp.path(),
        "gpu-test.yaml",
        "extends: cuda.yaml\nname: gpu-test\nwarmup: 1\nrepetitions: 5\nmatrix:\n  model: [tiny]\n\
         power:\n  idle_baseline_s: 2\n",
    );
    let run = run_scenario(tmp.path(), &scenario);
    let manifest = io::read_manifest(&run.join(files::MANIFEST)).unwrap();
    // candle: f32, f16, bf16; onnxruntime: f32; each at batch 1 and 8.
    assert_eq!(manifest.cells.len(), 8, "{:#?}", manifest.cells);
    for cell in &manifest.cells {
        let id = &cell.cell_id;
        assert_eq!(cell.status, CellOutcome::Ok, "{id}: {:?}", cell.error);
        assert_eq!(cell.config.device, "cuda:0", "{id}");
        let gate = cell.agreement.as_ref().expect("agreement recorded");
        assert_eq!(gate.status, AgreementStatus::Passed, "{id}: {gate:?}");
        assert_eq!(gate.reference, "candle/f32/cpu", "{id}");
        eprintln!(
            "{id}: agreement {:e} (tolerance {:e})",
            gate.max_rel_diff.unwrap(),
            gate.tolerance
        );
        assert!(
            cell.gpu_mem_bytes.is_some_and(|b| b > 0),
            "{id}: GPU memory"
        );

        let w = cell.energy.as_ref().expect("energy window");
        assert!(w.method.starts_with("nvml_"), "{id}: {}", w.method);
        assert_eq!(
            (w.scope.as_str(), w.basis.as_str()),
            ("gpu-board", "measured")
        );
        assert_eq!(w.device, "cuda:0");
        let e = w.energy_j.expect("energy measured");
        // Above the idle draw of any datacenter GPU for the window, below its 1 kW ceiling.
        let watts = e / (w.window_ms / 1e3);
        assert!((10.0..1000.0).contains(&watts), "{id}: mean {watts} W");
        if w.validity == EnergyValidity::Valid {
            let check = w.cross_check.as_ref().expect("instant power cross-check");
            eprintln!(
                "{id}: {e:.3} J over {:.0} ms ({watts:.0} W); instant power {:.3} J from {} \
                 readings, disagreement {:.2}%",
                w.window_ms,
                check.energy_j,
                check.readings,
                100.0 * check.disagreement_rel
            );
            assert!(
                !check.flagged,
                "{id}: counter and instant power disagree: {check:?}"
            );
        } else {
            eprintln!("{id}: energy not valid: {:?}", w.invalid_reason);
        }
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("cuda:0"), "the report names the device");
}
