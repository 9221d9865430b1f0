//! Rendering every plot of a 100-cell run, without I/O: 5 models × 2 backends × 2 dtypes ×
//! 5 batch sizes, 10 timed requests per cell, a 600-sample power timeline, the cells priced on
//! two instances under two tiers, and 100 comparison sets. Target: ≤ 3 s on 2 cores.
//!
//! The setup (statistics, bootstrap CIs, pricing) is built once outside the timed loop; only
//! [`render_all`] is timed.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tcobench_analysis::{compute_stats, price_run, RunStats};
use tcobench_report::plots::energy::SweepVariants;
use tcobench_report::plots::{render_all, render_all_with_sweep};
use tcobench_results::io::requests_frame;
use tcobench_results::load::{requests_from_frame, LoadedRequests};
use tcobench_results::schema::{
    CellOutcome, CellRecord, HostInfo, Manifest, PowerInfo, PowerSample, RequestRecord,
    SCHEMA_VERSION,
};
use tcobench_results::spec::CostingSpec;
use tcobench_results::CellConfig;

const COSTING: &str = "
pricing:
  instances: [gcp/t2d-standard-8/us-central1, aws/m8i.4xlarge/us-east-1]
  tiers: [on_demand, spot]
  utilization: 1.0
energy:
  pue: uptime_2023_average
  grid: gcp:us-central1
";

fn cells() -> Vec<CellRecord> {
    let mut cells = Vec::new();
    for model in 0..5 {
        for backend in ["candle", "onnxruntime"] {
            for dtype in ["f32", "f16"] {
                for batch in [1u32, 2, 4, 8, 16] {
                    let index = cells.len();
                    cells.push(CellRecord {
                        cell_id: format!("{index:04x}cafe"),
                        index,
                        config: CellConfig {
                            backend: backend.into(),
                            model: format!("org/model-{model}"),
                            device: "cpu".into(),
                            dtype: dtype.into(),
                            batch_size: batch,
                            prompt_tokens: 32,
                            new_tokens: 16,
                        },
                        warmup: 1,
                        repetitions: 10,
                        status: CellOutcome::Ok,
                        error: None,
                        peak_rss_bytes: None,
                        gpu_mem_bytes: None,
                        energy_method: Some("rapl".into()),
                        started_at: None,
                        ended_at: None,
                        window_start_ms: Some(1000.0 * index as f64),
                        window_end_ms: Some(1000.0 * index as f64 + 900.0),
                        agreement: None,
                        backend_info: BTreeMap::new(),
                        energy: None,
                        host_load: None,
                        replicate: None,
                    });
                }
            }
        }
    }
    cells
}

fn manifest() -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: "bench".into(),
        scenario_name: "bench".into(),
        scenario_path: "scenarios/bench.yaml".into(),
        scenario: serde_json::json!({"name": "bench"}),
        seed: 7,
        model_seed: 0,
        command: vec!["tcobench".into()],
        git_revision: None,
        git_dirty_files: Vec::new(),
        versions: BTreeMap::new(),
        host: HostInfo {
            os: "Linux".into(),
            cpu_model: "CPU".into(),
            cpu_logical_cores: 8,
            memory_bytes: Some(32 << 30),
            gpus: vec![],
            hostname: "h".into(),
        },
        power: PowerInfo {
            method: "rapl".into(),
            scope: "cpu-package".into(),
            basis: "measured".into(),
            sample_period_ms: 100.0,
            notes: BTreeMap::new(),
            idle_baseline: None,
        },
        started_at: "2026-01-01T00:00:00Z".into(),
        ended_at: None,
        status: "complete".into(),
        costing: None,
        budget: None,
        allow_disagreement: false,
        cells: cells(),
    }
}

fn fixture() -> (RunStats, Manifest, LoadedRequests, Vec<PowerSample>) {
    let m = manifest();
    let mut rows = Vec::new();
    for c in &m.cells {
        let speed = 1.0 + 0.1 * c.index as f64 / 4.0 + f64::from(c.config.batch_size).sqrt();
        for rep in 0..10u32 {
            let e2e =
                200.0 * f64::from(c.config.batch_size) / speed * (1.0 + 0.01 * f64::from(rep % 3));
            let tokens = f64::from(c.config.batch_size * c.config.new_tokens);
            rows.push(RequestRecord {
                run_id: "bench".into(),
                cell_id: c.cell_id.clone(),
                config: c.config.clone(),
                rep,
                warmup: false,
                ttft_ms: Some(e2e / 5.0),
                e2e_ms: Some(e2e),
                tpot_ms: Some(e2e * 0.8 / 15.0),
                tokens_per_s: Some(tokens / (e2e / 1000.0)),
                energy_j: Some(0.03 * e2e),
                energy_method: "rapl".into(),
                energy_valid: None,
                input_hash: "00".into(),
                output_hash: Some("11".into()),
                status: "ok".into(),
                error: None,
            });
        }
    }
    let df = requests_frame(&rows).expect("frame");
    let requests = requests_from_frame(&df, Path::new("requests.parquet"), &m).expect("load");
    let mut stats = compute_stats(&m, &requests);
    let spec: CostingSpec = serde_yaml::from_str(COSTING).expect("costing spec");
    stats.costing = Some(price_run(&stats, &m, &spec, None).expect("priced"));
    let power = (0..600)
        .map(|i| PowerSample {
            t_ms: 170.0 * f64::from(i),
            source: "rapl".into(),
            device: "cpu-package".into(),
            cell_id: None,
            watts: Some(40.0 + f64::from(i % 17)),
            energy_j_cum: None,
            temp_c: None,
            sm_clock_mhz: None,
            throttle_reasons: None,
        })
        .collect();
    (stats, m, requests, power)
}

fn bench(c: &mut Criterion) {
    let (stats, m, requests, power) = fixture();
    let mut g = c.benchmark_group("plots");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("render_all/100 cells", |b| {
        b.iter(|| {
            render_all(
                black_box(&stats),
                black_box(&m),
                black_box(&requests),
                black_box(&power),
            )
            .expect("render")
        })
    });
    let sweep = sweep(&stats, &m);
    g.bench_function("render_all_with_sweep/100 cells, 3 grid variants", |b| {
        b.iter(|| {
            render_all_with_sweep(
                black_box(&stats),
                black_box(&m),
                black_box(&requests),
                black_box(&power),
                Some(black_box(&sweep)),
            )
            .expect("render")
        })
    });
    g.finish();
}

/// Three grid variants priced like `tcobench sweep` does, read back through `sweep.json`'s shape.
fn sweep(stats: &RunStats, m: &Manifest) -> SweepVariants {
    let base: CostingSpec = serde_yaml::from_str(COSTING).expect("costing spec");
    let variants: Vec<serde_json::Value> = [("low", 40.0), ("mid", 400.0), ("high", 800.0)]
        .iter()
        .map(|(name, grid)| {
            let mut spec = base.clone();
            let layer: CostingSpec =
                serde_yaml::from_str(&format!("energy:\n  grid: {grid}\n")).expect("variant");
            spec.overlay(&layer);
            let costing = price_run(stats, m, &spec, Some((*name).into())).expect("priced");
            serde_json::json!({"name": name, "costing": costing})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"run_id": stats.run_id, "variants": variants}))
        .expect("sweep")
}

criterion_group!(benches, bench);
criterion_main!(benches);
