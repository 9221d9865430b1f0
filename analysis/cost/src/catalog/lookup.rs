//! The lookups of a loaded catalog: instances and their prices by tier ([`PriceQuote`]; an exact
//! region beats a `*` row), accelerators, grid intensities, PUE presets, on-prem systems,
//! electricity and API prices, with errors that suggest what is known.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{
    Accelerator, ApiPrice, Catalog, CatalogRef, ElectricityPrice, GridIntensity, Instance,
    LookupError, OnPremSystem, Price, PuePreset, Tier,
};

/// A resolved instance price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuote {
    /// The instance row.
    pub instance: Instance,
    /// Tier.
    pub tier: Tier,
    /// Price, $/h.
    pub usd_per_hour: f64,
    /// Provenance (key of the price row used, which may be a `*` row).
    pub reference: CatalogRef,
}

impl Catalog {
    /// Instance rows matching `instance_type` (and `provider`/`region` when given).
    pub fn find_instances(
        &self,
        provider: Option<&str>,
        instance_type: &str,
        region: Option<&str>,
    ) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| {
                i.instance_type == instance_type
                    && provider.is_none_or(|p| i.provider == p)
                    && region.is_none_or(|r| i.region == r)
            })
            .collect()
    }

    /// The price of `instance_type` under `tier`. `provider` and `region` may be omitted when
    /// only one candidate exists. An exact-region price row beats a `*` row.
    pub fn price(
        &self,
        provider: Option<&str>,
        instance_type: &str,
        tier: Tier,
        region: Option<&str>,
    ) -> Result<PriceQuote, LookupError> {
        let instances = self.find_instances(provider, instance_type, region);
        if instances.is_empty() {
            let all = self.find_instances(provider, instance_type, None);
            let hint = if all.is_empty() {
                String::new()
            } else {
                format!(
                    "; regions with this instance: {}",
                    all.iter()
                        .map(|i| i.region.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(LookupError::NotFound {
                what: "instance",
                query: [provider.unwrap_or(""), instance_type, region.unwrap_or("")]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
                hint,
            });
        }
        let providers: BTreeSet<&str> = instances.iter().map(|i| i.provider.as_str()).collect();
        if providers.len() > 1 {
            return Err(LookupError::Ambiguous {
                what: "instance",
                query: instance_type.into(),
                choices: format!(
                    "offered by {}",
                    providers.into_iter().collect::<Vec<_>>().join(", ")
                ),
                narrow: "provider",
            });
        }
        // Candidates that actually have a price for this tier.
        let priced: Vec<(&Instance, &Price)> = instances
            .iter()
            .filter_map(|i| self.price_row(i, tier).map(|p| (*i, p)))
            .collect();
        match priced.as_slice() {
            [] => Err(LookupError::NotFound {
                what: "price",
                query: format!(
                    "{instance_type} {tier}{}",
                    region.map(|r| format!(" in {r}")).unwrap_or_default()
                ),
                hint: {
                    let tiers: BTreeSet<&str> = instances
                        .iter()
                        .flat_map(|i| {
                            Tier::ALL
                                .into_iter()
                                .filter(|t| self.price_row(i, *t).is_some())
                        })
                        .map(Tier::name)
                        .collect();
                    if tiers.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; tiers with a price: {}",
                            tiers.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    }
                },
            }),
            [(i, p)] => Ok(PriceQuote {
                instance: (*i).clone(),
                tier,
                usd_per_hour: p.usd_per_hour,
                reference: self.reference(&p.origin, p.key(), p.retrieved, &p.source),
            }),
            many => Err(LookupError::Ambiguous {
                what: "price",
                query: format!("{instance_type} {tier}"),
                choices: format!(
                    "regions {}",
                    many.iter()
                        .map(|(i, _)| i.region.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                narrow: "region",
            }),
        }
    }

    /// The price row for an instance row and tier: the exact region, else a `*` row.
    pub fn price_row(&self, instance: &Instance, tier: Tier) -> Option<&Price> {
        let matching = |region: &str| {
            self.prices.iter().find(|p| {
                p.tier == tier
                    && p.provider == instance.provider
                    && p.instance_type == instance.instance_type
                    && p.region == region
            })
        };
        matching(&instance.region).or_else(|| matching("*"))
    }

    /// The accelerator named `name`.
    pub fn accelerator(&self, name: &str) -> Option<&Accelerator> {
        self.accelerators.iter().find(|a| a.name == name)
    }

    /// The most recent grid intensity of `zone`.
    pub fn grid_intensity(&self, zone: &str) -> Result<&GridIntensity, LookupError> {
        self.grid
            .iter()
            .filter(|g| g.zone == zone)
            .max_by_key(|g| g.year)
            .ok_or_else(|| LookupError::NotFound {
                what: "grid zone",
                query: zone.into(),
                hint: known(self.grid.iter().map(|g| g.zone.as_str())),
            })
    }

    /// The PUE preset `name`.
    pub fn pue_preset(&self, name: &str) -> Result<&PuePreset, LookupError> {
        self.pue
            .iter()
            .find(|p| p.preset == name)
            .ok_or_else(|| LookupError::NotFound {
                what: "PUE preset",
                query: name.into(),
                hint: known(self.pue.iter().map(|p| p.preset.as_str())),
            })
    }

    /// The on-prem system `name`.
    pub fn onprem_system(&self, name: &str) -> Result<&OnPremSystem, LookupError> {
        self.onprem
            .iter()
            .find(|s| s.system == name)
            .ok_or_else(|| LookupError::NotFound {
                what: "on-prem system",
                query: name.into(),
                hint: known(self.onprem.iter().map(|s| s.system.as_str())),
            })
    }

    /// The latest average electricity price of `key`: a zone (`US-OH`) or `zone/sector`
    /// (`US-OH/industrial`). A zone with several sectors needs the sector.
    pub fn electricity_price(&self, key: &str) -> Result<&ElectricityPrice, LookupError> {
        let (zone, sector) = match key.split_once('/') {
            Some((z, s)) => (z, Some(s)),
            None => (key, None),
        };
        let rows: Vec<&ElectricityPrice> = self
            .electricity
            .iter()
            .filter(|e| e.zone == zone && sector.is_none_or(|s| e.sector == s))
            .collect();
        let sectors: BTreeSet<&str> = rows.iter().map(|e| e.sector.as_str()).collect();
        if sectors.len() > 1 {
            return Err(LookupError::NotFound {
                what: "electricity price",
                query: key.into(),
                hint: format!(
                    "; the zone has several sectors, write `{zone}/SECTOR` with one of: {}",
                    sectors.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        rows.into_iter()
            .max_by_key(|e| e.year)
            .ok_or_else(|| LookupError::NotFound {
                what: "electricity price",
                query: key.into(),
                hint: known(self.electricity.iter().map(|e| e.zone.as_str())),
            })
    }

    /// The API price `provider/model`.
    pub fn api_price(&self, key: &str) -> Result<&ApiPrice, LookupError> {
        self.api_prices
            .iter()
            .find(|a| a.key() == key)
            .ok_or_else(|| LookupError::NotFound {
                what: "API model",
                query: key.into(),
                hint: known(
                    self.api_prices
                        .iter()
                        .map(|a| a.key())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                ),
            })
    }
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let set: BTreeSet<&str> = names.collect();
    if set.is_empty() {
        "; the catalog has none".into()
    } else {
        format!(
            "; known: {}",
            set.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::fixtures::base;
    use crate::catalog::{header, LoadOptions};

    #[test]
    fn base_is_valid_and_quotes_resolve() {
        let c = Catalog::from_texts(&base(), None, &LoadOptions::default()).unwrap();
        let q = c.price(None, "g.x", Tier::Spot, Some("us-east-1")).unwrap();
        assert_eq!(q.usd_per_hour, 0.2);
        assert_eq!(q.reference.key, "aws/g.x/us-east-1/spot");
        assert_eq!(q.reference.file, "prices.csv");
        assert_eq!(q.reference.catalog_version, "1.0.0");
        // Only us-east-1 has prices, so the region may be omitted.
        assert!(c.price(None, "g.x", Tier::OnDemand, None).is_ok());
        assert!(matches!(
            c.price(None, "g.x", Tier::Reserved1y, None),
            Err(LookupError::NotFound { .. })
        ));
        assert!(matches!(
            c.price(None, "nope", Tier::OnDemand, None),
            Err(LookupError::NotFound { .. })
        ));
    }

    #[test]
    fn exact_region_beats_star_rows() {
        let mut ov = BTreeMap::new();
        ov.insert(
            "prices.csv".to_string(),
            format!(
                "{}\naws,g.x,*,on_demand,0.9,,2026-02-01,list,,\n",
                header("prices.csv")
            ),
        );
        let c = Catalog::from_texts(&base(), Some(&ov), &LoadOptions::default()).unwrap();
        // us-east-1 has its own row: the `*` row does not apply.
        let q = c
            .price(None, "g.x", Tier::OnDemand, Some("us-east-1"))
            .unwrap();
        assert_eq!(q.usd_per_hour, 0.5);
        // eu-west-1 has none: the `*` row applies, and names itself.
        let q = c
            .price(None, "g.x", Tier::OnDemand, Some("eu-west-1"))
            .unwrap();
        assert_eq!(q.usd_per_hour, 0.9);
        assert_eq!(q.reference.key, "aws/g.x/*/on_demand");
        // Without a region both regions now have an on-demand price: ambiguous.
        assert!(matches!(
            c.price(None, "g.x", Tier::OnDemand, None),
            Err(LookupError::Ambiguous {
                narrow: "region",
                ..
            })
        ));
    }
}
