//! Resolution of the ONNX Runtime library, one test per branch: `ORT_DYLIB_PATH`, the cache, the
//! pip download (with a stand-in interpreter and a fake wheel), and failure.

use std::fs;
use std::path::{Path, PathBuf};

use tcobench_backends::ort_lib::{
    cached_library_dir, library_file_name, resolve_ort_library_with, OrtLibraryQuery,
    ORT_DYLIB_ENV, PYTHON_ENV,
};
use tcobench_backends::{BackendError, OrtLibrarySource, OrtRuntime, ORT_VERSION};

use crate::common::*;

fn query(cache: &Path) -> OrtLibraryQuery {
    OrtLibraryQuery {
        cache_dir: cache.to_path_buf(),
        dylib_path: None,
        python: "/nonexistent/python3".into(),
        gpu: false,
    }
}

#[test]
fn env_var_wins_when_it_names_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("libonnxruntime.so");
    fs::write(&lib, b"stand-in").unwrap();
    // A cached copy exists too: the variable still wins.
    let cached = cached_library_dir(tmp.path(), false);
    fs::create_dir_all(&cached).unwrap();
    fs::write(cached.join(library_file_name()), b"cached").unwrap();
    let q = OrtLibraryQuery {
        dylib_path: Some(lib.clone()),
        ..query(tmp.path())
    };
    let found = resolve_ort_library_with(&q).unwrap();
    assert_eq!(found.path, lib);
    assert_eq!(found.source, OrtLibrarySource::EnvVar);
}

#[test]
fn env_var_naming_a_missing_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere/libonnxruntime.so");
    let q = OrtLibraryQuery {
        dylib_path: Some(missing.clone()),
        ..query(tmp.path())
    };
    let err = resolve_ort_library_with(&q).unwrap_err();
    assert!(matches!(err, BackendError::OrtLibrary(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(ORT_DYLIB_ENV) && text.contains(&missing.display().to_string()),
        "{text}"
    );
}

#[test]
fn a_cached_copy_is_used_without_python() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cached_library_dir(tmp.path(), false);
    assert_eq!(dir, tmp.path().join("onnxruntime").join(ORT_VERSION));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(library_file_name()), b"cached").unwrap();
    let found = resolve_ort_library_with(&query(tmp.path())).unwrap();
    assert_eq!(
        found.path,
        dir.join(format!("libonnxruntime.so.{ORT_VERSION}"))
    );
    assert_eq!(found.source, OrtLibrarySource::Cache);
    // The GPU build has its own cache slot, so the CPU copy does not stand in for it.
    let gpu = OrtLibraryQuery {
        gpu: true,
        ..query(tmp.path())
    };
    assert!(resolve_ort_library_with(&gpu).is_err());
}

/// A stand-in interpreter: logs its arguments; `-m pip download … -d DIR` makes a fake wheel in
/// DIR with the real Python's `zipfile`; anything else (the extraction) runs the real Python.
fn fake_python(dir: &Path, with_library: bool) -> PathBuf {
    let real = String::from_utf8(
        std::process::Command::new(python())
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let log = dir.join("calls.log");
    let lib = if with_library {
        format!("z.writestr('onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}', 'fake library')")
    } else {
        "pass".to_owned()
    };
    let script = format!(
        r#"#!/bin/sh
printf '%s' "$*" | tr '\n' ' ' >> '{log}'
echo >> '{log}'
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  for last; do :; done
  exec '{real}' -c "
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + '/onnxruntime-{ORT_VERSION}-cp3-none-any.whl', 'w') as z:
    {lib}
    z.writestr('onnxruntime/capi/libonnxruntime_providers_shared.so', 'fake provider')
    z.writestr('onnxruntime/capi/onnxruntime_pybind11_state.so', 'not wanted')
    z.writestr('onnxruntime/__init__.py', 'not wanted')
" "$last"
fi
exec '{real}' "$@"
"#,
        log = log.display(),
    );
    let path = dir.join("fake-python");
    fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn the_wheel_is_fetched_with_pip_and_cached() {
    if !python_has("zipfile") {
        skip_notice("pip-branch test of the ONNX Runtime resolution: no usable python3");
        return;
    }
    for gpu in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let q = OrtLibraryQuery {
            python: fake_python(tmp.path(), true).into(),
            gpu,
            ..query(&cache)
        };
        let found = resolve_ort_library_with(&q).unwrap();
        let dir = cached_library_dir(&cache, gpu);
        assert_eq!(found.source, OrtLibrarySource::Downloaded);
        assert_eq!(found.path, dir.join(library_file_name()));
        assert_eq!(fs::read(&found.path).unwrap(), b"fake library");
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                library_file_name(),
                "libonnxruntime_providers_shared.so".to_owned()
            ]
        );
        // No work directories are left in the cache.
        assert_eq!(fs::read_dir(cache.join("onnxruntime")).unwrap().count(), 1);

        let calls = fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        let first = calls.lines().next().unwrap();
        let package = if gpu {
            "onnxruntime-gpu"
        } else {
            "onnxruntime"
        };
        assert!(
            first.starts_with(&format!(
                "-m pip download --no-deps --only-binary=:all: {package}=={ORT_VERSION} -d "
            )),
            "{first}"
        );
        assert_eq!(calls.lines().count(), 2, "pip, then extraction: {calls}");

        // The next resolution is a cache hit: no more calls.
        let again = resolve_ort_library_with(&q).unwrap();
        assert_eq!(again.source, OrtLibrarySource::Cache);
        assert_eq!(
            fs::read_to_string(tmp.path().join("calls.log")).unwrap(),
            calls
        );
    }
}

#[test]
fn failure_names_the_fixes() {
    let tmp = tempfile::tempdir().unwrap();
    // No interpreter at all.
    let err = resolve_ort_library_with(&query(tmp.path())).unwrap_err();
    assert!(matches!(err, BackendError::OrtLibrary(_)), "{err}");
    let text = err.to_string();
    for needle in [
        ORT_DYLIB_ENV,
        PYTHON_ENV,
        "pip",
        "/nonexistent/python3",
        &format!("onnxruntime=={ORT_VERSION}"),
    ] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }

    // pip fails (no network, no such version…): its last words are passed on.
    let failing = tmp.path().join("failing-python");
    fs::write(
        &failing,
        "#!/bin/sh\necho 'ERROR: No matching distribution found' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755)).unwrap();
    let q = OrtLibraryQuery {
        python: failing.into(),
        ..query(tmp.path())
    };
    let text = resolve_ort_library_with(&q).unwrap_err().to_string();
    assert!(
        text.contains("No matching distribution") && text.contains(ORT_DYLIB_ENV),
        "{text}"
    );
    assert!(!cached_library_dir(tmp.path(), false).exists());

    // A wheel without the library.
    if python_has("zipfile") {
        let q = OrtLibraryQuery {
            python: fake_python(tmp.path(), false).into(),
            ..query(tmp.path())
        };
        let text = resolve_ort_library_with(&q).unwrap_err().to_string();
        assert!(text.contains(&library_file_name()), "{text}");
        assert!(!cached_library_dir(tmp.path(), false).exists());
    }
}

#[test]
fn the_runtime_reports_its_version_and_library() {
    let rt = runtime();
    if rt.library().source == OrtLibrarySource::EnvVar {
        assert!(!rt.version().is_empty());
    } else {
        assert_eq!(rt.version(), ORT_VERSION, "{}", rt.build_info());
    }
    assert!(rt.library().path.is_file());
    assert!(
        rt.build_info().contains("ORT Build Info"),
        "{}",
        rt.build_info()
    );
    // Later initialisations return the same runtime.
    let again = OrtRuntime::init(Path::new("/nonexistent")).unwrap();
    assert!(std::ptr::eq(rt, again));
}
