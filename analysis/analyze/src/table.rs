//! Any table in, named groups of one metric out: the reading side of `tcobench stats`.
//!
//! [`read_groups`] reads a CSV/TSV or Parquet file with polars, takes one column as the group
//! key and one as the metric, and returns the groups in order of first appearance, ready for
//! [`tcobench_stats::groups::analyze_groups`]. Every problem with the input is a [`TableError`] naming the
//! file (and, where it helps, the column, the row and the value) — never a silently dropped row.
//!
//! * **Format**: Parquet is recognised by its `PAR1` magic bytes, whatever the file is called;
//!   anything else is read as CSV with a header row (tab-separated for `.tsv` / `.tab`, comma
//!   otherwise).
//! * **Group key**: a string, integer or boolean column. In CSV the key is the text as written
//!   (`1` stays `1`, `true` stays `true`); in Parquet integers are written in decimal and
//!   booleans as `true` / `false`.
//! * **Metric**: a numeric column (integers are converted to `f64`). CSV fields are parsed as
//!   decimal or scientific numbers (surrounding blanks allowed); the first field that is not a
//!   number is reported with its row.
//! * **Rows** are numbered from 1, the header not counted.
//! * Nulls (empty CSV fields) in either column, non-finite metric values and groups with fewer
//!   than two observations are errors.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;

/// Smallest group size [`read_groups`] accepts (a standard deviation needs two values).
pub const MIN_GROUP_SIZE: usize = 2;

/// Why a table could not be turned into groups.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// polars could not parse the file.
    #[error("{}: cannot parse as {format}: {source}", path.display())]
    Parse {
        /// File concerned.
        path: PathBuf,
        /// `CSV` or `Parquet`.
        format: &'static str,
        /// Underlying error.
        source: PolarsError,
    },
    /// The file is named like a Parquet file but does not start with the Parquet magic.
    #[error("{}: not a Parquet file (no PAR1 magic bytes)", path.display())]
    NotParquet {
        /// File concerned.
        path: PathBuf,
    },
    /// The file is empty or has a header but no data rows.
    #[error("{}: no data rows", path.display())]
    Empty {
        /// File concerned.
        path: PathBuf,
    },
    /// A requested column does not exist.
    #[error("{}: no column `{column}` (available: {})", path.display(), list(available))]
    MissingColumn {
        /// File concerned.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// The group column has a type that cannot name groups.
    #[error(
        "{}: group column `{column}` has dtype {dtype}; a string, integer or boolean column is \
         needed",
        path.display()
    )]
    GroupType {
        /// File concerned.
        path: PathBuf,
        /// Group column.
        column: String,
        /// Its polars dtype.
        dtype: String,
    },
    /// The metric column is not numeric.
    #[error(
        "{}: metric column `{column}` is not numeric (dtype {dtype}){}",
        path.display(),
        offending.as_ref().map_or(String::new(), |(row, v)| format!(": row {row} is `{v}`"))
    )]
    NonNumeric {
        /// File concerned.
        path: PathBuf,
        /// Metric column.
        column: String,
        /// Its polars dtype (`str` for CSV text).
        dtype: String,
        /// First value that is not a number, with its row, where the column is text.
        offending: Option<(usize, String)>,
    },
    /// A null (missing) value in the group or metric column.
    #[error("{}: column `{column}` has a missing value at row {row}", path.display())]
    Null {
        /// File concerned.
        path: PathBuf,
        /// Column concerned.
        column: String,
        /// Row (from 1, header not counted).
        row: usize,
    },
    /// A NaN or infinite metric value.
    #[error("{}: column `{column}` has a non-finite value ({value}) at row {row}", path.display())]
    NonFinite {
        /// File concerned.
        path: PathBuf,
        /// Metric column.
        column: String,
        /// Row (from 1, header not counted).
        row: usize,
        /// The value.
        value: f64,
    },
    /// A group has too few observations.
    #[error(
        "{}: group `{group}` of column `{column}` has {n} observation(s); at least {min} are \
         needed",
        path.display(),
        min = MIN_GROUP_SIZE
    )]
    GroupTooSmall {
        /// File concerned.
        path: PathBuf,
        /// Group column.
        column: String,
        /// Group name.
        group: String,
        /// Its size.
        n: usize,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv { separator: u8 },
    Parquet,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv { .. } => "CSV",
            Format::Parquet => "Parquet",
        }
    }
}

/// Reads `path` and returns the values of `metric` grouped by `by`, groups in order of first
/// appearance, values in file order.
///
/// See the [module documentation](self) for the accepted formats and types.
///
/// # Errors
/// A [`TableError`] naming the file for an unreadable, empty or malformed file, a missing column,
/// a group column of the wrong type, a non-numeric metric, a null or non-finite value, or a group
/// with fewer than [`MIN_GROUP_SIZE`] values.
pub fn read_groups(
    path: &Path,
    by: &str,
    metric: &str,
) -> Result<Vec<(String, Vec<f64>)>, TableError> {
    read_groups_with(path, by, metric, Rows::All).map(|(g, _)| g)
}

/// Named groups of values, in order of first appearance.
pub type Groups = Vec<(String, Vec<f64>)>;

/// Which rows of a tcobench requests file [`read_groups_with`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every row.
    All,
    /// In a tcobench requests file (`requests.parquet`: `cell_id`, a boolean `warmup` and a
    /// `status` column), the timed, successful requests only — what the run's statistics use;
    /// any other file is read whole.
    Timed,
}

/// The rows a tcobench requests file had that [`Rows::Timed`] left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Excluded {
    /// Warm-up requests.
    pub warmup: usize,
    /// Timed requests whose `status` is not `ok`.
    pub failed: usize,
}

/// [`read_groups`] with a choice of rows; also returns what [`Rows::Timed`] left out of a
/// tcobench requests file (`None` when the file is not one, or every row was read).
///
/// # Errors
/// As [`read_groups`].
pub fn read_groups_with(
    path: &Path,
    by: &str,
    metric: &str,
    rows: Rows,
) -> Result<(Groups, Option<Excluded>), TableError> {
    let format = sniff(path)?;
    let (df, excluded) = match format {
        Format::Parquet => read_parquet(path, by, metric, rows)?,
        Format::Csv { separator } => (read_csv(path, separator, by, metric)?, None),
    };
    if df.height() == 0 {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
        });
    }
    let parse = |source| TableError::Parse {
        path: path.to_path_buf(),
        format: format.name(),
        source,
    };
    let key_col = df.column(by).map_err(parse)?;
    let metric_col = df.column(metric).map_err(parse)?;
    let (index, names) = group_index(path, format, key_col)?;
    let values = metric_values(path, format, metric_col)?;

    let mut groups: Vec<(String, Vec<f64>)> = names.into_iter().map(|n| (n, Vec::new())).collect();
    for (row, (&g, &v)) in index.iter().zip(&values).enumerate() {
        if !v.is_finite() {
            return Err(TableError::NonFinite {
                path: path.to_path_buf(),
                column: metric.to_string(),
                row: row + 1,
                value: v,
            });
        }
        groups[g as usize].1.push(v);
    }
    if let Some((group, xs)) = groups.iter().find(|(_, xs)| xs.len() < MIN_GROUP_SIZE) {
        return Err(TableError::GroupTooSmall {
            path: path.to_path_buf(),
            column: by.to_string(),
            group: group.clone(),
            n: xs.len(),
        });
    }
    Ok((groups, excluded))
}

/// Decides the format from the first bytes (Parquet magic) and the extension.
fn sniff(path: &Path) -> Result<Format, TableError> {
    let io = |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }
    let mut magic = [0_u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    if got == 0 {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
        });
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if got == 4 && &magic == b"PAR1" {
        Ok(Format::Parquet)
    } else if matches!(ext.as_str(), "parquet" | "pq") {
        Err(TableError::NotParquet {
            path: path.to_path_buf(),
        })
    } else if matches!(ext.as_str(), "tsv" | "tab") {
        Ok(Format::Csv { separator: b'\t' })
    } else {
        Ok(Format::Csv { separator: b',' })
    }
}

fn missing(path: &Path, column: &str, available: Vec<String>) -> TableError {
    TableError::MissingColumn {
        path: path.to_path_buf(),
        column: column.to_string(),
        available,
    }
}

/// The two columns `by` and `metric` (once if they are the same column).
fn projection(by: &str, metric: &str) -> Vec<String> {
    if by == metric {
        vec![by.to_string()]
    } else {
        vec![by.to_string(), metric.to_string()]
    }
}

fn read_parquet(
    path: &Path,
    by: &str,
    metric: &str,
    rows: Rows,
) -> Result<(DataFrame, Option<Excluded>), TableError> {
    let parse = |source| TableError::Parse {
        path: path.to_path_buf(),
        format: "Parquet",
        source,
    };
    let bytes = tcobench_results::io::read_checked(path).map_err(|e| match e {
        tcobench_results::schema::SchemaError::Io { source, .. } => TableError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => TableError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        },
    })?;
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
    let schema = tcobench_results::io::catch_polars_panic(|| reader.schema()).map_err(parse)?;
    for column in [by, metric] {
        if !schema.contains(column) {
            let available = schema.iter_names().map(|n| n.to_string()).collect();
            return Err(missing(path, column, available));
        }
    }
    let requests_file = ["cell_id", "status", "warmup"]
        .iter()
        .all(|c| schema.contains(c));
    let filter = rows == Rows::Timed && requests_file;
    let mut columns = projection(by, metric);
    if filter {
        for c in ["warmup", "status"] {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_string());
            }
        }
    }
    let df =
        tcobench_results::io::catch_polars_panic(|| reader.with_columns(Some(columns)).finish())
            .map_err(parse)?;
    if !filter {
        return Ok((df, None));
    }
    // Columns of those names but other types: not a requests file of ours, read whole.
    let (Ok(warmup), Ok(status)) = (
        df.column("warmup").and_then(|c| c.bool().cloned()),
        df.column("status").and_then(|c| c.str().cloned()),
    ) else {
        return Ok((df, None));
    };
    let mut excluded = Excluded::default();
    for (w, s) in warmup.iter().zip(status.iter()) {
        if w != Some(false) {
            excluded.warmup += 1;
        } else if s != Some("ok") {
            excluded.failed += 1;
        }
    }
    let mask = &!&warmup & &status.equal("ok");
    let df = df.filter(&mask).map_err(parse)?;
    Ok((df, Some(excluded)))
}

fn csv_options(separator: u8) -> CsvReadOptions {
    // Every column as text: group keys keep their spelling and metric fields are parsed here,
    // so that a bad field can be reported with its row.
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .map_parse_options(move |o| o.with_separator(separator))
}

fn read_csv(path: &Path, separator: u8, by: &str, metric: &str) -> Result<DataFrame, TableError> {
    let parse = |source| TableError::Parse {
        path: path.to_path_buf(),
        format: "CSV",
        source,
    };
    let columns: Arc<[PlSmallStr]> = projection(by, metric)
        .into_iter()
        .map(PlSmallStr::from)
        .collect();
    let read = tcobench_results::io::catch_polars_panic(|| {
        csv_options(separator)
            .with_columns(Some(columns))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
    });
    match read {
        Ok(df) => Ok(df),
        Err(PolarsError::NoData(_)) => Err(TableError::Empty {
            path: path.to_path_buf(),
        }),
        Err(PolarsError::ColumnNotFound(_)) => {
            // Read the header alone to list what is there.
            let header = csv_options(separator)
                .with_n_rows(Some(0))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(parse)?;
            let available: Vec<String> = header
                .get_column_names()
                .into_iter()
                .map(|n| n.to_string())
                .collect();
            let column = [by, metric]
                .into_iter()
                .find(|c| !available.iter().any(|a| a == c))
                .unwrap_or(by);
            Err(missing(path, column, available))
        }
        Err(e) => Err(parse(e)),
    }
}

/// Group index (into the returned names) of every row, names in order of first appearance.
fn index_by<K, I, F>(
    keys: I,
    name: F,
    null: impl Fn(usize) -> TableError,
) -> Result<(Vec<u32>, Vec<String>), TableError>
where
    K: Hash + Eq + Copy,
    I: Iterator<Item = Option<K>>,
    F: Fn(K) -> String,
{
    let mut seen: HashMap<K, u32> = HashMap::new();
    let mut names = Vec::new();
    let mut index = Vec::with_capacity(keys.size_hint().0);
    for (row, key) in keys.enumerate() {
        let key = key.ok_or_else(|| null(row + 1))?;
        let g = *seen.entry(key).or_insert_with(|| {
            names.push(name(key));
            (names.len() - 1) as u32
        });
        index.push(g);
    }
    Ok((index, names))
}

fn group_index(
    path: &Path,
    format: Format,
    col: &Column,
) -> Result<(Vec<u32>, Vec<String>), TableError> {
    let column = col.name().to_string();
    let null = |row| TableError::Null {
        path: path.to_path_buf(),
        column: column.clone(),
        row,
    };
    let parse = |source| TableError::Parse {
        path: path.to_path_buf(),
        format: format.name(),
        source,
    };
    let dtype = col.dtype();
    match dtype {
        DataType::String => index_by(col.str().map_err(parse)?.iter(), str::to_string, null),
        DataType::Boolean => index_by(col.bool().map_err(parse)?.iter(), |b| b.to_string(), null),
        DataType::Null => Err(null(1)),
        d if d.is_unsigned_integer() => {
            let c = col.cast(&DataType::UInt64).map_err(parse)?;
            index_by(c.u64().map_err(parse)?.iter(), |v| v.to_string(), null)
        }
        d if d.is_integer() => {
            let c = col.cast(&DataType::Int64).map_err(parse)?;
            index_by(c.i64().map_err(parse)?.iter(), |v| v.to_string(), null)
        }
        other => Err(TableError::GroupType {
            path: path.to_path_buf(),
            column,
            dtype: other.to_string(),
        }),
    }
}

/// The metric as `f64`, row by row (nulls are errors; finiteness is checked by the caller).
fn metric_values(path: &Path, format: Format, col: &Column) -> Result<Vec<f64>, TableError> {
    let column = col.name().to_string();
    let null = |row| TableError::Null {
        path: path.to_path_buf(),
        column: column.clone(),
        row,
    };
    let parse = |source| TableError::Parse {
        path: path.to_path_buf(),
        format: format.name(),
        source,
    };
    let dtype = col.dtype().clone();
    if dtype == DataType::Null {
        return Err(null(1));
    }
    if dtype == DataType::String && matches!(format, Format::Csv { .. }) {
        let ca = col.str().map_err(parse)?;
        let mut out = Vec::with_capacity(ca.len());
        for (row, v) in ca.iter().enumerate() {
            let s = v.ok_or_else(|| null(row + 1))?;
            let x = s
                .trim()
                .parse::<f64>()
                .map_err(|_| TableError::NonNumeric {
                    path: path.to_path_buf(),
                    column: column.clone(),
                    dtype: dtype.to_string(),
                    offending: Some((row + 1, s.to_string())),
                })?;
            out.push(x);
        }
        return Ok(out);
    }
    if !dtype.is_primitive_numeric() {
        return Err(TableError::NonNumeric {
            path: path.to_path_buf(),
            column,
            dtype: dtype.to_string(),
            offending: None,
        });
    }
    let cast = col.cast(&DataType::Float64).map_err(parse)?;
    let ca = cast.f64().map_err(parse)?;
    if ca.null_count() == 0 {
        let mut out = Vec::with_capacity(ca.len());
        for chunk in ca.downcast_iter() {
            out.extend_from_slice(chunk.values());
        }
        return Ok(out);
    }
    ca.iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| null(row + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn parquet(dir: &Path, name: &str, columns: Vec<Column>) -> PathBuf {
        let p = dir.join(name);
        let height = columns[0].len();
        let mut df = DataFrame::new(height, columns).unwrap();
        let file = std::fs::File::create(&p).unwrap();
        ParquetWriter::new(file).finish(&mut df).unwrap();
        p
    }

    fn names(groups: &[(String, Vec<f64>)]) -> Vec<&str> {
        groups.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn csv_groups_in_first_appearance_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.csv",
            "other,g,x\nq,b,1\nq,a,2.5\nq,b,3e0\nq,c, 4 \nq,a,5\nq,c,-6\n",
        );
        let g = read_groups(&p, "g", "x").unwrap();
        assert_eq!(names(&g), vec!["b", "a", "c"]);
        assert_eq!(g[0].1, vec![1.0, 3.0]);
        assert_eq!(g[1].1, vec![2.5, 5.0]);
        assert_eq!(g[2].1, vec![4.0, -6.0]);
    }

    #[test]
    fn tsv_and_integer_keys_keep_their_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.tsv", "g\tx\n2\t1\n1\t2\n2\t3\n1\t4\n");
        let g = read_groups(&p, "g", "x").unwrap();
        assert_eq!(names(&g), vec!["2", "1"]);
        assert_eq!(g[0].1, vec![1.0, 3.0]);
    }

    #[test]
    fn parquet_is_sniffed_and_typed_keys_are_formatted() {
        let dir = tempfile::tempdir().unwrap();
        let cols = || {
            vec![
                Column::new("k".into(), [3_i64, 1, 3, 1]),
                Column::new("u".into(), [7_u32, 7, 9, 9]),
                Column::new("b".into(), [true, false, false, true]),
                Column::new("x".into(), [1_i32, 2, 3, 4]),
                Column::new("y".into(), [0.5_f32, 1.5, 2.5, 3.5]),
            ]
        };
        // No extension: the magic bytes decide.
        for name in ["t.parquet", "t.data"] {
            let p = parquet(dir.path(), name, cols());
            let g = read_groups(&p, "k", "x").unwrap();
            assert_eq!(names(&g), vec!["3", "1"]);
            assert_eq!(g[0].1, vec![1.0, 3.0]);
            let g = read_groups(&p, "u", "y").unwrap();
            assert_eq!(names(&g), vec!["7", "9"]);
            assert_eq!(g[1].1, vec![2.5, 3.5]);
            let g = read_groups(&p, "b", "x").unwrap();
            assert_eq!(names(&g), vec!["true", "false"]);
            assert_eq!(g[0].1, vec![1.0, 4.0]);
        }
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.csv");
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::Io { .. }), "{e}");
        assert!(e.to_string().contains("nope.csv"), "{e}");

        for (name, text) in [("empty.csv", ""), ("header.csv", "g,x\n")] {
            let p = write(dir.path(), name, text);
            let e = read_groups(&p, "g", "x").unwrap_err();
            assert!(matches!(e, TableError::Empty { .. }), "{name}: {e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        let p = write(dir.path(), "fake.parquet", "g,x\na,1\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::NotParquet { .. }), "{e}");
        let p = parquet(
            dir.path(),
            "none.parquet",
            vec![
                Column::new("g".into(), Vec::<String>::new()),
                Column::new("x".into(), Vec::<f64>::new()),
            ],
        );
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::Empty { .. }), "{e}");
    }

    #[test]
    fn missing_columns_list_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.csv", "g,x\na,1\na,2\n");
        let e = read_groups(&p, "g", "latency").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TableError::MissingColumn { .. }), "{msg}");
        assert!(
            msg.contains("`latency`") && msg.contains("`g`, `x`") && msg.contains("t.csv"),
            "{msg}"
        );
        let e = read_groups(&p, "group", "x").unwrap_err();
        assert!(e.to_string().contains("`group`"), "{e}");

        let p = parquet(
            dir.path(),
            "t.parquet",
            vec![
                Column::new("g".into(), ["a", "a"]),
                Column::new("x".into(), [1.0, 2.0]),
            ],
        );
        let e = read_groups(&p, "g", "y").unwrap_err();
        assert!(
            e.to_string()
                .contains("no column `y` (available: `g`, `x`)"),
            "{e}"
        );
    }

    #[test]
    fn non_numeric_metric_names_row_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.csv", "g,x\na,1\na,2\nb,fast\nb,4\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("row 3 is `fast`") && msg.contains("dtype str"),
            "{msg}"
        );

        let p = parquet(
            dir.path(),
            "t.parquet",
            vec![
                Column::new("g".into(), ["a", "a"]),
                Column::new("x".into(), ["1", "2"]),
                Column::new("f".into(), [1.5, 2.5]),
            ],
        );
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::NonNumeric { .. }), "{e}");
        assert!(e.to_string().contains("dtype str"), "{e}");
        let e = read_groups(&p, "f", "f").unwrap_err();
        assert!(matches!(e, TableError::GroupType { .. }), "{e}");
        assert!(e.to_string().contains("f64"), "{e}");
    }

    #[test]
    fn nulls_non_finite_and_small_groups_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.csv", "g,x\na,1\na,\nb,3\nb,4\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::Null { row: 2, .. }), "{e}");
        assert!(e.to_string().contains("row 2"), "{e}");

        let p = write(dir.path(), "t2.csv", "g,x\na,1\n,2\nb,3\nb,4\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(
            matches!(e, TableError::Null { row: 2, ref column, .. } if column == "g"),
            "{e}"
        );

        let p = write(dir.path(), "t3.csv", "g,x\na,1\na,inf\nb,3\nb,4\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::NonFinite { row: 2, .. }), "{e}");

        let p = write(dir.path(), "t4.csv", "g,x\na,1\na,2\nlonely,3\nb,4\nb,5\n");
        let e = read_groups(&p, "g", "x").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TableError::GroupTooSmall { n: 1, .. }), "{msg}");
        assert!(msg.contains("`lonely`") && msg.contains("t4.csv"), "{msg}");

        let p = parquet(
            dir.path(),
            "t.parquet",
            vec![
                Column::new("g".into(), ["a", "a", "b", "b"]),
                Column::new("x".into(), [Some(1.0), Some(2.0), None, Some(4.0)]),
            ],
        );
        let e = read_groups(&p, "g", "x").unwrap_err();
        assert!(matches!(e, TableError::Null { row: 3, .. }), "{e}");
    }
}
