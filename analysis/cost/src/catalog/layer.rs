//! The raw text of one layer of a catalog: the built-in files compiled into the binary, a
//! catalog directory, or an overlay directory (which may omit files).

use std::collections::BTreeMap;
use std::path::Path;

use super::{CatalogError, ValidationError, FILES, VERSION_FILE};

/// The shipped catalog, file name → content.
const BUILTIN: [(&str, &str); 9] = [
    (
        "instances.csv",
        include_str!("../../../../catalog/instances.csv"),
    ),
    ("prices.csv", include_str!("../../../../catalog/prices.csv")),
    (
        "accelerators.csv",
        include_str!("../../../../catalog/accelerators.csv"),
    ),
    ("onprem.csv", include_str!("../../../../catalog/onprem.csv")),
    (
        "grid_carbon.csv",
        include_str!("../../../../catalog/grid_carbon.csv"),
    ),
    ("pue.csv", include_str!("../../../../catalog/pue.csv")),
    (
        "electricity_prices.csv",
        include_str!("../../../../catalog/electricity_prices.csv"),
    ),
    (
        "api_prices.csv",
        include_str!("../../../../catalog/api_prices.csv"),
    ),
    ("VERSION", include_str!("../../../../catalog/VERSION")),
];

/// The raw text of one layer (built-in, directory or overlay).
#[derive(Debug, Clone)]
pub(super) struct Layer {
    /// Prefix for file names in messages (directory path or `catalog`).
    pub(super) label: String,
    /// File name → content (missing = absent).
    pub(super) files: BTreeMap<String, String>,
    /// Whether the layer is an overlay (which may omit files).
    pub(super) overlay: bool,
}

impl Layer {
    pub(super) fn builtin() -> Layer {
        Layer {
            label: "catalog".into(),
            files: BUILTIN
                .iter()
                .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
                .collect(),
            overlay: false,
        }
    }

    pub(super) fn read_dir(dir: &Path, overlay: bool) -> Result<Layer, CatalogError> {
        if !dir.is_dir() {
            return Err(CatalogError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a catalog directory",
                ),
            });
        }
        let mut files = BTreeMap::new();
        for name in FILES.iter().chain(std::iter::once(&VERSION_FILE)) {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes).map_err(|e| {
                        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                        CatalogError::Invalid(vec![ValidationError {
                            file: p.display().to_string(),
                            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
                            column: None,
                            key: None,
                            message: format!(
                                "not UTF-8 (byte {} of the line); save the file as UTF-8",
                                valid.len()
                                    - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
                                    + 1
                            ),
                        }])
                    })?;
                    files.insert((*name).to_string(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CatalogError::Io { path: p, source }),
            }
        }
        Ok(Layer {
            label: dir.display().to_string(),
            files,
            overlay,
        })
    }

    pub(super) fn path(&self, file: &str) -> String {
        format!("{}/{file}", self.label.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::fixtures::only;
    use crate::catalog::{Catalog, CatalogError, LoadOptions};

    #[test]
    fn a_file_that_is_not_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pue.csv"), b"preset,pue\nx,1\xff\n").unwrap();
        match Catalog::load(None, Some(dir.path()), &LoadOptions::default()) {
            Err(CatalogError::Invalid(e)) => {
                let e = only(&e);
                assert!(e.file.ends_with("pue.csv"), "{e}");
                assert_eq!(e.line, 2);
                assert!(e.message.contains("not UTF-8 (byte 4 of the line)"), "{e}");
            }
            other => panic!("expected a located error, got {other:?}"),
        }
    }
}
