//! The candle backend: candle-transformers' Llama on the CPU, or on CUDA with the `cuda` feature.
//!
//! Weights are read tensor by tensor from `model.safetensors` with ordinary file reads (no
//! memory map, hence no `unsafe`), converted to the requested dtype on the target device, and
//! handed to [`Llama::load`]. Generation is greedy with a per-request KV cache.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Config, Llama, LlamaConfig};

use crate::model::{
    io_error, load_config, model_error, read_safetensors_header, tensor_specs, CONFIG_FILE,
    WEIGHTS_FILE,
};
use crate::{
    validate_prompts, Backend, BackendError, DType, Device, Generation, ModelConfig, Request,
    TokenObserver,
};

/// A Llama model loaded with candle on one device.
pub struct CandleBackend {
    model: Llama,
    llama_config: Config,
    config: ModelConfig,
    device: Device,
    dtype: DType,
    candle_device: candle_core::Device,
    candle_dtype: candle_core::DType,
}

impl std::fmt::Debug for CandleBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleBackend")
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The candle device for `device`.
fn candle_device(device: Device) -> Result<candle_core::Device, BackendError> {
    match device {
        Device::Cpu => Ok(candle_core::Device::Cpu),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => Ok(candle_core::Device::new_cuda(i)?),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(BackendError::Unsupported(
            "this build has no CUDA support; rebuild with --features cuda".to_owned(),
        )),
    }
}

fn candle_dtype(dtype: DType) -> candle_core::DType {
    match dtype {
        DType::F32 => candle_core::DType::F32,
        DType::F16 => candle_core::DType::F16,
        DType::BF16 => candle_core::DType::BF16,
    }
}

/// The candle dtype of a safetensors dtype name, for the float types a checkpoint may use.
fn safetensors_dtype(name: &str) -> Option<candle_core::DType> {
    match name {
        "F32" => Some(candle_core::DType::F32),
        "F16" => Some(candle_core::DType::F16),
        "BF16" => Some(candle_core::DType::BF16),
        "F64" => Some(candle_core::DType::F64),
        _ => None,
    }
}

/// Reads every weight `config` needs from the safetensors file at `path`, checking names, shapes
/// and dtypes first, and returns them converted to `dtype` on `device`.
fn load_weights(
    path: &Path,
    config: &ModelConfig,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<HashMap<String, Tensor>, BackendError> {
    let header = read_safetensors_header(path)?;
    let specs = tensor_specs(config);
    let mut plan = Vec::with_capacity(specs.len());
    for spec in &specs {
        let entry = header
            .tensors
            .get(&spec.name)
            .ok_or_else(|| model_error(path, format!("tensor `{}` is missing", spec.name)))?;
        if entry.shape != spec.shape {
            return Err(model_error(
                path,
                format!(
                    "tensor `{}` has shape {:?}, the config implies {:?}",
                    spec.name, entry.shape, spec.shape
                ),
            ));
        }
        let stored = safetensors_dtype(&entry.dtype).ok_or_else(|| {
            model_error(
                path,
                format!(
                    "tensor `{}` has unsupported dtype {} (expected F32, F16, BF16 or F64)",
                    spec.name, entry.dtype
                ),
            )
        })?;
        let want = (spec.elem_count() * stored.size_in_bytes()) as u64;
        if entry.end - entry.start != want {
            return Err(model_error(
                path,
                format!(
                    "tensor `{}` holds {} bytes, its shape and dtype need {want}",
                    spec.name,
                    entry.end - entry.start
                ),
            ));
        }
        plan.push((spec, entry, stored));
    }

    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut weights = HashMap::with_capacity(plan.len());
    let mut buf = Vec::new();
    for (spec, entry, stored) in plan {
        buf.resize((entry.end - entry.start) as usize, 0);
        file.seek(SeekFrom::Start(entry.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| io_error(path, e))?;
        let host = Tensor::from_raw_buffer(&buf, stored, &spec.shape, &candle_core::Device::Cpu)?;
        // Move first, then convert: on a GPU the conversion is much faster than on the host.
        let tensor = host.to_device(device)?.to_dtype(dtype)?;
        weights.insert(spec.name.clone(), tensor);
    }
    Ok(weights)
}

/// Greedy token choice on the device: per row, the lowest index among the maximal logits.
///
/// candle's `argmax` does not promise the lowest index on ties on every device, so the choice is
/// spelt out: compare with the row maximum, replace non-maximal positions by `vocab`, take the
/// minimum. Only `batch` token ids cross to the host.
struct Greedy {
    /// `0..vocab` broadcast to `(batch, vocab)`.
    index: Tensor,
    /// `vocab` broadcast to `(batch, vocab)`.
    none: Tensor,
    vocab: usize,
}

impl Greedy {
    fn new(batch: usize, vocab: usize, device: &candle_core::Device) -> candle_core::Result<Self> {
        let index = Tensor::arange(0u32, vocab as u32, device)?
            .unsqueeze(0)?
            .broadcast_as((batch, vocab))?;
        let none = Tensor::new(vocab as u32, device)?.broadcast_as((batch, vocab))?;
        Ok(Greedy { index, none, vocab })
    }

    /// The chosen token of every row of `logits` `(batch, vocab)`, on the host.
    fn pick(&self, logits: &Tensor, step: usize) -> Result<Vec<u32>, BackendError> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let max = logits.max_keepdim(D::Minus1)?;
        let is_max = logits.broadcast_eq(&max)?;
        let ids = is_max
            .where_cond(&self.index, &self.none)?
            .min(D::Minus1)?
            .to_vec1::<u32>()?;
        if let Some(row) = ids.iter().position(|&id| id as usize >= self.vocab) {
            return Err(BackendError::Candle(candle_core::Error::Msg(format!(
                "logits of sequence {row} at step {step} are all NaN"
            ))));
        }
        Ok(ids)
    }
}

impl CandleBackend {
    /// Loads the Llama model in `dir` (`config.json` + `model.safetensors`) on `device`, with
    /// weights and activations in `dtype` (attention softmax and logits are always f32).
    pub fn load(dir: &Path, device: Device, dtype: DType) -> Result<Self, BackendError> {
        let config = load_config(dir)?;
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path).map_err(|e| io_error(&config_path, e))?;
        let llama_config: LlamaConfig = serde_json::from_str(&text).map_err(|e| {
            model_error(
                &config_path,
                format!("candle cannot read this Llama config: {e}"),
            )
        })?;
        let llama_config = llama_config.into_config(false);
        let candle_device = candle_device(device)?;
        let candle_dtype = candle_dtype(dtype);
        let weights_path: PathBuf = dir.join(WEIGHTS_FILE);
        let weights = load_weights(&weights_path, &config, candle_dtype, &candle_device)?;
        let vb = VarBuilder::from_tensors(weights, candle_dtype, &candle_device);
        // Every tensor was checked above, so `Llama::load` (which panics on a missing block
        // tensor) only sees complete weights.
        let model = Llama::load(vb, &llama_config)?;
        Ok(CandleBackend {
            model,
            llama_config,
            config,
            device,
            dtype,
            candle_device,
            candle_dtype,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The dtype of weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn new_cache(&self) -> Result<Cache, BackendError> {
        Ok(Cache::new(
            true,
            self.candle_dtype,
            &self.llama_config,
            &self.candle_device,
        )?)
    }

    /// Runs the prefill of `prompts` (equal-length rows) and returns the f32 logits at the last
    /// position of every row, `vocab_size` values each.
    pub fn last_logits(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, BackendError> {
        let prompt_len = validate_prompts(prompts, &self.config)?;
        let mut cache = self.new_cache()?;
        let input = Tensor::from_vec(
            prompts.concat(),
            (prompts.len(), prompt_len),
            &self.candle_device,
        )?;
        let logits = self.model.forward(&input, 0, &mut cache)?;
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn generate(
        &mut self,
        request: &Request,
        observer: &mut dyn TokenObserver,
    ) -> Result<Generation, BackendError> {
        request.validate(&self.config)?;
        let batch = request.prompts.len();
        let prompt_len = request.prompts[0].len();
        let mut cache = self.new_cache()?;
        let greedy = Greedy::new(batch, self.config.vocab_size, &self.candle_device)?;
        let mut tokens = vec![Vec::with_capacity(request.new_tokens); batch];

        let input = Tensor::from_vec(
            request.prompts.concat(),
            (batch, prompt_len),
            &self.candle_device,
        )?;
        let logits = self.model.forward(&input, 0, &mut cache)?;
        let mut next = greedy.pick(&logits, 0)?;
        for (row, &id) in tokens.iter_mut().zip(&next) {
            row.push(id);
        }
        observer.on_token(0);

        for step in 1..request.new_tokens {
            let input = Tensor::from_vec(next, (batch, 1), &self.candle_device)?;
            let logits = self
                .model
                .forward(&input, prompt_len + step - 1, &mut cache)?;
            next = greedy.pick(&logits, step)?;
            for (row, &id) in tokens.iter_mut().zip(&next) {
                row.push(id);
            }
            observer.on_token(step);
        }
        Ok(Generation { tokens })
    }

    fn logits_probe(
        &mut self,
        prompt: &[u32],
        continuation: &[u32],
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        crate::validate_probe(prompt, continuation, &self.config)?;
        let mut cache = self.new_cache()?;
        let mut rows = Vec::with_capacity(continuation.len() + 1);
        let input = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), &self.candle_device)?;
        let logits = self.model.forward(&input, 0, &mut cache)?;
        rows.push(
            logits
                .to_dtype(candle_core::DType::F32)?
                .squeeze(0)?
                .to_vec1::<f32>()?,
        );
        for (i, &token) in continuation.iter().enumerate() {
            let input = Tensor::from_vec(vec![token], (1, 1), &self.candle_device)?;
            let logits = self.model.forward(&input, prompt.len() + i, &mut cache)?;
            rows.push(
                logits
                    .to_dtype(candle_core::DType::F32)?
                    .squeeze(0)?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{materialize, BuiltinModel};

    fn tiny() -> (tempfile::TempDir, CandleBackend) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize(BuiltinModel::Tiny, 11, &tmp.path().join("tiny")).unwrap();
        let backend = CandleBackend::load(&dir, Device::Cpu, DType::F32).unwrap();
        (tmp, backend)
    }

    fn prompt(len: usize, salt: u32) -> Vec<u32> {
        (0..len as u32)
            .map(|i| (i * 37 + salt * 101 + 3) % 512)
            .collect()
    }

    fn run(backend: &mut CandleBackend, prompts: Vec<Vec<u32>>, new_tokens: usize) -> Generation {
        let request = Request {
            prompts,
            new_tokens,
        };
        backend.generate(&request, &mut |_step: usize| {}).unwrap()
    }

    fn argmax(v: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &x) in v.iter().enumerate() {
            if x > v[best] {
                best = i;
            }
        }
        best as u32
    }

    #[test]
    fn generates_exactly_new_tokens_and_is_deterministic() {
        let (_t, mut backend) = tiny();
        assert_eq!(backend.name(), "candle");
        let prompts = vec![prompt(12, 0), prompt(12, 1), prompt(12, 2)];
        let a = run(&mut backend, prompts.clone(), 9);
        assert_eq!(a.tokens.len(), 3);
        assert!(a.tokens.iter().all(|row| row.len() == 9));
        assert!(a.tokens.iter().flatten().all(|&t| t < 512));
        let b = run(&mut backend, prompts.clone(), 9);
        assert_eq!(a, b);
        // A freshly loaded copy agrees too.
        let (_t2, mut other) = tiny();
        assert_eq!(run(&mut other, prompts, 9), a);
    }

    #[test]
    fn batch_rows_match_single_runs() {
        let (_t, mut backend) = tiny();
        let (p0, p1, p2) = (prompt(10, 4), prompt(10, 5), prompt(10, 6));
        let alone0 = run(&mut backend, vec![p0.clone()], 12).tokens.remove(0);
        let alone1 = run(&mut backend, vec![p1.clone()], 12).tokens.remove(0);
        let two = run(&mut backend, vec![p0.clone(), p1.clone()], 12);
        assert_eq!(two.tokens, vec![alone0.clone(), alone1.clone()]);
        let three = run(&mut backend, vec![p0.clone(), p1.clone(), p2.clone()], 12);
        assert_eq!(three.tokens[..2], [alone0, alone1]);

        // Logits: a row's values depend on the batch only through the matrix-multiply kernel
        // that `gemm` picks from the shape (m = batch rows at the last position): m = 1 takes a
        // matrix-vector kernel, m·n <= 256 a "horizontal" dot-product kernel, larger shapes the
        // tiled micro-kernel. Each sums over k in its own order, so batch 1 and batch 2 differ in
        // the last bits (as cuBLAS kernels do on GPUs); shapes that pick the same kernels
        // (batch 2 and batch 3 here) agree bit for bit.
        let one = backend.last_logits(std::slice::from_ref(&p0)).unwrap();
        let two = backend.last_logits(&[p0.clone(), p1.clone()]).unwrap();
        let three = backend.last_logits(&[p0, p1, p2]).unwrap();
        assert_eq!(two[..], three[..2]);
        let max_diff = one[0]
            .iter()
            .zip(&two[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-5, "{max_diff}");
    }

    #[test]
    fn kv_cache_decode_matches_recomputation() {
        let (_t, mut backend) = tiny();
        let p = prompt(7, 8);
        let generated = run(&mut backend, vec![p.clone()], 6).tokens.remove(0);
        for k in 0..generated.len() {
            let context = [p.as_slice(), &generated[..k]].concat();
            let logits = backend.last_logits(&[context]).unwrap().remove(0);
            assert_eq!(logits.len(), 512);
            assert_eq!(argmax(&logits), generated[k], "step {k}");
        }
    }

    #[test]
    fn logits_probe_decodes_through_the_cache_like_a_fresh_prefill() {
        let (_t, mut backend) = tiny();
        let p = prompt(6, 2);
        let continuation = [9, 400, 17];
        let rows = backend.logits_probe(&p, &continuation).unwrap();
        assert_eq!(rows.len(), 4);
        for (k, row) in rows.iter().enumerate() {
            let context = [p.as_slice(), &continuation[..k]].concat();
            let fresh = backend.last_logits(&[context]).unwrap().remove(0);
            let diff = row
                .iter()
                .zip(&fresh)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "step {k}: {diff}");
        }
        let err = backend.logits_probe(&p, &[512]).unwrap_err();
        assert!(err.to_string().contains("token id 512"), "{err}");
    }

    #[test]
    fn observer_sees_every_step_in_order() {
        let (_t, mut backend) = tiny();
        let mut steps = Vec::new();
        let request = Request {
            prompts: vec![prompt(5, 1), prompt(5, 2)],
            new_tokens: 7,
        };
        backend
            .generate(&request, &mut |step: usize| steps.push(step))
            .unwrap();
        assert_eq!(steps, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn invalid_requests_are_rejected() {
        let (_t, mut backend) = tiny();
        let mut called = false;
        let mut check = |prompts: Vec<Vec<u32>>, new_tokens: usize, needle: &str| {
            let request = Request {
                prompts,
                new_tokens,
            };
            match backend.generate(&request, &mut |_s: usize| called = true) {
                Err(BackendError::InvalidRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("expected InvalidRequest({needle}), got {other:?}"),
            }
        };
        check(vec![], 4, "empty");
        check(vec![vec![]], 4, "prompt 0 is empty");
        check(vec![vec![1, 2], vec![3]], 4, "prompt 1 has 1");
        check(
            vec![vec![1, 512]],
            4,
            "token id 512 at prompt 0, position 1",
        );
        check(vec![vec![1, 2]], 0, "at least 1");
        check(vec![vec![1; 500]], 13, "513 exceeds");
        assert!(!called);
        // Exactly at the limit is fine.
        assert_eq!(
            run(&mut backend, vec![vec![1; 500]], 12).tokens[0].len(),
            12
        );
        assert!(matches!(
            backend.last_logits(&[vec![1, 2], vec![1]]),
            Err(BackendError::InvalidRequest(_))
        ));
    }

    #[test]
    fn half_precision_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize(BuiltinModel::Tiny, 11, &tmp.path().join("tiny")).unwrap();
        for dtype in [DType::BF16, DType::F16] {
            let mut backend = CandleBackend::load(&dir, Device::Cpu, dtype).unwrap();
            assert_eq!(backend.dtype(), dtype);
            let out = run(&mut backend, vec![prompt(6, 3)], 4);
            assert_eq!(out.tokens[0].len(), 4);
        }
    }

    #[test]
    fn load_errors_are_clear() {
        #[cfg(not(feature = "cuda"))]
        {
            let (t, _) = tiny();
            let err = CandleBackend::load(&t.path().join("tiny"), Device::Cuda(0), DType::F32)
                .unwrap_err();
            assert!(matches!(err, BackendError::Unsupported(_)), "{err}");
        }
        // Weights that do not fit the config: small's config over tiny's weights.
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize(BuiltinModel::Tiny, 1, &tmp.path().join("tiny")).unwrap();
        let mut cfg = BuiltinModel::Tiny.config();
        cfg.tie_word_embeddings = false;
        fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
        let err = CandleBackend::load(&dir, Device::Cpu, DType::F32).unwrap_err();
        assert!(err.to_string().contains("lm_head.weight"), "{err}");
        cfg.tie_word_embeddings = true;
        cfg.intermediate_size = 128;
        fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
        let err = CandleBackend::load(&dir, Device::Cpu, DType::F32).unwrap_err();
        assert!(
            err.to_string().contains("gate_proj.weight` has shape"),
            "{err}"
        );
    }
}
