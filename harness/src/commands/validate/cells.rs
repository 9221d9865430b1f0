//! The physical checks on every completed cell: implied power against the device's limit,
//! J/token between a floor and a ceiling, throughput against latency, a positive energy window.

use tcobench_backends::Device;
use tcobench_cost::catalog::Accelerator;
use tcobench_cost::Catalog;
use tcobench_results::schema::{CellRecord, Manifest};
use tcobench_results::{CellStats, Metric};

use super::{
    at_most, positive, sig, Checks, CEILING_FLOP_PER_J, CEILING_OVERHEAD_J_PER_TOKEN,
    FLOOR_FLOP_PER_J, POWER_TOLERANCE, THROUGHPUT_TOLERANCE,
};
use crate::estimate;

/// Splits a device or catalog name into upper-case alphanumeric words.
fn name_words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The catalog accelerator a host GPU name (as NVML reports it, e.g. `NVIDIA H100 80GB HBM3`,
/// perhaps followed by ` (driver …)`) denotes: the row all of whose name words appear in the
/// GPU's name, the most specific one when several do.
pub fn match_accelerator<'a>(
    gpu: &str,
    accelerators: &'a [Accelerator],
) -> Result<&'a Accelerator, String> {
    let name = gpu.split(" (driver").next().unwrap_or(gpu).trim();
    let words = name_words(name);
    let mut best: Vec<(&Accelerator, usize)> = Vec::new();
    for a in accelerators {
        let wanted = name_words(&a.name);
        if wanted.is_empty() || !wanted.iter().all(|w| words.contains(w)) {
            continue;
        }
        match best.first().map(|b| b.1) {
            Some(n) if n > wanted.len() => {}
            Some(n) if n == wanted.len() => best.push((a, n)),
            _ => best = vec![(a, wanted.len())],
        }
    }
    match best.as_slice() {
        [(a, _)] => Ok(a),
        [] => Err(format!(
            "GPU `{name}` matches no row of the catalog's accelerators.csv"
        )),
        many => Err(format!(
            "GPU `{name}` matches several rows of accelerators.csv ({})",
            many.iter()
                .map(|(a, _)| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The power limit of a cell's device, W, and where it comes from; `Err` says why it is unknown.
fn power_limit(
    cell: &CellStats,
    manifest: &Manifest,
    catalog: Option<&Catalog>,
) -> Result<(f64, String), String> {
    let device: Device = cell.config.device.parse()?;
    match device {
        Device::Cuda(i) => {
            let Some(gpu) = manifest.host.gpus.get(i) else {
                return Err(format!(
                    "the manifest lists no GPU {i} (host.gpus has {})",
                    manifest.host.gpus.len()
                ));
            };
            let Some(catalog) = catalog else {
                return Err("the catalog did not load".into());
            };
            let a = match_accelerator(gpu, &catalog.accelerators)?;
            match a.tdp_w {
                Some(w) => Ok((w, format!("TDP of {} ({} {})", a.name, a.vendor, a.variant))),
                None => Err(format!("accelerators.csv gives no TDP for {}", a.name)),
            }
        }
        Device::Cpu => {
            let notes = &manifest.power.notes;
            let from_notes = notes.get("tdp_w").and_then(|v| v.parse::<f64>().ok());
            let power = manifest.scenario.get("power");
            let from_user = power
                .filter(|p| p.get("cpu_tdp_from_user").and_then(|v| v.as_bool()) == Some(true))
                .and_then(|p| p.get("cpu_tdp_w"))
                .and_then(|v| v.as_f64());
            let (tdp, source) = match (from_notes, from_user) {
                (Some(w), _) => (w, "CPU TDP of the run's power estimate (power.notes.tdp_w)"),
                (None, Some(w)) => (w, "CPU TDP from the scenario's power.cpu_tdp_w"),
                (None, None) => {
                    return Err(
                        "the CPU TDP is unknown (set power.cpu_tdp_w in the scenario)".into(),
                    )
                }
            };
            let packages = notes
                .get("rapl_packages")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|n| *n >= 1.0)
                .unwrap_or(1.0);
            if packages > 1.0 {
                Ok((
                    tdp * packages,
                    format!("{source} × {packages} RAPL packages"),
                ))
            } else {
                Ok((tdp, source.to_string()))
            }
        }
    }
}

pub(super) fn check_cell(
    c: &mut Checks,
    cell: &CellStats,
    record: Option<&CellRecord>,
    manifest: &Manifest,
    catalog: Option<&Catalog>,
) {
    let id = Some(cell.cell_id.as_str());
    let tps = cell.metric(Metric::TokensPerS);
    let e2e = cell.metric(Metric::E2eMs);
    let jpt = cell.metric(Metric::EnergyJPerToken);
    let tokens = f64::from(cell.config.batch_size) * f64::from(cell.config.new_tokens);

    if let (Some(t), Some(e)) = (tps, e2e) {
        let product = t.mean * e.mean / 1000.0;
        let off = if tokens > 0.0 {
            (product - tokens).abs() / tokens
        } else {
            f64::INFINITY
        };
        c.check(
            "throughput_latency",
            id,
            &[
                ("tokens_per_s_mean", t.mean),
                ("e2e_ms_mean", e.mean),
                ("product_tokens", product),
                ("tokens_per_request", tokens),
            ],
            (!at_most(off, THROUGHPUT_TOLERANCE)).then(|| {
                format!(
                    "mean tokens/s × mean e2e = {} × {} ms = {} tokens per request, but a request generates batch × new_tokens = {} ({} % off, more than {} %)",
                    sig(t.mean),
                    sig(e.mean),
                    sig(product),
                    tokens,
                    sig(100.0 * off),
                    THROUGHPUT_TOLERANCE * 100.0
                )
            }),
        );
    }

    if let Some(r) = record {
        if let (Some(a), Some(b)) = (r.window_start_ms, r.window_end_ms) {
            c.check(
                "energy_window",
                id,
                &[("window_start_ms", a), ("window_end_ms", b)],
                (!positive(b - a)).then(|| {
                    format!(
                        "the measured window lasts {} ms (from {} to {} ms): not positive",
                        sig(b - a),
                        sig(a),
                        sig(b)
                    )
                }),
            );
        }
    }

    let Some(j) = jpt else {
        c.note(format!(
            "energy per token not measured in cell {}: power and energy checks skipped",
            cell.cell_id
        ));
        return;
    };
    c.check(
        "energy_window",
        id,
        &[("energy_j_per_token_min", j.min)],
        (!positive(j.min)).then(|| {
            format!(
                "the smallest request energy is {} J/token: every request window must take energy",
                sig(j.min)
            )
        }),
    );

    if let Some(t) = tps {
        let watts = j.mean * t.mean;
        let values = |limit: Option<f64>| {
            let mut v = vec![
                ("energy_j_per_token_mean", j.mean),
                ("tokens_per_s_mean", t.mean),
                ("implied_watts", watts),
            ];
            if let Some(l) = limit {
                v.push(("limit_watts", l));
            }
            v
        };
        if !positive(watts) {
            c.fail(
                "power_within_limit",
                id,
                &values(None),
                format!(
                    "implied power {} W = {} J/token × {} tokens/s is not positive",
                    sig(watts),
                    sig(j.mean),
                    sig(t.mean)
                ),
            );
        } else {
            match power_limit(cell, manifest, catalog) {
                Ok((limit, source)) => c.check(
                    "power_within_limit",
                    id,
                    &values(Some(limit)),
                    (watts > limit * (1.0 + POWER_TOLERANCE)).then(|| {
                        format!(
                            "implied power {} W = {} J/token × {} tokens/s exceeds the {} of {} W by {} % (more than {} %)",
                            sig(watts),
                            sig(j.mean),
                            sig(t.mean),
                            source,
                            sig(limit),
                            sig(100.0 * (watts / limit - 1.0)),
                            POWER_TOLERANCE * 100.0
                        )
                    }),
                ),
                Err(why) => c.note(format!(
                    "cell {}: power check skipped: {why}",
                    cell.cell_id
                )),
            }
        }
    }

    let Some(params) = estimate::parameter_count(&cell.config.model) else {
        c.note(format!(
            "cell {}: energy bounds skipped: the size of model `{}` is unknown (its config.json does not read)",
            cell.cell_id, cell.config.model
        ));
        return;
    };
    let flops = 2.0 * params as f64;
    let floor = flops / FLOOR_FLOP_PER_J;
    let ceiling = flops / CEILING_FLOP_PER_J + CEILING_OVERHEAD_J_PER_TOKEN;
    let values = [
        ("energy_j_per_token_mean", j.mean),
        ("parameters", params as f64),
        ("floor_j_per_token", floor),
        ("ceiling_j_per_token", ceiling),
    ];
    let low = if !positive(j.mean) {
        Some(format!(
            "mean energy per token is {} J: not positive",
            sig(j.mean)
        ))
    } else if j.mean < floor {
        Some(format!(
            "mean energy per token {} J is below the floor {} J = 2 × {} parameters / {:e} FLOP/J: no device is that efficient",
            sig(j.mean),
            sig(floor),
            params,
            FLOOR_FLOP_PER_J
        ))
    } else {
        None
    };
    c.check("energy_per_token_floor", id, &values, low);
    c.check(
        "energy_per_token_ceiling",
        id,
        &values,
        (j.mean > ceiling).then(|| {
            format!(
                "mean energy per token {} J is above the ceiling {} J = 2 × {} parameters / {:e} FLOP/J + {} J overhead",
                sig(j.mean),
                sig(ceiling),
                params,
                CEILING_FLOP_PER_J,
                CEILING_OVERHEAD_J_PER_TOKEN
            )
        }),
    );
}

#[cfg(test)]
mod tests {
    use tcobench_cost::LoadOptions;

    use super::*;

    fn accelerators() -> Vec<Accelerator> {
        Catalog::builtin(&LoadOptions::default())
            .expect("the shipped catalog loads")
            .accelerators
    }

    #[test]
    fn nvml_names_match_catalog_rows() {
        let acc = accelerators();
        let name = |gpu: &str| match_accelerator(gpu, &acc).map(|a| a.name.clone());
        assert_eq!(
            name("NVIDIA H100 80GB HBM3 (driver 550.54.15)").unwrap(),
            "H100"
        );
        assert_eq!(name("NVIDIA H200").unwrap(), "H200");
        assert_eq!(name("NVIDIA A100-SXM4-40GB").unwrap(), "A100-40GB");
        assert_eq!(name("NVIDIA A100-SXM4-80GB").unwrap(), "A100-80GB");
        assert_eq!(name("NVIDIA A100 80GB PCIe").unwrap(), "A100-80GB-PCIe");
        assert_eq!(name("Tesla T4").unwrap(), "T4");
        assert_eq!(name("NVIDIA L4").unwrap(), "L4");
        assert!(name("NVIDIA L40S").is_err());
        assert!(name("NVIDIA GeForce RTX 4090").is_err());
    }
}
