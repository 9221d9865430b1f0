//! The CUDA paths, checked against candle on the CPU: candle on `cuda:0` (f32, f16, bf16) and
//! ONNX Runtime's CUDA execution provider (its key/value cache bound in device memory) compute
//! the same logits and the same greedy tokens.
//!
//! They need a build with `--features cuda` and an NVIDIA GPU. Without the feature one test says
//! so; with it but without a usable device every test prints why it skipped, unless
//! `TCOBENCH_REQUIRE_CUDA=1` (set it on a GPU machine) turns the skip into a failure.

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_paths_need_the_cuda_feature() {
    crate::common::skip_notice(
        "CUDA backend tests: this build has no `cuda` feature \
         (cargo test -p tcobench-backends --release --features cuda on a GPU machine)",
    );
}

#[cfg(feature = "cuda")]
mod on_gpu {
    use std::path::Path;

    use tcobench_backends::model::{materialize, BuiltinModel};
    use tcobench_backends::onnx::write_onnx;
    use tcobench_backends::{
        agreement_tolerance, max_relative_diff, Backend, CandleBackend, DType, Device, Generation,
        OrtBackend, OrtThreads, Request,
    };

    use crate::common::*;

    /// Whether CUDA device 0 can be opened; prints why not (or panics when
    /// `TCOBENCH_REQUIRE_CUDA=1`).
    fn gpu(test: &str) -> bool {
        match candle_core::Device::new_cuda(0) {
            Ok(_) => true,
            Err(e) => {
                let required = std::env::var("TCOBENCH_REQUIRE_CUDA").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "TCOBENCH_REQUIRE_CUDA=1 but cuda:0 is unusable: {e}"
                );
                skip_notice(&format!("{test}: no usable CUDA device 0 ({e})"));
                false
            }
        }
    }

    fn cuda_ort(dir: &Path) -> OrtBackend {
        OrtBackend::load(
            runtime(),
            dir,
            Device::Cuda(0),
            DType::F32,
            OrtThreads::default(),
        )
        .expect("ONNX Runtime with the CUDA execution provider")
    }

    fn run(backend: &mut dyn Backend, prompts: Vec<Vec<u32>>, new_tokens: usize) -> Generation {
        let request = Request {
            prompts,
            new_tokens,
        };
        backend.generate(&request, &mut |_s: usize| {}).unwrap()
    }

    /// The largest relative difference between `backend` and the CPU reference over three
    /// prompts (1, 9 and 33 tokens), each with four decode steps.
    fn probe_diff(backend: &mut dyn Backend, reference: &mut CandleBackend, vocab: u32) -> f64 {
        let mut worst = 0f64;
        for (len, salt) in [(1, 0), (9, 1), (33, 2)] {
            let p: Vec<u32> = prompt(len, salt).iter().map(|t| t % vocab).collect();
            let continuation = [5, 77 % vocab, 250 % vocab, 2];
            let a = backend.logits_probe(&p, &continuation).unwrap();
            let b = reference.logits_probe(&p, &continuation).unwrap();
            assert_eq!(a.len(), 1 + continuation.len());
            worst = worst.max(max_relative_diff(&a, &b));
        }
        worst
    }

    fn cpu_reference(dir: &Path) -> CandleBackend {
        CandleBackend::load(dir, Device::Cpu, DType::F32).unwrap()
    }

    #[test]
    fn candle_on_cuda_agrees_with_the_cpu_in_every_dtype() {
        if !gpu("candle_on_cuda_agrees_with_the_cpu_in_every_dtype") {
            return;
        }
        let (_t, dir) = tiny_with_onnx(11);
        let mut reference = cpu_reference(&dir);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let mut gpu = CandleBackend::load(&dir, Device::Cuda(0), dtype).unwrap();
            let d = probe_diff(&mut gpu, &mut reference, 512);
            eprintln!("candle cuda:0 {dtype} vs candle cpu f32: max relative diff {d:e}");
            assert!(
                d <= agreement_tolerance(dtype),
                "{dtype}: max relative diff {d:e} above {:e}",
                agreement_tolerance(dtype)
            );
        }
        // f32 on the GPU generates what the CPU generates.
        let mut gpu = CandleBackend::load(&dir, Device::Cuda(0), DType::F32).unwrap();
        let prompts = vec![prompt(12, 1), prompt(12, 2)];
        assert_eq!(
            run(&mut gpu, prompts.clone(), 16),
            run(&mut reference, prompts, 16)
        );
    }

    #[test]
    fn onnxruntime_on_cuda_agrees_with_candle_on_the_cpu() {
        if !gpu("onnxruntime_on_cuda_agrees_with_candle_on_the_cpu") {
            return;
        }
        let (_t, dir) = tiny_with_onnx(11);
        let mut ort = cuda_ort(&dir);
        assert!(ort.uses_kv_cache());
        assert_eq!(ort.device(), Device::Cuda(0));
        let mut reference = cpu_reference(&dir);
        let d = probe_diff(&mut ort, &mut reference, 512);
        eprintln!("onnxruntime cuda:0 f32 vs candle cpu f32: max relative diff {d:e}");
        assert!(d <= agreement_tolerance(DType::F32), "{d:e}");
        for prompts in [vec![prompt(12, 0)], vec![prompt(12, 1), prompt(12, 2)]] {
            assert_eq!(
                run(&mut ort, prompts.clone(), 16),
                run(&mut reference, prompts, 16)
            );
        }
    }

    #[test]
    fn both_cuda_paths_agree_on_small() {
        if !gpu("both_cuda_paths_agree_on_small") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize(BuiltinModel::Small, 3, &tmp.path().join("small")).unwrap();
        write_onnx(&dir).unwrap();
        let mut reference = cpu_reference(&dir);
        let mut candle = CandleBackend::load(&dir, Device::Cuda(0), DType::F32).unwrap();
        let d = probe_diff(&mut candle, &mut reference, 8192);
        eprintln!("small: candle cuda:0 f32 vs cpu: {d:e}");
        assert!(d <= agreement_tolerance(DType::F32), "candle: {d:e}");
        let mut ort = cuda_ort(&dir);
        let d = probe_diff(&mut ort, &mut reference, 8192);
        eprintln!("small: onnxruntime cuda:0 f32 vs candle cpu: {d:e}");
        assert!(d <= agreement_tolerance(DType::F32), "onnxruntime: {d:e}");
        let prompts = vec![prompt(40, 1), prompt(40, 2), prompt(40, 3), prompt(40, 4)];
        let tokens = run(&mut reference, prompts.clone(), 24);
        assert_eq!(run(&mut candle, prompts.clone(), 24), tokens);
        assert_eq!(run(&mut ort, prompts, 24), tokens);
    }
}
