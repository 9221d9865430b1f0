//! The rules that span rows or files (accelerators named by instances and systems exist, prices
//! name known instances, spot not above on-demand) and the staleness warnings.

use std::collections::BTreeSet;

use super::{Catalog, CatalogWarning, Date, LoadOptions, RowOrigin, Tier, ValidationError};

impl Catalog {
    /// Rules that span rows or files.
    pub(super) fn cross_check(&self, errors: &mut Vec<ValidationError>) {
        let accels: BTreeSet<&str> = self.accelerators.iter().map(|a| a.name.as_str()).collect();
        for i in &self.instances {
            if let Some(a) = &i.accelerator {
                if !accels.contains(a.as_str()) {
                    errors.push(ValidationError {
                        file: i.origin.file.clone(),
                        line: i.origin.line,
                        column: Some("accelerator".into()),
                        key: Some(i.key()),
                        message: format!("accelerator `{a}` is not in accelerators.csv"),
                    });
                }
            }
        }
        for s in &self.onprem {
            if let Some(a) = &s.accelerator {
                if !accels.contains(a.as_str()) {
                    errors.push(ValidationError {
                        file: s.origin.file.clone(),
                        line: s.origin.line,
                        column: Some("accelerator".into()),
                        key: Some(s.system.clone()),
                        message: format!("accelerator `{a}` is not in accelerators.csv"),
                    });
                }
            }
        }
        for p in &self.prices {
            let known = self.instances.iter().any(|i| {
                i.provider == p.provider
                    && i.instance_type == p.instance_type
                    && (p.region == "*" || i.region == p.region)
            });
            if !known {
                errors.push(ValidationError {
                    file: p.origin.file.clone(),
                    line: p.origin.line,
                    column: Some("instance_type".into()),
                    key: Some(p.key()),
                    message: "no matching row in instances.csv (provider, instance_type, region)"
                        .into(),
                });
            }
            if p.tier == Tier::Spot && !p.spot_above_on_demand_ok {
                let od = self.prices.iter().find(|q| {
                    q.tier == Tier::OnDemand
                        && q.provider == p.provider
                        && q.instance_type == p.instance_type
                        && q.region == p.region
                });
                if let Some(od) = od {
                    if p.usd_per_hour > od.usd_per_hour {
                        errors.push(ValidationError {
                            file: p.origin.file.clone(),
                            line: p.origin.line,
                            column: Some("usd_per_hour".into()),
                            key: Some(p.key()),
                            message: format!(
                                "spot price {} is above the on-demand price {} ({}:{}); set \
                                 spot_above_on_demand_ok=true if that is real",
                                p.usd_per_hour, od.usd_per_hour, od.origin.file, od.origin.line
                            ),
                        });
                    }
                }
            }
        }
    }

    /// Rows retrieved more than `opts.max_age_days` before `opts.today`.
    pub(super) fn stale(&self, opts: &LoadOptions) -> Vec<CatalogWarning> {
        let Some(today) = opts.today else {
            return Vec::new();
        };
        let limit = i64::from(opts.max_age_days);
        let mut out = Vec::new();
        let mut check = |origin: &RowOrigin, key: String, retrieved: Date| {
            let age = today.days_since_epoch() - retrieved.days_since_epoch();
            if age > limit {
                out.push(CatalogWarning {
                    file: origin.file.clone(),
                    line: origin.line,
                    key,
                    message: format!(
                        "retrieved {retrieved}, {age} days before {today} (older than {limit} days)"
                    ),
                });
            }
        };
        for p in &self.prices {
            check(&p.origin, p.key(), p.retrieved);
        }
        for a in &self.accelerators {
            check(&a.origin, a.name.clone(), a.retrieved);
        }
        for s in &self.onprem {
            check(&s.origin, s.system.clone(), s.retrieved);
        }
        for g in &self.grid {
            check(&g.origin, g.key(), g.retrieved);
        }
        for p in &self.pue {
            check(&p.origin, p.preset.clone(), p.retrieved);
        }
        for e in &self.electricity {
            check(&e.origin, e.key(), e.retrieved);
        }
        for a in &self.api_prices {
            check(&a.origin, a.key(), a.retrieved);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::fixtures::{base, d, errors, only};
    use crate::catalog::header;

    #[test]
    fn spot_above_on_demand_needs_the_flag() {
        let mut m = base();
        m.insert(
            "prices.csv".into(),
            format!(
                "{}\naws,g.x,us-east-1,on_demand,0.5,,2026-01-01,src,,\naws,g.x,us-east-1,spot,0.7,,2026-01-01,src,,\n",
                header("prices.csv")
            ),
        );
        let e = errors(&m);
        let e = only(&e);
        assert_eq!((e.line, e.column.as_deref()), (3, Some("usd_per_hour")));
        assert!(e.message.contains("above the on-demand price 0.5"), "{e}");
        let flagged = m["prices.csv"].replace("0.7,,2026-01-01,src,,", "0.7,,2026-01-01,src,true,");
        m.insert("prices.csv".into(), flagged);
        assert!(Catalog::from_texts(&m, None, &LoadOptions::default()).is_ok());
    }

    #[test]
    fn stale_rows_are_warnings() {
        let opts = LoadOptions {
            today: Some(d("2026-12-31")),
            max_age_days: 180,
        };
        let c = Catalog::from_texts(&base(), None, &opts).unwrap();
        // 2 prices + 1 accelerator retrieved 2026-01-01, 364 days before.
        assert_eq!(c.warnings.len(), 3, "{:#?}", c.warnings);
        assert!(c.warnings[0].message.contains("364 days before 2026-12-31"));
        let fresh = LoadOptions {
            today: Some(d("2026-02-01")),
            max_age_days: 180,
        };
        assert!(Catalog::from_texts(&base(), None, &fresh)
            .unwrap()
            .warnings
            .is_empty());
    }
}
