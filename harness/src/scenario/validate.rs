//! The merged raw form of a scenario checked and resolved into a [`Scenario`]: defaults, ranges,
//! model names and folders, devices, exclusion rules, the matrix size, the costing sections
//! against the catalog and the budget's rate. Every error points at the file of the chain that
//! set the key, at its line and column.

use std::collections::BTreeMap;
use std::path::Path;

use tcobench_backends::{BuiltinModel, DType, Device};
use tcobench_cost::costing::CostSelection;
use tcobench_cost::{Catalog, LoadOptions, Tier};
use tcobench_results::spec::CostingSpec;

use super::load::{Merged, SourceFile};
use super::raw::RawScenario;
use super::{
    BackendKind, Budget, Exclude, Matrix, MockSettings, OrtThreadSettings, Overrides,
    PowerSettings, Scenario, ScenarioError,
};

/// Most cells a matrix may expand to (before `exclude:`).
const MAX_CELLS: usize = 100_000;

/// Resolves the costing sections against the catalog (built-in plus `pricing.catalog`), so a
/// bad instance, tier or zone stops the run before any work; returns the spec to store and the
/// budget with its rate.
fn validate_costing<'a>(
    raw: &RawScenario,
    at: &dyn Fn(&str) -> &'a SourceFile,
    devices: &[Device],
) -> Result<(Option<CostingSpec>, Option<Budget>), ScenarioError> {
    let spec = CostingSpec {
        pricing: raw.pricing.clone(),
        energy: raw.energy.clone(),
        slo: raw.slo.clone(),
        workload: raw.workload.clone(),
        onprem: raw.onprem.clone(),
        api: raw.api.clone(),
    };
    if spec.is_empty() && raw.budget_usd.is_none() {
        return Ok((None, None));
    }
    // `pricing.instances[2]` was set where `pricing.instances` was.
    let err = |key: &str, message: String| {
        let base = key.split('[').next().unwrap_or(key);
        let file = at(base);
        let mut e = file.error(key, message);
        // A key that is missing has no place of its own: point at its section.
        if e.line.is_none() {
            if let Some((section, _)) = key.split_once('.') {
                let placed = at(section).error(section, "");
                if placed.line.is_some() {
                    e.path = placed.path;
                    e.line = placed.line;
                    e.column = placed.column;
                }
            }
        }
        e
    };
    let overlay = spec.pricing.as_ref().and_then(|p| p.catalog.clone());
    if let Some(dir) = &overlay {
        if !Path::new(dir).is_dir() {
            return Err(err(
                "pricing.catalog",
                format!(
                    "`{dir}` is not a directory (paths are relative to the file that names them)"
                ),
            ));
        }
    }
    let catalog = Catalog::load(
        None,
        overlay.as_deref().map(Path::new),
        &LoadOptions::default(),
    )
    .map_err(|e| err("pricing.catalog", format!("the catalog does not load: {e}")))?;
    let selection = CostSelection::resolve(&spec, &catalog, None, overlay)
        .map_err(|e| err(&e.key, e.message))?;
    let budget = match raw.budget_usd {
        None => None,
        Some(usd) if !(usd.is_finite() && usd > 0.0) => {
            return Err(at("budget_usd").error(
                "budget_usd",
                format!("must be a positive amount of dollars, got {usd}"),
            ))
        }
        Some(usd) => {
            let pricing = spec.pricing.clone().unwrap_or_default();
            let (usd_per_hour, rate_source) = if let Some(rate) = pricing.host_usd_per_hour {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(err(
                        "pricing.host_usd_per_hour",
                        format!("must be positive, got {rate}"),
                    ));
                }
                (rate, "pricing.host_usd_per_hour".to_string())
            } else {
                let host = pricing.host.clone().or_else(|| {
                    // The first instance that fits the run's devices.
                    let cpu_only = devices.iter().all(|d| matches!(d, Device::Cpu));
                    selection
                        .instances
                        .iter()
                        .find(|si| si.instance.accelerator.is_none() == cpu_only)
                        .map(|si| si.spec.clone())
                });
                let Some(host) = host else {
                    return Err(at("budget_usd").error(
                        "budget_usd",
                        "needs the price of the machine running the benchmark: set `pricing.host` (an instance) or `pricing.host_usd_per_hour`",
                    ));
                };
                let key = if pricing.host.is_some() {
                    "pricing.host"
                } else {
                    "pricing.instances"
                };
                let quote = catalog
                    .price(
                        host.provider.as_deref(),
                        &host.instance_type,
                        Tier::OnDemand,
                        host.region.as_deref(),
                    )
                    .map_err(|e| err(key, format!("budget rate: {e}")))?;
                (
                    quote.usd_per_hour,
                    format!(
                        "{} on_demand ({} row `{}`, catalog {})",
                        quote.instance.key(),
                        quote.reference.file,
                        quote.reference.key,
                        quote.reference.catalog_version
                    ),
                )
            };
            Some(Budget {
                usd,
                usd_per_hour,
                rate_source,
            })
        }
    };
    Ok(((!spec.is_empty()).then_some(spec), budget))
}

pub(crate) fn validate(
    files: &[SourceFile],
    merged: Merged,
    overrides: &Overrides,
) -> Result<Scenario, ScenarioError> {
    let Merged { raw, origin } = merged;
    let at = |key: &str| &files[origin.get(key).copied().unwrap_or(0)];
    let missing = |key: &str, hint: &str| ScenarioError {
        path: files[0].path.clone(),
        line: None,
        column: None,
        key: Some(key.to_string()),
        message: format!("missing (in this file and every file it extends); {hint}"),
    };

    let name = raw
        .name
        .clone()
        .ok_or_else(|| missing("name", "e.g. `name: smoke`"))?;
    if name.trim().is_empty() {
        return Err(at("name").error("name", "must not be empty"));
    }
    let matrix = raw.matrix.clone().unwrap_or_default();
    macro_rules! dim {
        ($field:ident, $hint:literal) => {
            matrix
                .$field
                .clone()
                .ok_or_else(|| missing(concat!("matrix.", stringify!($field)), $hint))?
                .0
        };
    }
    let backend = dim!(backend, "e.g. `backend: [candle]`");
    let model = dim!(model, "e.g. `model: [tiny]`");
    let dtype: Vec<DType> = matrix
        .dtype
        .clone()
        .map(|d| d.0)
        .unwrap_or_else(|| vec![DType::F32]);
    let batch_size: Vec<u32> = dim!(batch_size, "e.g. `batch_size: [1]`")
        .iter()
        .map(|p| p.0)
        .collect();
    let prompt_tokens: Vec<u32> = dim!(prompt_tokens, "e.g. `prompt_tokens: [32]`")
        .iter()
        .map(|p| p.0)
        .collect();
    let new_tokens: Vec<u32> = dim!(new_tokens, "e.g. `new_tokens: [16]`")
        .iter()
        .map(|p| p.0)
        .collect();

    for (key, len, distinct) in [
        ("matrix.backend", backend.len(), distinct_count(&backend)),
        ("matrix.model", model.len(), distinct_count(&model)),
        ("matrix.dtype", dtype.len(), distinct_count(&dtype)),
        (
            "matrix.batch_size",
            batch_size.len(),
            distinct_count(&batch_size),
        ),
        (
            "matrix.prompt_tokens",
            prompt_tokens.len(),
            distinct_count(&prompt_tokens),
        ),
        (
            "matrix.new_tokens",
            new_tokens.len(),
            distinct_count(&new_tokens),
        ),
    ] {
        if len != distinct {
            return Err(at(key).error(key, "lists a value twice"));
        }
    }

    // Models: a built-in name, or a directory relative to the file that names it.
    let model_file = at("matrix.model");
    let mut resolved_models = Vec::new();
    for (i, m) in model.iter().enumerate() {
        if m.parse::<BuiltinModel>().is_ok() {
            resolved_models.push(m.clone());
            continue;
        }
        let base = model_file.path.parent().unwrap_or(Path::new("."));
        let dir = base.join(m);
        if !dir.is_dir() {
            return Err(model_file.error(
                &format!("matrix.model[{i}]"),
                format!(
                    "`{m}` is neither a built-in model (tiny, small, 1b, 8b) nor a directory \
                     (looked for {})",
                    dir.display()
                ),
            ));
        }
        resolved_models.push(dir.display().to_string());
    }

    // Context length: prompt + generated must fit every built-in model in the matrix.
    let longest = prompt_tokens.iter().max().copied().unwrap_or(0) as u64
        + new_tokens.iter().max().copied().unwrap_or(0) as u64;
    for m in &model {
        if let Ok(b) = m.parse::<BuiltinModel>() {
            let max = b.config().max_position_embeddings as u64;
            if longest > max {
                return Err(at("matrix.prompt_tokens").error(
                    "matrix.prompt_tokens",
                    format!(
                        "prompt_tokens + new_tokens can reach {longest}, more than model `{m}` \
                         supports ({max} positions)"
                    ),
                ));
            }
        }
    }

    let seed = overrides.seed.or(raw.seed).unwrap_or(0);
    let device = match overrides.device {
        Some(d) => vec![d],
        None => raw
            .device
            .clone()
            .map(|d| d.0)
            .unwrap_or_else(|| vec![Device::Cpu]),
    };
    if !cfg!(feature = "cuda") && device.iter().any(|d| matches!(d, Device::Cuda(_))) {
        let message = "this build has no CUDA support; rebuild with `--features cuda` \
                       (or run on `cpu`)";
        return Err(match overrides.device {
            Some(_) => ScenarioError {
                path: files[0].path.clone(),
                line: None,
                column: None,
                key: Some("--device".into()),
                message: message.into(),
            },
            None => at("device").error("device", message),
        });
    }
    if device.len() != distinct_count(&device) {
        return Err(at("device").error("device", "lists a device twice"));
    }
    let warmup = raw.warmup.unwrap_or(1);
    let repetitions = raw.repetitions.unwrap_or(5);
    if repetitions == 0 {
        return Err(at("repetitions").error("repetitions", "must be at least 1"));
    }
    let replicates = match overrides.replicates.or(raw.replicates).unwrap_or(1) {
        r @ 1..=Scenario::MAX_REPLICATES => r,
        r => {
            let message = format!(
                "must be between 1 and {} (the number of independent executions of every \
                 cell), got {r}",
                Scenario::MAX_REPLICATES
            );
            return Err(match overrides.replicates {
                Some(_) => ScenarioError {
                    path: files[0].path.clone(),
                    line: None,
                    column: None,
                    key: Some("--replicates".into()),
                    message,
                },
                None => at("replicates").error("replicates", message),
            });
        }
    };
    let raw_mock = raw.mock.clone().unwrap_or_default();
    let mock = MockSettings {
        execution_drift: match raw_mock.execution_drift {
            None => 0.0,
            Some(d) if d.is_finite() && (0.0..=0.5).contains(&d) => d,
            Some(d) => {
                return Err(at("mock.execution_drift").error(
                    "mock.execution_drift",
                    format!(
                        "must be a relative standard deviation between 0 and 0.5 (0.05 = 5 %), \
                         got {d}"
                    ),
                ))
            }
        },
        drift_seed: raw_mock.drift_seed,
        time_scale: match raw_mock.time_scale {
            None => 1.0,
            Some(t) if t.is_finite() && (0.01..=100.0).contains(&t) => t,
            Some(t) => {
                return Err(at("mock.time_scale").error(
                    "mock.time_scale",
                    format!("must be a factor between 0.01 and 100 (1.1 = 10 % slower), got {t}"),
                ))
            }
        },
    };

    let p = raw.power.clone().unwrap_or_default();
    let check_range = |key: &'static str, v: Option<f64>, lo: f64, hi: f64, default: f64| {
        let v = v.unwrap_or(default);
        if !(lo..=hi).contains(&v) || !v.is_finite() {
            Err(at(key).error(key, format!("must be between {lo} and {hi}, got {v}")))
        } else {
            Ok(v)
        }
    };
    let power = PowerSettings {
        source: p.source.unwrap_or_default(),
        sample_ms: match p.sample_ms.unwrap_or(100) {
            0 => return Err(at("power.sample_ms").error("power.sample_ms", "must be at least 1")),
            ms => ms,
        },
        idle_baseline_s: check_range("power.idle_baseline_s", p.idle_baseline_s, 0.0, 600.0, 0.0)?,
        cpu_tdp_w: check_range("power.cpu_tdp_w", p.cpu_tdp_w, 1.0, 2000.0, 65.0)?,
        cpu_tdp_from_user: p.cpu_tdp_w.is_some(),
        cpu_idle_fraction: check_range(
            "power.cpu_idle_fraction",
            p.cpu_idle_fraction,
            0.0,
            1.0,
            0.3,
        )?,
        mock_watts: check_range("power.mock_watts", p.mock_watts, 0.0, 100_000.0, 100.0)?,
        target_uncertainty: check_range(
            "power.target_uncertainty",
            p.target_uncertainty,
            1e-4,
            0.5,
            PowerSettings::DEFAULT_TARGET_UNCERTAINTY,
        )?,
        min_window_ms: check_range(
            "power.min_window_ms",
            p.min_window_ms,
            0.0,
            3_600_000.0,
            PowerSettings::DEFAULT_MIN_WINDOW_MS,
        )?,
        cross_check_tolerance: check_range(
            "power.cross_check_tolerance",
            p.cross_check_tolerance,
            1e-3,
            1.0,
            PowerSettings::DEFAULT_CROSS_CHECK_TOLERANCE,
        )?,
        pad_requests_max: match p.pad_requests_max {
            Some(n) if n > 100_000 => {
                return Err(at("power.pad_requests_max").error(
                    "power.pad_requests_max",
                    format!("{n} is not plausible (at most 100000)"),
                ))
            }
            n => n.unwrap_or(PowerSettings::DEFAULT_PAD_REQUESTS_MAX),
        },
    };

    let matrix = Matrix {
        backend,
        model: resolved_models,
        dtype,
        batch_size,
        prompt_tokens,
        new_tokens,
    };

    // Exclusion rules: known dimensions, values that occur in the matrix.
    let mut exclude = Vec::new();
    let exclude_file = at("exclude");
    for (i, rule) in raw.exclude.clone().unwrap_or_default().iter().enumerate() {
        let mut out = BTreeMap::new();
        if rule.is_empty() {
            return Err(exclude_file.error(
                &format!("exclude[{i}]"),
                "an empty rule would exclude every cell",
            ));
        }
        for (k, v) in rule {
            let key = format!("exclude[{i}].{k}");
            let value = match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => return Err(exclude_file.error(&key, "must be a single value")),
            };
            let known: Vec<String> =
                match k.as_str() {
                    "backend" => matrix.backend.iter().map(|v| v.to_string()).collect(),
                    "model" => model.clone(),
                    "dtype" => matrix.dtype.iter().map(|v| v.to_string()).collect(),
                    "device" => device.iter().map(|v| v.to_string()).collect(),
                    "batch_size" => matrix.batch_size.iter().map(|v| v.to_string()).collect(),
                    "prompt_tokens" => matrix.prompt_tokens.iter().map(|v| v.to_string()).collect(),
                    "new_tokens" => matrix.new_tokens.iter().map(|v| v.to_string()).collect(),
                    _ => return Err(exclude_file.error(
                        &key,
                        "unknown dimension (expected backend, model, dtype, device, batch_size, \
                         prompt_tokens or new_tokens)",
                    )),
                };
            if !known.contains(&value) {
                return Err(exclude_file.error(
                    &key,
                    format!(
                        "`{value}` is not a value of this dimension (values: {})",
                        known.join(", ")
                    ),
                ));
            }
            let value = if k == "model" {
                matrix.model[model.iter().position(|m| *m == value).expect("checked")].clone()
            } else {
                value
            };
            out.insert(k.clone(), value);
        }
        exclude.push(Exclude(out));
    }

    // A matrix is a product of its lists: a few long ones make a run of years (or a plan that
    // does not fit in memory) before exclusions are even applied.
    let cells = [
        device.len(),
        matrix.backend.len(),
        matrix.model.len(),
        matrix.dtype.len(),
        matrix.batch_size.len(),
        matrix.prompt_tokens.len(),
        matrix.new_tokens.len(),
    ]
    .iter()
    .fold(1u128, |n, &len| n.saturating_mul(len as u128));
    if cells > MAX_CELLS as u128 {
        return Err(at("matrix").error(
            "matrix",
            format!("expands to {cells} cells (at most {MAX_CELLS}); split it into scenarios"),
        ));
    }

    let (costing, budget) = validate_costing(&raw, &at, &device)?;
    let ort = raw.onnxruntime.clone().unwrap_or_default();
    let default_threads = tcobench_backends::OrtThreads::default();
    let mut ort_threads = OrtThreadSettings {
        intra: default_threads.intra,
        inter: default_threads.inter,
    };
    for (key, value, slot) in [
        (
            "onnxruntime.intra_threads",
            ort.intra_threads,
            &mut ort_threads.intra,
        ),
        (
            "onnxruntime.inter_threads",
            ort.inter_threads,
            &mut ort_threads.inter,
        ),
    ] {
        match value {
            Some(0) => return Err(at(key).error(key, "must be at least 1")),
            Some(n) if n > 1024 => {
                return Err(
                    at(key).error(key, format!("{n} threads is not plausible (at most 1024)"))
                )
            }
            Some(n) => *slot = n as usize,
            None => {}
        }
    }

    let cell_timeout_s = match raw.cell_timeout_s {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            return Err(at("cell_timeout_s").error(
                "cell_timeout_s",
                format!("must be a positive number of seconds, got {t}"),
            ))
        }
        t => t,
    };

    let scenario = Scenario {
        costing,
        budget,
        ort_threads,
        cell_timeout_s,
        name,
        description: raw.description.clone().unwrap_or_default(),
        seed,
        device,
        warmup,
        repetitions,
        replicates,
        mock,
        matrix,
        exclude,
        power,
        sources: files.iter().map(|f| f.path.clone()).collect(),
    };

    // What the cells will need, checked before any work: at least one cell, and in a model
    // folder the files of each backend that runs it.
    let cells = scenario.configurations();
    if cells.is_empty() {
        return Err(at("exclude").error(
            "exclude",
            "the exclusion rules remove every cell of the matrix: nothing would be measured",
        ));
    }
    for (i, (name, resolved)) in model.iter().zip(&scenario.matrix.model).enumerate() {
        if name.parse::<BuiltinModel>().is_ok() {
            continue;
        }
        let dir = Path::new(resolved);
        for backend in [BackendKind::Candle, BackendKind::Onnxruntime] {
            if !cells
                .iter()
                .any(|c| c.backend == backend && c.model == *resolved)
            {
                continue;
            }
            let needs: &[&str] = match backend {
                BackendKind::Candle => &[
                    tcobench_backends::model::CONFIG_FILE,
                    tcobench_backends::model::WEIGHTS_FILE,
                ],
                _ => &[
                    tcobench_backends::model::CONFIG_FILE,
                    tcobench_backends::onnx::ONNX_FILE,
                ],
            };
            if let Some(missing) = needs.iter().find(|f| !dir.join(f).is_file()) {
                return Err(model_file.error(
                    &format!("matrix.model[{i}]"),
                    format!(
                        "`{name}` has no {missing}, which the {backend} backend needs \
                         (looked in {}; or exclude backend {backend} for this model)",
                        dir.display()
                    ),
                ));
            }
        }
    }
    Ok(scenario)
}

fn distinct_count<T: PartialEq>(v: &[T]) -> usize {
    v.iter()
        .enumerate()
        .filter(|(i, x)| !v[..*i].contains(x))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::test_files::{write, OK};

    #[test]
    fn valid_scenario_loads_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scenario::load(&write(dir.path(), "s.yaml", OK), &Overrides::default()).unwrap();
        assert_eq!(s.matrix.batch_size, vec![1, 2]);
        assert_eq!(s.matrix.prompt_tokens, vec![8]);
        assert_eq!(s.matrix.dtype, vec![DType::F32]);
        assert_eq!(s.device, vec![Device::Cpu]);
        assert_eq!((s.warmup, s.repetitions), (1, 5));
    }

    #[test]
    fn exclusions_that_remove_every_cell_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{OK}exclude:\n  - model: tiny\n");
        let e =
            Scenario::load(&write(dir.path(), "s.yaml", &text), &Overrides::default()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("exclude"), "{e}");
        assert_eq!(e.line, Some(9), "{e}");
        assert!(e.message.contains("remove every cell"), "{e}");
        // One batch size left: valid.
        let text = format!("{OK}exclude:\n  - batch_size: 1\n");
        Scenario::load(&write(dir.path(), "s.yaml", &text), &Overrides::default()).unwrap();
    }

    #[test]
    fn energy_window_keys_default_and_out_of_range_values_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scenario::load(&write(dir.path(), "s.yaml", OK), &Overrides::default()).unwrap();
        assert_eq!(s.power.target_uncertainty, 0.01);
        assert_eq!(s.power.min_window_ms, 0.0);
        assert_eq!(s.power.cross_check_tolerance, 0.1);
        let text = format!(
            "{OK}power:\n  target_uncertainty: 0.02\n  min_window_ms: 250\n  cross_check_tolerance: 0.2\n"
        );
        let s = Scenario::load(&write(dir.path(), "s.yaml", &text), &Overrides::default()).unwrap();
        assert_eq!(
            (
                s.power.target_uncertainty,
                s.power.min_window_ms,
                s.power.cross_check_tolerance
            ),
            (0.02, 250.0, 0.2)
        );
        let text = format!("{OK}power:\n  sample_ms: 100\n  target_uncertainty: 0\n");
        let e =
            Scenario::load(&write(dir.path(), "s.yaml", &text), &Overrides::default()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("power.target_uncertainty"), "{e}");
        assert_eq!((e.line, e.column), (Some(11), Some(3)), "{e}");
    }
}
