#![allow(clippy::unwrap_used)]
use super::*;

/// Two blobs of points, one per class.
fn blobs() -> (Vec<f32>, Vec<u32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..60 {
        let c = (i % 2) as u32;
        let j = i as f32 * 0.01;
        x.extend([c as f32 * 2.0 - 1.0 + j, 0.5 - j, j]);
        y.push(c);
    }
    (x, y)
}

#[test]
fn a_small_cnn_learns_which_side_of_a_picture_is_lit_and_checks_its_shape() {
    // 4x4 gray pictures, a bright 2x2 patch somewhere on the left or the right half.
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..80usize {
        let right = i % 2;
        let (px, py) = (right * 2 + (i / 2) % 2 * (1 - right), (i / 4) % 3);
        let mut img = [0f32; 16];
        for dy in 0..2 {
            for dx in 0..2 {
                img[(py + dy) * 4 + (px + dx).min(3)] = 1.0;
            }
        }
        x.extend(img);
        y.push(right as u32);
    }
    let conv = ConvSpec {
        input: [1, 4, 4],
        channels: vec![4, 8],
    };
    assert_eq!(conv.output_width(), 8, "4x4 → 2x2 → 1x1, 8 channels");
    let cfg = MlpConfig {
        layers: vec![8, 2],
        conv: Some(conv),
    };
    let spec = TrainSpec {
        cfg: &cfg,
        x: &x,
        y: &y,
        holdout: (&[], &[]),
        epochs: 150,
        lr: 0.05,
        seed: 5,
        init: None,
    };
    let (w, report) = train_mlp_bytes(&spec).unwrap();
    assert!(report.train_accuracy > 0.95, "{report:?}");
    assert_eq!(train_mlp_bytes(&spec).unwrap().0, w, "deterministic");
    let pred = mlp_predict(&cfg, &w, &x).unwrap();
    assert_eq!(pred.len(), 80);
    let wrong = MlpConfig {
        layers: vec![9, 2],
        ..cfg.clone()
    };
    let err = train_mlp_bytes(&TrainSpec {
        cfg: &wrong,
        ..spec.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("the convolutions give 8 values"), "{err}");
}

#[test]
fn the_same_data_and_seed_give_the_same_weights_bytes_and_a_warm_start_goes_on_from_them() {
    let cfg = MlpConfig::dense(vec![3, 8, 2]);
    let (x, y) = blobs();
    let spec = TrainSpec {
        cfg: &cfg,
        x: &x,
        y: &y,
        holdout: (&[], &[]),
        epochs: 40,
        lr: 0.05,
        seed: 3,
        init: None,
    };
    let (a, report) = train_mlp_bytes(&spec).unwrap();
    let (b, _) = train_mlp_bytes(&spec).unwrap();
    assert_eq!(a, b, "deterministic");
    assert!(report.train_accuracy > 0.95, "{report:?}");
    // The bytes load as safetensors and predict what training measured.
    let pred = mlp_predict(&cfg, &a, &x).unwrap();
    let right = pred.iter().zip(&y).filter(|(p, t)| p == t).count();
    assert_eq!(right as f32 / y.len() as f32, report.train_accuracy);
    // Another seed, other weights; a warm start from `a` with no epochs is `a`.
    let (c, _) = train_mlp_bytes(&TrainSpec {
        seed: 4,
        ..spec.clone()
    })
    .unwrap();
    assert_ne!(a, c);
    let (d, _) = train_mlp_bytes(&TrainSpec {
        epochs: 0,
        init: Some(&a),
        ..spec.clone()
    })
    .unwrap();
    assert_eq!(a, d);
    // Weights of another shape are refused by name.
    let wide = MlpConfig::dense(vec![3, 9, 2]);
    let err = train_mlp_bytes(&TrainSpec {
        cfg: &wide,
        init: Some(&a),
        ..spec
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("layers.0.weight"), "{err}");
}
#[test]
fn absolute_loss_predicts_the_median_and_squared_loss_the_mean() {
    // One constant feature; the target is 1 for four rows in five and 100 otherwise.
    let cfg = MlpConfig::dense(vec![1, 1]);
    let x = vec![0.0f32; 500];
    let y: Vec<f32> = (0..500)
        .map(|i| if i % 5 == 0 { 100.0 } else { 1.0 })
        .collect();
    let fit = |loss| {
        let (w, _) = train_regressor_bytes(&cfg, &x, &y, 2000, 0.1, 3, loss).unwrap();
        regressor_predict(&cfg, &w, &[0.0]).unwrap()[0]
    };
    let median = fit(RegressionLoss::Absolute);
    let mean = fit(RegressionLoss::Squared);
    assert!(
        (median - 1.0).abs() < 0.5,
        "absolute loss predicted {median}"
    );
    assert!((mean - 20.8).abs() < 1.5, "squared loss predicted {mean}");
}

#[test]
fn a_regressor_learns_a_linear_target_and_the_same_seed_gives_the_same_bytes() {
    let cfg = MlpConfig::dense(vec![2, 1]);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let (a, b) = ((i % 20) as f32 / 10.0 - 1.0, (i / 20) as f32 / 5.0 - 1.0);
        x.extend([a, b]);
        y.push(2.0 * a - 0.5 * b + 0.25);
    }
    let (w1, r) =
        train_regressor_bytes(&cfg, &x, &y, 600, 0.05, 9, RegressionLoss::Squared).unwrap();
    let (w2, _) =
        train_regressor_bytes(&cfg, &x, &y, 600, 0.05, 9, RegressionLoss::Squared).unwrap();
    assert_eq!(w1, w2);
    assert!(r.final_loss < 1e-3, "loss {}", r.final_loss);
    let p = regressor_predict(&cfg, &w1, &[0.5, 0.5]).unwrap();
    assert!((p[0] - 1.0).abs() < 0.05, "predicted {}", p[0]);
    let two = MlpConfig::dense(vec![2, 2]);
    let err = train_regressor_bytes(&two, &x, &y, 1, 0.05, 9, RegressionLoss::Squared).unwrap_err();
    assert!(err.to_string().contains("one output"), "{err}");
}

/// The same training through candle's graph: its autograd, `cross_entropy`
/// and `AdamW`, as the dense trainer was written after.
fn graph_trained(spec: &TrainSpec<'_>) -> Vec<(String, Vec<f32>)> {
    let dev = Device::Cpu;
    let (mlp, vars, named) = seeded_mlp(spec.cfg, spec.seed, spec.init, &dev).unwrap();
    let n_in = spec.cfg.input_width();
    let xs = CTensor::from_slice(spec.x, (spec.y.len(), n_in), &dev).unwrap();
    let ys = CTensor::from_slice(spec.y, spec.y.len(), &dev).unwrap();
    let mut opt = candle_nn::AdamW::new_lr(vars, spec.lr).unwrap();
    for _ in 0..spec.epochs {
        let logits = mlp.forward(&xs).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &ys).unwrap();
        opt.backward_step(&loss).unwrap();
    }
    named
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_dense_trainer_gives_the_weights_candles_graph_gives() {
    // Three classes in four features, not separable by a line.
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..300u32 {
        let a = (i % 17) as f32 / 8.0 - 1.0;
        let b = (i % 23) as f32 / 11.0 - 1.0;
        x.extend([a, b, a * b, (a - b).abs()]);
        y.push(if a * a + b * b < 0.5 {
            0
        } else if a > b {
            1
        } else {
            2
        });
    }
    let cfg = MlpConfig::dense(vec![4, 16, 8, 3]);
    let spec = TrainSpec {
        cfg: &cfg,
        x: &x,
        y: &y,
        holdout: (&[], &[]),
        epochs: 200,
        lr: 0.01,
        seed: 11,
        init: None,
    };
    let want = graph_trained(&spec);
    let (bytes, _) = train_mlp_bytes(&spec).unwrap();
    let got = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    for (name, w) in &want {
        let g = got[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{name}: weights differ by up to {worst}");
    }
}
