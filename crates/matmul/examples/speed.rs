//! Multiply-adds per second of the int8 kernel on a transformer-sized
//! layer: `cargo run --release -p haven-matmul --example speed`.
use haven_matmul::{Activations, Int8Linear};
use std::time::Instant;

fn main() {
    for (rows, inputs, outputs) in [(20, 384, 384), (20, 384, 1536), (20, 1536, 384), (64, 384, 1536)] {
        let values: Vec<i8> = (0..inputs * outputs).map(|i| (i * 31 % 251) as i8).collect();
        let m = Int8Linear::packed(outputs, inputs, &values, &vec![0.01; outputs], &vec![0.0; outputs]).expect("shapes");
        let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 17) as f32 - 8.0).collect();
        let mut a = Activations::new();
        a.quantise(&x, rows, inputs);
        let mut out = vec![0f32; rows * outputs];
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            m.product(&a, &mut out);
        }
        let s = t.elapsed().as_secs_f64();
        let t2 = Instant::now();
        for _ in 0..n {
            a.quantise(&x, rows, inputs);
        }
        let q = t2.elapsed().as_secs_f64();
        println!(
            "{rows}×{inputs}→{outputs}: {:.1} GMAC/s, {:.1} µs a product, {:.2} µs a quantise",
            (rows * inputs * outputs * n) as f64 / s / 1e9,
            s / n as f64 * 1e6,
            q / n as f64 * 1e6
        );
    }
}
