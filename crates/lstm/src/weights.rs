//! Owned f32 weights in PyTorch layout, and their export to one GGUF file.

use edgeinfer_gguf::{GgufWriter, Value};
use edgeinfer_tensor::{DType, Tensor};

use crate::{LstmConfig, LstmError, WeightError};

/// One direction of one layer, PyTorch layout (row-major, gate blocks i, f, g, o).
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionWeights {
    /// `[4H × in]`
    pub w_ih: Vec<f32>,
    /// `[4H × H]`
    pub w_hh: Vec<f32>,
    /// `[4H]`
    pub b_ih: Vec<f32>,
    /// `[4H]`
    pub b_hh: Vec<f32>,
}

/// A whole classifier's weights in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmWeights {
    pub config: LstmConfig,
    /// `[vocab × E]`
    pub embedding: Vec<f32>,
    /// `[layer][direction]`
    pub layers: Vec<Vec<DirectionWeights>>,
    /// `[classes × H·dirs]`
    pub fc_w: Vec<f32>,
    /// `[classes]`
    pub fc_b: Vec<f32>,
}

impl LstmWeights {
    /// All-zero weights of the right sizes.
    pub fn zeros(config: &LstmConfig) -> Self {
        let h4 = 4 * config.hidden_size;
        let layers = (0..config.num_layers)
            .map(|k| {
                (0..config.directions())
                    .map(|_| DirectionWeights {
                        w_ih: vec![0.0; h4 * config.layer_input(k)],
                        w_hh: vec![0.0; h4 * config.hidden_size],
                        b_ih: vec![0.0; h4],
                        b_hh: vec![0.0; h4],
                    })
                    .collect()
            })
            .collect();
        LstmWeights {
            config: config.clone(),
            embedding: vec![0.0; config.vocab_size * config.embed_dim],
            layers,
            fc_w: vec![0.0; config.num_classes * config.feature_dim()],
            fc_b: vec![0.0; config.num_classes],
        }
    }

    /// Every tensor as (GGUF name, PyTorch shape `[rows, cols]`, values), in file order.
    pub fn tensors(&self) -> Vec<(String, [usize; 2], &[f32])> {
        let c = &self.config;
        let h4 = 4 * c.hidden_size;
        let mut out = vec![(
            "embedding.weight".to_string(),
            [c.vocab_size, c.embed_dim],
            self.embedding.as_slice(),
        )];
        for (k, dirs) in self.layers.iter().enumerate() {
            for (d, w) in dirs.iter().enumerate() {
                let s = LstmConfig::suffix(d);
                out.push((
                    format!("lstm.weight_ih_l{k}{s}"),
                    [h4, c.layer_input(k)],
                    &w.w_ih,
                ));
                out.push((
                    format!("lstm.weight_hh_l{k}{s}"),
                    [h4, c.hidden_size],
                    &w.w_hh,
                ));
                out.push((format!("lstm.bias_ih_l{k}{s}"), [1, h4], &w.b_ih));
                out.push((format!("lstm.bias_hh_l{k}{s}"), [1, h4], &w.b_hh));
            }
        }
        out.push((
            "fc.weight".into(),
            [c.num_classes, c.feature_dim()],
            &self.fc_w,
        ));
        out.push(("fc.bias".into(), [1, c.num_classes], &self.fc_b));
        out
    }

    /// Check every tensor has the size the config implies.
    pub fn check(&self) -> Result<(), LstmError> {
        self.config.validate()?;
        if self.layers.len() != self.config.num_layers
            || self
                .layers
                .iter()
                .any(|d| d.len() != self.config.directions())
        {
            return Err(LstmError::BadConfig {
                what: "layer/direction count differs from the config".into(),
            });
        }
        for (name, [r, c], v) in self.tensors() {
            if v.len() != r * c {
                return Err(WeightError::TensorShape {
                    name,
                    expected: vec![r, c],
                    actual: vec![v.len()],
                }
                .into());
            }
        }
        Ok(())
    }

    /// The deployable GGUF file: config keys, `labels`, the tokenizer JSON, and every matrix in
    /// `dtype` (biases stay f32; a matrix whose rows are not whole blocks of `dtype` stays f32).
    pub fn to_gguf(
        &self,
        dtype: DType,
        labels: &[String],
        tokenizer_json: &str,
    ) -> Result<Vec<u8>, LstmError> {
        self.writer(dtype, labels, tokenizer_json)?
            .to_bytes()
            .map_err(Into::into)
    }

    /// [`to_gguf`](Self::to_gguf) written atomically to `path`.
    pub fn write_gguf(
        &self,
        path: impl AsRef<std::path::Path>,
        dtype: DType,
        labels: &[String],
        tokenizer_json: &str,
    ) -> Result<(), LstmError> {
        self.writer(dtype, labels, tokenizer_json)?
            .write_file(path)
            .map_err(Into::into)
    }

    fn writer(
        &self,
        dtype: DType,
        labels: &[String],
        tokenizer_json: &str,
    ) -> Result<GgufWriter<'static>, LstmError> {
        self.check()?;
        if labels.len() != self.config.num_classes {
            return Err(LstmError::BadConfig {
                what: format!(
                    "{} labels for {} classes",
                    labels.len(),
                    self.config.num_classes
                ),
            });
        }
        let mut w = GgufWriter::new();
        for (k, v) in self.config.to_metadata() {
            w.add_metadata(&k, v)?;
        }
        w.add_str_array(&format!("{}.labels", crate::ARCH), labels)?;
        w.add_metadata(
            "tokenizer.huggingface.json",
            Value::String(tokenizer_json.to_string()),
        )?;
        for (name, [rows, cols], values) in self.tensors() {
            let is_matrix = !name.contains(".bias");
            let t = if is_matrix && dtype != DType::F32 && fits(dtype, cols) {
                let data = edgeinfer_kernels::quantize_to_vec(dtype, values)?;
                Tensor::owned(dtype, &[cols, rows], data)
            } else if rows == 1 {
                Tensor::from_f32(&[cols], values)
            } else {
                Tensor::from_f32(&[cols, rows], values)
            }
            .map_err(|e| LstmError::BadConfig {
                what: format!("{name}: {e}"),
            })?;
            w.add_tensor(&name, t)?;
        }
        Ok(w)
    }
}

fn fits(dtype: DType, cols: usize) -> bool {
    cols.is_multiple_of(dtype.info().block_size)
}

impl LstmWeights {
    /// Read (and dequantize) every tensor of a classifier file; with the labels and tokenizer
    /// JSON (if any). Re-export with [`to_gguf`](Self::to_gguf) to change the weight type.
    pub fn from_file(
        file: &edgeinfer_gguf::GgufFile,
    ) -> Result<(LstmWeights, Vec<String>, Option<String>), LstmError> {
        let md = file.metadata();
        let (config, labels) = LstmConfig::from_metadata(md)?;
        let tokenizer = match md.get("tokenizer.huggingface.json") {
            None => None,
            Some(_) => Some(md.get_str("tokenizer.huggingface.json")?.to_string()),
        };
        let mut w = LstmWeights::zeros(&config);
        let names: Vec<(String, [usize; 2])> =
            w.tensors().into_iter().map(|(n, s, _)| (n, s)).collect();
        let mut values = Vec::with_capacity(names.len());
        for (name, [rows, cols]) in names {
            let info = file
                .tensor_info(&name)
                .map_err(|_| WeightError::MissingTensor { name: name.clone() })?;
            let want: Vec<usize> = if rows == 1 {
                vec![cols]
            } else {
                vec![cols, rows]
            };
            if info.shape != want {
                return Err(WeightError::TensorShape {
                    name,
                    expected: want,
                    actual: info.shape.clone(),
                }
                .into());
            }
            let t = file.view(info)?;
            values.push(edgeinfer_kernels::dequantize_to_vec(
                info.dtype,
                t.data(),
                rows * cols,
            )?);
        }
        let mut it = values.into_iter();
        let mut next = || it.next().expect("one value per tensor");
        w.embedding = next();
        for dirs in &mut w.layers {
            for d in dirs {
                d.w_ih = next();
                d.w_hh = next();
                d.b_ih = next();
                d.b_hh = next();
            }
        }
        w.fc_w = next();
        w.fc_b = next();
        Ok((w, labels, tokenizer))
    }
}
