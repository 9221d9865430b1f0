//! candle and ONNX Runtime compute the same model: logits within the f32 tolerance, and the same
//! greedy tokens, with and without a key/value cache.

use std::path::Path;

use tcobench_backends::onnx::{write_onnx, write_onnx_with, OnnxExportOptions, ONNX_FILE};
use tcobench_backends::{
    agreement_tolerance, max_relative_diff, Backend, BackendError, CandleBackend, DType, Device,
    Generation, OrtBackend, OrtThreads, Request,
};

use crate::common::*;

fn ort(dir: &Path) -> OrtBackend {
    OrtBackend::load(
        runtime(),
        dir,
        Device::Cpu,
        DType::F32,
        OrtThreads::default(),
    )
    .unwrap()
}

fn candle(dir: &Path) -> CandleBackend {
    CandleBackend::load(dir, Device::Cpu, DType::F32).unwrap()
}

fn run(backend: &mut dyn Backend, prompts: Vec<Vec<u32>>, new_tokens: usize) -> Generation {
    let request = Request {
        prompts,
        new_tokens,
    };
    backend.generate(&request, &mut |_s: usize| {}).unwrap()
}

/// Prefill plus four decode steps of both backends agree within the f32 tolerance.
fn assert_probes_agree(ort: &mut OrtBackend, candle: &mut CandleBackend, vocab: u32) {
    let tolerance = agreement_tolerance(DType::F32);
    for (len, salt) in [(1, 0), (9, 1), (33, 2)] {
        let p: Vec<u32> = prompt(len, salt).iter().map(|t| t % vocab).collect();
        let continuation = [5, 77 % vocab, 250 % vocab, 2];
        let a = ort.logits_probe(&p, &continuation).unwrap();
        let b = candle.logits_probe(&p, &continuation).unwrap();
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|row| row.len() == vocab as usize));
        let d = max_relative_diff(&a, &b);
        assert!(
            d <= tolerance,
            "prompt length {len}: max relative diff {d:e}"
        );
    }
}

#[test]
fn logits_agree_with_candle_on_tiny() {
    let (_t, dir) = tiny_with_onnx(11);
    let mut ort = ort(&dir);
    assert_eq!(ort.name(), "onnxruntime");
    assert!(ort.uses_kv_cache());
    assert_probes_agree(&mut ort, &mut candle(&dir), 512);
}

#[test]
fn greedy_tokens_match_candle_at_batch_1_and_2() {
    let (_t, dir) = tiny_with_onnx(11);
    let (mut ort, mut candle) = (ort(&dir), candle(&dir));
    for prompts in [
        vec![prompt(12, 0)],
        vec![prompt(12, 1), prompt(12, 2)],
        vec![prompt(1, 3), prompt(1, 4)],
    ] {
        let a = run(&mut ort, prompts.clone(), 16);
        assert_eq!(a.tokens.len(), prompts.len());
        assert!(a.tokens.iter().all(|row| row.len() == 16));
        assert_eq!(a, run(&mut candle, prompts, 16));
    }
}

#[test]
fn a_model_without_kv_cache_agrees_too() {
    let (_t, dir) = tiny_with_onnx(11);
    let tmp = tempfile::tempdir().unwrap();
    let no_cache = tmp.path().join("no-cache");
    copy_config(&dir, &no_cache);
    let options = OnnxExportOptions {
        kv_cache: false,
        ..OnnxExportOptions::default()
    };
    write_onnx_with(&dir, &no_cache.join(ONNX_FILE), &options).unwrap();
    let mut plain = ort(&no_cache);
    assert!(!plain.uses_kv_cache());
    let mut candle = candle(&dir);
    assert_probes_agree(&mut plain, &mut candle, 512);
    let prompts = vec![prompt(7, 5), prompt(7, 6)];
    let tokens = run(&mut plain, prompts.clone(), 16);
    assert_eq!(tokens, run(&mut candle, prompts.clone(), 16));
    assert_eq!(tokens, run(&mut ort(&dir), prompts, 16));
}

#[test]
fn an_untied_mha_bf16_model_with_llama3_rope_scaling_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = custom_model_dir(tmp.path());
    write_onnx(&dir).unwrap();
    let (mut ort, mut candle) = (ort(&dir), candle(&dir));
    assert_probes_agree(&mut ort, &mut candle, 300);
    // Positions beyond the scaling's original context.
    let long: Vec<u32> = prompt(120, 7).iter().map(|t| t % 300).collect();
    let a = ort.logits_probe(&long, &[1, 2]).unwrap();
    let b = candle.logits_probe(&long, &[1, 2]).unwrap();
    let d = max_relative_diff(&a, &b);
    assert!(d <= agreement_tolerance(DType::F32), "{d:e}");
    let prompts = vec![long[..20].to_vec(), long[20..40].to_vec()];
    assert_eq!(
        run(&mut ort, prompts.clone(), 12),
        run(&mut candle, prompts, 12)
    );
}

#[test]
fn threads_are_reported_and_do_not_change_tokens() {
    let (_t, dir) = tiny_with_onnx(11);
    let threads = OrtThreads { intra: 1, inter: 1 };
    let mut single = OrtBackend::load(runtime(), &dir, Device::Cpu, DType::F32, threads).unwrap();
    assert_eq!(single.threads(), threads);
    let mut default = ort(&dir);
    assert_eq!(default.threads(), OrtThreads::default());
    assert_eq!(default.threads().inter, 1);
    let prompts = vec![prompt(10, 1)];
    assert_eq!(
        run(&mut single, prompts.clone(), 8),
        run(&mut default, prompts, 8)
    );
}

#[test]
fn observer_and_request_checks_match_candle() {
    let (_t, dir) = tiny_with_onnx(11);
    let mut ort = ort(&dir);
    let mut steps = Vec::new();
    let request = Request {
        prompts: vec![prompt(5, 1), prompt(5, 2)],
        new_tokens: 7,
    };
    ort.generate(&request, &mut |step: usize| steps.push(step))
        .unwrap();
    assert_eq!(steps, (0..7).collect::<Vec<_>>());
    // A single new token is the prefill alone.
    assert_eq!(run(&mut ort, vec![prompt(5, 1)], 1).tokens[0].len(), 1);

    let mut candle = candle(&dir);
    for (prompts, new_tokens) in [
        (vec![], 4),
        (vec![vec![1, 2], vec![3]], 4),
        (vec![vec![1, 512]], 4),
        (vec![vec![1, 2]], 0),
        (vec![vec![1; 500]], 13),
    ] {
        let request = Request {
            prompts,
            new_tokens,
        };
        let a = ort.generate(&request, &mut |_s: usize| panic!("no step may run"));
        let b = candle.generate(&request, &mut |_s: usize| {});
        match (a, b) {
            (Err(BackendError::InvalidRequest(a)), Err(BackendError::InvalidRequest(b))) => {
                assert_eq!(a, b)
            }
            other => panic!("expected the same InvalidRequest, got {other:?}"),
        }
    }
    let err = ort.logits_probe(&[], &[1]).unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err}");
    let err = ort.logits_probe(&[1; 510], &[1, 2, 3]).unwrap_err();
    assert!(err.to_string().contains("513 exceeds"), "{err}");
}
