//! Harness overhead: the bare backend call versus the same request through the run loop
//! (energy reads at the window edges, clock reads, first-token observer, hashing, the result
//! row), side by side in one run. The ratio of their throughputs is the harness efficiency.

use std::sync::Mutex;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tcobench::plan::Cell;
use tcobench::plan::CellConfig;
use tcobench::power::{CpuEstimate, PowerSampler};
use tcobench::run::{self, Clock};
use tcobench::scenario::{BackendKind, PowerSettings, PowerSource};
use tcobench_backends::model::{self, BuiltinModel, ModelSource};
use tcobench_backends::{Backend, CandleBackend, DType, Device, Request};

fn bench(c: &mut Criterion) {
    let cell = Cell {
        index: 0,
        cell_id: "bench".into(),
        config: CellConfig {
            backend: BackendKind::Candle,
            model: "small".into(),
            device: Device::Cpu,
            dtype: DType::F32,
            batch_size: 1,
            prompt_tokens: 32,
            new_tokens: 16,
        },
        warmup: 0,
        repetitions: 1,
        replicate: None,
    };
    let dir = model::resolve(
        &ModelSource::Builtin {
            model: BuiltinModel::Small,
            seed: run::MODEL_SEED,
        },
        &run::default_models_dir(),
    )
    .expect("model");
    let mut backend =
        CandleBackend::load(&dir, cell.config.device, cell.config.dtype).expect("load");
    let request = Request {
        prompts: run::prompts(42, &cell, 0, false, backend.config().vocab_size),
        new_tokens: cell.config.new_tokens as usize,
    };
    let settings = PowerSettings {
        source: PowerSource::CpuEstimate,
        sample_ms: 100,
        idle_baseline_s: 0.0,
        cpu_tdp_w: 65.0,
        cpu_tdp_from_user: false,
        cpu_idle_fraction: 0.3,
        mock_watts: 0.0,
        target_uncertainty: 0.01,
        min_window_ms: 0.0,
        cross_check_tolerance: 0.1,
        pad_requests_max: 0,
    };
    let sampler: Mutex<Box<dyn PowerSampler>> = Mutex::new(Box::new(CpuEstimate::new(&settings)));
    let clock = Clock::Wall(Instant::now());

    let mut group = c.benchmark_group("small_b1_p32_n16");
    group.throughput(Throughput::Elements(u64::from(
        cell.config.batch_size * cell.config.new_tokens,
    )));
    group.sample_size(30);
    group.bench_function("bare_backend_call", |b| {
        b.iter(|| {
            backend
                .generate(&request, &mut |_step: usize| {})
                .expect("generate")
        })
    });
    group.bench_function("through_run_loop", |b| {
        b.iter(|| {
            let m = run::measure_request(&mut backend, &request, &clock, &sampler);
            run::request_record(&cell, "bench", 0, false, &request, &m, "cpu_estimate")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
