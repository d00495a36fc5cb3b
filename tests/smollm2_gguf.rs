//! The real SmolLM2-135M-Instruct Q4_1 file through the GGUF reader.

use edgeinfer_gguf::GgufFile;
use edgeinfer_tensor::DType;

#[test]
fn smollm2_header_tensor_table_and_keys() {
    let f = GgufFile::open(edgeinfer_e2e::default_model()).unwrap();
    let md = f.metadata();
    assert_eq!(f.header().version, 3);
    assert_eq!(md.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(md.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(md.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(md.get_u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(md.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(md.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(md.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(md.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(
        md.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        md.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    assert_eq!(
        md.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );

    let infos = f.tensor_infos();
    assert_eq!(infos.len(), 272);
    let count = |t: DType| infos.iter().filter(|i| i.dtype == t).count();
    assert_eq!(
        (count(DType::Q4_1), count(DType::Q8_0), count(DType::F32)),
        (210, 1, 61)
    );
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.dtype(), emb.shape()),
        (DType::Q8_0, &[576usize, 49152][..])
    );
    assert!(emb.is_borrowed(), "tensor views must borrow the map");
    let q = f.tensor("blk.29.attn_q.weight").unwrap();
    assert_eq!((q.dtype(), q.shape()), (DType::Q4_1, &[576usize, 576][..]));
    let k = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.shape(), &[576, 192]);
    assert!(
        f.tensor("output.weight").is_err(),
        "SmolLM2 ties its output to the embedding"
    );
    // The views point into the mapped file itself.
    let base = f.bytes().as_ptr() as usize;
    let p = emb.data().as_ptr() as usize;
    assert_eq!(
        p - base,
        f.tensor_info("token_embd.weight").unwrap().absolute_offset
    );
}

#[test]
fn smollm2_tensors_dequantize_to_sane_values() {
    let f = GgufFile::open(edgeinfer_e2e::default_model()).unwrap();
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_norm.weight",
        "output_norm.weight",
    ] {
        let t = f.tensor(name).unwrap();
        let row = edgeinfer_kernels::dequantize_to_vec(t.dtype(), t.row(0).unwrap(), t.row_len())
            .unwrap();
        assert!(
            row.iter().all(|v| v.is_finite() && v.abs() < 100.0),
            "{name}"
        );
        assert!(row.iter().any(|&v| v != 0.0), "{name} row 0 is all zero");
    }
}
