//! The run loop: plan → backends × power sampler → results folder → analysis → report.
//!
//! The loop, not the backend, owns clocks and repetitions. For every request it reads the energy
//! source, starts the clock, lets the backend generate (noting the first token through an
//! observer), stops the clock and reads the energy source again. A failing cell — an error or a
//! panic inside a backend — is recorded with its cause and the run goes on.
//!
//! A scenario with `budget_usd` is charged run time (on the run's clock, so virtual time for
//! mock runs) × the budget's $/h. Crossing 50, 75 and 90 % of the budget prints a warning once
//! each; before each cell its cost is predicted (the heuristic of [`crate::estimate`],
//! calibrated on the cells this run has finished) and, when spent + predicted would exceed the
//! budget, that cell and every later one are recorded `skipped` with the numbers, and the run
//! ends `incomplete`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use tcobench_analysis::schema::{Agreement, AgreementStatus};
use tcobench_analysis::schema::{
    BudgetRecord, CellOutcome, CellRecord, Manifest, PowerSample, RequestRecord, SCHEMA_VERSION,
};
use tcobench_analysis::RunStats;
use tcobench_backends::model::{self, BuiltinModel, ModelSource};
use tcobench_backends::onnx::ensure_onnx;
use tcobench_backends::{
    agreement_tolerance, max_relative_diff, Backend, CandleBackend, DType, Device, MockBackend,
    MockCost, OrtBackend, OrtRuntime, OrtThreads, Request, VirtualClock, ORT_VERSION,
};

use crate::estimate::{self, fmt_usd, Calibration};
use crate::host;
use crate::plan::{sanitize, Cell, Plan};
use crate::power::{self, PowerSampler};
use crate::results::{CellResult, RunDir};
use crate::scenario::{BackendKind, Budget, Scenario};

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
}

impl Clock {
    /// Nanoseconds since the clock's origin. Durations are differences of these integers, so
    /// they carry no rounding noise.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Wall(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Virtual(v) => v.now_ns(),
        }
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
                    let dir = model::resolve(&source, &self.models_dir)?;
                    // Built-in models get their ONNX export written (once) from the same weights;
                    // a user's directory must bring its own model.onnx.
                    if matches!(source, ModelSource::Builtin { .. }) {
                        ensure_onnx(&dir)?;
                    }
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
        let computed = (|| -> Result<Vec<Vec<f32>>> {
            let dir = model::resolve(&model_source(model_name), &self.models_dir)?;
            let mut reference = CandleBackend::load(&dir, Device::Cpu, DType::F32)?;
            Ok(reference.logits_probe(prompt, continuation)?)
        })()
        .map_err(|e| format!("{e:#}"));
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

fn sample(
    sampler: &Mutex<Box<dyn PowerSampler>>,
    clock: &Clock,
    cell: Option<String>,
) -> PowerSample {
    let mut s = sampler.lock().expect("sampler lock");
    let r = s.read();
    PowerSample {
        t_ms: clock.now_ms(),
        source: s.method().to_string(),
        device: s.device(),
        cell_id: cell,
        watts: r.watts,
        energy_j_cum: r.energy_j_cum,
        temp_c: r.temp_c,
        sm_clock_mhz: r.sm_clock_mhz,
        throttle_reasons: r.throttle_reasons,
    }
}

/// Runs a scenario end to end and returns where its results are.
pub fn run(scenario: &Scenario, scenario_path: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    let plan = Plan::from_scenario(scenario, &scenario_path.display().to_string());
    let all_mock = plan.cells.iter().all(|c| c.backend == BackendKind::Mock);
    let virtual_clock = VirtualClock::new();
    let clock = if all_mock {
        Clock::Virtual(virtual_clock.clone())
    } else {
        Clock::Wall(Instant::now())
    };

    let started = chrono::Utc::now();
    let run_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        sanitize(&scenario.name)
    );
    let run_dir = RunDir::create(&opts.out, &run_id)?;

    let (sampler, why) = power::open(
        &scenario.power,
        &scenario.device,
        all_mock.then_some(&virtual_clock),
    )
    .map_err(|e| anyhow::anyhow!("power source: {e}"))?;
    let mut manifest = Manifest {
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
        power: power::power_info(sampler.as_ref(), scenario.power.sample_ms, &why),
        started_at: started.to_rfc3339(),
        ended_at: None,
        status: "running".into(),
        cells: plan.cells.iter().map(pending_record).collect(),
        costing: scenario.costing.clone(),
        budget: None,
        allow_disagreement: opts.allow_disagreement,
    };
    let mut budget = scenario
        .budget
        .as_ref()
        .map(|b| BudgetTracker::new(b, clock.now_ns()));
    manifest.budget = budget.as_ref().map(BudgetTracker::record);
    run_dir.write_manifest(&manifest)?;

    let sampler = Arc::new(Mutex::new(sampler));
    let timeline = Arc::new(Timeline {
        samples: Mutex::new(Vec::new()),
        current_cell: Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let wants_timeline = sampler.lock().expect("sampler lock").wants_timeline();

    // Idle baseline, measured with the same method before any model is loaded.
    if scenario.power.idle_baseline_s > 0.0 && wants_timeline {
        let first = sample(&sampler, &clock, None);
        std::thread::sleep(Duration::from_secs_f64(scenario.power.idle_baseline_s));
        let last = sample(&sampler, &clock, None);
        if let (Some(e0), Some(e1)) = (first.energy_j_cum, last.energy_j_cum) {
            let w = (e1 - e0) / ((last.t_ms - first.t_ms) / 1e3);
            manifest
                .power
                .notes
                .insert("idle_watts".into(), format!("{w:.3}"));
            manifest.power.notes.insert(
                "idle_baseline_s".into(),
                scenario.power.idle_baseline_s.to_string(),
            );
        }
        timeline.samples.lock().expect("lock").extend([first, last]);
    }

    let sampler_thread = wants_timeline.then(|| {
        let (sampler, timeline, clock) = (sampler.clone(), timeline.clone(), clock.clone());
        let period = Duration::from_millis(u64::from(scenario.power.sample_ms));
        std::thread::spawn(move || {
            while !timeline.stop.load(Ordering::Relaxed) {
                let cell = timeline.current_cell.lock().expect("lock").clone();
                let s = sample(&sampler, &clock, cell);
                timeline.samples.lock().expect("lock").push(s);
                std::thread::sleep(period);
            }
        })
    });

    let total: u64 = plan.cells.iter().map(Cell::total_requests).sum();
    let bar = progress_bar(total, opts.progress);
    let mut backends = Backends {
        key: None,
        loaded: None,
        info: BTreeMap::new(),
        models_dir: opts.models_dir.clone(),
        cache_dir: opts
            .models_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| opts.models_dir.clone()),
        ort_threads: OrtThreads {
            intra: scenario.ort_threads.intra,
            inter: scenario.ort_threads.inter,
        },
        virtual_clock,
        reference: BTreeMap::new(),
    };
    let run_id = run_dir.run_id.clone();
    let mut run_samples = Vec::new();
    // Set when the budget stopped the run: every later cell is skipped with the same cause.
    let mut budget_stop: Option<BudgetStop> = None;
    for cell in &plan.cells {
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
        *timeline.current_cell.lock().expect("lock") = Some(cell.cell_id.clone());
        let cell_start_ns = clock.now_ns();
        let mut result = run_cell(
            cell,
            &run_id,
            scenario.seed,
            &mut backends,
            &clock,
            &sampler,
            &mut || {
                bar.inc(1);
                if let Some(b) = budget.as_mut() {
                    b.warn(clock.now_ns(), &bar);
                }
            },
        );
        if let Some(b) = budget.as_mut() {
            if result.record.status == CellOutcome::Ok {
                b.learn(cell, clock.now_ns().saturating_sub(cell_start_ns));
            }
            manifest.budget = Some(b.record_at(clock.now_ns()));
        }
        *timeline.current_cell.lock().expect("lock") = None;
        // Samples outside any cell (idle baseline, between cells) stay at the run level.
        let (mine, others): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *timeline.samples.lock().expect("lock"))
                .into_iter()
                .partition(|s| s.cell_id.as_deref() == Some(cell.cell_id.as_str()));
        result.power = mine;
        run_samples.extend(others);
        if result.record.status == CellOutcome::Failed {
            bar.suspend(|| {
                eprintln!(
                    "cell {} failed: {}",
                    cell.label(),
                    result.record.error.as_deref().unwrap_or("unknown error")
                )
            });
        }
        run_dir.commit_cell(&result)?;
        manifest.cells[cell.index] = result.record;
        run_dir.write_manifest(&manifest)?;
    }
    if let Some(b) = budget.as_mut() {
        b.warn(clock.now_ns(), &bar);
        manifest.budget = Some(b.record_at(clock.now_ns()));
    }
    bar.finish_and_clear();
    timeline.stop.store(true, Ordering::Relaxed);
    if let Some(t) = sampler_thread {
        let _ = t.join();
    }
    run_samples.extend(std::mem::take(&mut *timeline.samples.lock().expect("lock")));
    run_dir.write_run_power(&run_samples)?;

    let failed = manifest
        .cells
        .iter()
        .filter(|c| c.status != CellOutcome::Ok)
        .count();
    manifest.status = if failed == 0 {
        "complete"
    } else {
        "incomplete"
    }
    .into();
    manifest.ended_at = Some(chrono::Utc::now().to_rfc3339());
    if let Some(rt) = OrtRuntime::get() {
        manifest
            .versions
            .insert("onnxruntime".into(), rt.version().to_string());
        manifest.versions.insert(
            "onnxruntime_library".into(),
            format!("{} (pinned {ORT_VERSION})", rt.library().source),
        );
    }
    run_dir.merge(&manifest)?;
    run_dir.write_manifest(&manifest)?;

    let stats = tcobench_analysis::analyze(&run_dir.path)
        .with_context(|| format!("analysing {}", run_dir.path.display()))?;
    tcobench_analysis::write_report(&run_dir.path, &stats, None)
        .with_context(|| format!("writing the report in {}", run_dir.path.display()))?;
    if let Some(log) = &opts.experiment_log {
        append_experiment_log(log, &manifest, &stats, &run_dir)?;
    }
    Ok(RunOutcome {
        run_dir,
        manifest,
        stats,
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
        }
    }

    fn spent_usd(&self, now_ns: u64) -> f64 {
        let hours = now_ns.saturating_sub(self.start_ns) as f64 / 3.6e12;
        hours * self.budget.usd_per_hour
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

fn pending_record(cell: &Cell) -> CellRecord {
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
    }
}

/// Measures one request; shared by the run loop and the harness-overhead benchmark.
pub fn measure_request(
    backend: &mut dyn Backend,
    request: &Request,
    clock: &Clock,
    sampler: &Mutex<Box<dyn PowerSampler>>,
) -> Measured {
    let e0 = sampler.lock().expect("sampler lock").read().energy_j_cum;
    let mut first_ns = None;
    let t0 = clock.now_ns();
    let result = backend.generate(request, &mut |step: usize| {
        if step == 0 {
            first_ns = Some(clock.now_ns());
        }
    });
    let t1 = clock.now_ns();
    let e1 = sampler.lock().expect("sampler lock").read().energy_j_cum;
    Measured {
        t0_ns: t0,
        first_ns,
        t1_ns: t1,
        energy_j: e0.zip(e1).map(|(a, b)| b - a),
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
        input_hash: token_hash(&request.prompts),
        output_hash,
        status: if ok { "ok" } else { "error" }.into(),
        error,
    }
}

fn run_cell(
    cell: &Cell,
    run_id: &str,
    seed: u64,
    backends: &mut Backends,
    clock: &Clock,
    sampler: &Mutex<Box<dyn PowerSampler>>,
    after_request: &mut dyn FnMut(),
) -> CellResult {
    let mut record = pending_record(cell);
    record.started_at = Some(chrono::Utc::now().to_rfc3339());
    let energy_method = sampler.lock().expect("sampler lock").method().to_string();
    record.energy_method = Some(energy_method.clone());
    host::reset_peak_rss();
    let mut requests = Vec::new();
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
            let m = measure_request(backend.as_mut(), &request, clock, sampler);
            if !warmup {
                record.window_start_ms.get_or_insert(ns_to_ms(m.t0_ns));
                record.window_end_ms = Some(ns_to_ms(m.t1_ns));
            }
            let row = request_record(cell, run_id, rep, warmup, &request, &m, &energy_method);
            let error = row.error.clone();
            requests.push(row);
            after_request();
            if let Some(e) = error {
                anyhow::bail!(
                    "request {} ({}): {e}",
                    rep,
                    if warmup { "warm-up" } else { "timed" }
                );
            }
        }
        Ok(())
    }));
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
    record.status = if error.is_none() {
        CellOutcome::Ok
    } else {
        CellOutcome::Failed
    };
    record.error = error;
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
    CellResult {
        record,
        requests,
        power: Vec::new(),
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
