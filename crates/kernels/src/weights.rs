//! Weights of a model in a mapped GGUF file, checked once at load: a [`WeightLoader`] finds
//! each tensor, checks its shape (and, for a matrix, that the kernels can compute with its
//! type) and gives a [`WeightRef`] (where the matrix lies, nothing copied) or a dequantized f32
//! vector (norm weights, biases). A [`WeightRef`] becomes a kernel [`Matrix`] view on use.
//!
//! ```no_run
//! use edgeinfer_gguf::GgufFile;
//! use edgeinfer_kernels::{kernels, WeightLoader};
//!
//! let file = GgufFile::open("model.gguf")?;
//! let l = WeightLoader::new(&file);
//! let w = l.matrix("fc.weight", 2, 64)?; // GGUF shape [64, 2]: 2 rows of 64
//! let b = l.vector("fc.bias", 2)?;
//! let m = w.matrix_in(kernels(), file.bytes())?;
//! assert_eq!((m.rows(), m.cols(), b.len()), (2, 64, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use edgeinfer_gguf::{GgufError, GgufFile, TensorInfo};

use crate::{dequantize_to_vec, format, DType, KernelError, Kernels, Matrix};

/// Errors of loading weights: each names the tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tensor {name:?} missing from the model file")]
    MissingTensor { name: String },
    #[error("tensor {name:?}: expected shape {expected:?}, found {actual:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tensor {name:?} has type {dtype}, which the kernels cannot compute with")]
    UnsupportedTensorType { name: String, dtype: DType },
}

/// Where a weight matrix lies in its file: `rows` output features × `cols` inputs, in `dtype`
/// (a GGUF tensor of shape `[cols, rows]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightRef {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    offset: usize,
    n_bytes: usize,
}

impl WeightRef {
    /// Bytes of the matrix.
    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }

    /// Where the matrix lies in the file's bytes.
    pub fn byte_range(&self) -> Range<usize> {
        self.offset..self.offset + self.n_bytes
    }

    /// A kernel view of the matrix, computed with table `k`, over `file` (the bytes of the
    /// file it was loaded from: [`GgufFile::bytes`]). Zero-copy. An error only when `file` is
    /// not that file.
    pub fn matrix_in<'a>(
        &self,
        k: &'static Kernels,
        file: &'a [u8],
    ) -> Result<Matrix<'a>, KernelError> {
        let data = file
            .get(self.byte_range())
            .ok_or_else(|| KernelError::Shape {
                op: "weight",
                expected: format!("a file of at least {} bytes", self.offset + self.n_bytes),
                actual: format!("{} bytes", file.len()),
            })?;
        Matrix::from_parts_in(k, self.dtype, self.rows, self.cols, data)
    }
}

/// Finds and checks the weights of one file.
#[derive(Clone, Copy)]
pub struct WeightLoader<'f> {
    file: &'f GgufFile,
}

impl<'f> WeightLoader<'f> {
    pub fn new(file: &'f GgufFile) -> Self {
        WeightLoader { file }
    }

    /// The file the weights are read from.
    pub fn file(&self) -> &'f GgufFile {
        self.file
    }

    /// The tensor-info entry of `name`.
    pub fn info(&self, name: &str) -> Result<&'f TensorInfo, WeightError> {
        self.file
            .tensor_info(name)
            .map_err(|_| WeightError::MissingTensor { name: name.into() })
    }

    /// The matrix `name` of `rows` × `cols` (GGUF shape `[cols, rows]`), in a type the kernels
    /// have a dot product for.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<WeightRef, WeightError> {
        let info = self.info(name)?;
        if info.shape != [cols, rows] {
            return Err(WeightError::TensorShape {
                name: name.into(),
                expected: vec![cols, rows],
                actual: info.shape.clone(),
            });
        }
        if format(info.dtype).is_none_or(|f| !f.has_vec_dot()) {
            return Err(WeightError::UnsupportedTensorType {
                name: name.into(),
                dtype: info.dtype,
            });
        }
        Ok(WeightRef {
            dtype: info.dtype,
            rows,
            cols,
            offset: info.absolute_offset,
            n_bytes: info.n_bytes,
        })
    }

    /// The vector `name` of `len` values, dequantized to f32. Its shape is `[len]`, or `[len]`
    /// followed by dimensions of 1 (`[len, 1]`).
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, WeightError> {
        let info = self.info(name)?;
        if info.shape.first() != Some(&len) || info.n_elements() != len {
            return Err(WeightError::TensorShape {
                name: name.into(),
                expected: vec![len],
                actual: info.shape.clone(),
            });
        }
        let t = self.file.view(info)?;
        dequantize_to_vec(info.dtype, t.data(), len).map_err(|_| {
            WeightError::UnsupportedTensorType {
                name: name.into(),
                dtype: info.dtype,
            }
        })
    }

    /// [`WeightLoader::vector`], or `None` when the file has no tensor `name`.
    pub fn optional_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, WeightError> {
        if self.file.tensor_info(name).is_err() {
            return Ok(None);
        }
        self.vector(name, len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use edgeinfer_gguf::{GgufFile, GgufWriter};
    use edgeinfer_tensor::Tensor;

    use super::*;

    fn file() -> GgufFile {
        let mut w = GgufWriter::new();
        let m: Vec<f32> = (0..2 * 32).map(|i| i as f32).collect();
        let m = crate::quantize_to_vec(DType::Q8_0, &m).unwrap();
        w.add_tensor("m", Tensor::owned(DType::Q8_0, &[32, 2], m).unwrap())
            .unwrap();
        w.add_f32("v", &[3], &[1.0, 2.0, 3.0]).unwrap();
        w.add_f32("v1", &[3, 1], &[1.0, 2.0, 3.0]).unwrap();
        let i: Vec<u8> = [1i32, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor("i", Tensor::owned(DType::I32, &[3], i.clone()).unwrap())
            .unwrap();
        w.add_tensor("i3", Tensor::owned(DType::I32, &[3, 1], i).unwrap())
            .unwrap();
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn loads_checks_and_names_the_tensor() {
        let f = file();
        let l = WeightLoader::new(&f);
        let w = l.matrix("m", 2, 32).unwrap();
        assert_eq!((w.dtype, w.rows, w.cols), (DType::Q8_0, 2, 32));
        assert_eq!(w.n_bytes(), 2 * 34);
        let m = w.matrix_in(crate::kernels(), f.bytes()).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 32));
        assert!(w.matrix_in(crate::kernels(), &f.bytes()[..10]).is_err());
        assert_eq!(l.vector("v", 3).unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(l.vector("v1", 3).unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(l.optional_vector("none", 3).unwrap(), None);

        let err = l.matrix("m", 32, 2).unwrap_err();
        assert!(
            matches!(&err, WeightError::TensorShape { name, expected, actual }
                if name == "m" && *expected == [2, 32] && *actual == [32, 2]),
            "{err}"
        );
        assert!(err.to_string().contains("\"m\""), "{err}");
        let err = l.vector("v", 4).unwrap_err();
        assert!(matches!(err, WeightError::TensorShape { .. }), "{err}");
        let err = l.matrix("none", 1, 1).unwrap_err();
        assert!(
            matches!(&err, WeightError::MissingTensor { name } if name == "none"),
            "{err}"
        );
        let err = l.matrix("i3", 1, 3).unwrap_err();
        assert!(
            matches!(&err, WeightError::UnsupportedTensorType { name, dtype: DType::I32 } if name == "i3"),
            "{err}"
        );
        assert!(err.to_string().contains("I32"), "{err}");
        let err = l.vector("i", 3).unwrap_err();
        assert!(
            matches!(err, WeightError::UnsupportedTensorType { .. }),
            "{err}"
        );
    }
}
