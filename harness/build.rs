//! Records the versions of the crates whose behaviour shapes the numbers (from Cargo.lock), so
//! every manifest says exactly what measured it.

use std::path::Path;

const TRACKED: &[&str] = &[
    "candle-core",
    "candle-transformers",
    "polars",
    "nvml-wrapper",
    "statrs",
];

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if TRACKED.contains(&n.as_str()) {
                found.push(format!("{n}={}", v.trim_matches('"')));
            }
        }
    }
    println!("cargo:rustc-env=TCOBENCH_DEP_VERSIONS={}", found.join(";"));
}
