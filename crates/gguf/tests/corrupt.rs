//! A catalogue of hand-made broken GGUF files, each expected to fail with a specific error
//! (in the spirit of llama.cpp's tests/test-gguf.cpp), plus sweeps that truncate and mutate a
//! valid file at every byte and require an error or a valid parse, never a panic.

use edgeinfer_gguf::{GgufError, GgufFile, Header};

/// Little builder for raw GGUF bytes.
#[derive(Default, Clone)]
struct B(Vec<u8>);
impl B {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn header(n_tensors: u64, n_kv: u64) -> Self {
        B::default().bytes(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
    }
    fn kv_u32(self, k: &str, v: u32) -> Self {
        self.str(k).u32(4).u32(v)
    }
    /// A tensor info: name, dims, type id, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    /// Pad to 32 and append `n` data bytes.
    fn data(mut self, n: usize) -> Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0x3c, n));
        self
    }
}

fn err(b: B) -> GgufError {
    match Header::parse(&b.0) {
        Ok(h) => panic!("expected an error, parsed {} tensors", h.tensors.len()),
        Err(e) => {
            // every error renders as a message naming the problem
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

/// A valid file: two keys, two F32 tensors.
fn valid() -> B {
    B::header(2, 2)
        .kv_u32("general.alignment", 32)
        .str("general.name")
        .u32(8)
        .str("tiny")
        .tensor("a", &[4, 2], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(64)
}

#[test]
fn valid_file_parses() {
    let h = Header::parse(&valid().0).unwrap();
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.metadata.get_str("general.name").unwrap(), "tiny");
    let f = GgufFile::from_bytes(valid().0).unwrap();
    assert_eq!(f.tensor("b").unwrap().data(), &[0x3c; 32]);
}

#[test]
fn bad_magic() {
    let e = err(B::default().bytes(b"GGML").u32(3).u64(0).u64(0));
    assert!(
        matches!(e, GgufError::BadMagic { ref found } if found == b"GGML"),
        "{e}"
    );
    assert!(matches!(
        err(B::default().bytes(b"GG")),
        GgufError::BadMagic { .. }
    ));
    assert!(matches!(err(B::default()), GgufError::BadMagic { .. }));
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4, 0x0300_0000] {
        let e = err(B::default().bytes(b"GGUF").u32(v).u64(0).u64(0));
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version, .. } if version == v),
            "{e}"
        );
    }
    let e = err(B::default().bytes(b"GGUF").u32(0x0300_0000));
    assert!(e.to_string().contains("big-endian"), "{e}");
}

#[test]
fn tensor_count_larger_than_file() {
    let e = err(B::header(u64::MAX, 0));
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                count: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    let e = err(B::header(1 << 40, 0).bytes(&[0; 64]));
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
}

#[test]
fn kv_count_larger_than_file() {
    let e = err(B::header(0, 1_000_000).kv_u32("a", 1));
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                count: 1_000_000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn string_length_beyond_file() {
    let e = err(B::header(0, 1)
        .u64(u64::MAX - 3)
        .bytes(b"key and some more bytes"));
    assert!(
        matches!(e, GgufError::Truncated { needed, .. } if needed == u64::MAX - 3),
        "{e}"
    );
    let e = err(B::header(0, 1).str("k").u32(8).u64(1 << 30).bytes(b"short"));
    assert!(
        matches!(e, GgufError::Truncated { ref what, .. } if what.contains("\"k\"")),
        "{e}"
    );
}

#[test]
fn array_length_beyond_file() {
    // array<u64> of 2^40 elements in a tiny file: refused before allocating
    let e = err(B::header(0, 1)
        .str("arr")
        .u32(9)
        .u32(10)
        .u64(1 << 40)
        .u64(1));
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what.contains("arr")),
        "{e}"
    );
    // array<string> whose count fits but whose strings do not
    let e = err(B::header(0, 1)
        .str("arr")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("x")
        .u64(99));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
}

#[test]
fn unknown_value_types() {
    let e = err(B::header(0, 1).str("k").u32(13).u32(0));
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, ref key, .. } if key == "k"),
        "{e}"
    );
    let e = err(B::header(0, 1).str("k").u32(9).u32(77).u64(0));
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 77, .. }),
        "{e}"
    );
}

#[test]
fn nested_arrays_beyond_depth_limit() {
    // array<array<array<array<u8>>>>: depth 4 > 3
    let b = B::header(0, 1)
        .str("deep")
        .u32(9)
        .u32(9)
        .u64(1)
        .u32(9)
        .u64(1)
        .u32(9)
        .u64(1)
        .u32(0)
        .u64(0)
        .bytes(&[0; 16]);
    let e = err(b);
    assert!(
        matches!(e, GgufError::NestingTooDeep { ref key, .. } if key == "deep"),
        "{e}"
    );
    // depth 2 is fine
    let ok = B::header(0, 1)
        .str("two")
        .u32(9)
        .u32(9)
        .u64(1)
        .u32(0)
        .u64(2)
        .bytes(&[1, 2]);
    Header::parse(&ok.0).unwrap();
}

#[test]
fn duplicate_keys() {
    let e = err(B::header(0, 2).kv_u32("x", 1).kv_u32("x", 2));
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key } if key == "x"),
        "{e}"
    );
}

#[test]
fn invalid_utf8_key() {
    let e = err(B::header(0, 1).u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(0));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
}

#[test]
fn duplicate_tensor_names() {
    let b = B::header(2, 0)
        .tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .data(64);
    assert!(matches!(err(b), GgufError::DuplicateTensor { ref name } if name == "w"));
}

#[test]
fn too_many_dims() {
    let b = B::header(1, 0).tensor("w", &[1, 1, 1, 1, 1], 0, 0).data(32);
    assert!(matches!(err(b), GgufError::TooManyDims { n_dims: 5, .. }));
}

#[test]
fn zero_and_overflowing_dims() {
    let b = B::header(1, 0).tensor("w", &[4, 0], 0, 0).data(32);
    assert!(matches!(
        err(b),
        GgufError::BadShape {
            why: "zero dimension",
            ..
        }
    ));
    let b = B::header(1, 0)
        .tensor("w", &[1 << 32, 1 << 32, 4], 0, 0)
        .data(32);
    assert!(matches!(
        err(b),
        GgufError::BadShape {
            why: "element count overflows",
            ..
        }
    ));
    let b = B::header(1, 0).tensor("w", &[], 0, 0).data(32);
    assert!(matches!(
        err(b),
        GgufError::BadShape {
            why: "no dimensions",
            ..
        }
    ));
}

#[test]
fn elements_not_multiple_of_block() {
    let b = B::header(1, 0).tensor("q", &[33, 2], 2, 0).data(128); // Q4_0, row of 33
    assert!(matches!(
        err(b),
        GgufError::NotBlockMultiple { block: 32, .. }
    ));
}

#[test]
fn unknown_tensor_type() {
    for id in [4u32, 5, 31, 1000] {
        let b = B::header(1, 0).tensor("w", &[8], id, 0).data(32);
        assert!(matches!(err(b), GgufError::UnknownTensorType { type_id, .. } if type_id == id));
    }
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48] {
        let b = B::header(0, 1).kv_u32("general.alignment", a);
        assert!(
            matches!(err(b), GgufError::BadAlignment { alignment } if alignment == u64::from(a))
        );
    }
    let b = B::header(0, 1).str("general.alignment").u32(10).u64(32);
    assert!(matches!(err(b), GgufError::TypeMismatch { .. }));
}

#[test]
fn misaligned_tensor_offset() {
    let b = B::header(1, 0).tensor("w", &[2], 0, 4).data(64);
    assert!(matches!(
        err(b),
        GgufError::MisalignedTensor { offset: 4, .. }
    ));
}

#[test]
fn tensor_data_outside_file() {
    let b = B::header(1, 0).tensor("w", &[16], 0, 32).data(64); // needs [32, 96) of data
    assert!(matches!(err(b), GgufError::TensorOutOfBounds { ref tensor, .. } if tensor == "w"));
    let b = B::header(1, 0)
        .tensor("w", &[16], 0, u64::MAX - 31)
        .data(64);
    assert!(matches!(err(b), GgufError::TensorOutOfBounds { .. }));
    let b = B::header(1, 0).tensor("w", &[1 << 40], 0, 0).data(64);
    assert!(matches!(err(b), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn overlapping_tensors() {
    let b = B::header(2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(96);
    assert!(matches!(err(b), GgufError::TensorOverlap { .. }));
}

#[test]
fn truncated_data_section() {
    let mut b = valid();
    b.0.truncate(b.0.len() - 1);
    assert!(matches!(err(b), GgufError::TensorOutOfBounds { ref tensor, .. } if tensor == "b"));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let full = valid().0;
    for n in 0..full.len() {
        assert!(
            Header::parse(&full[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
}

#[test]
fn every_single_byte_mutation_is_handled() {
    let full = valid().0;
    for i in 0..full.len().min(200) {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut m = full.clone();
            m[i] = v;
            let _ = Header::parse(&m); // must return, Ok or Err
        }
    }
}

#[test]
fn accessor_errors_name_key_and_types() {
    let f = GgufFile::from_bytes(valid().0).unwrap();
    let md = f.metadata();
    let e = md.get_u64("general.alignment").unwrap_err();
    assert!(
        matches!(e, GgufError::TypeMismatch { ref key, expected: "u64", ref actual } if key == "general.alignment" && actual == "u32")
    );
    assert!(e.to_string().contains("general.alignment"));
    assert!(matches!(
        md.get_str("nope"),
        Err(GgufError::KeyNotFound { .. })
    ));
    assert_eq!(md.get_usize("general.alignment").unwrap(), 32);
    assert!(matches!(
        f.tensor("zzz"),
        Err(GgufError::TensorNotFound { .. })
    ));
}

#[test]
fn metadata_remove_keeps_the_index_consistent() {
    let mut f = GgufFile::from_bytes(valid().0).unwrap();
    assert!(f.metadata_mut().remove("general.alignment").is_some());
    assert!(f.metadata_mut().remove("general.alignment").is_none());
    assert_eq!(f.metadata().len(), 1);
    assert_eq!(f.metadata().get_str("general.name").unwrap(), "tiny");
    assert!(matches!(
        f.metadata().get_u32("general.alignment"),
        Err(GgufError::KeyNotFound { .. })
    ));
}

#[test]
fn open_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.gguf");
    std::fs::write(&p, b"GGUF\x07\0\0\0").unwrap();
    let e = GgufFile::open(&p).unwrap_err();
    assert!(e.to_string().contains("bad.gguf"), "{e}");
    assert!(matches!(
        e.root(),
        GgufError::UnsupportedVersion { version: 7, .. }
    ));
    let e = GgufFile::open(dir.join("missing.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }) && e.to_string().contains("missing.gguf"));
    std::fs::remove_dir_all(&dir).ok();
}
