//! [`CellConfig`]: what a cell runs — backend, model, device, dtype, batch size, prompt and
//! generation length — the one description of a cell's configuration. The plan, the manifest's
//! cell records, every request row, the per-cell statistics, in-run comparisons and `compare`
//! all hold it (flattened, so every JSON and Parquet field keeps its name), and two cells of two
//! runs are the same configuration exactly when their `CellConfig`s are equal.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The resolved configuration of a cell: what two runs must share for their cells to be compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellConfig {
    /// Backend name.
    pub backend: String,
    /// Model name or path.
    pub model: String,
    /// Device.
    pub device: String,
    /// Data type.
    pub dtype: String,
    /// Sequences per request.
    pub batch_size: u32,
    /// Prompt length per sequence.
    pub prompt_tokens: u32,
    /// Generated tokens per sequence.
    pub new_tokens: u32,
}

impl CellConfig {
    /// The model as labels show it: a model given as a path contributes its last component, so a
    /// label does not change with the machine's directory layout.
    pub fn model_label(&self) -> &str {
        Path::new(&self.model)
            .file_name()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.model)
    }

    /// A readable, stable label: `backend/model/dtype/device/bB/pP/nN`, e.g.
    /// `candle/small/f32/cpu/b1/p32/n16` ([`Self::model_label`] for the model).
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
}
