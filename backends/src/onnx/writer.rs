//! Writes `model.onnx` from a Hugging Face Llama directory (`config.json` + `model.safetensors`)
//! and reads the top-level fields of an ONNX file without loading its graph.
//!
//! Every weight of the safetensors file becomes an initializer of the same name holding the same
//! f32 values bit for bit (`raw_data`, little endian; f16, bf16 and f64 checkpoints are widened
//! or narrowed to f32 once). Models whose weights exceed [`EXTERNAL_DATA_AUTO_BYTES`] keep them in
//! `model.onnx_data` beside the graph (protobuf caps a message at 2 GiB), page-aligned.
//!
//! The graph, per layer, mirrors candle-transformers 0.11's `llama.rs` operation by operation:
//! RMSNorm as `x / sqrt(mean(x²) + eps) · w`; linear layers as `Gemm` with `transB = 1` on the
//! stored `[out, in]` weights; RoPE from cos/sin tables computed exactly as candle computes them
//! (f32 `pos · inv_freq`, llama3 frequency scaling when configured) and gathered by
//! `position_ids`, applied rotate-half style; attention scores scaled by `1/sqrt(head_dim)`,
//! masked (causal over past + current positions, and `attention_mask`), softmax over keys;
//! query head `h` reads key/value head `h / (heads / kv_heads)`; SwiGLU MLP `down(silu(gate) ·
//! up)`; final RMSNorm and `lm_head` (the embedding when tied). Masked scores get `f32::MIN`
//! rather than `-inf`, so a fully padded row yields zeros, not NaN; unpadded rows are unchanged.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use sha2::{Digest, Sha256};

use super::names;
use super::proto::{
    attribute_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, DATA_LOCATION_EXTERNAL, DATA_TYPE_BOOL, DATA_TYPE_FLOAT,
    DATA_TYPE_INT64,
};
use crate::model::{
    io_error, load_config, model_error, read_safetensors_header, tensor_specs, TensorEntry,
    CONFIG_FILE, WEIGHTS_FILE,
};
use crate::{BackendError, ModelConfig};

/// File name of the ONNX model inside a model directory.
pub const ONNX_FILE: &str = "model.onnx";
/// File name of the external weights of a large ONNX model (Optimum's name for it).
pub const ONNX_DATA_FILE: &str = "model.onnx_data";
/// ONNX IR version written. ONNX Runtime 1.31 refuses IR 14 (the `onnx` 1.23 Python package's
/// default); IR 8 is the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// `ai.onnx` opset version written.
pub const OPSET_VERSION: i64 = 17;
/// `producer_name` of written models.
pub const PRODUCER_NAME: &str = "tcobench";
/// Revision of the graph this writer emits; bumped whenever the graph changes, so
/// [`ensure_onnx`] rewrites files written by an older revision.
pub const WRITER_REVISION: u32 = 1;
/// Weights above this many bytes go to [`ONNX_DATA_FILE`] under [`ExternalData::Auto`] (1 GiB:
/// below protobuf's 2 GiB message limit with room for the graph).
pub const EXTERNAL_DATA_AUTO_BYTES: u64 = 1 << 30;

/// Metadata keys of written models.
const META_REVISION: &str = "tcobench.writer_revision";
const META_FINGERPRINT: &str = "tcobench.source_fingerprint";
const META_KV_CACHE: &str = "tcobench.kv_cache";

/// Alignment of tensors in the external data file (the page size, so ONNX Runtime can map them).
const EXTERNAL_ALIGN: u64 = 4096;

/// Where initializer data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalData {
    /// Inline up to [`EXTERNAL_DATA_AUTO_BYTES`] of weights, external above.
    #[default]
    Auto,
    /// Always inside `model.onnx` (fails beyond protobuf's 2 GiB limit).
    Inline,
    /// Always in [`ONNX_DATA_FILE`].
    External,
}

/// How [`write_onnx_with`] writes a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxExportOptions {
    /// Whether the graph has `past_key_values.*` inputs and `present.*` outputs. Without, every
    /// step re-runs the whole sequence (like an Optimum export with `use_cache=False`).
    pub kv_cache: bool,
    /// Where the weights go.
    pub external_data: ExternalData,
}

impl Default for OnnxExportOptions {
    fn default() -> Self {
        OnnxExportOptions {
            kv_cache: true,
            external_data: ExternalData::Auto,
        }
    }
}

/// Writes `model_dir/model.onnx` (and `model.onnx_data` for large models) from
/// `model_dir/config.json` + `model_dir/model.safetensors`, with a key/value cache, and returns
/// the path of `model.onnx`. Replaces an existing file atomically.
pub fn write_onnx(model_dir: &Path) -> Result<PathBuf, BackendError> {
    write_onnx_with(
        model_dir,
        &model_dir.join(ONNX_FILE),
        &OnnxExportOptions::default(),
    )
}

/// Returns `model_dir/model.onnx`, writing it (with a key/value cache) first when it is missing,
/// damaged, or was written by this tool from other weights, without a cache, or by an older
/// writer revision. A `model.onnx` from another producer (a user's own Optimum export), or one of
/// ours in a directory without `model.safetensors` to rewrite it from, is used as it is.
pub fn ensure_onnx(model_dir: &Path) -> Result<PathBuf, BackendError> {
    let path = model_dir.join(ONNX_FILE);
    if path.is_file() {
        let fresh = match read_onnx_info(&path) {
            Ok(info) if info.producer_name.as_deref() != Some(PRODUCER_NAME) => true,
            Ok(_) if !model_dir.join(WEIGHTS_FILE).is_file() => true,
            Ok(info) => {
                let fingerprint = source_fingerprint(model_dir)?;
                info.metadata(META_REVISION) == Some(&WRITER_REVISION.to_string())
                    && info.metadata(META_FINGERPRINT) == Some(&fingerprint)
                    && info.metadata(META_KV_CACHE) == Some("true")
            }
            // A damaged file of ours is rewritten, not reported.
            Err(_) => false,
        };
        if fresh {
            return Ok(path);
        }
    }
    write_onnx(model_dir)
}

/// Writes the ONNX model of `model_dir` (`config.json` + `model.safetensors`) to `out` (its
/// external data, if any, to [`ONNX_DATA_FILE`] beside `out`) and returns `out`.
///
/// Files are written under temporary names and renamed into place, data file first, so a reader
/// never sees a partial model and concurrent writers of the same model are harmless.
pub fn write_onnx_with(
    model_dir: &Path,
    out: &Path,
    options: &OnnxExportOptions,
) -> Result<PathBuf, BackendError> {
    let config = load_config(model_dir)?;
    let rope = read_rope_scaling(&model_dir.join(CONFIG_FILE))?;
    let weights_path = model_dir.join(WEIGHTS_FILE);
    let plan = plan_weights(&weights_path, &config)?;
    let weight_bytes: u64 = plan.iter().map(|w| 4 * w.elem_count as u64).sum();
    let external = match options.external_data {
        ExternalData::Auto => weight_bytes > EXTERNAL_DATA_AUTO_BYTES,
        ExternalData::Inline => false,
        ExternalData::External => true,
    };
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&out_dir).map_err(|e| io_error(&out_dir, e))?;

    let mut temps = TempFiles::default();
    let result = (|| {
        let mut graph = GraphBuilder::default();
        let data_path = out_dir.join(ONNX_DATA_FILE);
        let mut sink = if external {
            let tmp = temps.name_for(&data_path);
            let file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
            WeightSink::External {
                writer: BufWriter::with_capacity(1 << 20, file),
                offset: 0,
                path: tmp,
            }
        } else {
            WeightSink::Inline
        };
        let mut source = File::open(&weights_path).map_err(|e| io_error(&weights_path, e))?;
        for weight in &plan {
            let bytes = read_weight_f32_le(&mut source, &weights_path, weight)?;
            graph.initializers.push(sink.tensor(weight, bytes)?);
        }
        if let WeightSink::External { writer, path, .. } = sink {
            let file = writer
                .into_inner()
                .map_err(|e| io_error(&path, e.into_error()))?;
            file.sync_all().map_err(|e| io_error(&path, e))?;
        }

        build_graph(&mut graph, &config, &rope, options.kv_cache);
        let model = ModelProto {
            ir_version: Some(IR_VERSION),
            producer_name: Some(PRODUCER_NAME.to_owned()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            domain: None,
            model_version: Some(1),
            doc_string: Some(format!(
                "Llama decoder ({} layers, hidden {}, vocab {}) written from {WEIGHTS_FILE}",
                config.num_hidden_layers, config.hidden_size, config.vocab_size
            )),
            graph: Some(graph.finish(&config, options.kv_cache)),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET_VERSION),
            }],
            metadata_props: vec![
                entry(META_REVISION, &WRITER_REVISION.to_string()),
                entry(META_FINGERPRINT, &source_fingerprint(model_dir)?),
                entry(META_KV_CACHE, &options.kv_cache.to_string()),
            ],
        };
        let bytes = model.encode_to_vec();
        let tmp = temps.name_for(out);
        write_synced(&tmp, &bytes)?;
        if external {
            temps.commit(&data_path)?;
        }
        temps.commit(out)?;
        Ok(out.to_path_buf())
    })();
    temps.clean();
    result
}

/// Temporary files of one write, renamed into place on commit and removed otherwise.
#[derive(Default)]
struct TempFiles {
    pending: Vec<(PathBuf, PathBuf)>,
}

impl TempFiles {
    /// A unique temporary sibling of `target`, remembered for [`TempFiles::commit`].
    fn name_for(&mut self, target: &Path) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = target.with_file_name(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        self.pending.push((target.to_path_buf(), tmp.clone()));
        tmp
    }

    fn commit(&mut self, target: &Path) -> Result<(), BackendError> {
        let i = self
            .pending
            .iter()
            .position(|(t, _)| t == target)
            .expect("commit of a file that has a temporary name");
        let (target, tmp) = self.pending.remove(i);
        fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))
    }

    fn clean(self) {
        for (_, tmp) in self.pending {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackendError> {
    let mut file = File::create(path).map_err(|e| io_error(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// SHA-256 over `config.json`, the safetensors header and the safetensors file length: cheap
/// (the weights are not read) and changes whenever a model directory is replaced.
fn source_fingerprint(model_dir: &Path) -> Result<String, BackendError> {
    let config_path = model_dir.join(CONFIG_FILE);
    let config = fs::read(&config_path).map_err(|e| io_error(&config_path, e))?;
    let weights = model_dir.join(WEIGHTS_FILE);
    let mut file = File::open(&weights).map_err(|e| io_error(&weights, e))?;
    let file_len = file.metadata().map_err(|e| io_error(&weights, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| io_error(&weights, e))?;
    let header_len = u64::from_le_bytes(len).min(file_len.saturating_sub(8));
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| io_error(&weights, e))?;
    let mut hasher = Sha256::new();
    hasher.update((config.len() as u64).to_le_bytes());
    hasher.update(&config);
    hasher.update(header);
    hasher.update(file_len.to_le_bytes());
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.to_owned()),
        value: Some(value.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Weights

/// One weight to copy: its name, shape and where its bytes are.
struct PlannedWeight {
    name: String,
    shape: Vec<usize>,
    elem_count: usize,
    entry: TensorEntry,
    dtype: SourceDType,
}

/// Float dtypes a checkpoint may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceDType {
    F32,
    F16,
    BF16,
    F64,
}

impl SourceDType {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(SourceDType::F32),
            "F16" => Some(SourceDType::F16),
            "BF16" => Some(SourceDType::BF16),
            "F64" => Some(SourceDType::F64),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            SourceDType::F32 => 4,
            SourceDType::F16 | SourceDType::BF16 => 2,
            SourceDType::F64 => 8,
        }
    }
}

/// Checks every tensor the config needs against the safetensors header (presence, shape, dtype,
/// byte length) before anything is written.
fn plan_weights(path: &Path, config: &ModelConfig) -> Result<Vec<PlannedWeight>, BackendError> {
    let header = read_safetensors_header(path)?;
    tensor_specs(config)
        .into_iter()
        .map(|spec| {
            let entry = header
                .tensors
                .get(&spec.name)
                .ok_or_else(|| model_error(path, format!("tensor `{}` is missing", spec.name)))?
                .clone();
            if entry.shape != spec.shape {
                return Err(model_error(
                    path,
                    format!(
                        "tensor `{}` has shape {:?}, the config implies {:?}",
                        spec.name, entry.shape, spec.shape
                    ),
                ));
            }
            let dtype = SourceDType::parse(&entry.dtype).ok_or_else(|| {
                model_error(
                    path,
                    format!(
                        "tensor `{}` has unsupported dtype {} (expected F32, F16, BF16 or F64)",
                        spec.name, entry.dtype
                    ),
                )
            })?;
            let want = (spec.elem_count() * dtype.size()) as u64;
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
            Ok(PlannedWeight {
                elem_count: spec.elem_count(),
                name: spec.name,
                shape: spec.shape,
                entry,
                dtype,
            })
        })
        .collect()
}

/// The values of `weight` as little-endian f32 bytes (the stored bytes themselves for F32).
fn read_weight_f32_le(
    file: &mut File,
    path: &Path,
    weight: &PlannedWeight,
) -> Result<Vec<u8>, BackendError> {
    let mut raw = vec![0u8; (weight.entry.end - weight.entry.start) as usize];
    file.seek(SeekFrom::Start(weight.entry.start))
        .and_then(|_| file.read_exact(&mut raw))
        .map_err(|e| io_error(path, e))?;
    Ok(match weight.dtype {
        SourceDType::F32 => raw,
        SourceDType::BF16 => raw
            .chunks_exact(2)
            .flat_map(|b| {
                f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16).to_le_bytes()
            })
            .collect(),
        SourceDType::F16 => raw
            .chunks_exact(2)
            .flat_map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])).to_le_bytes())
            .collect(),
        SourceDType::F64 => raw
            .chunks_exact(8)
            .flat_map(|b| {
                let v = f64::from_le_bytes(b.try_into().expect("chunks of 8"));
                (v as f32).to_le_bytes()
            })
            .collect(),
    })
}

/// IEEE binary16 to f32 (exact: every half value is representable).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise the mantissa.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Where initializer bytes go.
enum WeightSink {
    Inline,
    External {
        writer: BufWriter<File>,
        offset: u64,
        path: PathBuf,
    },
}

impl WeightSink {
    fn tensor(
        &mut self,
        weight: &PlannedWeight,
        bytes: Vec<u8>,
    ) -> Result<TensorProto, BackendError> {
        let mut tensor = TensorProto {
            dims: weight.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DATA_TYPE_FLOAT),
            name: Some(weight.name.clone()),
            ..TensorProto::default()
        };
        match self {
            WeightSink::Inline => tensor.raw_data = Some(bytes),
            WeightSink::External {
                writer,
                offset,
                path,
            } => {
                let start = offset.div_ceil(EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
                let pad = (start - *offset) as usize;
                writer
                    .write_all(&vec![0u8; pad])
                    .and_then(|()| writer.write_all(&bytes))
                    .map_err(|e| io_error(path, e))?;
                *offset = start + bytes.len() as u64;
                tensor.data_location = Some(DATA_LOCATION_EXTERNAL);
                tensor.external_data = vec![
                    entry("location", ONNX_DATA_FILE),
                    entry("offset", &start.to_string()),
                    entry("length", &bytes.len().to_string()),
                ];
            }
        }
        Ok(tensor)
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// `rope_scaling` of type `llama3`, as candle reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Llama3Scaling {
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_max_position_embeddings: usize,
}

/// Reads the optional llama3 `rope_scaling` of `config.json` (`load_config` has already checked
/// that any other scaling type is absent).
fn read_rope_scaling(path: &Path) -> Result<Option<Llama3Scaling>, BackendError> {
    let text = fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| model_error(path, format!("malformed JSON: {e}")))?;
    let Some(scaling) = value.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default");
    if kind != "llama3" {
        return Ok(None);
    }
    let number = |key: &str| {
        scaling
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| {
                model_error(
                    path,
                    format!("rope_scaling.{key} is missing or not a number"),
                )
            })
    };
    Ok(Some(Llama3Scaling {
        factor: number("factor")? as f32,
        low_freq_factor: number("low_freq_factor")? as f32,
        high_freq_factor: number("high_freq_factor")? as f32,
        original_max_position_embeddings: number("original_max_position_embeddings")? as usize,
    }))
}

/// RoPE inverse frequencies, in f32 exactly as candle-transformers' `llama.rs` computes them.
fn inv_freq(config: &ModelConfig, scaling: &Option<Llama3Scaling>) -> Vec<f32> {
    let head_dim = config.head_dim();
    let theta = config.rope_theta as f32;
    let base = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / theta.powf(i as f32 / head_dim as f32));
    match scaling {
        None => base.collect(),
        Some(s) => {
            let original = s.original_max_position_embeddings as f32;
            let low_freq_wavelen = original / s.low_freq_factor;
            let high_freq_wavelen = original / s.high_freq_factor;
            base.map(|freq| {
                let wavelen = 2. * std::f32::consts::PI / freq;
                if wavelen < high_freq_wavelen {
                    freq
                } else if wavelen > low_freq_wavelen {
                    freq / s.factor
                } else {
                    let smooth = (original / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1. - smooth) * freq / s.factor + smooth * freq
                }
            })
            .collect()
        }
    }
}

/// Cos and sin tables `[max_position_embeddings, head_dim / 2]` as little-endian f32 bytes.
fn rope_tables(config: &ModelConfig, scaling: &Option<Llama3Scaling>) -> (Vec<u8>, Vec<u8>) {
    let freqs = inv_freq(config, scaling);
    let n = config.max_position_embeddings * freqs.len() * 4;
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for pos in 0..config.max_position_embeddings {
        for &f in &freqs {
            let angle = pos as f32 * f;
            cos.extend(angle.cos().to_le_bytes());
            sin.extend(angle.sin().to_le_bytes());
        }
    }
    (cos, sin)
}

// ---------------------------------------------------------------------------------------------
// Graph

/// Accumulates nodes and initializers with unique value names.
#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    constants: HashSet<String>,
    next_id: usize,
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        i: Some(value),
        r#type: Some(attribute_type::INT),
        ..AttributeProto::default()
    }
}

fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        ints: values.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..AttributeProto::default()
    }
}

impl GraphBuilder {
    /// Adds a node `op_type(inputs)` with one output named `<scope>/<op_type>_<n>`.
    fn op(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{scope}/{op_type}_{}", self.next_id);
        self.next_id += 1;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![name.clone()],
            name: Some(name.clone()),
            op_type: Some(op_type.to_owned()),
            attribute: attrs,
            ..NodeProto::default()
        });
        name
    }

    /// Like [`GraphBuilder::op`], with the output named `output` (a graph output).
    fn op_to(&mut self, output: &str, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: Some(format!("{output}/{op_type}")),
            op_type: Some(op_type.to_owned()),
            attribute: attrs,
            ..NodeProto::default()
        });
    }

    fn constant(&mut self, name: String, tensor: impl FnOnce(String) -> TensorProto) -> String {
        if self.constants.insert(name.clone()) {
            self.initializers.push(tensor(name.clone()));
        }
        name
    }

    /// A 1-D int64 constant.
    fn ints(&mut self, values: &[i64]) -> String {
        let key: Vec<String> = values
            .iter()
            .map(|v| v.to_string().replace('-', "m"))
            .collect();
        self.constant(format!("const.i64s.{}", key.join("_")), |name| {
            TensorProto {
                dims: vec![values.len() as i64],
                data_type: Some(DATA_TYPE_INT64),
                name: Some(name),
                raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                ..TensorProto::default()
            }
        })
    }

    /// A scalar int64 constant.
    fn int(&mut self, value: i64) -> String {
        self.constant(
            format!("const.i64.{}", value.to_string().replace('-', "m")),
            |name| TensorProto {
                dims: vec![],
                data_type: Some(DATA_TYPE_INT64),
                name: Some(name),
                raw_data: Some(value.to_le_bytes().to_vec()),
                ..TensorProto::default()
            },
        )
    }

    /// A scalar f32 constant.
    fn float(&mut self, label: &str, value: f32) -> String {
        self.constant(format!("const.f32.{label}"), |name| TensorProto {
            dims: vec![],
            data_type: Some(DATA_TYPE_FLOAT),
            name: Some(name),
            raw_data: Some(value.to_le_bytes().to_vec()),
            ..TensorProto::default()
        })
    }

    /// `x / sqrt(mean(x², last axis) + eps) · weight`, in the pattern ONNX Runtime fuses into
    /// its `SimplifiedLayerNormalization` kernel.
    fn rms_norm(&mut self, scope: &str, x: &str, weight: &str, eps: &str) -> String {
        let two = self.float("2", 2.0);
        let sq = self.op(scope, "Pow", &[x, &two], vec![]);
        let mean = self.op(
            scope,
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
        );
        let var = self.op(scope, "Add", &[&mean, eps], vec![]);
        let rms = self.op(scope, "Sqrt", &[&var], vec![]);
        let normed = self.op(scope, "Div", &[x, &rms], vec![]);
        self.op(scope, "Mul", &[&normed, weight], vec![])
    }

    /// `x · weightᵀ` for a `[rows, in]` activation and an `[out, in]` weight.
    fn linear(&mut self, scope: &str, x: &str, weight: &str) -> String {
        self.op(scope, "Gemm", &[x, weight], vec![attr_int("transB", 1)])
    }

    /// Rotate-half RoPE of `x` `[b, heads, s, head_dim]` with `cos`/`sin` `[b, 1, s, head_dim]`.
    fn rope(&mut self, scope: &str, x: &str, cos: &str, sin: &str, head_dim: i64) -> String {
        let half = head_dim / 2;
        let (zero, mid, end, axis) = (
            self.ints(&[0]),
            self.ints(&[half]),
            self.ints(&[head_dim]),
            self.ints(&[3]),
        );
        let x1 = self.op(scope, "Slice", &[x, &zero, &mid, &axis], vec![]);
        let x2 = self.op(scope, "Slice", &[x, &mid, &end, &axis], vec![]);
        let neg_x2 = self.op(scope, "Neg", &[&x2], vec![]);
        let rotated = self.op(scope, "Concat", &[&neg_x2, &x1], vec![attr_int("axis", 3)]);
        let a = self.op(scope, "Mul", &[x, cos], vec![]);
        let b = self.op(scope, "Mul", &[&rotated, sin], vec![]);
        self.op(scope, "Add", &[&a, &b], vec![])
    }

    fn finish(self, config: &ModelConfig, kv_cache: bool) -> GraphProto {
        let kv = Dim::Fixed(config.num_key_value_heads as i64);
        let hd = Dim::Fixed(config.head_dim() as i64);
        let (batch, seq, past, total) = (
            Dim::Sym("batch_size"),
            Dim::Sym("sequence_length"),
            Dim::Sym("past_sequence_length"),
            Dim::Sym("total_sequence_length"),
        );
        let mask_len = if kv_cache { total } else { seq };
        let mut input = vec![
            value_info(names::INPUT_IDS, DATA_TYPE_INT64, &[batch, seq]),
            value_info(names::ATTENTION_MASK, DATA_TYPE_INT64, &[batch, mask_len]),
            value_info(names::POSITION_IDS, DATA_TYPE_INT64, &[batch, seq]),
        ];
        let mut output = vec![value_info(
            names::LOGITS,
            DATA_TYPE_FLOAT,
            &[batch, seq, Dim::Fixed(config.vocab_size as i64)],
        )];
        if kv_cache {
            for layer in 0..config.num_hidden_layers {
                for name in [names::past_key(layer), names::past_value(layer)] {
                    input.push(value_info(&name, DATA_TYPE_FLOAT, &[batch, kv, past, hd]));
                }
                for name in [names::present_key(layer), names::present_value(layer)] {
                    output.push(value_info(&name, DATA_TYPE_FLOAT, &[batch, kv, total, hd]));
                }
            }
        }
        GraphProto {
            node: self.nodes,
            name: Some("llama_decoder".to_owned()),
            initializer: self.initializers,
            doc_string: None,
            input,
            output,
            value_info: vec![],
        }
    }
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
enum Dim {
    Fixed(i64),
    Sym(&'static str),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_owned()),
            }),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// Adds the decoder's nodes (and its non-weight constants) to `g`, whose initializers already
/// hold the weights under their Hugging Face names.
fn build_graph(
    g: &mut GraphBuilder,
    config: &ModelConfig,
    rope_scaling: &Option<Llama3Scaling>,
    kv_cache: bool,
) {
    let hidden = config.hidden_size as i64;
    let heads = config.num_attention_heads as i64;
    let kv_heads = config.num_key_value_heads as i64;
    let head_dim = config.head_dim() as i64;
    let n_rep = heads / kv_heads;
    let vocab = config.vocab_size as i64;

    // RoPE tables, gathered by position.
    let (cos_table, sin_table) = rope_tables(config, rope_scaling);
    for (name, bytes) in [("rope.cos", cos_table), ("rope.sin", sin_table)] {
        g.initializers.push(TensorProto {
            dims: vec![config.max_position_embeddings as i64, head_dim / 2],
            data_type: Some(DATA_TYPE_FLOAT),
            name: Some(name.to_owned()),
            raw_data: Some(bytes),
            ..TensorProto::default()
        });
    }
    let s = "rope";
    let axis1 = g.ints(&[1]);
    let rope_factor = |g: &mut GraphBuilder, table: &str| {
        let half = g.op(s, "Gather", &[table, names::POSITION_IDS], vec![]);
        let full = g.op(s, "Concat", &[&half, &half], vec![attr_int("axis", -1)]);
        g.op(s, "Unsqueeze", &[&full, &axis1], vec![])
    };
    let cos = rope_factor(g, "rope.cos");
    let sin = rope_factor(g, "rope.sin");

    // Mask bias [b, 1, 1, s, t]: 0 where query i (absolute position past + i) may attend key j
    // (j <= past + i and attention_mask[b, j] = 1), f32::MIN elsewhere.
    let s = "mask";
    let ids_shape = g.op(s, "Shape", &[names::INPUT_IDS], vec![]);
    let mask_shape = g.op(s, "Shape", &[names::ATTENTION_MASK], vec![]);
    let one = g.int(1);
    let zero = g.int(0);
    let seq_len = g.op(s, "Gather", &[&ids_shape, &one], vec![attr_int("axis", 0)]);
    let total_len = g.op(s, "Gather", &[&mask_shape, &one], vec![attr_int("axis", 0)]);
    let past_len = g.op(s, "Sub", &[&total_len, &seq_len], vec![]);
    let q_pos = g.op(s, "Range", &[&past_len, &total_len, &one], vec![]);
    let k_pos = g.op(s, "Range", &[&zero, &total_len, &one], vec![]);
    let axis0 = g.ints(&[0]);
    let k_row = g.op(s, "Unsqueeze", &[&k_pos, &axis0], vec![]);
    let q_col = g.op(s, "Unsqueeze", &[&q_pos, &axis1], vec![]);
    let causal = g.op(s, "LessOrEqual", &[&k_row, &q_col], vec![]);
    let padding = g.op(
        s,
        "Cast",
        &[names::ATTENTION_MASK],
        vec![attr_int("to", i64::from(DATA_TYPE_BOOL))],
    );
    let axes123 = g.ints(&[1, 2, 3]);
    let padding = g.op(s, "Unsqueeze", &[&padding, &axes123], vec![]);
    let allowed = g.op(s, "And", &[&causal, &padding], vec![]);
    let open = g.float("0", 0.0);
    let closed = g.float("min", f32::MIN);
    let mask_bias = g.op(s, "Where", &[&allowed, &open, &closed], vec![]);

    // Shapes shared by every layer.
    let s = "shapes";
    let heads_hd = g.ints(&[heads, head_dim]);
    let kv_hd = g.ints(&[kv_heads, head_dim]);
    let q_shape = g.op(
        s,
        "Concat",
        &[&ids_shape, &heads_hd],
        vec![attr_int("axis", 0)],
    );
    let kv_shape = g.op(
        s,
        "Concat",
        &[&ids_shape, &kv_hd],
        vec![attr_int("axis", 0)],
    );
    let grouped = g.ints(&[0, kv_heads, n_rep, -1, head_dim]);
    let ungrouped = g.ints(&[0, heads, -1, head_dim]);
    let rows_hidden = g.ints(&[-1, hidden]);
    let vocab_dim = g.ints(&[vocab]);
    let logits_shape = g.op(
        s,
        "Concat",
        &[&ids_shape, &vocab_dim],
        vec![attr_int("axis", 0)],
    );
    let eps = g.float("rms_norm_eps", config.rms_norm_eps as f32);
    let scale = g.float("attention_scale", (1.0 / (head_dim as f64).sqrt()) as f32);
    let axis2 = g.ints(&[2]);

    // Embedding; the residual stream is [b·s, hidden].
    let s = "embed";
    let embedded = g.op(
        s,
        "Gather",
        &["model.embed_tokens.weight", names::INPUT_IDS],
        vec![],
    );
    let mut x = g.op(s, "Reshape", &[&embedded, &rows_hidden], vec![]);

    for layer in 0..config.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        let s = format!("layers.{layer}");
        let s = s.as_str();
        let w = |suffix: &str| format!("{p}.{suffix}");

        let h = g.rms_norm(s, &x, &w("input_layernorm.weight"), &eps);
        let q = g.linear(s, &h, &w("self_attn.q_proj.weight"));
        let k = g.linear(s, &h, &w("self_attn.k_proj.weight"));
        let v = g.linear(s, &h, &w("self_attn.v_proj.weight"));
        let perm = vec![attr_ints("perm", &[0, 2, 1, 3])];
        let q = g.op(s, "Reshape", &[&q, &q_shape], vec![]);
        let q = g.op(s, "Transpose", &[&q], perm.clone());
        let k = g.op(s, "Reshape", &[&k, &kv_shape], vec![]);
        let k = g.op(s, "Transpose", &[&k], perm.clone());
        let v = g.op(s, "Reshape", &[&v, &kv_shape], vec![]);
        let v = g.op(s, "Transpose", &[&v], perm.clone());
        let q = g.rope(s, &q, &cos, &sin, head_dim);
        let k = g.rope(s, &k, &cos, &sin, head_dim);

        let (k_all, v_all) = if kv_cache {
            let (pk, pv) = (names::past_key(layer), names::past_value(layer));
            let (ok, ov) = (names::present_key(layer), names::present_value(layer));
            g.op_to(&ok, "Concat", &[&pk, &k], vec![attr_int("axis", 2)]);
            g.op_to(&ov, "Concat", &[&pv, &v], vec![attr_int("axis", 2)]);
            (ok, ov)
        } else {
            (k, v)
        };

        // Grouped-query attention by broadcasting: queries [b, kv, rep, s, hd] against keys and
        // values [b, kv, 1, t, hd].
        let q = g.op(s, "Reshape", &[&q, &grouped], vec![]);
        let k = g.op(s, "Unsqueeze", &[&k_all, &axis2], vec![]);
        let k_t = g.op(
            s,
            "Transpose",
            &[&k],
            vec![attr_ints("perm", &[0, 1, 2, 4, 3])],
        );
        let v = g.op(s, "Unsqueeze", &[&v_all, &axis2], vec![]);
        let scores = g.op(s, "MatMul", &[&q, &k_t], vec![]);
        let scores = g.op(s, "Mul", &[&scores, &scale], vec![]);
        let scores = g.op(s, "Add", &[&scores, &mask_bias], vec![]);
        let probs = g.op(s, "Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let context = g.op(s, "MatMul", &[&probs, &v], vec![]);
        let context = g.op(s, "Reshape", &[&context, &ungrouped], vec![]);
        let context = g.op(s, "Transpose", &[&context], perm);
        let context = g.op(s, "Reshape", &[&context, &rows_hidden], vec![]);
        let attn = g.linear(s, &context, &w("self_attn.o_proj.weight"));
        x = g.op(s, "Add", &[&x, &attn], vec![]);

        let h = g.rms_norm(s, &x, &w("post_attention_layernorm.weight"), &eps);
        let gate = g.linear(s, &h, &w("mlp.gate_proj.weight"));
        let up = g.linear(s, &h, &w("mlp.up_proj.weight"));
        let sig = g.op(s, "Sigmoid", &[&gate], vec![]);
        let silu = g.op(s, "Mul", &[&gate, &sig], vec![]);
        let act = g.op(s, "Mul", &[&silu, &up], vec![]);
        let down = g.linear(s, &act, &w("mlp.down_proj.weight"));
        x = g.op(s, "Add", &[&x, &down], vec![]);
    }

    let s = "head";
    let h = g.rms_norm(s, &x, "model.norm.weight", &eps);
    let head = if config.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let logits = g.linear(s, &h, head);
    g.op_to(names::LOGITS, "Reshape", &[&logits, &logits_shape], vec![]);
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The top-level fields of an ONNX model file, read without decoding its graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxFileInfo {
    /// `ir_version`.
    pub ir_version: Option<i64>,
    /// `producer_name` (`tcobench` for files this crate wrote).
    pub producer_name: Option<String>,
    /// `producer_version`.
    pub producer_version: Option<String>,
    /// `opset_import` as (domain, version); the default domain is `""`.
    pub opset_import: Vec<(String, i64)>,
    /// `metadata_props` as (key, value).
    pub metadata_props: Vec<(String, String)>,
    /// Whether the file has a graph.
    pub has_graph: bool,
}

impl OnnxFileInfo {
    /// The value of metadata key `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata_props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the top-level fields of the ONNX file at `path`, skipping over the graph, and checks
/// that the protobuf framing of the file is intact (a truncated or non-ONNX file is an error
/// that names the file).
pub fn read_onnx_info(path: &Path) -> Result<OnnxFileInfo, BackendError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            model_error(path, "missing")
        } else {
            io_error(path, e)
        }
    })?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let bad = |m: String| model_error(path, format!("not a valid ONNX model file: {m}"));
    if file_len == 0 {
        return Err(bad("the file is empty".to_owned()));
    }
    let mut r = BufReader::new(file);
    let mut pos = 0u64;
    let mut info = OnnxFileInfo::default();
    while pos < file_len {
        let key = read_varint(&mut r, &mut pos).map_err(|e| bad(format!("at byte {pos}: {e}")))?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = read_varint(&mut r, &mut pos)
                    .map_err(|e| bad(format!("field {field}: {e}")))?;
                if field == 1 {
                    info.ir_version = Some(v as i64);
                }
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if pos + n > file_len {
                    return Err(bad(format!(
                        "truncated: field {field} runs past the end of the file"
                    )));
                }
                r.seek_relative(n as i64).map_err(|e| io_error(path, e))?;
                pos += n;
            }
            2 => {
                let len = read_varint(&mut r, &mut pos)
                    .map_err(|e| bad(format!("field {field}: {e}")))?;
                if len > file_len - pos {
                    return Err(bad(format!(
                        "truncated: field {field} claims {len} bytes, only {} remain (the file has {file_len} bytes)",
                        file_len - pos
                    )));
                }
                let wanted = matches!(field, 2 | 3 | 8 | 14);
                if wanted {
                    let mut buf = vec![0u8; len as usize];
                    r.read_exact(&mut buf).map_err(|e| io_error(path, e))?;
                    let text = || String::from_utf8_lossy(&buf).into_owned();
                    match field {
                        2 => info.producer_name = Some(text()),
                        3 => info.producer_version = Some(text()),
                        8 => {
                            let o = OperatorSetIdProto::decode(buf.as_slice())
                                .map_err(|e| bad(format!("opset_import: {e}")))?;
                            info.opset_import
                                .push((o.domain.unwrap_or_default(), o.version.unwrap_or(0)));
                        }
                        _ => {
                            let e = StringStringEntryProto::decode(buf.as_slice())
                                .map_err(|e| bad(format!("metadata_props: {e}")))?;
                            info.metadata_props
                                .push((e.key.unwrap_or_default(), e.value.unwrap_or_default()));
                        }
                    }
                } else {
                    r.seek_relative(len as i64).map_err(|e| io_error(path, e))?;
                }
                if field == 7 {
                    info.has_graph = true;
                }
                pos += len;
            }
            _ => {
                return Err(bad(format!(
                    "unexpected wire type {wire} of field {field} at byte {pos}"
                )))
            }
        }
    }
    if !info.has_graph {
        return Err(bad("it has no graph".to_owned()));
    }
    if info.ir_version.is_none() {
        return Err(bad("it has no ir_version".to_owned()));
    }
    Ok(info)
}

/// Reads one protobuf varint, advancing `pos`.
fn read_varint(r: &mut impl Read, pos: &mut u64) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8];
        r.read_exact(&mut byte)
            .map_err(|_| "truncated in the middle of a field".to_owned())?;
        *pos += 1;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed varint".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            let mut pos = 0;
            assert_eq!(read_varint(&mut buf.as_slice(), &mut pos).unwrap(), v);
            assert_eq!(pos as usize, buf.len());
        }
        let mut pos = 0;
        assert!(read_varint(&mut [0x80u8].as_slice(), &mut pos).is_err());
    }
}
