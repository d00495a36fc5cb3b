//! Time and RSS increase to open a GGUF file and read its header, tensor table and vocabulary.
//! `cargo run --release -p edgeinfer-gguf --example open_model -- models/SmolLM2-135M-Instruct.Q4_1.gguf`
//!
//! RSS is read from /proc/self/status (Linux); file pages touched through the map count in it,
//! so an increase far below the file size shows that no weight bytes were read or copied.

use std::time::Instant;

use edgeinfer_gguf::GgufFile;

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let mut times = Vec::new();
    let mut rss_deltas = Vec::new();
    for _ in 0..7 {
        let before = rss_kib().unwrap_or(0);
        let t = Instant::now();
        let f = GgufFile::open(&path)?;
        let md = f.metadata();
        let n_tokens = md
            .get_str_array("tokenizer.ggml.tokens")
            .map(|v| v.len())
            .unwrap_or(0);
        let n_tensors = f.tensor_infos().len();
        let dt = t.elapsed();
        let after = rss_kib().unwrap_or(0);
        std::hint::black_box((n_tokens, n_tensors));
        times.push(dt.as_secs_f64() * 1e3);
        rss_deltas.push(after.saturating_sub(before));
        drop(f);
    }
    let file_len = std::fs::metadata(&path)?.len();
    times.sort_by(f64::total_cmp);
    println!("{path}: {:.1} MiB", file_len as f64 / (1 << 20) as f64);
    println!("open + header + tensor table + vocabulary: median {:.2} ms (min {:.2}, max {:.2}) over {} runs", times[times.len() / 2], times[0], times[times.len() - 1], times.len());
    println!(
        "RSS increase per open (KiB): first {}, later {:?}",
        rss_deltas[0],
        &rss_deltas[1..]
    );
    Ok(())
}
