//! Element types and tensor views shared by every edgeinfer crate.
//!
//! * [`DType`] is the one table of GGML/GGUF element types: GGUF type id, name, block size,
//!   bytes per block, and whether edgeinfer computes with the type yet. Adding a type is
//!   adding one row to the `dtypes!` invocation below.
//! * [`Tensor`] is a typed, shaped view over bytes that are either owned (`Vec<u8>`) or
//!   borrowed (for example from a memory-mapped GGUF file). The lifetime ties a borrowed
//!   tensor to its source: nothing here ever pretends a mapping is `'static`.
//!
//! Shapes use GGML order: `shape[0]` is the innermost (contiguous) dimension, so a weight
//! matrix with `rows` output features of `cols` inputs has shape `[cols, rows]`.
//!
//! ```
//! use edgeinfer_tensor::{DType, Tensor};
//! let bytes = vec![0u8; 2 * 34]; // two Q8_0 blocks
//! let t = Tensor::borrowed(DType::Q8_0, &[64], &bytes).unwrap();
//! assert_eq!(t.n_elements(), 64);
//! assert_eq!(DType::Q8_0.block_size(), 32);
//! ```

use std::borrow::Cow;
use std::fmt;

/// Static facts about one element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DTypeInfo {
    /// Name as ggml prints it (`"Q4_1"`).
    pub name: &'static str,
    /// Type id used in GGUF tensor infos.
    pub gguf_id: u32,
    /// Elements per block (1 for plain scalar types).
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    /// Whether edgeinfer's kernels can dequantize this type (and so compute with it).
    pub computed: bool,
}

macro_rules! dtypes {
    ($( $variant:ident = $id:literal, $block:expr, $bytes:expr, $computed:literal; )*) => {
        /// A GGML element type. See the crate docs for the table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum DType {
            $( #[doc = concat!("GGUF type id ", stringify!($id), ".")] $variant, )*
        }

        impl DType {
            /// Every type, in table order.
            pub const ALL: &'static [DType] = &[$(DType::$variant),*];

            /// Facts about this type.
            pub const fn info(self) -> &'static DTypeInfo {
                match self {
                    $( DType::$variant => &DTypeInfo {
                        name: stringify!($variant),
                        gguf_id: $id,
                        block_size: $block,
                        type_size: $bytes,
                        computed: $computed,
                    }, )*
                }
            }

            /// The type a GGUF type id names, or `None` for an unknown id.
            pub const fn from_gguf_id(id: u32) -> Option<DType> {
                match id {
                    $( $id => Some(DType::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

const QK_K: usize = 256;

// Sizes follow ggml's `type_traits` (ggml/src/ggml.c). Q8_1's block is {f16 d, f16 s, i8 qs[32]}
// = 36 bytes in current ggml (gguf-py's table still says 40, from an older layout; Q8_1 only
// exists as an activation type and never appears in files).
dtypes! {
    F32 = 0, 1, 4, true;
    F16 = 1, 1, 2, true;
    Q4_0 = 2, 32, 18, true;
    Q4_1 = 3, 32, 20, true;
    Q5_0 = 6, 32, 22, true;
    Q5_1 = 7, 32, 24, true;
    Q8_0 = 8, 32, 34, true;
    Q8_1 = 9, 32, 36, true;
    Q2_K = 10, QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, true;
    Q3_K = 11, QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, true;
    Q4_K = 12, QK_K, 2 + 2 + QK_K / 2 + 12, true;
    Q5_K = 13, QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, true;
    Q6_K = 14, QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, true;
    Q8_K = 15, QK_K, 4 + QK_K + QK_K / 8, true;
    IQ2_XXS = 16, QK_K, 2 + QK_K / 4, false;
    IQ2_XS = 17, QK_K, 2 + QK_K / 4 + QK_K / 32, false;
    IQ3_XXS = 18, QK_K, 2 + QK_K / 4 + QK_K / 8, false;
    IQ1_S = 19, QK_K, 2 + QK_K / 8 + QK_K / 16, false;
    IQ4_NL = 20, 32, 18, false;
    IQ3_S = 21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false;
    IQ2_S = 22, QK_K, 2 + QK_K / 4 + QK_K / 16, false;
    IQ4_XS = 23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false;
    I8 = 24, 1, 1, false;
    I16 = 25, 1, 2, false;
    I32 = 26, 1, 4, false;
    I64 = 27, 1, 8, false;
    F64 = 28, 1, 8, false;
    IQ1_M = 29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false;
    BF16 = 30, 1, 2, true;
    TQ1_0 = 34, QK_K, 2 + 4 * 13, false;
    TQ2_0 = 35, QK_K, 2 + 64, false;
    MXFP4 = 39, 32, 17, false;
}

impl DType {
    /// Name as ggml prints it.
    pub const fn name(self) -> &'static str {
        self.info().name
    }
    /// GGUF type id.
    pub const fn gguf_id(self) -> u32 {
        self.info().gguf_id
    }
    /// Elements per block.
    pub const fn block_size(self) -> usize {
        self.info().block_size
    }
    /// Bytes per block.
    pub const fn type_size(self) -> usize {
        self.info().type_size
    }
    /// Whether the type is block-quantized (block size > 1).
    pub const fn is_quantized(self) -> bool {
        self.info().block_size > 1
    }
    /// Look a type up by its ggml name (case-insensitive).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
    /// Bytes needed for `n` elements, or `None` if `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors building a tensor view.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    /// The shape's element count is not a whole number of blocks of the type.
    #[error(
        "shape {shape:?} of {dtype} has {n} elements, not a multiple of the block size {block}"
    )]
    NotBlockMultiple {
        dtype: DType,
        shape: Vec<usize>,
        n: usize,
        block: usize,
    },
    /// The row length (`shape[0]`) is not a whole number of blocks.
    #[error("row length {row} of {dtype} is not a multiple of the block size {block}")]
    RowNotBlockMultiple {
        dtype: DType,
        row: usize,
        block: usize,
    },
    /// The byte length does not match the shape.
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {actual}")]
    ByteLength {
        dtype: DType,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    /// The element count overflows `usize`.
    #[error("shape {shape:?} overflows")]
    Overflow { shape: Vec<usize> },
}

/// A typed, shaped view over bytes that are owned or borrowed.
///
/// `shape[0]` is the innermost dimension (GGML order). Rows are `shape[0]` elements long and
/// must be a whole number of blocks, so a row of a quantized matrix is a contiguous byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<'a> {
    dtype: DType,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl<'a> Tensor<'a> {
    fn check(dtype: DType, shape: &[usize], len: usize) -> Result<(), TensorError> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| TensorError::Overflow {
                shape: shape.to_vec(),
            })?;
        let block = dtype.block_size();
        if let Some(&row) = shape.first() {
            if row % block != 0 {
                return Err(TensorError::RowNotBlockMultiple { dtype, row, block });
            }
        }
        let expected = dtype
            .bytes_for(n)
            .ok_or_else(|| TensorError::NotBlockMultiple {
                dtype,
                shape: shape.to_vec(),
                n,
                block,
            })?;
        if expected != len {
            return Err(TensorError::ByteLength {
                dtype,
                shape: shape.to_vec(),
                expected,
                actual: len,
            });
        }
        Ok(())
    }

    /// A view borrowing `data`.
    pub fn borrowed(dtype: DType, shape: &[usize], data: &'a [u8]) -> Result<Self, TensorError> {
        Self::check(dtype, shape, data.len())?;
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            data: Cow::Borrowed(data),
        })
    }

    /// A tensor owning `data`.
    pub fn owned(dtype: DType, shape: &[usize], data: Vec<u8>) -> Result<Self, TensorError> {
        Self::check(dtype, shape, data.len())?;
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            data: Cow::Owned(data),
        })
    }

    /// An owned f32 tensor.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Result<Tensor<'static>, TensorError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::owned(DType::F32, shape, bytes)
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Shape, innermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Raw bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Whether the bytes are borrowed (zero-copy).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Cow::Borrowed(_))
    }
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Elements per row (`shape[0]`, or 1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Number of rows (product of all dimensions but the first).
    pub fn n_rows(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() / self.dtype.block_size() * self.dtype.type_size()
    }
    /// The bytes of row `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[u8]> {
        let rb = self.row_bytes();
        let start = i.checked_mul(rb)?;
        self.data.get(start..start.checked_add(rb)?)
    }
    /// Copy into an owned tensor that no longer borrows anything.
    pub fn into_owned(self) -> Tensor<'static> {
        Tensor {
            dtype: self.dtype,
            shape: self.shape,
            data: Cow::Owned(self.data.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_round_trip_and_are_unique() {
        let mut ids: Vec<u32> = DType::ALL.iter().map(|t| t.gguf_id()).collect();
        for &t in DType::ALL {
            assert_eq!(DType::from_gguf_id(t.gguf_id()), Some(t));
            assert_eq!(DType::from_name(t.name()), Some(t));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), DType::ALL.len());
        assert_eq!(DType::from_gguf_id(4), None, "Q4_2 was removed from ggml");
        assert_eq!(DType::from_gguf_id(1000), None);
    }

    #[test]
    fn known_block_sizes() {
        assert_eq!(DType::Q4_0.type_size(), 18);
        assert_eq!(DType::Q4_1.type_size(), 20);
        assert_eq!(DType::Q2_K.type_size(), 84);
        assert_eq!(DType::Q3_K.type_size(), 110);
        assert_eq!(DType::Q4_K.type_size(), 144);
        assert_eq!(DType::Q5_K.type_size(), 176);
        assert_eq!(DType::Q6_K.type_size(), 210);
        assert_eq!(DType::Q8_K.type_size(), 292);
        assert_eq!(DType::BF16.type_size(), 2);
    }

    #[test]
    fn tensor_checks_lengths() {
        let b = vec![0u8; 40];
        let t = Tensor::borrowed(DType::Q4_1, &[32, 2], &b).unwrap();
        assert!(t.is_borrowed());
        assert_eq!(t.n_rows(), 2);
        assert_eq!(t.row(1).unwrap().len(), 20);
        assert!(t.row(2).is_none());
        assert!(matches!(
            Tensor::borrowed(DType::Q4_1, &[32, 3], &b),
            Err(TensorError::ByteLength { expected: 60, .. })
        ));
        assert!(matches!(
            Tensor::borrowed(DType::Q4_1, &[16, 4], &b),
            Err(TensorError::RowNotBlockMultiple { .. })
        ));
        assert!(matches!(
            Tensor::borrowed(DType::F32, &[usize::MAX, 3], &b),
            Err(TensorError::Overflow { .. })
        ));
        let owned = t.clone().into_owned();
        assert!(!owned.is_borrowed());
        assert_eq!(owned, t);
    }
}
