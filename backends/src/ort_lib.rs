//! Finding, fetching and loading the ONNX Runtime shared library, once per process.
//!
//! The `ort` crate is built with `load-dynamic`: nothing links against ONNX Runtime at build
//! time, and [`resolve_ort_library`] finds `libonnxruntime.so` at run time, in this order:
//!
//! 1. the environment variable [`ORT_DYLIB_ENV`] (`ORT_DYLIB_PATH`), which must name an
//!    existing file;
//! 2. a cached copy at `<cache_dir>/onnxruntime/<ORT_VERSION>[-gpu]/libonnxruntime.so.<ORT_VERSION>`;
//! 3. the pinned `onnxruntime` wheel (`onnxruntime-gpu` with the `cuda` feature), downloaded from
//!    PyPI with `python3 -m pip download` (the interpreter can be overridden by
//!    [`PYTHON_ENV`], `TCOBENCH_PYTHON`), whose `onnxruntime/capi/libonnxruntime*.so*` files are
//!    extracted with Python's `zipfile` and moved into the cache atomically;
//! 4. otherwise an error that names the fixes.
//!
//! [`OrtRuntime::init`] loads the resolved library and creates the process's one ONNX Runtime
//! environment; later calls return the same runtime. The version is pinned in [`ORT_VERSION`].

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::BackendError;

/// The ONNX Runtime release this build fetches and was tested with (the `onnxruntime` and
/// `onnxruntime-gpu` wheels of this version both exist on PyPI).
pub const ORT_VERSION: &str = "1.31.1";
/// Environment variable naming a `libonnxruntime` shared library to use instead of the cache.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable naming the Python interpreter used to fetch the wheel (default `python3`).
pub const PYTHON_ENV: &str = "TCOBENCH_PYTHON";

/// Where the ONNX Runtime library was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrtLibrarySource {
    /// The path in `ORT_DYLIB_PATH`.
    EnvVar,
    /// A copy cached by an earlier download.
    Cache,
    /// Downloaded from PyPI just now and cached.
    Downloaded,
}

impl fmt::Display for OrtLibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrtLibrarySource::EnvVar => "env_var",
            OrtLibrarySource::Cache => "cache",
            OrtLibrarySource::Downloaded => "downloaded",
        })
    }
}

/// A resolved ONNX Runtime shared library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrtLibrary {
    /// Path of the shared library.
    pub path: PathBuf,
    /// Which resolution step found it.
    pub source: OrtLibrarySource,
}

/// Everything [`resolve_ort_library_with`] reads from outside, so it can be tested without
/// touching the process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtLibraryQuery {
    /// The cache root; the library lives under `<cache_dir>/onnxruntime/`.
    pub cache_dir: PathBuf,
    /// The value of `ORT_DYLIB_PATH`, if set and non-empty.
    pub dylib_path: Option<PathBuf>,
    /// The Python interpreter that runs pip.
    pub python: OsString,
    /// Whether to use the GPU build (`onnxruntime-gpu`).
    pub gpu: bool,
}

impl OrtLibraryQuery {
    /// The query this process would make: `ORT_DYLIB_PATH`, `TCOBENCH_PYTHON` (else `python3`),
    /// and the GPU build when compiled with the `cuda` feature.
    pub fn from_env(cache_dir: &Path) -> Self {
        OrtLibraryQuery {
            cache_dir: cache_dir.to_path_buf(),
            dylib_path: std::env::var_os(ORT_DYLIB_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            python: std::env::var_os(PYTHON_ENV)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| OsString::from("python3")),
            gpu: cfg!(feature = "cuda"),
        }
    }
}

/// The PyPI package that ships the library (`onnxruntime` or `onnxruntime-gpu`).
pub fn wheel_package(gpu: bool) -> &'static str {
    if gpu {
        "onnxruntime-gpu"
    } else {
        "onnxruntime"
    }
}

/// The file name of the pinned library (`libonnxruntime.so.1.31.1`).
pub fn library_file_name() -> String {
    format!("libonnxruntime.so.{ORT_VERSION}")
}

/// The directory the pinned library is cached in: `<cache_dir>/onnxruntime/<ORT_VERSION>[-gpu]`.
pub fn cached_library_dir(cache_dir: &Path, gpu: bool) -> PathBuf {
    let suffix = if gpu { "-gpu" } else { "" };
    cache_dir
        .join("onnxruntime")
        .join(format!("{ORT_VERSION}{suffix}"))
}

/// Resolves the ONNX Runtime library for this process (see the module documentation for the
/// order), downloading it into `cache_dir` if needed.
pub fn resolve_ort_library(cache_dir: &Path) -> Result<OrtLibrary, BackendError> {
    resolve_ort_library_with(&OrtLibraryQuery::from_env(cache_dir))
}

/// [`resolve_ort_library`] with every outside input given explicitly.
pub fn resolve_ort_library_with(query: &OrtLibraryQuery) -> Result<OrtLibrary, BackendError> {
    if let Some(path) = &query.dylib_path {
        if !path.is_file() {
            return Err(BackendError::OrtLibrary(format!(
                "{ORT_DYLIB_ENV} is set to {}, which is not a file (point it at a libonnxruntime.so \
                 of version >= 1.31, or unset it to use the cached or downloaded onnxruntime {ORT_VERSION})",
                path.display()
            )));
        }
        return Ok(OrtLibrary {
            path: path.clone(),
            source: OrtLibrarySource::EnvVar,
        });
    }
    let dir = cached_library_dir(&query.cache_dir, query.gpu);
    let cached = dir.join(library_file_name());
    if cached.is_file() {
        return Ok(OrtLibrary {
            path: cached,
            source: OrtLibrarySource::Cache,
        });
    }
    download_library(query, &dir).map_err(|why| {
        BackendError::OrtLibrary(format!(
            "cannot find the ONNX Runtime {ORT_VERSION} shared library: {why}. Fix: set \
             {ORT_DYLIB_ENV} to a libonnxruntime.so (>= 1.31), or install Python 3 with pip and \
             allow it to reach PyPI so that the `{}=={ORT_VERSION}` wheel can be fetched into {} \
             (set {PYTHON_ENV} to choose the interpreter)",
            wheel_package(query.gpu),
            dir.display()
        ))
    })?;
    Ok(OrtLibrary {
        path: cached,
        source: OrtLibrarySource::Downloaded,
    })
}

/// Extracts `onnxruntime/capi/libonnxruntime*.so*` from the wheel `argv[1]` into `argv[2]`,
/// flattening paths, and prints the extracted names.
const EXTRACT_SCRIPT: &str = r#"
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime") and ".so" in base:
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
            print(base)
"#;

/// Downloads the pinned wheel with pip and moves its libraries into `dir`. The error says why.
fn download_library(query: &OrtLibraryQuery, dir: &Path) -> Result<(), String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let package = format!("{}=={ORT_VERSION}", wheel_package(query.gpu));
    let parent = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", dir.display()))?;
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let work = parent.join(format!(
        ".download-{}-{}-{}",
        dir.file_name()
            .map(OsStr::to_string_lossy)
            .unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let wheels = work.join("wheel");
        let lib = work.join("lib");
        for d in [&wheels, &lib] {
            fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        eprintln!(
            "tcobench: fetching ONNX Runtime {ORT_VERSION} (`{package}` wheel from PyPI with `{} -m pip download`) into {}",
            query.python.to_string_lossy(),
            dir.display()
        );
        let mut pip = Command::new(&query.python);
        pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .arg(&package)
            .arg("-d")
            .arg(&wheels);
        run(&mut pip, &query.python, "pip download")?;
        let wheel = fs::read_dir(&wheels)
            .map_err(|e| format!("cannot list {}: {e}", wheels.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip download of `{package}` left no .whl file"))?;
        let mut extract = Command::new(&query.python);
        extract.arg("-c").arg(EXTRACT_SCRIPT).arg(&wheel).arg(&lib);
        run(&mut extract, &query.python, "wheel extraction")?;
        if !lib.join(library_file_name()).is_file() {
            return Err(format!(
                "the wheel {} holds no onnxruntime/capi/{}",
                wheel.display(),
                library_file_name()
            ));
        }
        match fs::rename(&lib, dir) {
            Ok(()) => Ok(()),
            // Another process finished first; its copy is as good as ours.
            Err(_) if dir.join(library_file_name()).is_file() => Ok(()),
            Err(e) => Err(format!(
                "cannot move the library into {}: {e}",
                dir.display()
            )),
        }
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// Runs `cmd`, turning a missing interpreter or a failure into a message with pip's last words.
fn run(cmd: &mut Command, python: &OsStr, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} could not start `{}`: {e}", python.to_string_lossy()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{what} failed ({}): {}",
        out.status,
        if tail.is_empty() {
            "no output".to_owned()
        } else {
            tail.join(" / ")
        }
    ))
}

/// The loaded ONNX Runtime: its library, version, and the process's one environment.
pub struct OrtRuntime {
    library: OrtLibrary,
    version: String,
    build_info: String,
    environment: ort::environment::Environment,
}

impl fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("library", &self.library)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

impl OrtRuntime {
    /// Resolves the library (see [`resolve_ort_library`]), loads it and creates the ONNX Runtime
    /// environment, once per process; later calls return the first runtime whatever their
    /// `cache_dir`. A failed attempt can be retried.
    pub fn init(cache_dir: &Path) -> Result<&'static OrtRuntime, BackendError> {
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let library = resolve_ort_library(cache_dir)?;
        Self::load(library)
    }

    /// Loads `library` and creates the environment, unless a runtime was already initialised
    /// (then that one is returned).
    pub fn init_with_library(library: OrtLibrary) -> Result<&'static OrtRuntime, BackendError> {
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        Self::load(library)
    }

    /// The runtime, if one was initialised in this process.
    pub fn get() -> Option<&'static OrtRuntime> {
        RUNTIME.get()
    }

    fn load(library: OrtLibrary) -> Result<&'static OrtRuntime, BackendError> {
        let load_error = |e: &dyn fmt::Display| {
            BackendError::OrtLibrary(format!(
                "cannot load {} (found via {}): {e}",
                library.path.display(),
                library.source
            ))
        };
        let builder = ort::init_from(&library.path).map_err(|e| load_error(&e))?;
        let environment = builder
            .with_name("tcobench")
            .with_telemetry(false)
            .build()
            .map_err(|e| load_error(&e))?;
        let build_info = ort::info().to_owned();
        let version = version_from_file_name(&library.path)
            .or_else(|| parse_version(&build_info))
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(RUNTIME.get_or_init(|| OrtRuntime {
            library,
            version,
            build_info,
            environment,
        }))
    }

    /// The library in use and how it was found.
    pub fn library(&self) -> &OrtLibrary {
        &self.library
    }

    /// The loaded library's version (`1.31.1`), from the library's file name (symbolic links
    /// followed) or else its build information; `unknown` if neither says.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The loaded library's build information string.
    pub fn build_info(&self) -> &str {
        &self.build_info
    }

    /// The process's ONNX Runtime environment, which sessions are built from.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }
}

/// The version in the name of the library file, following symbolic links
/// (`libonnxruntime.so.1.31.1`, `libonnxruntime.1.31.1.dylib`).
fn version_from_file_name(path: &Path) -> Option<String> {
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let found = [real.as_path(), path].into_iter().find_map(|p| {
        let name = p.file_name()?.to_str()?;
        let rest = name.strip_prefix("libonnxruntime")?;
        let version: String = rest
            .trim_start_matches(".so")
            .trim_start_matches('.')
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let version = version.trim_end_matches('.');
        (version.split('.').count() == 3 && version.split('.').all(|p| !p.is_empty()))
            .then(|| version.to_owned())
    });
    found
}

/// The version in ONNX Runtime's build information (`… git-branch=rel-1.31.1, …`); release
/// builds from PyPI say `git-branch=HEAD` instead, hence [`version_from_file_name`] first.
fn parse_version(build_info: &str) -> Option<String> {
    let rest = &build_info[build_info.find("git-branch=rel-")? + "git-branch=rel-".len()..];
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_build_info() {
        assert_eq!(
            parse_version(
                "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc, build type=Release"
            )
            .as_deref(),
            Some("1.31.1")
        );
        assert_eq!(parse_version("ORT Build Info: git-branch=main"), None);
    }

    #[test]
    fn version_is_read_from_the_file_name() {
        let v = |p: &str| version_from_file_name(Path::new(p));
        assert_eq!(v("/x/libonnxruntime.so.1.31.1").as_deref(), Some("1.31.1"));
        assert_eq!(
            v("/x/libonnxruntime.1.31.1.dylib").as_deref(),
            Some("1.31.1")
        );
        assert_eq!(v("/x/libonnxruntime.so"), None);
        assert_eq!(v("/x/libonnxruntime.so.1"), None);
        assert_eq!(v("/x/other.so.1.2.3"), None);
    }

    #[test]
    fn cache_layout_is_versioned() {
        let root = Path::new("/c");
        assert_eq!(
            cached_library_dir(root, false),
            Path::new("/c/onnxruntime").join(ORT_VERSION)
        );
        assert_eq!(
            cached_library_dir(root, true),
            Path::new("/c/onnxruntime").join(format!("{ORT_VERSION}-gpu"))
        );
        assert_eq!(wheel_package(true), "onnxruntime-gpu");
    }
}
