//! Helpers shared by the integration tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use tcobench_backends::model::{materialize, BuiltinModel};
use tcobench_backends::onnx::write_onnx;
use tcobench_backends::OrtRuntime;

/// The cache root the harness uses (`$TCOBENCH_CACHE`, else `$XDG_CACHE_HOME/tcobench`, else
/// `~/.cache/tcobench`): the ONNX Runtime library is downloaded there once and shared.
pub(crate) fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("TCOBENCH_CACHE") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("tcobench")
}

/// The process's ONNX Runtime, resolved the way the harness resolves it.
pub(crate) fn runtime() -> &'static OrtRuntime {
    OrtRuntime::init(&cache_root()).expect("ONNX Runtime library")
}

/// `tiny` with seed `seed` in a fresh temporary directory, with `model.onnx` written.
pub(crate) fn tiny_with_onnx(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = materialize(BuiltinModel::Tiny, seed, &tmp.path().join("tiny")).unwrap();
    write_onnx(&dir).unwrap();
    (tmp, dir)
}

/// A deterministic prompt of `len` ids below 512.
pub(crate) fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + salt * 101 + 3) % 512)
        .collect()
}

/// Writes `message` to the terminal even when the test harness captures output, so a skipped
/// check is visible in a plain `cargo test` run.
pub(crate) fn skip_notice(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "SKIPPED: {message}");
}

/// The Python interpreter tests may use (`$TCOBENCH_PYTHON`, else `python3`).
pub(crate) fn python() -> std::ffi::OsString {
    std::env::var_os("TCOBENCH_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Whether `python -c "import {module}"` succeeds.
pub(crate) fn python_has(module: &str) -> bool {
    std::process::Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Copies `config.json` of `from` into `to` (created).
pub(crate) fn copy_config(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("config.json"), to.join("config.json")).unwrap();
}

/// A small deterministic generator for test weights (SplitMix64).
pub(crate) struct TestRng(u64);

impl TestRng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        TestRng(seed)
    }

    /// Uniform in `[-1, 1)`.
    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// One tensor to write into a safetensors file: name, shape, dtype name, little-endian bytes.
pub(crate) struct RawTensor {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: &'static str,
    pub(crate) bytes: Vec<u8>,
}

/// Writes a safetensors file holding `tensors` in order.
pub(crate) fn write_safetensors(path: &Path, tensors: &[RawTensor]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        header.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype,
                "shape": t.shape,
                "data_offsets": [offset, offset + t.bytes.len()],
            }),
        );
        offset += t.bytes.len();
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    for t in tensors {
        out.extend(&t.bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// Reads every tensor of a safetensors file: name → (dtype, shape, bytes).
pub(crate) fn read_safetensors(
    path: &Path,
) -> std::collections::BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(name, v)| {
            let offsets: Vec<usize> = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
            let dtype = v["dtype"].as_str().unwrap().to_owned();
            (name, (dtype, shape, data[offsets[0]..offsets[1]].to_vec()))
        })
        .collect()
}

/// A model directory with a hand-made Llama: 2 layers, 3 heads with 3 key/value heads (plain
/// multi-head attention), untied `lm_head`, random (not all-ones) norm weights, llama3 RoPE
/// scaling, weights stored as bf16. Covers what the built-in models do not.
pub(crate) fn custom_model_dir(root: &Path) -> PathBuf {
    let dir = root.join("custom");
    std::fs::create_dir_all(&dir).unwrap();
    let (vocab, hidden, inter, layers, heads, kv_heads) = (300usize, 48usize, 96usize, 2, 3, 3);
    let head_dim = hidden / heads;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64, "rope_type": "llama3"},
        "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut rng = TestRng::new(42);
    let mut tensor = |name: String, shape: Vec<usize>, norm: bool| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| {
                let v = if norm {
                    1.0 + 0.3 * rng.next_f32()
                } else {
                    0.08 * rng.next_f32()
                };
                ((v.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect();
        RawTensor {
            name,
            shape,
            dtype: "BF16",
            bytes,
        }
    };
    let kv = kv_heads * head_dim;
    let mut tensors = vec![tensor(
        "model.embed_tokens.weight".into(),
        vec![vocab, hidden],
        false,
    )];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        tensors.extend([
            tensor(format!("{p}.input_layernorm.weight"), vec![hidden], true),
            tensor(
                format!("{p}.self_attn.q_proj.weight"),
                vec![hidden, hidden],
                false,
            ),
            tensor(
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, hidden],
                false,
            ),
            tensor(
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, hidden],
                false,
            ),
            tensor(
                format!("{p}.self_attn.o_proj.weight"),
                vec![hidden, hidden],
                false,
            ),
            tensor(
                format!("{p}.post_attention_layernorm.weight"),
                vec![hidden],
                true,
            ),
            tensor(
                format!("{p}.mlp.gate_proj.weight"),
                vec![inter, hidden],
                false,
            ),
            tensor(
                format!("{p}.mlp.up_proj.weight"),
                vec![inter, hidden],
                false,
            ),
            tensor(
                format!("{p}.mlp.down_proj.weight"),
                vec![hidden, inter],
                false,
            ),
        ]);
    }
    tensors.push(tensor("model.norm.weight".into(), vec![hidden], true));
    tensors.push(tensor("lm_head.weight".into(), vec![vocab, hidden], false));
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    dir
}
