//! ONNX export of the Llama models the backends run: a protobuf subset ([`proto`]), the writer
//! that turns `config.json` + `model.safetensors` into `model.onnx` ([`write_onnx`]), and a cheap
//! reader of a model file's top-level fields ([`read_onnx_info`]).
//!
//! The graph computes what candle-transformers' Llama computes (RMSNorm, non-interleaved RoPE,
//! grouped-query attention, SwiGLU MLP, tied or untied `lm_head`) with the key/value cache I/O of
//! Hugging Face Optimum's decoder exports ([`names`]), so ONNX Runtime runs the same maths on the
//! same weights as candle. Only standard `ai.onnx` operators at opset [`OPSET_VERSION`] are used.

mod decoder;
mod graph;
mod info;
pub mod proto;
mod rope;
mod weights;
mod writer;

pub use info::{read_onnx_info, OnnxFileInfo};
pub use writer::{
    ensure_onnx, write_onnx, write_onnx_with, ExternalData, OnnxExportOptions,
    EXTERNAL_DATA_AUTO_BYTES, IR_VERSION, ONNX_DATA_FILE, ONNX_FILE, OPSET_VERSION, PRODUCER_NAME,
    WRITER_REVISION,
};

/// Graph input and output names of the Hugging Face Optimum decoder convention.
///
/// Inputs: `input_ids` (int64 `[batch, sequence]`), `attention_mask` (int64
/// `[batch, past + sequence]`, 1 = attend), `position_ids` (int64 `[batch, sequence]`) and, with a
/// key/value cache, `past_key_values.{i}.key` / `.value` (float `[batch, kv_heads, past,
/// head_dim]`) per layer. Outputs: `logits` (float `[batch, sequence, vocab]`) and
/// `present.{i}.key` / `.value` (float `[batch, kv_heads, past + sequence, head_dim]`).
pub mod names {
    /// Token ids, int64 `[batch, sequence]`.
    pub const INPUT_IDS: &str = "input_ids";
    /// Padding mask over past and current positions, int64 `[batch, past + sequence]`.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Absolute position of every token, int64 `[batch, sequence]`.
    pub const POSITION_IDS: &str = "position_ids";
    /// Next-token logits of every position, float `[batch, sequence, vocab]`.
    pub const LOGITS: &str = "logits";

    /// The cached keys of layer `layer` fed in.
    pub fn past_key(layer: usize) -> String {
        format!("past_key_values.{layer}.key")
    }

    /// The cached values of layer `layer` fed in.
    pub fn past_value(layer: usize) -> String {
        format!("past_key_values.{layer}.value")
    }

    /// The keys of layer `layer` after this step (past and current), returned.
    pub fn present_key(layer: usize) -> String {
        format!("present.{layer}.key")
    }

    /// The values of layer `layer` after this step (past and current), returned.
    pub fn present_value(layer: usize) -> String {
        format!("present.{layer}.value")
    }
}
