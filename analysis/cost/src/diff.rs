//! Differences between two catalogs: the price-history view of `tcobench catalog diff`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, CatalogIdentity, Date};

/// A row present in only one catalog, or changed in a column other than the price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffRow {
    /// File (`prices.csv`, …).
    pub file: String,
    /// Row key.
    pub key: String,
    /// Columns that differ (`column: old → new`), for changed rows.
    pub detail: Vec<String>,
}

/// A price that changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceChange {
    /// Price row key.
    pub key: String,
    /// Old price, $/h.
    pub old_usd_per_hour: f64,
    /// New price, $/h.
    pub new_usd_per_hour: f64,
    /// Relative change, % (`100 · (new − old) / old`).
    pub change_pct: f64,
    /// Old retrieval date.
    pub old_retrieved: Date,
    /// New retrieval date.
    pub new_retrieved: Date,
}

/// Everything that differs between two catalogs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogDiff {
    /// The old catalog.
    pub old: CatalogIdentity,
    /// The new catalog.
    pub new: CatalogIdentity,
    /// Rows only in the new catalog.
    pub added: Vec<DiffRow>,
    /// Rows only in the old catalog.
    pub removed: Vec<DiffRow>,
    /// Prices that changed, by key.
    pub price_changes: Vec<PriceChange>,
    /// Rows whose other columns changed (dates, sources, specs…).
    pub changed: Vec<DiffRow>,
}

impl CatalogDiff {
    /// Whether the catalogs hold the same rows.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.price_changes.is_empty()
            && self.changed.is_empty()
    }
}

/// Rows of every file as `file → key → column → value` (without the origin).
fn rows(c: &Catalog) -> BTreeMap<&'static str, BTreeMap<String, BTreeMap<String, String>>> {
    fn table<T: Serialize>(
        items: &[T],
        key: impl Fn(&T) -> String,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        items
            .iter()
            .map(|it| {
                let mut cols = BTreeMap::new();
                if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(it) {
                    for (k, v) in m {
                        if k == "origin" {
                            continue;
                        }
                        let s = match v {
                            serde_json::Value::String(s) => s,
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        cols.insert(k, s);
                    }
                }
                (key(it), cols)
            })
            .collect()
    }
    BTreeMap::from([
        ("instances.csv", table(&c.instances, |i| i.key())),
        ("prices.csv", table(&c.prices, |p| p.key())),
        (
            "accelerators.csv",
            table(&c.accelerators, |a| a.name.clone()),
        ),
        ("onprem.csv", table(&c.onprem, |s| s.system.clone())),
        ("grid_carbon.csv", table(&c.grid, |g| g.key())),
        ("pue.csv", table(&c.pue, |p| p.preset.clone())),
        ("electricity_prices.csv", table(&c.electricity, |e| e.key())),
        ("api_prices.csv", table(&c.api_prices, |a| a.key())),
    ])
}

/// Compares `old` with `new`.
pub fn diff(old: &Catalog, new: &Catalog) -> CatalogDiff {
    let (a, b) = (rows(old), rows(new));
    let mut out = CatalogDiff {
        old: old.identity.clone(),
        new: new.identity.clone(),
        added: Vec::new(),
        removed: Vec::new(),
        price_changes: Vec::new(),
        changed: Vec::new(),
    };
    for (file, old_rows) in &a {
        let new_rows = &b[file];
        for (key, cols) in old_rows {
            let Some(new_cols) = new_rows.get(key) else {
                out.removed.push(DiffRow {
                    file: (*file).into(),
                    key: key.clone(),
                    detail: Vec::new(),
                });
                continue;
            };
            if *file == "prices.csv" {
                let (po, pn) = (
                    old.prices.iter().find(|p| p.key() == *key),
                    new.prices.iter().find(|p| p.key() == *key),
                );
                if let (Some(po), Some(pn)) = (po, pn) {
                    if po.usd_per_hour != pn.usd_per_hour {
                        out.price_changes.push(PriceChange {
                            key: key.clone(),
                            old_usd_per_hour: po.usd_per_hour,
                            new_usd_per_hour: pn.usd_per_hour,
                            change_pct: 100.0 * (pn.usd_per_hour - po.usd_per_hour)
                                / po.usd_per_hour,
                            old_retrieved: po.retrieved,
                            new_retrieved: pn.retrieved,
                        });
                        continue;
                    }
                }
            }
            let detail: Vec<String> = cols
                .iter()
                .filter_map(|(c, v)| {
                    let nv = new_cols.get(c).cloned().unwrap_or_default();
                    (nv != *v).then(|| format!("{c}: {v} → {nv}"))
                })
                .collect();
            if !detail.is_empty() {
                out.changed.push(DiffRow {
                    file: (*file).into(),
                    key: key.clone(),
                    detail,
                });
            }
        }
        for key in new_rows.keys().filter(|k| !old_rows.contains_key(*k)) {
            out.added.push(DiffRow {
                file: (*file).into(),
                key: key.clone(),
                detail: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{header, LoadOptions, FILES};

    fn cat(prices: &str) -> Catalog {
        let mut m: std::collections::BTreeMap<String, String> = FILES
            .iter()
            .map(|f| ((*f).to_string(), format!("{}\n", header(f))))
            .collect();
        m.insert("VERSION".into(), "1\n".into());
        m.insert(
            "instances.csv".into(),
            format!(
                "{}\naws,c.x,r1,,,,2,4,,\naws,c.y,r1,,,,2,4,,\n",
                header("instances.csv")
            ),
        );
        m.insert(
            "prices.csv".into(),
            format!("{}\n{prices}", header("prices.csv")),
        );
        Catalog::from_texts(&m, None, &LoadOptions::default()).unwrap()
    }

    #[test]
    fn price_changes_additions_and_removals() {
        let old =
            cat("aws,c.x,r1,on_demand,0.5,,2026-01-01,s,,\naws,c.x,r1,spot,0.2,,2026-01-01,s,,\n");
        let new = cat(
            "aws,c.x,r1,on_demand,0.55,,2026-02-01,s,,\naws,c.y,r1,on_demand,1,,2026-02-01,s,,\n",
        );
        let d = diff(&old, &new);
        assert_eq!(d.price_changes.len(), 1);
        let c = &d.price_changes[0];
        assert_eq!(c.key, "aws/c.x/r1/on_demand");
        // 100·(0.55 − 0.5)/0.5 = 10 %
        assert!((c.change_pct - 10.0).abs() < 1e-9);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].key, "aws/c.y/r1/on_demand");
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].key, "aws/c.x/r1/spot");
        assert!(diff(&old, &old).is_empty());
    }
}
