//! Test fixtures shared by the costing unit tests: a small catalog, measured cells, a host and
//! a base selection.

use std::collections::BTreeMap;

use crate::catalog::{header, Catalog, LoadOptions, FILES};
use tcobench_results::schema::{CellOutcome, HostInfo};
use tcobench_results::spec::CostingSpec;
use tcobench_results::{CellConfig, CellStats};
use tcobench_stats::descriptive::Descriptives;

/// t(0.975, 2), for the CI of three samples.
pub(super) const T_975_DF2: f64 = 4.302_652_729_749_464;

pub(super) fn close(a: f64, b: f64) {
    assert!(
        ((a - b) / b).abs() < 1e-9,
        "{a} vs {b} (relative {})",
        ((a - b) / b).abs()
    );
}

/// One CPU instance (on demand $1.00/h, spot $0.40/h), one 8-GPU instance ($16/h on demand),
/// a PUE preset of 1.5 and a grid zone of 400 g/kWh.
pub(super) fn catalog() -> Catalog {
    let mut m: BTreeMap<String, String> = FILES
        .iter()
        .map(|f| ((*f).to_string(), format!("{}\n", header(f))))
        .collect();
    m.insert("VERSION".into(), "9.9.9\n2026-01-01\n".into());
    let add = |m: &mut BTreeMap<String, String>, f: &str, rows: &str| {
        m.get_mut(f).unwrap().push_str(rows)
    };
    add(
        &mut m,
        "instances.csv",
        "aws,c.cpu,us-east-1,,0,,2,8,x86_64,\naws,g.8gpu,us-east-1,T4,8,16,64,512,x86_64,\n",
    );
    add(
        &mut m,
        "prices.csv",
        "aws,c.cpu,us-east-1,on_demand,1.0,,2026-01-01,src,,\naws,c.cpu,us-east-1,spot,0.4,,2026-01-01,src,,\naws,g.8gpu,us-east-1,on_demand,16,,2026-01-01,src,,\n",
    );
    add(
        &mut m,
        "accelerators.csv",
        "T4,NVIDIA,PCIe,16,70,,,2026-01-01,datasheet,\n",
    );
    add(&mut m, "pue.csv", "p15,1.5,2024,2026-01-01,src,\n");
    add(
        &mut m,
        "grid_carbon.csv",
        "zone-a,2024,400,average,2026-01-01,src,\n",
    );
    Catalog::from_texts(&m, None, &LoadOptions::default()).unwrap()
}

pub(super) fn desc(xs: &[f64]) -> Descriptives {
    Descriptives::compute(xs).unwrap()
}

pub(super) fn cell(
    id: &str,
    device: &str,
    batch: u32,
    tps: &[f64],
    jpt: &[f64],
    e2e: &[f64],
) -> CellStats {
    let mut metrics = BTreeMap::new();
    metrics.insert("tokens_per_s".to_string(), desc(tps));
    if !jpt.is_empty() {
        metrics.insert("energy_j_per_token".to_string(), desc(jpt));
    }
    metrics.insert("e2e_ms".to_string(), desc(e2e));
    CellStats {
        cell_id: id.into(),
        index: 0,
        config: CellConfig {
            backend: "mock".into(),
            model: "tiny".into(),
            device: device.into(),
            dtype: "f32".into(),
            batch_size: batch,
            prompt_tokens: 8,
            new_tokens: 10,
        },
        warmup: 0,
        repetitions: tps.len() as u32,
        status: CellOutcome::Ok,
        error: None,
        n_requests: tps.len(),
        n_warmup_excluded: 0,
        n_failed_excluded: 0,
        energy_method: Some("rapl".into()),
        peak_rss_bytes: None,
        gpu_mem_bytes: None,
        metrics,
        robust: BTreeMap::new(),
        unavailable: vec![],
        warnings: vec![],
        agreement: None,
        backend_info: BTreeMap::new(),
        energy: None,
        replication: None,
    }
}

pub(super) fn host() -> HostInfo {
    HostInfo {
        os: "Linux".into(),
        cpu_model: "cpu".into(),
        cpu_logical_cores: 2,
        memory_bytes: None,
        gpus: vec![],
        hostname: "h".into(),
    }
}

pub(super) fn spec(yaml: &str) -> CostingSpec {
    serde_yaml::from_str(yaml).unwrap()
}

pub(super) const BASE: &str = "pricing:\n  instances: [aws/c.cpu/us-east-1, aws/g.8gpu/us-east-1]\n  tiers: [on_demand, spot]\nenergy:\n  pue: p15\n  grid: zone-a\n";
