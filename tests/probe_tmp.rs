use std::sync::{Arc, OnceLock};
use edgeinfer_transformer::{argmax, Engine, Level, Logits, Model, Precision, Session};
fn model() -> &'static Arc<Model> { static M: OnceLock<Arc<Model>> = OnceLock::new(); edgeinfer_e2e::load("smollm2", &M) }
#[test]
fn probe() {
    let m = model();
    let toks = m.tokenizer.encode("The three primary colours are", true).unwrap();
    for p in [Precision::ExactF32, Precision::Quantized] {
        let run = |l: Level| { let e = Engine::builder().threads(2).level(l).build().unwrap(); let mut s = Session::new(&e, m.clone(), 64).with_precision(p); s.forward_logits(&toks, 0, Logits::All).unwrap() };
        let a = run(Level::Scalar); let b = run(Level::best()); let c = run(Level::Avx2);
        let v = m.config.vocab_size;
        for (name, x) in [("avxvnni", &b), ("avx2", &c)] {
        for pos in 0..toks.len() {
            let (ra, rb) = (&a[pos*v..(pos+1)*v], &x[pos*v..(pos+1)*v]);
            let max = ra.iter().zip(rb).map(|(x,y)| (x-y).abs()).fold(0f32, f32::max);
            let mean = ra.iter().zip(rb).map(|(x,y)| (x-y).abs()).sum::<f32>() / v as f32;
            let rms = (ra.iter().map(|x| x*x).sum::<f32>() / v as f32).sqrt();
            eprintln!("{p:?} scalar vs {name} pos {pos}: max {max:.3e} mean {mean:.3e} rms {rms:.2} top1 {} {}", argmax(ra), argmax(rb));
        }}
        let bb = b.iter().zip(&c).all(|(x,y)| x.to_bits()==y.to_bits());
        eprintln!("{p:?} avx2 == avxvnni bits: {bb}");
    }
}
