//! Labelled texts from CSV (header row, columns by name) or JSON Lines (one object per line),
//! and their labels as class indices: the data a classifier is trained, tested and run on.

use std::path::Path;

/// Errors reading or labelling data: each names the file and line, or the set and label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file cannot be read, or a line of it parsed.
    #[error("{path}: {what}")]
    File { path: String, what: String },
    /// An example's label is not one of the labels it is mapped to.
    #[error("{what}: label {label:?} does not occur in the training set {labels:?}")]
    UnknownLabel {
        what: String,
        label: String,
        labels: Vec<String>,
    },
    /// A training set without examples, or whose examples all share one label.
    #[error("{what}: a classifier needs two or more classes; the labels are {labels:?}")]
    TooFewClasses { what: String, labels: Vec<String> },
}

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: String,
}

fn err(path: &Path, what: impl Into<String>) -> DataError {
    DataError::File {
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
) -> Result<Vec<Example>, DataError> {
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
) -> Result<Vec<Example>, DataError> {
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
) -> Result<Vec<Example>, DataError> {
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

/// The classes a training set defines: its distinct labels, sorted (the output order of a
/// classifier trained on it). Fewer than two is an error naming `what`.
pub fn class_labels(train: &[Example], what: &str) -> Result<Vec<String>, DataError> {
    let mut labels: Vec<String> = train.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return Err(DataError::TooFewClasses {
            what: what.into(),
            labels,
        });
    }
    Ok(labels)
}

/// Index of each example's label in `labels`; an unknown label is an error naming `what` (the
/// set the examples come from).
pub fn label_ids(
    examples: &[Example],
    labels: &[String],
    what: &str,
) -> Result<Vec<u32>, DataError> {
    examples
        .iter()
        .map(|e| {
            labels
                .iter()
                .position(|l| *l == e.label)
                .map(|i| i as u32)
                .ok_or_else(|| DataError::UnknownLabel {
                    what: what.into(),
                    label: e.label.clone(),
                    labels: labels.to_vec(),
                })
        })
        .collect()
}

/// Few-shot examples: the first `per_class` examples of each label in `labels`, in the order
/// the data has them, interleaved by rank (each label's first, then each label's second, ...)
/// so that no label's examples all come last. Each is its text and its index in `labels`; a
/// label with fewer examples gives what it has.
pub fn examples_per_class<'a>(
    examples: &'a [Example],
    labels: &[String],
    per_class: usize,
) -> Vec<(&'a str, usize)> {
    let by_label: Vec<Vec<&str>> = labels
        .iter()
        .map(|l| {
            examples
                .iter()
                .filter(|e| &e.label == l)
                .take(per_class)
                .map(|e| e.text.as_str())
                .collect()
        })
        .collect();
    (0..per_class)
        .flat_map(|rank| {
            by_label
                .iter()
                .enumerate()
                .filter_map(move |(c, texts)| texts.get(rank).map(|t| (*t, c)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeinfer-lstm-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn ex(text: &str, label: &str) -> Example {
        Example {
            text: text.into(),
            label: label.into(),
        }
    }

    #[test]
    fn reads_csv_and_jsonl_by_column_name() {
        let csv = write("a.csv", b"label,text\nham,\"hi, there\"\nspam,win\n");
        let got = read_examples(&csv, "text", Some("label")).unwrap();
        assert_eq!(got, [ex("hi, there", "ham"), ex("win", "spam")]);
        let unlabelled = read_examples(&csv, "text", None).unwrap();
        assert_eq!(unlabelled, [ex("hi, there", ""), ex("win", "")]);

        let jsonl = write(
            "a.jsonl",
            b"{\"text\": \"one\", \"label\": 1}\n\n{\"text\": \"two\", \"label\": \"b\"}\n",
        );
        let got = read_examples(&jsonl, "text", Some("label")).unwrap();
        assert_eq!(got, [ex("one", "1"), ex("two", "b")]);
    }

    #[test]
    fn bad_data_names_the_file_and_line() {
        let no_col = write("nocol.csv", b"body,label\nx,y\n");
        let err = read_examples(&no_col, "text", Some("label")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nocol.csv") && msg.contains("no column \"text\""),
            "{msg}"
        );
        let bad_utf8 = write("bad.csv", b"text,label\n\"ok\",a\n\"caf\xe9\",b\n");
        let err = read_examples(&bad_utf8, "text", Some("label")).unwrap_err();
        assert!(err.to_string().contains("line 3: invalid UTF-8"), "{err}");
        let bad_json = write("bad.jsonl", b"{\"text\": \"a\", \"label\": \"x\"}\n{oops\n");
        let err = read_examples(&bad_json, "text", Some("label")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let missing = write("missing.jsonl", b"{\"label\": \"x\"}\n");
        let err = read_examples(&missing, "text", Some("label")).unwrap_err();
        assert!(err.to_string().contains("line 1: no key \"text\""), "{err}");
    }

    #[test]
    fn label_ids_index_labels_and_name_an_unknown_one() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let ids = label_ids(&[ex("a", "pos"), ex("b", "neg")], &labels, "test set").unwrap();
        assert_eq!(ids, [1, 0]);
        let err = label_ids(&[ex("a", "maybe")], &labels, "test set").unwrap_err();
        assert!(
            matches!(&err, DataError::UnknownLabel { label, .. } if label == "maybe"),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("test set: label \"maybe\""),
            "{err}"
        );
    }

    #[test]
    fn class_labels_are_sorted_distinct_and_at_least_two() {
        let got = class_labels(
            &[ex("a", "spam"), ex("b", "ham"), ex("c", "spam")],
            "train.csv",
        );
        assert_eq!(got.unwrap(), ["ham", "spam"]);
        for one in [vec![ex("a", "ham"), ex("b", "ham")], vec![]] {
            let err = class_labels(&one, "train.csv").unwrap_err();
            assert!(matches!(err, DataError::TooFewClasses { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with("train.csv: a classifier needs two or more classes"),
                "{err}"
            );
        }
    }

    #[test]
    fn examples_per_class_interleave_by_rank() {
        let ex = |text: &str, label: &str| Example {
            text: text.into(),
            label: label.into(),
        };
        let data = [
            ex("a1", "a"),
            ex("a2", "a"),
            ex("a3", "a"),
            ex("b1", "b"),
            ex("c1", "c"),
            ex("b2", "b"),
        ];
        let labels = ["a".to_string(), "b".into(), "c".into()];
        assert_eq!(
            examples_per_class(&data, &labels, 2),
            [("a1", 0), ("b1", 1), ("c1", 2), ("a2", 0), ("b2", 1)]
        );
        assert!(examples_per_class(&data, &labels, 0).is_empty());
        // a label absent from the data contributes nothing
        let labels = ["z".to_string(), "b".into()];
        assert_eq!(examples_per_class(&data, &labels, 1), [("b1", 1)]);
    }
}
