//! The generic table reader: each file's columns ([`header`]), the header check and the
//! reordering of fields into column order, typed field access that records located errors
//! ([`Rec`], [`Check`]), and duplicate keys ([`parse_file`]).

use std::collections::BTreeMap;

use super::layer::Layer;
use super::{parse_csv, Date, RowOrigin, ValidationError};

/// Header of each file (the exact column order written by `catalog import` and shipped).
pub(crate) fn columns(file: &str) -> &'static [&'static str] {
    match file {
        "instances.csv" => &[
            "provider",
            "instance_type",
            "region",
            "accelerator",
            "accelerator_count",
            "accelerator_memory_gib",
            "vcpus",
            "memory_gib",
            "arch",
            "notes",
        ],
        "prices.csv" => &[
            "provider",
            "instance_type",
            "region",
            "tier",
            "usd_per_hour",
            "effective_date",
            "retrieved",
            "source",
            "spot_above_on_demand_ok",
            "notes",
        ],
        "accelerators.csv" => &[
            "name",
            "vendor",
            "variant",
            "memory_gb",
            "tdp_w",
            "idle_w",
            "embodied_kgco2e",
            "retrieved",
            "source",
            "notes",
        ],
        "onprem.csv" => &[
            "system",
            "accelerator",
            "accelerator_count",
            "capex_usd",
            "lifetime_years",
            "residual_fraction",
            "power_w",
            "maintenance_usd_per_hour",
            "effective_date",
            "retrieved",
            "source",
            "notes",
        ],
        "grid_carbon.csv" => &[
            "zone",
            "year",
            "g_per_kwh",
            "basis",
            "retrieved",
            "source",
            "notes",
        ],
        "pue.csv" => &["preset", "pue", "year", "retrieved", "source", "notes"],
        "electricity_prices.csv" => &[
            "zone",
            "sector",
            "year",
            "usd_per_kwh",
            "retrieved",
            "source",
            "notes",
        ],
        "api_prices.csv" => &[
            "provider",
            "model",
            "input_usd_per_1m",
            "output_usd_per_1m",
            "cached_input_usd_per_1m",
            "effective_date",
            "retrieved",
            "source",
            "notes",
        ],
        _ => &[],
    }
}

/// The header line of a catalog file.
pub fn header(file: &str) -> String {
    columns(file).join(",")
}

/// A record with named access and error reporting.
pub(super) struct Rec<'a> {
    file: &'a str,
    line: usize,
    index: &'a BTreeMap<&'a str, usize>,
    fields: &'a [String],
    key: Option<String>,
    errors: &'a mut Vec<ValidationError>,
}

impl Rec<'_> {
    pub(super) fn raw(&self, col: &str) -> &str {
        self.index
            .get(col)
            .and_then(|&i| self.fields.get(i))
            .map(|s| s.trim())
            .unwrap_or("")
    }

    pub(super) fn error(&mut self, col: &str, message: String) {
        self.errors.push(ValidationError {
            file: self.file.to_string(),
            line: self.line,
            column: Some(col.to_string()),
            key: self.key.clone(),
            message,
        });
    }

    pub(super) fn text(&mut self, col: &str) -> String {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            self.error(col, "is empty (required)".into());
        }
        v
    }

    pub(super) fn opt_text(&self, col: &str) -> Option<String> {
        let v = self.raw(col);
        (!v.is_empty()).then(|| v.to_string())
    }

    pub(super) fn opt_num(&mut self, col: &str, check: Check) -> Option<f64> {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return None;
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => match check.violated(x) {
                None => Some(x),
                Some(req) => {
                    self.error(col, format!("{req}, got {v}"));
                    None
                }
            },
            _ => {
                self.error(col, format!("`{v}` is not a number"));
                None
            }
        }
    }

    pub(super) fn num(&mut self, col: &str, check: Check) -> f64 {
        if self.raw(col).is_empty() {
            self.error(col, "is empty (required)".into());
            return f64::NAN;
        }
        self.opt_num(col, check).unwrap_or(f64::NAN)
    }

    pub(super) fn count(&mut self, col: &str) -> u32 {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return 0;
        }
        match v.parse::<f64>() {
            Ok(x) if x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) => x as u32,
            _ => {
                self.error(col, format!("`{v}` is not a whole number >= 0"));
                0
            }
        }
    }

    pub(super) fn year(&mut self, col: &str) -> i32 {
        let v = self.text(col);
        match v.parse::<i32>() {
            Ok(y) if (1900..=2200).contains(&y) => y,
            _ => {
                if !v.is_empty() {
                    self.error(col, format!("`{v}` is not a year"));
                }
                0
            }
        }
    }

    pub(super) fn date(&mut self, col: &str) -> Date {
        let v = self.text(col);
        match Date::parse(&v) {
            Some(d) => d,
            None => {
                if !v.is_empty() {
                    self.error(col, format!("`{v}` is not a YYYY-MM-DD date"));
                }
                Date {
                    year: 1970,
                    month: 1,
                    day: 1,
                }
            }
        }
    }

    pub(super) fn opt_date(&mut self, col: &str) -> Option<Date> {
        let v = self.raw(col).to_string();
        if v.is_empty() {
            return None;
        }
        let d = Date::parse(&v);
        if d.is_none() {
            self.error(col, format!("`{v}` is not a YYYY-MM-DD date"));
        }
        d
    }

    pub(super) fn flag(&mut self, col: &str) -> bool {
        match self.raw(col).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" => false,
            "true" | "1" | "yes" => true,
            other => {
                let other = other.to_string();
                self.error(col, format!("`{other}` is not a boolean (true/false)"));
                false
            }
        }
    }

    pub(super) fn origin(&self, overlay: bool) -> RowOrigin {
        RowOrigin {
            file: self.file.to_string(),
            line: self.line,
            overlay,
        }
    }
}

/// The range a number of a column must lie in.
#[derive(Clone, Copy)]
pub(super) enum Check {
    Positive,
    NonNegative,
    AtLeastOne,
    Fraction,
}

impl Check {
    fn violated(self, x: f64) -> Option<&'static str> {
        match self {
            Check::Positive if x <= 0.0 => Some("must be > 0"),
            Check::NonNegative if x < 0.0 => Some("must be >= 0"),
            Check::AtLeastOne if x < 1.0 => Some("must be >= 1"),
            Check::Fraction if !(0.0..1.0).contains(&x) => Some("must be in [0, 1)"),
            _ => None,
        }
    }
}

/// Parses one file of a layer into `(line, index, fields)` records after checking the header.
fn records(
    layer: &Layer,
    file: &str,
    errors: &mut Vec<ValidationError>,
) -> Vec<(usize, Vec<String>)> {
    let Some(text) = layer.files.get(file) else {
        if !layer.overlay {
            errors.push(ValidationError {
                file: layer.path(file),
                line: 0,
                column: None,
                key: None,
                message: "file is missing (a catalog directory needs every file; an overlay may omit files)".into(),
            });
        }
        return Vec::new();
    };
    let recs = match parse_csv(text) {
        Ok(r) => r,
        Err((line, message)) => {
            errors.push(ValidationError {
                file: layer.path(file),
                line,
                column: None,
                key: None,
                message,
            });
            return Vec::new();
        }
    };
    let Some((head, body)) = recs.split_first() else {
        errors.push(ValidationError {
            file: layer.path(file),
            line: 1,
            column: None,
            key: None,
            message: format!("no header; expected `{}`", header(file)),
        });
        return Vec::new();
    };
    let cols = columns(file);
    let missing: Vec<_> = cols
        .iter()
        .filter(|c| !head.fields.iter().any(|h| h.trim() == **c))
        .collect();
    if !missing.is_empty() {
        errors.push(ValidationError {
            file: layer.path(file),
            line: 1,
            column: None,
            key: None,
            message: format!(
                "header lacks column(s) {}; expected `{}`",
                missing
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                header(file)
            ),
        });
        return Vec::new();
    }
    // A row longer than the header has lost or shifted a value (typically an unquoted comma).
    for r in body.iter().filter(|r| r.fields.len() > head.fields.len()) {
        errors.push(ValidationError {
            file: layer.path(file),
            line: r.line,
            column: None,
            key: None,
            message: format!(
                "{} fields where the header has {} (quote a value that contains a comma)",
                r.fields.len(),
                head.fields.len()
            ),
        });
    }
    // Reorder fields into the canonical column order.
    body.iter()
        .map(|r| {
            let fields = cols
                .iter()
                .map(|c| {
                    head.fields
                        .iter()
                        .position(|h| h.trim() == *c)
                        .and_then(|i| r.fields.get(i))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            (r.line, fields)
        })
        .collect()
}

/// Runs `f` on each record of `file` in `layer` with a [`Rec`] whose key is set by `key_of`.
pub(super) fn parse_file<T>(
    layer: &Layer,
    file: &str,
    errors: &mut Vec<ValidationError>,
    key_of: impl Fn(&dyn Fn(&str) -> String) -> String,
    mut build: impl FnMut(&mut Rec<'_>) -> T,
) -> Vec<(String, T)> {
    let recs = records(layer, file, errors);
    let cols = columns(file);
    let index: BTreeMap<&str, usize> = cols.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let path = layer.path(file);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (line, fields) in &recs {
        let get = |c: &str| {
            index
                .get(c)
                .and_then(|&i| fields.get(i))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let key = key_of(&get);
        if let Some(first) = seen.insert(key.clone(), *line) {
            errors.push(ValidationError {
                file: path.clone(),
                line: *line,
                column: None,
                key: Some(key.clone()),
                message: format!("duplicate key (first defined on line {first})"),
            });
            continue;
        }
        let mut rec = Rec {
            file: &path,
            line: *line,
            index: &index,
            fields,
            key: Some(key.clone()),
            errors,
        };
        let row = build(&mut rec);
        out.push((key, row));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::catalog::fixtures::{errors, only, with};

    #[test]
    fn keys_must_be_unique() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,us-east-1,on-demand,0.6,,2026-01-01,src,,\n",
        ));
        let e = only(&e);
        assert_eq!(e.line, 4);
        assert_eq!(e.key.as_deref(), Some("aws/g.x/us-east-1/on_demand"));
        assert!(e
            .message
            .contains("duplicate key (first defined on line 2)"));
    }

    #[test]
    fn rows_longer_than_the_header_are_errors() {
        let e = errors(&with(
            "prices.csv",
            "aws,g.x,eu-west-1,on_demand,0.6,,2026-01-01,src,,a note, with a comma\n",
        ));
        let e = only(&e);
        assert_eq!((e.line, e.column.as_deref()), (4, None));
        assert!(
            e.message.contains("11 fields where the header has 10"),
            "{e}"
        );
    }
}
