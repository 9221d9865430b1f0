//! Import of a SkyPilot catalog CSV (`catalogs/v*/<cloud>/vms.csv` of
//! `github.com/skypilot-org/skypilot-catalog`) into our `instances.csv` + `prices.csv` layout.
//!
//! SkyPilot lists one row per instance type and availability zone, with `Price` (on-demand, $/h)
//! and `SpotPrice` ($/h). The import
//!
//! * groups rows by (instance type, region): the **on-demand** price is the highest listed across
//!   the zones (they normally agree; a disagreement is noted in `notes`), the **spot** price is the
//!   **lowest** listed across the zones (the cheapest zone, as SkyPilot's optimizer uses it); the
//!   zones used are named in `notes`;
//! * skips rows whose `Price` is empty, zero or not a number (no on-demand price: nothing is
//!   invented) and reports them;
//! * on GCP, where SkyPilot lists GPU-only rows (empty `InstanceType`) separately from the host
//!   VM, adds the GPU rows' price to the VM's for the families whose GPUs are fixed (`a2-highgpu-Ng`
//!   → N×A100-40GB, `a2-ultragpu-Ng` → N×A100-80GB, `a3-highgpu-Ng` → N×H100, `a3-ultragpu-8g` →
//!   8×H200, `g2-standard-*` → L4) and for explicit `pairs` (`n1-standard-8=T4:1`); the sum is
//!   noted;
//! * maps SkyPilot accelerator names to ours (`A100` → `A100-40GB`, `A100-80GB`, `H100`, `H200`,
//!   `L4`, `T4`, `A10G` unchanged) and reads the per-GPU memory from `GpuInfo` (`SizeInMiB`) when
//!   present.

use std::collections::BTreeMap;

use super::catalog::{csv_field, header, parse_csv, Date};

/// Options of [`import_skypilot`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// Provider (`aws`, `gcp`, `azure`); `None`: inferred from the zone names.
    pub provider: Option<String>,
    /// Retrieval date written to every price row.
    pub retrieved: Date,
    /// Source text written to every price row (repository, path, commit).
    pub source: String,
    /// Keep only these regions (empty: all).
    pub regions: Vec<String>,
    /// Keep only these instance types (empty: all).
    pub instance_types: Vec<String>,
    /// Extra GCP host + GPU pairings: (instance type, SkyPilot accelerator name, count).
    pub pairs: Vec<(String, String, u32)>,
}

/// Result of [`import_skypilot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// Provider used.
    pub provider: String,
    /// `instances.csv` text (with header).
    pub instances_csv: String,
    /// `prices.csv` text (with header).
    pub prices_csv: String,
    /// Instance rows written.
    pub n_instances: usize,
    /// Price rows written.
    pub n_prices: usize,
    /// Input rows skipped, with the reason.
    pub skipped: Vec<String>,
}

/// Errors of the import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The text is not CSV.
    #[error("line {line}: {message}")]
    Csv {
        /// Line.
        line: usize,
        /// Problem.
        message: String,
    },
    /// A required SkyPilot column is missing.
    #[error("not a SkyPilot vms.csv: column `{0}` is missing")]
    MissingColumn(&'static str),
    /// The provider could not be inferred.
    #[error("cannot infer the provider from the zone names; pass --provider aws|gcp|azure")]
    UnknownProvider,
    /// Nothing was imported.
    #[error("no row with an on-demand price matched (skipped {0} row(s))")]
    Empty(usize),
}

/// Our accelerator name for a SkyPilot one.
pub fn normalize_accelerator(name: &str) -> String {
    match name {
        "A100" => "A100-40GB".into(),
        other => other.to_string(),
    }
}

/// GPUs bundled with a GCP instance family whose price SkyPilot lists separately.
fn gcp_family_gpus(instance_type: &str) -> Option<(&'static str, u32)> {
    let count_suffix = |prefix: &str| -> Option<u32> {
        instance_type
            .strip_prefix(prefix)?
            .strip_suffix('g')?
            .parse()
            .ok()
    };
    if let Some(n) = count_suffix("a2-highgpu-") {
        return Some(("A100", n));
    }
    if let Some(n) = count_suffix("a2-ultragpu-") {
        return Some(("A100-80GB", n));
    }
    if let Some(n) = count_suffix("a3-highgpu-") {
        return Some(("H100", n));
    }
    if let Some(n) = count_suffix("a3-ultragpu-") {
        return Some(("H200", n));
    }
    let g2 = match instance_type {
        "g2-standard-4" | "g2-standard-8" | "g2-standard-12" | "g2-standard-16"
        | "g2-standard-32" => 1,
        "g2-standard-24" => 2,
        "g2-standard-48" => 4,
        "g2-standard-96" => 8,
        _ => return None,
    };
    Some(("L4", g2))
}

fn infer_provider(zones: &[&str], regions: &[&str]) -> Option<&'static str> {
    let aws = |z: &str| {
        z.split('-').next_back().is_some_and(|last| {
            last.starts_with("az") && last[2..].chars().all(|c| c.is_ascii_digit())
        })
    };
    if !zones.is_empty() && zones.iter().all(|z| aws(z)) {
        return Some("aws");
    }
    let gcp = |z: &str| {
        z.rsplit_once('-')
            .is_some_and(|(region, suffix)| regions.contains(&region) && suffix.len() <= 4)
    };
    if !zones.is_empty() && zones.iter().all(|z| gcp(z)) {
        return Some("gcp");
    }
    if zones.is_empty() && regions.iter().all(|r| !r.contains('-')) {
        return Some("azure");
    }
    None
}

fn mib_from_gpu_info(info: &str) -> Option<f64> {
    let at = info.find("SizeInMiB")?;
    let rest = &info[at + "SizeInMiB".len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

fn fmt_num(x: f64) -> String {
    // Shortest round-trip representation, without a trailing `.0` for whole numbers.
    let s = format!("{x}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A GCP GPU-only row: (SkyPilot accelerator name, count, region).
type GpuKey = (String, u32, String);

#[derive(Default)]
struct Group {
    accelerator: Option<String>,
    count: f64,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
    gpu_mib: Option<f64>,
    arch: Option<String>,
    on_demand: Vec<(String, f64)>,
    spot: Vec<(String, f64)>,
}

/// Converts SkyPilot `vms.csv` text into our layout.
pub fn import_skypilot(text: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let recs = parse_csv(text).map_err(|(line, message)| ImportError::Csv { line, message })?;
    let Some((head, body)) = recs.split_first() else {
        return Err(ImportError::MissingColumn("InstanceType"));
    };
    let col = |name: &'static str| head.fields.iter().position(|h| h.trim() == name);
    let need = |name: &'static str| col(name).ok_or(ImportError::MissingColumn(name));
    let (c_type, c_acc, c_cnt) = (
        need("InstanceType")?,
        need("AcceleratorName")?,
        need("AcceleratorCount")?,
    );
    let (c_price, c_spot, c_region) = (need("Price")?, need("SpotPrice")?, need("Region")?);
    let (c_vcpu, c_mem) = (col("vCPUs"), col("MemoryGiB"));
    let (c_zone, c_gpu, c_arch) = (col("AvailabilityZone"), col("GpuInfo"), col("Arch"));
    let get = |r: &[String], c: Option<usize>| -> String {
        c.and_then(|i| r.get(i))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let num = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0);

    let provider = match &opts.provider {
        Some(p) => p.clone(),
        None => {
            let zones: Vec<String> = body
                .iter()
                .map(|r| get(&r.fields, c_zone))
                .filter(|z| !z.is_empty())
                .collect();
            let regions: Vec<String> = body
                .iter()
                .map(|r| get(&r.fields, Some(c_region)))
                .collect();
            let z: Vec<&str> = zones.iter().map(String::as_str).collect();
            let rg: Vec<&str> = regions.iter().map(String::as_str).collect();
            infer_provider(&z, &rg)
                .ok_or(ImportError::UnknownProvider)?
                .to_string()
        }
    };

    let mut skipped = Vec::new();
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    // GCP GPU-only rows: (accelerator, count, region) → (on-demand max, spot min).
    let mut gpu_rows: BTreeMap<GpuKey, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for r in body {
        let f = &r.fields;
        let itype = get(f, Some(c_type));
        let region = get(f, Some(c_region));
        let zone = get(f, c_zone);
        let zone_label = if zone.is_empty() {
            region.clone()
        } else {
            zone.clone()
        };
        if !opts.regions.is_empty() && !opts.regions.contains(&region) {
            continue;
        }
        let price = num(&get(f, Some(c_price)));
        let spot = num(&get(f, Some(c_spot)));
        if itype.is_empty() {
            let acc = get(f, Some(c_acc));
            let cnt = get(f, Some(c_cnt)).parse::<f64>().unwrap_or(0.0);
            if acc.is_empty() || cnt <= 0.0 || cnt.fract() != 0.0 {
                continue;
            }
            let e = gpu_rows
                .entry((acc, cnt as u32, region))
                .or_insert((None, None));
            if let Some(p) = price {
                e.0 = Some(e.0.map_or(p, |q: f64| q.max(p)));
            }
            if let Some(s) = spot {
                e.1 = Some(e.1.map_or(s, |q: f64| q.min(s)));
            }
            continue;
        }
        if !opts.instance_types.is_empty() && !opts.instance_types.contains(&itype) {
            continue;
        }
        let Some(price) = price else {
            skipped.push(format!(
                "line {}: {itype} {zone_label}: no on-demand price (`{}`)",
                r.line,
                get(f, Some(c_price))
            ));
            continue;
        };
        let g = groups.entry((itype, region)).or_default();
        let acc = get(f, Some(c_acc));
        if !acc.is_empty() {
            g.accelerator = Some(acc);
            g.count = get(f, Some(c_cnt)).parse().unwrap_or(0.0);
        }
        g.vcpus = num(&get(f, c_vcpu)).or(g.vcpus);
        g.memory_gib = num(&get(f, c_mem)).or(g.memory_gib);
        g.gpu_mib = mib_from_gpu_info(&get(f, c_gpu)).or(g.gpu_mib);
        let arch = get(f, c_arch);
        if !arch.is_empty() {
            g.arch = Some(arch);
        }
        g.on_demand.push((zone_label.clone(), price));
        if let Some(s) = spot {
            g.spot.push((zone_label, s));
        }
    }

    let mut instances = vec![header("instances.csv")];
    let mut prices = vec![header("prices.csv")];
    let retrieved = opts.retrieved.to_string();
    for ((itype, region), g) in &groups {
        let mut accelerator = g.accelerator.clone();
        let mut count = g.count;
        let mut od = g.on_demand.iter().map(|z| z.1).fold(f64::MIN, f64::max);
        let mut spot = g.spot.iter().map(|z| z.1).fold(f64::MAX, f64::min);
        let mut notes = Vec::new();
        let zones: Vec<&str> = g.on_demand.iter().map(|z| z.0.as_str()).collect();
        notes.push(format!("zones: {}", zones.join(" ")));
        if g.on_demand.iter().any(|z| z.1 != od) {
            notes.push("on-demand differs across zones; highest kept".into());
        }
        // GCP: add the separately listed GPU price.
        let pairing = if provider == "gcp" && accelerator.is_none() {
            opts.pairs
                .iter()
                .find(|(t, _, _)| t == itype)
                .map(|(_, a, n)| (a.clone(), *n))
                .or_else(|| gcp_family_gpus(itype).map(|(a, n)| (a.to_string(), n)))
        } else {
            None
        };
        if let Some((acc, n)) = pairing {
            match gpu_rows.get(&(acc.clone(), n, region.clone())) {
                Some((Some(gpu_od), gpu_spot)) => {
                    od += gpu_od;
                    notes.push(format!(
                        "host VM + {n}x{acc} GPU rows summed (SkyPilot lists GCP GPUs separately)"
                    ));
                    match gpu_spot {
                        Some(s) if !g.spot.is_empty() => spot += s,
                        _ => spot = f64::MAX,
                    }
                    accelerator = Some(acc);
                    count = f64::from(n);
                }
                _ => {
                    skipped.push(format!(
                        "{itype} {region}: no {n}x{acc} GPU price row in this region; host-only price not imported"
                    ));
                    continue;
                }
            }
        }
        let accelerator = accelerator.map(|a| normalize_accelerator(&a));
        let count_s = if accelerator.is_some() && count > 0.0 {
            fmt_num(count)
        } else {
            String::new()
        };
        let gpu_gib = g
            .gpu_mib
            .map(|m| fmt_num((m / 1024.0 * 1000.0).round() / 1000.0))
            .unwrap_or_default();
        instances.push(
            [
                provider.clone(),
                itype.clone(),
                region.clone(),
                accelerator.clone().unwrap_or_default(),
                count_s,
                if accelerator.is_some() {
                    gpu_gib
                } else {
                    String::new()
                },
                g.vcpus.map(fmt_num).unwrap_or_default(),
                g.memory_gib.map(fmt_num).unwrap_or_default(),
                g.arch.clone().unwrap_or_default(),
                String::new(),
            ]
            .iter()
            .map(|s| csv_field(s))
            .collect::<Vec<_>>()
            .join(","),
        );
        let note = notes.join("; ");
        let mut price_row = |tier: &str, usd: f64, note: &str| {
            prices.push(
                [
                    provider.clone(),
                    itype.clone(),
                    region.clone(),
                    tier.to_string(),
                    fmt_num(usd),
                    String::new(),
                    retrieved.clone(),
                    opts.source.clone(),
                    String::new(),
                    note.to_string(),
                ]
                .iter()
                .map(|s| csv_field(s))
                .collect::<Vec<_>>()
                .join(","),
            );
        };
        price_row("on_demand", round9(od), &note);
        if spot < f64::MAX {
            let spot_zone = g
                .spot
                .iter()
                .find(|z| z.1 == g.spot.iter().map(|z| z.1).fold(f64::MAX, f64::min))
                .map(|z| z.0.as_str())
                .unwrap_or("");
            price_row(
                "spot",
                round9(spot),
                &format!("lowest spot across zones ({spot_zone}); {note}"),
            );
        }
    }
    let n_instances = instances.len() - 1;
    if n_instances == 0 {
        return Err(ImportError::Empty(skipped.len()));
    }
    Ok(Imported {
        provider,
        n_prices: prices.len() - 1,
        instances_csv: instances.join("\n") + "\n",
        prices_csv: prices.join("\n") + "\n",
        n_instances,
        skipped,
    })
}

/// Rounds away binary noise from sums (9 decimals; catalog prices have at most 6).
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch
g4dn.xlarge,T4,1.0,4.0,16.0,\"{'Gpus': [{'Name': 'T4', 'MemoryInfo': {'SizeInMiB': 16384}}]}\",0.526,0.215800,us-east-1,use1-az1,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,\"{'Gpus': [{'Name': 'T4', 'MemoryInfo': {'SizeInMiB': 16384}}]}\",0.526,0.200000,us-east-1,use1-az2,x86_64
p5.4xlarge,H100,1.0,16.0,256.0,,6.88,,us-east-1,use1-az1,x86_64
p5e.48xlarge,H200,8.0,192.0,2048.0,,,19.4254,us-east-2,use2-az1,x86_64
m8i.4xlarge,,,16.0,64.0,,0.84672,0.386800,us-east-1,use1-az2,x86_64
";

    fn opts() -> ImportOptions {
        ImportOptions {
            provider: None,
            retrieved: Date::parse("2026-11-23").unwrap(),
            source: "test".into(),
            regions: vec![],
            instance_types: vec![],
            pairs: vec![],
        }
    }

    #[test]
    fn aws_rows_group_by_region() {
        let out = import_skypilot(AWS, &opts()).unwrap();
        assert_eq!(out.provider, "aws");
        assert_eq!(out.n_instances, 3);
        assert!(out
            .instances_csv
            .contains("aws,g4dn.xlarge,us-east-1,T4,1,16,4,16,x86_64,"));
        assert!(out
            .prices_csv
            .contains("aws,g4dn.xlarge,us-east-1,on_demand,0.526,,2026-11-23,test,,"));
        assert!(out
            .prices_csv
            .contains("aws,g4dn.xlarge,us-east-1,spot,0.2,,2026-11-23,test,,lowest spot across zones (use1-az2)"));
        // p5.4xlarge has no spot price: only on-demand.
        assert_eq!(out.prices_csv.matches("p5.4xlarge").count(), 1);
        // p5e.48xlarge has no on-demand price: skipped, reported.
        assert!(!out.prices_csv.contains("p5e.48xlarge"));
        assert_eq!(out.skipped.len(), 1);
        assert!(out.skipped[0].contains("p5e.48xlarge"));
        assert_eq!(out.n_prices, 5);
    }

    #[test]
    fn gcp_gpu_rows_are_added_to_the_host() {
        let gcp = "\
InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.73948,0.36975
n2-standard-8,8.0,32.0,,,,us-central1,us-central1-a,0.38,0.1
,,,A100,1,A100,us-central1,us-central1-a,2.93,1.0
";
        let out = import_skypilot(gcp, &opts()).unwrap();
        assert_eq!(out.provider, "gcp");
        // 0.73948 + 2.93 = 3.66948; 0.36975 + 1.0 = 1.36975
        assert!(
            out.prices_csv
                .contains("gcp,a2-highgpu-1g,us-central1,on_demand,3.66948,"),
            "{}",
            out.prices_csv
        );
        assert!(out
            .prices_csv
            .contains("gcp,a2-highgpu-1g,us-central1,spot,1.36975,"));
        assert!(out
            .instances_csv
            .contains("gcp,a2-highgpu-1g,us-central1,A100-40GB,1,"));
        assert!(out
            .instances_csv
            .contains("gcp,n2-standard-8,us-central1,,,,8,32,,"));
    }

    #[test]
    fn filters_and_errors() {
        let mut o = opts();
        o.instance_types = vec!["m8i.4xlarge".into()];
        let out = import_skypilot(AWS, &o).unwrap();
        assert_eq!(out.n_instances, 1);
        o.instance_types = vec!["nope".into()];
        assert!(matches!(
            import_skypilot(AWS, &o),
            Err(ImportError::Empty(_))
        ));
        assert_eq!(
            import_skypilot("a,b\n1,2\n", &opts()).unwrap_err(),
            ImportError::MissingColumn("InstanceType")
        );
    }
}
