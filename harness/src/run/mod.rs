//! The run loop: plan → backends × power sampler → results folder → analysis → report.
//!
//! The loop, not the backend, owns clocks and repetitions. For every request it reads the energy
//! source, starts the clock, lets the backend generate (noting the first token through an
//! observer), stops the clock and reads the energy source again. A failing cell — an error or a
//! panic inside a backend — is recorded with its cause and the run goes on.
//!
//! `tcobench run` carries out every cell in a `run-cell` child process of its own
//! ([`Execution::Processes`], see [`process`]), so that an abort, a segfault, a hang
//! or the out-of-memory killer costs one cell; the parent keeps the plan, the progress bar, the
//! budget, the idle baseline, the manifest, and merges and analyses at the end. The mock
//! backend's virtual clock is handed from cell to cell, so its runs stay deterministic. Running
//! every cell in this process ([`Execution::InProcess`], consecutive cells sharing a loaded
//! model) remains for benchmarks and tests.
//!
//! A run killed in any way is finished by [`resume`]: the cells without a committed folder run
//! with the plan's seeds, once the scenario and the versions are checked to be the same.
//!
//! A scenario with `budget_usd` is charged run time (on the run's clock, so virtual time for
//! mock runs) × the budget's $/h. Crossing 50, 75 and 90 % of the budget prints a warning once
//! each; before each cell its cost is predicted (the heuristic of [`crate::estimate`],
//! calibrated on the cells this run has finished) and, when spent + predicted would exceed the
//! budget, that cell and every later one are recorded `skipped` with the numbers, and the run
//! ends `incomplete`.

pub(crate) mod host;
pub(crate) mod hostload;
pub mod process;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tcobench_analysis::schema::{
    self, files, BudgetRecord, CellOutcome, CellRecord, Manifest, PowerSample, RequestRecord,
    SCHEMA_VERSION,
};
use tcobench_analysis::schema::{Agreement, AgreementStatus};
use tcobench_analysis::RunStats;
use tcobench_backends::model::{self, BuiltinModel, ModelSource};
use tcobench_backends::onnx::ensure_onnx;
use tcobench_backends::{
    agreement_tolerance, max_relative_diff, Backend, CandleBackend, DType, Device, MockBackend,
    MockCost, OrtBackend, OrtRuntime, OrtThreads, Request, VirtualClock, ORT_VERSION,
};

use self::process::{CellEvent, ChildEnd, CtrlC, ProcessOptions, Worker, WorkerSpawn};
use self::writer::{write_atomic, CellResult, RunDir};
use crate::estimate::{self, fmt_usd, Calibration};
use crate::plan::{self, sanitize, Cell, Plan, PlanOverrides, PLAN_FILE};
use crate::power::window::{self as energy_window, Edge, SourceInfo, WindowPolicy};
use crate::power::{self, PowerSampler, Reading};
use crate::scenario::{BackendKind, Budget, Overrides, Scenario};

/// How a run is carried out, beyond the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent folder of the run folder.
    pub out: PathBuf,
    /// Where built-in models are materialised and cached.
    pub models_dir: PathBuf,
    /// Show a progress bar (only ever drawn on a terminal).
    pub progress: bool,
    /// Experiment log to append one line to, if any.
    pub experiment_log: Option<PathBuf>,
    /// The command line, for the manifest and the report's reproduction section.
    pub command: Vec<String>,
    /// Let cells that fail the logits-agreement gate into comparisons.
    pub allow_disagreement: bool,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run folder.
    pub run_dir: RunDir,
    /// The final manifest.
    pub manifest: Manifest,
    /// The analysis.
    pub stats: RunStats,
}

impl RunOutcome {
    /// Whether every cell completed.
    pub fn complete(&self) -> bool {
        self.manifest.status == "complete"
    }
}

/// The default model cache: `$TCOBENCH_CACHE/models`, else `$XDG_CACHE_HOME/tcobench/models`,
/// else `~/.cache/tcobench/models`.
pub fn default_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TCOBENCH_CACHE") {
        return PathBuf::from(d).join("models");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tcobench").join("models")
}

/// The run's clock: wall time, or the mock backend's virtual time (deterministic).
#[derive(Debug, Clone)]
pub enum Clock {
    /// Monotonic wall time since the origin.
    Wall(Instant),
    /// Virtual nanoseconds advanced by the mock backend.
    Virtual(VirtualClock),
    /// Wall time of a run that started before this process (a `run-cell` child, a resumed
    /// run): the nanoseconds the run had lasted at `origin`, plus the time since.
    WallContinued {
        /// When this process took over the clock.
        origin: Instant,
        /// The run's age at `origin`, ns.
        offset_ns: u64,
    },
}

impl Clock {
    /// Nanoseconds since the clock's origin. Durations are differences of these integers, so
    /// they carry no rounding noise.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Wall(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Virtual(v) => v.now_ns(),
            Clock::WallContinued { origin, offset_ns } => offset_ns
                .saturating_add(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// The wall clock of a run that started at `started` (RFC 3339), so that every process of
    /// the run shares one timeline; a start in the future counts as now.
    pub fn wall_since(started: &str) -> Result<Clock> {
        let started = chrono::DateTime::parse_from_rfc3339(started)
            .with_context(|| format!("run start `{started}` is not an RFC 3339 time"))?;
        let age = chrono::Utc::now().signed_duration_since(started);
        Ok(Clock::WallContinued {
            origin: Instant::now(),
            offset_ns: u64::try_from(age.num_nanoseconds().unwrap_or(i64::MAX)).unwrap_or(0),
        })
    }

    /// Milliseconds since the clock's origin.
    pub fn now_ms(&self) -> f64 {
        ns_to_ms(self.now_ns())
    }
}

/// Nanoseconds to milliseconds.
fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Prompt token ids for one request: ChaCha seeded by (scenario seed, the cell's workload,
/// repetition, warm-up flag) — not by backend, device or dtype, so cells that differ only in how
/// they run see identical prompts.
pub fn prompts(seed: u64, cell: &Cell, rep: u32, warmup: bool, vocab: usize) -> Vec<Vec<u32>> {
    let material = format!(
        "seed={seed};{};rep={rep};warmup={warmup}",
        cell.workload_key()
    );
    let digest: [u8; 32] = Sha256::digest(material.as_bytes()).into();
    let mut rng = ChaCha20Rng::from_seed(digest);
    (0..cell.batch_size)
        .map(|_| {
            (0..cell.prompt_tokens)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// First 16 hex characters of the SHA-256 of token rows (little-endian ids, rows separated).
pub fn token_hash(rows: &[Vec<u32>]) -> String {
    let mut h = Sha256::new();
    for row in rows {
        h.update((row.len() as u64).to_le_bytes());
        for t in row {
            h.update(t.to_le_bytes());
        }
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loaded backends, reused by consecutive cells that share backend, model, device and dtype.
struct Backends {
    key: Option<(BackendKind, String, Device, DType)>,
    loaded: Option<Box<dyn Backend>>,
    /// How the loaded backend runs (threads, model file, cache, runtime library).
    info: BTreeMap<String, String>,
    models_dir: PathBuf,
    /// Where the ONNX Runtime library is cached.
    cache_dir: PathBuf,
    ort_threads: OrtThreads,
    virtual_clock: VirtualClock,
    /// Reference logits of the agreement probe per (model, seed), computed once.
    reference: BTreeMap<String, std::result::Result<Vec<Vec<f32>>, String>>,
    /// Where reference logits are kept for the other processes of the run (one process per
    /// cell), if anywhere.
    reference_dir: Option<PathBuf>,
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
pub const REFERENCE_CONFIGURATION: &str = "candle/f32/cpu";
/// Prompt length of the agreement probe.
pub const PROBE_PROMPT_TOKENS: usize = 8;
/// Decode steps of the agreement probe after the prefill.
pub const PROBE_DECODE_STEPS: usize = 3;

/// The agreement probe's tokens: a prompt and the continuation fed one step at a time, drawn
/// from the scenario seed (the same for every cell of a model).
fn probe_tokens(seed: u64, vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6167_7265_656d_656e);
    let mut draw =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..vocab as u32)).collect() };
    let prompt = draw(PROBE_PROMPT_TOKENS);
    (prompt, draw(PROBE_DECODE_STEPS))
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

/// Spread of the mock backend's request times (deterministic, from the prompts), so mock runs
/// exercise the statistics with non-degenerate data.
pub const MOCK_JITTER_PERMILLE: u64 = 200;

/// The seed of the built-in models' weights. Fixed (not the scenario seed) so every run of
/// `small` measures the same network, whatever the prompt seed.
pub const MODEL_SEED: u64 = 0;

impl Backends {
    fn new(models_dir: &Path, ort_threads: OrtThreads, virtual_clock: VirtualClock) -> Backends {
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

    fn get(&mut self, cell: &Cell) -> Result<&mut Box<dyn Backend>> {
        let key = (cell.backend, cell.model.clone(), cell.device, cell.dtype);
        if self.key.as_ref() != Some(&key) {
            self.loaded = None;
            self.key = None;
            self.info.clear();
            let source = model_source(&cell.model);
            let backend: Box<dyn Backend> = match cell.backend {
                BackendKind::Candle => {
                    let dir = model::resolve(&source, &self.models_dir)?;
                    self.info
                        .insert("model_file".into(), "model.safetensors".into());
                    Box::new(CandleBackend::load(&dir, cell.device, cell.dtype)?)
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
                    let b =
                        OrtBackend::load(runtime, &dir, cell.device, cell.dtype, self.ort_threads)?;
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
                    Box::new(MockBackend::new(
                        config,
                        MockCost {
                            jitter_permille: MOCK_JITTER_PERMILLE,
                            ..MockCost::default()
                        },
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
                sanitize(plan::model_label(model_name)),
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

/// The agreement gate: the cell's probe logits against the reference configuration's.
fn agreement_gate(cell: &Cell, seed: u64, backends: &mut Backends) -> Agreement {
    let tolerance = agreement_tolerance(cell.dtype);
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
    match cell.backend {
        BackendKind::Mock => {
            return with(
                AgreementStatus::NotApplicable,
                "the mock backend computes no logits".into(),
            )
        }
        BackendKind::Candle if cell.dtype == DType::F32 && cell.device == Device::Cpu => {
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
    let reference = match backends.reference_logits(&cell.model, &prompt, &continuation) {
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

/// Shared state of the background power timeline.
struct Timeline {
    samples: Mutex<Vec<PowerSample>>,
    current_cell: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Timeline {
    fn new(cell: Option<String>) -> Arc<Timeline> {
        Arc::new(Timeline {
            samples: Mutex::new(Vec::new()),
            current_cell: Mutex::new(cell),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts sampling every `period` on a background thread, each sample tagged with the cell
    /// in `current_cell`.
    fn start(
        self: &Arc<Self>,
        sampler: &Arc<Mutex<Box<dyn PowerSampler>>>,
        clock: &Clock,
        period: Duration,
    ) -> JoinHandle<()> {
        let (sampler, timeline, clock) = (sampler.clone(), self.clone(), clock.clone());
        std::thread::spawn(move || {
            // On a fixed schedule, parked rather than slept, so that stopping never waits a
            // whole period and delays do not accumulate.
            power::sample_every(period, &timeline.stop, || {
                let cell = timeline.current_cell.lock().expect("lock").clone();
                let s = sample(&sampler, &clock, cell);
                timeline.samples.lock().expect("lock").push(s);
            });
        })
    }

    /// Stops the sampling thread and returns every sample not taken yet.
    fn stop(&self, thread: Option<JoinHandle<()>>) -> Vec<PowerSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = thread {
            t.thread().unpark();
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().expect("lock"))
    }

    fn take(&self) -> Vec<PowerSample> {
        std::mem::take(&mut *self.samples.lock().expect("lock"))
    }
}

fn sample(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    cell: Option<String>,
) -> PowerSample {
    sample_with_reading(sampler, clock, cell).0
}

/// A timeline sample and the full reading behind it.
fn sample_with_reading(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    cell: Option<String>,
) -> (PowerSample, Reading) {
    let mut s = sampler.lock().expect("sampler lock");
    let r = s.read();
    let sample = PowerSample {
        t_ms: clock.now_ms(),
        source: s.method().to_string(),
        device: s.device(),
        cell_id: cell,
        watts: r.watts,
        energy_j_cum: r.energy_j_cum,
        temp_c: r.temp_c,
        sm_clock_mhz: r.sm_clock_mhz,
        throttle_reasons: r.throttle_reasons,
    };
    (sample, r)
}

/// Measures idle power for `seconds` with the run's own sampler, reading it every `sample_ms`
/// (the samples are returned for the run's timeline).
fn idle_baseline(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    settings: &crate::scenario::PowerSettings,
) -> (schema::IdleBaseline, Vec<PowerSample>) {
    let policy = WindowPolicy::from(settings);
    let source = SourceInfo::of(sampler.lock().expect("sampler lock").as_ref());
    let (first, r0) = sample_with_reading(sampler, clock, None);
    let period = Duration::from_millis(u64::from(settings.sample_ms));
    let until = Instant::now() + Duration::from_secs_f64(settings.idle_baseline_s);
    let mut samples = vec![first.clone()];
    let mut last = (first.clone(), r0);
    while Instant::now() < until {
        std::thread::sleep(period.min(until.saturating_duration_since(Instant::now())));
        last = sample_with_reading(sampler, clock, None);
        samples.push(last.0.clone());
    }
    let start = Edge {
        t_ms: first.t_ms,
        reading: r0,
    };
    let end = Edge {
        t_ms: last.0.t_ms,
        reading: last.1,
    };
    let window = energy_window::summarise(&source, &policy, &start, &end, &samples, 0, 0);
    let watts = window
        .energy_j
        .filter(|_| window.window_ms > 0.0)
        .map(|e| e / (window.window_ms / 1e3));
    (schema::IdleBaseline { window, watts }, samples)
}

/// How a run carries out its cells.
#[derive(Debug, Clone)]
pub enum Execution {
    /// Every cell inside this process, consecutive cells reusing a loaded model: for benchmarks
    /// and tests (a crash inside a backend ends the whole run).
    InProcess,
    /// One `run-cell` child process per cell, as `tcobench run` does.
    Processes(ProcessOptions),
}

/// Why `run --resume` refused to go on.
#[derive(Debug, thiserror::Error)]
#[error("cannot resume {}: {reason}", run_dir.display())]
pub struct ResumeRefused {
    /// The run folder.
    pub run_dir: PathBuf,
    /// What is wrong, and what to do about it.
    pub reason: String,
}

/// A run stopped by Ctrl-C: its manifest says `incomplete`, and `run --resume` finishes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: {committed} of {total} cells committed in {}; `tcobench run --resume {}` runs the rest",
    run_dir.display(),
    run_dir.display()
)]
pub struct Interrupted {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Cells committed so far.
    pub committed: usize,
    /// Cells of the plan.
    pub total: usize,
}

/// Runs a scenario end to end, every cell inside this process, and returns where its results
/// are.
pub fn run(scenario: &Scenario, scenario_path: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    run_with(
        scenario,
        scenario_path,
        opts,
        &PlanOverrides::default(),
        &Execution::InProcess,
    )
}

/// Runs a scenario end to end, its cells carried out as `execution` says. `overrides` are the
/// command-line overrides the scenario was loaded with; the plan records them for `--resume`.
pub fn run_with(
    scenario: &Scenario,
    scenario_path: &Path,
    opts: &RunOptions,
    overrides: &PlanOverrides,
    execution: &Execution,
) -> Result<RunOutcome> {
    let plan = run_plan(scenario, scenario_path, overrides);
    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    let wall_origin = Instant::now();
    let started = chrono::Utc::now();
    let clock = if all_mock {
        Clock::Virtual(virtual_clock.clone())
    } else {
        Clock::Wall(wall_origin)
    };
    let (sampler, why) = power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let power = power::power_info(sampler.as_ref(), scenario.power.sample_ms, &why);
    // The lock is held until this function returns: `run --resume` of this folder waits for
    // this run's end.
    let PreparedRun {
        plan,
        run_dir,
        run_lock: _run_lock,
        manifest,
    } = prepare_run(scenario, scenario_path, plan, opts, power, started)?;
    drive(
        Session {
            scenario,
            plan,
            run_dir,
            manifest,
            clock,
            virtual_clock,
            sampler,
            committed: BTreeSet::new(),
            spent_before_usd: 0.0,
            resumed: false,
        },
        opts,
        execution,
    )
}

/// The plan a run of `scenario` carries out, with what `run --resume` needs to resolve the
/// scenario again (its absolute path, the command-line overrides).
pub(crate) fn run_plan(
    scenario: &Scenario,
    scenario_path: &Path,
    overrides: &PlanOverrides,
) -> Plan {
    let mut plan = Plan::from_scenario(scenario, &scenario_path.display().to_string());
    plan.overrides = overrides.clone();
    plan.scenario_file = scenario_path.canonicalize().ok();
    plan
}

/// A run folder made ready for its cells, as `run` makes it (shared with `emit`).
pub(crate) struct PreparedRun {
    /// The plan, as written to `plan.json`.
    pub(crate) plan: Plan,
    /// The new run folder.
    pub(crate) run_dir: RunDir,
    /// The run folder's lock ([`RunDir::lock_run`]), held while this file is open.
    pub(crate) run_lock: std::fs::File,
    /// The manifest to start from (not yet written): every cell pending, status `running`.
    pub(crate) manifest: Manifest,
}

/// Creates and locks the run folder of `plan` under `opts.out`, writes `plan.json` and returns
/// the manifest to start from; `power` describes the run's power source, `started` its start.
pub(crate) fn prepare_run(
    scenario: &Scenario,
    scenario_path: &Path,
    plan: Plan,
    opts: &RunOptions,
    power: schema::PowerInfo,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<PreparedRun> {
    let run_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        sanitize(&scenario.name)
    );
    let run_dir = RunDir::create(&opts.out, &run_id)?;
    let run_lock = run_dir.lock_run(Duration::ZERO)?;
    run_dir.write_plan(&plan)?;
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run_dir.run_id.clone(),
        scenario_name: scenario.name.clone(),
        scenario_path: scenario_path.display().to_string(),
        scenario: plan.scenario.clone(),
        seed: scenario.seed,
        model_seed: MODEL_SEED,
        command: opts.command.clone(),
        git_revision: host::git_revision(scenario_path),
        versions: host::versions(),
        host: host::host_info(),
        power,
        started_at: started.to_rfc3339(),
        ended_at: None,
        status: "running".into(),
        cells: plan.cells.iter().map(pending_record).collect(),
        costing: scenario.costing.clone(),
        budget: None,
        allow_disagreement: opts.allow_disagreement,
    };
    Ok(PreparedRun {
        plan,
        run_dir,
        run_lock,
        manifest,
    })
}

/// Records the ONNX Runtime version the cells used, merges the committed cells into the run-level
/// Parquet files and writes the manifest.
pub(crate) fn merge_cells(run_dir: &RunDir, manifest: &mut Manifest) -> Result<()> {
    record_ort_version(manifest);
    run_dir.merge(manifest)?;
    run_dir.write_manifest(manifest)
}

/// Analyses a run folder's merged results and writes `stats.json` and the report.
pub(crate) fn analyze_and_report(run_dir: &Path) -> Result<RunStats> {
    let stats = tcobench_analysis::analyze(run_dir)
        .with_context(|| format!("analysing {}", run_dir.display()))?;
    tcobench_analysis::write_report(run_dir, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.display()))?;
    Ok(stats)
}

/// Finishes the run in `run_dir`: runs the cells of its `plan.json` that are not committed,
/// with the plan's seeds, then merges, analyses and reports as a run does.
///
/// The scenario (`scenario_path`, by default the one the run was started from, resolved with the
/// same command-line overrides) must still yield the same cells with the same power and thread
/// settings, and this tcobench must carry the versions of itself and its backends that the run
/// recorded; otherwise the numbers would not be comparable and the resume is refused
/// ([`ResumeRefused`]).
///
/// `execution` says how to carry out the cells of the scenario as resolved now: `tcobench run`
/// takes its `cell_timeout_s` when the command line gives no `--cell-timeout-s` (a value
/// changed since the run began is noted on standard error).
pub fn resume(
    run_dir_path: &Path,
    scenario_path: Option<&Path>,
    opts: &RunOptions,
    execution: impl FnOnce(&Scenario) -> Execution,
) -> Result<RunOutcome> {
    let refuse = |reason: String| -> anyhow::Error {
        ResumeRefused {
            run_dir: run_dir_path.to_path_buf(),
            reason,
        }
        .into()
    };
    if !run_dir_path.join(files::MANIFEST).is_file() {
        return Err(refuse(format!(
            "it has no {} (not a run folder, or the run was killed before it began)",
            files::MANIFEST
        )));
    }
    let plan_path = run_dir_path.join(PLAN_FILE);
    if !plan_path.is_file() {
        return Err(refuse(format!(
            "it has no {PLAN_FILE} (written by runs of this version on; the run was killed \
             before it began, or an older tcobench wrote it): start the scenario again"
        )));
    }
    let plan = Plan::read(&plan_path).map_err(|e| refuse(format!("{e:#}")))?;
    let run_dir = RunDir::open(run_dir_path).map_err(|e| refuse(format!("{e:#}")))?;
    let _run_lock = run_dir
        .lock_run(Duration::from_secs(3))
        .map_err(|e| refuse(format!("{e:#}")))?;
    let mut manifest = schema::read_manifest(&run_dir.path.join(files::MANIFEST))
        .map_err(|e| refuse(e.to_string()))?;

    let scenario_path = scenario_path.map(Path::to_path_buf).unwrap_or_else(|| {
        let as_given = PathBuf::from(&plan.scenario_path);
        match &plan.scenario_file {
            Some(abs) if !as_given.is_file() => abs.clone(),
            _ => as_given,
        }
    });
    if !scenario_path.is_file() {
        return Err(refuse(format!(
            "its scenario {} is not there any more; name it: \
             `tcobench run SCENARIO --resume {}`",
            scenario_path.display(),
            run_dir_path.display()
        )));
    }
    let scenario = Scenario::load(
        &scenario_path,
        &Overrides {
            seed: plan.overrides.seed,
            device: plan.overrides.device,
        },
    )?;
    let now = Plan::from_scenario(&scenario, &plan.scenario_path);
    same_plan(&plan, &now).map_err(|why| {
        refuse(format!(
            "{} now resolves to a different plan: {why}; numbers from both would not be \
             comparable, so start a new run",
            scenario_path.display()
        ))
    })?;

    let committed = run_dir.committed_ids()?;
    manifest.cells = plan
        .cells
        .iter()
        .map(|c| {
            if committed.contains(&c.cell_id) {
                run_dir
                    .read_cell_status(&c.cell_id)
                    .map_err(|e| refuse(format!("committed cell {}: {e:#}", c.cell_id)))
            } else {
                Ok(pending_record(c))
            }
        })
        .collect::<Result<_>>()?;
    same_versions(&manifest, &plan, &committed, &opts.models_dir).map_err(|why| {
        refuse(format!(
            "{why}; numbers measured by different versions would not be comparable, so start \
             a new run (or resume with the tcobench that started this one)"
        ))
    })?;
    if let (Some(then), Some(now)) = (&manifest.git_revision, host::git_revision(&scenario_path)) {
        if *then != now {
            eprintln!(
                "note: the git revision changed from {then} to {now}; tcobench and its backends \
                 have the same versions, so the cells stay comparable"
            );
        }
    }
    let timeout_then = plan.scenario["cell_timeout_s"].as_f64();
    if timeout_then != scenario.cell_timeout_s {
        let said = |t: Option<f64>| t.map_or_else(|| "not set".to_string(), |t| format!("{t} s"));
        eprintln!(
            "note: the scenario's cell_timeout_s changed from {} to {} since the run began; the \
             cells still to run get the new limit (unless --cell-timeout-s gives one)",
            said(timeout_then),
            said(scenario.cell_timeout_s)
        );
    }
    let execution = execution(&scenario);
    let stale = run_dir
        .remove_stale_temp(STALE_WRITER_WAIT)
        .map_err(|e| refuse(format!("{e:#}")))?;
    if stale > 0 {
        tracing::info!("removed {stale} unfinished cell commit(s)");
    }

    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    // Virtual time is replayed cell by cell (see `drive`); wall time goes on from the start.
    let clock = if all_mock {
        Clock::Virtual(virtual_clock.clone())
    } else {
        Clock::wall_since(&manifest.started_at)?
    };
    let (sampler, _) = power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let spent_before_usd = if all_mock {
        0.0
    } else {
        manifest.budget.as_ref().map_or(0.0, |b| b.spent_usd)
    };
    manifest.status = "running".into();
    manifest.ended_at = None;
    manifest.allow_disagreement |= opts.allow_disagreement;
    drive(
        Session {
            scenario: &scenario,
            plan,
            run_dir,
            manifest,
            clock,
            virtual_clock,
            sampler,
            committed,
            spent_before_usd,
            resumed: true,
        },
        opts,
        &execution,
    )
}

/// How long `--resume` waits for the cell processes of a killed attempt to go.
const STALE_WRITER_WAIT: Duration = Duration::from_secs(30);

/// Why `now` is not the same plan as `then`, if it is not.
fn same_plan(then: &Plan, now: &Plan) -> std::result::Result<(), String> {
    let (a, b) = (then.cell_ids(), now.cell_ids());
    if a != b {
        let added: Vec<_> = b.iter().filter(|id| !a.contains(id)).collect();
        let removed: Vec<_> = a.iter().filter(|id| !b.contains(id)).collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!(
                "{} cell(s) not in the run (first: {})",
                added.len(),
                added[0]
            ));
        }
        if !removed.is_empty() {
            parts.push(format!(
                "{} cell(s) of the run gone (first: {})",
                removed.len(),
                removed[0]
            ));
        }
        if parts.is_empty() {
            parts.push("the same cells in another order".into());
        }
        return Err(parts.join(", "));
    }
    // Settings outside the cell ids that shape the numbers.
    let keys = [
        ("power", "source"),
        ("power", "cpu_tdp_w"),
        ("power", "cpu_idle_fraction"),
        ("power", "mock_watts"),
        ("ort_threads", "intra"),
        ("ort_threads", "inter"),
    ];
    let changed: Vec<String> = keys
        .iter()
        .filter(|(section, key)| then.scenario[section][key] != now.scenario[section][key])
        .map(|(section, key)| {
            format!(
                "{section}.{key} {} → {}",
                then.scenario[section][key], now.scenario[section][key]
            )
        })
        .collect();
    if changed.is_empty() {
        Ok(())
    } else {
        Err(changed.join(", "))
    }
}

/// Why this tcobench may not add cells to the run of `manifest`, if it may not: its own version
/// and those of the crates that shape the numbers must be the ones recorded, and so must the ONNX
/// Runtime library when cells still to run use it.
fn same_versions(
    manifest: &Manifest,
    plan: &Plan,
    committed: &BTreeSet<String>,
    models_dir: &Path,
) -> std::result::Result<(), String> {
    let mut changed = Vec::new();
    for (name, now) in host::versions() {
        match manifest.versions.get(&name) {
            Some(then) if *then == now => {}
            Some(then) => changed.push(format!("{name} {then} → {now}")),
            None => changed.push(format!("{name} (not recorded) → {now}")),
        }
    }
    let ort_then = manifest
        .cells
        .iter()
        .find_map(|c| c.backend_info.get("onnxruntime").cloned())
        .or_else(|| manifest.versions.get("onnxruntime").cloned());
    let ort_to_run = plan
        .cells
        .iter()
        .any(|c| c.backend == BackendKind::Onnxruntime && !committed.contains(&c.cell_id));
    if let (Some(then), true) = (ort_then, ort_to_run) {
        let cache = models_dir.parent().unwrap_or(models_dir);
        match OrtRuntime::init(cache) {
            Ok(rt) if rt.version() == then => {}
            Ok(rt) => changed.push(format!("onnxruntime {then} → {}", rt.version())),
            Err(e) => changed.push(format!("onnxruntime {then} → not loadable ({e})")),
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!("versions changed: {}", changed.join(", ")))
    }
}

/// A run about to carry out its cells: fresh, or resumed.
struct Session<'a> {
    scenario: &'a Scenario,
    plan: Plan,
    run_dir: RunDir,
    manifest: Manifest,
    clock: Clock,
    virtual_clock: VirtualClock,
    sampler: Box<dyn PowerSampler>,
    /// Cells committed before this process started (a resumed run).
    committed: BTreeSet<String>,
    /// What earlier attempts spent of the budget on the wall clock, $.
    spent_before_usd: f64,
    resumed: bool,
}

/// Moves `clock` forward to `ns` (never back).
fn advance_to(clock: &VirtualClock, ns: u64) {
    let now = clock.now_ns();
    if ns > now {
        clock.advance_ns(ns - now);
    }
}

/// Milliseconds on the run clock back to the nanoseconds they were made from.
fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

/// The cell loop shared by fresh and resumed runs, in one process or one process per cell; then
/// the merge, the analysis and the report.
fn drive(session: Session<'_>, opts: &RunOptions, execution: &Execution) -> Result<RunOutcome> {
    let Session {
        scenario,
        plan,
        run_dir,
        mut manifest,
        clock,
        virtual_clock,
        sampler,
        committed,
        spent_before_usd,
        resumed,
    } = session;
    let all_mock = plan.all_mock();
    let mut budget = scenario.budget.as_ref().map(|b| {
        let mut tracker = BudgetTracker::new(b, clock.now_ns());
        tracker.spent_before_usd = spent_before_usd;
        tracker
    });
    manifest.budget = budget.as_ref().map(BudgetTracker::record);
    run_dir.write_manifest(&manifest)?;

    let ctrl_c = match execution {
        Execution::Processes(p) if p.handle_ctrl_c => CtrlC::install()?,
        _ => CtrlC::default(),
    };
    let sampler = Arc::new(Mutex::new(sampler));
    let wants_timeline = sampler.lock().expect("sampler lock").wants_timeline();
    let mut run_samples = Vec::new();
    // Idle baseline, measured with the same method before any model is loaded.
    if !resumed && scenario.power.idle_baseline_s > 0.0 && wants_timeline {
        let (baseline, samples) = idle_baseline(&sampler, &clock, &scenario.power);
        if let Some(w) = baseline.watts {
            manifest
                .power
                .notes
                .insert("idle_watts".into(), format!("{w:.3}"));
        }
        manifest.power.notes.insert(
            "idle_baseline_s".into(),
            scenario.power.idle_baseline_s.to_string(),
        );
        manifest.power.idle_baseline = Some(baseline);
        run_samples.extend(samples);
        // Kept at once: a run killed later still has its baseline.
        run_dir.write_run_power(&run_samples)?;
        run_dir.write_manifest(&manifest)?;
    }

    let total: u64 = plan.cells.iter().map(Cell::total_requests).sum();
    let bar = progress_bar(total, opts.progress);
    let mut cells: Box<dyn CellRunner + '_> = match execution {
        Execution::InProcess => {
            let timeline = Timeline::new(None);
            let thread = wants_timeline.then(|| {
                timeline.start(
                    &sampler,
                    &clock,
                    Duration::from_millis(u64::from(scenario.power.sample_ms)),
                )
            });
            Box::new(InProcessCells {
                run_dir: &run_dir,
                seed: plan.seed,
                clock: clock.clone(),
                backends: Backends::new(
                    &opts.models_dir,
                    OrtThreads {
                        intra: scenario.ort_threads.intra,
                        inter: scenario.ort_threads.inter,
                    },
                    virtual_clock.clone(),
                ),
                sampler: sampler.clone(),
                policy: WindowPolicy::from(&scenario.power),
                timeline,
                thread,
                outside: Vec::new(),
            })
        }
        Execution::Processes(options) => Box::new(ChildCells {
            worker: None,
            options,
            plan_path: run_dir.path.join(PLAN_FILE),
            run_dir: &run_dir,
            models_dir: &opts.models_dir,
            virtual_clock: all_mock.then(|| virtual_clock.clone()),
            ctrl_c: ctrl_c.clone(),
            bar: bar.clone(),
        }),
    };

    // Set when the budget stopped the run: every later cell is skipped with the same cause.
    let mut budget_stop: Option<BudgetStop> = None;
    let mut interrupted = false;
    for cell in &plan.cells {
        if committed.contains(&cell.cell_id) {
            // Committed by an earlier attempt. On the virtual clock its time is replayed, so the
            // cells still to run start where they would have in an uninterrupted run.
            if all_mock {
                if let Some(end) = manifest.cells[cell.index].window_end_ms {
                    advance_to(&virtual_clock, ms_to_ns(end));
                }
            }
            bar.inc(cell.total_requests());
            continue;
        }
        if cells.stop_requested() {
            interrupted = true;
            break;
        }
        if let Some(b) = budget.as_mut() {
            b.warn(clock.now_ns(), &bar);
            if budget_stop.is_none() {
                budget_stop = b.stop_before(cell, clock.now_ns());
                if let Some(stop) = &budget_stop {
                    bar.suspend(|| {
                        eprintln!(
                            "budget: stopping before cell {}: {}",
                            cell.label(),
                            stop.why
                        )
                    });
                }
            }
            if let Some(stop) = &budget_stop {
                let mut record = pending_record(cell);
                record.status = CellOutcome::Skipped;
                record.error = Some(b.skip_message(cell, stop));
                manifest.cells[cell.index] = record;
                bar.inc(cell.total_requests());
                continue;
            }
        }
        bar.set_message(cell.label());
        let bar_at_start = bar.position();
        let cell_start_ns = clock.now_ns();
        let ran = cells.run(cell, &mut |at_ns| {
            bar.inc(1);
            if let Some(ns) = at_ns {
                advance_to(&virtual_clock, ns);
            }
            if let Some(b) = budget.as_mut() {
                b.warn(clock.now_ns(), &bar);
            }
        })?;
        bar.set_position(bar.position().max(bar_at_start + cell.total_requests()));
        let (record, end_ns) = match ran {
            Ran::Stopped(record) => {
                manifest.cells[cell.index] = record;
                interrupted = true;
                break;
            }
            Ran::Committed { record, end_ns } => (record, end_ns),
        };
        if let Some(ns) = end_ns {
            advance_to(&virtual_clock, ns);
        }
        if let Some(b) = budget.as_mut() {
            if record.status == CellOutcome::Ok {
                b.learn(cell, clock.now_ns().saturating_sub(cell_start_ns));
            }
            manifest.budget = Some(b.record_at(clock.now_ns()));
        }
        if record.status == CellOutcome::Failed {
            let why = record.error.as_deref().unwrap_or("unknown error");
            bar.suspend(|| {
                eprintln!(
                    "cell {} failed: {}",
                    cell.label(),
                    why.lines().next().unwrap_or(why)
                )
            });
        }
        manifest.cells[cell.index] = record;
        run_dir.write_manifest(&manifest)?;
    }
    ctrl_c.finishing();
    if let Some(b) = budget.as_mut() {
        b.warn(clock.now_ns(), &bar);
        manifest.budget = Some(b.record_at(clock.now_ns()));
    }
    bar.finish_and_clear();
    let outside = cells.finish();
    if !resumed || !outside.is_empty() {
        run_samples.extend(outside);
        run_dir.write_run_power(&run_samples)?;
    }

    let failed = manifest
        .cells
        .iter()
        .filter(|c| c.status != CellOutcome::Ok)
        .count();
    manifest.status = if failed == 0 && !interrupted {
        "complete"
    } else {
        "incomplete"
    }
    .into();
    manifest.ended_at = Some(chrono::Utc::now().to_rfc3339());
    merge_cells(&run_dir, &mut manifest)?;
    if interrupted {
        return Err(Interrupted {
            run_dir: run_dir.path.clone(),
            committed: run_dir.committed_ids()?.len(),
            total: plan.cells.len(),
        }
        .into());
    }

    let stats = analyze_and_report(&run_dir.path)?;
    if let Some(log) = &opts.experiment_log {
        append_experiment_log(log, &manifest, &stats, &run_dir)?;
    }
    Ok(RunOutcome {
        run_dir,
        manifest,
        stats,
    })
}

/// Records the ONNX Runtime library the run used: this process's, or the one its cells' processes
/// reported.
fn record_ort_version(manifest: &mut Manifest) {
    let used = OrtRuntime::get()
        .map(|rt| (rt.version().to_string(), rt.library().source.to_string()))
        .or_else(|| {
            manifest.cells.iter().find_map(|c| {
                Some((
                    c.backend_info.get("onnxruntime")?.clone(),
                    c.backend_info.get("onnxruntime_library")?.clone(),
                ))
            })
        });
    if let Some((version, source)) = used {
        manifest.versions.insert("onnxruntime".into(), version);
        manifest.versions.insert(
            "onnxruntime_library".into(),
            format!("{source} (pinned {ORT_VERSION})"),
        );
    }
}

/// What carrying out one cell came to.
enum Ran {
    /// The cell is committed (ok or failed); `end_ns` is the run clock at its end when it was
    /// kept by another process (the mock backend's virtual clock).
    Committed {
        record: CellRecord,
        end_ns: Option<u64>,
    },
    /// Stopped part-way by Ctrl-C: nothing committed, the record says how far it got.
    Stopped(CellRecord),
}

/// Carries out cells one at a time and commits them.
trait CellRunner {
    /// Runs and commits `cell`; `progress` is called after every request, with the run clock
    /// when it is kept by another process.
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran>;
    /// Whether the user asked the run to stop.
    fn stop_requested(&self) -> bool;
    /// Ends the runner; returns the power samples taken outside any cell.
    fn finish(self: Box<Self>) -> Vec<PowerSample>;
}

/// Cells inside this process.
struct InProcessCells<'a> {
    run_dir: &'a RunDir,
    seed: u64,
    clock: Clock,
    backends: Backends,
    sampler: Arc<Mutex<Box<dyn PowerSampler>>>,
    policy: WindowPolicy,
    timeline: Arc<Timeline>,
    thread: Option<JoinHandle<()>>,
    /// Samples taken between cells.
    outside: Vec<PowerSample>,
}

impl CellRunner for InProcessCells<'_> {
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran> {
        *self.timeline.current_cell.lock().expect("lock") = Some(cell.cell_id.clone());
        let CellRun {
            mut result, window, ..
        } = run_cell(
            cell,
            &self.run_dir.run_id,
            self.seed,
            &mut self.backends,
            &self.clock,
            &self.sampler,
            &self.policy,
            &mut || {
                progress(None);
                true
            },
        );
        *self.timeline.current_cell.lock().expect("lock") = None;
        // Samples outside any cell (idle baseline, between cells) stay at the run level.
        let (mine, others): (Vec<_>, Vec<_>) = self
            .timeline
            .take()
            .into_iter()
            .partition(|s| s.cell_id.as_deref() == Some(cell.cell_id.as_str()));
        result.power = mine;
        finish_energy(&mut result, window.as_ref(), &self.policy);
        self.outside.extend(others);
        self.run_dir.commit_cell(&result)?;
        Ok(Ran::Committed {
            record: result.record,
            end_ns: None,
        })
    }

    fn stop_requested(&self) -> bool {
        false
    }

    fn finish(mut self: Box<Self>) -> Vec<PowerSample> {
        let rest = self.timeline.stop(self.thread.take());
        self.outside.extend(rest);
        std::mem::take(&mut self.outside)
    }
}

/// Cells in `run-cell` child processes: consecutive cells of the same backend, model, device and
/// dtype share one child (its model stays loaded), every other cell gets a new one; with
/// [`ProcessOptions::process_per_cell`], every cell does.
struct ChildCells<'a> {
    /// The child of the cells in flight, and what it keeps loaded.
    worker: Option<Worker>,
    options: &'a ProcessOptions,
    plan_path: PathBuf,
    run_dir: &'a RunDir,
    models_dir: &'a Path,
    /// The run's virtual clock, on runs that use one: children start from its reading.
    virtual_clock: Option<VirtualClock>,
    ctrl_c: CtrlC,
    bar: ProgressBar,
}

impl ChildCells<'_> {
    /// Ends the current child, if any, passing on what it prints meanwhile.
    fn close_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let bar = self.bar.clone();
            w.close(&mut |line| bar.suspend(|| eprintln!("{line}")));
        }
    }
}

impl CellRunner for ChildCells<'_> {
    fn run(&mut self, cell: &Cell, progress: &mut dyn FnMut(Option<u64>)) -> Result<Ran> {
        let key = if self.options.process_per_cell {
            cell.cell_id.clone()
        } else {
            format!(
                "{:?}|{}|{}|{}",
                cell.backend, cell.model, cell.device, cell.dtype
            )
        };
        if self.worker.as_ref().is_some_and(|w| w.key != key) {
            self.close_worker();
        }
        // A child that died while idle is not this cell's failure: start another.
        if self.worker.as_mut().is_some_and(|w| !w.alive()) {
            self.close_worker();
        }
        let worker = match &mut self.worker {
            Some(w) => w,
            None => self.worker.insert(Worker::spawn(
                &WorkerSpawn {
                    options: self.options,
                    plan: &self.plan_path,
                    run_dir: &self.run_dir.path,
                    models_dir: self.models_dir,
                },
                key,
            )?),
        };
        let virtual_time = self.virtual_clock.is_some();
        let started_at = chrono::Utc::now().to_rfc3339();
        let bar = self.bar.clone();
        let report = worker.run_cell(
            cell.index,
            self.virtual_clock.as_ref().map(VirtualClock::now_ns),
            self.options,
            &self.ctrl_c,
            &mut |event| {
                if let CellEvent::Request { clock_ns, .. } = event {
                    progress(virtual_time.then_some(*clock_ns));
                }
            },
            &mut |line| bar.suspend(|| eprintln!("{line}")),
        )?;
        match report.end {
            // A child that stopped part-way exits by itself; collect it.
            ChildEnd::Served if matches!(report.last_event, Some(CellEvent::Stopped { .. })) => {
                self.close_worker()
            }
            ChildEnd::Served if self.options.process_per_cell => self.close_worker(),
            ChildEnd::Served => {}
            // Gone (and reaped): the next cell starts another.
            _ => self.worker = None,
        }
        let end_ns = report.clock_ns().filter(|_| virtual_time);
        if self.run_dir.is_committed(&cell.cell_id) {
            // The child's own record is the truth, however the process ended afterwards.
            let record = self.run_dir.read_cell_status(&cell.cell_id)?;
            // A committed failed cell exits with EXIT_CELL_FAILED: that is its report, not news.
            let expected = match report.end {
                ChildEnd::Served => true,
                ChildEnd::Exited(status) => {
                    status.success()
                        || (record.status != CellOutcome::Ok
                            && status.code() == Some(i32::from(process::EXIT_CELL_FAILED)))
                }
                _ => false,
            };
            if !expected {
                let why = report.failure();
                self.bar.suspend(|| {
                    eprintln!(
                        "warning: cell {} was committed, but then {}",
                        cell.label(),
                        why.lines().next().unwrap_or_default()
                    )
                });
            }
            return Ok(Ran::Committed { record, end_ns });
        }
        let mut record = pending_record(cell);
        record.started_at = Some(started_at);
        record.ended_at = Some(chrono::Utc::now().to_rfc3339());
        if self.ctrl_c.presses() > 0 {
            record.error = Some(format!(
                "interrupted by Ctrl-C after {} of {} requests; not committed, so `run --resume` \
                 runs it again",
                report.done,
                cell.total_requests()
            ));
            return Ok(Ran::Stopped(record));
        }
        // The process died without committing: the cell failed, and the run goes on.
        record.status = CellOutcome::Failed;
        record.error = Some(report.failure());
        self.run_dir.commit_cell(&CellResult {
            record: record.clone(),
            requests: Vec::new(),
            power: Vec::new(),
        })?;
        Ok(Ran::Committed { record, end_ns })
    }

    fn stop_requested(&self) -> bool {
        self.ctrl_c.presses() > 0
    }

    fn finish(mut self: Box<Self>) -> Vec<PowerSample> {
        self.close_worker();
        Vec::new()
    }
}

/// Where a cell run by itself starts its run clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellClockStart {
    /// The mock backend's virtual clock, at this reading (runs whose cells are all mock).
    Virtual(u64),
    /// Wall time on the timeline of a run that started at this RFC 3339 time; `None`: now.
    Wall(Option<String>),
}

/// The model a `run-cell` process keeps loaded between the cells it runs (`run-cell --serve`):
/// consecutive cells of the same backend, model, device and dtype load it once.
#[derive(Default)]
pub struct KeptBackends(Option<Backends>);

impl std::fmt::Debug for KeptBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeptBackends")
            .field(&self.0.as_ref().and_then(|b| b.key.clone()))
            .finish()
    }
}

/// One cell carried out by itself (the `run-cell` primitive), not yet committed.
#[derive(Debug)]
pub struct SingleCell {
    /// The cell's record, requests and power samples.
    pub result: CellResult,
    /// Requests done when a stop was asked for part-way; the result is then partial and must
    /// not be committed.
    pub stopped_after: Option<u64>,
    /// The run clock at the end, ns.
    pub clock_end_ns: u64,
}

/// Runs cell `index` of `plan` by itself: loads its backend, runs the agreement gate and the
/// requests, and samples power while it runs. `after_request(done, clock_ns)` is called after
/// every request and returns whether to go on. The cell is not committed (the caller does
/// that); only the reference logits of the agreement gate are kept in `run_dir`'s
/// [`REFERENCE_LOGITS_DIR`], so that the run's other cells need not recompute them.
pub fn run_single_cell(
    plan: &Plan,
    index: usize,
    run_dir: &RunDir,
    models_dir: &Path,
    start: &CellClockStart,
    kept: &mut KeptBackends,
    after_request: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<SingleCell> {
    // In a `run` parent's child: what this process writes on standard error from now on is
    // this cell's.
    process::mark_cell_begin(index);
    let cell = plan.cells.get(index).with_context(|| {
        format!(
            "the plan has {} cells; there is no index {index}",
            plan.cells.len()
        )
    })?;
    let settings = plan.cell_settings()?;
    let all_mock = plan.all_mock();
    let virtual_clock = VirtualClock::new();
    // The mock power source counts energy from the clock's reading when it opens: opened at 0,
    // as in a run of all cells in one process, so the cell's energy figures are the same.
    // Measured on the cell's own device: a cell on cuda:1 is not measured on cuda:0's board.
    let devices = if settings.devices.contains(&cell.device) {
        vec![cell.device]
    } else {
        settings.devices.clone()
    };
    let (sampler, _) = power::open(
        &settings.power,
        &devices,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let policy = WindowPolicy::from(&settings.power);
    let clock = match start {
        _ if all_mock => {
            if let CellClockStart::Virtual(ns) = start {
                virtual_clock.advance_ns(*ns);
            }
            Clock::Virtual(virtual_clock.clone())
        }
        CellClockStart::Wall(Some(started)) => Clock::wall_since(started)?,
        _ => Clock::Wall(Instant::now()),
    };
    let sampler = Arc::new(Mutex::new(sampler));
    let timeline = Timeline::new(Some(cell.cell_id.clone()));
    let thread = sampler
        .lock()
        .expect("sampler lock")
        .wants_timeline()
        .then(|| {
            timeline.start(
                &sampler,
                &clock,
                Duration::from_millis(u64::from(settings.power.sample_ms)),
            )
        });
    let fresh = |clock: VirtualClock| {
        let mut b = Backends::new(
            models_dir,
            OrtThreads {
                intra: settings.ort_threads.intra,
                inter: settings.ort_threads.inter,
            },
            clock,
        );
        b.reference_dir = Some(run_dir.path.join(REFERENCE_LOGITS_DIR));
        b
    };
    // Mock cells run on this cell's virtual clock, so they get backends of their own; real
    // backends stay loaded for the next cell of this process.
    let mut backends = match kept.0.take() {
        Some(b) if !all_mock => b,
        _ => fresh(virtual_clock),
    };
    let mut done = 0;
    let CellRun {
        mut result,
        stopped_after,
        window,
    } = run_cell(
        cell,
        &run_dir.run_id,
        plan.seed,
        &mut backends,
        &clock,
        &sampler,
        &policy,
        &mut || {
            done += 1;
            after_request(done, clock.now_ns())
        },
    );
    result.power = timeline.stop(thread);
    finish_energy(&mut result, window.as_ref(), &policy);
    if !all_mock {
        kept.0 = Some(backends);
    }
    Ok(SingleCell {
        result,
        stopped_after,
        clock_end_ns: clock.now_ns(),
    })
}

/// Spending of a run with `budget_usd`: run time on the run's clock × the budget's rate, the
/// warnings already given, and the heuristic's calibration on the cells run so far.
#[derive(Debug)]
struct BudgetTracker {
    budget: Budget,
    start_ns: u64,
    /// Thresholds (fractions of the budget) not yet announced, ascending.
    pending_warnings: Vec<f64>,
    calibration: Calibration,
    /// What earlier attempts of a resumed run spent, $.
    spent_before_usd: f64,
}

/// Where and why the budget stopped a run.
#[derive(Debug)]
struct BudgetStop {
    /// The first cell not run.
    index: usize,
    /// Spent when the run stopped, $.
    spent_usd: f64,
    /// The numbers behind the decision, in words.
    why: String,
}

/// Fractions of the budget at which a warning is printed, once each.
const BUDGET_WARNINGS: [f64; 4] = [0.5, 0.75, 0.9, 1.0];

impl BudgetTracker {
    fn new(budget: &Budget, start_ns: u64) -> Self {
        BudgetTracker {
            budget: budget.clone(),
            start_ns,
            pending_warnings: BUDGET_WARNINGS.to_vec(),
            calibration: Calibration::default(),
            spent_before_usd: 0.0,
        }
    }

    fn spent_usd(&self, now_ns: u64) -> f64 {
        let hours = now_ns.saturating_sub(self.start_ns) as f64 / 3.6e12;
        self.spent_before_usd + hours * self.budget.usd_per_hour
    }

    fn record(&self) -> BudgetRecord {
        self.record_at(self.start_ns)
    }

    fn record_at(&self, now_ns: u64) -> BudgetRecord {
        BudgetRecord {
            usd: self.budget.usd,
            usd_per_hour: self.budget.usd_per_hour,
            rate_source: self.budget.rate_source.clone(),
            spent_usd: self.spent_usd(now_ns),
        }
    }

    /// Prints a warning for each threshold crossed since the last call.
    fn warn(&mut self, now_ns: u64, bar: &ProgressBar) {
        let spent = self.spent_usd(now_ns);
        let fraction = spent / self.budget.usd;
        while let Some(&t) = self.pending_warnings.first() {
            if fraction < t {
                break;
            }
            self.pending_warnings.remove(0);
            let what = if t >= 1.0 {
                "exceeded".to_string()
            } else {
                format!("{:.0} % spent", t * 100.0)
            };
            bar.suspend(|| {
                eprintln!(
                    "warning: budget {what}: {} of {} ({} $/h, {})",
                    fmt_usd(spent),
                    fmt_usd(self.budget.usd),
                    tcobench_analysis::fmt_sig(self.budget.usd_per_hour, 4),
                    self.budget.rate_source
                )
            });
        }
    }

    /// Calibrates the heuristic with a cell that completed in `elapsed_ns`.
    fn learn(&mut self, cell: &Cell, elapsed_ns: u64) {
        if let Some(h) = estimate::heuristic_cell_s(cell) {
            self.calibration.add(elapsed_ns as f64 / 1e9, h);
        }
    }

    /// The predicted seconds and cost of `cell`, when its model size is known.
    fn predict(&self, cell: &Cell) -> Option<(f64, f64)> {
        let s = estimate::heuristic_cell_s(cell)? * self.calibration.factor();
        Some((s, s / 3600.0 * self.budget.usd_per_hour))
    }

    fn prediction_words(&self, cell: &Cell) -> String {
        match self.predict(cell) {
            Some((s, usd)) => format!(
                "predicted {} ({}, {})",
                fmt_usd(usd),
                estimate::fmt_duration(s),
                self.calibration.describe("of this run")
            ),
            None => "no prediction (model size unknown)".into(),
        }
    }

    /// Why the run must stop before `cell`, if spent + predicted exceeds the budget.
    fn stop_before(&self, cell: &Cell, now_ns: u64) -> Option<BudgetStop> {
        let spent = self.spent_usd(now_ns);
        let predicted = self.predict(cell).map_or(0.0, |p| p.1);
        (spent + predicted > self.budget.usd).then(|| BudgetStop {
            index: cell.index,
            spent_usd: spent,
            why: format!(
                "spent {} of {} ({} % at {} $/h, {}); cell #{} {}; spent + predicted = {} > {}",
                fmt_usd(spent),
                fmt_usd(self.budget.usd),
                tcobench_analysis::fmt_sig(100.0 * spent / self.budget.usd, 3),
                tcobench_analysis::fmt_sig(self.budget.usd_per_hour, 4),
                self.budget.rate_source,
                cell.index,
                self.prediction_words(cell),
                fmt_usd(spent + predicted),
                fmt_usd(self.budget.usd)
            ),
        })
    }

    /// The `error` of a cell skipped because of `stop`.
    fn skip_message(&self, cell: &Cell, stop: &BudgetStop) -> String {
        if cell.index == stop.index {
            format!("skipped for budget: {}", stop.why)
        } else {
            format!(
                "skipped for budget: the run stopped before cell #{} with {} of {} spent; this cell: {}",
                stop.index,
                fmt_usd(stop.spent_usd),
                fmt_usd(self.budget.usd),
                self.prediction_words(cell)
            )
        }
    }
}

fn progress_bar(total: u64, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} requests · ETA {eta} · {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A cell's record before it has run: its configuration, status `pending`.
pub(crate) fn pending_record(cell: &Cell) -> CellRecord {
    CellRecord {
        cell_id: cell.cell_id.clone(),
        index: cell.index,
        backend: cell.backend.to_string(),
        model: cell.model.clone(),
        device: cell.device.to_string(),
        dtype: cell.dtype.to_string(),
        batch_size: cell.batch_size,
        prompt_tokens: cell.prompt_tokens,
        new_tokens: cell.new_tokens,
        warmup: cell.warmup,
        repetitions: cell.repetitions,
        status: CellOutcome::Pending,
        error: None,
        peak_rss_bytes: None,
        gpu_mem_bytes: None,
        energy_method: None,
        started_at: None,
        ended_at: None,
        window_start_ms: None,
        window_end_ms: None,
        agreement: None,
        backend_info: Default::default(),
        energy: None,
        host_load: None,
    }
}

/// Measures one request; shared by the run loop and the harness-overhead benchmark.
pub fn measure_request(
    backend: &mut dyn Backend,
    request: &Request,
    clock: &Clock,
    sampler: &Mutex<Box<dyn PowerSampler>>,
) -> Measured {
    let start = sampler.lock().expect("sampler lock").read();
    let mut first_ns = None;
    let t0 = clock.now_ns();
    let result = backend.generate(request, &mut |step: usize| {
        if step == 0 {
            first_ns = Some(clock.now_ns());
        }
    });
    // The tokens are on the host: the device has finished the request's work.
    let t1 = clock.now_ns();
    let end = sampler.lock().expect("sampler lock").read();
    Measured {
        t0_ns: t0,
        first_ns,
        t1_ns: t1,
        energy_j: start.energy_j_cum.zip(end.energy_j_cum).map(|(a, b)| b - a),
        start,
        end,
        result: result.map(|g| g.tokens).map_err(|e| e.to_string()),
    }
}

/// The raw outcome of one request.
#[derive(Debug)]
pub struct Measured {
    /// Clock at the start, ns.
    pub t0_ns: u64,
    /// Clock when the first token was on the host, ns.
    pub first_ns: Option<u64>,
    /// Clock at the end, ns.
    pub t1_ns: u64,
    /// Energy of the window, joules.
    pub energy_j: Option<f64>,
    /// The energy source's reading at the start (before the clock starts).
    pub start: Reading,
    /// The energy source's reading at the end (after the clock stops).
    pub end: Reading,
    /// Generated tokens, or the error.
    pub result: std::result::Result<Vec<Vec<u32>>, String>,
}

/// Turns one measured request into its `requests.parquet` row.
pub fn request_record(
    cell: &Cell,
    run_id: &str,
    rep: u32,
    warmup: bool,
    request: &Request,
    m: &Measured,
    energy_method: &str,
) -> RequestRecord {
    let e2e = ns_to_ms(m.t1_ns - m.t0_ns);
    let ttft = m.first_ns.map(|f| ns_to_ms(f - m.t0_ns));
    let generated = f64::from(cell.batch_size) * f64::from(cell.new_tokens);
    let ok = m.result.is_ok();
    let (output_hash, error) = match &m.result {
        Ok(tokens) => (Some(token_hash(tokens)), None),
        Err(e) => (None, Some(e.clone())),
    };
    RequestRecord {
        run_id: run_id.to_string(),
        cell_id: cell.cell_id.clone(),
        backend: cell.backend.to_string(),
        model: cell.model.clone(),
        device: cell.device.to_string(),
        dtype: cell.dtype.to_string(),
        batch_size: cell.batch_size,
        prompt_tokens: cell.prompt_tokens,
        new_tokens: cell.new_tokens,
        rep,
        warmup,
        ttft_ms: ttft.filter(|_| ok),
        e2e_ms: ok.then_some(e2e),
        tpot_ms: ttft
            .filter(|_| ok && cell.new_tokens > 1)
            .map(|t| (e2e - t) / f64::from(cell.new_tokens - 1)),
        tokens_per_s: (ok && e2e > 0.0).then(|| generated / (e2e / 1e3)),
        energy_j: m.energy_j.filter(|_| ok),
        energy_method: energy_method.to_string(),
        energy_valid: None,
        input_hash: token_hash(&request.prompts),
        output_hash,
        status: if ok { "ok" } else { "error" }.into(),
        error,
    }
}

/// What [`run_cell`] left: the cell's result and, when it was asked to stop part-way, after how
/// many requests (the result is then partial and must not be committed).
struct CellRun {
    result: CellResult,
    stopped_after: Option<u64>,
    /// The edges of the cell's measured window (its timed requests), when any ran.
    window: Option<WindowEdges>,
}

/// The edges of a cell's measured window: the first timed request's start and the last one's
/// end, with what was generated inside.
#[derive(Debug, Clone)]
struct WindowEdges {
    source: SourceInfo,
    start: Edge,
    end: Edge,
    generated_tokens: u64,
    requests_below_min_window: u32,
    /// Untimed requests run only to lengthen the window.
    padding_requests: u32,
}

/// Stores the energy of the cell's window, now that its timeline samples are in `result`.
///
/// Why one window per cell: the timed requests, run back to back, are measured as one window
/// whose figure is the cell's energy; a request whose own window is shorter than the minimum
/// keeps its figure but is marked `energy_valid: false`. When even the whole window is short,
/// [`run_cell`] lengthens it with untimed padding requests (`power.pad_requests_max`) rather
/// than add timed ones, which would change the cell's request count, seeds and latency
/// statistics depending on the power source.
fn finish_energy(result: &mut CellResult, window: Option<&WindowEdges>, policy: &WindowPolicy) {
    if let Some(w) = window {
        result.record.energy = Some(energy_window::summarise(
            &w.source,
            policy,
            &w.start,
            &w.end,
            &result.power,
            w.generated_tokens,
            w.requests_below_min_window,
        ));
        if let Some(e) = result.record.energy.as_mut() {
            e.padding_requests = w.padding_requests;
        }
    }
}

/// Runs one cell; `after_request` is called after every request and returns whether to go on.
// The energy source and its window policy travel beside the backend state: bundling them would
// only rename the arguments.
#[allow(clippy::too_many_arguments)]
fn run_cell(
    cell: &Cell,
    run_id: &str,
    seed: u64,
    backends: &mut Backends,
    clock: &Clock,
    sampler: &Mutex<Box<dyn PowerSampler>>,
    policy: &WindowPolicy,
    after_request: &mut dyn FnMut() -> bool,
) -> CellRun {
    let mut stopped_after = None;
    let source = SourceInfo::of(sampler.lock().expect("sampler lock").as_ref());
    let mut window: Option<WindowEdges> = None;
    let mut record = pending_record(cell);
    record.started_at = Some(chrono::Utc::now().to_rfc3339());
    let energy_method = sampler.lock().expect("sampler lock").method().to_string();
    record.energy_method = Some(energy_method.clone());
    host::reset_peak_rss();
    let mut requests = Vec::new();
    // The host's CPU counters at the first timed request (real backends only: a mock cell's
    // clock is virtual, so the host's load cannot slow it).
    let watch_host = cell.backend != BackendKind::Mock;
    let mut load_start = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let backend = backends.get(cell).with_context(|| {
            format!(
                "loading {} on {} as {}",
                cell.model, cell.device, cell.dtype
            )
        })?;
        let vocab = backend.config().vocab_size;
        let _ = backend;
        // Before anything is timed: does this cell compute the same maths as the reference?
        let agreement = agreement_gate(cell, seed, backends);
        if agreement.status == AgreementStatus::Failed {
            eprintln!(
                "cell {}: logits disagree with {} (max relative difference {:.3e} > {:.0e}); it is timed but kept out of comparisons",
                cell.label(),
                agreement.reference,
                agreement.max_rel_diff.unwrap_or(f64::NAN),
                agreement.tolerance
            );
        }
        record.agreement = Some(agreement);
        record.backend_info = backends.info.clone();
        let backend = backends.get(cell)?;
        let schedule = (0..cell.warmup)
            .map(|r| (r, true))
            .chain((0..cell.repetitions).map(|r| (r, false)));
        for (rep, warmup) in schedule {
            let request = Request {
                prompts: prompts(seed, cell, rep, warmup, vocab),
                new_tokens: cell.new_tokens as usize,
            };
            if watch_host && !warmup && load_start.is_none() {
                load_start = hostload::CpuSnapshot::read();
            }
            let m = measure_request(backend.as_mut(), &request, clock, sampler);
            let mut row = request_record(cell, run_id, rep, warmup, &request, &m, &energy_method);
            let long_enough =
                energy_window::long_enough(&source, policy, ns_to_ms(m.t1_ns - m.t0_ns));
            row.energy_valid = row.energy_j.map(|_| long_enough);
            if !warmup {
                record.window_start_ms.get_or_insert(ns_to_ms(m.t0_ns));
                record.window_end_ms = Some(ns_to_ms(m.t1_ns));
                let w = window.get_or_insert_with(|| WindowEdges {
                    source: source.clone(),
                    start: Edge {
                        t_ms: ns_to_ms(m.t0_ns),
                        reading: m.start,
                    },
                    end: Edge::default(),
                    generated_tokens: 0,
                    requests_below_min_window: 0,
                    padding_requests: 0,
                });
                w.end = Edge {
                    t_ms: ns_to_ms(m.t1_ns),
                    reading: m.end,
                };
                if m.result.is_ok() {
                    w.generated_tokens += u64::from(cell.batch_size) * u64::from(cell.new_tokens);
                }
                if row.energy_valid == Some(false) {
                    w.requests_below_min_window += 1;
                }
            }
            let error = row.error.clone();
            requests.push(row);
            let go_on = after_request();
            if let Some(e) = error {
                anyhow::bail!(
                    "request {} ({}): {e}",
                    rep,
                    if warmup { "warm-up" } else { "timed" }
                );
            }
            if !go_on {
                stopped_after = Some(requests.len() as u64);
                break;
            }
        }
        // A window too short for the source's resolution is lengthened with untimed requests
        // (the timed prompts again, in order): they add energy and tokens to the window, never
        // rows to the latency statistics.
        if let (None, Some(w)) = (stopped_after, window.as_mut()) {
            let min_ms = policy.min_window_ms(w.source.update_period_ms);
            while w.end.t_ms - w.start.t_ms < min_ms && w.padding_requests < policy.pad_requests_max
            {
                let rep = w.padding_requests % cell.repetitions.max(1);
                let request = Request {
                    prompts: prompts(seed, cell, rep, false, vocab),
                    new_tokens: cell.new_tokens as usize,
                };
                let m = measure_request(backend.as_mut(), &request, clock, sampler);
                if m.result.is_err() {
                    // The timed requests stand; the window stays short and is marked so.
                    break;
                }
                w.end = Edge {
                    t_ms: ns_to_ms(m.t1_ns),
                    reading: m.end,
                };
                w.generated_tokens += u64::from(cell.batch_size) * u64::from(cell.new_tokens);
                w.padding_requests += 1;
                record.window_end_ms = Some(ns_to_ms(m.t1_ns));
            }
        }
        Ok(())
    }));
    if let Some(start) = load_start {
        record.host_load =
            hostload::CpuSnapshot::read().and_then(|end| hostload::between(&start, &end));
    }
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(format!("panic: {}", panic_message(&panic))),
    };
    if error.is_some() {
        // A backend that panicked may be in any state: never reuse it.
        backends.loaded = None;
        backends.key = None;
    }
    record.status = if error.is_some() {
        CellOutcome::Failed
    } else if let Some(done) = stopped_after.filter(|&d| d < cell.total_requests()) {
        record.error = Some(format!(
            "interrupted after {done} of {} requests; not committed, so `run --resume` runs it again",
            cell.total_requests()
        ));
        CellOutcome::Pending
    } else {
        // A stop requested after the last request changes nothing: the cell is complete.
        stopped_after = None;
        CellOutcome::Ok
    };
    if error.is_some() {
        stopped_after = None;
        record.error = error;
    }
    record.peak_rss_bytes = host::peak_rss_bytes();
    // The backend's own figure when it has one, else the driver's per-process figure (taken at
    // the end of the cell, where caching allocators hold their high-water mark).
    record.gpu_mem_bytes = backends
        .loaded
        .as_ref()
        .and_then(|b| b.device_memory_bytes())
        .or_else(|| match cell.device {
            Device::Cuda(i) => host::gpu_memory_bytes(i),
            Device::Cpu => None,
        });
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    CellRun {
        result: CellResult {
            record,
            requests,
            power: Vec::new(),
        },
        stopped_after,
        window,
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Appends one line to the experiment log (creating it with a header if needed).
pub fn append_experiment_log(
    log: &Path,
    manifest: &Manifest,
    stats: &RunStats,
    run_dir: &RunDir,
) -> Result<()> {
    use std::io::Write;
    let new = !log.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    if new {
        writeln!(f, "# Experiment log\n\nOne line per run: date · scenario · git revision · headline · report.\n")?;
    }
    let report = run_dir
        .path
        .join(tcobench_analysis::schema::files::REPORT_MD);
    writeln!(
        f,
        "- {} · `{}` · {} · {} · [{}]({})",
        manifest
            .started_at
            .get(..19)
            .unwrap_or(&manifest.started_at),
        manifest.scenario_name.replace('`', "'"),
        manifest
            .git_revision
            .as_deref()
            .unwrap_or("no git revision"),
        stats.headline(),
        manifest.status,
        report.display()
    )
    .with_context(|| format!("appending to {}", log.display()))?;
    Ok(())
}
