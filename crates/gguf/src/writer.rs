//! Writing GGUF v3 files: metadata, tensor table, aligned and zero-padded tensor data.

use std::io::Write;

use edgeinfer_tensor::Tensor;

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

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", Value::U32(a)) if a.is_power_of_two() => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Write the whole file.
    pub fn write(&self, w: &mut impl Write) -> Result<(), GgufError> {
        let io = |e: std::io::Error| GgufError::Write(e.to_string());
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut head, k).map_err(io)?;
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            write_value(&mut head, v).map_err(io)?;
        }
        let align = self.alignment() as usize;
        let pad = |n: usize| n.div_ceil(align) * align;
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            write_str(&mut head, name).map_err(io)?;
            head.extend_from_slice(&(t.shape().len() as u32).to_le_bytes());
            for &d in t.shape() {
                head.extend_from_slice(&(d as u64).to_le_bytes());
            }
            head.extend_from_slice(&t.dtype().gguf_id().to_le_bytes());
            head.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = pad(offset + t.data().len());
        }
        head.resize(pad(head.len()), 0);
        w.write_all(&head).map_err(io)?;
        for (_, t) in &self.tensors {
            w.write_all(t.data()).map_err(io)?;
            let padding = pad(t.data().len()) - t.data().len();
            w.write_all(&vec![0u8; padding]).map_err(io)?;
        }
        Ok(())
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
