//! RAPL (Running Average Power Limit) energy counters through Linux powercap sysfs.
//!
//! Package zones (`intel-rapl:N`, `amd-rapl:N`) are summed; their sub-zones (core, uncore, dram)
//! lie inside a package and are never added to it. DRAM, where a package exposes it, is kept
//! apart (`dram_energy_j_cum`). `psys` (the whole SoC/platform domain) contains the packages, so
//! it is skipped: package and psys are never summed. Each counter wraps at its
//! `max_energy_range_uj`, which every read accounts for.
//!
//! Uncertainty assumed: the counters update about every 1 ms (Intel SDM vol. 3B, 14.10.3, "the
//! energy status … updated approximately every 1 ms"), and their gain error is taken as ±5 %:
//! since Haswell RAPL is measured rather than modelled and tracks external meters within a few
//! per cent for the package domain (Hackenberg et al., "An energy efficiency feature survey of
//! the Intel Haswell processor", IPDPSW 2015; Khan et al., "RAPL in Action", ACM TOMPECS 2018).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{PowerSampler, Reading};

/// Where Linux exposes RAPL.
pub const RAPL_ROOT: &str = "/sys/class/powercap";

/// How often RAPL counters update, ms.
pub const RAPL_UPDATE_MS: f64 = 1.0;

/// Gain error assumed for RAPL package energy (see the module doc).
pub const RAPL_GAIN_ERROR: f64 = 0.05;

/// RAPL package energy (plus DRAM apart, where exposed).
#[derive(Debug)]
pub struct Rapl {
    packages: Vec<Counter>,
    dram: Vec<Counter>,
}

/// One wrapping energy counter.
#[derive(Debug)]
struct Counter {
    energy_path: PathBuf,
    max_uj: u64,
    last_uj: u64,
    total_uj: u128,
}

impl Counter {
    fn open(dir: &Path) -> Result<Counter, String> {
        let energy_path = dir.join("energy_uj");
        let last_uj = read_u64(&energy_path)?;
        let max_uj = read_u64(&dir.join("max_energy_range_uj")).unwrap_or(u64::MAX);
        Ok(Counter {
            energy_path,
            max_uj,
            last_uj,
            total_uj: 0,
        })
    }

    /// Adds the energy since the last read; false when the file could not be read.
    fn update(&mut self) -> bool {
        match read_u64(&self.energy_path) {
            Ok(now) => {
                self.total_uj += u128::from(wrapped_delta(self.last_uj, now, self.max_uj));
                self.last_uj = now;
                true
            }
            Err(_) => false,
        }
    }
}

/// Energy between two readings of a counter that wraps to 0 after `max` (inclusive range
/// `0..=max`, as powercap's `max_energy_range_uj` describes it).
pub fn wrapped_delta(last: u64, now: u64, max: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        // Past `max` the counter restarts at 0: the rest of the range, plus one step to 0.
        (max - last).saturating_add(1).saturating_add(now)
    }
}

/// Why a powercap file could not be read, with the fix where there is one.
pub fn read_error(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "{}: permission denied: energy_uj is readable by root only since the PLATYPUS \
             mitigation (CVE-2020-8694, Linux 5.10); run as root or grant read access \
             (e.g. a udev rule or `chmod o+r`) to use RAPL",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| read_error(path, &e))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn zone_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("name"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Rapl {
    /// Opens every package zone under `root` (and its DRAM sub-zone where there is one); an
    /// error says why RAPL cannot be used.
    pub fn open(root: &Path) -> Result<Rapl, String> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| format!("{}: {e} (no powercap interface)", root.display()))?;
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        let (mut packages, mut dram) = (Vec::new(), Vec::new());
        for dir in &names {
            let file = dir
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            // Top-level zones only: `intel-rapl:0`, not `intel-rapl:0:1`.
            if !(file.starts_with("intel-rapl:") || file.starts_with("amd-rapl:"))
                || file.matches(':').count() != 1
            {
                continue;
            }
            if zone_name(dir) == "psys" {
                continue;
            }
            packages.push(Counter::open(dir)?);
            // Sub-zones sit both as `intel-rapl:0:N` beside it and inside its folder.
            let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            subs.retain(|p| {
                p.file_name()
                    .and_then(|s| s.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{file}:")))
            });
            if subs.is_empty() {
                subs = names
                    .iter()
                    .filter(|p| {
                        p.file_name()
                            .and_then(|s| s.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{file}:")))
                    })
                    .cloned()
                    .collect();
            }
            subs.sort();
            if let Some(d) = subs.iter().find(|p| zone_name(p) == "dram") {
                if let Ok(c) = Counter::open(d) {
                    dram.push(c);
                }
            }
        }
        if packages.is_empty() {
            return Err(format!("{}: no RAPL package zones", root.display()));
        }
        Ok(Rapl { packages, dram })
    }
}

impl PowerSampler for Rapl {
    fn method(&self) -> &'static str {
        "rapl"
    }
    fn scope(&self) -> &'static str {
        "cpu-package"
    }
    fn basis(&self) -> &'static str {
        "measured"
    }
    fn device(&self) -> String {
        "cpu-package".into()
    }
    fn notes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("rapl_packages".into(), self.packages.len().to_string()),
            ("rapl_dram_domains".into(), self.dram.len().to_string()),
            (
                "rapl_uncertainty".into(),
                "±5 % gain (Hackenberg et al. 2015; Khan et al. 2018), ~1 ms update period".into(),
            ),
        ])
    }
    fn update_period_ms(&self) -> f64 {
        RAPL_UPDATE_MS
    }
    fn gain_error_rel(&self) -> f64 {
        RAPL_GAIN_ERROR
    }
    fn read(&mut self) -> Reading {
        let mut ok = true;
        for c in &mut self.packages {
            ok &= c.update();
        }
        let mut dram_ok = !self.dram.is_empty();
        for c in &mut self.dram {
            dram_ok &= c.update();
        }
        Reading {
            energy_j_cum: ok.then(|| self.packages.iter().map(|c| c.total_uj as f64 / 1e6).sum()),
            dram_energy_j_cum: dram_ok
                .then(|| self.dram.iter().map(|c| c.total_uj as f64 / 1e6).sum()),
            ..Reading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(root: &Path, rel: &str, label: &str, uj: u64, max: u64) {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), label).unwrap();
        std::fs::write(d.join("energy_uj"), uj.to_string()).unwrap();
        std::fs::write(d.join("max_energy_range_uj"), max.to_string()).unwrap();
    }

    #[test]
    fn packages_summed_subzones_and_psys_never_added_wraparound_handled() {
        let dir = tempfile::tempdir().unwrap();
        zone(dir.path(), "intel-rapl:0", "package-0", 900, 999);
        zone(dir.path(), "intel-rapl:0/intel-rapl:0:0", "core", 5, 999);
        zone(dir.path(), "intel-rapl:0/intel-rapl:0:1", "dram", 10, 999);
        zone(dir.path(), "intel-rapl:1", "package-1", 0, 999);
        zone(dir.path(), "intel-rapl:2", "psys", 7, 999);
        let mut r = Rapl::open(dir.path()).unwrap();
        assert_eq!((r.packages.len(), r.dram.len()), (2, 1));
        let first = r.read();
        assert_eq!(first.energy_j_cum, Some(0.0));
        assert_eq!(first.dram_energy_j_cum, Some(0.0));
        // Package 0 wraps: 900 → 99 over a 0..=999 µJ range is 100 + 99 = 199 µJ; package 1 adds
        // 50 µJ; psys (which contains both) moves by a lot and must not count.
        std::fs::write(dir.path().join("intel-rapl:0/energy_uj"), "99").unwrap();
        std::fs::write(dir.path().join("intel-rapl:1/energy_uj"), "50").unwrap();
        std::fs::write(dir.path().join("intel-rapl:2/energy_uj"), "900").unwrap();
        std::fs::write(
            dir.path().join("intel-rapl:0/intel-rapl:0:1/energy_uj"),
            "40",
        )
        .unwrap();
        let r2 = r.read();
        let e = r2.energy_j_cum.unwrap();
        assert!((e - 249e-6).abs() < 1e-12, "{e}");
        assert!((r2.dram_energy_j_cum.unwrap() - 30e-6).abs() < 1e-12);
    }

    #[test]
    fn many_wraps_accumulate_to_the_analytic_energy() {
        // 25 W for 10 s read every 50 ms (1.25 J a step) on a counter of range 2^21 µJ ≈ 2.1 J:
        // it wraps every other read or so, never twice between two reads.
        let dir = tempfile::tempdir().unwrap();
        let max: u64 = (1 << 21) - 1;
        zone(dir.path(), "intel-rapl:0", "package-0", 123_456, max);
        let mut r = Rapl::open(dir.path()).unwrap();
        let mut truth_uj: u64 = 123_456;
        for _ in 0..200 {
            truth_uj += 1_250_000; // 25 W × 50 ms
            std::fs::write(
                dir.path().join("intel-rapl:0/energy_uj"),
                (truth_uj % (max + 1)).to_string(),
            )
            .unwrap();
            r.read();
        }
        let e = r.read().energy_j_cum.unwrap();
        assert!((e - 250.0).abs() < 1e-9, "{e}");
    }

    #[test]
    fn missing_rapl_says_why() {
        let e = Rapl::open(Path::new("/nonexistent/powercap")).unwrap_err();
        assert!(e.contains("no powercap"), "{e}");
    }

    #[test]
    fn permission_denied_names_platypus_and_the_fix() {
        let e = read_error(
            Path::new("intel-rapl:0/energy_uj"),
            &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(e.contains("PLATYPUS") && e.contains("root"), "{e}");
        let other = read_error(
            Path::new("x"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(!other.contains("PLATYPUS"), "{other}");
    }

    #[test]
    fn wrapped_delta_is_exact_at_the_edges() {
        assert_eq!(wrapped_delta(10, 10, 99), 0);
        assert_eq!(wrapped_delta(99, 0, 99), 1);
        assert_eq!(wrapped_delta(90, 9, 99), 19);
    }
}
