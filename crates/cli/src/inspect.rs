//! `edgeinfer inspect`: metadata, tensor table, tensor values.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use edgeinfer_gguf::{GgufFile, Value};
use serde_json::json;

const ARRAY_PREVIEW: usize = 8;

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_, items) => {
            let shown: Vec<String> = items.iter().take(ARRAY_PREVIEW).map(value_text).collect();
            let more = if items.len() > ARRAY_PREVIEW {
                format!(", … {} more", items.len() - ARRAY_PREVIEW)
            } else {
                String::new()
            };
            format!("[{}{more}] (len {})", shown.join(", "), items.len())
        }
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

fn value_json(v: &Value, full: bool) -> serde_json::Value {
    match v {
        Value::String(s) => json!(s),
        Value::Array(_, items) if !full && items.len() > ARRAY_PREVIEW => json!({
            "len": items.len(),
            "head": items.iter().take(ARRAY_PREVIEW).map(|i| value_json(i, full)).collect::<Vec<_>>(),
        }),
        Value::Array(_, items) => json!(items
            .iter()
            .map(|i| value_json(i, full))
            .collect::<Vec<_>>()),
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
    }
}

pub fn run(
    out: &mut impl Write,
    path: &Path,
    as_json: bool,
    tensor: Option<&str>,
    values: usize,
) -> Result<()> {
    let f = GgufFile::open(path)?;
    if let Some(name) = tensor {
        let t = f.tensor(name)?;
        let n = values.min(t.n_elements());
        let fmt = edgeinfer_kernels::format(t.dtype()).with_context(|| {
            format!(
                "tensor {name:?}: dequantizing {} is not supported yet",
                t.dtype()
            )
        })?;
        // Dequantize whole blocks covering the first n values only.
        let block = t.dtype().block_size();
        let n_blocks = n.div_ceil(block);
        let mut vals = vec![0.0f32; n_blocks * block];
        (fmt.to_f32)(&t.data()[..n_blocks * t.dtype().type_size()], &mut vals);
        if as_json {
            writeln!(
                out,
                "{}",
                json!({"tensor": name, "type": t.dtype().name(), "shape": t.shape(), "values": &vals[..n]})
            )?;
        } else {
            for v in &vals[..n] {
                // `{:?}` prints the shortest string that reads back to the same f32.
                writeln!(out, "{v:?}")?;
            }
        }
        return Ok(());
    }
    if values != 0 {
        bail!("--values needs --tensor NAME");
    }
    let h = f.header();
    if as_json {
        let md: serde_json::Map<String, serde_json::Value> = h
            .metadata
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    json!({"type": v.type_name(), "value": value_json(v, false)}),
                )
            })
            .collect();
        let tensors: Vec<_> = h
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "type": t.dtype.name(), "shape": t.shape, "offset": t.absolute_offset, "bytes": t.n_bytes}))
            .collect();
        let doc = json!({
            "path": path, "version": h.version, "alignment": h.alignment, "data_offset": h.data_offset,
            "metadata": md, "tensors": tensors,
            "kernels": format!("{:?}", edgeinfer_kernels::kernels().level),
            "kernel_levels": edgeinfer_kernels::available_levels().iter().map(|l| format!("{l:?}")).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: GGUF v{}, {} metadata keys, {} tensors, alignment {}",
        path.display(),
        h.version,
        h.metadata.len(),
        h.tensors.len(),
        h.alignment
    )?;
    writeln!(
        out,
        "kernels: {:?} (this CPU has {:?}; EDGEINFER_KERNELS caps the level)",
        edgeinfer_kernels::kernels().level,
        edgeinfer_kernels::available_levels()
    )?;
    writeln!(out, "\n# metadata")?;
    for (k, v) in h.metadata.iter() {
        let mut text = value_text(v);
        if text.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text = format!("{}… ({} chars)", &text[..cut], text.chars().count());
        }
        writeln!(
            out,
            "{k:<40} {:<14} {}",
            v.type_name(),
            text.replace('\n', "\\n")
        )?;
    }
    writeln!(out, "\n# tensors")?;
    writeln!(
        out,
        "{:<32} {:<6} {:<18} {:>12} {:>12}",
        "name", "type", "shape", "offset", "bytes"
    )?;
    let mut total = 0usize;
    for t in &h.tensors {
        total += t.n_bytes;
        writeln!(
            out,
            "{:<32} {:<6} {:<18} {:>12} {:>12}",
            t.name,
            t.dtype.name(),
            format!("{:?}", t.shape),
            t.absolute_offset,
            t.n_bytes
        )?;
    }
    writeln!(
        out,
        "\n{} tensors, {} bytes of tensor data",
        h.tensors.len(),
        total
    )?;
    Ok(())
}
