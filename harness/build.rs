//! Records what the numbers depend on, so every manifest says exactly what measured it: the
//! versions of the crates whose behaviour shapes them (from Cargo.lock), and the git revision
//! tcobench was built from when it is built from a git checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

const TRACKED: &[&str] = &[
    "candle-core",
    "candle-transformers",
    "polars",
    "nvml-wrapper",
    "statrs",
];

fn main() {
    // Read at run time: a build script compiled for one checkout is reused by another checkout
    // that shares the target folder, so the path must not be baked in with `env!`.
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!(
        "cargo:rustc-env=TCOBENCH_DEP_VERSIONS={}",
        dep_versions(&manifest_dir)
    );
    println!(
        "cargo:rustc-env=TCOBENCH_BUILD_REVISION={}",
        build_revision(&manifest_dir).unwrap_or_default()
    );
}

/// `name=version;…` of the tracked crates, from the workspace's Cargo.lock (or the package's
/// own, for a packaged crate).
fn dep_versions(manifest_dir: &Path) -> String {
    let Some(lock) = [
        manifest_dir.join("../Cargo.lock"),
        manifest_dir.join("Cargo.lock"),
    ]
    .into_iter()
    .find(|p| p.is_file()) else {
        println!(
            "cargo:warning=no Cargo.lock beside {}: manifests will not record the versions of {}",
            manifest_dir.display(),
            TRACKED.join(", ")
        );
        return String::new();
    };
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
    found.join(";")
}

/// The commit checked out where tcobench is built (12 hex digits), rebuilt when it moves; `None`
/// outside a git checkout or without git.
fn build_revision(manifest_dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD, the branch it names and packed refs: what moves when a commit is made or checked out.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // Only files that exist: cargo reruns a build script whose watched file is missing on
        // every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            .map(|p| manifest_dir.join(p))
            .filter(|p| p.is_file())
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(revision)
}
