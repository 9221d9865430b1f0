//! The graph builder: [`GraphBuilder`] names every node and constant uniquely, offers the
//! operations the decoder is made of (RMSNorm, linear layers, rotate-half RoPE) and finishes the
//! graph with the typed inputs and outputs of the Optimum decoder convention.

use std::collections::HashSet;

use super::names;
use super::proto::{
    attribute_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, NodeProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64,
};
use crate::ModelConfig;

/// Accumulates nodes and initializers with unique value names.
#[derive(Default)]
pub(super) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    pub(super) initializers: Vec<TensorProto>,
    constants: HashSet<String>,
    next_id: usize,
}

pub(super) fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        i: Some(value),
        r#type: Some(attribute_type::INT),
        ..AttributeProto::default()
    }
}

pub(super) fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        ints: values.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..AttributeProto::default()
    }
}

impl GraphBuilder {
    /// Adds a node `op_type(inputs)` with one output named `<scope>/<op_type>_<n>`.
    pub(super) fn op(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{scope}/{op_type}_{}", self.next_id);
        self.next_id += 1;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![name.clone()],
            name: Some(name.clone()),
            op_type: Some(op_type.to_owned()),
            attribute: attrs,
            ..NodeProto::default()
        });
        name
    }

    /// Like [`GraphBuilder::op`], with the output named `output` (a graph output).
    pub(super) fn op_to(
        &mut self,
        output: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: Some(format!("{output}/{op_type}")),
            op_type: Some(op_type.to_owned()),
            attribute: attrs,
            ..NodeProto::default()
        });
    }

    fn constant(&mut self, name: String, tensor: impl FnOnce(String) -> TensorProto) -> String {
        if self.constants.insert(name.clone()) {
            self.initializers.push(tensor(name.clone()));
        }
        name
    }

    /// A 1-D int64 constant.
    pub(super) fn ints(&mut self, values: &[i64]) -> String {
        let key: Vec<String> = values
            .iter()
            .map(|v| v.to_string().replace('-', "m"))
            .collect();
        self.constant(format!("const.i64s.{}", key.join("_")), |name| {
            TensorProto {
                dims: vec![values.len() as i64],
                data_type: Some(DATA_TYPE_INT64),
                name: Some(name),
                raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                ..TensorProto::default()
            }
        })
    }

    /// A scalar int64 constant.
    pub(super) fn int(&mut self, value: i64) -> String {
        self.constant(
            format!("const.i64.{}", value.to_string().replace('-', "m")),
            |name| TensorProto {
                dims: vec![],
                data_type: Some(DATA_TYPE_INT64),
                name: Some(name),
                raw_data: Some(value.to_le_bytes().to_vec()),
                ..TensorProto::default()
            },
        )
    }

    /// A scalar f32 constant.
    pub(super) fn float(&mut self, label: &str, value: f32) -> String {
        self.constant(format!("const.f32.{label}"), |name| TensorProto {
            dims: vec![],
            data_type: Some(DATA_TYPE_FLOAT),
            name: Some(name),
            raw_data: Some(value.to_le_bytes().to_vec()),
            ..TensorProto::default()
        })
    }

    /// `x / sqrt(mean(x², last axis) + eps) · weight`, in the pattern ONNX Runtime fuses into
    /// its `SimplifiedLayerNormalization` kernel.
    pub(super) fn rms_norm(&mut self, scope: &str, x: &str, weight: &str, eps: &str) -> String {
        let two = self.float("2", 2.0);
        let sq = self.op(scope, "Pow", &[x, &two], vec![]);
        let mean = self.op(
            scope,
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
        );
        let var = self.op(scope, "Add", &[&mean, eps], vec![]);
        let rms = self.op(scope, "Sqrt", &[&var], vec![]);
        let normed = self.op(scope, "Div", &[x, &rms], vec![]);
        self.op(scope, "Mul", &[&normed, weight], vec![])
    }

    /// `x · weightᵀ` for a `[rows, in]` activation and an `[out, in]` weight.
    pub(super) fn linear(&mut self, scope: &str, x: &str, weight: &str) -> String {
        self.op(scope, "Gemm", &[x, weight], vec![attr_int("transB", 1)])
    }

    /// Rotate-half RoPE of `x` `[b, heads, s, head_dim]` with `cos`/`sin` `[b, 1, s, head_dim]`.
    pub(super) fn rope(
        &mut self,
        scope: &str,
        x: &str,
        cos: &str,
        sin: &str,
        head_dim: i64,
    ) -> String {
        let half = head_dim / 2;
        let (zero, mid, end, axis) = (
            self.ints(&[0]),
            self.ints(&[half]),
            self.ints(&[head_dim]),
            self.ints(&[3]),
        );
        let x1 = self.op(scope, "Slice", &[x, &zero, &mid, &axis], vec![]);
        let x2 = self.op(scope, "Slice", &[x, &mid, &end, &axis], vec![]);
        let neg_x2 = self.op(scope, "Neg", &[&x2], vec![]);
        let rotated = self.op(scope, "Concat", &[&neg_x2, &x1], vec![attr_int("axis", 3)]);
        let a = self.op(scope, "Mul", &[x, cos], vec![]);
        let b = self.op(scope, "Mul", &[&rotated, sin], vec![]);
        self.op(scope, "Add", &[&a, &b], vec![])
    }

    pub(super) fn finish(self, config: &ModelConfig, kv_cache: bool) -> GraphProto {
        let kv = Dim::Fixed(config.num_key_value_heads as i64);
        let hd = Dim::Fixed(config.head_dim() as i64);
        let (batch, seq, past, total) = (
            Dim::Sym("batch_size"),
            Dim::Sym("sequence_length"),
            Dim::Sym("past_sequence_length"),
            Dim::Sym("total_sequence_length"),
        );
        let mask_len = if kv_cache { total } else { seq };
        let mut input = vec![
            value_info(names::INPUT_IDS, DATA_TYPE_INT64, &[batch, seq]),
            value_info(names::ATTENTION_MASK, DATA_TYPE_INT64, &[batch, mask_len]),
            value_info(names::POSITION_IDS, DATA_TYPE_INT64, &[batch, seq]),
        ];
        let mut output = vec![value_info(
            names::LOGITS,
            DATA_TYPE_FLOAT,
            &[batch, seq, Dim::Fixed(config.vocab_size as i64)],
        )];
        if kv_cache {
            for layer in 0..config.num_hidden_layers {
                for name in [names::past_key(layer), names::past_value(layer)] {
                    input.push(value_info(&name, DATA_TYPE_FLOAT, &[batch, kv, past, hd]));
                }
                for name in [names::present_key(layer), names::present_value(layer)] {
                    output.push(value_info(&name, DATA_TYPE_FLOAT, &[batch, kv, total, hd]));
                }
            }
        }
        GraphProto {
            node: self.nodes,
            name: Some("llama_decoder".to_owned()),
            initializer: self.initializers,
            doc_string: None,
            input,
            output,
            value_info: vec![],
        }
    }
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
enum Dim {
    Fixed(i64),
    Sym(&'static str),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_owned()),
            }),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}
