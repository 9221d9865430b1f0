//! What the run ran on and with: host description, git revision, tool and crate versions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use tcobench_results::schema::HostInfo;

/// Describes this host from `/proc` and NVML (when it loads).
pub(crate) fn host_info() -> HostInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    HostInfo {
        os: format!("{} {}", std::env::consts::OS, kernel.trim()),
        cpu_model,
        cpu_logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        gpus: gpus(),
        hostname: hostname.trim().to_string(),
    }
}

fn gpus() -> Vec<String> {
    let Ok(nvml) = nvml_wrapper::Nvml::init() else {
        return Vec::new();
    };
    let driver = nvml.sys_driver_version().unwrap_or_default();
    let n = nvml.device_count().unwrap_or(0);
    (0..n)
        .filter_map(|i| nvml.device_by_index(i).ok())
        .map(|d| format!("{} (driver {driver})", d.name().unwrap_or_default()))
        .collect()
}

/// `git describe --always` of the folder holding `near`, when it is in a git work tree, with
/// `-dirty` appended when a tracked file other than tcobench's own outputs is modified.
pub(crate) fn git_revision(near: &Path) -> Option<String> {
    git_state(near).map(|s| s.revision)
}

/// A work tree's revision and the tracked files that differ from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitState {
    /// `git describe --always --abbrev=12`, `-dirty` appended when `dirty` is not empty.
    pub(crate) revision: String,
    /// Modified tracked files (paths from the work tree's root), tcobench's own outputs —
    /// `EXPERIMENT_LOG.md`, anything under `results/` — left out: every run appends to the log,
    /// and a run must not make the next one look dirty.
    pub(crate) dirty: Vec<String>,
}

/// The [`GitState`] of the folder holding `near`, when it is in a git work tree.
pub(crate) fn git_state(near: &Path) -> Option<GitState> {
    let dir = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let describe = git(&["describe", "--always", "--abbrev=12"])?
        .trim()
        .to_string();
    if describe.is_empty() {
        return None;
    }
    let status = git(&["status", "--porcelain=v1", "-z", "--untracked-files=no"])?;
    // `XY path`, NUL-terminated; a rename or copy is followed by its source path.
    let mut dirty = Vec::new();
    let mut entries = status.split('\0').filter(|e| !e.is_empty());
    while let Some(e) = entries.next() {
        let (code, path) = (e.get(..2).unwrap_or(""), e.get(3..).unwrap_or(""));
        if code.contains('R') || code.contains('C') {
            entries.next();
        }
        if !path.is_empty() && !is_own_output(path) {
            dirty.push(path.to_string());
        }
    }
    Some(GitState {
        revision: if dirty.is_empty() {
            describe
        } else {
            format!("{describe}-dirty")
        },
        dirty,
    })
}

/// Whether a work-tree path is one of tcobench's own outputs.
fn is_own_output(path: &str) -> bool {
    let path = Path::new(path);
    path.file_name().is_some_and(|n| n == "EXPERIMENT_LOG.md")
        || path
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == "results")
}

/// tcobench's version, the git revision it was built from (when built from a checkout), and the
/// versions of the crates that shape the numbers.
pub(crate) fn versions() -> BTreeMap<String, String> {
    let mut v = BTreeMap::from([(
        "tcobench".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )]);
    for pair in env!("TCOBENCH_DEP_VERSIONS")
        .split(';')
        .filter(|s| !s.is_empty())
    {
        if let Some((k, val)) = pair.split_once('=') {
            v.insert(k.to_string(), val.to_string());
        }
    }
    let revision = env!("TCOBENCH_BUILD_REVISION");
    if !revision.is_empty() {
        v.insert("tcobench_git_revision".into(), revision.into());
    }
    if cfg!(feature = "cuda") {
        v.insert(
            "tcobench".into(),
            format!("{} (cuda build)", env!("CARGO_PKG_VERSION")),
        );
    }
    v
}

/// Peak resident set size of this process since the last [`reset_peak_rss`], bytes.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Resets the kernel's peak-RSS mark so the next reading covers one cell only (Linux ≥ 4.0).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Device memory this process holds on CUDA device `index`, bytes, as NVML reports it; `None`
/// when NVML, the device or a per-process figure is unavailable.
pub(crate) fn gpu_memory_bytes(index: usize) -> Option<u64> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let nvml = nvml_wrapper::Nvml::init().ok()?;
    let device = nvml.device_by_index(u32::try_from(index).ok()?).ok()?;
    let pid = std::process::id();
    device
        .running_compute_processes()
        .ok()?
        .into_iter()
        .find(|p| p.pid == pid)
        .and_then(|p| match p.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => Some(bytes),
            UsedGpuMemory::Unavailable => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_the_crates_that_shape_the_numbers() {
        let v = versions();
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        for name in ["candle-core", "candle-transformers", "polars", "statrs"] {
            let version = v
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing from {v:?}"));
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
            assert!(
                lock.contains(&entry),
                "{name} {version} is not Cargo.lock's"
            );
        }
        if let Some(r) = v.get("tcobench_git_revision") {
            assert!(
                r.len() == 12 && r.chars().all(|c| c.is_ascii_hexdigit()),
                "{r}"
            );
        }
    }

    #[test]
    fn the_tools_own_outputs_do_not_make_a_work_tree_dirty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .args(args)
                .current_dir(dir)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(dir.join("results")).unwrap();
        for f in ["s.yaml", "EXPERIMENT_LOG.md", "results/keep.md", "other.rs"] {
            std::fs::write(dir.join(f), "a\n").unwrap();
        }
        git(&["add", "."]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ]);
        let scenario = dir.join("s.yaml");
        let clean = git_state(&scenario).unwrap();
        assert!(!clean.revision.ends_with("-dirty"), "{clean:?}");
        // What a run writes leaves the revision clean.
        std::fs::write(dir.join("EXPERIMENT_LOG.md"), "a\nrun\n").unwrap();
        std::fs::write(dir.join("results/keep.md"), "b\n").unwrap();
        std::fs::write(dir.join("untracked.txt"), "c\n").unwrap();
        assert_eq!(git_state(&scenario).unwrap(), clean);
        // Anything else is dirty, and named.
        std::fs::write(dir.join("other.rs"), "changed\n").unwrap();
        let dirty = git_state(&scenario).unwrap();
        assert_eq!(dirty.revision, format!("{}-dirty", clean.revision));
        assert_eq!(dirty.dirty, ["other.rs"]);
    }
}
