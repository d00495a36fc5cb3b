//! Quantized matrix × vector (decode) and matrix × matrix (prefill).
//!
//! The activation is quantized once to the weight's activation type ([`Activations`]) and
//! reused by every weight row (and by every matrix sharing the same input, such as Q/K/V).
//! Weight rows are split across the current rayon pool (an [`crate::Engine`]'s, inside its
//! `install`); in `matmul` each thread walks its rows in tiles of activation rows so a weight
//! row, once loaded, is used for a whole tile.
//!
//! A [`Matrix`] resolves its kernels from one table when it is made ([`Matrix::from_parts_in`];
//! [`Matrix::from_parts`] takes the default table): the products call the resolved function
//! pointers, with no lookup per call.

use rayon::prelude::*;

use crate::{bytes_for, kernels, require, DType, KernelError, Kernels, Tensor, Tile, VecDot};

/// Activations quantized to one type: `rows` vectors of `cols` elements. Reuse one across
/// calls to avoid allocating per step.
#[derive(Clone, Debug, Default)]
pub struct Activations {
    dtype: Option<DType>,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl Activations {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantize `x` (`rows × cols`, row-major) to `dtype` with the default table, reusing this
    /// buffer.
    pub fn quantize(&mut self, dtype: DType, x: &[f32], cols: usize) -> Result<(), KernelError> {
        self.encode(kernels(), dtype, x, cols, true)
    }

    /// As [`Activations::quantize`], in the calling thread only.
    pub fn quantize_in_thread(
        &mut self,
        dtype: DType,
        x: &[f32],
        cols: usize,
    ) -> Result<(), KernelError> {
        self.encode(kernels(), dtype, x, cols, false)
    }

    /// As [`Activations::quantize`], with the quantizer of table `k` (the same bits at every
    /// level).
    pub fn quantize_in(
        &mut self,
        k: &Kernels,
        dtype: DType,
        x: &[f32],
        cols: usize,
    ) -> Result<(), KernelError> {
        self.encode(k, dtype, x, cols, true)
    }

    /// As [`Activations::quantize_in`], in the calling thread only.
    pub fn quantize_in_thread_in(
        &mut self,
        k: &Kernels,
        dtype: DType,
        x: &[f32],
        cols: usize,
    ) -> Result<(), KernelError> {
        self.encode(k, dtype, x, cols, false)
    }

    fn encode(
        &mut self,
        k: &Kernels,
        dtype: DType,
        x: &[f32],
        cols: usize,
        parallel: bool,
    ) -> Result<(), KernelError> {
        let f = require(dtype, "quantize activations")?;
        let from = k
            .act_quantizer(dtype)
            .or(f.from_f32)
            .ok_or(KernelError::Unsupported {
                dtype,
                op: "quantize activations",
            })?;
        if cols == 0 || !x.len().is_multiple_of(cols) {
            return Err(KernelError::Shape {
                op: "quantize activations",
                expected: format!("a multiple of {cols} values"),
                actual: x.len().to_string(),
            });
        }
        let row_bytes = bytes_for(dtype, cols, "quantize activations")?;
        let rows = x.len() / cols;
        self.data.resize(rows * row_bytes, 0);
        if parallel && rows >= 16 {
            x.par_chunks_exact(cols)
                .zip(self.data.par_chunks_exact_mut(row_bytes))
                .for_each(|(src, dst)| from(src, dst));
        } else {
            for (src, dst) in x
                .chunks_exact(cols)
                .zip(self.data.chunks_exact_mut(row_bytes))
            {
                from(src, dst);
            }
        }
        self.dtype = Some(dtype);
        self.rows = rows;
        self.cols = cols;
        self.row_bytes = row_bytes;
        Ok(())
    }

    /// Rows already encoded in `dtype` (`cols` elements each), copied as they are: e.g. rows
    /// of a Q8_0 embedding table are Q8_0 activations, exactly, without a round trip through
    /// f32.
    pub fn set_encoded_rows<'r>(
        &mut self,
        dtype: DType,
        cols: usize,
        rows: impl Iterator<Item = &'r [u8]>,
    ) -> Result<(), KernelError> {
        require(dtype, "encoded activations")?;
        let row_bytes = bytes_for(dtype, cols, "encoded activations")?;
        self.data.clear();
        let mut n = 0;
        for r in rows {
            if r.len() != row_bytes {
                return Err(KernelError::Shape {
                    op: "encoded activations",
                    expected: format!("rows of {row_bytes} bytes"),
                    actual: format!("a row of {} bytes", r.len()),
                });
            }
            self.data.extend_from_slice(r);
            n += 1;
        }
        self.dtype = Some(dtype);
        self.rows = n;
        self.cols = cols;
        self.row_bytes = row_bytes;
        Ok(())
    }

    /// Number of vectors.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Elements per vector.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Type the vectors are quantized to.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }
    fn row(&self, i: usize) -> &[u8] {
        &self.data[i * self.row_bytes..(i + 1) * self.row_bytes]
    }
}

/// A 2-D weight matrix view: `rows` output features × `cols` inputs (GGML shape
/// `[cols, rows]`), with the dot kernel for its type resolved from one kernel table.
#[derive(Clone, Copy)]
pub struct Matrix<'t> {
    kernels: &'static Kernels,
    dtype: DType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'t [u8],
    act_type: DType,
    dot: VecDot,
    tile: Option<Tile>,
}

impl std::fmt::Debug for Matrix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Matrix({} {}x{}, {})",
            self.dtype, self.rows, self.cols, self.kernels.level
        )
    }
}

/// Activation rows a weight row meets per tile call (kept in L1/L2 while the rows stream by).
const TOKEN_TILE: usize = 32;

/// Rows per parallel task: enough tasks to balance two to a few threads, few enough that the
/// per-task overhead stays small.
fn chunk_rows(rows: usize, cols: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 || rows * cols < 32 * 1024 {
        return rows.max(1);
    }
    rows.div_ceil(threads * 4).max(16)
}

impl<'t> Matrix<'t> {
    /// View a tensor of shape `[cols, rows]` as a matrix, with the default table.
    pub fn new(t: &'t Tensor<'_>) -> Result<Self, KernelError> {
        Self::new_in(kernels(), t)
    }

    /// View a tensor of shape `[cols, rows]` as a matrix computed with table `k`.
    pub fn new_in(k: &'static Kernels, t: &'t Tensor<'_>) -> Result<Self, KernelError> {
        let shape = t.shape();
        if shape.len() != 2 && !(shape.len() > 2 && shape[2..].iter().all(|&d| d == 1)) {
            return Err(KernelError::Shape {
                op: "matrix",
                expected: "a 2-D tensor".into(),
                actual: format!("shape {shape:?}"),
            });
        }
        Self::from_parts_in(k, t.dtype(), t.n_rows(), t.row_len(), t.data())
    }

    /// A matrix of `rows × cols` elements of `dtype` stored row after row in `data`, with the
    /// default table.
    pub fn from_parts(
        dtype: DType,
        rows: usize,
        cols: usize,
        data: &'t [u8],
    ) -> Result<Self, KernelError> {
        Self::from_parts_in(kernels(), dtype, rows, cols, data)
    }

    /// As [`Matrix::from_parts`], computed with table `k`: its dot and tile kernels are
    /// resolved here, once.
    pub fn from_parts_in(
        k: &'static Kernels,
        dtype: DType,
        rows: usize,
        cols: usize,
        data: &'t [u8],
    ) -> Result<Self, KernelError> {
        let f = require(dtype, "matmul")?;
        let dot = k.dot_fn(dtype).ok_or(KernelError::Unsupported {
            dtype,
            op: "matmul",
        })?;
        let row_bytes = bytes_for(dtype, cols, "matmul")?;
        if Some(data.len()) != row_bytes.checked_mul(rows) {
            return Err(KernelError::Shape {
                op: "matrix",
                expected: format!("{rows} rows of {row_bytes} bytes"),
                actual: format!("{} bytes", data.len()),
            });
        }
        Ok(Matrix {
            kernels: k,
            dtype,
            rows,
            cols,
            row_bytes,
            data,
            act_type: f.vec_dot_type,
            dot,
            tile: k.tile_fn(dtype),
        })
    }

    /// The stored bytes of row `r`, if it exists.
    pub fn row_data(&self, r: usize) -> Option<&'t [u8]> {
        self.data.get(r * self.row_bytes..(r + 1) * self.row_bytes)
    }

    /// Dequantize row `r` into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        let bytes = self
            .data
            .get(r * self.row_bytes..(r + 1) * self.row_bytes)
            .ok_or_else(|| KernelError::Shape {
                op: "dequantize_row",
                expected: format!("row < {}", self.rows),
                actual: r.to_string(),
            })?;
        crate::dequantize(self.dtype, bytes, out)
    }

    /// `out[t][r] = W[r] · x_t` in f32 on dequantized weights, activations unquantized: the
    /// slow exact path, for checking a model against an f32 reference.
    pub fn matmul_f32_exact(&self, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
        let t_n = x.len() / self.cols.max(1);
        if x.len() != t_n * self.cols || out.len() != t_n * self.rows {
            return Err(KernelError::Shape {
                op: "matmul_f32_exact",
                expected: format!("k×{} inputs and k×{} outputs", self.cols, self.rows),
                actual: format!("{} inputs, {} outputs", x.len(), out.len()),
            });
        }
        let to_f32 = require(self.dtype, "dequantize")?.to_f32;
        let chunk = chunk_rows(self.rows, self.cols * t_n);
        let mut tr = vec![0.0f32; self.rows * t_n];
        tr.par_chunks_mut(chunk * t_n)
            .enumerate()
            .for_each(|(ci, o)| {
                let mut w = vec![0.0f32; self.cols];
                for j in 0..o.len() / t_n {
                    let r = ci * chunk + j;
                    to_f32(
                        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes],
                        &mut w,
                    );
                    for t in 0..t_n {
                        o[j * t_n + t] = self
                            .kernels
                            .dot_f32(&w, &x[t * self.cols..(t + 1) * self.cols]);
                    }
                }
            });
        transpose_into(&tr, self.rows, t_n, out);
        Ok(())
    }

    /// The kernel table this matrix computes with.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }
    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Weight type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The activation type inputs must be quantized to.
    pub fn act_type(&self) -> DType {
        self.act_type
    }
    /// Bytes of weights (read once per matvec).
    pub fn n_bytes(&self) -> usize {
        self.data.len()
    }

    fn check_act(
        &self,
        act: &Activations,
        out_len: usize,
        op: &'static str,
    ) -> Result<(), KernelError> {
        if act.dtype != Some(self.act_type)
            || act.cols != self.cols
            || out_len != act.rows * self.rows
        {
            return Err(KernelError::Shape {
                op,
                expected: format!(
                    "{} activations of {} and {} outputs per row",
                    self.act_type, self.cols, self.rows
                ),
                actual: format!(
                    "{:?} activations {}x{}, {} outputs",
                    act.dtype, act.rows, act.cols, out_len
                ),
            });
        }
        Ok(())
    }

    /// `out[r] = W[r] · x` for one quantized activation vector.
    pub fn matvec(&self, act: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.check_act(act, out.len(), "matvec")?;
        if act.rows != 1 {
            return self.matmul(act, out);
        }
        let x = act.row(0);
        let chunk = chunk_rows(self.rows, self.cols);
        let work =
            |(ci, o): (usize, &mut [f32])| self.tile_into(ci * chunk, o.len(), x, 1, o, 1, 1);
        if chunk >= self.rows {
            out.chunks_mut(chunk).enumerate().for_each(work);
        } else {
            out.par_chunks_mut(chunk).enumerate().for_each(work);
        }
        Ok(())
    }

    /// `out[j] = W[r0 + j] · x` for the rows `r0..r0 + out.len()` and one activation vector,
    /// in the calling thread: for callers that share a product among their own workers.
    /// Each row's value is the same bits as [`Matrix::matvec`] gives it.
    pub fn matvec_rows_in_thread(
        &self,
        act: &Activations,
        r0: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let end = r0.checked_add(out.len());
        if act.rows != 1 || end.is_none_or(|e| e > self.rows) {
            return Err(KernelError::Shape {
                op: "matvec_rows",
                expected: format!("one activation vector and rows within 0..{}", self.rows),
                actual: format!("{} vectors, {} rows from row {r0}", act.rows, out.len()),
            });
        }
        self.check_act(act, self.rows, "matvec_rows")?;
        let n = out.len();
        self.tile_into(r0, n, act.row(0), 1, out, 1, 1);
        Ok(())
    }

    /// `out[j · row_stride + t · tok_stride] = W[r0 + j] · A_t` for `n_rows` weight rows and
    /// the `n_acts` activation rows in `acts` (`out` starts at the tile's first output).
    #[allow(clippy::too_many_arguments)]
    fn tile_into(
        &self,
        r0: usize,
        n_rows: usize,
        acts: &[u8],
        n_acts: usize,
        out: &mut [f32],
        row_stride: usize,
        tok_stride: usize,
    ) {
        let rb = self.row_bytes;
        let w = &self.data[r0 * rb..(r0 + n_rows) * rb];
        match self.tile {
            Some(tile) => tile(
                self.cols, w, n_rows, acts, n_acts, out, row_stride, tok_stride,
            ),
            None => {
                let arb = acts.len() / n_acts.max(1);
                for j in 0..n_rows {
                    let wr = &w[j * rb..(j + 1) * rb];
                    for t in 0..n_acts {
                        out[j * row_stride + t * tok_stride] =
                            (self.dot)(self.cols, wr, &acts[t * arb..(t + 1) * arb]);
                    }
                }
            }
        }
    }

    /// `out_i = W_i · x` for several matrices sharing one quantized input vector, in a single
    /// parallel region (one fork/join instead of one per matrix: for a small model the
    /// synchronisation otherwise costs as much as a small matvec).
    pub fn matvec_many(
        jobs: &mut [(Matrix<'_>, &mut [f32])],
        act: &Activations,
    ) -> Result<(), KernelError> {
        for (m, out) in jobs.iter() {
            m.check_act(act, out.len(), "matvec_many")?;
        }
        if act.rows != 1 {
            for (m, out) in jobs.iter_mut() {
                m.matmul(act, out)?;
            }
            return Ok(());
        }
        let x = act.row(0);
        let total_rows: usize = jobs.iter().map(|(m, _)| m.rows).sum();
        let cols = jobs.first().map_or(0, |(m, _)| m.cols);
        let chunk = chunk_rows(total_rows, cols);
        let mut tasks: Vec<(&Matrix<'_>, usize, &mut [f32])> = Vec::new();
        for (m, out) in jobs.iter_mut() {
            for (ci, o) in out.chunks_mut(chunk).enumerate() {
                tasks.push((m, ci * chunk, o));
            }
        }
        let run = |(m, r0, o): &mut (&Matrix<'_>, usize, &mut [f32])| {
            let n = o.len();
            m.tile_into(*r0, n, x, 1, o, 1, 1)
        };
        if chunk >= total_rows {
            tasks.iter_mut().for_each(run);
        } else {
            tasks.par_iter_mut().for_each(run);
        }
        Ok(())
    }

    /// Quantize `x` into `scratch` and compute `out = W · x` (one or many vectors).
    pub fn matvec_f32(
        &self,
        x: &[f32],
        scratch: &mut Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        scratch.quantize_in(self.kernels, self.act_type, x, self.cols)?;
        self.matmul(scratch, out)
    }

    /// As [`Matrix::matvec_f32`], entirely in the calling thread: for callers that already run
    /// many small products in parallel (a fork/join per product would cost more than it saves).
    pub fn matvec_f32_in_thread(
        &self,
        x: &[f32],
        scratch: &mut Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        scratch.quantize_in_thread_in(self.kernels, self.act_type, x, self.cols)?;
        self.check_act(scratch, out.len(), "matmul")?;
        self.matmul_direct(scratch, out);
        Ok(())
    }

    /// As [`Matrix::matmul`], entirely in the calling thread.
    pub fn matmul_in_thread(&self, act: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.check_act(act, out.len(), "matmul")?;
        self.matmul_direct(act, out);
        Ok(())
    }

    /// `out[t][r] = W[r] · A_t` in this thread, written in place (token-major) tile by tile.
    fn matmul_direct(&self, act: &Activations, out: &mut [f32]) {
        for t0 in (0..act.rows).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(act.rows);
            let acts = &act.data[t0 * act.row_bytes..t1 * act.row_bytes];
            let o = &mut out[t0 * self.rows..];
            self.tile_into(0, self.rows, acts, t1 - t0, o, 1, self.rows);
        }
    }

    /// `out[t][r] = W[r] · x_t` for every activation row `t` (row-major `rows(act) × rows`).
    pub fn matmul(&self, act: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.check_act(act, out.len(), "matmul")?;
        let t_n = act.rows;
        if t_n == 1 {
            return self.matvec(act, out);
        }
        let chunk = chunk_rows(self.rows, self.cols * t_n);
        if chunk >= self.rows {
            self.matmul_direct(act, out);
            return Ok(());
        }
        // Many tokens: each task takes whole token tiles against every row and writes its part
        // of `out` in place (the weights, read by every task, stay in L2/L3 between tiles).
        if t_n >= 2 * TOKEN_TILE * rayon::current_num_threads() {
            let rows = self.rows;
            out.par_chunks_mut(TOKEN_TILE * rows)
                .enumerate()
                .for_each(|(ti, o)| {
                    let (t0, n) = (ti * TOKEN_TILE, o.len() / rows);
                    let acts = &act.data[t0 * act.row_bytes..(t0 + n) * act.row_bytes];
                    self.tile_into(0, rows, acts, n, o, 1, rows);
                });
            return Ok(());
        }
        // Otherwise a transposed result: each task owns a contiguous range of weight rows.
        const TILE: usize = TOKEN_TILE;
        let mut tr = vec![0.0f32; self.rows * t_n];
        let work = |(ci, o): (usize, &mut [f32])| {
            let n_rows = o.len() / t_n;
            // Token tiles keep the activations a weight row meets in L1/L2.
            for t0 in (0..t_n).step_by(TILE) {
                let t1 = (t0 + TILE).min(t_n);
                let acts = &act.data[t0 * act.row_bytes..t1 * act.row_bytes];
                self.tile_into(ci * chunk, n_rows, acts, t1 - t0, &mut o[t0..], t_n, 1);
            }
        };
        tr.par_chunks_mut(chunk * t_n).enumerate().for_each(work);
        transpose_into(&tr, self.rows, t_n, out);
        Ok(())
    }
}

/// `out[t][r] = tr[r][t]` for `tr` of `rows × t_n`, in parallel over blocks of 16 output rows
/// (each block reads 64-byte runs of `tr`).
fn transpose_into(tr: &[f32], rows: usize, t_n: usize, out: &mut [f32]) {
    const TB: usize = 16;
    let work = |(bi, block): (usize, &mut [f32])| {
        let t0 = bi * TB;
        let nt = block.len() / rows;
        for r in 0..rows {
            let src = &tr[r * t_n + t0..r * t_n + t0 + nt];
            for (k, v) in src.iter().enumerate() {
                block[k * rows + r] = *v;
            }
        }
    };
    if rows * t_n < 64 * 1024 || rayon::current_num_threads() == 1 {
        out.chunks_mut(rows * TB).enumerate().for_each(work);
    } else {
        out.par_chunks_mut(rows * TB).enumerate().for_each(work);
    }
}
