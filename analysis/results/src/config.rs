//! [`CellConfig`]: what a cell runs — backend, model, device, dtype, batch size, prompt and
//! generation length — the one description of a cell's configuration. The plan, the manifest's
//! cell records, every request row, the per-cell statistics, in-run comparisons and `compare`
//! all hold it (flattened, so every JSON and Parquet field keeps its name), and two cells of two
//! runs are the same configuration exactly when their `CellConfig`s are equal.
//!
//! The records of a run folder hold the names as strings (`CellConfig`, the default parameters),
//! so any tool can read them; the harness's plan holds the same type with its validated enums
//! (`CellConfig<BackendKind, Device, DType>`) and writes records with [`CellConfig::to_record`].
//! Every way of writing a configuration as text is a method here, so the plan, the records, the
//! statistics and the report cannot drift apart.

use std::fmt::Display;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A model as labels and cell ids show it: a model given as a path contributes its last
/// component, so a label does not change with the machine's directory layout.
pub fn model_label(model: &str) -> &str {
    Path::new(model)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(model)
}

/// The resolved configuration of a cell: what two runs must share for their cells to be compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellConfig<Backend = String, Device = String, DType = String> {
    /// Backend name.
    pub backend: Backend,
    /// Model name or path.
    pub model: String,
    /// Device.
    pub device: Device,
    /// Data type.
    pub dtype: DType,
    /// Sequences per request.
    pub batch_size: u32,
    /// Prompt length per sequence.
    pub prompt_tokens: u32,
    /// Generated tokens per sequence.
    pub new_tokens: u32,
}

impl<B: Display, D: Display, T: Display> CellConfig<B, D, T> {
    /// The configuration as the records of a run folder hold it: every name as text.
    pub fn to_record(&self) -> CellConfig {
        CellConfig {
            backend: self.backend.to_string(),
            model: self.model.clone(),
            device: self.device.to_string(),
            dtype: self.dtype.to_string(),
            batch_size: self.batch_size,
            prompt_tokens: self.prompt_tokens,
            new_tokens: self.new_tokens,
        }
    }

    /// The model as labels show it ([`model_label`]).
    pub fn model_label(&self) -> &str {
        model_label(&self.model)
    }

    /// The stable label that names a configuration across runs (`compare`, exports):
    /// `backend/model/dtype/device/bB/pP/nN`, e.g. `candle/small/f32/cpu/b1/p32/n16`
    /// ([`Self::model_label`] for the model).
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}/{}/b{}/p{}/n{}",
            self.backend,
            self.model_label(),
            self.dtype,
            self.device,
            self.batch_size,
            self.prompt_tokens,
            self.new_tokens
        )
    }

    /// The label of the plan's listing, progress lines and estimates:
    /// `backend/model/dtype/device bB pP nN`, e.g. `candle/small/f32/cpu b1 p32 n16`.
    pub fn plan_label(&self) -> String {
        format!(
            "{}/{}/{}/{} b{} p{} n{}",
            self.backend,
            self.model_label(),
            self.dtype,
            self.device,
            self.batch_size,
            self.prompt_tokens,
            self.new_tokens
        )
    }

    /// The configuration as report prose and tables show it:
    /// `backend · model · device · dtype · bB pP nN` (the model as given).
    pub fn caption(&self) -> String {
        format!(
            "{} · {} · {} · {} · b{} p{} n{}",
            self.backend,
            self.model,
            self.device,
            self.dtype,
            self.batch_size,
            self.prompt_tokens,
            self.new_tokens
        )
    }

    /// The workload part of the configuration: what decides the prompts. Cells that differ only
    /// in backend, device or dtype share it, so they see identical prompts.
    pub fn workload_key(&self) -> String {
        format!(
            "model={};batch_size={};prompt_tokens={};new_tokens={}",
            self.model, self.batch_size, self.prompt_tokens, self.new_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model: &str) -> CellConfig {
        CellConfig {
            backend: "candle".into(),
            model: model.into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            batch_size: 1,
            prompt_tokens: 32,
            new_tokens: 16,
        }
    }

    #[test]
    fn every_rendering_of_one_configuration() {
        let c = config("small");
        assert_eq!(c.label(), "candle/small/f32/cpu/b1/p32/n16");
        assert_eq!(c.plan_label(), "candle/small/f32/cpu b1 p32 n16");
        assert_eq!(c.caption(), "candle · small · cpu · f32 · b1 p32 n16");
        assert_eq!(
            c.workload_key(),
            "model=small;batch_size=1;prompt_tokens=32;new_tokens=16"
        );
        // A model folder is labelled by its last component, captioned as given.
        let p = config("/models/llama-3");
        assert_eq!(p.label(), "candle/llama-3/f32/cpu/b1/p32/n16");
        assert_eq!(
            p.caption(),
            "candle · /models/llama-3 · cpu · f32 · b1 p32 n16"
        );
        assert_eq!(p.to_record(), p);
    }
}
