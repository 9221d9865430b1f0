//! The built-in Llama-style model family (RMSNorm, RoPE, SwiGLU, grouped-query attention) and
//! the Hugging Face on-disk layout (`config.json` + `model.safetensors`) shared by every model.
//!
//! Built-in weights are not trained: every tensor is drawn from its own ChaCha20 stream, seeded
//! by SHA-256 of (model seed as 8 little-endian bytes ‖ tensor name as UTF-8), so any tensor can be
//! regenerated on its own, in any order, on any machine. Linear and embedding weights are
//! uniform in `[-a, a)` with `a = sqrt(3) · 0.02` (standard deviation 0.02): each value takes one
//! `u32` from the stream, `u = (x >> 8) · 2^-24`, value `= a · (2u − 1)` in f32. RMSNorm weights
//! are all `1.0` and use no randomness.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BackendError;

/// File name of the model configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Standard deviation of the uniformly initialised built-in weights.
pub const INIT_STD: f32 = 0.02;
/// Half-width `a = sqrt(3) · INIT_STD` of the uniform distribution of built-in weights.
pub const UNIFORM_BOUND: f32 = (1.732_050_807_568_877_2_f64 * 0.02) as f32;

/// The only architecture the backends implement.
const LLAMA_ARCH: &str = "LlamaForCausalLM";
/// Safetensors metadata keys recording which built-in model a file holds.
const META_MODEL: &str = "tcobench_model";
const META_SEED: &str = "tcobench_seed";

/// `eos_token_id` as Hugging Face writes it: one id, or several (Llama 3.1+ instruct models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosTokenId {
    /// A single end-of-sequence id.
    Single(u32),
    /// Several end-of-sequence ids.
    Multiple(Vec<u32>),
}

/// A Llama model configuration, mirroring the fields of a Hugging Face Llama `config.json`.
///
/// Deserialisation tolerates the optional fields of real checkpoints (absent
/// `num_key_value_heads` means multi-head attention, absent `rope_theta` is 10000, …) and ignores
/// fields it does not know; use [`load_config`] to also check that the model is supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawModelConfig")]
pub struct ModelConfig {
    /// Model class names; `["LlamaForCausalLM"]`.
    pub architectures: Vec<String>,
    /// Hugging Face model type; `"llama"`.
    pub model_type: String,
    /// Vocabulary size (rows of the embedding and of `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when below `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// Longest sequence (prompt plus generated tokens) the model accepts.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Whether `lm_head` shares the embedding matrix (no `lm_head.weight` tensor then).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s); generation never stops on it.
    pub eos_token_id: Option<EosTokenId>,
    /// Storage dtype as Hugging Face names it (`"float32"` for the built-in models).
    pub torch_dtype: String,
}

/// What `config.json` may contain, before defaults are filled in.
#[derive(Deserialize)]
struct RawModelConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default = "default_max_position_embeddings")]
    max_position_embeddings: usize,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<EosTokenId>,
    #[serde(default, alias = "dtype")]
    torch_dtype: Option<String>,
}

// Defaults of Hugging Face's `LlamaConfig`.
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}

impl From<RawModelConfig> for ModelConfig {
    fn from(r: RawModelConfig) -> Self {
        ModelConfig {
            architectures: r.architectures,
            model_type: r.model_type,
            vocab_size: r.vocab_size,
            hidden_size: r.hidden_size,
            intermediate_size: r.intermediate_size,
            num_hidden_layers: r.num_hidden_layers,
            num_attention_heads: r.num_attention_heads,
            num_key_value_heads: r.num_key_value_heads.unwrap_or(r.num_attention_heads),
            max_position_embeddings: r.max_position_embeddings,
            rms_norm_eps: r.rms_norm_eps,
            rope_theta: r.rope_theta,
            tie_word_embeddings: r.tie_word_embeddings,
            bos_token_id: r.bos_token_id,
            eos_token_id: r.eos_token_id,
            torch_dtype: r.torch_dtype.unwrap_or_else(|| "float32".to_owned()),
        }
    }
}

impl ModelConfig {
    /// Width of one attention head (`hidden_size / num_attention_heads`).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Number of weights, computed from the tensor shapes (embedding, per-layer attention,
    /// MLP and norms, final norm, and `lm_head` unless tied).
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let q = (self.head_dim() * self.num_attention_heads) as u64;
        let kv = (self.head_dim() * self.num_key_value_heads) as u64;
        let i = self.intermediate_size as u64;
        let v = self.vocab_size as u64;
        let attention = h * q + 2 * h * kv + q * h;
        let mlp = 3 * h * i;
        let norms = 2 * h;
        let per_layer = attention + mlp + norms;
        let lm_head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers as u64 * per_layer + h + lm_head
    }

    /// Checks that the configuration describes a Llama model the backends can run.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != "llama" {
            return Err(format!(
                "model_type `{}` is not supported (only `llama`)",
                self.model_type
            ));
        }
        if let Some(a) = self.architectures.iter().find(|a| *a != LLAMA_ARCH) {
            return Err(format!(
                "architecture `{a}` is not supported (only `{LLAMA_ARCH}`)"
            ));
        }
        // Upper bounds far above any published Llama (405B: hidden 16384, 126 layers): a config
        // beyond them is corrupt, and its tensor shapes would overflow before any check.
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, 1 << 22),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 19),
            ("num_hidden_layers", self.num_hidden_layers, 1 << 12),
            ("num_attention_heads", self.num_attention_heads, 1 << 12),
            ("num_key_value_heads", self.num_key_value_heads, 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
            if value > max {
                return Err(format!(
                    "{name} {value} is implausibly large (at most {max})"
                ));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head dimension {} is odd (RoPE needs it even)",
                self.head_dim()
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!(
                "rms_norm_eps {} must be positive",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta {} must be positive", self.rope_theta));
        }
        Ok(())
    }
}

/// The built-in model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BuiltinModel {
    /// About 0.1 M parameters, tied embeddings: unit tests run in milliseconds.
    #[serde(rename = "tiny")]
    Tiny,
    /// About 32 M parameters, untied: realistic CPU work.
    #[serde(rename = "small")]
    Small,
    /// Llama-3.2-1B shapes (1.24 B parameters, tied embeddings).
    #[serde(rename = "1b")]
    OneB,
    /// Llama-3-8B shapes (8.03 B parameters).
    #[serde(rename = "8b")]
    EightB,
}

impl BuiltinModel {
    /// Every built-in model, smallest first.
    pub const ALL: [BuiltinModel; 4] = [
        BuiltinModel::Tiny,
        BuiltinModel::Small,
        BuiltinModel::OneB,
        BuiltinModel::EightB,
    ];

    /// Short name as used in scenarios and cache directories (`tiny`, `small`, `1b`, `8b`).
    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::Tiny => "tiny",
            BuiltinModel::Small => "small",
            BuiltinModel::OneB => "1b",
            BuiltinModel::EightB => "8b",
        }
    }

    /// The model's configuration.
    pub fn config(self) -> ModelConfig {
        // (vocab, hidden, intermediate, layers, heads, kv heads, max positions, rope theta,
        //  tied embeddings, bos, eos); the types follow from the fields below.
        let (vocab, hidden, inter, layers, heads, kv_heads, max_pos, theta, tied, bos, eos) =
            match self {
                BuiltinModel::Tiny => (512, 64, 176, 2, 4, 2, 512, 10_000.0, true, 1, 2),
                BuiltinModel::Small => (8192, 512, 1408, 8, 8, 4, 2048, 10_000.0, false, 1, 2),
                BuiltinModel::OneB => (
                    128_256, 2048, 8192, 16, 32, 8, 131_072, 500_000.0, true, 128_000, 128_001,
                ),
                BuiltinModel::EightB => (
                    128_256, 4096, 14_336, 32, 32, 8, 8192, 500_000.0, false, 128_000, 128_001,
                ),
            };
        ModelConfig {
            architectures: vec![LLAMA_ARCH.to_owned()],
            model_type: "llama".to_owned(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            max_position_embeddings: max_pos,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            tie_word_embeddings: tied,
            bos_token_id: Some(bos),
            eos_token_id: Some(EosTokenId::Single(eos)),
            torch_dtype: "float32".to_owned(),
        }
    }

    /// Directory name of this model with `seed` inside a cache directory (`<name>-seed<seed>`).
    pub fn dir_name(self, seed: u64) -> String {
        format!("{}-seed{seed}", self.name())
    }
}

impl fmt::Display for BuiltinModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BuiltinModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuiltinModel::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown built-in model `{s}` (expected `tiny`, `small`, `1b` or `8b`)")
            })
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSource {
    /// A built-in model with seeded weights, materialised on demand in a cache directory.
    Builtin {
        /// Which size.
        model: BuiltinModel,
        /// Seed of the weights.
        seed: u64,
    },
    /// A directory holding a Hugging Face Llama checkpoint (`config.json` + `model.safetensors`).
    Dir(PathBuf),
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Builtin { model, seed } => write!(f, "{model} (seed {seed})"),
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Returns the directory holding `config.json` + `model.safetensors` for `source`: for a
/// built-in model `cache_dir/<name>-seed<seed>/`, materialised on first use; for a directory,
/// the directory itself once both files are found in it.
pub fn resolve(source: &ModelSource, cache_dir: &Path) -> Result<PathBuf, BackendError> {
    match source {
        ModelSource::Builtin { model, seed } => {
            materialize(*model, *seed, &cache_dir.join(model.dir_name(*seed)))
        }
        ModelSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(model_error(dir, "not a directory (or it does not exist)"));
            }
            if !dir.join(CONFIG_FILE).is_file() {
                return Err(model_error(
                    dir,
                    format!("no {CONFIG_FILE} in the directory"),
                ));
            }
            if !dir.join(WEIGHTS_FILE).is_file() {
                let sharded = dir.join("model.safetensors.index.json").is_file();
                return Err(model_error(
                    dir,
                    if sharded {
                        format!("no {WEIGHTS_FILE} in the directory (sharded checkpoints are not supported; merge the shards into one file)")
                    } else {
                        format!("no {WEIGHTS_FILE} in the directory")
                    },
                ));
            }
            Ok(dir.clone())
        }
    }
}

/// Reads and checks `dir/config.json`: it must exist, parse, and describe a supported Llama model.
pub fn load_config(dir: &Path) -> Result<ModelConfig, BackendError> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            model_error(
                &path,
                "missing (a model directory needs a Hugging Face config.json)",
            )
        } else {
            model_error(&path, format!("cannot read: {e}"))
        }
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| model_error(&path, format!("malformed JSON: {e}")))?;
    check_unsupported_fields(&value).map_err(|m| model_error(&path, m))?;
    let config: ModelConfig = serde_json::from_value(value)
        .map_err(|e| model_error(&path, format!("malformed Llama config: {e}")))?;
    config.validate().map_err(|m| model_error(&path, m))?;
    Ok(config)
}

/// Rejects Llama-family options that candle's Llama would silently ignore or misread.
fn check_unsupported_fields(value: &serde_json::Value) -> Result<(), String> {
    for flag in ["attention_bias", "mlp_bias"] {
        if value.get(flag).and_then(serde_json::Value::as_bool) == Some(true) {
            return Err(format!("`{flag}: true` is not supported"));
        }
    }
    if let Some(head_dim) = value.get("head_dim").and_then(serde_json::Value::as_u64) {
        let hidden = value.get("hidden_size").and_then(serde_json::Value::as_u64);
        let heads = value
            .get("num_attention_heads")
            .and_then(serde_json::Value::as_u64);
        if let (Some(hidden), Some(heads)) = (hidden, heads) {
            if heads == 0 || head_dim.checked_mul(heads) != Some(hidden) {
                return Err(format!(
                    "head_dim {head_dim} differs from hidden_size / num_attention_heads (not supported)"
                ));
            }
        }
    }
    if let Some(scaling) = value.get("rope_scaling").filter(|v| !v.is_null()) {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("default");
        if kind != "llama3" && kind != "default" {
            return Err(format!(
                "rope_scaling type `{kind}` is not supported (only `llama3`)"
            ));
        }
    }
    Ok(())
}

/// How a tensor's values are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Init {
    /// Uniform in `[-UNIFORM_BOUND, UNIFORM_BOUND)` from the tensor's own ChaCha20 stream.
    Uniform,
    /// All ones (RMSNorm weights).
    Ones,
}

/// One weight tensor of a Llama model: Hugging Face name, shape (`[out, in]` for linear layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) init: Init,
}

impl TensorSpec {
    pub(crate) fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every weight tensor of a model with configuration `config`, in file order.
pub(crate) fn tensor_specs(config: &ModelConfig) -> Vec<TensorSpec> {
    let h = config.hidden_size;
    let q = config.head_dim() * config.num_attention_heads;
    let kv = config.head_dim() * config.num_key_value_heads;
    let i = config.intermediate_size;
    let v = config.vocab_size;
    let spec = |name: String, shape: Vec<usize>, init| TensorSpec { name, shape, init };
    let mut specs = vec![spec(
        "model.embed_tokens.weight".into(),
        vec![v, h],
        Init::Uniform,
    )];
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        specs.extend([
            spec(format!("{p}.input_layernorm.weight"), vec![h], Init::Ones),
            spec(
                format!("{p}.self_attn.q_proj.weight"),
                vec![q, h],
                Init::Uniform,
            ),
            spec(
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, h],
                Init::Uniform,
            ),
            spec(
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, h],
                Init::Uniform,
            ),
            spec(
                format!("{p}.self_attn.o_proj.weight"),
                vec![h, q],
                Init::Uniform,
            ),
            spec(
                format!("{p}.post_attention_layernorm.weight"),
                vec![h],
                Init::Ones,
            ),
            spec(
                format!("{p}.mlp.gate_proj.weight"),
                vec![i, h],
                Init::Uniform,
            ),
            spec(format!("{p}.mlp.up_proj.weight"), vec![i, h], Init::Uniform),
            spec(
                format!("{p}.mlp.down_proj.weight"),
                vec![h, i],
                Init::Uniform,
            ),
        ]);
    }
    specs.push(spec("model.norm.weight".into(), vec![h], Init::Ones));
    if !config.tie_word_embeddings {
        specs.push(spec("lm_head.weight".into(), vec![v, h], Init::Uniform));
    }
    specs
}

/// The ChaCha20 stream of tensor `name` for model seed `seed`.
fn tensor_rng(seed: u64, name: &str) -> ChaCha20Rng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(name.as_bytes());
    ChaCha20Rng::from_seed(hasher.finalize().into())
}

/// Fills `out` with the next values of a uniform tensor stream.
fn fill_uniform(rng: &mut ChaCha20Rng, out: &mut [f32]) {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    for v in out {
        let u = (rng.next_u32() >> 8) as f32 * SCALE;
        *v = UNIFORM_BOUND * (2.0 * u - 1.0);
    }
}

/// The first `len` values of the uniformly initialised built-in tensor `name` for model seed
/// `seed` (see the module documentation for the exact recipe). Independent of every other tensor.
pub fn seeded_uniform(seed: u64, name: &str, len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    fill_uniform(&mut tensor_rng(seed, name), &mut out);
    out
}

/// Values per chunk when streaming a tensor to disk (1 MiB of f32).
const CHUNK: usize = 1 << 18;

/// Streams the values of `spec` as little-endian f32 bytes to `w`, one chunk at a time.
fn write_tensor_values(w: &mut impl Write, seed: u64, spec: &TensorSpec) -> io::Result<()> {
    let mut rng = tensor_rng(seed, &spec.name);
    let mut values = vec![0f32; CHUNK.min(spec.elem_count())];
    let mut bytes = Vec::with_capacity(values.len() * 4);
    let mut left = spec.elem_count();
    while left > 0 {
        let n = left.min(CHUNK);
        let chunk = &mut values[..n];
        match spec.init {
            Init::Uniform => fill_uniform(&mut rng, chunk),
            Init::Ones => chunk.fill(1.0),
        }
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&bytes)?;
        left -= n;
    }
    Ok(())
}

/// The safetensors header of a built-in model, padded with spaces to a multiple of 8 bytes.
///
/// Written by hand (fixed key order) so the file bytes never depend on serde_json features.
fn safetensors_header(model: BuiltinModel, seed: u64, specs: &[TensorSpec]) -> Vec<u8> {
    let mut header = format!(
        "{{\"__metadata__\":{{\"format\":\"pt\",\"{META_MODEL}\":\"{}\",\"{META_SEED}\":\"{seed}\"}}",
        model.name()
    );
    let mut offset = 0u64;
    for spec in specs {
        let end = offset + 4 * spec.elem_count() as u64;
        let shape: Vec<String> = spec.shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            ",\"{}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            spec.name,
            shape.join(",")
        ));
        offset = end;
    }
    header.push('}');
    let mut bytes = header.into_bytes();
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    bytes
}

/// Size in bytes of the safetensors file of a built-in model.
fn expected_weights_len(model: BuiltinModel, seed: u64) -> u64 {
    let specs = tensor_specs(&model.config());
    let header = safetensors_header(model, seed, &specs);
    8 + header.len() as u64 + 4 * model.config().parameter_count()
}

/// Writes the f32 safetensors file of a built-in model to `path`, streaming (constant memory).
fn write_weights(model: BuiltinModel, seed: u64, path: &Path) -> io::Result<()> {
    let specs = tensor_specs(&model.config());
    let header = safetensors_header(model, seed, &specs);
    let file = File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(&header)?;
    for spec in &specs {
        write_tensor_values(&mut w, seed, spec)?;
    }
    w.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// Writes `config.json` and `model.safetensors` (f32) of a built-in model with weights seeded by
/// `seed` into `dir`, and returns `dir`.
///
/// The files are written into a temporary sibling directory which is then renamed to `dir`, so
/// `dir` is either absent or complete. When `dir` already holds both files of the same model and
/// seed it is reused as is; a non-empty `dir` holding anything else is an error (it is never
/// deleted). The 1b and 8b models take about 5 and 32 GB.
pub fn materialize(model: BuiltinModel, seed: u64, dir: &Path) -> Result<PathBuf, BackendError> {
    if dir.join(CONFIG_FILE).exists() || dir.join(WEIGHTS_FILE).exists() {
        check_materialized(model, seed, dir)?;
        return Ok(dir.to_path_buf());
    }
    if dir.is_dir()
        && fs::read_dir(dir)
            .map_err(|e| io_error(dir, e))?
            .next()
            .is_some()
    {
        return Err(model_error(
            dir,
            format!("exists and is not a materialised `{model}` model (remove it or choose another directory)"),
        ));
    }
    let file_name = dir
        .file_name()
        .ok_or_else(|| model_error(dir, "not a usable directory name"))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| io_error(&parent, e))?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        fs::create_dir(&tmp).map_err(|e| io_error(&tmp, e))?;
        let config = serde_json::to_string_pretty(&model.config())
            .map_err(|e| model_error(&tmp, format!("cannot serialise config: {e}")))?;
        let config_path = tmp.join(CONFIG_FILE);
        fs::write(&config_path, config + "\n").map_err(|e| io_error(&config_path, e))?;
        let weights_path = tmp.join(WEIGHTS_FILE);
        write_weights(model, seed, &weights_path).map_err(|e| io_error(&weights_path, e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            // Another process may have finished the same model first.
            if dir.join(CONFIG_FILE).exists() && check_materialized(model, seed, dir).is_ok() {
                Ok(dir.to_path_buf())
            } else {
                Err(io_error(dir, e))
            }
        }
    }
}

/// Checks that `dir` holds a complete materialisation of `model` with `seed`.
fn check_materialized(model: BuiltinModel, seed: u64, dir: &Path) -> Result<(), BackendError> {
    let config = load_config(dir)?;
    if config != model.config() {
        return Err(model_error(
            &dir.join(CONFIG_FILE),
            format!("does not match the built-in `{model}` configuration (remove the directory to regenerate it)"),
        ));
    }
    let weights = dir.join(WEIGHTS_FILE);
    let header = read_safetensors_header(&weights)?;
    let meta = |k: &str| header.metadata.get(k).map(String::as_str);
    if meta(META_MODEL) != Some(model.name()) || meta(META_SEED) != Some(&seed.to_string()) {
        return Err(model_error(
            &weights,
            format!("does not hold the built-in `{model}` weights with seed {seed} (remove the directory to regenerate it)"),
        ));
    }
    if header.file_len != expected_weights_len(model, seed) {
        return Err(model_error(
            &weights,
            format!(
                "has {} bytes instead of {} (incomplete or altered; remove the directory to regenerate it)",
                header.file_len,
                expected_weights_len(model, seed)
            ),
        ));
    }
    Ok(())
}

/// One tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorEntry {
    /// Safetensors dtype name (`F32`, `BF16`, …).
    pub(crate) dtype: String,
    pub(crate) shape: Vec<usize>,
    /// Absolute byte range of the data in the file.
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// The parsed header of a safetensors file.
#[derive(Debug, Clone)]
pub(crate) struct SafetensorsHeader {
    pub(crate) tensors: HashMap<String, TensorEntry>,
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) file_len: u64,
}

/// Reads and checks the header of the safetensors file at `path` (not the data).
pub(crate) fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, BackendError> {
    #[derive(Deserialize)]
    struct RawEntry {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: (u64, u64),
    }
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            model_error(path, "missing")
        } else {
            io_error(path, e)
        }
    })?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let bad = |m: String| model_error(path, format!("not a valid safetensors file: {m}"));
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|e| bad(format!("cannot read the header length: {e}")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100 << 20 || 8 + header_len > file_len {
        return Err(bad(format!("header length {header_len} is implausible")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let mut raw: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let metadata = match raw.remove("__metadata__") {
        Some(m) => serde_json::from_value(m).map_err(|e| bad(format!("__metadata__: {e}")))?,
        None => HashMap::new(),
    };
    let data_start = 8 + header_len;
    let mut tensors = HashMap::with_capacity(raw.len());
    for (name, value) in raw {
        let e: RawEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let (begin, end) = e.data_offsets;
        // Offsets come from the file: a header may claim anything, so no sum may wrap.
        let end_in_file = data_start.checked_add(end).filter(|&e| e <= file_len);
        let Some(end_in_file) = end_in_file.filter(|_| begin <= end) else {
            return Err(bad(format!(
                "tensor `{name}` has data offsets [{begin}, {end}] outside the file"
            )));
        };
        tensors.insert(
            name,
            TensorEntry {
                dtype: e.dtype,
                shape: e.shape,
                start: data_start + begin,
                end: end_in_file,
            },
        );
    }
    Ok(SafetensorsHeader {
        tensors,
        metadata,
        file_len,
    })
}

pub(crate) fn model_error(path: &Path, message: impl Into<String>) -> BackendError {
    BackendError::Model {
        path: path.display().to_string(),
        message: message.into(),
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> BackendError {
    BackendError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType as CDType, Device as CDevice};

    fn tiny_dir(seed: u64) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize(BuiltinModel::Tiny, seed, &tmp.path().join("tiny")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn builtin_names_round_trip() {
        for m in BuiltinModel::ALL {
            assert_eq!(m.name().parse::<BuiltinModel>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
            m.config().validate().unwrap();
        }
        assert!("2b".parse::<BuiltinModel>().unwrap_err().contains("2b"));
    }

    #[test]
    fn parameter_count_matches_tensor_shapes() {
        for m in [BuiltinModel::Tiny, BuiltinModel::Small] {
            let cfg = m.config();
            let sum: u64 = tensor_specs(&cfg)
                .iter()
                .map(|s| s.elem_count() as u64)
                .sum();
            assert_eq!(cfg.parameter_count(), sum, "{m}");
        }
        // Published sizes of the real models whose shapes these copy.
        assert_eq!(BuiltinModel::OneB.config().parameter_count(), 1_235_814_400);
        assert_eq!(
            BuiltinModel::EightB.config().parameter_count(),
            8_030_261_248
        );
        let small = BuiltinModel::Small.config().parameter_count();
        assert!((31_000_000..33_000_000).contains(&small), "{small}");
    }

    #[test]
    fn uniform_values_have_the_documented_distribution() {
        let v = seeded_uniform(7, "model.embed_tokens.weight", 100_000);
        assert!(v
            .iter()
            .all(|x| (-UNIFORM_BOUND..UNIFORM_BOUND).contains(x)));
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 5e-4, "{mean}");
        assert!((var.sqrt() - 0.02).abs() < 2e-4, "{}", var.sqrt());
        // Prefixes agree: the stream does not depend on how much is drawn.
        assert_eq!(seeded_uniform(7, "model.embed_tokens.weight", 10), v[..10]);
    }

    #[test]
    fn seeded_weights_are_deterministic() {
        let (_a, dir_a) = tiny_dir(1);
        let (_b, dir_b) = tiny_dir(1);
        let (_c, dir_c) = tiny_dir(2);
        let read = |d: &Path| fs::read(d.join(WEIGHTS_FILE)).unwrap();
        assert_eq!(read(&dir_a), read(&dir_b));
        assert_ne!(read(&dir_a), read(&dir_c));
        assert_eq!(
            fs::read(dir_a.join(CONFIG_FILE)).unwrap(),
            fs::read(dir_c.join(CONFIG_FILE)).unwrap()
        );
        // Different tensors of one model draw from different streams.
        assert_ne!(
            seeded_uniform(1, "model.layers.0.self_attn.q_proj.weight", 16),
            seeded_uniform(1, "model.layers.1.self_attn.q_proj.weight", 16)
        );
    }

    #[test]
    fn tensor_values_do_not_depend_on_generation_order() {
        let (_t, dir) = tiny_dir(3);
        let loaded = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &CDevice::Cpu).unwrap();
        let cfg = BuiltinModel::Tiny.config();
        // Regenerate every tensor on its own, last first, and compare with the file.
        for spec in tensor_specs(&cfg).iter().rev() {
            let t = &loaded[&spec.name];
            assert_eq!(t.dims(), spec.shape.as_slice(), "{}", spec.name);
            assert_eq!(t.dtype(), CDType::F32);
            let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = match spec.init {
                Init::Uniform => seeded_uniform(3, &spec.name, spec.elem_count()),
                Init::Ones => vec![1.0; spec.elem_count()],
            };
            assert_eq!(got, want, "{}", spec.name);
        }
        assert!(!loaded.contains_key("lm_head.weight"), "tiny is tied");
        assert_eq!(loaded.len(), tensor_specs(&cfg).len());
    }

    #[test]
    fn materialize_writes_loadable_files_and_reuses_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache").join("tiny-seed5");
        let got = materialize(BuiltinModel::Tiny, 5, &dir).unwrap();
        assert_eq!(got, dir);
        assert_eq!(load_config(&dir).unwrap(), BuiltinModel::Tiny.config());
        let header = read_safetensors_header(&dir.join(WEIGHTS_FILE)).unwrap();
        assert_eq!(header.file_len, expected_weights_len(BuiltinModel::Tiny, 5));
        // No temporary directories are left behind.
        let siblings: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert_eq!(siblings.len(), 1);

        // Reuse: the files are not rewritten.
        let modified = fs::metadata(dir.join(WEIGHTS_FILE))
            .unwrap()
            .modified()
            .unwrap();
        materialize(BuiltinModel::Tiny, 5, &dir).unwrap();
        let again = fs::metadata(dir.join(WEIGHTS_FILE))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(modified, again);

        // The same directory cannot silently stand for another seed or model.
        let err = materialize(BuiltinModel::Tiny, 6, &dir).unwrap_err();
        assert!(err.to_string().contains("seed 6"), "{err}");
        let err = materialize(BuiltinModel::Small, 5, &dir).unwrap_err();
        assert!(matches!(err, BackendError::Model { .. }), "{err}");

        // Damaged weights files are detected, not reused.
        let weights = dir.join(WEIGHTS_FILE);
        let bytes = fs::read(&weights).unwrap();
        fs::write(&weights, [bytes.as_slice(), &[0; 4]].concat()).unwrap();
        let err = materialize(BuiltinModel::Tiny, 5, &dir).unwrap_err();
        assert!(err.to_string().contains("instead of"), "{err}");
        fs::write(&weights, &bytes[..bytes.len() - 4]).unwrap();
        let err = materialize(BuiltinModel::Tiny, 5, &dir).unwrap_err();
        assert!(err.to_string().contains("outside the file"), "{err}");

        // A non-empty foreign directory is refused, and left alone.
        let foreign = tmp.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "keep me").unwrap();
        assert!(materialize(BuiltinModel::Tiny, 5, &foreign).is_err());
        assert!(foreign.join("notes.txt").exists());
    }

    #[test]
    fn resolve_builtin_and_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let source = ModelSource::Builtin {
            model: BuiltinModel::Tiny,
            seed: 9,
        };
        let dir = resolve(&source, tmp.path()).unwrap();
        assert_eq!(dir, tmp.path().join("tiny-seed9"));
        assert!(dir.join(CONFIG_FILE).is_file() && dir.join(WEIGHTS_FILE).is_file());
        assert_eq!(resolve(&source, tmp.path()).unwrap(), dir);
        assert_eq!(
            resolve(&ModelSource::Dir(dir.clone()), tmp.path()).unwrap(),
            dir
        );

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let err = resolve(&ModelSource::Dir(empty.clone()), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no config.json"), "{err}");
        fs::copy(dir.join(CONFIG_FILE), empty.join(CONFIG_FILE)).unwrap();
        let err = resolve(&ModelSource::Dir(empty), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no model.safetensors"), "{err}");
        let err = resolve(&ModelSource::Dir(tmp.path().join("absent")), tmp.path()).unwrap_err();
        assert!(matches!(err, BackendError::Model { .. }), "{err}");
    }

    #[test]
    fn load_config_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CONFIG_FILE);
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("missing"),
            "{err}"
        );

        fs::write(&path, "{ not json").unwrap();
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("malformed"),
            "{err}"
        );

        let mut value = serde_json::to_value(BuiltinModel::Tiny.config()).unwrap();
        value["architectures"] = serde_json::json!(["MistralForCausalLM"]);
        fs::write(&path, value.to_string()).unwrap();
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("MistralForCausalLM"), "{err}");

        let mut value = serde_json::to_value(BuiltinModel::Tiny.config()).unwrap();
        value["model_type"] = serde_json::json!("gpt2");
        fs::write(&path, value.to_string()).unwrap();
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("gpt2"), "{err}");

        let mut value = serde_json::to_value(BuiltinModel::Tiny.config()).unwrap();
        value["attention_bias"] = serde_json::json!(true);
        fs::write(&path, value.to_string()).unwrap();
        assert!(load_config(tmp.path()).is_err());
    }

    #[test]
    fn implausible_configs_and_headers_are_errors_not_overflows() {
        let tmp = tempfile::tempdir().unwrap();
        let mut value = serde_json::to_value(BuiltinModel::Tiny.config()).unwrap();
        value["num_hidden_layers"] = serde_json::json!(1u64 << 40);
        fs::write(tmp.path().join(CONFIG_FILE), value.to_string()).unwrap();
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("implausibly large"), "{err}");

        let mut value = serde_json::to_value(BuiltinModel::Tiny.config()).unwrap();
        value["head_dim"] = serde_json::json!(u64::MAX);
        fs::write(tmp.path().join(CONFIG_FILE), value.to_string()).unwrap();
        let err = load_config(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("head_dim"), "{err}");

        let header =
            br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        let path = tmp.path().join(WEIGHTS_FILE);
        fs::write(&path, bytes).unwrap();
        let err = read_safetensors_header(&path).unwrap_err().to_string();
        assert!(err.contains("outside the file"), "{err}");
    }

    #[test]
    fn hugging_face_style_config_parses() {
        // The shape of a real Llama-3.2 config.json: list-valued eos, rope_scaling, extras.
        let text = r#"{
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 64, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0, "tie_word_embeddings": true, "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "attention_bias": false, "mlp_bias": false, "hidden_act": "silu"
        }"#;
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(CONFIG_FILE), text).unwrap();
        let cfg = load_config(tmp.path()).unwrap();
        assert_eq!(
            cfg.eos_token_id,
            Some(EosTokenId::Multiple(vec![128001, 128008, 128009]))
        );
        assert_eq!(cfg.torch_dtype, "bfloat16");
        assert_eq!(
            cfg.parameter_count(),
            BuiltinModel::OneB.config().parameter_count()
        );

        // Missing optional fields take Hugging Face's defaults.
        let minimal = r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}"#;
        let cfg: ModelConfig = serde_json::from_str(minimal).unwrap();
        assert_eq!(cfg.num_key_value_heads, 2);
        assert_eq!(cfg.rope_theta, 10_000.0);
        assert!(!cfg.tie_word_embeddings);
    }
}
