//! Writing GGUF v3 files: metadata, tensor table, aligned and zero-padded tensor data.
//!
//! [`GgufWriter`] collects everything in memory and writes it at once; [`GgufStreamWriter`]
//! writes the header from the tensors' names, types and shapes alone and then takes each
//! tensor's bytes in turn, so a tool can produce a file one tensor at a time.

use std::collections::HashSet;
use std::io::Write;

use edgeinfer_tensor::{DType, Tensor};

use crate::value::{Value, ValueType};
use crate::{GgufError, DEFAULT_ALIGNMENT, MAGIC};

/// Builds a GGUF file in memory order: add metadata and tensors, then [`GgufWriter::write`].
///
/// Tensor offsets are laid out in insertion order, each padded to the alignment
/// (`general.alignment` if set as u32, otherwise 32).
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Tensor<'a>)>,
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_str(w, s),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Array(t, items) => {
            w.write_all(&(*t as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| write_value(w, i))
        }
    }
}

fn check_array(key: &str, v: &Value) -> Result<(), GgufError> {
    if let Value::Array(t, items) = v {
        for i in items {
            if i.value_type() != *t {
                return Err(GgufError::Write(format!(
                    "key {key:?}: array<{t}> holds a {}",
                    i.type_name()
                )));
            }
            check_array(key, i)?;
        }
    }
    Ok(())
}

impl<'a> GgufWriter<'a> {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a metadata key. Duplicate keys and arrays whose items are not all of the declared
    /// type are errors.
    pub fn add_metadata(&mut self, key: &str, value: Value) -> Result<&mut Self, GgufError> {
        if self.metadata.iter().any(|(k, _)| k == key) {
            return Err(GgufError::DuplicateKey { key: key.into() });
        }
        check_array(key, &value)?;
        self.metadata.push((key.to_string(), value));
        Ok(self)
    }

    /// Add a string-array key.
    pub fn add_str_array<S: AsRef<str>>(
        &mut self,
        key: &str,
        items: &[S],
    ) -> Result<&mut Self, GgufError> {
        let v = items
            .iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect();
        self.add_metadata(key, Value::Array(ValueType::String, v))
    }

    /// Add a tensor (owned or borrowed).
    pub fn add_tensor(&mut self, name: &str, tensor: Tensor<'a>) -> Result<&mut Self, GgufError> {
        if self.tensors.iter().any(|(n, _)| n == name) {
            return Err(GgufError::DuplicateTensor { name: name.into() });
        }
        if tensor.shape().len() > crate::MAX_DIMS || tensor.shape().is_empty() {
            return Err(GgufError::TooManyDims {
                tensor: name.into(),
                n_dims: tensor.shape().len() as u32,
            });
        }
        self.tensors.push((name.to_string(), tensor));
        Ok(self)
    }

    /// Add an f32 tensor from values.
    pub fn add_f32(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
    ) -> Result<&mut Self, GgufError> {
        let t = Tensor::from_f32(shape, values)
            .map_err(|e| GgufError::Write(format!("{name}: {e}")))?;
        self.add_tensor(name, t)
    }

    /// Write the whole file.
    pub fn write(&self, w: &mut impl Write) -> Result<(), GgufError> {
        let entries: Vec<TensorEntry> = self
            .tensors
            .iter()
            .map(|(name, t)| TensorEntry {
                name: name.clone(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
            })
            .collect();
        let metadata = self.metadata.iter().map(|(k, v)| (k.as_str(), v));
        let mut stream = GgufStreamWriter::new(w, metadata, &entries)?;
        for (_, t) in &self.tensors {
            stream.write_tensor(t.data())?;
        }
        stream.finish().map(|_| ())
    }

    /// Write into a new `Vec<u8>`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut v = Vec::new();
        self.write(&mut v)?;
        Ok(v)
    }

    /// Write to `path` (via a temporary file renamed into place, so a failure never leaves a
    /// half-written file under the final name).
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let tmp = path.with_extension("gguf.part");
        let io = |e: std::io::Error| GgufError::Io {
            path: path.to_path_buf(),
            error: e,
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        self.write(&mut f)?;
        f.flush().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// One tensor of a file to be written: name, element type and shape (GGML order, innermost
/// first; written with as many dimensions as `shape` has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Writes a GGUF v3 file tensor by tensor: [`GgufStreamWriter::new`] writes the header (the
/// layout follows from types and shapes), then [`GgufStreamWriter::write_tensor`] takes each
/// tensor's bytes in table order and pads them to the alignment (`general.alignment` if set,
/// as a u32 power of two, otherwise 32), and [`GgufStreamWriter::finish`] checks that every
/// tensor came.
pub struct GgufStreamWriter<W: Write> {
    w: W,
    /// Name and byte size of every tensor, in order.
    tensors: Vec<(String, usize)>,
    next: usize,
    align: usize,
}

fn io_err(e: std::io::Error) -> GgufError {
    GgufError::Write(e.to_string())
}

/// The data alignment the metadata asks for; a `general.alignment` that is not a u32 power of
/// two is an error (a reader would reject the file).
fn alignment(metadata: &[(&str, &Value)]) -> Result<usize, GgufError> {
    match metadata.iter().find(|(k, _)| *k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT as usize),
        Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(*a as usize),
        Some((_, v)) => Err(GgufError::Write(format!(
            "general.alignment must be a u32 power of two, not {} {v:?}",
            v.type_name()
        ))),
    }
}

impl<W: Write> GgufStreamWriter<W> {
    /// Check the metadata and tensor table and write the header to `w`.
    pub fn new<'v>(
        mut w: W,
        metadata: impl IntoIterator<Item = (&'v str, &'v Value)>,
        tensors: &[TensorEntry],
    ) -> Result<Self, GgufError> {
        let metadata: Vec<(&str, &Value)> = metadata.into_iter().collect();
        let mut keys = HashSet::new();
        for (k, v) in &metadata {
            if !keys.insert(*k) {
                return Err(GgufError::DuplicateKey { key: k.to_string() });
            }
            check_array(k, v)?;
        }
        let align = alignment(&metadata)?;
        let pad = |n: usize| n.div_ceil(align) * align;
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in &metadata {
            write_str(&mut head, k).map_err(io_err)?;
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            write_value(&mut head, v).map_err(io_err)?;
        }
        let mut names = HashSet::new();
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut offset = 0usize;
        for t in tensors {
            if !names.insert(t.name.as_str()) {
                return Err(GgufError::DuplicateTensor {
                    name: t.name.clone(),
                });
            }
            if t.shape.is_empty() || t.shape.len() > crate::MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    tensor: t.name.clone(),
                    n_dims: t.shape.len() as u32,
                });
            }
            let dims = || t.shape.iter().map(|&d| d as u64).collect::<Vec<_>>();
            let n = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| GgufError::BadShape {
                    tensor: t.name.clone(),
                    dims: dims(),
                    why: "overflows",
                })?;
            let block = t.dtype.block_size();
            let n_bytes = t
                .dtype
                .bytes_for(n)
                .filter(|_| t.shape[0] % block == 0)
                .ok_or_else(|| GgufError::NotBlockMultiple {
                    tensor: t.name.clone(),
                    dtype: t.dtype,
                    dims: dims(),
                    block,
                })?;
            write_str(&mut head, &t.name).map_err(io_err)?;
            head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in &t.shape {
                head.extend_from_slice(&(d as u64).to_le_bytes());
            }
            head.extend_from_slice(&t.dtype.gguf_id().to_le_bytes());
            head.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = offset
                .checked_add(n_bytes)
                .map(pad)
                .ok_or_else(|| GgufError::Write("tensor data overflows".into()))?;
            sizes.push((t.name.clone(), n_bytes));
        }
        head.resize(pad(head.len()), 0);
        w.write_all(&head).map_err(io_err)?;
        Ok(GgufStreamWriter {
            w,
            tensors: sizes,
            next: 0,
            align,
        })
    }

    /// The name of the tensor [`Self::write_tensor`] expects next, if any is left.
    pub fn next_tensor(&self) -> Option<&str> {
        self.tensors.get(self.next).map(|(n, _)| n.as_str())
    }

    /// Write the next tensor's bytes (exactly its size in the table) and its padding.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), GgufError> {
        let Some((name, size)) = self.tensors.get(self.next) else {
            return Err(GgufError::Write(format!(
                "all {} tensors are already written",
                self.tensors.len()
            )));
        };
        if data.len() != *size {
            return Err(GgufError::Write(format!(
                "tensor {name:?}: {} bytes given, the table says {size}",
                data.len()
            )));
        }
        self.w.write_all(data).map_err(io_err)?;
        let padding = data.len().div_ceil(self.align) * self.align - data.len();
        self.w.write_all(&vec![0u8; padding]).map_err(io_err)?;
        self.next += 1;
        Ok(())
    }

    /// Check that every tensor was written, flush, and give the writer back.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if let Some(name) = self.next_tensor() {
            return Err(GgufError::Write(format!(
                "tensor {name:?} and {} more were never written",
                self.tensors.len() - self.next - 1
            )));
        }
        self.w.flush().map_err(io_err)?;
        Ok(self.w)
    }
}
