//! Model directories the ONNX Runtime backend cannot use give errors that name the file and
//! what is wrong.

use std::fs;
use std::path::Path;

use prost::Message;
use tcobench_backends::onnx::proto::{type_proto, ModelProto, DATA_TYPE_INT64};
use tcobench_backends::onnx::ONNX_FILE;
use tcobench_backends::{BackendError, BuiltinModel, DType, Device, OrtBackend, OrtThreads};

use crate::common::*;

fn load(dir: &Path) -> Result<OrtBackend, BackendError> {
    OrtBackend::load(
        runtime(),
        dir,
        Device::Cpu,
        DType::F32,
        OrtThreads::default(),
    )
}

fn load_err(dir: &Path) -> String {
    let err = load(dir).unwrap_err();
    assert!(matches!(err, BackendError::Model { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.join(ONNX_FILE).display().to_string())
            || text.contains(&dir.join("config.json").display().to_string()),
        "the error names no file: {text}"
    );
    text
}

/// Rewrites `dir/model.onnx` through `edit`.
fn edit_model(dir: &Path, edit: impl FnOnce(&mut ModelProto)) {
    let path = dir.join(ONNX_FILE);
    let mut model = ModelProto::decode(fs::read(&path).unwrap().as_slice()).unwrap();
    edit(&mut model);
    fs::write(&path, model.encode_to_vec()).unwrap();
}

/// Renames graph input `from` to `to` everywhere it is used, so the model stays valid.
fn rename_input(model: &mut ModelProto, from: &str, to: &str) {
    let graph = model.graph.as_mut().unwrap();
    for v in &mut graph.input {
        if v.name.as_deref() == Some(from) {
            v.name = Some(to.to_owned());
        }
    }
    for node in &mut graph.node {
        for input in &mut node.input {
            if input == from {
                *input = to.to_owned();
            }
        }
    }
}

#[test]
fn a_missing_model_file_is_named() {
    let (_t, dir) = tiny_with_onnx(2);
    fs::remove_file(dir.join(ONNX_FILE)).unwrap();
    let text = load_err(&dir);
    assert!(text.contains("missing"), "{text}");
}

#[test]
fn wrong_input_names_are_named() {
    let (_t, dir) = tiny_with_onnx(2);
    edit_model(&dir, |m| rename_input(m, "input_ids", "tokens"));
    let text = load_err(&dir);
    assert!(
        text.contains("no `input_ids` input") && text.contains("tokens"),
        "{text}"
    );

    let (_t, dir) = tiny_with_onnx(2);
    edit_model(&dir, |m| rename_input(m, "position_ids", "positions"));
    let text = load_err(&dir);
    assert!(text.contains("`positions`"), "{text}");
}

#[test]
fn wrong_dtypes_are_named() {
    let (_t, dir) = tiny_with_onnx(2);
    edit_model(&dir, |m| {
        let graph = m.graph.as_mut().unwrap();
        let ids = graph
            .input
            .iter_mut()
            .find(|v| v.name.as_deref() == Some("input_ids"))
            .unwrap();
        let Some(type_proto::Value::TensorType(t)) =
            ids.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            unreachable!()
        };
        assert_eq!(t.elem_type, Some(DATA_TYPE_INT64));
        t.elem_type = Some(6); // INT32: the graph still loads (Gather and Shape accept it).
    });
    let text = load_err(&dir);
    assert!(
        text.contains("input_ids") && text.contains("Int32") && text.contains("Int64"),
        "{text}"
    );
}

#[test]
fn a_truncated_file_is_named() {
    let (_t, dir) = tiny_with_onnx(2);
    let path = dir.join(ONNX_FILE);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let text = load_err(&dir);
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn a_config_that_does_not_match_the_graph_is_named() {
    // Vocabulary.
    let (_t, dir) = tiny_with_onnx(2);
    let mut cfg = BuiltinModel::Tiny.config();
    cfg.vocab_size = 1000;
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let text = load_err(&dir);
    assert!(text.contains("vocab") && text.contains("1000"), "{text}");

    // Key/value heads.
    let mut cfg = BuiltinModel::Tiny.config();
    cfg.num_key_value_heads = 4;
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let text = load_err(&dir);
    assert!(text.contains("past_key_values.0.key"), "{text}");

    // Layers: the graph has 2, the config says 3.
    let mut cfg = BuiltinModel::Tiny.config();
    cfg.num_hidden_layers = 3;
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let text = load_err(&dir);
    assert!(text.contains("past_key_values.2.key"), "{text}");

    // And fewer: the graph's extra inputs are unknown.
    let mut cfg = BuiltinModel::Tiny.config();
    cfg.num_hidden_layers = 1;
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let text = load_err(&dir);
    assert!(text.contains("past_key_values.1.key"), "{text}");
}

#[test]
fn unsupported_dtypes_and_devices_are_refused() {
    let (_t, dir) = tiny_with_onnx(2);
    for dtype in [DType::F16, DType::BF16] {
        let err = OrtBackend::load(runtime(), &dir, Device::Cpu, dtype, OrtThreads::default())
            .unwrap_err();
        assert!(matches!(err, BackendError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains(&dtype.to_string()), "{err}");
    }
    #[cfg(not(feature = "cuda"))]
    {
        let err = OrtBackend::load(
            runtime(),
            &dir,
            Device::Cuda(0),
            DType::F32,
            OrtThreads::default(),
        )
        .unwrap_err();
        assert!(matches!(err, BackendError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused() {
    use tcobench_backends::{OrtLibrary, OrtLibrarySource, OrtRuntime};
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("libonnxruntime.so");
    fs::write(&fake, b"not a shared library").unwrap();
    let library = OrtLibrary {
        path: fake.clone(),
        source: OrtLibrarySource::EnvVar,
    };
    // Once a runtime is up in this process it is returned as it is; before, loading fails.
    match OrtRuntime::init_with_library(library) {
        Ok(rt) => assert_ne!(rt.library().path, fake),
        Err(err) => {
            assert!(matches!(err, BackendError::OrtLibrary(_)), "{err}");
            assert!(
                err.to_string().contains(&fake.display().to_string()),
                "{err}"
            );
        }
    }
}
