//! candle's gradients of the classifier loss against central finite differences (float64),
//! for every parameter of a tiny 2-layer bidirectional model on a padded batch, with a learned
//! embedding table and with a projected frozen one.

use candle_core::{DType, Tensor};
use edgeinfer_lstm::{Keep, LstmConfig};
use edgeinfer_lstm_train::{Net, PretrainedEmbeddings, Rng};

fn config() -> LstmConfig {
    LstmConfig {
        vocab_size: 6,
        embed_dim: 3,
        hidden_size: 2,
        num_layers: 2,
        bidirectional: true,
        num_classes: 3,
        max_tokens: 0,
        keep: Keep::First,
    }
}

/// Compare every gradient of `net` with finite differences; returns how many were compared.
fn check(net: &Net) -> usize {
    // Different lengths, so masking and the reverse direction's start on padding are exercised.
    let seqs: Vec<Vec<u32>> = vec![vec![1, 4, 2, 5], vec![3], vec![0, 2, 2], vec![]];
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let labels = [2u32, 0, 1, 1];
    let (ids, mask) = net.batch(&refs).unwrap();
    let loss = |net: &Net| -> f64 {
        let logits = net.forward(&ids, &mask, None).unwrap();
        net.loss(&logits, &labels)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let logits = net.forward(&ids, &mask, None).unwrap();
    let grads = net.loss(&logits, &labels).unwrap().backward().unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    let mut worst = 0.0f64;
    for v in net.vars() {
        let shape = v.shape().clone();
        let base: Vec<f64> = v.flatten_all().unwrap().to_vec1().unwrap();
        let g: Vec<f64> = match grads.get(&v) {
            Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
            None => vec![0.0; base.len()],
        };
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] = base[i] + eps;
            v.set(&Tensor::from_vec(p.clone(), &shape, v.device()).unwrap())
                .unwrap();
            let up = loss(net);
            p[i] = base[i] - eps;
            v.set(&Tensor::from_vec(p, &shape, v.device()).unwrap())
                .unwrap();
            let down = loss(net);
            v.set(&Tensor::from_vec(base.clone(), &shape, v.device()).unwrap())
                .unwrap();
            let numeric = (up - down) / (2.0 * eps);
            // Central differences at eps = 1e-6 carry ~1e-10 of rounding error in float64; a wrong
            // gradient is off by O(1).
            let err = (numeric - g[i]).abs() / (numeric.abs() + g[i].abs() + 1e-4);
            worst = worst.max(err);
            assert!(
                err < 1e-5,
                "param {:?}[{i}]: autodiff {} vs finite difference {numeric}",
                shape,
                g[i]
            );
            checked += 1;
        }
    }
    eprintln!("{checked} gradients, worst relative error {worst:.2e}");
    checked
}

/// Every LSTM and output parameter: both directions of both layers, then the linear layer.
const REST: usize = 2 * (24 + 16 + 8 + 8) + 2 * (32 + 16 + 8 + 8) + 12 + 3;

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(7);
    let net = Net::new(&config(), DType::F64, &mut rng).unwrap();
    // Every token id occurs in the batch, so every embedding row has a gradient.
    assert_eq!(check(&net), 18 + REST);
}

#[test]
fn projected_embedding_gradients_match_finite_differences() {
    let mut rng = Rng::new(8);
    let pre = PretrainedEmbeddings {
        tokenizer_json: String::new(),
        dim: 4,
        table: (0..24).map(|_| (rng.normal() * 0.05) as f32).collect(),
    };
    let net = Net::with_pretrained(&config(), DType::F64, &mut rng, &pre).unwrap();
    // The table is frozen: only the 4 × 3 projection is a variable in its place.
    assert_eq!(check(&net), 12 + REST);
}
