//! The ONNX Runtime backend: a `model.onnx` in the Hugging Face Optimum decoder convention (see
//! [`crate::onnx::names`]) run by ONNX Runtime on the CPU, or on CUDA with the `cuda` feature.
//!
//! With a key/value cache the `present.*` outputs of one step are bound, through an
//! [`IoBinding`], as the `past_key_values.*` inputs of the next: they stay where ONNX Runtime
//! put them (device memory on CUDA) and only the logits cross to the host. A model without
//! `past_key_values.*` inputs (an Optimum export with `use_cache=False`) re-runs the whole
//! sequence at every step. Generation is greedy with the same semantics as
//! [`CandleBackend`](crate::CandleBackend): prefill, then `new_tokens − 1` decode steps, the lowest
//! index among tied maxima.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::model::{load_config, model_error};
use crate::onnx::{names, read_onnx_info, ONNX_FILE};
use crate::ort_lib::OrtRuntime;
use crate::{
    Backend, BackendError, DType, Device, Generation, ModelConfig, Request, TokenObserver,
};

/// ONNX Runtime thread pools of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrtThreads {
    /// Threads that parallelise one operator (matrix multiplies and the like); 0 lets ONNX
    /// Runtime choose.
    pub intra: usize,
    /// Threads that run independent operators concurrently; above 1 the session runs in
    /// parallel execution mode, at 1 it runs operators one after the other.
    pub inter: usize,
}

impl Default for OrtThreads {
    /// What candle uses on the CPU, so the two backends are compared on equal terms: every
    /// available core inside an operator (candle's matrix multiplies use all of them), operators
    /// one after the other.
    fn default() -> Self {
        OrtThreads {
            intra: std::thread::available_parallelism().map_or(1, |n| n.get()),
            inter: 1,
        }
    }
}

/// How the graph's inputs are fed, as found in the model file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GraphIo {
    attention_mask: bool,
    position_ids: bool,
    /// `(past input, present output)` names per cached tensor, keys then values of each layer;
    /// empty without a key/value cache.
    cache: Vec<(String, String)>,
}

/// A `model.onnx` loaded in ONNX Runtime on one device.
pub struct OrtBackend {
    session: Session,
    runtime: &'static OrtRuntime,
    config: ModelConfig,
    device: Device,
    dtype: DType,
    threads: OrtThreads,
    model_path: PathBuf,
    io: GraphIo,
    /// Where `present.*` outputs are kept between steps.
    cache_memory: MemoryInfo<'static>,
    /// Where logits are delivered.
    host_memory: MemoryInfo<'static>,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("model_path", &self.model_path)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("threads", &self.threads)
            .field("kv_cache", &self.uses_kv_cache())
            .finish_non_exhaustive()
    }
}

/// A message-carrying ONNX Runtime error.
fn ort_error(context: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::OnnxRuntime(format!("{context}: {e}"))
}

/// The element type and rank of a tensor outlet, or `None` for non-tensors.
fn tensor_type(ty: &ValueType) -> Option<(TensorElementType, &[i64])> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

impl OrtBackend {
    /// Loads `dir/model.onnx` (with `dir/config.json`, whose vocabulary and cache shapes it must
    /// match) in `runtime` on `device`. Only [`DType::F32`] is supported: the writer emits f32.
    pub fn load(
        runtime: &'static OrtRuntime,
        dir: &Path,
        device: Device,
        dtype: DType,
        threads: OrtThreads,
    ) -> Result<Self, BackendError> {
        let config = load_config(dir)?;
        if dtype != DType::F32 {
            return Err(BackendError::Unsupported(format!(
                "onnxruntime runs the f32 ONNX export only, not {dtype} (the ONNX writer emits f32 weights)"
            )));
        }
        let (cache_memory, host_memory) = memory_infos(device)?;
        let model_path = dir.join(ONNX_FILE);
        if !model_path.is_file() {
            return Err(model_error(
                &model_path,
                "missing: onnxruntime needs the model as ONNX in the model directory (tcobench \
                 writes it for built-in models; export your own with Hugging Face Optimum)",
            ));
        }
        let info = read_onnx_info(&model_path)?;

        let builder = Session::builder(runtime.environment())
            .map_err(|e| ort_error("cannot create a session builder", e))?
            .with_intra_threads(threads.intra)
            .map_err(|e| ort_error("cannot set intra-op threads", e))?
            .with_inter_threads(threads.inter)
            .map_err(|e| ort_error("cannot set inter-op threads", e))?
            .with_parallel_execution(threads.inter > 1)
            .map_err(|e| ort_error("cannot set the execution mode", e))?;
        let mut builder = with_device(builder, device)?;
        let session = builder.commit_from_file(&model_path).map_err(|e| {
            model_error(
                &model_path,
                format!(
                    "onnxruntime {} cannot load it (ONNX IR version {}): {e}",
                    runtime.version(),
                    info.ir_version.unwrap_or(0)
                ),
            )
        })?;
        let io = inspect_io(&session, &config, &model_path)?;
        Ok(OrtBackend {
            session,
            runtime,
            config,
            device,
            dtype,
            threads,
            model_path,
            io,
            cache_memory,
            host_memory,
        })
    }

    /// Whether the model has a key/value cache (`past_key_values.*` inputs); without one every
    /// step re-runs the whole sequence.
    pub fn uses_kv_cache(&self) -> bool {
        !self.io.cache.is_empty()
    }

    /// The thread pools the session was built with.
    pub fn threads(&self) -> OrtThreads {
        self.threads
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The dtype of weights and activations (always f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The runtime the session belongs to (its version and library).
    pub fn runtime(&self) -> &'static OrtRuntime {
        self.runtime
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Runs the prefill of `prompts`, then `decode_steps` steps of one token per sequence.
    /// After each run `next(step, logits)` receives the last position's logits of every sequence
    /// and returns the token each sequence is fed at the next step.
    fn drive(
        &mut self,
        prompts: &[Vec<u32>],
        decode_steps: usize,
        mut next: impl FnMut(usize, &LastLogits<'_>) -> Result<Vec<u32>, BackendError>,
    ) -> Result<(), BackendError> {
        let batch = prompts.len();
        let vocab = self.config.vocab_size;
        let mut binding = self
            .session
            .create_binding()
            .map_err(|e| ort_error("cannot create an I/O binding", e))?;
        let kv_cache = self.uses_kv_cache();
        // With a cache: this step's tokens; without: every sequence so far.
        let mut rows: Vec<Vec<i64>> = prompts
            .iter()
            .map(|p| p.iter().map(|&t| i64::from(t)).collect())
            .collect();
        let mut past_len = 0usize;
        let mut past: Vec<DynValue> = Vec::new();
        if kv_cache {
            let shape = [
                batch,
                self.config.num_key_value_heads,
                0,
                self.config.head_dim(),
            ];
            for _ in &self.io.cache {
                let empty = Tensor::<f32>::from_array((shape, Vec::new()))
                    .map_err(|e| ort_error("cannot create an empty cache tensor", e))?;
                past.push(empty.into_dyn());
            }
        }

        for step in 0..=decode_steps {
            let seq = rows[0].len();
            let start = if kv_cache { past_len } else { 0 };
            binding.clear();
            self.bind_step(&mut binding, &rows, start, &past)?;
            let mut outputs = self
                .session
                .run_binding(&binding)
                .map_err(|e| ort_error(&format!("step {step} failed"), e))?;
            let logits = outputs
                .remove(names::LOGITS)
                .ok_or_else(|| ort_error("run", "no logits output"))?;
            let mut present = Vec::with_capacity(self.io.cache.len());
            for (_, out) in &self.io.cache {
                present.push(
                    outputs
                        .remove(out)
                        .ok_or_else(|| ort_error("run", format!("no {out} output")))?,
                );
            }
            drop(outputs);

            let (shape, data) = logits
                .try_extract_tensor::<f32>()
                .map_err(|e| ort_error("cannot read the logits", e))?;
            if shape.len() != 3 || shape[0] as usize != batch || shape[1] as usize != seq {
                return Err(model_error(
                    &self.model_path,
                    format!("logits have shape {shape:?}, expected [{batch}, {seq}, {vocab}]"),
                ));
            }
            if shape[2] as usize != vocab {
                return Err(model_error(
                    &self.model_path,
                    format!(
                        "logits have {} entries per token but config.json says vocab_size {vocab}",
                        shape[2]
                    ),
                ));
            }
            let view = LastLogits {
                data,
                seq,
                vocab,
                batch,
            };
            let fed = next(step, &view)?;
            if step == decode_steps {
                break;
            }
            if kv_cache {
                past_len += seq;
                past = present;
                for (row, &t) in rows.iter_mut().zip(&fed) {
                    row.clear();
                    row.push(i64::from(t));
                }
            } else {
                for (row, &t) in rows.iter_mut().zip(&fed) {
                    row.push(i64::from(t));
                }
            }
        }
        Ok(())
    }

    /// Binds one step's inputs (`rows` are the tokens at positions `start..`) and outputs.
    fn bind_step(
        &self,
        binding: &mut IoBinding,
        rows: &[Vec<i64>],
        start: usize,
        past: &[DynValue],
    ) -> Result<(), BackendError> {
        let batch = rows.len();
        let seq = rows[0].len();
        let bind = |binding: &mut IoBinding, name: &str, data: Vec<i64>, len: usize| {
            let tensor = Tensor::<i64>::from_array(([batch, len], data))
                .map_err(|e| ort_error(&format!("cannot create {name}"), e))?;
            binding
                .bind_input(name, &tensor)
                .map_err(|e| ort_error(&format!("cannot bind {name}"), e))
        };
        bind(binding, names::INPUT_IDS, rows.concat(), seq)?;
        if self.io.attention_mask {
            bind(
                binding,
                names::ATTENTION_MASK,
                vec![1; batch * (start + seq)],
                start + seq,
            )?;
        }
        if self.io.position_ids {
            let positions = (start as i64..(start + seq) as i64).collect::<Vec<_>>();
            bind(binding, names::POSITION_IDS, positions.repeat(batch), seq)?;
        }
        for ((input, _), value) in self.io.cache.iter().zip(past) {
            binding
                .bind_input(input.as_str(), value)
                .map_err(|e| ort_error(&format!("cannot bind {input}"), e))?;
        }
        binding
            .bind_output_to_device(names::LOGITS, &self.host_memory)
            .map_err(|e| ort_error("cannot bind logits", e))?;
        for (_, output) in &self.io.cache {
            binding
                .bind_output_to_device(output.as_str(), &self.cache_memory)
                .map_err(|e| ort_error(&format!("cannot bind {output}"), e))?;
        }
        Ok(())
    }
}

/// The logits of the last position of every sequence of one step.
struct LastLogits<'a> {
    /// `[batch, seq, vocab]`, row-major.
    data: &'a [f32],
    batch: usize,
    seq: usize,
    vocab: usize,
}

impl LastLogits<'_> {
    fn row(&self, b: usize) -> &[f32] {
        let start = (b * self.seq + self.seq - 1) * self.vocab;
        &self.data[start..start + self.vocab]
    }
}

/// The lowest index among the maximal values of `logits` (NaN never wins), or `None` when every
/// value is NaN.
pub(crate) fn greedy_token(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        match best {
            _ if v.is_nan() => {}
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Memory for cached keys/values and for logits on `device`.
fn memory_infos(
    device: Device,
) -> Result<(MemoryInfo<'static>, MemoryInfo<'static>), BackendError> {
    let host = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )
    .map_err(|e| ort_error("cannot describe host memory", e))?;
    match device {
        Device::Cpu => Ok((host.clone(), host)),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => {
            let cuda = MemoryInfo::new(
                AllocationDevice::CUDA,
                i as i32,
                AllocatorType::Device,
                MemoryType::Default,
            )
            .map_err(|e| ort_error("cannot describe CUDA memory", e))?;
            Ok((cuda, host))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(BackendError::Unsupported(
            "this build has no CUDA support; rebuild with --features cuda".to_owned(),
        )),
    }
}

/// Registers the execution provider of `device` (the CPU needs none).
fn with_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder, BackendError> {
    match device {
        Device::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(i as i32)
                .build()
                .error_on_failure()])
            .map_err(|e| {
                let message = e.to_string();
                let hint = missing_library_hint(&message).unwrap_or_default();
                ort_error(
                    &format!("cannot use CUDA device {i}"),
                    format!("{message}{hint}"),
                )
            }),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(BackendError::Unsupported(
            "this build has no CUDA support; rebuild with --features cuda".to_owned(),
        )),
    }
}

/// What to do when ONNX Runtime's CUDA execution provider cannot load a library it links
/// (`libcublas.so.13`, `libcudnn.so.9`, …): the `onnxruntime-gpu` wheel is built against CUDA 13
/// and cuDNN 9, which the machine must provide on the library path.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn missing_library_hint(message: &str) -> Option<String> {
    // The dynamic loader's message: `<library>: cannot open shared object file: …`.
    let (before, _) = message.split_once("cannot open shared object file")?;
    let library = before
        .trim_end_matches([':', ' '])
        .rsplit(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '/'))
        .next()
        .filter(|w| w.starts_with("lib"))
        .unwrap_or("a CUDA library");
    Some(format!(
        "\n  hint: {library} is not on the library path. The onnxruntime-gpu wheel needs CUDA 13 \
         (cuBLAS, cuRAND, cuFFT, the CUDA runtime) and cuDNN 9 for CUDA 13: install them (a CUDA 13 \
         image with cuDNN, or `pip install nvidia-cublas nvidia-cuda-runtime nvidia-curand \
         nvidia-cufft nvidia-cudnn-cu13` and their `lib` folders in LD_LIBRARY_PATH)"
    ))
}

/// Checks the session's inputs and outputs against the convention and `config`.
fn inspect_io(
    session: &Session,
    config: &ModelConfig,
    path: &Path,
) -> Result<GraphIo, BackendError> {
    let inputs: HashMap<&str, &ValueType> = session
        .inputs()
        .iter()
        .map(|o| (o.name(), o.dtype()))
        .collect();
    let outputs: HashMap<&str, &ValueType> = session
        .outputs()
        .iter()
        .map(|o| (o.name(), o.dtype()))
        .collect();
    let bad = |m: String| Err(model_error(path, m));
    let check = |kind: &str, name: &str, ty: &ValueType, want: TensorElementType, rank: usize| {
        match tensor_type(ty) {
            Some((t, shape)) if t == want && shape.len() == rank => Ok(shape.to_vec()),
            Some((t, shape)) => Err(model_error(
                path,
                format!(
                    "{kind} `{name}` is a {t:?} tensor of rank {}, expected {want:?} of rank {rank}",
                    shape.len()
                ),
            )),
            None => Err(model_error(path, format!("{kind} `{name}` is not a tensor"))),
        }
    };

    let mut expected: Vec<String> = vec![
        names::INPUT_IDS.to_owned(),
        names::ATTENTION_MASK.to_owned(),
        names::POSITION_IDS.to_owned(),
    ];
    let Some(ids) = inputs.get(names::INPUT_IDS) else {
        let found: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        return bad(format!(
            "has no `{}` input (inputs: {}); expected the Hugging Face Optimum decoder \
             convention (input_ids, attention_mask, position_ids, past_key_values.N.key/value)",
            names::INPUT_IDS,
            found.join(", ")
        ));
    };
    check("input", names::INPUT_IDS, ids, TensorElementType::Int64, 2)?;
    for name in [names::ATTENTION_MASK, names::POSITION_IDS] {
        if let Some(ty) = inputs.get(name) {
            check("input", name, ty, TensorElementType::Int64, 2)?;
        }
    }

    let layers = config.num_hidden_layers;
    let pasts: Vec<(String, String)> = (0..layers)
        .flat_map(|l| {
            [
                (names::past_key(l), names::present_key(l)),
                (names::past_value(l), names::present_value(l)),
            ]
        })
        .collect();
    let present_count = pasts
        .iter()
        .filter(|(p, _)| inputs.contains_key(p.as_str()))
        .count();
    let cache = if present_count == 0 {
        Vec::new()
    } else {
        for (past, present) in &pasts {
            let Some(ty) = inputs.get(past.as_str()) else {
                return bad(format!(
                    "has {present_count} of the {} past_key_values inputs that config.json's {layers} layers need; `{past}` is missing",
                    pasts.len()
                ));
            };
            let shape = check("input", past, ty, TensorElementType::Float32, 4)?;
            let kv = config.num_key_value_heads as i64;
            let hd = config.head_dim() as i64;
            if (shape[1] > 0 && shape[1] != kv) || (shape[3] > 0 && shape[3] != hd) {
                return bad(format!(
                    "input `{past}` has shape {shape:?}, but config.json implies [batch, {kv}, past, {hd}]"
                ));
            }
            let Some(ty) = outputs.get(present.as_str()) else {
                return bad(format!("has input `{past}` but no output `{present}`"));
            };
            check("output", present, ty, TensorElementType::Float32, 4)?;
        }
        pasts
    };
    expected.extend(cache.iter().map(|(p, _)| p.clone()));
    if let Some(extra) = session
        .inputs()
        .iter()
        .map(|o| o.name())
        .find(|n| !expected.iter().any(|e| e == n))
    {
        return bad(format!(
            "has an input `{extra}` this backend does not know how to feed (expected input_ids, \
             attention_mask, position_ids and past_key_values.0..{}.key/value)",
            layers.saturating_sub(1)
        ));
    }

    let Some(logits) = outputs.get(names::LOGITS) else {
        return bad(format!("has no `{}` output", names::LOGITS));
    };
    let shape = check(
        "output",
        names::LOGITS,
        logits,
        TensorElementType::Float32,
        3,
    )?;
    if shape[2] > 0 && shape[2] as usize != config.vocab_size {
        return bad(format!(
            "output `logits` has vocabulary size {} but config.json says vocab_size {}",
            shape[2], config.vocab_size
        ));
    }
    Ok(GraphIo {
        attention_mask: inputs.contains_key(names::ATTENTION_MASK),
        position_ids: inputs.contains_key(names::POSITION_IDS),
        cache,
    })
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
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
        let mut tokens = vec![Vec::with_capacity(request.new_tokens); batch];
        self.drive(&request.prompts, request.new_tokens - 1, |step, logits| {
            let mut next = Vec::with_capacity(batch);
            for (b, row) in tokens.iter_mut().enumerate() {
                let id = greedy_token(logits.row(b)).ok_or_else(|| {
                    BackendError::OnnxRuntime(format!(
                        "logits of sequence {b} at step {step} are all NaN"
                    ))
                })?;
                row.push(id);
                next.push(id);
            }
            debug_assert_eq!(next.len(), logits.batch);
            observer.on_token(step);
            Ok(next)
        })?;
        Ok(Generation { tokens })
    }

    fn logits_probe(
        &mut self,
        prompt: &[u32],
        continuation: &[u32],
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        crate::validate_probe(prompt, continuation, &self.config)?;
        let mut out = Vec::with_capacity(continuation.len() + 1);
        self.drive(&[prompt.to_vec()], continuation.len(), |step, logits| {
            out.push(logits.row(0).to_vec());
            Ok(continuation.get(step).map(|&t| vec![t]).unwrap_or_default())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_lowest_index_of_ties_and_skips_nan() {
        assert_eq!(greedy_token(&[0.0, 2.0, 1.0, 2.0]), Some(1));
        assert_eq!(greedy_token(&[f32::NAN, -1.0, -1.0]), Some(1));
        assert_eq!(greedy_token(&[-3.0, f32::NAN, 5.0]), Some(2));
        assert_eq!(greedy_token(&[f32::NAN, f32::NAN]), None);
        assert_eq!(greedy_token(&[f32::NEG_INFINITY]), Some(0));
    }

    #[test]
    fn a_missing_cuda_library_is_named_with_the_fix() {
        // The message ONNX Runtime 1.31 gives when its CUDA provider's dependencies are absent.
        let message = "Failed to load library libonnxruntime_providers_cuda.so with error: \
                       libcublasLt.so.13: cannot open shared object file: No such file or directory";
        let hint = missing_library_hint(message).unwrap();
        assert!(
            hint.contains("libcublasLt.so.13 is not on the library path"),
            "{hint}"
        );
        assert!(hint.contains("nvidia-cudnn-cu13"), "{hint}");
        assert_eq!(
            missing_library_hint("CUDA failure 100: no CUDA-capable device"),
            None
        );
    }

    #[test]
    fn default_threads_match_candle() {
        let t = OrtThreads::default();
        assert_eq!(t.inter, 1);
        assert_eq!(t.intra, std::thread::available_parallelism().unwrap().get());
    }
}
