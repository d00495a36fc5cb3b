//! The header parser. Works on a byte slice (the mapped file), so it never reads past what the
//! file holds and never allocates more than the file could describe.

use edgeinfer_tensor::DType;

use crate::value::{Metadata, Value, ValueType};
use crate::{GgufError, DEFAULT_ALIGNMENT, MAGIC};

/// Most dimensions a tensor may have (as ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest array nesting accepted in metadata (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: usize = 3;

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape in GGML order (innermost first).
    pub shape: Vec<usize>,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Offset from the start of the file.
    pub absolute_offset: usize,
    /// Size in bytes.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed, validated GGUF header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Metadata,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section and of every tensor offset.
    pub alignment: u64,
    /// Offset of the data section from the start of the file.
    pub data_offset: usize,
    index: std::collections::HashMap<String, usize>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() as u64 {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let offset = self.pos;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| GgufError::InvalidUtf8 {
                what: what(),
                offset,
            })
    }

    /// Read a count and check that `count * min_size` bytes could follow.
    fn count(&mut self, min_size: usize, what: &dyn Fn() -> String) -> Result<usize, GgufError> {
        let offset = self.pos;
        let count = self.u64(what)?;
        let fits = count
            .checked_mul(min_size as u64)
            .is_some_and(|b| b <= self.remaining() as u64);
        if !fits {
            return Err(GgufError::CountTooLarge {
                what: what(),
                count,
                offset,
                remaining: self.remaining(),
            });
        }
        Ok(count as usize)
    }

    fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("value of {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            // Any non-zero byte reads as true, as in llama.cpp.
            ValueType::Bool => Value::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_string(),
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                let offset = self.pos;
                let type_id = self.u32(&|| format!("array type of {key:?}"))?;
                let elem = ValueType::from_id(type_id).ok_or(GgufError::UnknownValueType {
                    key: key.to_string(),
                    type_id,
                    offset,
                })?;
                let n = self.count(elem.min_encoded_size(), &|| {
                    format!("array length of {key:?}")
                })?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(key, elem, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    // alignment is a power of two; an already aligned x stays where it is.
    x.checked_add(alignment - 1).map(|v| v & !(alignment - 1))
}

impl Header {
    /// Parse and validate a GGUF header from the bytes of a whole file.
    pub fn parse(buf: &[u8]) -> Result<Header, GgufError> {
        let mut c = Cursor { buf, pos: 0 };
        let magic = c
            .take(4, &|| "magic".into())
            .map_err(|_| GgufError::BadMagic {
                found: buf.get(..4.min(buf.len())).unwrap_or_default().to_vec(),
            })?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = c.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (a big-endian file? only little-endian GGUF is supported)"
            } else if version == 1 {
                " (version 1 used 32-bit counts and is obsolete)"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion { version, hint });
        }
        // Smallest tensor info: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        let n_tensors = c.count(32, &|| "tensor".into())?;
        // Smallest key/value: key length (8) + type (4) + one byte of value.
        let n_kv = c.count(13, &|| "metadata key/value".into())?;

        let mut metadata = Metadata::default();
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let offset = c.pos;
            let type_id = c.u32(&|| format!("value type of {key:?}"))?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                type_id,
                offset,
            })?;
            let value = c.value(&key, ty, 0)?;
            if metadata.get(&key).is_some() {
                return Err(GgufError::DuplicateKey { key });
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) => u64::from(*a),
            Some(v) => {
                return Err(GgufError::TypeMismatch {
                    key: "general.alignment".into(),
                    expected: "u32",
                    actual: v.type_name(),
                })
            }
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment { alignment });
        }

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut index = std::collections::HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            let n_dims = c.u32(&|| format!("n_dims of tensor {name:?}"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    tensor: name,
                    n_dims,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&|| format!("dim {d} of tensor {name:?}"))?);
            }
            let type_id = c.u32(&|| format!("type of tensor {name:?}"))?;
            let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
            let bad = |why| GgufError::BadShape {
                tensor: name.clone(),
                dims: dims.clone(),
                why,
            };
            if dims.is_empty() {
                return Err(bad("no dimensions"));
            }
            if dims.contains(&0) {
                return Err(bad("zero dimension"));
            }
            let n = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| bad("element count overflows"))?;
            let dtype =
                DType::from_gguf_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                    tensor: name.clone(),
                    type_id,
                })?;
            let block = dtype.block_size() as u64;
            if dims[0] % block != 0 {
                return Err(GgufError::NotBlockMultiple {
                    tensor: name,
                    dtype,
                    dims,
                    block: dtype.block_size(),
                });
            }
            let n_bytes = (n / block)
                .checked_mul(dtype.type_size() as u64)
                .ok_or_else(|| bad("byte size overflows"))?;
            if n_bytes > buf.len() as u64 {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: name,
                    start: offset,
                    end: offset.saturating_add(n_bytes),
                    file_len: buf.len(),
                });
            }
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor {
                    tensor: name,
                    offset,
                    alignment,
                });
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor { name });
            }
            tensors.push(TensorInfo {
                name,
                dtype,
                // n_bytes <= file length (checked above), and every dim <= n, so each dim
                // and the byte size fit usize on every target that could map the file.
                shape: dims.iter().map(|&d| d as usize).collect(),
                offset,
                absolute_offset: 0,
                n_bytes: n_bytes as usize,
            });
        }

        let file_len = buf.len();
        let data_offset = align_up(c.pos as u64, alignment).unwrap_or(u64::MAX);
        if data_offset > file_len as u64 && !tensors.is_empty() {
            return Err(GgufError::Truncated {
                what: "padding before the tensor data".into(),
                offset: c.pos,
                needed: data_offset - c.pos as u64,
                available: c.remaining(),
            });
        }

        let mut spans: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter_mut().enumerate() {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes as u64));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len as u64 => {
                    t.absolute_offset = s as usize;
                    spans.push((s, e, i));
                }
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(GgufError::TensorOverlap {
                    first: tensors[w[0].2].name.clone(),
                    second: tensors[w[1].2].name.clone(),
                });
            }
        }

        Ok(Header {
            version,
            metadata,
            tensors,
            alignment,
            data_offset: data_offset.min(file_len as u64) as usize,
            index,
        })
    }

    /// The tensor-info entry named `name`.
    pub fn find(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
}
