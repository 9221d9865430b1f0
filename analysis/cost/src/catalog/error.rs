//! What loading and lookups report: located validation problems ([`ValidationError`]), load
//! failures ([`CatalogError`]), non-fatal findings ([`CatalogWarning`]) and failed lookups
//! ([`LookupError`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One validation problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// File (path for a directory catalog, `catalog/<name>` for the built-in one).
    pub file: String,
    /// CSV line (header = 1); 0 for file-level problems.
    pub line: usize,
    /// Column concerned, if one.
    pub column: Option<String>,
    /// Row key, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(c) = &self.column {
            write!(f, ": column `{c}`")?;
        }
        if let Some(k) = &self.key {
            write!(f, " [{k}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Errors of catalog loading.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The catalog is invalid; every problem found is listed.
    #[error("invalid pricing catalog ({} problem(s)):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ValidationError>),
}

/// A non-fatal finding (stale rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogWarning {
    /// File.
    pub file: String,
    /// CSV line.
    pub line: usize,
    /// Row key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CatalogWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} [{}]: {}",
            self.file, self.line, self.key, self.message
        )
    }
}

/// Errors of catalog lookups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matches.
    #[error("{what} `{query}` is not in the pricing catalog{hint}")]
    NotFound {
        /// Kind of row.
        what: &'static str,
        /// The query.
        query: String,
        /// Suggestions (", known: …").
        hint: String,
    },
    /// Several rows match; the query must be narrowed.
    #[error("{what} `{query}` is ambiguous: {choices}; narrow it down (e.g. with --{narrow})")]
    Ambiguous {
        /// Kind of row.
        what: &'static str,
        /// The query.
        query: String,
        /// The candidates.
        choices: String,
        /// Which option narrows it.
        narrow: &'static str,
    },
}
