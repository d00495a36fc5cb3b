//! Which type each tensor gets: llama-quantize's rules (llama.cpp `src/llama-quant.cpp`,
//! `llama_tensor_get_type` and what it calls, at commit e95dae18d), for the file types
//! `edgeinfer quantize` offers.
//!
//! A file type ("mix") names a base type. Tensors that may be quantized (2-D and 3-D weights
//! other than norms and a few small special ones) get the base type, adjusted by role unless
//! `--pure`: the output matrix (and the token embedding when it doubles as the output) gets
//! Q6_K, or Q8_0 when its rows are not whole super-blocks; attn_v and ffn_down get more bits in
//! some layers for the _M/_L mixes; and a K-quant whose block does not divide the row length
//! falls back (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16). Every other
//! tensor keeps its type. Like llama.cpp, layer-dependent choices count tensors in
//! llama.cpp's order ([`llama_order`]), not by the number in their names.

use anyhow::{bail, Context, Result};
use edgeinfer_gguf::{Metadata, Value};
use edgeinfer_tensor::DType;

/// A file type `edgeinfer quantize` can make, with llama.cpp's `llama_ftype` number (what
/// `general.file_type` holds) and base tensor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Mix {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    F16,
    BF16,
    F32,
}

impl Mix {
    /// Every mix: itself, its name, `llama_ftype`, base type.
    pub const ALL: [(Mix, &'static str, u32, DType); 17] = [
        (Mix::Q4_0, "Q4_0", 2, DType::Q4_0),
        (Mix::Q4_1, "Q4_1", 3, DType::Q4_1),
        (Mix::Q5_0, "Q5_0", 8, DType::Q5_0),
        (Mix::Q5_1, "Q5_1", 9, DType::Q5_1),
        (Mix::Q8_0, "Q8_0", 7, DType::Q8_0),
        (Mix::Q2_K, "Q2_K", 10, DType::Q2_K),
        (Mix::Q3_K_S, "Q3_K_S", 11, DType::Q3_K),
        (Mix::Q3_K_M, "Q3_K_M", 12, DType::Q3_K),
        (Mix::Q3_K_L, "Q3_K_L", 13, DType::Q3_K),
        (Mix::Q4_K_S, "Q4_K_S", 14, DType::Q4_K),
        (Mix::Q4_K_M, "Q4_K_M", 15, DType::Q4_K),
        (Mix::Q5_K_S, "Q5_K_S", 16, DType::Q5_K),
        (Mix::Q5_K_M, "Q5_K_M", 17, DType::Q5_K),
        (Mix::Q6_K, "Q6_K", 18, DType::Q6_K),
        (Mix::F16, "F16", 1, DType::F16),
        (Mix::BF16, "BF16", 32, DType::BF16),
        (Mix::F32, "F32", 0, DType::F32),
    ];

    fn row(self) -> &'static (Mix, &'static str, u32, DType) {
        Mix::ALL
            .iter()
            .find(|r| r.0 == self)
            .expect("every mix has a row")
    }

    /// The name llama-quantize prints.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// llama.cpp's `llama_ftype` number, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        self.row().2
    }

    /// The type most tensors get.
    pub fn base(self) -> DType {
        self.row().3
    }

    /// A mix by name, case-insensitive; `Q3_K`, `Q4_K` and `Q5_K` mean the _M mixes, as in
    /// llama-quantize.
    pub fn parse(s: &str) -> Result<Mix> {
        let alias = match s.to_ascii_uppercase().as_str() {
            "Q3_K" => Some(Mix::Q3_K_M),
            "Q4_K" => Some(Mix::Q4_K_M),
            "Q5_K" => Some(Mix::Q5_K_M),
            _ => None,
        };
        if let Some(m) = alias {
            return Ok(m);
        }
        match Mix::ALL.iter().find(|r| r.1.eq_ignore_ascii_case(s)) {
            Some(r) => Ok(r.0),
            None => {
                let names: Vec<&str> = Mix::ALL.iter().map(|r| r.1).collect();
                bail!(
                    "unknown TYPE {s:?}: one of {} (Q3_K, Q4_K, Q5_K mean the _M mixes)",
                    names.join(", ")
                )
            }
        }
    }
}

/// What the rules read from the model's hyper-parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    pub arch: String,
    pub n_layer: i64,
    /// Query heads per K/V head (layer 0; 0 without K/V heads), llama.cpp's `n_gqa()`.
    pub n_gqa: u32,
    pub n_expert: u32,
    /// llama.cpp classifies the model as its `LLM_TYPE_70B` (attn_v gets Q5_K for Q3_K/Q4_K).
    pub is_70b: bool,
}

/// An integer key, or the first element of a per-layer array.
fn first_integer(md: &Metadata, key: &str) -> Result<Option<i128>> {
    let v = match md.get(key) {
        None => return Ok(None),
        Some(Value::Array(_, items)) => items.first(),
        Some(v) => Some(v),
    };
    match v {
        None => Ok(None),
        Some(v) => v
            .as_integer()
            .map(Some)
            .with_context(|| format!("metadata key {key:?}: expected an integer, found {v:?}")),
    }
}

impl ModelFacts {
    /// Read `general.architecture` and its `block_count`, `attention.head_count(_kv)` and
    /// `expert_count` keys (the last three default as in llama.cpp).
    pub fn from_metadata(md: &Metadata) -> Result<ModelFacts> {
        let arch = md
            .get_str("general.architecture")
            .context("the input has no general.architecture")?
            .to_string();
        let n_layer = first_integer(md, &format!("{arch}.block_count"))?
            .with_context(|| format!("the input has no {arch}.block_count"))?;
        let n_head = first_integer(md, &format!("{arch}.attention.head_count"))?.unwrap_or(0);
        let n_head_kv =
            first_integer(md, &format!("{arch}.attention.head_count_kv"))?.unwrap_or(n_head);
        let n_expert = first_integer(md, &format!("{arch}.expert_count"))?.unwrap_or(0);
        let n_layer = i64::try_from(n_layer)
            .ok()
            .filter(|n| (0..1 << 20).contains(n))
            .with_context(|| format!("{arch}.block_count = {n_layer} is out of range"))?;
        let n_gqa = if n_head_kv == 0 {
            0
        } else {
            u32::try_from(n_head / n_head_kv).unwrap_or(0)
        };
        let is_70b = match arch.as_str() {
            "llama" => n_layer == 80 && n_head != n_head_kv,
            "qwen2" | "deci" | "olmo" => n_layer == 80,
            "jais2" => n_layer == 68,
            _ => false,
        };
        Ok(ModelFacts {
            arch,
            n_layer,
            n_gqa,
            n_expert: u32::try_from(n_expert).unwrap_or(0),
            is_70b,
        })
    }
}

/// A tensor as the rules see it: name, shape (GGML order, trailing 1s dropped as ggml's
/// `ggml_n_dims` does) and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorDesc {
    /// A description with the trailing 1-sized dimensions of `shape` dropped (at least one
    /// dimension kept), as llama.cpp writes shapes.
    pub fn new(name: &str, shape: &[usize], dtype: DType) -> TensorDesc {
        let n = shape.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
        TensorDesc {
            name: name.to_string(),
            shape: shape[..n.min(shape.len()).max(1)].to_vec(),
            dtype,
        }
    }
}

/// The layer number of a `blk.N.` name, as llama.cpp's `sscanf(name, "blk.%d.")`.
fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => (1, rest),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().ok().map(|v| sign * v)
}

/// The order llama.cpp's loader lists tensors in (and llama-quantize writes them): by layer
/// number (tensors outside `blk.N.` first), then by name, bytewise.
pub fn llama_order(tensors: &mut [TensorDesc]) {
    tensors.sort_by(|a, b| {
        let key = |t: &TensorDesc| layer_of(&t.name).unwrap_or(-1);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return C::TokenEmbd;
    }
    let table = [
        ("attn_qkv.weight", C::AttnQkv),
        ("attn_kv_b.weight", C::AttnKvB),
        ("attn_v.weight", C::AttnV),
        ("attn_k.weight", C::AttnK),
        ("attn_q.weight", C::AttnQ),
        ("attn_output.weight", C::AttnOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ];
    table
        .iter()
        .find(|(s, _)| name.contains(s))
        .map_or(C::Other, |&(_, c)| c)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Name fragments of tensors that stay as they are though they are 2-D weights.
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
];

/// Whether llama-quantize may change this tensor's type (`tensor_allows_quantization`): 2-D
/// or 3-D, named `…weight`, and none of the special small tensors.
pub fn allows_quantization(t: &TensorDesc) -> bool {
    if t.shape.len() < 2 {
        return false;
    }
    // llama.cpp tests `name.rfind("weight") == name.size() - 6`, which a 5-byte name without
    // "weight" also passes (size_t wrap-around); kept so the choices stay the same.
    let ends_weight =
        t.name.ends_with("weight") || (t.name.len() == 5 && !t.name.contains("weight"));
    ends_weight
        && !NEVER_QUANTIZED.iter().any(|s| t.name.contains(s))
        && t.name != "position_embd.weight"
        && t.name != "token_types.weight"
}

/// The type chosen for one tensor, and why it differs from the plain rule, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The type the output file holds.
    pub dtype: DType,
    /// Whether the rules may change this tensor at all (false: it keeps its type).
    pub quantizable: bool,
    /// The K-quant the mix wanted before a row length forced `dtype`.
    pub fell_back_from: Option<DType>,
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The running state of llama-quantize's choice: counters of the layer-dependent roles.
struct Chooser<'a> {
    facts: &'a ModelFacts,
    mix: Mix,
    tied_embeddings: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

impl Chooser<'_> {
    /// (layer, layers) of an FFN tensor: the running count, or with experts the name's number.
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64)> {
        let n = self.facts.n_layer;
        if self.facts.n_expert > 1 {
            let i = layer_of(name)
                .with_context(|| format!("failed to determine the layer of tensor {name:?}"))?;
            if !(0..n).contains(&i) {
                bail!("tensor {name:?}: layer {i} is outside [0, {n})");
            }
            return Ok((i, n));
        }
        Ok((counter, n))
    }

    /// `llama_tensor_get_type_impl` for the offered mixes.
    fn by_role(&mut self, t: &TensorDesc, cat: Category) -> Result<DType> {
        use DType as D;
        use Mix as M;
        let (mix, facts) = (self.mix, self.facts);
        let falcon = facts.arch == "falcon";
        let mut ty = mix.base();
        if cat == Category::Output || (self.tied_embeddings && cat == Category::TokenEmbd) {
            if falcon || !t.shape[0].is_multiple_of(ty.block_size()) {
                ty = D::Q8_0;
            } else if ty != D::Q8_0 {
                ty = D::Q6_K;
            }
        } else if cat == Category::TokenEmbd {
            // untied embeddings: only the IQ/TQ mixes (not offered) change them
        } else if is_attn_v_like(cat) {
            let i = self.i_attention_wv;
            match mix {
                M::Q2_K => ty = if facts.n_gqa >= 4 { D::Q4_K } else { D::Q3_K },
                M::Q3_K_M => ty = if i < 2 { D::Q5_K } else { D::Q4_K },
                M::Q3_K_L => ty = D::Q5_K,
                M::Q4_K_M | M::Q5_K_M if use_more_bits(i, self.n_attention_wv) => ty = D::Q6_K,
                M::Q4_K_S if i < 4 => ty = D::Q5_K,
                _ => {}
            }
            if facts.is_70b && matches!(ty, D::Q3_K | D::Q4_K) {
                ty = D::Q5_K;
            }
            if facts.n_expert == 8 {
                ty = D::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttnK {
            if facts.n_expert == 8 {
                ty = D::Q8_0;
            }
        } else if cat == Category::FfnDown {
            let (i, n) = self.layer_info(self.i_ffn_down, &t.name)?;
            match mix {
                M::Q2_K => ty = D::Q3_K,
                M::Q3_K_M => {
                    ty = if i < n / 16 {
                        D::Q5_K
                    } else if !falcon || use_more_bits(i, n) {
                        D::Q4_K
                    } else {
                        D::Q3_K
                    }
                }
                M::Q3_K_L => ty = if falcon { D::Q4_K } else { D::Q5_K },
                M::Q4_K_M if falcon => {
                    ty = if i < n / 16 {
                        D::Q6_K
                    } else if use_more_bits(i, n) {
                        D::Q5_K
                    } else {
                        D::Q4_K
                    }
                }
                M::Q4_K_M if use_more_bits(i, n) => ty = D::Q6_K,
                M::Q5_K_M if use_more_bits(i, n) => ty = D::Q6_K,
                M::Q4_K_S if !falcon && i < n / 8 => ty = D::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttnOutput {
            if !falcon {
                if facts.n_expert == 8 {
                    if matches!(mix, M::Q2_K | M::Q3_K_S | M::Q3_K_M | M::Q4_K_S | M::Q4_K_M) {
                        ty = D::Q5_K;
                    }
                } else {
                    match mix {
                        M::Q2_K => ty = D::Q3_K,
                        M::Q3_K_M => ty = D::Q4_K,
                        M::Q3_K_L => ty = D::Q5_K,
                        _ => {}
                    }
                }
            } else if mix == M::Q3_K_L {
                ty = D::Q4_K;
            }
        } else if cat == Category::AttnQkv {
            match mix {
                M::Q3_K_M | M::Q3_K_L => ty = D::Q4_K,
                M::Q4_K_M => ty = D::Q5_K,
                M::Q5_K_M => ty = D::Q6_K,
                _ => {}
            }
        } else if cat == Category::FfnGate {
            self.layer_info(self.i_ffn_gate, &t.name)?;
            self.i_ffn_gate += 1;
        } else if cat == Category::FfnUp {
            self.layer_info(self.i_ffn_up, &t.name)?;
            self.i_ffn_up += 1;
        }
        Ok(ty)
    }
}

/// llama.cpp's `tensor_type_fallback`: a type whose block divides the row length.
fn fallback(t: &TensorDesc, ty: DType) -> Result<DType> {
    let cols = t.shape[0];
    if cols.is_multiple_of(ty.block_size()) {
        return Ok(ty);
    }
    let next = match ty {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        _ => bail!(
            "tensor {:?}: its rows of {cols} are not whole {ty} blocks of {}, and llama.cpp \
             defines no fallback for {ty}",
            t.name,
            ty.block_size()
        ),
    };
    Ok(if cols.is_multiple_of(next.block_size()) {
        next
    } else {
        DType::F16
    })
}

/// The type of every tensor of a model (given in llama.cpp's order, [`llama_order`]) for
/// `mix`; with `pure`, every quantizable tensor gets the mix's base type (and a row length it
/// cannot hold is an error instead of a fallback).
pub fn choose(
    tensors: &[TensorDesc],
    facts: &ModelFacts,
    mix: Mix,
    pure: bool,
) -> Result<Vec<Choice>> {
    let mut chooser = Chooser {
        facts,
        mix,
        tied_embeddings: !tensors
            .iter()
            .any(|t| category(&t.name) == Category::Output),
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
    };
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !allows_quantization(t) {
            out.push(Choice {
                dtype: t.dtype,
                quantizable: false,
                fell_back_from: None,
            });
            continue;
        }
        let base = mix.base();
        let choice = if pure || !base.is_quantized() {
            if !t.shape[0].is_multiple_of(base.block_size()) {
                bail!(
                    "tensor {:?}: its rows of {} are not whole {base} blocks of {} (without \
                     --pure, K-quants fall back to a type that fits)",
                    t.name,
                    t.shape[0],
                    base.block_size()
                );
            }
            Choice {
                dtype: base,
                quantizable: true,
                fell_back_from: None,
            }
        } else {
            let wanted = chooser.by_role(t, category(&t.name))?;
            let dtype = fallback(t, wanted)?;
            Choice {
                dtype,
                quantizable: true,
                fell_back_from: (dtype != wanted).then_some(wanted),
            }
        };
        out.push(choice);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(arch: &str, n_layer: i64, n_gqa: u32) -> ModelFacts {
        ModelFacts {
            arch: arch.into(),
            n_layer,
            n_gqa,
            n_expert: 0,
            is_70b: false,
        }
    }

    fn desc(name: &str, shape: &[usize]) -> TensorDesc {
        TensorDesc::new(name, shape, DType::F16)
    }

    /// A llama-like layout: `n_layer` blocks, rows of `embd` (attention, gate, up) and `ff`
    /// (down), tied or untied output.
    fn layout(n_layer: usize, embd: usize, ff: usize, tied: bool) -> Vec<TensorDesc> {
        let mut v = vec![
            desc("token_embd.weight", &[embd, 64]),
            desc("output_norm.weight", &[embd]),
        ];
        if !tied {
            v.push(desc("output.weight", &[embd, 64]));
        }
        for i in 0..n_layer {
            for (n, cols) in [
                ("attn_norm.weight", 0),
                ("attn_q.weight", embd),
                ("attn_k.weight", embd),
                ("attn_v.weight", embd),
                ("attn_output.weight", embd),
                ("ffn_norm.weight", 0),
                ("ffn_gate.weight", embd),
                ("ffn_up.weight", embd),
                ("ffn_down.weight", ff),
            ] {
                let shape = if cols == 0 { vec![embd] } else { vec![cols, 8] };
                v.push(desc(&format!("blk.{i}.{n}"), &shape));
            }
        }
        llama_order(&mut v);
        v
    }

    fn types_of(t: &[TensorDesc], c: &[Choice], part: &str) -> Vec<DType> {
        t.iter()
            .zip(c)
            .filter(|(t, _)| t.name.contains(part) && !t.name.contains(&format!("_{part}")))
            .map(|(_, c)| c.dtype)
            .collect()
    }

    #[test]
    fn mixes_parse_case_insensitively_with_aliases() {
        assert_eq!(Mix::parse("q4_k_m").unwrap(), Mix::Q4_K_M);
        assert_eq!(Mix::parse("Q4_K").unwrap(), Mix::Q4_K_M);
        assert_eq!(Mix::parse("q3_k").unwrap(), Mix::Q3_K_M);
        assert_eq!(Mix::parse("bf16").unwrap(), Mix::BF16);
        let e = Mix::parse("Q4_X").unwrap_err().to_string();
        assert!(
            e.contains("unknown TYPE \"Q4_X\"") && e.contains("Q5_K_M"),
            "{e}"
        );
        assert_eq!(Mix::Q4_K_M.file_type(), 15);
        assert_eq!(Mix::Q6_K.base(), DType::Q6_K);
    }

    #[test]
    fn order_is_by_layer_number_then_name() {
        let mut v: Vec<TensorDesc> = ["blk.10.a", "blk.2.b", "output.weight", "blk.2.a", "a"]
            .iter()
            .map(|n| desc(n, &[32, 2]))
            .collect();
        llama_order(&mut v);
        let names: Vec<&str> = v.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "output.weight", "blk.2.a", "blk.2.b", "blk.10.a"]
        );
    }

    /// Q4_K_M on 16 layers: attn_v and ffn_down get Q6_K in layers 0, 1, 4, 7, 10, 13, 14, 15
    /// (use_more_bits), the tied embedding Q6_K, everything else Q4_K, norms keep F16.
    #[test]
    fn q4_k_m_bumps_attn_v_and_ffn_down_by_layer() {
        let t = layout(16, 256, 512, true);
        let c = choose(&t, &facts("llama", 16, 2), Mix::Q4_K_M, false).unwrap();
        let bumped = [0, 1, 4, 7, 10, 13, 14, 15];
        let want: Vec<DType> = (0..16)
            .map(|i| {
                if bumped.contains(&i) {
                    DType::Q6_K
                } else {
                    DType::Q4_K
                }
            })
            .collect();
        assert_eq!(types_of(&t, &c, "attn_v"), want);
        assert_eq!(types_of(&t, &c, "ffn_down"), want);
        assert_eq!(types_of(&t, &c, "attn_q"), vec![DType::Q4_K; 16]);
        assert_eq!(types_of(&t, &c, "token_embd"), vec![DType::Q6_K]);
        assert_eq!(types_of(&t, &c, "_norm"), vec![DType::F16; 33]);
    }

    /// Rows that are not whole super-blocks fall back, the tied embedding goes to Q8_0, and a
    /// row length no fallback holds becomes F16.
    #[test]
    fn fallbacks_follow_llama_cpp() {
        let t = layout(4, 576, 1536, true);
        let c = choose(&t, &facts("llama", 4, 3), Mix::Q4_K_M, false).unwrap();
        assert_eq!(types_of(&t, &c, "token_embd"), vec![DType::Q8_0]);
        assert_eq!(types_of(&t, &c, "attn_q"), vec![DType::Q5_0; 4]);
        // of 4 layers, attn_v wants Q6_K in 2 and 3 (use_more_bits), Q4_K in 0 and 1
        assert_eq!(
            types_of(&t, &c, "attn_v"),
            [DType::Q5_0, DType::Q5_0, DType::Q8_0, DType::Q8_0]
        );
        let q = t
            .iter()
            .position(|t| t.name == "blk.0.attn_q.weight")
            .unwrap();
        assert_eq!(c[q].fell_back_from, Some(DType::Q4_K));
        assert_eq!(types_of(&t, &c, "ffn_down")[1], DType::Q4_K);

        let odd = vec![desc("blk.0.attn_q.weight", &[48, 4])];
        let c = choose(&odd, &facts("llama", 1, 1), Mix::Q4_K_M, false).unwrap();
        assert_eq!(c[0].dtype, DType::F16);
        let e = choose(&odd, &facts("llama", 1, 1), Mix::Q4_0, false).unwrap_err();
        assert!(e.to_string().contains("no fallback for Q4_0"), "{e}");
        let e = choose(&odd, &facts("llama", 1, 1), Mix::Q4_K_M, true).unwrap_err();
        assert!(e.to_string().contains("--pure"), "{e}");
    }

    /// Untied output: output.weight gets Q6_K, the embedding the base type; Q2_K's attn_v
    /// depends on grouped-query attention; the F types touch only quantizable tensors.
    #[test]
    fn output_embedding_and_gqa_rules() {
        let t = layout(8, 256, 256, false);
        let c = choose(&t, &facts("qwen2", 8, 1), Mix::Q2_K, false).unwrap();
        assert_eq!(types_of(&t, &c, "output.weight"), vec![DType::Q6_K]);
        assert_eq!(types_of(&t, &c, "token_embd"), vec![DType::Q2_K]);
        assert_eq!(types_of(&t, &c, "attn_v"), vec![DType::Q3_K; 8]);
        assert_eq!(types_of(&t, &c, "attn_output"), vec![DType::Q3_K; 8]);
        assert_eq!(types_of(&t, &c, "ffn_down"), vec![DType::Q3_K; 8]);
        let c = choose(&t, &facts("qwen2", 8, 4), Mix::Q2_K, false).unwrap();
        assert_eq!(types_of(&t, &c, "attn_v"), vec![DType::Q4_K; 8]);
        let c = choose(&t, &facts("qwen2", 8, 4), Mix::BF16, false).unwrap();
        assert_eq!(types_of(&t, &c, "output.weight"), vec![DType::BF16]);
        assert_eq!(types_of(&t, &c, "_norm"), vec![DType::F16; 17]);
    }

    #[test]
    fn shapes_drop_trailing_ones_and_one_d_tensors_keep_their_type() {
        let t = TensorDesc::new("blk.0.attn_q.weight", &[256, 1, 1], DType::F32);
        assert_eq!(t.shape, vec![256]);
        assert!(!allows_quantization(&t));
        assert_eq!(TensorDesc::new("x", &[1, 1], DType::F32).shape, vec![1]);
        assert!(allows_quantization(&desc(
            "blk.0.ffn_down_exps.weight",
            &[256, 8, 4]
        )));
        assert!(!allows_quantization(&desc(
            "blk.0.ffn_gate_inp.weight",
            &[256, 8]
        )));
        assert!(!allows_quantization(&desc("blk.0.attn_q.bias", &[256, 8])));
    }

    /// What llama-quantize --dry-run chose for every tensor of SmolLM2-135M (llama),
    /// Qwen2.5-Coder-0.5B (qwen2) and Gemma-3-270M (gemma3), for every mix
    /// (fixtures/quantize/types-real.json): the same types here.
    #[test]
    fn choices_equal_llama_quantize_on_real_models() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/quantize/types-real.json"
        );
        let text = std::fs::read_to_string(path).expect("fixtures/quantize/types-real.json");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut checked = 0;
        for (file, m) in doc["models"].as_object().unwrap() {
            let int = |k: &str| m[k].as_i64().unwrap();
            let (n_head, n_head_kv) = (int("head_count"), int("head_count_kv"));
            let facts = ModelFacts {
                arch: m["architecture"].as_str().unwrap().into(),
                n_layer: int("block_count"),
                n_gqa: (n_head / n_head_kv) as u32,
                n_expert: 0,
                is_70b: false,
            };
            let listed: Vec<TensorDesc> = m["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let shape: Vec<usize> = t["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect();
                    let dtype = DType::from_name(t["type"].as_str().unwrap()).unwrap();
                    TensorDesc::new(t["name"].as_str().unwrap(), &shape, dtype)
                })
                .collect();
            let mut ordered = listed.clone();
            llama_order(&mut ordered);
            for (mix_name, types) in m["types"].as_object().unwrap() {
                let mix = Mix::parse(mix_name).unwrap();
                let chosen = choose(&ordered, &facts, mix, false).unwrap();
                for (t, want) in listed.iter().zip(types.as_array().unwrap()) {
                    let i = ordered.iter().position(|o| o.name == t.name).unwrap();
                    let want = DType::from_name(want.as_str().unwrap()).unwrap();
                    assert_eq!(chosen[i].dtype, want, "{file} {mix_name} {}", t.name);
                    checked += 1;
                }
            }
        }
        // (272 + 291 + 236) tensors × 17 mixes
        assert_eq!(checked, 799 * 17);
    }

    /// The facts come from the architecture's keys; head counts may be per-layer arrays.
    #[test]
    fn facts_from_metadata() {
        let mut md = Metadata::default();
        md.insert("general.architecture".into(), Value::String("llama".into()));
        assert!(ModelFacts::from_metadata(&md)
            .unwrap_err()
            .to_string()
            .contains("llama.block_count"));
        md.insert("llama.block_count".into(), Value::U32(80));
        md.insert("llama.attention.head_count".into(), Value::U32(64));
        md.insert(
            "llama.attention.head_count_kv".into(),
            Value::Array(
                edgeinfer_gguf::ValueType::I32,
                vec![Value::I32(8), Value::I32(8)],
            ),
        );
        let f = ModelFacts::from_metadata(&md).unwrap();
        assert_eq!((f.n_layer, f.n_gqa, f.n_expert, f.is_70b), (80, 8, 0, true));
    }
}
