//! One cell's requests: warm-ups and timed repetitions on its backend, each measured between
//! two readings of the energy source, and the cell's measured energy window.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use anyhow::{Context, Result};
use tcobench_backends::{Backend, Device, Request};
use tcobench_results::schema::{AgreementStatus, CellOutcome, CellRecord, RequestRecord};

use super::backends::{agreement_gate, Backends};
use super::clock::{ns_to_ms, Clock};
use super::prompts::{prompts, token_hash};
use super::writer::CellResult;
use super::{host, hostload, pending_record};
use crate::plan::Cell;
use crate::power::window::{self as energy_window, Edge, SourceInfo, WindowPolicy};
use crate::power::{PowerSampler, Reading};
use crate::scenario::BackendKind;

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
    let generated = f64::from(cell.config.batch_size) * f64::from(cell.config.new_tokens);
    let ok = m.result.is_ok();
    let (output_hash, error) = match &m.result {
        Ok(tokens) => (Some(token_hash(tokens)), None),
        Err(e) => (None, Some(e.clone())),
    };
    RequestRecord {
        run_id: run_id.to_string(),
        cell_id: cell.cell_id.clone(),
        config: cell.config.to_record(),
        rep,
        warmup,
        ttft_ms: ttft.filter(|_| ok),
        e2e_ms: ok.then_some(e2e),
        tpot_ms: ttft
            .filter(|_| ok && cell.config.new_tokens > 1)
            .map(|t| (e2e - t) / f64::from(cell.config.new_tokens - 1)),
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
pub(crate) struct CellRun {
    pub(crate) result: CellResult,
    pub(crate) stopped_after: Option<u64>,
    /// The edges of the cell's measured window (its timed requests), when any ran.
    pub(crate) window: Option<WindowEdges>,
}

/// The edges of a cell's measured window: the first timed request's start and the last one's
/// end, with what was generated inside.
#[derive(Debug, Clone)]
pub(crate) struct WindowEdges {
    source: SourceInfo,
    start: Edge,
    end: Edge,
    generated_tokens: u64,
    requests_below_min_window: u32,
    /// Untimed requests run only to lengthen the window.
    padding_requests: u32,
}

impl WindowEdges {
    /// The window of a cell whose first timed request is `m`.
    fn open(source: &SourceInfo, m: &Measured) -> Self {
        WindowEdges {
            source: source.clone(),
            start: Edge {
                t_ms: ns_to_ms(m.t0_ns),
                reading: m.start,
            },
            end: Edge::default(),
            generated_tokens: 0,
            requests_below_min_window: 0,
            padding_requests: 0,
        }
    }

    /// The window now ends with request `m`, whose tokens it counts when `m` succeeded.
    fn extend(&mut self, m: &Measured, cell: &Cell) {
        self.end = Edge {
            t_ms: ns_to_ms(m.t1_ns),
            reading: m.end,
        };
        if m.result.is_ok() {
            self.generated_tokens +=
                u64::from(cell.config.batch_size) * u64::from(cell.config.new_tokens);
        }
    }
}

/// The cell's outcome from how its requests went: failed with `error`, pending when a stop
/// came before its last request (it is not committed, so `--resume` runs it again), else ok.
/// Returns the number of requests after which the cell was stopped, when it was.
fn settle_outcome(
    record: &mut CellRecord,
    error: Option<String>,
    stopped_after: Option<u64>,
    cell: &Cell,
) -> Option<u64> {
    if let Some(error) = error {
        record.status = CellOutcome::Failed;
        record.error = Some(error);
        return None;
    }
    match stopped_after.filter(|&done| done < cell.total_requests()) {
        Some(done) => {
            record.error = Some(format!(
                "interrupted after {done} of {} requests; not committed, so `run --resume` runs it again",
                cell.total_requests()
            ));
            record.status = CellOutcome::Pending;
            Some(done)
        }
        None => {
            // A stop requested after the last request changes nothing: the cell is complete.
            record.status = CellOutcome::Ok;
            None
        }
    }
}

/// Stores the energy of the cell's window, now that its timeline samples are in `result`.
///
/// Why one window per cell: the timed requests, run back to back, are measured as one window
/// whose figure is the cell's energy; a request whose own window is shorter than the minimum
/// keeps its figure but is marked `energy_valid: false`. When even the whole window is short,
/// [`run_cell`] lengthens it with untimed padding requests (`power.pad_requests_max`) rather
/// than add timed ones, which would change the cell's request count, seeds and latency
/// statistics depending on the power source.
pub(crate) fn finish_energy(
    result: &mut CellResult,
    window: Option<&WindowEdges>,
    policy: &WindowPolicy,
) {
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
pub(crate) fn run_cell(
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
    let watch_host = cell.config.backend != BackendKind::Mock;
    let mut load_start = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let backend = backends.get(cell).with_context(|| {
            format!(
                "loading {} on {} as {}",
                cell.config.model, cell.config.device, cell.config.dtype
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
                new_tokens: cell.config.new_tokens as usize,
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
                let w = window.get_or_insert_with(|| WindowEdges::open(&source, &m));
                w.extend(&m, cell);
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
                    new_tokens: cell.config.new_tokens as usize,
                };
                let m = measure_request(backend.as_mut(), &request, clock, sampler);
                if m.result.is_err() {
                    // The timed requests stand; the window stays short and is marked so.
                    break;
                }
                w.extend(&m, cell);
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
    let stopped_after = settle_outcome(&mut record, error, stopped_after, cell);
    record.peak_rss_bytes = host::peak_rss_bytes();
    // The backend's own figure when it has one, else the driver's per-process figure (taken at
    // the end of the cell, where caching allocators hold their high-water mark).
    record.gpu_mem_bytes = backends
        .loaded
        .as_ref()
        .and_then(|b| b.device_memory_bytes())
        .or_else(|| match cell.config.device {
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
