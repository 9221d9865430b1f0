//! The Llama decoder's nodes: [`build_graph`] lays out, on a [`GraphBuilder`] that already holds
//! the weights, the RoPE factors, the attention mask bias, the shapes every layer shares, the
//! embedding, each layer's attention and MLP blocks, and the head. Node names and their order are
//! part of the written file; a change here calls for a new [`super::WRITER_REVISION`].

use super::graph::{attr_int, attr_ints, GraphBuilder};
use super::names;
use super::proto::{TensorProto, DATA_TYPE_BOOL, DATA_TYPE_FLOAT};
use super::rope::{rope_tables, Llama3Scaling};
use crate::ModelConfig;

/// Adds the decoder's nodes (and its non-weight constants) to `g`, whose initializers already
/// hold the weights under their Hugging Face names.
pub(super) fn build_graph(
    g: &mut GraphBuilder,
    config: &ModelConfig,
    rope_scaling: &Option<Llama3Scaling>,
    kv_cache: bool,
) {
    let (cos, sin) = rope_factors(g, config, rope_scaling);
    let (ids_shape, mask_bias) = mask_bias(g);
    let shared = Shared::new(g, config, &ids_shape, cos, sin, mask_bias);
    let mut x = embed(g, &shared);
    for layer in 0..config.num_hidden_layers {
        let layer = Layer::new(layer);
        x = attention_block(g, &shared, &layer, &x, kv_cache);
        x = mlp_block(g, &shared, &layer, &x);
    }
    lm_head(g, config, &shared, &x);
}

/// Values the layers and the head read, made once.
struct Shared {
    /// RoPE cos factors `[b, 1, s, head_dim]`.
    cos: String,
    /// RoPE sin factors `[b, 1, s, head_dim]`.
    sin: String,
    /// Additive attention mask `[b, 1, 1, s, t]`.
    mask_bias: String,
    /// `[b, s, heads, head_dim]`.
    q_shape: String,
    /// `[b, s, kv_heads, head_dim]`.
    kv_shape: String,
    /// `[0, kv_heads, n_rep, -1, head_dim]`.
    grouped: String,
    /// `[0, heads, -1, head_dim]`.
    ungrouped: String,
    /// `[-1, hidden]`.
    rows_hidden: String,
    /// `[b, s, vocab]`.
    logits_shape: String,
    /// `rms_norm_eps`.
    eps: String,
    /// `1/sqrt(head_dim)`.
    scale: String,
    /// `[2]`.
    axis2: String,
    head_dim: i64,
}

impl Shared {
    /// The shapes shared by every layer (scope `shapes`), from the shape of `input_ids`, with
    /// the RoPE factors and the mask bias.
    fn new(
        g: &mut GraphBuilder,
        config: &ModelConfig,
        ids_shape: &str,
        cos: String,
        sin: String,
        mask_bias: String,
    ) -> Self {
        let hidden = config.hidden_size as i64;
        let heads = config.num_attention_heads as i64;
        let kv_heads = config.num_key_value_heads as i64;
        let head_dim = config.head_dim() as i64;
        let n_rep = heads / kv_heads;
        let vocab = config.vocab_size as i64;

        let s = "shapes";
        let heads_hd = g.ints(&[heads, head_dim]);
        let kv_hd = g.ints(&[kv_heads, head_dim]);
        let q_shape = g.op(
            s,
            "Concat",
            &[ids_shape, &heads_hd],
            vec![attr_int("axis", 0)],
        );
        let kv_shape = g.op(s, "Concat", &[ids_shape, &kv_hd], vec![attr_int("axis", 0)]);
        let grouped = g.ints(&[0, kv_heads, n_rep, -1, head_dim]);
        let ungrouped = g.ints(&[0, heads, -1, head_dim]);
        let rows_hidden = g.ints(&[-1, hidden]);
        let vocab_dim = g.ints(&[vocab]);
        let logits_shape = g.op(
            s,
            "Concat",
            &[ids_shape, &vocab_dim],
            vec![attr_int("axis", 0)],
        );
        let eps = g.float("rms_norm_eps", config.rms_norm_eps as f32);
        let scale = g.float("attention_scale", (1.0 / (head_dim as f64).sqrt()) as f32);
        let axis2 = g.ints(&[2]);
        Shared {
            cos,
            sin,
            mask_bias,
            q_shape,
            kv_shape,
            grouped,
            ungrouped,
            rows_hidden,
            logits_shape,
            eps,
            scale,
            axis2,
            head_dim,
        }
    }
}

/// One decoder layer: its index, the scope of its nodes and the prefix of its weights.
struct Layer {
    index: usize,
    scope: String,
    prefix: String,
}

impl Layer {
    fn new(index: usize) -> Self {
        Layer {
            index,
            scope: format!("layers.{index}"),
            prefix: format!("model.layers.{index}"),
        }
    }

    /// The name of this layer's weight `suffix` (`self_attn.q_proj.weight`, ...).
    fn weight(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }
}

/// Adds the RoPE tables as initializers `rope.cos` / `rope.sin` and returns the cos and sin
/// factors `[b, 1, s, head_dim]` gathered from them by position.
fn rope_factors(
    g: &mut GraphBuilder,
    config: &ModelConfig,
    rope_scaling: &Option<Llama3Scaling>,
) -> (String, String) {
    let head_dim = config.head_dim() as i64;
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
    (cos, sin)
}

/// Returns the shape of `input_ids` and the mask bias `[b, 1, 1, s, t]`: 0 where query i
/// (absolute position past + i) may attend key j (j <= past + i and attention_mask[b, j] = 1),
/// f32::MIN elsewhere.
fn mask_bias(g: &mut GraphBuilder) -> (String, String) {
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
    // The constant the RoPE factors unsqueeze with; it exists already, so nothing is added.
    let axis1 = g.ints(&[1]);
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
    (ids_shape, mask_bias)
}

/// The token embeddings of `input_ids` as the residual stream `[b·s, hidden]`.
fn embed(g: &mut GraphBuilder, shared: &Shared) -> String {
    let s = "embed";
    let embedded = g.op(
        s,
        "Gather",
        &["model.embed_tokens.weight", names::INPUT_IDS],
        vec![],
    );
    g.op(s, "Reshape", &[&embedded, &shared.rows_hidden], vec![])
}

/// Self-attention of one layer with its residual: `x + o_proj(attention)` over the input
/// RMSNorm of `x`. With a key/value cache the layer's keys and values are appended to
/// `past_key_values.*` and returned as `present.*`.
fn attention_block(
    g: &mut GraphBuilder,
    shared: &Shared,
    layer: &Layer,
    x: &str,
    kv_cache: bool,
) -> String {
    let s = layer.scope.as_str();
    let (cos, sin, head_dim) = (&shared.cos, &shared.sin, shared.head_dim);

    let h = g.rms_norm(s, x, &layer.weight("input_layernorm.weight"), &shared.eps);
    let q = g.linear(s, &h, &layer.weight("self_attn.q_proj.weight"));
    let k = g.linear(s, &h, &layer.weight("self_attn.k_proj.weight"));
    let v = g.linear(s, &h, &layer.weight("self_attn.v_proj.weight"));
    let perm = vec![attr_ints("perm", &[0, 2, 1, 3])];
    let q = g.op(s, "Reshape", &[&q, &shared.q_shape], vec![]);
    let q = g.op(s, "Transpose", &[&q], perm.clone());
    let k = g.op(s, "Reshape", &[&k, &shared.kv_shape], vec![]);
    let k = g.op(s, "Transpose", &[&k], perm.clone());
    let v = g.op(s, "Reshape", &[&v, &shared.kv_shape], vec![]);
    let v = g.op(s, "Transpose", &[&v], perm.clone());
    let q = g.rope(s, &q, cos, sin, head_dim);
    let k = g.rope(s, &k, cos, sin, head_dim);

    let (k_all, v_all) = if kv_cache {
        let (pk, pv) = (names::past_key(layer.index), names::past_value(layer.index));
        let (ok, ov) = (
            names::present_key(layer.index),
            names::present_value(layer.index),
        );
        g.op_to(&ok, "Concat", &[&pk, &k], vec![attr_int("axis", 2)]);
        g.op_to(&ov, "Concat", &[&pv, &v], vec![attr_int("axis", 2)]);
        (ok, ov)
    } else {
        (k, v)
    };

    // Grouped-query attention by broadcasting: queries [b, kv, rep, s, hd] against keys and
    // values [b, kv, 1, t, hd].
    let q = g.op(s, "Reshape", &[&q, &shared.grouped], vec![]);
    let k = g.op(s, "Unsqueeze", &[&k_all, &shared.axis2], vec![]);
    let k_t = g.op(
        s,
        "Transpose",
        &[&k],
        vec![attr_ints("perm", &[0, 1, 2, 4, 3])],
    );
    let v = g.op(s, "Unsqueeze", &[&v_all, &shared.axis2], vec![]);
    let scores = g.op(s, "MatMul", &[&q, &k_t], vec![]);
    let scores = g.op(s, "Mul", &[&scores, &shared.scale], vec![]);
    let scores = g.op(s, "Add", &[&scores, &shared.mask_bias], vec![]);
    let probs = g.op(s, "Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let context = g.op(s, "MatMul", &[&probs, &v], vec![]);
    let context = g.op(s, "Reshape", &[&context, &shared.ungrouped], vec![]);
    let context = g.op(s, "Transpose", &[&context], perm);
    let context = g.op(s, "Reshape", &[&context, &shared.rows_hidden], vec![]);
    let attn = g.linear(s, &context, &layer.weight("self_attn.o_proj.weight"));
    g.op(s, "Add", &[x, &attn], vec![])
}

/// The SwiGLU MLP of one layer with its residual: `x + down(silu(gate(h)) · up(h))`, `h` the
/// post-attention RMSNorm of `x`.
fn mlp_block(g: &mut GraphBuilder, shared: &Shared, layer: &Layer, x: &str) -> String {
    let s = layer.scope.as_str();
    let h = g.rms_norm(
        s,
        x,
        &layer.weight("post_attention_layernorm.weight"),
        &shared.eps,
    );
    let gate = g.linear(s, &h, &layer.weight("mlp.gate_proj.weight"));
    let up = g.linear(s, &h, &layer.weight("mlp.up_proj.weight"));
    let sig = g.op(s, "Sigmoid", &[&gate], vec![]);
    let silu = g.op(s, "Mul", &[&gate, &sig], vec![]);
    let act = g.op(s, "Mul", &[&silu, &up], vec![]);
    let down = g.linear(s, &act, &layer.weight("mlp.down_proj.weight"));
    g.op(s, "Add", &[x, &down], vec![])
}

/// The final RMSNorm and `lm_head` (the embedding when tied), reshaped into the `logits` output.
fn lm_head(g: &mut GraphBuilder, config: &ModelConfig, shared: &Shared, x: &str) {
    let s = "head";
    let h = g.rms_norm(s, x, "model.norm.weight", &shared.eps);
    let head = if config.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let logits = g.linear(s, &h, head);
    g.op_to(
        names::LOGITS,
        "Reshape",
        &[&logits, &shared.logits_shape],
        vec![],
    );
}
