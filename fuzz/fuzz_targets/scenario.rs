//! Scenario YAML → `Scenario` or `ScenarioError`, never a panic; every error names the file,
//! and an error about a key written in the file says where (line and column).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tcobench::scenario::{Overrides, Scenario};
use tcobench::Plan;

/// A folder that does not exist, so `extends:`, model folders and overlays relative to the
/// scenario resolve to nothing.
const PATH: &str = "/nonexistent-tcobench-fuzz/scenario.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    match Scenario::from_text(path, text, &Overrides::default()) {
        Ok(scenario) => {
            let plan = Plan::from_scenario(&scenario, PATH);
            assert!(!plan.cells.is_empty() || !scenario.exclude.is_empty());
        }
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.path, path, "{shown}");
            assert!(shown.starts_with(PATH), "{shown}");
            if let Some(key) = &e.key {
                let leaf = key.rsplit('.').next().unwrap_or(key);
                let leaf = leaf.split('[').next().unwrap_or(leaf);
                let written = written_as_key(text, leaf);
                if written && !e.message.starts_with("missing") {
                    assert!(
                        e.line.is_some() && e.column.is_some(),
                        "key `{key}` is in the text but the error has no position: {shown}"
                    );
                }
            }
        }
    }
});

/// Whether `leaf:` is written as a key: after a line start, a blank, `{`, `,` or `-`.
fn written_as_key(text: &str, leaf: &str) -> bool {
    let pattern = format!("{leaf}:");
    !leaf.is_empty()
        && text.lines().any(|line| {
            line.match_indices(&pattern).any(|(at, _)| {
                line[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-'))
            })
        })
}
