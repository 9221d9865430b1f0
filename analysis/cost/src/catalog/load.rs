//! [`Catalog`], the loaded catalog, and how it is built ([`LoadOptions`]): the built-in files, a
//! directory or in-memory texts, parsed layer by layer, the overlay merged key by key,
//! validated as a whole, then checked for stale rows.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::identity::{hash_layers, version_of};
use super::layer::Layer;
use super::parse::{parse_layer, Tables};
use super::{
    Accelerator, ApiPrice, CatalogError, CatalogIdentity, CatalogWarning, Date, ElectricityPrice,
    GridIntensity, Instance, OnPremSystem, Price, PuePreset, DEFAULT_MAX_AGE_DAYS,
};

/// Options of [`Catalog::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The current date for staleness checks (`None`: no staleness warnings).
    pub today: Option<Date>,
    /// Maximum age of a row's `retrieved` date before a warning, days.
    pub max_age_days: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            today: None,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }
}

/// A loaded, validated pricing catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Version, hash and origin.
    pub identity: CatalogIdentity,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Prices.
    pub prices: Vec<Price>,
    /// Accelerators.
    pub accelerators: Vec<Accelerator>,
    /// On-prem systems.
    pub onprem: Vec<OnPremSystem>,
    /// Grid carbon intensities.
    pub grid: Vec<GridIntensity>,
    /// PUE presets.
    pub pue: Vec<PuePreset>,
    /// Electricity prices.
    pub electricity: Vec<ElectricityPrice>,
    /// API prices.
    pub api_prices: Vec<ApiPrice>,
    /// Stale rows and other non-fatal findings.
    pub warnings: Vec<CatalogWarning>,
}

impl Catalog {
    /// The shipped catalog compiled into the binary.
    pub fn builtin(opts: &LoadOptions) -> Result<Catalog, CatalogError> {
        Catalog::from_layers(Layer::builtin(), None, opts)
    }

    /// The catalog in `base` (or the built-in one when `None`), with `overlay` applied on top.
    pub fn load(
        base: Option<&Path>,
        overlay: Option<&Path>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let base = match base {
            Some(dir) => Layer::read_dir(dir, false)?,
            None => Layer::builtin(),
        };
        let overlay = overlay.map(|d| Layer::read_dir(d, true)).transpose()?;
        Catalog::from_layers(base, overlay, opts)
    }

    /// Builds a catalog from in-memory file contents (tests, tools): `files` maps file names to
    /// CSV text; `overlay` likewise.
    pub fn from_texts(
        base: &BTreeMap<String, String>,
        overlay: Option<&BTreeMap<String, String>>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let base = Layer {
            label: "base".into(),
            files: base.clone(),
            overlay: false,
        };
        let overlay = overlay.map(|f| Layer {
            label: "overlay".into(),
            files: f.clone(),
            overlay: true,
        });
        Catalog::from_layers(base, overlay, opts)
    }

    fn from_layers(
        base: Layer,
        overlay: Option<Layer>,
        opts: &LoadOptions,
    ) -> Result<Catalog, CatalogError> {
        let mut errors = Vec::new();
        let (mut version, date) = version_of(&base, &mut errors);
        let b = parse_layer(&base, &mut errors);
        let mut layers = vec![&base];
        let t = match &overlay {
            Some(ov) => {
                let o = parse_layer(ov, &mut errors);
                version_of(ov, &mut errors);
                version.push_str("+overlay");
                layers.push(ov);
                Tables {
                    instances: merge(b.instances, o.instances),
                    prices: merge(b.prices, o.prices),
                    accelerators: merge(b.accelerators, o.accelerators),
                    onprem: merge(b.onprem, o.onprem),
                    grid: merge(b.grid, o.grid),
                    pue: merge(b.pue, o.pue),
                    electricity: merge(b.electricity, o.electricity),
                    api: merge(b.api, o.api),
                }
            }
            None => b,
        };
        let sha256 = hash_layers(&layers);
        let sources = layers
            .iter()
            .map(|l| {
                if l.label == "catalog" && !l.overlay {
                    "builtin".to_string()
                } else {
                    l.label.clone()
                }
            })
            .collect();
        let cat = Catalog {
            identity: CatalogIdentity {
                version,
                date,
                sha256,
                sources,
            },
            instances: strip(t.instances),
            prices: strip(t.prices),
            accelerators: strip(t.accelerators),
            onprem: strip(t.onprem),
            grid: strip(t.grid),
            pue: strip(t.pue),
            electricity: strip(t.electricity),
            api_prices: strip(t.api),
            warnings: Vec::new(),
        };
        cat.cross_check(&mut errors);
        if !errors.is_empty() {
            return Err(CatalogError::Invalid(errors));
        }
        let mut cat = cat;
        cat.warnings = cat.stale(opts);
        Ok(cat)
    }
}

/// Merges an overlay into base rows: same key replaces in place, new keys are appended.
fn merge<T>(base: Vec<(String, T)>, overlay: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut rows = base;
    for (k, v) in overlay {
        match rows.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => rows.push((k, v)),
        }
    }
    rows
}

fn strip<T>(rows: Vec<(String, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::catalog::fixtures::{base, only};
    use crate::catalog::{header, Catalog, CatalogError, LoadOptions, Tier};

    #[test]
    fn builtin_catalog_is_valid() {
        let c = Catalog::builtin(&LoadOptions::default()).unwrap();
        assert!(!c.instances.is_empty());
        assert!(c.prices.iter().all(|p| p.usd_per_hour > 0.0));
        assert_eq!(c.identity.sources, vec!["builtin".to_string()]);
        assert_eq!(c.identity.sha256.len(), 64);
        assert!(!c.identity.version.is_empty());
        // Every shipped price names its source and retrieval date.
        assert!(c.prices.iter().all(|p| !p.source.is_empty()));
    }

    #[test]
    fn overlay_same_key_replaces_and_new_keys_add() {
        let mut ov = BTreeMap::new();
        ov.insert(
            "prices.csv".to_string(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.45,,2026-02-01,my contract,,\naws,g.x,us-east-1,reserved_1y,0.3,,2026-02-01,my contract,,\n",
                header("prices.csv")
            ),
        );
        let c = Catalog::from_texts(&base(), Some(&ov), &LoadOptions::default()).unwrap();
        let base_c = Catalog::from_texts(&base(), None, &LoadOptions::default()).unwrap();
        let od = c
            .price(None, "g.x", Tier::OnDemand, Some("us-east-1"))
            .unwrap();
        assert_eq!(od.usd_per_hour, 0.45);
        assert!(od.reference.overlay);
        assert_eq!(od.reference.source, "my contract");
        assert_eq!(
            c.price(None, "g.x", Tier::Reserved1y, None)
                .unwrap()
                .usd_per_hour,
            0.3
        );
        // Untouched rows stay, from the base.
        let spot = c.price(None, "g.x", Tier::Spot, None).unwrap();
        assert!(!spot.reference.overlay);
        assert_eq!(c.prices.len(), 3);
        assert_eq!(c.identity.version, "1.0.0+overlay");
        assert_ne!(c.identity.sha256, base_c.identity.sha256);
        // The overlay is validated like the base: spot 0.2 stays below the new on-demand 0.45.
        let mut bad = ov.clone();
        bad.insert(
            "prices.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.1,,2026-02-01,x,,\n",
                header("prices.csv")
            ),
        );
        let e = match Catalog::from_texts(&base(), Some(&bad), &LoadOptions::default()) {
            Err(CatalogError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(only(&e).message.contains("above the on-demand price 0.1"));
        assert!(
            only(&e).file.starts_with("base/"),
            "the spot row is the base one"
        );
    }
}
