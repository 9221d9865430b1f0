//! The backends a run loads, and the agreement gate that checks them before anything is timed.
//!
//! [`Backends`] keeps the backend of the last cell loaded, so that consecutive cells of the same
//! backend, model, device and dtype load it once. Before a cell is timed, its probe logits are
//! compared with those of the reference configuration ([`REFERENCE_CONFIGURATION`]), computed
//! once per model and, in a run of one process per cell, kept in the run folder's
//! [`REFERENCE_LOGITS_DIR`] for the other processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use tcobench_backends::model::{self, BuiltinModel, ModelSource};
use tcobench_backends::onnx::ensure_onnx;
use tcobench_backends::{
    agreement_tolerance, max_relative_diff, Backend, CandleBackend, DType, Device, MockBackend,
    MockCost, OrtBackend, OrtRuntime, OrtThreads, VirtualClock,
};
use tcobench_results::schema::{Agreement, AgreementStatus};

use super::writer::write_atomic;
use crate::plan::{self, sanitize, Cell};
use crate::scenario::{BackendKind, MockSettings};

/// The seed of the built-in models' weights. Fixed (not the scenario seed) so every run of
/// `small` measures the same network, whatever the prompt seed.
pub const MODEL_SEED: u64 = 0;

/// Spread of the mock backend's request times (deterministic, from the prompts), so mock runs
/// exercise the statistics with non-degenerate data.
pub(crate) const MOCK_JITTER_PERMILLE: u64 = 200;

/// The mock backend's time factor for one execution of run `run_id`: `time_scale · (1 +
/// execution_drift · z)`, `z` a standard normal draw seeded by `drift_seed` (else the run id) and
/// the execution's id, the drift part kept within [0.2, 5].
pub(crate) fn mock_time_factor(mock: &MockSettings, run_id: &str, execution_id: &str) -> f64 {
    let drift = if mock.execution_drift > 0.0 {
        let nonce = mock
            .drift_seed
            .map_or_else(|| run_id.to_string(), |s| format!("seed {s}"));
        let seed = u64::from_str_radix(
            &plan::short_hash(format!("{nonce}/{execution_id}").as_bytes(), 16),
            16,
        )
        .expect("hex");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        // Box–Muller.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (1.0 + mock.execution_drift * z).clamp(0.2, 5.0)
    } else {
        1.0
    };
    mock.time_scale * drift
}

/// The default model cache: `models` in the [`cache_root`].
pub fn default_models_dir() -> PathBuf {
    cache_root().join("models")
}

/// tcobench's cache: `$TCOBENCH_CACHE`, else `$XDG_CACHE_HOME/tcobench`, else
/// `~/.cache/tcobench`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("TCOBENCH_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tcobench")
}

fn model_source(name: &str) -> ModelSource {
    match name.parse::<BuiltinModel>() {
        Ok(model) => ModelSource::Builtin {
            model,
            seed: MODEL_SEED,
        },
        Err(_) => ModelSource::Dir(PathBuf::from(name)),
    }
}

/// Loaded backends, reused by consecutive cells that share backend, model, device and dtype.
pub(crate) struct Backends {
    /// What the loaded backend was loaded for; the last part is the execution, for mock
    /// backends with a per-execution drift (each execution draws its own).
    pub(crate) key: Option<(BackendKind, String, Device, DType, Option<String>)>,
    pub(crate) loaded: Option<Box<dyn Backend>>,
    /// How the loaded backend runs (threads, model file, cache, runtime library).
    pub(crate) info: BTreeMap<String, String>,
    models_dir: PathBuf,
    /// Where the ONNX Runtime library is cached.
    cache_dir: PathBuf,
    ort_threads: OrtThreads,
    virtual_clock: VirtualClock,
    /// Reference logits of the agreement probe per (model, seed), computed once.
    reference: BTreeMap<String, std::result::Result<Vec<Vec<f32>>, String>>,
    /// Where reference logits are kept for the other processes of the run (one process per
    /// cell), if anywhere.
    pub(crate) reference_dir: Option<PathBuf>,
    /// How the mock backend's time varies, and the run it is drawn for
    /// ([`mock_time_factor`]); `None`: as is.
    pub(crate) mock: Option<(MockSettings, String)>,
}

impl Backends {
    pub(crate) fn new(
        models_dir: &Path,
        ort_threads: OrtThreads,
        virtual_clock: VirtualClock,
    ) -> Backends {
        Backends {
            key: None,
            loaded: None,
            info: BTreeMap::new(),
            models_dir: models_dir.to_path_buf(),
            cache_dir: models_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| models_dir.to_path_buf()),
            ort_threads,
            virtual_clock,
            reference: BTreeMap::new(),
            reference_dir: None,
            mock: None,
        }
    }

    /// The stored reference logits for this probe, if an earlier cell of the run left them.
    fn stored_reference(&self, path: &Path, want: &StoredReference) -> Option<Vec<Vec<f32>>> {
        let text = std::fs::read_to_string(path).ok()?;
        let stored: StoredReference = serde_json::from_str(&text).ok()?;
        let same = stored.model == want.model
            && stored.configuration == want.configuration
            && stored.prompt == want.prompt
            && stored.continuation == want.continuation;
        same.then(|| {
            stored
                .logits_bits
                .iter()
                .map(|row| row.iter().map(|&b| f32::from_bits(b)).collect())
                .collect()
        })
    }

    pub(crate) fn get(&mut self, cell: &Cell) -> Result<&mut Box<dyn Backend>> {
        let mock = self
            .mock
            .as_ref()
            .filter(|(m, _)| !m.is_default() && cell.config.backend == BackendKind::Mock);
        let key = (
            cell.config.backend,
            cell.config.model.clone(),
            cell.config.device,
            cell.config.dtype,
            mock.map(|_| cell.cell_id.clone()),
        );
        let factor = mock.map_or(1.0, |(m, run_id)| {
            mock_time_factor(m, run_id, &cell.cell_id)
        });
        if self.key.as_ref() != Some(&key) {
            self.loaded = None;
            self.key = None;
            self.info.clear();
            let source = model_source(&cell.config.model);
            let backend: Box<dyn Backend> = match cell.config.backend {
                BackendKind::Candle => {
                    let dir = model::resolve(&source, &self.models_dir)?;
                    self.info
                        .insert("model_file".into(), "model.safetensors".into());
                    Box::new(CandleBackend::load(
                        &dir,
                        cell.config.device,
                        cell.config.dtype,
                    )?)
                }
                BackendKind::Onnxruntime => {
                    // Built-in models get their ONNX export written (once) from the same weights;
                    // a user's directory brings its own model.onnx and config.json (checked by
                    // the backend), with or without model.safetensors.
                    let dir = match &source {
                        ModelSource::Builtin { .. } => {
                            let dir = model::resolve(&source, &self.models_dir)?;
                            ensure_onnx(&dir)?;
                            dir
                        }
                        ModelSource::Dir(dir) => dir.clone(),
                    };
                    let runtime = OrtRuntime::init(&self.cache_dir)?;
                    let b = OrtBackend::load(
                        runtime,
                        &dir,
                        cell.config.device,
                        cell.config.dtype,
                        self.ort_threads,
                    )?;
                    let t = b.threads();
                    self.info.extend([
                        ("model_file".to_string(), "model.onnx".to_string()),
                        ("kv_cache".into(), b.uses_kv_cache().to_string()),
                        ("intra_threads".into(), t.intra.to_string()),
                        ("inter_threads".into(), t.inter.to_string()),
                        ("onnxruntime".into(), runtime.version().to_string()),
                        (
                            "onnxruntime_library".into(),
                            runtime.library().source.to_string(),
                        ),
                    ]);
                    Box::new(b)
                }
                BackendKind::Mock => {
                    let config = match &source {
                        ModelSource::Builtin { model, .. } => model.config(),
                        ModelSource::Dir(dir) => model::load_config(dir)?,
                    };
                    if factor != 1.0 {
                        self.info
                            .insert("mock_time_factor".into(), format!("{factor:.6}"));
                    }
                    Box::new(MockBackend::new(
                        config,
                        MockCost {
                            jitter_permille: MOCK_JITTER_PERMILLE,
                            ..MockCost::default()
                        }
                        .scaled(factor),
                        self.virtual_clock.clone(),
                    ))
                }
            };
            self.loaded = Some(backend);
            self.key = Some(key);
        }
        Ok(self.loaded.as_mut().expect("just loaded"))
    }

    /// The reference backend's probe logits for `model` (computed once per model and seed).
    fn reference_logits(
        &mut self,
        model_name: &str,
        prompt: &[u32],
        continuation: &[u32],
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        let key = format!("{model_name}#{prompt:?}");
        if let Some(r) = self.reference.get(&key) {
            return r.clone();
        }
        let mut want = StoredReference {
            model: model_name.to_string(),
            configuration: REFERENCE_CONFIGURATION.to_string(),
            prompt: prompt.to_vec(),
            continuation: continuation.to_vec(),
            logits_bits: Vec::new(),
        };
        let stored_at = self.reference_dir.as_ref().map(|d| {
            let tag = format!("{model_name}#{prompt:?}#{continuation:?}");
            d.join(format!(
                "{}-{}.json",
                sanitize(tcobench_results::config::model_label(model_name)),
                plan::short_hash(tag.as_bytes(), 12)
            ))
        });
        if let Some(found) = stored_at
            .as_deref()
            .and_then(|p| self.stored_reference(p, &want))
        {
            self.reference.insert(key, Ok(found.clone()));
            return Ok(found);
        }
        let computed = (|| -> Result<Vec<Vec<f32>>> {
            let dir = model::resolve(&model_source(model_name), &self.models_dir)?;
            let mut reference = CandleBackend::load(&dir, Device::Cpu, DType::F32)?;
            Ok(reference.logits_probe(prompt, continuation)?)
        })()
        .map_err(|e| format!("{e:#}"));
        if let (Ok(logits), Some(path)) = (&computed, &stored_at) {
            want.logits_bits = logits
                .iter()
                .map(|row| row.iter().map(|x| x.to_bits()).collect())
                .collect();
            let stored = (|| -> Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_atomic(path, serde_json::to_string(&want)?.as_bytes())
            })();
            // Only a shortcut for later cells: they recompute what could not be stored.
            if let Err(e) = stored {
                tracing::warn!("keeping the reference logits in {}: {e:#}", path.display());
            }
        }
        self.reference.insert(key, computed.clone());
        computed
    }
}

/// The run folder's store of reference logits: each model's probe logits from the reference
/// configuration, computed by the first cell that needs them and read by the others.
pub const REFERENCE_LOGITS_DIR: &str = "reference_logits";

/// One model's reference logits as stored, bit-exact (`f32::to_bits`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StoredReference {
    model: String,
    configuration: String,
    prompt: Vec<u32>,
    continuation: Vec<u32>,
    logits_bits: Vec<Vec<u32>>,
}

/// The configuration every cell's logits are checked against.
pub(crate) const REFERENCE_CONFIGURATION: &str = "candle/f32/cpu";

/// Prompt length of the agreement probe.
pub(crate) const PROBE_PROMPT_TOKENS: usize = 8;

/// Decode steps of the agreement probe after the prefill.
pub(crate) const PROBE_DECODE_STEPS: usize = 3;

/// The agreement probe's tokens: a prompt and the continuation fed one step at a time, drawn
/// from the scenario seed (the same for every cell of a model).
fn probe_tokens(seed: u64, vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6167_7265_656d_656e);
    let mut draw =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..vocab as u32)).collect() };
    let prompt = draw(PROBE_PROMPT_TOKENS);
    (prompt, draw(PROBE_DECODE_STEPS))
}

/// The agreement gate: the cell's probe logits against the reference configuration's.
pub(crate) fn agreement_gate(cell: &Cell, seed: u64, backends: &mut Backends) -> Agreement {
    let tolerance = agreement_tolerance(cell.config.dtype);
    let steps = 1 + PROBE_DECODE_STEPS;
    let base = Agreement {
        status: AgreementStatus::Passed,
        reference: REFERENCE_CONFIGURATION.into(),
        max_rel_diff: None,
        tolerance,
        steps,
        note: None,
    };
    let with = |status, note: String| Agreement {
        status,
        note: Some(note),
        ..base.clone()
    };
    match cell.config.backend {
        BackendKind::Mock => {
            return with(
                AgreementStatus::NotApplicable,
                "the mock backend computes no logits".into(),
            )
        }
        BackendKind::Candle
            if cell.config.dtype == DType::F32 && cell.config.device == Device::Cpu =>
        {
            return with(
                AgreementStatus::Reference,
                "this cell is the reference configuration".into(),
            )
        }
        _ => {}
    }
    let vocab = match backends.get(cell) {
        Ok(b) => b.config().vocab_size,
        Err(e) => return with(AgreementStatus::Error, format!("{e:#}")),
    };
    let (prompt, continuation) = probe_tokens(seed, vocab);
    let reference = match backends.reference_logits(&cell.config.model, &prompt, &continuation) {
        Ok(r) => r,
        Err(e) => return with(AgreementStatus::Error, format!("reference: {e}")),
    };
    let mine = match backends.get(cell) {
        Ok(b) => b.logits_probe(&prompt, &continuation),
        Err(e) => return with(AgreementStatus::Error, format!("{e:#}")),
    };
    match mine {
        Ok(mine) => {
            let diff = max_relative_diff(&mine, &reference);
            Agreement {
                status: if diff <= tolerance {
                    AgreementStatus::Passed
                } else {
                    AgreementStatus::Failed
                },
                max_rel_diff: Some(diff),
                ..base
            }
        }
        Err(e) => with(AgreementStatus::Error, e.to_string()),
    }
}
