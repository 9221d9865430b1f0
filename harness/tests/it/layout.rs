//! The harness's folders form layers, and an import never points up: `scenario/` uses nothing of
//! the crate, `plan` uses `scenario`, …, `commands/` uses everything below it, `main.rs` only the
//! commands (and the types they take). The README's layout section draws the same order.

use std::path::{Path, PathBuf};

/// The layers, lowest first. A file of layer i may name `crate::X` (or `tcobench::X` from the
/// binary) only for a layer X at or below i.
const LAYERS: [&str; 7] = [
    "scenario", "plan", "power", "estimate", "run", "commands", "main",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a source file belongs to: its folder under `src/`, or its own stem.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::NAME` / `tcobench::NAME` path a file names, with its line.
fn references(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, name));
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |layer: &str| LAYERS.iter().position(|l| *l == layer);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" {
            continue; // declares the modules, uses none
        }
        let own = rank(&layer).unwrap_or_else(|| {
            panic!(
                "{}: `{layer}` is not a layer of the README's layout (add it to LAYERS)",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        let prefix = if layer == "main" {
            "tcobench::"
        } else {
            "crate::"
        };
        for (line, name) in references(&text, prefix) {
            checked += 1;
            // lib.rs re-exports these at the crate root.
            let name = match name.as_str() {
                "Plan" | "Cell" => "plan".to_string(),
                "Scenario" | "ScenarioError" => "scenario".to_string(),
                _ => name,
            };
            match rank(&name) {
                Some(r) if r > own => upward.push(format!(
                    "{}:{line}: `{layer}` uses `{name}`, which is above it",
                    file.display()
                )),
                Some(_) => {}
                // A re-export of lib.rs (`crate::Plan`) or an item of the file's own module.
                None => {}
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} references found: is the scan broken?"
    );
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scan_sees_an_upward_import() {
    let refs = references(
        "use crate::run::RunDir; // crate::commands\nx = mycrate::plan",
        "crate::",
    );
    assert_eq!(refs, vec![(1, "run".to_string())]);
}
