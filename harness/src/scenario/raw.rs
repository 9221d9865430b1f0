//! Scenario files as written: plain serde structs in which every key is optional (so that
//! `extends:` can fill the gaps) and unknown keys are refused (`deny_unknown_fields`), so that
//! serde_yaml reports them with their line and column.
//!
//! The struct names show in serde's messages (`expected struct RawMatrix`); the loader rewrites
//! them as "a mapping of keys" for the file's author.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use tcobench_backends::{DType, Device};
use tcobench_results::spec::{RawApi, RawEnergy, RawOnPrem, RawPricing, RawSlo, RawWorkload};

use super::{BackendKind, PowerSource};

/// A whole number ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub(crate) struct Positive(pub(crate) u32);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 0 {
            return Err(de::Error::custom("must be at least 1"));
        }
        Ok(Positive(n))
    }
}

/// One value or a list of values (`batch_size: 4` or `batch_size: [1, 4]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct OneOrMany<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        macro_rules! scalar {
            ($name:ident, $ty:ty) => {
                fn $name<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                    T::deserialize(v.into_deserializer()).map(|t| OneOrMany(vec![t]))
                }
            };
        }
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            scalar!(visit_u64, u64);
            scalar!(visit_i64, i64);
            scalar!(visit_f64, f64);
            scalar!(visit_bool, bool);
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|t| OneOrMany(vec![t]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("list must not be empty"));
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `matrix:` as written: every key optional so `extends:` can fill the gaps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatrix {
    pub(crate) backend: Option<OneOrMany<BackendKind>>,
    pub(crate) model: Option<OneOrMany<String>>,
    pub(crate) dtype: Option<OneOrMany<DType>>,
    pub(crate) batch_size: Option<OneOrMany<Positive>>,
    pub(crate) prompt_tokens: Option<OneOrMany<Positive>>,
    pub(crate) new_tokens: Option<OneOrMany<Positive>>,
}

/// `power:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPower {
    pub(crate) source: Option<PowerSource>,
    pub(crate) sample_ms: Option<u32>,
    pub(crate) idle_baseline_s: Option<f64>,
    pub(crate) cpu_tdp_w: Option<f64>,
    pub(crate) cpu_idle_fraction: Option<f64>,
    pub(crate) mock_watts: Option<f64>,
    pub(crate) target_uncertainty: Option<f64>,
    pub(crate) min_window_ms: Option<f64>,
    pub(crate) cross_check_tolerance: Option<f64>,
    pub(crate) pad_requests_max: Option<u32>,
}

/// One scenario file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub(crate) extends: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) seed: Option<u64>,
    pub(crate) device: Option<OneOrMany<Device>>,
    pub(crate) warmup: Option<u32>,
    pub(crate) repetitions: Option<u32>,
    pub(crate) replicates: Option<u32>,
    pub(crate) matrix: Option<RawMatrix>,
    pub(crate) exclude: Option<Vec<BTreeMap<String, serde_yaml::Value>>>,
    pub(crate) power: Option<RawPower>,
    pub(crate) pricing: Option<RawPricing>,
    pub(crate) energy: Option<RawEnergy>,
    pub(crate) slo: Option<RawSlo>,
    pub(crate) workload: Option<RawWorkload>,
    pub(crate) onprem: Option<RawOnPrem>,
    pub(crate) api: Option<Vec<RawApi>>,
    pub(crate) budget_usd: Option<f64>,
    pub(crate) cell_timeout_s: Option<f64>,
    pub(crate) onnxruntime: Option<RawOrt>,
    pub(crate) mock: Option<RawMock>,
}

/// `mock:` as written (settings of the mock backend, for tests of the tool itself).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMock {
    pub(crate) execution_drift: Option<f64>,
    pub(crate) drift_seed: Option<u64>,
    pub(crate) time_scale: Option<f64>,
}

/// `onnxruntime:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOrt {
    pub(crate) intra_threads: Option<u32>,
    pub(crate) inter_threads: Option<u32>,
}
