//! A decoder as a feature extractor: a linear head over the mean of its final hidden states
//! ([`Session::embed`]), trained on labelled texts (training lives outside the inference crates:
//! `edgeinfer train-probe`). The head is stored in its own small GGUF file with the name and
//! sha256 of the decoder it was trained on, and runs through the int8 kernels (Q8_0 weights,
//! Q8_0 activations) like every other matrix.

use std::path::Path;

use edgeinfer_gguf::{GgufFile, GgufWriter, Value};
use edgeinfer_kernels::{Activations, DType, Matrix, WeightError};
use edgeinfer_tensor::Tensor;

use crate::{Session, TransformerError};

/// `general.architecture` of a probe file.
pub const PROBE_ARCHITECTURE: &str = "edgeinfer-probe";

/// A linear classification head for one decoder's pooled hidden states.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Class names, in output order.
    pub labels: Vec<String>,
    /// The decoder the head was trained on: its file name (or `general.name`) and the sha256
    /// of its file. A head is meaningless on another decoder.
    pub decoder_name: String,
    pub decoder_sha256: String,
    /// Text tokens kept when embedding (the rest is cut).
    pub max_text_tokens: usize,
    /// `d_model` of the decoder.
    dim: usize,
    dtype: DType,
    /// `[classes × dim]` in `dtype`.
    weight: Vec<u8>,
    bias: Vec<f32>,
}

/// One text's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub label: usize,
    /// Softmax over the classes.
    pub probs: Vec<f32>,
    /// Tokens embedded.
    pub n_tokens: usize,
}

fn bad(what: impl Into<String>) -> TransformerError {
    TransformerError::BadConfig { what: what.into() }
}

impl Probe {
    /// A head from f32 weights (`[classes × dim]`, row-major) and biases, stored as Q8_0 when
    /// `dim` is whole blocks of 32 (else f32).
    pub fn new(
        labels: Vec<String>,
        weight: &[f32],
        bias: Vec<f32>,
        decoder_name: &str,
        decoder_sha256: &str,
        max_text_tokens: usize,
    ) -> Result<Self, TransformerError> {
        let classes = labels.len();
        if classes < 2 {
            return Err(bad(format!(
                "a probe needs two or more labels, got {labels:?}"
            )));
        }
        if bias.len() != classes || weight.is_empty() || !weight.len().is_multiple_of(classes) {
            return Err(bad(format!(
                "probe weights: {} values and {} biases for {classes} labels",
                weight.len(),
                bias.len()
            )));
        }
        if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err(bad("probe weights hold a NaN or infinity"));
        }
        let dim = weight.len() / classes;
        let dtype = if dim.is_multiple_of(32) {
            DType::Q8_0
        } else {
            DType::F32
        };
        let weight = edgeinfer_kernels::quantize_to_vec(dtype, weight)?;
        Ok(Probe {
            labels,
            decoder_name: decoder_name.to_string(),
            decoder_sha256: decoder_sha256.to_string(),
            max_text_tokens: max_text_tokens.max(1),
            dim,
            dtype,
            weight,
            bias,
        })
    }

    /// Input width (the decoder's `d_model`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes of the head's parameters as stored.
    pub fn n_bytes(&self) -> usize {
        self.weight.len() + 4 * self.bias.len()
    }

    /// The weights as f32 (`[classes × dim]`), dequantized.
    pub fn weights_f32(&self) -> Vec<f32> {
        edgeinfer_kernels::dequantize_to_vec(self.dtype, &self.weight, self.labels.len() * self.dim)
            .expect("checked at construction")
    }

    /// The biases.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The probe as a GGUF file.
    pub fn to_gguf(&self) -> Result<Vec<u8>, TransformerError> {
        Ok(self.writer()?.to_bytes()?)
    }

    /// Write the probe to `path` (atomically: a temporary file renamed into place).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), TransformerError> {
        Ok(self.writer()?.write_file(path)?)
    }

    fn writer(&self) -> Result<GgufWriter<'_>, TransformerError> {
        let mut w = GgufWriter::new();
        w.add_metadata(
            "general.architecture",
            Value::String(PROBE_ARCHITECTURE.into()),
        )?;
        w.add_metadata(
            "probe.decoder.name",
            Value::String(self.decoder_name.clone()),
        )?;
        w.add_metadata(
            "probe.decoder.sha256",
            Value::String(self.decoder_sha256.clone()),
        )?;
        w.add_metadata("probe.pooling", Value::String("mean".into()))?;
        w.add_metadata(
            "probe.max_text_tokens",
            Value::U32(u32::try_from(self.max_text_tokens).unwrap_or(u32::MAX)),
        )?;
        w.add_str_array("probe.labels", &self.labels)?;
        let classes = self.labels.len();
        w.add_tensor(
            "probe.weight",
            Tensor::borrowed(self.dtype, &[self.dim, classes], &self.weight)
                .map_err(|e| bad(format!("probe.weight: {e}")))?,
        )?;
        w.add_f32("probe.bias", &[classes], &self.bias)?;
        Ok(w)
    }

    /// Read a probe file, checking every key and tensor.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TransformerError> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        Self::from_file(&file).map_err(|e| match e {
            TransformerError::BadConfig { what } => bad(format!("{}: {what}", path.display())),
            e => e,
        })
    }

    /// [`load`](Self::load) from an opened file.
    pub fn from_file(file: &GgufFile) -> Result<Self, TransformerError> {
        let md = file.metadata();
        let arch = md.get_str("general.architecture")?;
        if arch != PROBE_ARCHITECTURE {
            return Err(bad(format!(
                "general.architecture is {arch:?}, not {PROBE_ARCHITECTURE:?}: not a probe file"
            )));
        }
        let pooling = md.get_str("probe.pooling")?;
        if pooling != "mean" {
            return Err(bad(format!(
                "probe.pooling {pooling:?} is not supported (only \"mean\")"
            )));
        }
        let labels: Vec<String> = md
            .get_str_array("probe.labels")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let classes = labels.len();
        if classes < 2 {
            return Err(bad(format!(
                "probe.labels holds {classes} label(s); two or more are needed"
            )));
        }
        let max_text_tokens = md.get_usize("probe.max_text_tokens")?;
        let w = file.tensor_info("probe.weight")?;
        let (dim, rows) = match w.shape.as_slice() {
            &[d, c] if c == classes && d > 0 => (d, c),
            _ => {
                return Err(WeightError::TensorShape {
                    name: "probe.weight".into(),
                    expected: vec![0, classes],
                    actual: w.shape.clone(),
                }
                .into())
            }
        };
        if !matches!(w.dtype, DType::Q8_0 | DType::F32) {
            return Err(bad(format!(
                "probe.weight has type {}; a probe stores Q8_0 or F32",
                w.dtype
            )));
        }
        let weight = file.view(w)?.data().to_vec();
        // The shape and type were checked; the kernels check the byte count too.
        Matrix::from_parts(w.dtype, rows, dim, &weight)?;
        let b = file.tensor_info("probe.bias")?;
        if b.shape != [classes] || b.dtype != DType::F32 {
            return Err(WeightError::TensorShape {
                name: "probe.bias".into(),
                expected: vec![classes],
                actual: b.shape.clone(),
            }
            .into());
        }
        let bias = edgeinfer_kernels::dequantize_to_vec(DType::F32, file.view(b)?.data(), classes)?;
        Ok(Probe {
            labels,
            decoder_name: md.get_str("probe.decoder.name")?.to_string(),
            decoder_sha256: md.get_str("probe.decoder.sha256")?.to_string(),
            max_text_tokens: max_text_tokens.max(1),
            dim,
            dtype: w.dtype,
            weight,
            bias,
        })
    }

    /// The pooled features of `text` in `session`: its tokens (with the tokenizer's special
    /// tokens, cut to `max_text_tokens`) through the decoder, mean of the final hidden states,
    /// unit length. The cache holds the text afterwards. Returns the features and the tokens.
    pub fn features(
        session: &mut Session,
        text: &str,
        max_text_tokens: usize,
    ) -> Result<(Vec<f32>, usize), TransformerError> {
        let mut ids = session.model().tokenizer.encode(text, true)?;
        ids.truncate(max_text_tokens.max(1));
        if ids.is_empty() {
            return Err(TransformerError::EmptyInput);
        }
        let n = ids.len();
        Ok((session.embed(&ids)?, n))
    }

    /// Classify `text` with the decoder of `session`.
    pub fn classify(
        &self,
        session: &mut Session,
        text: &str,
    ) -> Result<ProbeResult, TransformerError> {
        let d = session.model().config.d_model;
        if d != self.dim {
            return Err(bad(format!(
                "the probe reads {} features, but the decoder's width is {d}: it was trained \
                 on {} (sha256 {})",
                self.dim, self.decoder_name, self.decoder_sha256
            )));
        }
        let (x, n_tokens) = Self::features(session, text, self.max_text_tokens)?;
        let probs = self.probs(session.engine().kernels(), &x)?;
        Ok(ProbeResult {
            label: crate::argmax(&probs) as usize,
            probs,
            n_tokens,
        })
    }

    /// Class probabilities for features `x` (`dim` values), computed with table `k`.
    pub fn probs(
        &self,
        k: &'static edgeinfer_kernels::Kernels,
        x: &[f32],
    ) -> Result<Vec<f32>, TransformerError> {
        if x.len() != self.dim {
            return Err(bad(format!(
                "{} features given to a probe of width {}",
                x.len(),
                self.dim
            )));
        }
        let classes = self.labels.len();
        let m = Matrix::from_parts_in(k, self.dtype, classes, self.dim, &self.weight)?;
        let mut logits = vec![0.0f32; classes];
        let mut acts = Activations::new();
        m.matvec_f32_in_thread(x, &mut acts, &mut logits)?;
        let max = logits
            .iter()
            .zip(&self.bias)
            .map(|(l, b)| l + b)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut p: Vec<f32> = logits
            .iter()
            .zip(&self.bias)
            .map(|(l, b)| (l + b - max).exp())
            .collect();
        let sum: f32 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= sum);
        Ok(p)
    }
}
