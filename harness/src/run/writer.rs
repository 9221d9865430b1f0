//! The one results writer: run directories, atomic cell commits, merging, the manifest.
//!
//! A cell's files are written into a hidden temporary folder, each fsynced, and the folder is
//! renamed to `cells/<cell-id>/` in one step, so a cell is either complete or absent; a killed
//! run loses at most the cell in flight. Run-level files are merged from the committed cells.
//!
//! Two lock files keep processes from stepping on each other: `.run.lock`, held by the process
//! driving the run (`run`, `run --resume`), and `.writers.lock`, held shared by every `run-cell`
//! process; a resume waits for the writers of a killed attempt to be gone before it clears what
//! they left half-written. `reference_logits/` keeps the agreement gate's reference logits per
//! model, computed by the first cell that needs them, for the other cells' processes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tcobench_results::io;
use tcobench_results::schema::{files, CellRecord, Manifest, PowerSample, RequestRecord};

/// Power samples taken outside any cell, merged into `power.parquet`.
pub const RUN_POWER: &str = "run_power.parquet";

/// Held by the process that drives a run folder's cells (see [`RunDir::lock_run`]).
pub const RUN_LOCK: &str = ".run.lock";

/// Held, shared, by every process that may be writing a cell (see [`RunDir::lock_writer`]).
pub const WRITERS_LOCK: &str = ".writers.lock";

fn lock_file(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// What one cell produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// The cell's configuration and outcome.
    pub record: CellRecord,
    /// Every request, warm-ups included.
    #[serde(skip)]
    pub requests: Vec<RequestRecord>,
    /// Power samples taken while the cell ran.
    #[serde(skip)]
    pub power: Vec<PowerSample>,
}

/// A run's results folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub path: PathBuf,
    /// Its name, the run id.
    pub run_id: String,
}

/// Writes `bytes` to `path` atomically (temp sibling, fsync, rename): the one implementation,
/// shared with the analysis stage.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    tcobench_results::io::write_atomic(path, bytes)?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes the rename durable; not every filesystem supports it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The process id in the name of a temporary file or folder of ours (`None`: not one of them): `.tmp-<cell>-<pid>` (a cell
/// commit), `.<name>.tmp-<pid>-<n>` (an atomic write) or `.<name>.<pid>.tmp[.sha256]` (a merged
/// frame and its checksum).
fn temp_writer_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    // A merged frame's checksum is written beside it under the same temporary name.
    let name = name.strip_suffix(".sha256").unwrap_or(name);
    if let Some(rest) = name.strip_prefix(".tmp-") {
        return rest.rsplit_once('-')?.1.parse().ok();
    }
    if let Some((_, after)) = name.rsplit_once(".tmp-") {
        return after.split('-').next()?.parse().ok();
    }
    name.strip_suffix(".tmp")?.rsplit_once('.')?.1.parse().ok()
}

impl RunDir {
    /// Creates `out/<run_id>/`; never reuses an existing folder (a suffix is added instead).
    pub fn create(out: &Path, run_id: &str) -> Result<RunDir> {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for attempt in 0..1000 {
            let id = if attempt == 0 {
                run_id.to_string()
            } else {
                format!("{run_id}-{attempt}")
            };
            let path = out.join(&id);
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::create_dir(path.join(files::CELLS))?;
                    return Ok(RunDir { path, run_id: id });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!(
            "could not find a free run folder name under {}",
            out.display()
        )
    }

    /// Opens an existing run folder.
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.join(files::MANIFEST).is_file() {
            bail!(
                "{} is not a run folder (no {})",
                path.display(),
                files::MANIFEST
            );
        }
        let run_id = path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("run")
            .to_string();
        Ok(RunDir {
            path: path.to_path_buf(),
            run_id,
        })
    }

    /// A run folder that `run-cell` writes cells into: it must exist; `cells/` is created when
    /// missing (a plan may have been copied to a fresh folder). No manifest is needed.
    pub fn for_cells(path: &Path) -> Result<RunDir> {
        if !path.is_dir() {
            bail!("run folder {} does not exist", path.display());
        }
        let cells = path.join(files::CELLS);
        if !cells.is_dir() {
            fs::create_dir_all(&cells).with_context(|| format!("creating {}", cells.display()))?;
        }
        let run_id = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().and_then(|s| s.to_str()).map(str::to_string))
            .unwrap_or_else(|| "run".to_string());
        Ok(RunDir {
            path: path.to_path_buf(),
            run_id,
        })
    }

    /// Writes `plan.json` atomically.
    pub fn write_plan(&self, plan: &crate::plan::Plan) -> Result<()> {
        write_atomic(
            &self.path.join(crate::plan::PLAN_FILE),
            plan.to_json().as_bytes(),
        )
    }

    /// The ids of the committed cells (folders under `cells/` holding a status file).
    pub fn committed_ids(&self) -> Result<std::collections::BTreeSet<String>> {
        let cells = self.path.join(files::CELLS);
        let mut ids = std::collections::BTreeSet::new();
        let entries = match fs::read_dir(&cells) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e).with_context(|| format!("reading {}", cells.display())),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(name) = name.to_str() {
                if !name.starts_with('.') && self.is_committed(name) {
                    ids.insert(name.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Takes the run folder for this process: the lock is held until the returned file is
    /// dropped or the process ends (however it ends). When another process holds it for longer
    /// than `wait` (the kernel may release a killed process's lock a moment after its end), the
    /// folder is refused: a second `run --resume` of a folder that a live process is still
    /// running would duplicate its cells.
    pub fn lock_run(&self, wait: std::time::Duration) -> Result<fs::File> {
        let path = self.path.join(RUN_LOCK);
        let file = lock_file(&path)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => bail!(
                    "another tcobench process is running {} (it holds {})",
                    self.path.display(),
                    path.display()
                ),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
    }

    /// Declares this process a writer of cells until the returned file is dropped or the
    /// process ends; writers share the lock, and a clean-up ([`RunDir::remove_stale_temp`])
    /// waits for them.
    pub fn lock_writer(&self) -> Result<fs::File> {
        let path = self.path.join(WRITERS_LOCK);
        let file = lock_file(&path)?;
        file.lock_shared()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    /// Removes what writers killed part-way left behind — unfinished cell commits and temporary
    /// files of atomic writes, in the run folder, `cells/` and `plots/` — and returns how many.
    /// It first waits, up to `wait`, until no process writes cells any more (a cell process
    /// whose run was killed exits as soon as it notices, and a killed process may take a moment
    /// to go), so nothing it removes is still in use.
    pub fn remove_stale_temp(&self, wait: std::time::Duration) -> Result<usize> {
        let path = self.path.join(WRITERS_LOCK);
        let lock = lock_file(&path)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => bail!(
                    "a cell process of an earlier attempt is still writing in {} after {} s; \
                     stop it, then resume",
                    self.path.display(),
                    wait.as_secs()
                ),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        let mut removed = 0;
        for dir in [
            self.path.clone(),
            self.path.join(files::CELLS),
            self.path.join(files::PLOTS),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                if name.to_str().and_then(temp_writer_pid).is_none() {
                    continue;
                }
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                }
                .with_context(|| format!("removing {}", path.display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The folder of a committed cell.
    pub fn cell_dir(&self, cell_id: &str) -> PathBuf {
        self.path.join(files::CELLS).join(cell_id)
    }

    /// Whether a cell has been committed.
    pub fn is_committed(&self, cell_id: &str) -> bool {
        self.cell_dir(cell_id).join(files::CELL_STATUS).is_file()
    }

    /// Commits one cell's files atomically (all of them appear at once, or none).
    pub fn commit_cell(&self, cell: &CellResult) -> Result<()> {
        let final_dir = self.cell_dir(&cell.record.cell_id);
        if final_dir.exists() {
            bail!(
                "cell {} is already committed in {}",
                cell.record.cell_id,
                self.path.display()
            );
        }
        let cells = self.path.join(files::CELLS);
        let tmp = cells.join(format!(
            ".tmp-{}-{}",
            cell.record.cell_id,
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut requests = io::requests_frame(&cell.requests)?;
        io::write_parquet(&mut requests, &tmp.join(files::REQUESTS))?;
        let mut power = io::power_frame(&cell.power)?;
        io::write_parquet(&mut power, &tmp.join(files::POWER))?;
        // status.json is written last: its presence marks a complete cell even to readers that
        // do not know about the rename.
        write_atomic(
            &tmp.join(files::CELL_STATUS),
            serde_json::to_string_pretty(&cell.record)?.as_bytes(),
        )?;
        sync_dir(&tmp);
        fs::rename(&tmp, &final_dir)
            .with_context(|| format!("committing {}", final_dir.display()))?;
        sync_dir(&cells);
        Ok(())
    }

    /// Writes the manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        write_atomic(
            &self.path.join(files::MANIFEST),
            serde_json::to_string_pretty(manifest)?.as_bytes(),
        )
    }

    /// Stores power samples taken outside any cell (idle baseline, between cells).
    pub fn write_run_power(&self, samples: &[PowerSample]) -> Result<()> {
        let mut df = io::power_frame(samples)?;
        self.write_frame_atomic(&mut df, RUN_POWER)
    }

    /// Merges the committed cells' parquet files, in manifest order, into the run-level files.
    pub fn merge(&self, manifest: &Manifest) -> Result<()> {
        let mut requests: Option<polars::prelude::DataFrame> = None;
        let run_power = self.path.join(RUN_POWER);
        let mut power: Option<polars::prelude::DataFrame> = if run_power.is_file() {
            Some(io::read_parquet(&run_power)?)
        } else {
            None
        };
        for cell in &manifest.cells {
            if !self.is_committed(&cell.cell_id) {
                continue;
            }
            let dir = self.cell_dir(&cell.cell_id);
            let r = io::read_parquet(&dir.join(files::REQUESTS))?;
            let p = io::read_parquet(&dir.join(files::POWER))?;
            requests = Some(match requests {
                None => r,
                Some(mut acc) => {
                    acc.vstack_mut(&r)?;
                    acc
                }
            });
            power = Some(match power {
                None => p,
                Some(mut acc) => {
                    acc.vstack_mut(&p)?;
                    acc
                }
            });
        }
        let mut requests = match requests {
            Some(r) => r,
            None => io::requests_frame(&[])?,
        };
        let mut power = match power {
            Some(p) => p,
            None => io::power_frame(&[])?,
        };
        requests.rechunk_mut();
        power.rechunk_mut();
        self.write_frame_atomic(&mut requests, files::REQUESTS)?;
        self.write_frame_atomic(&mut power, files::POWER)
    }

    fn write_frame_atomic(&self, df: &mut polars::prelude::DataFrame, name: &str) -> Result<()> {
        let tmp = self
            .path
            .join(format!(".{name}.{}.tmp", std::process::id()));
        io::write_parquet(df, &tmp)?;
        let dest = self.path.join(name);
        let (tmp_sum, dest_sum) = (io::checksum_path(&tmp), io::checksum_path(&dest));
        // The old checksum goes first: a crash before the new one is in place leaves a file
        // without a checksum (read unchecked, like another tool's), never a false mismatch.
        match fs::remove_file(&dest_sum) {
            Ok(()) => sync_dir(&self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dest_sum.display())),
        }
        fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
        fs::rename(&tmp_sum, &dest_sum)
            .with_context(|| format!("renaming into {}", dest_sum.display()))?;
        sync_dir(&self.path);
        Ok(())
    }

    /// Reads a committed cell's status.
    pub fn read_cell_status(&self, cell_id: &str) -> Result<CellRecord> {
        let path = self.cell_dir(cell_id).join(files::CELL_STATUS);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_give_their_writer() {
        assert_eq!(
            temp_writer_pid(".tmp-mock-tiny-b1-0c391c29-4242"),
            Some(4242)
        );
        assert_eq!(temp_writer_pid(".manifest.json.tmp-77-3"), Some(77));
        assert_eq!(temp_writer_pid(".requests.parquet.99.tmp"), Some(99));
        assert_eq!(temp_writer_pid(".requests.parquet.99.tmp.sha256"), Some(99));
        assert_eq!(temp_writer_pid("requests.parquet.sha256"), None);
        assert_eq!(temp_writer_pid("mock-tiny-b1-0c391c29"), None);
        assert_eq!(temp_writer_pid(".hidden"), None);
    }
}
