//! The one results writer: run directories, atomic cell commits, merging, the manifest.
//!
//! A cell's files are written into a hidden temporary folder, each fsynced, and the folder is
//! renamed to `cells/<cell-id>/` in one step, so a cell is either complete or absent; a killed
//! run loses at most the cell in flight. Run-level files are merged from the committed cells.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tcobench_analysis::schema::{self, files, CellRecord, Manifest, PowerSample, RequestRecord};

/// Power samples taken outside any cell, merged into `power.parquet`.
pub const RUN_POWER: &str = "run_power.parquet";

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
    tcobench_analysis::write_atomic(path, bytes)?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes the rename durable; not every filesystem supports it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
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
        let mut requests = schema::requests_frame(&cell.requests)?;
        schema::write_parquet(&mut requests, &tmp.join(files::REQUESTS))?;
        let mut power = schema::power_frame(&cell.power)?;
        schema::write_parquet(&mut power, &tmp.join(files::POWER))?;
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
        let mut df = schema::power_frame(samples)?;
        self.write_frame_atomic(&mut df, RUN_POWER)
    }

    /// Merges the committed cells' parquet files, in manifest order, into the run-level files.
    pub fn merge(&self, manifest: &Manifest) -> Result<()> {
        let mut requests: Option<polars::prelude::DataFrame> = None;
        let run_power = self.path.join(RUN_POWER);
        let mut power: Option<polars::prelude::DataFrame> = if run_power.is_file() {
            Some(schema::read_parquet(&run_power)?)
        } else {
            None
        };
        for cell in &manifest.cells {
            if !self.is_committed(&cell.cell_id) {
                continue;
            }
            let dir = self.cell_dir(&cell.cell_id);
            let r = schema::read_parquet(&dir.join(files::REQUESTS))?;
            let p = schema::read_parquet(&dir.join(files::POWER))?;
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
            None => schema::requests_frame(&[])?,
        };
        let mut power = match power {
            Some(p) => p,
            None => schema::power_frame(&[])?,
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
        schema::write_parquet(df, &tmp)?;
        let dest = self.path.join(name);
        fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
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
