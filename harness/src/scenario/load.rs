//! Reading scenario files: the size and UTF-8 limits, serde_yaml's errors made readable, the
//! `extends:` chain followed and merged key by key, and keys located in the text so that every
//! error names its file, line and column.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use tcobench_results::spec::CostingSpec;

use super::raw::{RawMatrix, RawMock, RawOrt, RawPower, RawScenario};
use super::validate::validate;
use super::{Overrides, Scenario, ScenarioError};

/// Longest `extends:` chain accepted (guards against accidental deep nesting).
const MAX_EXTENDS_DEPTH: usize = 16;

/// Largest scenario file read, bytes (real ones are a few hundred).
const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// A loaded file: its path, text and parsed content.
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) raw: RawScenario,
}

impl SourceFile {
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ScenarioError {
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
pub(crate) struct Merged {
    pub(crate) raw: RawScenario,
    pub(crate) origin: BTreeMap<&'static str, usize>,
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
        take!(raw.replicates, r.replicates, "replicates");
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
        if let Some(m) = &r.mock {
            let mock = raw.mock.get_or_insert_with(RawMock::default);
            take!(
                mock.execution_drift,
                m.execution_drift,
                "mock.execution_drift"
            );
            take!(mock.drift_seed, m.drift_seed, "mock.drift_seed");
            take!(mock.time_scale, m.time_scale, "mock.time_scale");
        }
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::test_files::{write, OK};

    #[test]
    fn locate_finds_nested_keys_and_items() {
        let text = "name: a\nmatrix:\n  model: [x]\n  batch_size: [1]\nexclude:\n  - model: x\n  - batch_size: 1\n    model: y\n";
        assert_eq!(locate(text, "name"), Some((1, 1)));
        assert_eq!(locate(text, "matrix.batch_size"), Some((4, 3)));
        assert_eq!(locate(text, "exclude[1].model"), Some((8, 5)));
        assert_eq!(locate(text, "nothing"), None);
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
    fn text_entry_point_names_the_given_path() {
        let path = Path::new("/nowhere/s.yaml");
        let s = Scenario::from_text(path, OK, &Overrides::default()).unwrap();
        assert_eq!(s.sources, vec![path.to_path_buf()]);
        let e =
            Scenario::from_text(path, "extends: base.yaml\n", &Overrides::default()).unwrap_err();
        assert_eq!((e.path.as_path(), e.line), (path, Some(1)), "{e}");
    }
}
