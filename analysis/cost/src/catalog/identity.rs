//! What names a loaded catalog and the figures taken from it: its [`CatalogIdentity`] (the
//! `VERSION` file, the content hash of every layer, the sources) and the [`CatalogRef`] of a row.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::Layer;
use super::{Catalog, Date, RowOrigin, ValidationError, FILES, VERSION_FILE};

/// Identity of a loaded catalog, for manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogIdentity {
    /// Version (`VERSION` line 1), with `+overlay` when an overlay was applied.
    pub version: String,
    /// Release date (`VERSION` line 2).
    pub date: Option<Date>,
    /// SHA-256 (hex) of every file of every layer (name, NUL, content, in [`FILES`] order, base
    /// then overlay).
    pub sha256: String,
    /// Where the catalog came from: `builtin`, or directory paths (base, then overlay).
    pub sources: Vec<String>,
}

/// Provenance of a computed figure: the catalog row and catalog it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRef {
    /// File of the row (`prices.csv`, …).
    pub file: String,
    /// Row key.
    pub key: String,
    /// Whether the row came from the overlay.
    pub overlay: bool,
    /// Catalog version.
    pub catalog_version: String,
    /// Catalog content hash.
    pub catalog_sha256: String,
    /// The row's `retrieved` date.
    pub retrieved: Date,
    /// The row's source.
    pub source: String,
}

/// The version (line 1) and release date (line 2) of a layer's `VERSION` file.
pub(super) fn version_of(
    layer: &Layer,
    errors: &mut Vec<ValidationError>,
) -> (String, Option<Date>) {
    let Some(text) = layer.files.get(VERSION_FILE) else {
        if !layer.overlay {
            errors.push(ValidationError {
                file: layer.path(VERSION_FILE),
                line: 0,
                column: None,
                key: None,
                message: "file is missing (line 1: version, line 2: YYYY-MM-DD date)".into(),
            });
        }
        return (String::new(), None);
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let version = lines.next().unwrap_or("").to_string();
    if version.is_empty() {
        errors.push(ValidationError {
            file: layer.path(VERSION_FILE),
            line: 1,
            column: None,
            key: None,
            message: "empty version".into(),
        });
    }
    let date = lines.next().and_then(Date::parse);
    (version, date)
}

/// SHA-256 (hex) of every file of `layers`, as [`CatalogIdentity::sha256`] describes.
pub(super) fn hash_layers(layers: &[&Layer]) -> String {
    let mut h = Sha256::new();
    for layer in layers {
        for name in std::iter::once(&VERSION_FILE).chain(FILES.iter()) {
            if let Some(text) = layer.files.get(*name) {
                if layer.overlay {
                    h.update(b"overlay/");
                }
                h.update(name.as_bytes());
                h.update([0u8]);
                h.update(text.as_bytes());
                h.update([0u8]);
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// A [`CatalogRef`] for a row of this catalog.
    pub fn reference(
        &self,
        origin: &RowOrigin,
        key: String,
        retrieved: Date,
        source: &str,
    ) -> CatalogRef {
        CatalogRef {
            file: Path::new(&origin.file)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| origin.file.clone()),
            key,
            overlay: origin.overlay,
            catalog_version: self.identity.version.clone(),
            catalog_sha256: self.identity.sha256.clone(),
            retrieved,
            source: source.to_string(),
        }
    }
}
