//! Writes `model.onnx` from a Hugging Face Llama directory (`config.json` + `model.safetensors`):
//! the export entry points, the temporary files they write through and the source fingerprint
//! by which [`ensure_onnx`] tells a current file from a stale one.
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
//!
//! The parts live beside this file: checking, reading and placing the weights in `weights`, the
//! RoPE tables in `rope`, the graph builder in `graph`, the decoder's nodes in `decoder`, and
//! reading a file's top-level fields in `info`.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use sha2::{Digest, Sha256};

use super::decoder::build_graph;
use super::graph::GraphBuilder;
use super::info::read_onnx_info;
use super::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use super::rope::read_rope_scaling;
use super::weights::{plan_weights, read_weight_f32_le, WeightSink};
use crate::model::{io_error, load_config, CONFIG_FILE, WEIGHTS_FILE};
use crate::BackendError;

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

pub(super) fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.to_owned()),
        value: Some(value.to_owned()),
    }
}
