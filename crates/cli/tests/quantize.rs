//! `edgeinfer quantize` end to end against llama-quantize's files (fixtures/quantize/, made by
//! gen_quantize_fixtures.py with llama.cpp e95dae18d): the same bytes for every TYPE on tiny
//! llama / qwen2 / gemma3 models (F16, F32, BF16 and Q4_K_M inputs), `--pure` on the quantizer
//! fixture, the `--dry-run` table, and bad input that fails cleanly and leaves no file behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeinfer_gguf::{GgufFile, GgufWriter, Value};
use edgeinfer_tensor::{DType, Tensor};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/quantize")
}

fn edgeinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeinfer"))
        .arg("quantize")
        .args(args)
        .output()
        .expect("running edgeinfer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every tiny model × every TYPE: each tensor's type and bytes, then the whole file, equal to
/// llama-quantize's (alternating 1 and 3 threads: the split of rows never shows).
#[test]
fn every_type_equals_llama_quantize_byte_for_byte() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for (model, expected) in doc["models"].as_object().unwrap() {
        let src = fixtures().join(model);
        let names: Vec<&str> = expected["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[0].as_str().unwrap())
            .collect();
        for (mix, want) in expected.as_object().unwrap() {
            if mix == "tensors" {
                continue;
            }
            let out = dir.path().join(format!("{model}.{mix}.gguf"));
            let threads = if runs % 2 == 0 { "1" } else { "3" };
            let o = edgeinfer(&[
                "-t",
                threads,
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                mix,
            ]);
            assert!(o.status.success(), "{model} {mix}: {}", stderr(&o));
            let f = GgufFile::open(&out).unwrap();
            let got: Vec<&str> = f.tensor_infos().iter().map(|t| t.name.as_str()).collect();
            assert_eq!(got, names, "{model} {mix}: tensor order");
            for (i, info) in f.tensor_infos().iter().enumerate() {
                assert_eq!(
                    info.dtype.name(),
                    want["types"][i].as_str().unwrap(),
                    "{model} {mix}: type of {}",
                    info.name
                );
                let t = f.view(info).unwrap();
                assert_eq!(
                    sha256(t.data()),
                    want["sha256"][i].as_str().unwrap(),
                    "{model} {mix}: bytes of {} ({})",
                    info.name,
                    info.dtype
                );
            }
            assert_eq!(
                sha256(f.bytes()),
                want["file_sha256"].as_str().unwrap(),
                "{model} {mix}: the whole file (metadata, layout)"
            );
            assert_eq!(
                f.metadata().get_u32("general.file_type").unwrap(),
                match mix.as_str() {
                    "Q4_K_M" => 15,
                    "Q8_0" => 7,
                    "F16" => 1,
                    _ => f.metadata().get_u32("general.file_type").unwrap(),
                }
            );
            std::fs::remove_file(&out).unwrap();
            runs += 1;
        }
    }
    assert_eq!(runs, 3 * 17 + 4);
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

/// `--pure` gives every quantizable tensor the one type: the whole file equals
/// llama-quantize --pure's for every quantizer.
#[test]
fn pure_equals_llama_quantize_pure() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("blocks.f32.gguf");
    for mix in [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K",
    ] {
        let out = dir.path().join(format!("{mix}.gguf"));
        let o = edgeinfer(&["--pure", src.to_str().unwrap(), out.to_str().unwrap(), mix]);
        assert!(o.status.success(), "{mix}: {}", stderr(&o));
        let want = std::fs::read(fixtures().join(format!("blocks.{mix}.gguf"))).unwrap();
        assert!(std::fs::read(&out).unwrap() == want, "{mix}: differs");
    }
}

/// `--dry-run` prints every tensor's chosen type (llama-quantize's), with the fallbacks, and
/// writes nothing.
#[test]
fn dry_run_prints_the_choices_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.gguf");
    std::fs::copy(fixtures().join("tiny-qwen2.f32.gguf"), &src).unwrap();
    let o = edgeinfer(&["--dry-run", src.to_str().unwrap(), "Q4_K_M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8(o.stdout).unwrap();
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let m = &doc["models"]["tiny-qwen2.f32.gguf"];
    let lines: Vec<&str> = table.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), m["tensors"].as_array().unwrap().len());
    for (line, (t, ty)) in lines.iter().zip(
        m["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .zip(m["Q4_K_M"]["types"].as_array().unwrap()),
    ) {
        let name = t[0].as_str().unwrap();
        let ty = ty.as_str().unwrap();
        assert!(
            line.contains(&format!(" {name} ")) && line.contains(&format!("-> {ty} ")),
            "{line:?}: want {name} -> {ty}"
        );
    }
    assert!(table.contains("blk.0.attn_q.weight") && table.contains("(Q4_K needs rows of 256"));
    assert!(table.contains("Q4_K_M: "), "{table}");
    assert_eq!(listing(dir.path()), ["in.gguf"]);
}

/// A small GGUF with one 2-D tensor (and the keys the type choice reads).
fn one_tensor_model(path: &Path, tensor: Tensor<'static>) {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add_metadata("llama.block_count", Value::U32(1)).unwrap();
    w.add_tensor("blk.0.attn_q.weight", tensor).unwrap();
    w.write_file(path).unwrap();
}

fn fails_with(args: &[&str], needle: &str) {
    let o = edgeinfer(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let e = stderr(&o);
    assert!(e.contains(needle), "{args:?}: {e:?} lacks {needle:?}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Unknown TYPE, unsupported input type, truncated input, a NaN, an unwritable OUT, OUT == IN
/// (also through another path or a hard link), --imatrix: clear errors, the input untouched,
/// an existing OUT kept, and no file left behind.
#[test]
fn bad_input_fails_cleanly_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.gguf");
    std::fs::copy(fixtures().join("tiny-llama.f16.gguf"), &input).unwrap();
    let before = sha256(&std::fs::read(&input).unwrap());
    let (i, out) = (input.to_str().unwrap(), d.join("out.gguf"));
    let o = out.to_str().unwrap();

    fails_with(&[i, o, "Q4_X"], "unknown TYPE \"Q4_X\"");
    fails_with(&[i, o], "missing TYPE");
    fails_with(&[i, i, "Q4_0"], "is the input file");
    let other_path = d.join(".").join("in.gguf");
    fails_with(
        &[i, other_path.to_str().unwrap(), "Q4_0"],
        "is the input file",
    );
    let link = d.join("link.gguf");
    std::fs::hard_link(&input, &link).unwrap();
    fails_with(&[i, link.to_str().unwrap(), "Q4_0"], "is the input file");
    std::fs::remove_file(&link).unwrap();
    fails_with(&["--imatrix", "x.dat", i, o, "Q4_K_M"], "not supported yet");
    let missing_dir = d.join("no/such/dir/out.gguf");
    fails_with(
        &[i, missing_dir.to_str().unwrap(), "Q4_0"],
        "cannot create a file in",
    );
    let not_dir = d.join("in.gguf/out.gguf");
    fails_with(
        &[i, not_dir.to_str().unwrap(), "Q4_0"],
        "cannot create a file in",
    );

    let truncated = d.join("truncated.gguf");
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&[truncated.to_str().unwrap(), o, "Q4_0"], "truncated.gguf");

    let iq = d.join("iq.gguf");
    let t = Tensor::owned(DType::IQ2_XXS, &[256, 2], vec![0; 2 * 66]).unwrap();
    one_tensor_model(&iq, t);
    fails_with(
        &[iq.to_str().unwrap(), o, "Q4_0"],
        "IQ2_XXS, which edgeinfer cannot dequantize",
    );

    // a NaN is found mid-way, after the header is written: OUT (here an older file) is kept
    std::fs::write(&out, b"older").unwrap();
    let nan = d.join("nan.gguf");
    let mut v = vec![0.5f32; 256 * 4];
    v[700] = f32::NAN;
    one_tensor_model(&nan, Tensor::from_f32(&[256, 4], &v).unwrap());
    fails_with(&[nan.to_str().unwrap(), o, "Q8_0"], "element 700 is NaN");
    assert_eq!(std::fs::read(&out).unwrap(), b"older");
    std::fs::remove_file(&out).unwrap();

    assert_eq!(sha256(&std::fs::read(&input).unwrap()), before);
    assert_eq!(
        listing(d),
        ["in.gguf", "iq.gguf", "nan.gguf", "truncated.gguf"],
        "a partial file was left"
    );

    // and a good run replaces OUT
    let ok = edgeinfer(&[i, o, "Q8_0"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        GgufFile::open(&out)
            .unwrap()
            .metadata()
            .get_u32("general.file_type")
            .unwrap(),
        7
    );
}
