//! Bytes given as `requests.parquet` / `power.parquet` → a frame (read like
//! `schema::read_parquet` does) and the loaders' checks, or an error; never a panic. The manifest
//! is a mock run's, so rows of the seeds match its cells.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use polars::prelude::{ParquetReader, SerReader};
use tcobench_results::load::{power_from_frame, requests_from_frame};
use tcobench_results::io::catch_polars_panic;
use tcobench_results::schema::Manifest;

fuzz_target!(|data: &[u8]| {
    // polars panics on some corrupt files; the loaders read through this guard.
    let read = catch_polars_panic(|| ParquetReader::new(Cursor::new(data)).finish());
    let Ok(df) = read else {
        return;
    };
    let manifest: Manifest =
        serde_json::from_str(include_str!("manifest.json")).expect("the fixed manifest parses");
    let path = Path::new("requests.parquet");
    if let Ok(loaded) = requests_from_frame(&df, path, &manifest) {
        assert_eq!(loaded.n_rows, df.height());
    }
    let _ = power_from_frame(&df, Path::new("power.parquet"));
});
