//! The weights of an export: checking every tensor the config needs against the safetensors
//! header ([`plan_weights`]), reading each as little-endian f32 (f16, bf16 and f64 widened or
//! narrowed once) and placing its bytes inline or, page-aligned, in the external data file
//! ([`WeightSink`]).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::proto::{TensorProto, DATA_LOCATION_EXTERNAL, DATA_TYPE_FLOAT};
use super::writer::{entry, ONNX_DATA_FILE};
use crate::model::{io_error, model_error, read_safetensors_header, tensor_specs, TensorEntry};
use crate::{BackendError, ModelConfig};

/// Alignment of tensors in the external data file (the page size, so ONNX Runtime can map them).
const EXTERNAL_ALIGN: u64 = 4096;

/// One weight to copy: its name, shape and where its bytes are.
pub(super) struct PlannedWeight {
    name: String,
    shape: Vec<usize>,
    pub(super) elem_count: usize,
    entry: TensorEntry,
    dtype: SourceDType,
}

/// Float dtypes a checkpoint may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceDType {
    F32,
    F16,
    BF16,
    F64,
}

impl SourceDType {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(SourceDType::F32),
            "F16" => Some(SourceDType::F16),
            "BF16" => Some(SourceDType::BF16),
            "F64" => Some(SourceDType::F64),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            SourceDType::F32 => 4,
            SourceDType::F16 | SourceDType::BF16 => 2,
            SourceDType::F64 => 8,
        }
    }
}

/// Checks every tensor the config needs against the safetensors header (presence, shape, dtype,
/// byte length) before anything is written.
pub(super) fn plan_weights(
    path: &Path,
    config: &ModelConfig,
) -> Result<Vec<PlannedWeight>, BackendError> {
    let header = read_safetensors_header(path)?;
    tensor_specs(config)
        .into_iter()
        .map(|spec| {
            let entry = header
                .tensors
                .get(&spec.name)
                .ok_or_else(|| model_error(path, format!("tensor `{}` is missing", spec.name)))?
                .clone();
            if entry.shape != spec.shape {
                return Err(model_error(
                    path,
                    format!(
                        "tensor `{}` has shape {:?}, the config implies {:?}",
                        spec.name, entry.shape, spec.shape
                    ),
                ));
            }
            let dtype = SourceDType::parse(&entry.dtype).ok_or_else(|| {
                model_error(
                    path,
                    format!(
                        "tensor `{}` has unsupported dtype {} (expected F32, F16, BF16 or F64)",
                        spec.name, entry.dtype
                    ),
                )
            })?;
            let want = (spec.elem_count() * dtype.size()) as u64;
            if entry.end - entry.start != want {
                return Err(model_error(
                    path,
                    format!(
                        "tensor `{}` holds {} bytes, its shape and dtype need {want}",
                        spec.name,
                        entry.end - entry.start
                    ),
                ));
            }
            Ok(PlannedWeight {
                elem_count: spec.elem_count(),
                name: spec.name,
                shape: spec.shape,
                entry,
                dtype,
            })
        })
        .collect()
}

/// The values of `weight` as little-endian f32 bytes (the stored bytes themselves for F32).
pub(super) fn read_weight_f32_le(
    file: &mut File,
    path: &Path,
    weight: &PlannedWeight,
) -> Result<Vec<u8>, BackendError> {
    let mut raw = vec![0u8; (weight.entry.end - weight.entry.start) as usize];
    file.seek(SeekFrom::Start(weight.entry.start))
        .and_then(|_| file.read_exact(&mut raw))
        .map_err(|e| io_error(path, e))?;
    Ok(match weight.dtype {
        SourceDType::F32 => raw,
        SourceDType::BF16 => raw
            .chunks_exact(2)
            .flat_map(|b| {
                f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16).to_le_bytes()
            })
            .collect(),
        SourceDType::F16 => raw
            .chunks_exact(2)
            .flat_map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])).to_le_bytes())
            .collect(),
        SourceDType::F64 => raw
            .chunks_exact(8)
            .flat_map(|b| {
                let v = f64::from_le_bytes(b.try_into().expect("chunks of 8"));
                (v as f32).to_le_bytes()
            })
            .collect(),
    })
}

/// IEEE binary16 to f32 (exact: every half value is representable).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise the mantissa.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Where initializer bytes go.
pub(super) enum WeightSink {
    Inline,
    External {
        writer: BufWriter<File>,
        offset: u64,
        path: PathBuf,
    },
}

impl WeightSink {
    pub(super) fn tensor(
        &mut self,
        weight: &PlannedWeight,
        bytes: Vec<u8>,
    ) -> Result<TensorProto, BackendError> {
        let mut tensor = TensorProto {
            dims: weight.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DATA_TYPE_FLOAT),
            name: Some(weight.name.clone()),
            ..TensorProto::default()
        };
        match self {
            WeightSink::Inline => tensor.raw_data = Some(bytes),
            WeightSink::External {
                writer,
                offset,
                path,
            } => {
                let start = offset.div_ceil(EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
                let pad = (start - *offset) as usize;
                writer
                    .write_all(&vec![0u8; pad])
                    .and_then(|()| writer.write_all(&bytes))
                    .map_err(|e| io_error(path, e))?;
                *offset = start + bytes.len() as u64;
                tensor.data_location = Some(DATA_LOCATION_EXTERNAL);
                tensor.external_data = vec![
                    entry("location", ONNX_DATA_FILE),
                    entry("offset", &start.to_string()),
                    entry("length", &bytes.len().to_string()),
                ];
            }
        }
        Ok(tensor)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
