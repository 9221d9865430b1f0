//! Test fixtures shared by the catalog's unit tests: a minimal valid catalog and helpers that
//! collect its validation errors.

use std::collections::BTreeMap;

use super::{header, Catalog, CatalogError, Date, LoadOptions, ValidationError, FILES};

pub(super) fn d(s: &str) -> Date {
    Date::parse(s).unwrap()
}

/// A minimal valid catalog: one GPU instance in one region with on-demand and spot prices.
pub(super) fn base() -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = FILES
        .iter()
        .map(|f| ((*f).to_string(), format!("{}\n", header(f))))
        .collect();
    m.insert("VERSION".into(), "1.0.0\n2026-01-01\n".into());
    m.insert(
        "instances.csv".into(),
        format!(
            "{}\naws,g.x,us-east-1,T4,1,16,4,16,x86_64,\naws,g.x,eu-west-1,T4,1,16,4,16,x86_64,\n",
            header("instances.csv")
        ),
    );
    m.insert(
        "prices.csv".into(),
        format!(
            "{}\naws,g.x,us-east-1,on_demand,0.5,,2026-01-01,src,,\naws,g.x,us-east-1,spot,0.2,,2026-01-01,src,,\n",
            header("prices.csv")
        ),
    );
    m.insert(
        "accelerators.csv".into(),
        format!(
            "{}\nT4,NVIDIA,PCIe,16,70,,,2026-01-01,datasheet,\n",
            header("accelerators.csv")
        ),
    );
    m
}

pub(super) fn with(file: &str, extra_rows: &str) -> BTreeMap<String, String> {
    let mut m = base();
    m.get_mut(file).unwrap().push_str(extra_rows);
    m
}

pub(super) fn errors(m: &BTreeMap<String, String>) -> Vec<ValidationError> {
    match Catalog::from_texts(m, None, &LoadOptions::default()) {
        Err(CatalogError::Invalid(e)) => e,
        Ok(_) => panic!("expected validation errors"),
        Err(e) => panic!("unexpected {e}"),
    }
}

pub(super) fn only(errs: &[ValidationError]) -> &ValidationError {
    assert_eq!(errs.len(), 1, "{errs:#?}");
    &errs[0]
}
