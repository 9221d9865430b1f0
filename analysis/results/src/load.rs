//! Loading a run directory's Parquet files with polars into per-cell metric vectors.
//!
//! Only rows with `warmup = false` and `status = "ok"` contribute values (the filter is a polars
//! boolean mask); warm-up and failed rows are counted per cell so the report can say how many were
//! excluded. Null metric values are skipped and counted; non-finite values (NaN, ±∞) are skipped,
//! counted and reported, never averaged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use polars::prelude::*;

use crate::io;
use crate::schema::{Manifest, PowerSample, SchemaError};
use crate::Metric;

/// Values of every metric for one cell, from its timed, successful requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellSamples {
    /// Cell id.
    pub cell_id: String,
    /// Rows used (non-warm-up, `status = "ok"`).
    pub n_used: usize,
    /// Warm-up rows excluded.
    pub n_warmup: usize,
    /// Timed rows excluded because `status != "ok"`.
    pub n_error: usize,
    /// Finite, non-null values per metric, in file order.
    pub values: BTreeMap<Metric, Vec<f64>>,
    /// Null values per metric among the used rows.
    pub nulls: BTreeMap<Metric, usize>,
    /// Non-finite (NaN/±∞) values per metric among the used rows; excluded from `values`.
    pub non_finite: BTreeMap<Metric, usize>,
    /// Distinct `energy_method` values among the used rows.
    pub energy_methods: BTreeSet<String>,
}

impl CellSamples {
    /// Values of `metric` (empty when none).
    pub fn metric(&self, metric: Metric) -> &[f64] {
        self.values.get(&metric).map_or(&[], Vec::as_slice)
    }
}

/// The contents of `requests.parquet`, grouped per cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedRequests {
    /// One entry per manifest cell, in manifest order (cells without rows have `n_used = 0`).
    pub cells: Vec<CellSamples>,
    /// Cell ids found in the file but absent from the manifest (their rows are ignored).
    pub unknown_cell_ids: Vec<String>,
    /// Rows in the file.
    pub n_rows: usize,
}

fn column_err(path: &Path, column: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Column {
        path: path.display().to_string(),
        column: column.to_string(),
        message: message.into(),
    }
}

fn polars_err(path: &Path) -> impl Fn(PolarsError) -> SchemaError + '_ {
    move |source| SchemaError::Polars {
        path: path.display().to_string(),
        source,
    }
}

fn get<'a>(df: &'a DataFrame, path: &Path, name: &str) -> Result<&'a Column, SchemaError> {
    df.column(name)
        .map_err(|_| column_err(path, name, "missing column"))
}

fn wrong_type(path: &Path, name: &str, expected: &str, found: &DataType) -> SchemaError {
    column_err(path, name, format!("expected {expected}, found {found}"))
}

/// A nullable float column (Float64 or Float32; an all-null `Null` column is accepted).
fn opt_f64(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<Option<f64>>, SchemaError> {
    let c = get(df, path, name)?;
    match c.dtype() {
        DataType::Float64 => Ok(c.f64().map_err(polars_err(path))?.iter().collect()),
        DataType::Float32 => Ok(c
            .f32()
            .map_err(polars_err(path))?
            .iter()
            .map(|v| v.map(f64::from))
            .collect()),
        DataType::Null => Ok(vec![None; c.len()]),
        other => Err(wrong_type(path, name, "Float64", other)),
    }
}

/// A nullable unsigned integer column (any integer type; negative values are rejected).
fn opt_u64(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<Option<u64>>, SchemaError> {
    let c = get(df, path, name)?;
    let dtype = c.dtype().clone();
    if dtype == DataType::Null {
        return Ok(vec![None; c.len()]);
    }
    if !dtype.is_integer() {
        return Err(wrong_type(path, name, "an unsigned integer", &dtype));
    }
    let nulls_before = c.null_count();
    let cast = c.cast(&DataType::UInt64).map_err(polars_err(path))?;
    if cast.null_count() != nulls_before {
        return Err(column_err(path, name, "negative values"));
    }
    Ok(cast.u64().map_err(polars_err(path))?.iter().collect())
}

/// A non-null unsigned integer column.
fn req_u64(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<u64>, SchemaError> {
    no_nulls(path, name, opt_u64(df, path, name)?)
}

/// A nullable string column.
fn opt_str(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<Option<String>>, SchemaError> {
    let c = get(df, path, name)?;
    match c.dtype() {
        DataType::String => Ok(c
            .str()
            .map_err(polars_err(path))?
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()),
        DataType::Null => Ok(vec![None; c.len()]),
        other => Err(wrong_type(path, name, "String", other)),
    }
}

/// A non-null string column.
fn req_str(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<String>, SchemaError> {
    no_nulls(path, name, opt_str(df, path, name)?)
}

/// A non-null boolean column.
fn req_bool(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<bool>, SchemaError> {
    let c = get(df, path, name)?;
    match c.dtype() {
        DataType::Boolean => {
            let v: Vec<Option<bool>> = c.bool().map_err(polars_err(path))?.iter().collect();
            no_nulls(path, name, v)
        }
        other => Err(wrong_type(path, name, "Boolean", other)),
    }
}

fn no_nulls<T>(path: &Path, name: &str, v: Vec<Option<T>>) -> Result<Vec<T>, SchemaError> {
    let nulls = v.iter().filter(|x| x.is_none()).count();
    if nulls > 0 {
        return Err(column_err(
            path,
            name,
            format!("{nulls} null value(s) in a non-nullable column"),
        ));
    }
    Ok(v.into_iter().flatten().collect())
}

/// Reads `requests.parquet` at `path` and groups the usable rows per cell of `manifest`.
///
/// Errors: the file cannot be read, or a column is missing, has the wrong type, or holds nulls
/// where the schema forbids them ([`SchemaError::Column`], naming file and column).
pub fn load_requests(path: &Path, manifest: &Manifest) -> Result<LoadedRequests, SchemaError> {
    let df = io::read_parquet(path)?;
    requests_from_frame(&df, path, manifest)
}

/// Like [`load_requests`], from a frame already in memory (`path` is used in error messages).
pub fn requests_from_frame(
    df: &DataFrame,
    path: &Path,
    manifest: &Manifest,
) -> Result<LoadedRequests, SchemaError> {
    // Validate every column the analysis reads before using any of them.
    let all_cell_ids = req_str(df, path, "cell_id")?;
    let warmup = req_bool(df, path, "warmup")?;
    let status = req_str(df, path, "status")?;
    for name in [
        "batch_size",
        "new_tokens",
        "ttft_ms",
        "e2e_ms",
        "tpot_ms",
        "tokens_per_s",
        "energy_j",
        "energy_method",
    ] {
        get(df, path, name)?;
    }

    let index: HashMap<&str, usize> = manifest
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cell_id.as_str(), i))
        .collect();
    let mut cells: Vec<CellSamples> = manifest
        .cells
        .iter()
        .map(|c| CellSamples {
            cell_id: c.cell_id.clone(),
            ..CellSamples::default()
        })
        .collect();
    let mut unknown = BTreeSet::new();

    // Exclusion counts, from the unfiltered frame.
    for ((id, &w), s) in all_cell_ids.iter().zip(&warmup).zip(&status) {
        match index.get(id.as_str()) {
            Some(&i) if w => cells[i].n_warmup += 1,
            Some(&i) if s != "ok" => cells[i].n_error += 1,
            Some(_) => {}
            None => {
                unknown.insert(id.clone());
            }
        }
    }

    // Timed, successful rows only.
    let warmup_col = get(df, path, "warmup")?.bool().map_err(polars_err(path))?;
    let status_col = get(df, path, "status")?.str().map_err(polars_err(path))?;
    let mask = &!warmup_col & &status_col.equal("ok");
    let used = df.filter(&mask).map_err(polars_err(path))?;

    let cell_ids = req_str(&used, path, "cell_id")?;
    let batch = req_u64(&used, path, "batch_size")?;
    let new_tokens = req_u64(&used, path, "new_tokens")?;
    let energy_method = req_str(&used, path, "energy_method")?;
    let energy = opt_f64(&used, path, "energy_j")?;
    let per_token: Vec<Option<f64>> = energy
        .iter()
        .zip(batch.iter().zip(&new_tokens))
        .map(|(e, (&b, &n))| {
            let tokens = b.saturating_mul(n);
            e.filter(|_| tokens > 0).map(|e| e / tokens as f64)
        })
        .collect();
    let mut columns: Vec<(Metric, Vec<Option<f64>>)> = Vec::new();
    for metric in Metric::ALL {
        let values = match metric {
            Metric::EnergyJPerToken => per_token.clone(),
            m => opt_f64(&used, path, m.name())?,
        };
        columns.push((metric, values));
    }

    for (row, id) in cell_ids.iter().enumerate() {
        let Some(&i) = index.get(id.as_str()) else {
            continue;
        };
        let cell = &mut cells[i];
        cell.n_used += 1;
        cell.energy_methods.insert(energy_method[row].clone());
        for (metric, values) in &columns {
            match values[row] {
                None => *cell.nulls.entry(*metric).or_default() += 1,
                Some(v) if !v.is_finite() => *cell.non_finite.entry(*metric).or_default() += 1,
                Some(v) => cell.values.entry(*metric).or_default().push(v),
            }
        }
    }

    Ok(LoadedRequests {
        cells,
        unknown_cell_ids: unknown.into_iter().collect(),
        n_rows: df.height(),
    })
}

/// Reads `power.parquet` into samples, in file order. A missing file or a file with zero rows
/// gives an empty vector (runs without a power sampler).
pub fn load_power(path: &Path) -> Result<Vec<PowerSample>, SchemaError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let df = io::read_parquet(path)?;
    power_from_frame(&df, path)
}

/// Like [`load_power`], from a frame already in memory (`path` is used in error messages).
pub fn power_from_frame(df: &DataFrame, path: &Path) -> Result<Vec<PowerSample>, SchemaError> {
    let t_ms = no_nulls(path, "t_ms", opt_f64(df, path, "t_ms")?)?;
    let source = req_str(df, path, "source")?;
    let device = req_str(df, path, "device")?;
    let cell_id = opt_str(df, path, "cell_id")?;
    let watts = opt_f64(df, path, "watts")?;
    let energy = opt_f64(df, path, "energy_j_cum")?;
    let temp = opt_f64(df, path, "temp_c")?;
    let clock = opt_f64(df, path, "sm_clock_mhz")?;
    let throttle = opt_u64(df, path, "throttle_reasons")?;
    Ok((0..df.height())
        .map(|i| PowerSample {
            t_ms: t_ms[i],
            source: source[i].clone(),
            device: device[i].clone(),
            cell_id: cell_id[i].clone(),
            watts: watts[i],
            energy_j_cum: energy[i],
            temp_c: temp[i],
            sm_clock_mhz: clock[i],
            throttle_reasons: throttle[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{manifest, request};

    fn tmp_parquet(df: &mut DataFrame) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.parquet");
        io::write_parquet(df, &path).unwrap();
        (dir, path)
    }

    #[test]
    fn filters_warmup_and_errors_and_groups_in_manifest_order() {
        let m = manifest("run", "scn", "model");
        let mut rows = Vec::new();
        // cell b first in the file, a second: output must follow the manifest (a, b, c).
        for rep in 0..3 {
            rows.push(request(&m.cells[1], rep, false, Some(100.0 + rep as f64)));
        }
        rows.push(request(&m.cells[0], 0, true, Some(1.0e6)));
        for rep in 0..4 {
            rows.push(request(&m.cells[0], rep, false, Some(10.0 + rep as f64)));
        }
        let mut err = request(&m.cells[0], 4, false, None);
        err.status = "error".into();
        err.error = Some("boom".into());
        rows.push(err);
        let mut orphan = request(&m.cells[0], 0, false, Some(1.0));
        orphan.cell_id = "not-in-manifest".into();
        rows.push(orphan);

        let mut df = io::requests_frame(&rows).unwrap();
        let (_d, path) = tmp_parquet(&mut df);
        let loaded = load_requests(&path, &m).unwrap();
        assert_eq!(loaded.n_rows, rows.len());
        assert_eq!(loaded.unknown_cell_ids, vec!["not-in-manifest".to_string()]);
        let ids: Vec<_> = loaded.cells.iter().map(|c| c.cell_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                m.cells[0].cell_id.as_str(),
                &m.cells[1].cell_id,
                &m.cells[2].cell_id
            ]
        );
        let a = &loaded.cells[0];
        assert_eq!((a.n_used, a.n_warmup, a.n_error), (4, 1, 1));
        assert_eq!(a.metric(Metric::E2eMs), [10.0, 11.0, 12.0, 13.0]);
        // energy_j = 2·e2e in the fixture; batch 2 × 8 new tokens = 16 tokens.
        assert_eq!(a.metric(Metric::EnergyJPerToken)[0], 20.0 / 16.0);
        assert_eq!(loaded.cells[1].n_used, 3);
        assert_eq!(loaded.cells[2].n_used, 0);
        assert!(loaded.cells[2].values.is_empty());
    }

    #[test]
    fn nulls_and_non_finite_are_counted_not_used() {
        let m = manifest("run", "scn", "model");
        let mut rows = vec![
            request(&m.cells[0], 0, false, Some(5.0)),
            request(&m.cells[0], 1, false, Some(f64::NAN)),
            request(&m.cells[0], 2, false, None),
        ];
        rows[0].energy_j = None;
        let mut df = io::requests_frame(&rows).unwrap();
        let (_d, path) = tmp_parquet(&mut df);
        let c = &load_requests(&path, &m).unwrap().cells[0];
        assert_eq!(c.n_used, 3);
        assert_eq!(c.metric(Metric::E2eMs), [5.0]);
        assert_eq!(c.nulls[&Metric::E2eMs], 1);
        assert_eq!(c.non_finite[&Metric::E2eMs], 1);
    }

    #[test]
    fn missing_column_and_wrong_type_name_file_and_column() {
        let m = manifest("run", "scn", "model");
        let rows = vec![request(&m.cells[0], 0, false, Some(5.0))];
        let mut df = io::requests_frame(&rows).unwrap();
        let _ = df.drop_in_place("e2e_ms").unwrap();
        let (_d, path) = tmp_parquet(&mut df);
        match load_requests(&path, &m) {
            Err(SchemaError::Column {
                path: p, column, ..
            }) => {
                assert_eq!(column, "e2e_ms");
                assert!(p.ends_with("requests.parquet"));
            }
            other => panic!("expected a column error, got {other:?}"),
        }

        let mut df = io::requests_frame(&rows).unwrap();
        df.with_column(Column::new("warmup".into(), ["no"]))
            .unwrap();
        let (_d, path) = tmp_parquet(&mut df);
        let err = load_requests(&path, &m).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SchemaError::Column { ref column, .. } if column == "warmup"),
            "{msg}"
        );
        assert!(msg.contains("expected Boolean"), "{msg}");
    }

    #[test]
    fn power_round_trip_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("power.parquet");
        assert!(load_power(&path).unwrap().is_empty());
        let mut df = io::power_frame(&[]).unwrap();
        io::write_parquet(&mut df, &path).unwrap();
        assert!(load_power(&path).unwrap().is_empty());
        let samples = vec![PowerSample {
            t_ms: 1.5,
            source: "mock".into(),
            device: "cpu-package".into(),
            cell_id: None,
            watts: Some(30.0),
            energy_j_cum: Some(1.0),
            temp_c: None,
            sm_clock_mhz: None,
            throttle_reasons: Some(4),
        }];
        let mut df = io::power_frame(&samples).unwrap();
        io::write_parquet(&mut df, &path).unwrap();
        assert_eq!(load_power(&path).unwrap(), samples);
    }
}
