//! Rotary position embedding tables: the optional llama3 `rope_scaling` of `config.json`, the
//! inverse frequencies and the cos/sin tables, all in f32 exactly as candle-transformers computes
//! them.

use std::fs;
use std::path::Path;

use crate::model::{io_error, model_error};
use crate::{BackendError, ModelConfig};

/// `rope_scaling` of type `llama3`, as candle reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Llama3Scaling {
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_max_position_embeddings: usize,
}

/// Reads the optional llama3 `rope_scaling` of `config.json` (`load_config` has already checked
/// that any other scaling type is absent).
pub(super) fn read_rope_scaling(path: &Path) -> Result<Option<Llama3Scaling>, BackendError> {
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
pub(super) fn rope_tables(
    config: &ModelConfig,
    scaling: &Option<Llama3Scaling>,
) -> (Vec<u8>, Vec<u8>) {
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
