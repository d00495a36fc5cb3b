//! Labelled texts from CSV (header row, columns by name) or JSON Lines (one object per line).

use std::path::Path;

use crate::TrainError;

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: String,
}

fn err(path: &Path, what: impl Into<String>) -> TrainError {
    TrainError::Data {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// Read `path` (`.jsonl`/`.json` as JSON Lines, anything else as CSV). `label_col` may be
/// `None` for unlabelled input (labels are then empty). Invalid UTF-8, a missing column or a
/// malformed row is an error naming the file and line.
pub fn read_examples(
    path: &Path,
    text_col: &str,
    label_col: Option<&str>,
) -> Result<Vec<Example>, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "jsonl" || ext == "json" {
        read_jsonl(path, &bytes, text_col, label_col)
    } else {
        read_csv(path, &bytes, text_col, label_col)
    }
}

fn read_csv(
    path: &Path,
    bytes: &[u8],
    text_col: &str,
    label_col: Option<&str>,
) -> Result<Vec<Example>, TrainError> {
    let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let header = r
        .byte_headers()
        .map_err(|e| err(path, format!("header: {e}")))?
        .clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| {
                let names: Vec<String> = header
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect();
                err(path, format!("no column {name:?} (columns: {names:?})"))
            })
    };
    let ti = col(text_col)?;
    let li = label_col.map(col).transpose()?;
    let mut out = Vec::new();
    for rec in r.byte_records() {
        let rec = rec.map_err(|e| err(path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let field = |i: usize| {
            std::str::from_utf8(&rec[i])
                .map(str::to_string)
                .map_err(|e| err(path, format!("line {line}: invalid UTF-8 ({e})")))
        };
        out.push(Example {
            text: field(ti)?,
            label: li.map(field).transpose()?.unwrap_or_default(),
        });
    }
    Ok(out)
}

fn read_jsonl(
    path: &Path,
    bytes: &[u8],
    text_col: &str,
    label_col: Option<&str>,
) -> Result<Vec<Example>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = std::str::from_utf8(line)
            .map_err(|e| err(path, format!("line {n}: invalid UTF-8 ({e})")))?
            .trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(path, format!("line {n}: {e}")))?;
        let get = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(x)) => Ok(x.to_string()),
            Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
            Some(other) => Err(err(
                path,
                format!("line {n}: {k:?} is {other}, not a string"),
            )),
            None => Err(err(path, format!("line {n}: no key {k:?}"))),
        };
        out.push(Example {
            text: get(text_col)?,
            label: label_col.map(get).transpose()?.unwrap_or_default(),
        });
    }
    Ok(out)
}
