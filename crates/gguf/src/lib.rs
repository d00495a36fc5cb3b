//! Reading and writing GGUF files.
//!
//! [`GgufFile::open`] memory-maps a file (memmap2) and parses its header and tensor table;
//! [`GgufFile::tensor`] returns a [`Tensor`] that *borrows* the mapped bytes, so loading a
//! model copies no weights. Everything in the file is untrusted: every count, length, type id,
//! shape and offset is checked before use, and a bad file yields a [`GgufError`] naming what is
//! wrong and where, never a panic and never an allocation sized by an unchecked field.
//!
//! Why not the `gguf-rs` crate: it parses into `serde_json::Value`s (losing the u32/i32/u64
//! distinction the accessors need), lets a later duplicate key silently replace an earlier one,
//! allocates string buffers straight from length fields (up to 1 GiB) before checking them
//! against the file, reads arrays only up to a caller-given cap, and its `mmap` feature copies
//! the whole file. A GGUF header is small; a validating parser over the mapped bytes is simpler
//! than working around those.
//!
//! ```no_run
//! let f = edgeinfer_gguf::GgufFile::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let arch = f.metadata().get_str("general.architecture")?;
//! let emb = f.tensor("token_embd.weight")?; // borrows the map
//! println!("{arch}: {} {:?}", emb.dtype(), emb.shape());
//! # Ok::<(), edgeinfer_gguf::GgufError>(())
//! ```

mod parse;
mod value;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use edgeinfer_tensor::{DType, Tensor};
use memmap2::Mmap;

pub use parse::{Header, TensorInfo, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{Metadata, Value, ValueType};
pub use writer::{GgufStreamWriter, GgufWriter, TensorEntry};

/// `GGUF` as the first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Everything that can go wrong reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O error on `path` (the message includes the cause).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A parse error in the file at `path`.
    #[error("{path}: {error}")]
    InFile {
        path: PathBuf,
        error: Box<GgufError>,
    },
    #[error("not a GGUF file: magic {found:02x?} (expected \"GGUF\")")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported GGUF version {version} (supported: 2, 3){hint}")]
    UnsupportedVersion { version: u32, hint: &'static str },
    #[error("truncated file: {what} at offset {offset} needs {needed} bytes, {available} left")]
    Truncated {
        what: String,
        offset: usize,
        needed: u64,
        available: usize,
    },
    #[error("{what} count {count} at offset {offset} is more than the remaining {remaining} bytes could hold")]
    CountTooLarge {
        what: String,
        count: u64,
        offset: usize,
        remaining: usize,
    },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: usize },
    #[error("key {key:?}: unknown value type id {type_id} at offset {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: usize,
    },
    #[error("key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { key: String, max: usize },
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey { key: String },
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor { name: String },
    #[error("tensor {tensor:?}: {n_dims} dimensions (at most {MAX_DIMS} supported)")]
    TooManyDims { tensor: String, n_dims: u32 },
    #[error("tensor {tensor:?}: invalid shape {dims:?} ({why})")]
    BadShape {
        tensor: String,
        dims: Vec<u64>,
        why: &'static str,
    },
    #[error("tensor {tensor:?}: unknown tensor type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error(
        "tensor {tensor:?}: {dtype} needs rows of whole {block}-element blocks, shape {dims:?}"
    )]
    NotBlockMultiple {
        tensor: String,
        dtype: DType,
        dims: Vec<u64>,
        block: usize,
    },
    #[error("general.alignment = {alignment} is not a power of two")]
    BadAlignment { alignment: u64 },
    #[error("tensor {tensor:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {tensor:?}: data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: usize,
    },
    #[error("tensors {first:?} and {second:?} overlap in the data section")]
    TensorOverlap { first: String, second: String },
    #[error("metadata key {key:?} not found")]
    KeyNotFound { key: String },
    #[error("metadata key {key:?}: expected {expected}, found {actual}")]
    TypeMismatch {
        key: String,
        expected: &'static str,
        actual: String,
    },
    #[error("metadata key {key:?}: value {value} out of range")]
    ValueOutOfRange { key: String, value: String },
    #[error("tensor {name:?} not found")]
    TensorNotFound { name: String },
    #[error("writer: {0}")]
    Write(String),
}

impl GgufError {
    /// The error without its file-path wrapper, for matching.
    pub fn root(&self) -> &GgufError {
        match self {
            GgufError::InFile { error, .. } => error.root(),
            e => e,
        }
    }
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in place (mapped or in memory).
pub struct GgufFile {
    path: Option<PathBuf>,
    bytes: Bytes,
    header: Header,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.bytes.as_slice().len())
            .field("n_tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and parse `path`.
    ///
    /// The mapping is read-only and private. As with every mmap-based reader, if another
    /// process truncates the file while it is mapped, touching the lost pages raises SIGBUS;
    /// model files are expected not to change under a running process.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and never handed out as `'static`: every slice borrows
        // `self`. The remaining hazard of any file mapping (another process truncating or
        // rewriting the file while it is mapped) is documented on this function.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = Header::parse(&map).map_err(|e| GgufError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })?;
        Ok(GgufFile {
            path: Some(path.to_path_buf()),
            bytes: Bytes::Mapped(map),
            header,
        })
    }

    /// Parse a file already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let header = Header::parse(&bytes)?;
        Ok(GgufFile {
            path: None,
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    /// The path this was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    /// Header: version, metadata, tensor table, alignment.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }
    /// Mutable metadata (a loader may take large arrays out once it has used them).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.header.metadata
    }
    /// Tensor table in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }
    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
    /// The tensor-info entry for `name`.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.header
            .find(name)
            .ok_or_else(|| GgufError::TensorNotFound {
                name: name.to_string(),
            })
    }
    /// A zero-copy view of the tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError> {
        let info = self.tensor_info(name)?;
        self.view(info)
    }
    /// A zero-copy view of a tensor described by `info` (normally from this file's table).
    pub fn view(&self, info: &TensorInfo) -> Result<Tensor<'_>, GgufError> {
        let file_len = self.bytes.as_slice().len();
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            tensor: info.name.clone(),
            start: info.absolute_offset as u64,
            end: info.absolute_offset as u64 + info.n_bytes as u64,
            file_len,
        };
        let end = info
            .absolute_offset
            .checked_add(info.n_bytes)
            .ok_or_else(out_of_bounds)?;
        let data = self
            .bytes
            .as_slice()
            .get(info.absolute_offset..end)
            .ok_or_else(out_of_bounds)?;
        Tensor::borrowed(info.dtype, &info.shape, data).map_err(|e| GgufError::BadShape {
            tensor: info.name.clone(),
            dims: info.shape.iter().map(|&d| d as u64).collect(),
            why: match e {
                edgeinfer_tensor::TensorError::Overflow { .. } => "overflows",
                _ => "does not match its type",
            },
        })
    }
}
