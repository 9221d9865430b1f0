//! Scenario files: YAML in, a validated [`Scenario`] out.
//!
//! Input becomes a plan in two steps. Each file deserialises into plain serde structs that reject
//! unknown keys and wrong types (serde_yaml reports the line and column); files chained with
//! `extends:` are merged key by key (the child wins; `matrix` and `power` merge per key); then
//! cross-field checks run, and any failure points back at the file, line, column and key that
//! caused it. Nothing downstream ever sees an unvalidated value. Input that cannot be a scenario
//! (over 1 MiB, not UTF-8) and matrices of more than 100 000 cells are refused up front.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use tcobench_analysis::pricing::costing::{
    CostingSpec, RawApi, RawEnergy, RawOnPrem, RawPricing, RawSlo, RawWorkload,
};
use tcobench_analysis::pricing::{Catalog, LoadOptions, Tier};
use tcobench_backends::{BuiltinModel, DType, Device};

/// Longest `extends:` chain accepted (guards against accidental deep nesting).
const MAX_EXTENDS_DEPTH: usize = 16;

/// Most cells a matrix may expand to (before `exclude:`).
const MAX_CELLS: usize = 100_000;

/// Largest scenario file read, bytes (real ones are a few hundred).
const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// A scenario problem that points at its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// File the problem is in.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path (`matrix.batch_size[1]`), when the problem has one.
    pub key: Option<String>,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// Inference backends a scenario may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// candle (Rust), CPU or CUDA.
    Candle,
    /// ONNX Runtime on the same weights exported to ONNX, CPU or CUDA.
    Onnxruntime,
    /// No inference; deterministic virtual timings (tests, dry runs).
    Mock,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Candle => "candle",
            BackendKind::Onnxruntime => "onnxruntime",
            BackendKind::Mock => "mock",
        })
    }
}

/// Where energy figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PowerSource {
    /// NVML for CUDA cells, else RAPL when readable, else the CPU estimate.
    #[default]
    Auto,
    /// NVIDIA GPU energy counter (power integration where no counter exists).
    Nvml,
    /// Intel/AMD RAPL package energy from powercap.
    Rapl,
    /// A model: TDP × load, labelled `estimated`.
    CpuEstimate,
    /// Constant power on the mock backend's virtual clock (tests).
    Mock,
    /// No energy figures (they are stored as null, never zero).
    None,
}

/// A whole number ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Positive(pub u32);

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
pub struct OneOrMany<T>(pub Vec<T>);

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
struct RawMatrix {
    backend: Option<OneOrMany<BackendKind>>,
    model: Option<OneOrMany<String>>,
    dtype: Option<OneOrMany<DType>>,
    batch_size: Option<OneOrMany<Positive>>,
    prompt_tokens: Option<OneOrMany<Positive>>,
    new_tokens: Option<OneOrMany<Positive>>,
}

/// `power:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPower {
    source: Option<PowerSource>,
    sample_ms: Option<u32>,
    idle_baseline_s: Option<f64>,
    cpu_tdp_w: Option<f64>,
    cpu_idle_fraction: Option<f64>,
    mock_watts: Option<f64>,
    target_uncertainty: Option<f64>,
    min_window_ms: Option<f64>,
    cross_check_tolerance: Option<f64>,
    pad_requests_max: Option<u32>,
}

/// One scenario file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    extends: Option<String>,
    name: Option<String>,
    description: Option<String>,
    seed: Option<u64>,
    device: Option<OneOrMany<Device>>,
    warmup: Option<u32>,
    repetitions: Option<u32>,
    matrix: Option<RawMatrix>,
    exclude: Option<Vec<BTreeMap<String, serde_yaml::Value>>>,
    power: Option<RawPower>,
    pricing: Option<RawPricing>,
    energy: Option<RawEnergy>,
    slo: Option<RawSlo>,
    workload: Option<RawWorkload>,
    onprem: Option<RawOnPrem>,
    api: Option<Vec<RawApi>>,
    budget_usd: Option<f64>,
    cell_timeout_s: Option<f64>,
    onnxruntime: Option<RawOrt>,
}

/// `onnxruntime:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrt {
    intra_threads: Option<u32>,
    inter_threads: Option<u32>,
}

/// The matrix after validation: every dimension has at least one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    /// Backends.
    pub backend: Vec<BackendKind>,
    /// Model names (built-in) or directories.
    pub model: Vec<String>,
    /// Data types.
    pub dtype: Vec<DType>,
    /// Sequences per request.
    pub batch_size: Vec<u32>,
    /// Prompt lengths.
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens per sequence.
    pub new_tokens: Vec<u32>,
}

/// Power settings after validation and defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerSettings {
    /// Source selection.
    pub source: PowerSource,
    /// Timeline sampling period, ms.
    pub sample_ms: u32,
    /// Idle baseline measured before the matrix, seconds (0 = none).
    pub idle_baseline_s: f64,
    /// CPU package TDP used by the estimate, watts.
    pub cpu_tdp_w: f64,
    /// Whether `cpu_tdp_w` was set by the user (else it is a generic default).
    pub cpu_tdp_from_user: bool,
    /// Fraction of TDP drawn at zero load by the estimate.
    pub cpu_idle_fraction: f64,
    /// Constant power of the mock source, watts.
    pub mock_watts: f64,
    /// Relative quantisation error an energy window may have and still be valid: a window
    /// shorter than `update period / target_uncertainty` is marked invalid (default 0.01).
    pub target_uncertainty: f64,
    /// A floor under every energy window's minimum length, ms (default 0: derived from the
    /// source's update period and `target_uncertainty` only).
    pub min_window_ms: f64,
    /// Relative disagreement between the energy counter and integrated instant power beyond
    /// which a cell is flagged (default 0.1).
    pub cross_check_tolerance: f64,
    /// When a cell's timed requests end before its energy window reaches the minimum length,
    /// up to this many more requests run — untimed, only to lengthen the window (default 100;
    /// 0: never, the short window is marked invalid).
    pub pad_requests_max: u32,
}

impl PowerSettings {
    /// Defaults of the energy-window keys (`target_uncertainty`, `min_window_ms`,
    /// `cross_check_tolerance`), for plans written before they existed.
    pub const DEFAULT_TARGET_UNCERTAINTY: f64 = 0.01;
    /// Default of `min_window_ms`.
    pub const DEFAULT_MIN_WINDOW_MS: f64 = 0.0;
    /// Default of `cross_check_tolerance`.
    pub const DEFAULT_CROSS_CHECK_TOLERANCE: f64 = 0.1;
    /// Default of `pad_requests_max`.
    pub const DEFAULT_PAD_REQUESTS_MAX: u32 = 100;
}

/// One exclusion rule: a cell matching every listed dimension value is dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclude(pub BTreeMap<String, String>);

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Scenario name (also part of the run id).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Seed of every random draw (prompts).
    pub seed: u64,
    /// Devices to run on.
    pub device: Vec<Device>,
    /// Warm-up requests per cell.
    pub warmup: u32,
    /// Timed requests per cell.
    pub repetitions: u32,
    /// The matrix.
    pub matrix: Matrix,
    /// Exclusion rules.
    pub exclude: Vec<Exclude>,
    /// Power settings.
    pub power: PowerSettings,
    /// What the cells are priced on (`pricing`, `energy`, `slo`, `workload`; `None` when the
    /// scenario selects none of them). `pricing.catalog` is made absolute.
    pub costing: Option<CostingSpec>,
    /// Spending limit of the run itself.
    pub budget: Option<Budget>,
    /// ONNX Runtime thread pools (default: as many intra-op threads as cores, like candle, and
    /// one inter-op thread).
    pub ort_threads: OrtThreadSettings,
    /// `cell_timeout_s`: the wall-clock limit of one cell, seconds (`None`: the command's
    /// default; `run --cell-timeout-s` overrides it).
    pub cell_timeout_s: Option<f64>,
    /// The files read, the given one first, then its `extends:` chain.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

/// ONNX Runtime threads as resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrtThreadSettings {
    /// Threads inside one operator.
    pub intra: usize,
    /// Operators run concurrently.
    pub inter: usize,
}

/// `budget_usd` with the hourly rate it is charged at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    /// The limit, $.
    pub usd: f64,
    /// What one hour of this run costs, $/h.
    pub usd_per_hour: f64,
    /// Where the rate comes from (a catalog row, or `pricing.host_usd_per_hour`).
    pub rate_source: String,
}

/// A loaded file: its path, text and parsed content.
struct SourceFile {
    path: PathBuf,
    text: String,
    raw: RawScenario,
}

impl SourceFile {
    fn error(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        let (line, column) = locate(&self.text, key)
            .or_else(|| locate_leaf(&self.text, key))
            .unzip();
        ScenarioError {
            path: self.path.clone(),
            line,
            column,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

/// Reads one YAML file into its raw form, with located errors.
fn read_source(path: &Path) -> Result<SourceFile, ScenarioError> {
    let fail = |message: String| ScenarioError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message,
    };
    // A scenario is a few hundred bytes; refuse to parse something that cannot be one (reading
    // at most one byte past the limit, so a device file or a pipe cannot stall the read).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read scenario: {e}")))?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(fail(format!(
            "too large for a scenario file (more than {MAX_SCENARIO_BYTES} bytes)"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        // Point at the first byte that is not UTF-8, like a parse error would.
        let valid = String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]);
        let (line, column) = place_of_offset(&valid, valid.len()).unzip();
        ScenarioError {
            path: path.to_path_buf(),
            line,
            column,
            key: None,
            message: "not UTF-8 text (a scenario is a YAML file)".into(),
        }
    })?;
    parse_source(path, text)
}

/// Parses the text of one scenario file (read from `path`) into its raw form.
fn parse_source(path: &Path, text: String) -> Result<SourceFile, ScenarioError> {
    let raw: RawScenario = if text.trim().is_empty() {
        return Err(ScenarioError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: "the file is empty; a scenario needs at least `name` and `matrix`".into(),
        });
    } else {
        serde_yaml::from_str(&text).map_err(|e| yaml_error(path, &text, &e))?
    };
    Ok(SourceFile {
        path: path.to_path_buf(),
        text,
        raw,
    })
}

/// Turns a serde_yaml error into a located [`ScenarioError`] with its key path.
fn yaml_error(path: &Path, text: &str, e: &serde_yaml::Error) -> ScenarioError {
    let mut message = without_positions(&e.to_string());
    // The reader reports a byte offset for some errors (control characters): make it a place.
    let mut offset_place = None;
    if let Some((head, offset)) = message.rsplit_once(" at position ") {
        if let Ok(offset) = offset.parse::<usize>() {
            offset_place = place_of_offset(text, offset);
            message = head.to_string();
        }
    }
    let mut message = readable_types(&message);
    // The parser's limits, in the file author's terms.
    if message.ends_with("repetition limit exceeded") {
        message.push_str(" (`*alias` references expand to too much data)");
    } else if message.ends_with("recursion limit exceeded") {
        message.push_str(" (values nested too deeply)");
    }
    // serde_yaml prefixes the key path ("matrix.batch_size[1]: …") when it knows it.
    let (mut key, message) = match message.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (Some(k.to_string()), m.to_string()),
        _ => (None, message),
    };
    let mut duplicate = false;
    for prefix in ["unknown field `", "duplicate field `"] {
        if let Some(field) = message
            .strip_prefix(prefix)
            .and_then(|m| m.split('`').next())
        {
            duplicate = prefix.starts_with("duplicate");
            key = Some(match key {
                Some(k) => format!("{k}.{field}"),
                None => field.to_string(),
            });
        }
    }
    // serde_yaml marks where the error surfaced, which for a value rejected after parsing can be
    // the enclosing mapping; the key's own position is more precise when it can be found.
    let located = key.as_deref().and_then(|k| {
        if duplicate {
            locate_duplicate(text, k)
        } else {
            locate(text, k)
        }
    });
    let loc = e.location().map(|l| (l.line(), l.column()));
    let (line, column) = located
        .or(offset_place)
        .or(loc)
        .or_else(|| key.as_deref().and_then(|k| locate_leaf(text, k)))
        .unzip();
    ScenarioError {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message,
    }
}

/// `message` without the ` at line L column C` marks serde_yaml puts in it (the error carries
/// its own place).
fn without_positions(message: &str) -> String {
    const MARK: &str = " at line ";
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        let after = &rest[i + MARK.len()..];
        let n = digits(after);
        match after[n..].strip_prefix(" column ") {
            Some(tail) if n > 0 && digits(tail) > 0 => rest = &tail[digits(tail)..],
            _ => {
                out.push_str(MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// serde names the Rust types it expected (`struct RawMatrix`); the file's author knows them as
/// mappings of keys.
fn readable_types(message: &str) -> String {
    const MARK: &str = "struct Raw";
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        out.push_str("a mapping of keys");
        rest = rest[i + MARK.len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

/// 1-based line and column of byte `offset` of `text`.
fn place_of_offset(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, column))
}

/// Where `key` is written a second time, at the same indentation as its first occurrence.
fn locate_duplicate(text: &str, key: &str) -> Option<(usize, usize)> {
    let (line, column) = locate(text, key)?;
    let leaf = key.rsplit('.').next()?;
    let written = format!("{leaf}:");
    text.lines().enumerate().skip(line).find_map(|(i, l)| {
        let (indent, body) = (l.get(..column - 1)?, l.get(column - 1..)?);
        (indent.trim().is_empty() && body.starts_with(&written)).then_some((i + 1, column))
    })
}

/// Finds where a dotted key path (`matrix.batch_size`, `exclude[1].model`) is written in block
/// YAML, returning its 1-based line and column. Best effort: `None` when it is not found.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut wanted: Vec<(String, Option<usize>)> = Vec::new();
    for part in key.split('.') {
        match part.split_once('[') {
            Some((name, idx)) => {
                wanted.push((name.to_string(), idx.trim_end_matches(']').parse().ok()))
            }
            None => wanted.push((part.to_string(), None)),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let (mut start, mut min_indent) = (0usize, 0usize);
    let mut found = None;
    for (depth, (name, index)) in wanted.iter().enumerate() {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = trimmed.trim_start_matches("- ");
            let col = line.len() - body.len();
            if depth > 0 && col < min_indent && i > start {
                break;
            }
            if body.starts_with(&format!("{name}:")) && col >= min_indent {
                hit = Some((i, col));
                break;
            }
        }
        let (i, col) = hit?;
        found = Some((i + 1, col + 1));
        start = i + 1;
        min_indent = col + 1;
        if let Some(n) = index {
            // Walk to the n-th `- ` item below this key.
            let mut seen = 0;
            let mut item = None;
            for (j, line) in lines.iter().enumerate().skip(i + 1) {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let indent = line.len() - trimmed.len();
                if indent < col {
                    break;
                }
                if trimmed.starts_with("- ") {
                    if seen == *n {
                        item = Some((j, indent));
                        break;
                    }
                    seen += 1;
                }
            }
            if let Some((j, indent)) = item {
                found = Some((j + 1, indent + 3));
                start = j;
                min_indent = indent + 2;
            }
        }
    }
    found
}

/// Where the last segment of `key` is first written as a key (after a line start, blank, `{`,
/// `,` or `-`), for text [`locate`] cannot walk: flow style (`matrix: {batch_size: [0]}`) or
/// keys laid out unusually. 1-based line and column.
fn locate_leaf(text: &str, key: &str) -> Option<(usize, usize)> {
    let leaf = key.rsplit('.').next()?.split('[').next()?;
    if leaf.is_empty() {
        return None;
    }
    let pattern = format!("{leaf}:");
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(pos) = line[from..].find(&pattern) {
            let at = from + pos;
            let before = line[..at].chars().next_back();
            if before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-')) {
                return Some((i + 1, at + 1));
            }
            from = at + pattern.len();
        }
    }
    None
}

/// Which file of the chain last set a key, so an error can point at it.
struct Merged {
    raw: RawScenario,
    origin: BTreeMap<&'static str, usize>,
}

fn merge_chain(files: &[SourceFile]) -> Merged {
    // files[0] is the child; apply from the root ancestor down so the child wins.
    let mut raw = RawScenario::default();
    let mut origin = BTreeMap::new();
    let mut matrix = RawMatrix::default();
    let mut power = RawPower::default();
    let mut costing = CostingSpec::default();
    for (i, f) in files.iter().enumerate().rev() {
        let r = &f.raw;
        macro_rules! take {
            ($dst:expr, $src:expr, $key:literal) => {
                if let Some(v) = &$src {
                    $dst = Some(v.clone());
                    origin.insert($key, i);
                }
            };
        }
        take!(raw.name, r.name, "name");
        take!(raw.description, r.description, "description");
        take!(raw.seed, r.seed, "seed");
        take!(raw.device, r.device, "device");
        take!(raw.warmup, r.warmup, "warmup");
        take!(raw.repetitions, r.repetitions, "repetitions");
        take!(raw.exclude, r.exclude, "exclude");
        if let Some(m) = &r.matrix {
            take!(matrix.backend, m.backend, "matrix.backend");
            take!(matrix.model, m.model, "matrix.model");
            take!(matrix.dtype, m.dtype, "matrix.dtype");
            take!(matrix.batch_size, m.batch_size, "matrix.batch_size");
            take!(
                matrix.prompt_tokens,
                m.prompt_tokens,
                "matrix.prompt_tokens"
            );
            take!(matrix.new_tokens, m.new_tokens, "matrix.new_tokens");
        }
        if let Some(p) = &r.power {
            take!(power.source, p.source, "power.source");
            take!(power.sample_ms, p.sample_ms, "power.sample_ms");
            take!(
                power.idle_baseline_s,
                p.idle_baseline_s,
                "power.idle_baseline_s"
            );
            take!(power.cpu_tdp_w, p.cpu_tdp_w, "power.cpu_tdp_w");
            take!(
                power.cpu_idle_fraction,
                p.cpu_idle_fraction,
                "power.cpu_idle_fraction"
            );
            take!(power.mock_watts, p.mock_watts, "power.mock_watts");
            take!(
                power.target_uncertainty,
                p.target_uncertainty,
                "power.target_uncertainty"
            );
            take!(power.min_window_ms, p.min_window_ms, "power.min_window_ms");
            take!(
                power.cross_check_tolerance,
                p.cross_check_tolerance,
                "power.cross_check_tolerance"
            );
            take!(
                power.pad_requests_max,
                p.pad_requests_max,
                "power.pad_requests_max"
            );
        }
        take!(raw.budget_usd, r.budget_usd, "budget_usd");
        take!(raw.cell_timeout_s, r.cell_timeout_s, "cell_timeout_s");
        if let Some(o) = &r.onnxruntime {
            let ort = raw.onnxruntime.get_or_insert_with(RawOrt::default);
            take!(
                ort.intra_threads,
                o.intra_threads,
                "onnxruntime.intra_threads"
            );
            take!(
                ort.inter_threads,
                o.inter_threads,
                "onnxruntime.inter_threads"
            );
        }
        // Costing sections merge key by key; the origin of each key is kept for errors.
        let mut layer = CostingSpec {
            pricing: r.pricing.clone(),
            energy: r.energy.clone(),
            slo: r.slo.clone(),
            workload: r.workload.clone(),
            onprem: r.onprem.clone(),
            api: r.api.clone(),
        };
        if let Some(p) = layer.pricing.as_mut() {
            // An overlay path is relative to the file that names it.
            if let Some(dir) = &p.catalog {
                let base = f.path.parent().unwrap_or(Path::new("."));
                p.catalog = Some(base.join(dir).display().to_string());
            }
        }
        for key in costing_keys(&layer) {
            origin.insert(key, i);
        }
        costing.overlay(&layer);
    }
    raw.matrix = Some(matrix);
    raw.power = Some(power);
    raw.pricing = costing.pricing;
    raw.energy = costing.energy;
    raw.slo = costing.slo;
    raw.workload = costing.workload;
    raw.onprem = costing.onprem;
    raw.api = costing.api;
    Merged { raw, origin }
}

/// Overrides given on the command line; they win over every file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--seed N`.
    pub seed: Option<u64>,
    /// `--device D`.
    pub device: Option<Device>,
}

impl Scenario {
    /// Loads, merges and validates a scenario file and its `extends:` chain.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
        Scenario::resolve(read_source(path)?, overrides)
    }

    /// Like [`Scenario::load`] for a file whose text is already in memory: `path` is where the
    /// text is said to come from (errors name it; `extends:`, model folders and
    /// `pricing.catalog` are resolved relative to it).
    pub fn from_text(
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Scenario, ScenarioError> {
        Scenario::resolve(parse_source(path, text.to_string())?, overrides)
    }

    /// Follows the `extends:` chain of `first`, merges and validates.
    fn resolve(first: SourceFile, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
        let mut files = vec![first];
        while let Some(parent) = files.last().and_then(|f| f.raw.extends.clone()) {
            let child = files.last().expect("non-empty");
            let base = child.path.parent().unwrap_or(Path::new("."));
            let parent_path = base.join(&parent);
            if files.len() > MAX_EXTENDS_DEPTH
                || files.iter().any(|f| same_file(&f.path, &parent_path))
            {
                return Err(
                    child.error("extends", format!("`{parent}` makes a cycle of `extends:`"))
                );
            }
            if !parent_path.is_file() {
                let what = if parent_path.exists() {
                    "is not a file"
                } else {
                    "does not exist"
                };
                return Err(child.error(
                    "extends",
                    format!(
                        "`{}` {what} (paths are relative to this file)",
                        parent_path.display()
                    ),
                ));
            }
            files.push(read_source(&parent_path)?);
        }
        let merged = merge_chain(&files);
        validate(&files, merged, overrides)
    }
}

/// The dotted keys a costing layer sets.
fn costing_keys(c: &CostingSpec) -> Vec<&'static str> {
    macro_rules! keys {
        ($opt:expr, $section:literal, $($field:ident),+) => {{
            let mut k = Vec::new();
            if let Some(v) = &$opt {
                $( if v.$field.is_some() { k.push(concat!($section, ".", stringify!($field))); } )+
            }
            k
        }};
    }
    [
        keys!(
            c.pricing,
            "pricing",
            instances,
            tiers,
            utilization,
            catalog,
            host,
            host_usd_per_hour
        ),
        keys!(
            c.energy,
            "energy",
            pue,
            grid,
            idle_watts,
            embodied_kg,
            lifetime_years
        ),
        keys!(c.slo, "slo", metric, percentile, max_ms),
        keys!(
            c.workload,
            "workload",
            requests_per_day,
            tokens_per_request,
            peak_factor
        ),
        keys!(
            c.onprem,
            "onprem",
            system,
            capex_usd,
            lifetime_years,
            residual_fraction,
            maintenance_usd_per_hour,
            watts,
            usd_per_kwh,
            electricity,
            pue,
            horizon_months
        ),
        c.onprem.iter().map(|_| "onprem").collect(),
        c.api.iter().map(|_| "api").collect(),
    ]
    .concat()
}

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
    let selection = spec
        .resolve(&catalog, None, overlay)
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn validate(
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
        matrix,
        exclude,
        power,
        sources: files.iter().map(|f| f.path.clone()).collect(),
    };

    // What the cells will need, checked before any work: at least one cell, and in a model
    // folder the files of each backend that runs it.
    let cells = crate::plan::Plan::from_scenario(&scenario, "").cells;
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const OK: &str = "name: t\nseed: 1\nmatrix:\n  backend: [mock]\n  model: [tiny]\n  batch_size: [1, 2]\n  prompt_tokens: 8\n  new_tokens: [4]\n";

    #[test]
    fn locate_finds_nested_keys_and_items() {
        let text = "name: a\nmatrix:\n  model: [x]\n  batch_size: [1]\nexclude:\n  - model: x\n  - batch_size: 1\n    model: y\n";
        assert_eq!(locate(text, "name"), Some((1, 1)));
        assert_eq!(locate(text, "matrix.batch_size"), Some((4, 3)));
        assert_eq!(locate(text, "exclude[1].model"), Some((8, 5)));
        assert_eq!(locate(text, "nothing"), None);
    }

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
    fn unknown_key_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let text = OK.replace("  new_tokens: [4]\n", "  new_tokens: [4]\n  bach: 3\n");
        let e =
            Scenario::load(&write(dir.path(), "s.yaml", &text), &Overrides::default()).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert_eq!(e.column, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("matrix.bach"), "{e}");
    }

    #[test]
    fn parser_messages_are_cleaned_and_placed() {
        assert_eq!(
            without_positions(
                "did not find key at line 4 column 4, while parsing at line 2 column 1"
            ),
            "did not find key, while parsing"
        );
        assert_eq!(without_positions("at line x"), "at line x");
        assert_eq!(
            readable_types("invalid type: sequence, expected struct RawMatrix"),
            "invalid type: sequence, expected a mapping of keys"
        );
        assert_eq!(place_of_offset("name: a\nb\0", 9), Some((2, 2)));
        assert_eq!(place_of_offset("é", 1), None, "not a character boundary");
        let flow = "{name: x, matrix: {batch_size: [0]}}";
        assert_eq!(locate(flow, "matrix.batch_size"), None);
        assert_eq!(locate_leaf(flow, "matrix.batch_size"), Some((1, 20)));
        assert_eq!(locate_leaf("rename: x\n", "name"), None);
        let twice = "name: a\nmatrix:\n  model: [x]\n  model: [y]\n";
        assert_eq!(locate_duplicate(twice, "matrix.model"), Some((4, 3)));
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

    #[test]
    fn text_entry_point_names_the_given_path() {
        let path = Path::new("/nowhere/s.yaml");
        let s = Scenario::from_text(path, OK, &Overrides::default()).unwrap();
        assert_eq!(s.sources, vec![path.to_path_buf()]);
        let e =
            Scenario::from_text(path, "extends: base.yaml\n", &Overrides::default()).unwrap_err();
        assert_eq!((e.path.as_path(), e.line), (path, Some(1)), "{e}");
    }
}
