//! Reading and writing the files of a run folder: polars frames of the records, Parquet with a
//! SHA-256 beside every file (checked before a reader sees the bytes), the manifest with a
//! located error, and atomic writes (temporary name, fsync, rename) for everything else.

use std::io::Write;
use std::path::Path;

use polars::prelude::*;

use crate::schema::{files, Manifest, PowerSample, RequestRecord, SchemaError};

/// Builds the `requests.parquet` frame from records.
pub fn requests_frame(rows: &[RequestRecord]) -> PolarsResult<DataFrame> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    DataFrame::new(
        rows.len(),
        vec![
            col!("run_id", |r| r.run_id.clone()),
            col!("cell_id", |r| r.cell_id.clone()),
            col!("backend", |r| r.config.backend.clone()),
            col!("model", |r| r.config.model.clone()),
            col!("device", |r| r.config.device.clone()),
            col!("dtype", |r| r.config.dtype.clone()),
            col!("batch_size", |r| r.config.batch_size),
            col!("prompt_tokens", |r| r.config.prompt_tokens),
            col!("new_tokens", |r| r.config.new_tokens),
            col!("rep", |r| r.rep),
            col!("warmup", |r| r.warmup),
            col!("ttft_ms", |r| r.ttft_ms),
            col!("e2e_ms", |r| r.e2e_ms),
            col!("tpot_ms", |r| r.tpot_ms),
            col!("tokens_per_s", |r| r.tokens_per_s),
            col!("energy_j", |r| r.energy_j),
            col!("energy_method", |r| r.energy_method.clone()),
            col!("energy_valid", |r| r.energy_valid),
            col!("input_hash", |r| r.input_hash.clone()),
            col!("output_hash", |r| r.output_hash.clone()),
            col!("status", |r| r.status.clone()),
            col!("error", |r| r.error.clone()),
        ],
    )
}

/// Builds the `power.parquet` frame from samples.
pub fn power_frame(rows: &[PowerSample]) -> PolarsResult<DataFrame> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    DataFrame::new(
        rows.len(),
        vec![
            col!("t_ms", |r| r.t_ms),
            col!("source", |r| r.source.clone()),
            col!("device", |r| r.device.clone()),
            col!("cell_id", |r| r.cell_id.clone()),
            col!("watts", |r| r.watts),
            col!("energy_j_cum", |r| r.energy_j_cum),
            col!("temp_c", |r| r.temp_c),
            col!("sm_clock_mhz", |r| r.sm_clock_mhz),
            col!("throttle_reasons", |r| r.throttle_reasons),
        ],
    )
}

/// Writes a frame as Parquet to `path` (not atomically: callers own atomicity).
///
/// Beside it goes `FILE.sha256`, the hex SHA-256 of its bytes, which [`read_parquet`] checks
/// before handing the file to the Parquet reader: a damaged file is reported as such instead of
/// being decoded (polars' reader trusts sizes read from the file, and a damaged size can abort
/// the process).
pub fn write_parquet(df: &mut DataFrame, path: &std::path::Path) -> Result<(), SchemaError> {
    use sha2::{Digest, Sha256};
    let io = |source| SchemaError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(df)
        .map_err(|source| SchemaError::Polars {
            path: path.display().to_string(),
            source,
        })?;
    let digest = format!("{:x}\n", Sha256::digest(&bytes));
    for (p, content) in [
        (path.to_path_buf(), bytes.as_slice()),
        (checksum_path(path), digest.as_bytes()),
    ] {
        use std::io::Write;
        let mut file = std::fs::File::create(&p).map_err(io)?;
        file.write_all(content).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Where the SHA-256 of a Parquet file written by [`write_parquet`] is kept: `FILE.sha256`.
pub fn checksum_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    std::path::PathBuf::from(name)
}

/// Reads a Parquet file into a frame.
///
/// When `FILE.sha256` exists (every file tcobench writes has one), the bytes must match it.
pub fn read_parquet(path: &std::path::Path) -> Result<DataFrame, SchemaError> {
    let bytes = read_checked(path)?;
    catch_polars_panic(|| ParquetReader::new(std::io::Cursor::new(bytes)).finish()).map_err(
        |source| SchemaError::Polars {
            path: path.display().to_string(),
            source,
        },
    )
}

/// The bytes of a Parquet file, checked against `FILE.sha256` when it exists (every file
/// tcobench writes has one): what every Parquet reader hands to polars.
pub fn read_checked(path: &std::path::Path) -> Result<Vec<u8>, SchemaError> {
    use sha2::{Digest, Sha256};
    let io = |source| SchemaError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    match std::fs::read_to_string(checksum_path(path)) {
        Ok(recorded) => {
            let expected = recorded
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_lowercase();
            let found = format!("{:x}", Sha256::digest(&bytes));
            if expected != found {
                return Err(SchemaError::Checksum {
                    path: path.display().to_string(),
                    expected,
                    found,
                    hint: checksum_hint(path),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    Ok(bytes)
}

/// What repairs a Parquet file of a run folder that failed its checksum, by where it lies:
///
/// * `RUN/cells/ID/*.parquet`: a cell's own measurements, from which everything else is merged;
///   nothing rebuilds them. `run --resume` takes a cell whose folder is there as committed (and
///   its merge then meets the same damage), so the folder must go first.
/// * `RUN/requests.parquet`, `RUN/power.parquet`: merged from the cells; `collect` merges them
///   again.
/// * `RUN/run_power.parquet`: the power samples taken between cells, which cannot be taken again.
/// * Anything else: a copy is the only cure.
pub fn checksum_hint(path: &std::path::Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let cell = folder.and_then(|cell| {
        let cells = cell.parent()?;
        (cells.file_name()? == files::CELLS).then(|| (cell, cells.parent()))
    });
    if let Some((cell, run)) = cell {
        let run = run
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .display();
        return format!(
            "it is a cell's own measurement, which no merge can rebuild: remove the cell's folder \
             {} and run the cell again: `tcobench run --resume {run}` runs every cell of the plan \
             that has no folder (on a cluster, `tcobench emit slurm {run}/plan.json` submits \
             those cells, then `tcobench collect {run}` merges)",
            cell.display()
        );
    }
    let run = folder.unwrap_or(std::path::Path::new("."));
    if run.join(files::MANIFEST).is_file() {
        if name == files::REQUESTS || name == files::POWER {
            return format!(
                "it is merged from the run's cells: `tcobench collect {}` merges them again",
                run.display()
            );
        }
        // `tcobench`'s `run::writer::RUN_POWER`.
        if name == "run_power.parquet" {
            return format!(
                "it holds the power samples taken between the cells, which cannot be taken \
                 again: restore it from a copy, or remove it and its .sha256, and \
                 `tcobench collect {}` merges the cells without them",
                run.display()
            );
        }
    }
    "restore it from a copy, or write it again with the command that made it".to_string()
}

/// Runs a polars read, turning a panic inside polars into an error.
///
/// polars' Parquet reader panics on some corrupt files (a metadata field it `expect`s) where it
/// should return an error. While such a read runs, a panic raised in polars' own code is not
/// printed by the panic hook (installed once, chaining to the previous one): it becomes the
/// read's error, which the caller reports with the file's name.
pub fn catch_polars_panic<T>(read: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static READS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_polars = info.location().is_some_and(|l| l.file().contains("polars"));
            if !(in_polars && READS.load(Ordering::SeqCst) > 0) {
                previous(info);
            }
        }));
    });
    READS.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    READS.fetch_sub(1, Ordering::SeqCst);
    result.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(PolarsError::ComputeError(
            format!("corrupt file: the reader failed ({why})").into(),
        ))
    })
}

/// Reads `manifest.json` with a located error on malformed input.
pub fn read_manifest(path: &std::path::Path) -> Result<Manifest, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        // The place is in `line`/`column`; serde_json's message repeats it at its end.
        let mut message = e.to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        SchemaError::Json {
            path: path.display().to_string(),
            line: e.line(),
            column: e.column(),
            message,
        }
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// then a best-effort fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SchemaError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SchemaError::Io { path, source }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
