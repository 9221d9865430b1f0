//! Inference backends for tcobench and the built-in model family.
//!
//! This crate owns the [`Backend`] trait — load a model on a device with a dtype, then run one
//! *request* (a batch of equal-length token-id prompts, each generating exactly `new_tokens`
//! tokens greedily, no early stop) — and its implementations: candle (CPU; CUDA behind the `cuda`
//! feature), ONNX Runtime through the `ort` crate with the shared library found at run time
//! ([`ort_lib`]; CUDA execution provider behind the `cuda` feature), and a mock backend with
//! deterministic virtual timings for snapshot tests. It also owns the built-in Llama-style models
//! whose weights are drawn from ChaCha seeded by (model seed, tensor name) and written in the
//! Hugging Face layout (`config.json` + `model.safetensors`) and as ONNX ([`onnx`]), and the
//! logit agreement check between backends ([`agreement`]).
//!
//! Backends never read clocks for measurement: the run loop does, through [`TokenObserver`].

pub mod agreement;
pub mod candle_backend;
pub mod mock;
pub mod model;
pub mod onnx;
pub mod ort_backend;
pub mod ort_lib;

use std::fmt;
use std::str::FromStr;

pub use agreement::{agreement_tolerance, max_relative_diff};
pub use candle_backend::CandleBackend;
pub use mock::{MockBackend, MockCost, VirtualClock};
pub use model::{BuiltinModel, ModelConfig, ModelSource};
pub use ort_backend::{OrtBackend, OrtThreads};
pub use ort_lib::{OrtLibrary, OrtLibrarySource, OrtRuntime, ORT_VERSION};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// The host CPU.
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    format!("unknown device `{s}` (expected `cpu`, `cuda` or `cuda:N`)")
                }),
        }
    }
}

/// Numeric type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            _ => Err(format!(
                "unknown dtype `{s}` (expected `f32`, `f16` or `bf16`)"
            )),
        }
    }
}

/// One request: `prompts.len()` sequences of equal length, each to be extended by exactly
/// `new_tokens` greedily chosen tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Prompt token ids, one equal-length row per sequence.
    pub prompts: Vec<Vec<u32>>,
    /// Tokens to generate per sequence (no early stop at EOS).
    pub new_tokens: usize,
}

impl Request {
    /// Checks the request against a model: at least one sequence, every prompt non-empty and of
    /// the same length, every token id below `vocab_size`, `new_tokens >= 1`, and
    /// `prompt_len + new_tokens <= max_position_embeddings`. Every backend runs this before doing
    /// any work, so all of them reject the same requests with the same message.
    pub fn validate(&self, config: &ModelConfig) -> Result<(), BackendError> {
        if self.new_tokens == 0 {
            return Err(BackendError::InvalidRequest(
                "new_tokens must be at least 1".to_owned(),
            ));
        }
        let prompt_len = validate_prompts(&self.prompts, config)?;
        let total = prompt_len.saturating_add(self.new_tokens);
        if total > config.max_position_embeddings {
            return Err(BackendError::InvalidRequest(format!(
                "prompt length {prompt_len} + new_tokens {} = {total} exceeds the model's \
                 max_position_embeddings {}",
                self.new_tokens, config.max_position_embeddings
            )));
        }
        Ok(())
    }
}

/// Checks a batch of prompts (non-empty batch, non-empty equal-length rows, ids in vocabulary,
/// length within `max_position_embeddings`) and returns the common prompt length.
pub(crate) fn validate_prompts(
    prompts: &[Vec<u32>],
    config: &ModelConfig,
) -> Result<usize, BackendError> {
    let invalid = |m: String| Err(BackendError::InvalidRequest(m));
    let Some(first) = prompts.first() else {
        return invalid("the batch is empty (no prompts)".to_owned());
    };
    let prompt_len = first.len();
    if prompt_len == 0 {
        return invalid("prompt 0 is empty".to_owned());
    }
    for (i, row) in prompts.iter().enumerate() {
        if row.len() != prompt_len {
            return invalid(format!(
                "prompts must have equal lengths: prompt 0 has {prompt_len} tokens, prompt {i} has {}",
                row.len()
            ));
        }
        if let Some((j, &id)) = row
            .iter()
            .enumerate()
            .find(|&(_, &id)| id as usize >= config.vocab_size)
        {
            return invalid(format!(
                "token id {id} at prompt {i}, position {j} is out of vocabulary (vocab_size {})",
                config.vocab_size
            ));
        }
    }
    if prompt_len > config.max_position_embeddings {
        return invalid(format!(
            "prompt length {prompt_len} exceeds the model's max_position_embeddings {}",
            config.max_position_embeddings
        ));
    }
    Ok(prompt_len)
}

/// Checks the inputs of [`Backend::logits_probe`]: a non-empty prompt, every id in vocabulary,
/// and the prompt plus continuation within `max_position_embeddings`.
pub(crate) fn validate_probe(
    prompt: &[u32],
    continuation: &[u32],
    config: &ModelConfig,
) -> Result<(), BackendError> {
    let all = [prompt, continuation].concat();
    validate_prompts(&[prompt.to_vec()], config)?;
    validate_prompts(&[all], config).map_err(|e| match e {
        BackendError::InvalidRequest(m) => {
            BackendError::InvalidRequest(format!("prompt + continuation: {m}"))
        }
        other => other,
    })?;
    Ok(())
}

/// What a request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Generated token ids, one row of exactly `new_tokens` per sequence.
    pub tokens: Vec<Vec<u32>>,
}

/// Told by a backend as each generation step completes, so the run loop can read its clock.
pub trait TokenObserver {
    /// Step `step` (0 = the first generated token of every sequence) has been produced and its
    /// values are on the host.
    fn on_token(&mut self, step: usize);
}

impl<F: FnMut(usize)> TokenObserver for F {
    fn on_token(&mut self, step: usize) {
        self(step)
    }
}

/// Errors from loading models and running requests.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// candle reported an error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model file or directory is missing or malformed.
    #[error("model {path}: {message}")]
    Model {
        /// File or directory concerned.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The request is malformed (ragged prompts, token id out of vocabulary, too long…).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The backend cannot run this device/dtype combination in this build.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// ONNX Runtime reported an error while building a session or running a step.
    #[error("onnxruntime: {0}")]
    OnnxRuntime(String),
    /// The ONNX Runtime shared library cannot be found, fetched or loaded.
    #[error("onnxruntime library: {0}")]
    OrtLibrary(String),
}

/// An inference engine with one model loaded on one device.
pub trait Backend {
    /// Short backend name as used in scenarios (`candle`, `onnxruntime`, `mock`).
    fn name(&self) -> &'static str;
    /// The loaded model's configuration.
    fn config(&self) -> &ModelConfig;
    /// Runs one request greedily, calling `observer.on_token(step)` after every step.
    fn generate(
        &mut self,
        request: &Request,
        observer: &mut dyn TokenObserver,
    ) -> Result<Generation, BackendError>;
    /// Device memory currently held by this backend, bytes, where the device reports it.
    fn device_memory_bytes(&self) -> Option<u64> {
        None
    }
    /// The f32 logits of one sequence, for comparing backends (see [`agreement`]): first those
    /// of the last prompt position after the prefill of `prompt`, then, for each token of
    /// `continuation` fed one decode step at a time (through the key/value cache where the
    /// backend has one), the logits after that step. `1 + continuation.len()` rows of
    /// `vocab_size` values. Backends that compute no logits return [`BackendError::Unsupported`].
    fn logits_probe(
        &mut self,
        prompt: &[u32],
        continuation: &[u32],
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        let _ = (prompt, continuation);
        Err(BackendError::Unsupported(format!(
            "the {} backend has no logits probe",
            self.name()
        )))
    }
}

/// Serialises and deserialises a type through its `Display` / `FromStr` spelling, so scenario
/// files and results use the same words (`cuda:0`, `bf16`) and a bad word gets a clear message.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Device);
serde_via_str!(DType);
