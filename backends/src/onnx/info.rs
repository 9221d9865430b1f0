//! Reading an ONNX file's top-level fields (IR version, producer, opsets, metadata) without
//! decoding its graph: [`read_onnx_info`] walks the protobuf framing with its own varint reader.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use prost::Message;

use super::proto::{OperatorSetIdProto, StringStringEntryProto};
use crate::model::{io_error, model_error};
use crate::BackendError;

/// The top-level fields of an ONNX model file, read without decoding its graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxFileInfo {
    /// `ir_version`.
    pub ir_version: Option<i64>,
    /// `producer_name` (`tcobench` for files this crate wrote).
    pub producer_name: Option<String>,
    /// `producer_version`.
    pub producer_version: Option<String>,
    /// `opset_import` as (domain, version); the default domain is `""`.
    pub opset_import: Vec<(String, i64)>,
    /// `metadata_props` as (key, value).
    pub metadata_props: Vec<(String, String)>,
    /// Whether the file has a graph.
    pub has_graph: bool,
}

impl OnnxFileInfo {
    /// The value of metadata key `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata_props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the top-level fields of the ONNX file at `path`, skipping over the graph, and checks
/// that the protobuf framing of the file is intact (a truncated or non-ONNX file is an error
/// that names the file).
pub fn read_onnx_info(path: &Path) -> Result<OnnxFileInfo, BackendError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            model_error(path, "missing")
        } else {
            io_error(path, e)
        }
    })?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let bad = |m: String| model_error(path, format!("not a valid ONNX model file: {m}"));
    if file_len == 0 {
        return Err(bad("the file is empty".to_owned()));
    }
    let mut r = BufReader::new(file);
    let mut pos = 0u64;
    let mut info = OnnxFileInfo::default();
    while pos < file_len {
        let key = read_varint(&mut r, &mut pos).map_err(|e| bad(format!("at byte {pos}: {e}")))?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = read_varint(&mut r, &mut pos)
                    .map_err(|e| bad(format!("field {field}: {e}")))?;
                if field == 1 {
                    info.ir_version = Some(v as i64);
                }
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if pos + n > file_len {
                    return Err(bad(format!(
                        "truncated: field {field} runs past the end of the file"
                    )));
                }
                r.seek_relative(n as i64).map_err(|e| io_error(path, e))?;
                pos += n;
            }
            2 => {
                let len = read_varint(&mut r, &mut pos)
                    .map_err(|e| bad(format!("field {field}: {e}")))?;
                if len > file_len - pos {
                    return Err(bad(format!(
                        "truncated: field {field} claims {len} bytes, only {} remain (the file has {file_len} bytes)",
                        file_len - pos
                    )));
                }
                let wanted = matches!(field, 2 | 3 | 8 | 14);
                if wanted {
                    let mut buf = vec![0u8; len as usize];
                    r.read_exact(&mut buf).map_err(|e| io_error(path, e))?;
                    let text = || String::from_utf8_lossy(&buf).into_owned();
                    match field {
                        2 => info.producer_name = Some(text()),
                        3 => info.producer_version = Some(text()),
                        8 => {
                            let o = OperatorSetIdProto::decode(buf.as_slice())
                                .map_err(|e| bad(format!("opset_import: {e}")))?;
                            info.opset_import
                                .push((o.domain.unwrap_or_default(), o.version.unwrap_or(0)));
                        }
                        _ => {
                            let e = StringStringEntryProto::decode(buf.as_slice())
                                .map_err(|e| bad(format!("metadata_props: {e}")))?;
                            info.metadata_props
                                .push((e.key.unwrap_or_default(), e.value.unwrap_or_default()));
                        }
                    }
                } else {
                    r.seek_relative(len as i64).map_err(|e| io_error(path, e))?;
                }
                if field == 7 {
                    info.has_graph = true;
                }
                pos += len;
            }
            _ => {
                return Err(bad(format!(
                    "unexpected wire type {wire} of field {field} at byte {pos}"
                )))
            }
        }
    }
    if !info.has_graph {
        return Err(bad("it has no graph".to_owned()));
    }
    if info.ir_version.is_none() {
        return Err(bad("it has no ir_version".to_owned()));
    }
    Ok(info)
}

/// Reads one protobuf varint, advancing `pos`.
fn read_varint(r: &mut impl Read, pos: &mut u64) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8];
        r.read_exact(&mut byte)
            .map_err(|_| "truncated in the middle of a field".to_owned())?;
        *pos += 1;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed varint".to_owned())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            let mut pos = 0;
            assert_eq!(read_varint(&mut buf.as_slice(), &mut pos).unwrap(), v);
            assert_eq!(pos as usize, buf.len());
        }
        let mut pos = 0;
        assert!(read_varint(&mut [0x80u8].as_slice(), &mut pos).is_err());
    }
}
