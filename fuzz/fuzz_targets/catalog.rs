//! Catalog CSV texts → `Catalog` or `CatalogError`, never a panic.
//!
//! The input is a base catalog and an optional overlay: NUL-separated chunks, the first nine the
//! base's files (`FILES` then `VERSION`), the next nine the overlay's; an empty chunk is an
//! absent file. Every validation error must name a file of its layer.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tcobench_cost::catalog::{parse_csv, CatalogError, Date, FILES, VERSION_FILE};
use tcobench_cost::{Catalog, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let names: Vec<&str> = FILES.iter().copied().chain([VERSION_FILE]).collect();
    let mut base = BTreeMap::new();
    let mut overlay = BTreeMap::new();
    for (i, chunk) in data.split(|&b| b == 0).enumerate().take(2 * names.len()) {
        if chunk.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(chunk).into_owned();
        let _ = parse_csv(&text);
        let layer = if i < names.len() {
            &mut base
        } else {
            &mut overlay
        };
        layer.insert(names[i % names.len()].to_string(), text);
    }
    let opts = LoadOptions {
        today: Date::parse("2026-12-01"),
        max_age_days: 30,
    };
    let overlay = (!overlay.is_empty()).then_some(&overlay);
    match Catalog::from_texts(&base, overlay, &opts) {
        Ok(catalog) => {
            for p in &catalog.prices {
                assert!(p.usd_per_hour.is_finite() && p.usd_per_hour > 0.0, "{p:?}");
            }
            let _ = serde_json::to_string(&catalog);
        }
        Err(CatalogError::Invalid(errors)) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(
                    e.file.starts_with("base/") || e.file.starts_with("overlay/"),
                    "{e}"
                );
                let _ = e.to_string();
            }
        }
        Err(e @ CatalogError::Io { .. }) => panic!("no files are read: {e}"),
    }
});
