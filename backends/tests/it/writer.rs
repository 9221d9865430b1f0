//! The ONNX writer: weights carried bit for bit, the Optimum I/O convention, standard operators,
//! external data, reuse by `ensure_onnx`, and the header reader.

use std::fs;
use std::path::Path;

use prost::Message;
use tcobench_backends::model::{materialize, BuiltinModel};
use tcobench_backends::onnx::proto::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, ModelProto, TensorProto,
    ValueInfoProto, DATA_LOCATION_EXTERNAL, DATA_TYPE_FLOAT, DATA_TYPE_INT64,
};
use tcobench_backends::onnx::{
    ensure_onnx, read_onnx_info, write_onnx, write_onnx_with, ExternalData, OnnxExportOptions,
    IR_VERSION, ONNX_DATA_FILE, ONNX_FILE, OPSET_VERSION, PRODUCER_NAME,
};
use tcobench_backends::{Backend, BackendError, DType, Device, OrtBackend, OrtThreads};

use crate::common::*;

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(fs::read(path).unwrap().as_slice()).unwrap()
}

/// (element type, dims as strings: fixed sizes as numbers, symbolic ones by name).
fn signature(v: &ValueInfoProto) -> (i32, Vec<String>) {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref() else {
        panic!("{:?} is not a tensor", v.name)
    };
    let dims = t
        .shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            DimValue::DimValue(v) => v.to_string(),
            DimValue::DimParam(p) => p.clone(),
        })
        .collect();
    (t.elem_type.unwrap(), dims)
}

fn initializer<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
    model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

#[test]
fn every_weight_is_an_initializer_bit_for_bit() {
    let (_t, dir) = tiny_with_onnx(3);
    let model = decode(&dir.join(ONNX_FILE));
    let weights = read_safetensors(&dir.join("model.safetensors"));
    assert_eq!(
        weights.len(),
        20,
        "tiny: embedding, 2 × 9 layer tensors, final norm"
    );
    for (name, (dtype, shape, bytes)) in &weights {
        assert_eq!(dtype, "F32");
        let t = initializer(&model, name);
        assert_eq!(t.data_type, Some(DATA_TYPE_FLOAT), "{name}");
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(&dims, shape, "{name}");
        assert_eq!(t.raw_data.as_ref(), Some(bytes), "{name}: bytes differ");
        assert!(t.external_data.is_empty() && t.data_location.is_none());
    }
}

#[test]
fn inputs_and_outputs_follow_the_optimum_convention() {
    let (_t, dir) = tiny_with_onnx(3);
    let model = decode(&dir.join(ONNX_FILE));
    assert_eq!(model.ir_version, Some(IR_VERSION));
    // ONNX Runtime 1.31 refuses newer IR versions.
    const { assert!(IR_VERSION <= 10) };
    assert_eq!(model.producer_name.as_deref(), Some(PRODUCER_NAME));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(model.opset_import[0].version, Some(OPSET_VERSION));
    let graph = model.graph.as_ref().unwrap();
    let sig = |list: &[ValueInfoProto]| -> Vec<(String, i32, Vec<String>)> {
        list.iter()
            .map(|v| {
                let (t, d) = signature(v);
                (v.name.clone().unwrap(), t, d)
            })
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let mut want_in = vec![
        (
            "input_ids".to_owned(),
            DATA_TYPE_INT64,
            s(&["batch_size", "sequence_length"]),
        ),
        (
            "attention_mask".to_owned(),
            DATA_TYPE_INT64,
            s(&["batch_size", "total_sequence_length"]),
        ),
        (
            "position_ids".to_owned(),
            DATA_TYPE_INT64,
            s(&["batch_size", "sequence_length"]),
        ),
    ];
    let mut want_out = vec![(
        "logits".to_owned(),
        DATA_TYPE_FLOAT,
        s(&["batch_size", "sequence_length", "512"]),
    )];
    for layer in 0..2 {
        for kind in ["key", "value"] {
            want_in.push((
                format!("past_key_values.{layer}.{kind}"),
                DATA_TYPE_FLOAT,
                s(&["batch_size", "2", "past_sequence_length", "16"]),
            ));
            want_out.push((
                format!("present.{layer}.{kind}"),
                DATA_TYPE_FLOAT,
                s(&["batch_size", "2", "total_sequence_length", "16"]),
            ));
        }
    }
    assert_eq!(sig(&graph.input), want_in);
    assert_eq!(sig(&graph.output), want_out);
    // Standard operators only.
    for node in &graph.node {
        assert_eq!(node.domain.as_deref().unwrap_or(""), "", "{:?}", node.name);
    }
    let ops: std::collections::BTreeSet<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    for op in [
        "Gather",
        "Gemm",
        "MatMul",
        "Softmax",
        "Concat",
        "Sigmoid",
        "ReduceMean",
    ] {
        assert!(ops.contains(op), "{op} missing from {ops:?}");
    }

    // Without a cache: no past inputs, no present outputs, the mask spans the sequence.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(ONNX_FILE);
    let options = OnnxExportOptions {
        kv_cache: false,
        ..OnnxExportOptions::default()
    };
    write_onnx_with(&dir, &out, &options).unwrap();
    let model = decode(&out);
    let graph = model.graph.as_ref().unwrap();
    let names: Vec<_> = graph
        .input
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["input_ids", "attention_mask", "position_ids"]);
    assert_eq!(
        signature(&graph.input[1]).1,
        s(&["batch_size", "sequence_length"])
    );
    assert_eq!(graph.output.len(), 1);
}

#[test]
fn the_onnx_checker_accepts_both_variants() {
    if !python_has("onnx") {
        skip_notice(
            "onnx.checker check of the written models: `python3 -c \"import onnx\"` fails \
             (pip install onnx to run it)",
        );
        return;
    }
    let (_t, dir) = tiny_with_onnx(3);
    let no_cache = dir.join("no-cache.onnx");
    let options = OnnxExportOptions {
        kv_cache: false,
        ..OnnxExportOptions::default()
    };
    write_onnx_with(&dir, &no_cache, &options).unwrap();
    for path in [dir.join(ONNX_FILE), no_cache] {
        let out = std::process::Command::new(python())
            .args([
                "-c",
                "import onnx, sys; m = onnx.load(sys.argv[1]); \
                 onnx.checker.check_model(m, full_check=True); print('ok')",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn external_data_holds_the_same_bytes_page_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = materialize(BuiltinModel::Tiny, 4, &tmp.path().join("tiny")).unwrap();
    let out_dir = tmp.path().join("external");
    copy_config(&dir, &out_dir);
    let options = OnnxExportOptions {
        external_data: ExternalData::External,
        ..OnnxExportOptions::default()
    };
    write_onnx_with(&dir, &out_dir.join(ONNX_FILE), &options).unwrap();
    let model = decode(&out_dir.join(ONNX_FILE));
    let data = fs::read(out_dir.join(ONNX_DATA_FILE)).unwrap();
    let weights = read_safetensors(&dir.join("model.safetensors"));
    for (name, (_, _, bytes)) in &weights {
        let t = initializer(&model, name);
        assert_eq!(t.data_location, Some(DATA_LOCATION_EXTERNAL), "{name}");
        assert!(t.raw_data.is_none());
        let field = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(k))
                .and_then(|e| e.value.clone())
                .unwrap()
        };
        assert_eq!(field("location"), ONNX_DATA_FILE);
        let offset: usize = field("offset").parse().unwrap();
        let length: usize = field("length").parse().unwrap();
        assert_eq!(offset % 4096, 0, "{name}");
        assert_eq!(&data[offset..offset + length], bytes.as_slice(), "{name}");
    }
    // ONNX Runtime finds the data beside the model and computes what the inline model computes.
    write_onnx(&dir).unwrap();
    let probe = |d: &Path| {
        OrtBackend::load(runtime(), d, Device::Cpu, DType::F32, OrtThreads::default())
            .unwrap()
            .logits_probe(&prompt(6, 1), &[3, 4])
            .unwrap()
    };
    assert_eq!(probe(&out_dir), probe(&dir));

    // No temporary files are left behind.
    let mut files: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["config.json", ONNX_FILE, ONNX_DATA_FILE]);
}

#[test]
fn ensure_onnx_writes_once_and_rewrites_stale_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = materialize(BuiltinModel::Tiny, 5, &tmp.path().join("tiny")).unwrap();
    let path = ensure_onnx(&dir).unwrap();
    assert_eq!(path, dir.join(ONNX_FILE));
    let first = fs::read(&path).unwrap();
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(ensure_onnx(&dir).unwrap(), path);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);

    // Our file written from other weights (another fingerprint) is rewritten.
    let mut model = decode(&path);
    for e in &mut model.metadata_props {
        if e.key.as_deref() == Some("tcobench.source_fingerprint") {
            e.value = Some("0".repeat(64));
        }
    }
    fs::write(&path, model.encode_to_vec()).unwrap();
    ensure_onnx(&dir).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first);

    // A damaged file is rewritten too.
    fs::write(&path, &first[..first.len() / 2]).unwrap();
    ensure_onnx(&dir).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first);

    // Another producer's model (a user's own export) is left alone.
    let mut model = decode(&path);
    model.producer_name = Some("pytorch".to_owned());
    model.metadata_props.clear();
    let foreign = model.encode_to_vec();
    fs::write(&path, &foreign).unwrap();
    ensure_onnx(&dir).unwrap();
    assert_eq!(fs::read(&path).unwrap(), foreign);

    // Without weights to rewrite it from, our own file is kept whatever its fingerprint says.
    let no_weights = tmp.path().join("no-weights");
    copy_config(&dir, &no_weights);
    let options = OnnxExportOptions {
        kv_cache: false,
        ..OnnxExportOptions::default()
    };
    write_onnx_with(&dir, &no_weights.join(ONNX_FILE), &options).unwrap();
    let kept = fs::read(no_weights.join(ONNX_FILE)).unwrap();
    assert_eq!(
        ensure_onnx(&no_weights).unwrap(),
        no_weights.join(ONNX_FILE)
    );
    assert_eq!(fs::read(no_weights.join(ONNX_FILE)).unwrap(), kept);

    // The writer is deterministic.
    write_onnx(&dir).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first);
}

#[test]
fn read_onnx_info_reads_the_header_and_catches_truncation() {
    let (_t, dir) = tiny_with_onnx(3);
    let path = dir.join(ONNX_FILE);
    let info = read_onnx_info(&path).unwrap();
    assert_eq!(info.ir_version, Some(IR_VERSION));
    assert_eq!(info.producer_name.as_deref(), Some(PRODUCER_NAME));
    assert_eq!(info.opset_import, [(String::new(), OPSET_VERSION)]);
    assert_eq!(info.metadata("tcobench.kv_cache"), Some("true"));
    assert!(info.has_graph);

    let bytes = fs::read(&path).unwrap();
    let cut = dir.join("cut.onnx");
    fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let err = read_onnx_info(&cut).unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("cut.onnx"),
        "{err}"
    );
    fs::write(&cut, b"").unwrap();
    let err = read_onnx_info(&cut).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    fs::write(&cut, b"{\"not\": \"onnx\"}").unwrap();
    assert!(read_onnx_info(&cut).is_err());
    let err = read_onnx_info(&dir.join("absent.onnx")).unwrap_err();
    assert!(matches!(err, BackendError::Model { .. }), "{err}");
}

#[test]
fn half_precision_checkpoints_are_widened_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = custom_model_dir(tmp.path());
    write_onnx(&dir).unwrap();
    let model = decode(&dir.join(ONNX_FILE));
    for (name, (dtype, _, bytes)) in read_safetensors(&dir.join("model.safetensors")) {
        assert_eq!(dtype, "BF16");
        let widened: Vec<u8> = bytes
            .chunks_exact(2)
            .flat_map(|b| (u32::from(u16::from_le_bytes([b[0], b[1]])) << 16).to_le_bytes())
            .collect();
        assert_eq!(
            initializer(&model, &name).raw_data.as_ref(),
            Some(&widened),
            "{name}"
        );
    }
    assert!(initializer(&model, "lm_head.weight").raw_data.is_some());
}

#[test]
fn weights_that_do_not_fit_the_config_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = materialize(BuiltinModel::Tiny, 1, &tmp.path().join("tiny")).unwrap();
    let mut cfg = BuiltinModel::Tiny.config();
    cfg.tie_word_embeddings = false;
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let err = write_onnx(&dir).unwrap_err().to_string();
    assert!(
        err.contains("lm_head.weight") && err.contains("missing"),
        "{err}"
    );
    assert!(!dir.join(ONNX_FILE).exists());
}
