//! Synthetic run folders for the tests of the crates that read them (feature `testutil`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::io;
use crate::schema::{files, CellOutcome, CellRecord, Manifest, SCHEMA_VERSION};
use crate::schema::{HostInfo, PowerInfo, PowerSample, RequestRecord};
use crate::CellConfig;

/// A string with every character HTML and Markdown must escape.
pub const NASTY: &str = "<script>alert(1)</script> \"q\" 'a' & co";

fn cell(i: usize, id: &str, model: &str, batch: u32, status: CellOutcome) -> CellRecord {
    CellRecord {
        cell_id: id.into(),
        index: i,
        config: CellConfig {
            backend: "mock".into(),
            model: model.into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            batch_size: batch,
            prompt_tokens: 16,
            new_tokens: 8,
        },
        warmup: 1,
        repetitions: 4,
        status,
        error: (status == CellOutcome::Failed).then(|| format!("out of memory {NASTY}")),
        peak_rss_bytes: Some(123 << 20),
        gpu_mem_bytes: None,
        energy_method: Some("mock".into()),
        started_at: None,
        ended_at: None,
        window_start_ms: Some(1000.0 * i as f64),
        window_end_ms: Some(1000.0 * i as f64 + 800.0),
        agreement: None,
        backend_info: Default::default(),
        energy: None,
        host_load: None,
        replicate: None,
    }
}

/// A manifest with three cells: `aaaa` (ok, batch 2), `bbbb` (ok, batch 4), `cccc` (failed).
pub fn manifest(run_id: &str, scenario: &str, model: &str) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.into(),
        scenario_name: scenario.into(),
        scenario_path: "scenarios/smoke.yaml".into(),
        scenario: serde_json::json!({"name": scenario}),
        seed: 42,
        model_seed: 0,
        command: vec![
            "tcobench".into(),
            "run".into(),
            "scenarios/smoke.yaml".into(),
        ],
        git_revision: Some("v0.1.0-3-gdeadbee".into()),
        git_dirty_files: Vec::new(),
        versions: BTreeMap::from([("tcobench".into(), "0.1.0".into())]),
        host: HostInfo {
            os: "Linux 6.1".into(),
            cpu_model: "Test CPU".into(),
            cpu_logical_cores: 2,
            memory_bytes: Some(8 << 30),
            gpus: vec![],
            hostname: "box".into(),
        },
        power: PowerInfo {
            method: "cpu_estimate".into(),
            scope: "cpu-package".into(),
            basis: "estimated".into(),
            sample_period_ms: 100.0,
            notes: BTreeMap::from([("tdp_w".into(), "65".into())]),
            idle_baseline: None,
        },
        started_at: "2025-01-01T00:00:00Z".into(),
        ended_at: Some("2025-01-01T00:01:00Z".into()),
        status: "complete".into(),
        costing: None,
        budget: None,
        allow_disagreement: false,
        cells: vec![
            cell(0, "aaaa", model, 2, CellOutcome::Ok),
            cell(1, "bbbb", model, 4, CellOutcome::Ok),
            cell(2, "cccc", model, 1, CellOutcome::Failed),
        ],
    }
}

/// A successful request of `c` with the given e2e (energy = 2·e2e, tokens/s derived).
pub fn request(c: &CellRecord, rep: u32, warmup: bool, e2e: Option<f64>) -> RequestRecord {
    RequestRecord {
        run_id: "run".into(),
        cell_id: c.cell_id.clone(),
        config: c.config.clone(),
        rep,
        warmup,
        ttft_ms: e2e.map(|e| e / 4.0),
        e2e_ms: e2e,
        tpot_ms: e2e.map(|e| e * 0.75 / 7.0),
        tokens_per_s: e2e
            .map(|e| f64::from(c.config.batch_size * c.config.new_tokens) / (e / 1000.0)),
        energy_j: e2e.map(|e| 2.0 * e),
        energy_method: "mock".into(),
        energy_valid: None,
        input_hash: "0123456789abcdef".into(),
        output_hash: Some("fedcba9876543210".into()),
        status: "ok".into(),
        error: None,
    }
}

/// Writes a complete synthetic run directory and returns its manifest.
pub fn write_run(dir: &Path, scenario: &str, model: &str) -> Manifest {
    let m = manifest("run-1", scenario, model);
    let mut rows = Vec::new();
    for c in &m.cells[..2] {
        // A warm-up with an absurd latency that would dominate the mean if it were included.
        rows.push(request(c, 0, true, Some(1.0e6)));
        for rep in 0..4 {
            let base = if c.cell_id == "aaaa" { 100.0 } else { 150.0 };
            rows.push(request(c, rep, false, Some(base + 10.0 * f64::from(rep))));
        }
    }
    let mut failed = request(&m.cells[2], 0, false, None);
    failed.status = "error".into();
    failed.error = m.cells[2].error.clone();
    failed.output_hash = None;
    rows.push(failed);
    let mut df = io::requests_frame(&rows).unwrap();
    io::write_parquet(&mut df, &dir.join(files::REQUESTS)).unwrap();

    let samples: Vec<PowerSample> = (0..30)
        .map(|i| PowerSample {
            t_ms: 100.0 * f64::from(i),
            source: "cpu_estimate".into(),
            device: "cpu-package".into(),
            cell_id: None,
            watts: Some(20.0 + f64::from(i % 5)),
            energy_j_cum: None,
            temp_c: None,
            sm_clock_mhz: None,
            throttle_reasons: None,
        })
        .collect();
    let mut df = io::power_frame(&samples).unwrap();
    io::write_parquet(&mut df, &dir.join(files::POWER)).unwrap();

    std::fs::write(
        dir.join(files::MANIFEST),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    m
}

/// Deterministic normal draws (SplitMix64 + Box–Muller), for synthetic runs.
pub struct Normal(u64);

impl Normal {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// `n` draws from N(`mean`, `sd`²).
    pub fn draw(&mut self, mean: f64, sd: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect()
    }
}

/// A cell of a synthetic run and its timed tokens/s values (`None`: the cell failed).
pub struct SynthCell {
    /// Model name.
    pub model: &'static str,
    /// Batch size.
    pub batch: u32,
    /// Timed tokens/s values; `None`: the cell failed.
    pub tps: Option<Vec<f64>>,
}

/// Writes a run folder whose cells have the given tokens/s values (e2e, ttft, tpot derived;
/// energy measured only when `energy`). Cell ids carry `run_id`, as real ids carry the seed.
pub fn write_synthetic_run(
    dir: &Path,
    run_id: &str,
    cells: &[SynthCell],
    energy: bool,
) -> Manifest {
    let mut m = manifest(run_id, "synthetic", "m");
    let template = m.cells[0].clone();
    m.cells = cells
        .iter()
        .enumerate()
        .map(|(i, c)| CellRecord {
            cell_id: format!("{run_id}-{}-b{}", c.model, c.batch),
            index: i,
            config: CellConfig {
                model: c.model.into(),
                batch_size: c.batch,
                ..template.config.clone()
            },
            status: if c.tps.is_some() {
                CellOutcome::Ok
            } else {
                CellOutcome::Failed
            },
            error: c.tps.is_none().then(|| "out of memory".to_string()),
            energy_method: Some(if energy { "mock" } else { "none" }.into()),
            ..template.clone()
        })
        .collect();
    let mut rows = Vec::new();
    for (record, c) in m.cells.iter().zip(cells) {
        let mut req = request(record, 0, true, Some(1.0e6));
        req.run_id = run_id.into();
        rows.push(req);
        match &c.tps {
            Some(values) => {
                for (rep, &tps) in values.iter().enumerate() {
                    rows.push(synth_request(record, run_id, rep as u32, tps, energy));
                }
            }
            None => {
                let mut r = request(record, 0, false, None);
                r.run_id = run_id.into();
                r.status = "error".into();
                r.error = record.error.clone();
                r.output_hash = None;
                rows.push(r);
            }
        }
    }
    let mut df = io::requests_frame(&rows).unwrap();
    io::write_parquet(&mut df, &dir.join(files::REQUESTS)).unwrap();
    std::fs::write(
        dir.join(files::MANIFEST),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    m
}

fn synth_request(c: &CellRecord, run_id: &str, rep: u32, tps: f64, energy: bool) -> RequestRecord {
    let tokens = f64::from(c.config.batch_size * c.config.new_tokens);
    let e2e = tokens / tps * 1000.0;
    let mut r = request(c, rep, false, Some(e2e));
    r.run_id = run_id.into();
    r.tokens_per_s = Some(tps);
    if !energy {
        r.energy_j = None;
        r.energy_method = "none".into();
    }
    r
}
