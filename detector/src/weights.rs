//! Weights and checkpoints in the safetensors layout (an 8-byte little-endian header length, a
//! JSON header naming each tensor's dtype, shape and byte range, then the raw little-endian
//! data), written by hand: the format is a page of code, Python's `safetensors` reads the files,
//! and the same tensors always give the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{DetectorError, io_at};

/// A named `f32` tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A weights file's tensors and its `__metadata__` strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TensorFile {
    pub tensors: Vec<Tensor>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The encoded file: tensors in the order given, the header padded with spaces to a multiple
    /// of 8 bytes as the format recommends.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Map::new();
        if !self.metadata.is_empty() {
            let metadata: Map<String, Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            header.insert("__metadata__".into(), Value::Object(metadata));
        }
        let mut offset = 0_usize;
        for tensor in &self.tensors {
            let end = offset + tensor.data.len() * 4;
            header.insert(
                tensor.name.clone(),
                json!({"dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut header = Value::Object(header).to_string().into_bytes();
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for tensor in &self.tensors {
            for value in &tensor.data {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<(), DetectorError> {
        write_atomic(path, &self.encode())
    }

    pub fn read(path: &Path) -> Result<Self, DetectorError> {
        let bytes = std::fs::read(path).map_err(io_at(path))?;
        Self::decode(&bytes).map_err(|reason| DetectorError::BadWeights {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a file, checking every tensor's range and size; only `F32` tensors are accepted.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let length_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("shorter than the 8-byte header length")?;
        let header_len = usize::try_from(u64::from_le_bytes(length_bytes))
            .map_err(|_| "header length does not fit in memory")?;
        let data_start = 8_usize
            .checked_add(header_len)
            .filter(|&end| end <= bytes.len())
            .ok_or("header length runs past the end of the file")?;
        let header: Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| format!("header is not a JSON object: {e}"))?;
        let data = &bytes[data_start..];
        let mut file = TensorFile::default();
        for (name, entry) in header {
            if name == "__metadata__" {
                let Value::Object(metadata) = entry else {
                    return Err("`__metadata__` is not an object".into());
                };
                for (key, value) in metadata {
                    let Value::String(value) = value else {
                        return Err(format!("metadata {key:?} is not a string"));
                    };
                    file.metadata.insert(key, value);
                }
                continue;
            }
            let bad = |what: &str| format!("tensor {name:?}: {what}");
            if entry.get("dtype").and_then(Value::as_str) != Some("F32") {
                return Err(bad("dtype is not F32"));
            }
            let shape: Vec<usize> = entry
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|dims| {
                    dims.iter()
                        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                        .collect()
                })
                .ok_or_else(|| bad("shape is not a list of sizes"))?;
            let range: Vec<usize> = entry
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|o| {
                    o.iter()
                        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                        .collect()
                })
                .filter(|o: &Vec<usize>| o.len() == 2 && o[0] <= o[1] && o[1] <= data.len())
                .ok_or_else(|| bad("data_offsets are not a range inside the file"))?;
            let count: usize = shape.iter().product();
            if range[1] - range[0] != count * 4 {
                return Err(bad("byte range does not match the shape"));
            }
            let values = data[range[0]..range[1]]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            file.tensors.push(Tensor {
                name,
                shape,
                data: values,
            });
        }
        Ok(file)
    }
}

/// Writes a file through a temporary sibling and a rename, so that a crash never leaves half a
/// file under the final name.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DetectorError> {
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&temporary, bytes).map_err(io_at(&temporary))?;
    std::fs::rename(&temporary, path).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        DetectorError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let file = TensorFile {
            tensors: vec![
                Tensor {
                    name: "w".into(),
                    shape: vec![2, 3],
                    data: vec![1.0, -2.0, 3.5, 0.0, f32::MIN_POSITIVE, 7.0],
                },
                Tensor {
                    name: "b".into(),
                    shape: vec![1],
                    data: vec![0.25],
                },
            ],
            metadata: [("epoch".to_string(), "3".to_string())].into(),
        };
        let bytes = file.encode();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        assert_eq!(header_len % 8, 0);
        assert_eq!(bytes.len() as u64, 8 + header_len + 7 * 4);
        let back = TensorFile::decode(&bytes).expect("decodes");
        assert_eq!(back.metadata, file.metadata);
        assert_eq!(back.get("w"), file.get("w"));
        assert_eq!(back.get("b"), file.get("b"));
    }

    #[test]
    fn rejects_truncated_data() {
        let file = TensorFile {
            tensors: vec![Tensor {
                name: "w".into(),
                shape: vec![4],
                data: vec![1.0; 4],
            }],
            metadata: BTreeMap::new(),
        };
        let bytes = file.encode();
        let error = TensorFile::decode(&bytes[..bytes.len() - 1]).expect_err("truncated");
        assert!(error.contains("data_offsets"), "{error}");
    }
}
