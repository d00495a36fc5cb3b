//! Write-then-read round trip: random metadata of every value type and tensors of every type
//! with a known byte size, through `GgufWriter` and back through the validating reader.

use edgeinfer_gguf::{
    GgufError, GgufFile, GgufStreamWriter, GgufWriter, TensorEntry, Value, ValueType,
};
use edgeinfer_tensor::{DType, Tensor};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        (-1e30f32..1e30).prop_map(Value::F32),
        (-1e300f64..1e300).prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(any::<i32>(), 0..20)
            .prop_map(|v| Value::Array(ValueType::I32, v.into_iter().map(Value::I32).collect())),
        1 => prop::collection::vec("\\PC{0,6}", 0..10)
            .prop_map(|v| Value::Array(ValueType::String, v.into_iter().map(Value::String).collect())),
        1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4), 0..3).prop_map(|v| {
            Value::Array(
                ValueType::Array,
                v.into_iter()
                    .map(|inner| Value::Array(ValueType::U8, inner.into_iter().map(Value::U8).collect()))
                    .collect(),
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn write_then_read(
        kvs in prop::collection::btree_map("[a-z.]{1,16}", value(), 0..12),
        tensors in prop::collection::vec((0usize..DType::ALL.len(), 1usize..4, 1usize..3, any::<u8>()), 0..8),
        align_pow in 0u32..7,
    ) {
        let alignment = 1u32 << (align_pow + 2);
        let mut w = GgufWriter::new();
        w.add_metadata("general.alignment", Value::U32(alignment)).unwrap();
        for (k, v) in &kvs {
            if k != "general.alignment" {
                w.add_metadata(k, v.clone()).unwrap();
            }
        }
        let mut expect = Vec::new();
        for (i, &(ti, blocks, rows, fill)) in tensors.iter().enumerate() {
            let dt = DType::ALL[ti];
            let shape = [blocks * dt.block_size(), rows];
            let n = dt.bytes_for(shape[0] * shape[1]).unwrap();
            let bytes: Vec<u8> = (0..n).map(|j| fill.wrapping_add(j as u8)).collect();
            let name = format!("t{i}.{}", dt.name());
            w.add_tensor(&name, Tensor::owned(dt, &shape, bytes.clone()).unwrap()).unwrap();
            expect.push((name, dt, shape, bytes));
        }
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(f.header().alignment, u64::from(alignment));
        prop_assert_eq!(f.header().data_offset % alignment as usize, 0);
        for (k, v) in &kvs {
            if k != "general.alignment" {
                prop_assert_eq!(f.metadata().get(k), Some(v));
            }
        }
        for (name, dt, shape, bytes) in &expect {
            let t = f.tensor(name).unwrap();
            prop_assert!(t.is_borrowed());
            prop_assert_eq!(t.dtype(), *dt);
            prop_assert_eq!(t.shape(), &shape[..]);
            prop_assert_eq!(t.data(), &bytes[..]);
        }
    }
}

#[test]
fn writer_rejects_duplicates_and_mixed_arrays() {
    let mut w = GgufWriter::new();
    w.add_metadata("a", Value::U8(1)).unwrap();
    assert!(w.add_metadata("a", Value::U8(2)).is_err());
    assert!(w
        .add_metadata("b", Value::Array(ValueType::U8, vec![Value::I8(1)]))
        .is_err());
    w.add_f32("t", &[2], &[1.0, 2.0]).unwrap();
    assert!(w.add_f32("t", &[2], &[1.0, 2.0]).is_err());
}

#[test]
fn write_file_is_atomic_and_readable() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-gguf-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("test".into()))
        .unwrap();
    w.add_f32("w", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    w.write_file(&p).unwrap();
    assert!(!dir.join("x.gguf.part").exists());
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.tensor("w").unwrap().data().len(), 24);
    std::fs::remove_dir_all(&dir).ok();
}

/// Metadata, tensor table and tensor bytes of a small file.
type Case = (Vec<(String, Value)>, Vec<TensorEntry>, Vec<Vec<u8>>);

fn stream_case() -> Case {
    let metadata = vec![
        (
            "general.architecture".to_string(),
            Value::String("llama".into()),
        ),
        ("general.alignment".to_string(), Value::U32(64)),
    ];
    let entries = vec![
        TensorEntry {
            name: "a".into(),
            dtype: DType::Q4_0,
            shape: vec![64, 3],
        },
        TensorEntry {
            name: "b".into(),
            dtype: DType::F32,
            shape: vec![5],
        },
    ];
    let data = vec![(0..108).map(|i| i as u8).collect(), vec![7u8; 20]];
    (metadata, entries, data)
}

/// Written tensor by tensor, a file is byte for byte what the in-memory writer makes.
#[test]
fn stream_writer_equals_in_memory_writer() {
    let (metadata, entries, data) = stream_case();
    let mut w = GgufWriter::new();
    for (k, v) in &metadata {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for (e, d) in entries.iter().zip(&data) {
        w.add_tensor(&e.name, Tensor::borrowed(e.dtype, &e.shape, d).unwrap())
            .unwrap();
    }
    let whole = w.to_bytes().unwrap();
    let mut s = GgufStreamWriter::new(
        Vec::new(),
        metadata.iter().map(|(k, v)| (k.as_str(), v)),
        &entries,
    )
    .unwrap();
    assert_eq!(s.next_tensor(), Some("a"));
    for d in &data {
        s.write_tensor(d).unwrap();
    }
    assert_eq!(s.next_tensor(), None);
    let streamed = s.finish().unwrap();
    assert_eq!(streamed, whole);
    let f = GgufFile::from_bytes(streamed).unwrap();
    assert_eq!(f.header().alignment, 64);
    assert_eq!(f.tensor("a").unwrap().data(), &data[0][..]);
}

/// A wrong size, a tensor too many or too few, a bad alignment, a shape the type cannot hold
/// and a duplicate name are errors naming the problem.
#[test]
fn stream_writer_errors() {
    let (metadata, entries, data) = stream_case();
    let md = || metadata.iter().map(|(k, v)| (k.as_str(), v));
    let mut s = GgufStreamWriter::new(Vec::new(), md(), &entries).unwrap();
    let e = s.write_tensor(&data[1]).unwrap_err();
    assert!(
        e.to_string()
            .contains("\"a\": 20 bytes given, the table says 108"),
        "{e}"
    );
    s.write_tensor(&data[0]).unwrap();
    let e = GgufStreamWriter::finish(s).unwrap_err();
    assert!(e.to_string().contains("\"b\""), "{e}");

    let mut s = GgufStreamWriter::new(Vec::new(), md(), &entries).unwrap();
    s.write_tensor(&data[0]).unwrap();
    s.write_tensor(&data[1]).unwrap();
    assert!(s.write_tensor(&data[1]).is_err());

    let bad = [("general.alignment", &Value::U32(48))];
    let e = GgufStreamWriter::new(Vec::new(), bad, &entries)
        .err()
        .unwrap();
    assert!(e.to_string().contains("general.alignment"), "{e}");

    let mut odd = entries.clone();
    odd[0].shape = vec![48, 2];
    let e = GgufStreamWriter::new(Vec::new(), md(), &odd).err().unwrap();
    assert!(
        matches!(e, GgufError::NotBlockMultiple { ref tensor, .. } if tensor == "a"),
        "{e}"
    );

    let mut dup = entries.clone();
    dup[1].name = "a".into();
    let e = GgufStreamWriter::new(Vec::new(), md(), &dup).err().unwrap();
    assert!(matches!(e, GgufError::DuplicateTensor { .. }), "{e}");
}
