//! Criterion benches of each kernel kind alone: a one-kernel ONNX graph with the shapes that kind
//! has in the pretrained MobileFaceNet, compiled and run on a `Session`, batch 16 or
//! `$MFN_BENCH_BATCH`. The time is the kernel's GPU time from timestamp queries
//! (`Session::profile`) where the adapter has them, else the wall time of `Session::run` (upload,
//! dispatch, readback). Throughput is counted in FLOP (two per multiply-add), so criterion's
//! "elem/s" reads as FLOP/s.
//!
//! ```sh
//! cargo bench --bench kernels               # every kind
//! cargo bench --bench kernels -- depthwise  # the kinds whose name matches
//! ```

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mfn_compiler::{CompileOptions, Program};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{Image, Normalization, Session, SessionOptions};

/// A one-layer graph under construction: `x` of per-sample shape `shape`.
struct Layer {
    g: GraphBuilder,
    rng: Rng,
    shape: Vec<usize>,
}

impl Layer {
    fn new(shape: &[usize]) -> Layer {
        let mut g = GraphBuilder::new(13);
        let dims: Vec<Dim> = std::iter::once(Dim::param("N")).chain(shape.iter().map(|&d| Dim::Fixed(d as i64))).collect();
        g.input("x", &dims);
        Layer { g, rng: Rng::new(1), shape: shape.to_vec() }
    }

    /// Conv (+ PRelu) from `x` to `y`: `c_out` channels (depthwise when `depthwise`), square kernel.
    fn conv(mut self, c_out: usize, k: usize, stride: usize, pad: usize, depthwise: bool, prelu: bool) -> Vec<u8> {
        let (c_in, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let (group, per_group) = if depthwise { (c_in, 1) } else { (1, c_in) };
        let weight = self.rng.normal_vec(c_out * per_group * k * k, 1.0 / ((per_group * k * k) as f32).sqrt());
        self.g.initializer("w", &[c_out as i64, per_group as i64, k as i64, k as i64], weight);
        let mut attrs = vec![Attr::Ints("kernel_shape", vec![k as i64; 2]), Attr::Ints("strides", vec![stride as i64; 2]), Attr::Ints("pads", vec![pad as i64; 4])];
        if group > 1 {
            attrs.push(Attr::Int("group", group as i64));
        }
        let conv_out = if prelu { "c" } else { "y" };
        self.g.node("Conv", &["x", "w"], &[conv_out], attrs);
        if prelu {
            self.g.initializer("slope", &[c_out as i64, 1, 1], self.rng.uniform_vec(c_out, 0.0, 0.5));
            self.g.node("PRelu", &["c", "slope"], &["y"], vec![]);
        }
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let dims = [Dim::param("N"), Dim::Fixed(c_out as i64), Dim::Fixed(oh as i64), Dim::Fixed(ow as i64)];
        self.g.output("y", &dims);
        self.g.to_bytes()
    }

    /// Gemm (transB) from the `[K]` input `x` to `y` of `m` values.
    fn linear(mut self, m: usize) -> Vec<u8> {
        let k = self.shape[0];
        self.g.initializer("B", &[m as i64, k as i64], self.rng.normal_vec(m * k, 1.0 / (k as f32).sqrt()));
        self.g.initializer("C", &[m as i64], self.rng.normal_vec(m, 0.1));
        self.g.node("Gemm", &["x", "B", "C"], &["y"], vec![Attr::Int("transB", 1)]);
        self.g.output("y", &[Dim::param("N"), Dim::Fixed(m as i64)]);
        self.g.to_bytes()
    }
}

/// The kinds: name, the template the graph must compile to, and the graph.
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("conv2d_first_3x3s2_3to64_112", "conv2d", Layer::new(&[3, 112, 112]).conv(64, 3, 2, 1, false, true)),
        ("pointwise_vec4_64to128_56", "pointwise_vec4", Layer::new(&[64, 56, 56]).conv(128, 1, 1, 0, false, true)),
        ("pointwise_128to512_7", "pointwise", Layer::new(&[128, 7, 7]).conv(512, 1, 1, 0, false, true)),
        ("depthwise_s1_64_56", "depthwise3x3_vec4", Layer::new(&[64, 56, 56]).conv(64, 3, 1, 1, true, true)),
        ("depthwise_s2_128_56", "depthwise3x3_vec4", Layer::new(&[128, 56, 56]).conv(128, 3, 2, 1, true, true)),
        ("depthwise_s1_256_14", "depthwise3x3", Layer::new(&[256, 14, 14]).conv(256, 3, 1, 1, true, true)),
        ("gdconv_512_7x7", "gdconv", Layer::new(&[512, 7, 7]).conv(512, 7, 1, 0, true, false)),
        ("linear_512to128", "linear", Layer::new(&[512]).linear(128)),
    ]
}

fn batch() -> usize {
    match std::env::var("MFN_BENCH_BATCH") {
        Ok(v) => v.parse().ok().filter(|&b| b > 0).unwrap_or_else(|| panic!("MFN_BENCH_BATCH={v:?} is not a batch size")),
        Err(_) => 16,
    }
}

/// A session for `program`; a bench without a GPU adapter fails, naming why.
fn session(program: &Program, batch: usize) -> Session {
    let options = SessionOptions { max_batch: batch, ..Default::default() };
    Session::new(program, &options).unwrap_or_else(|e| panic!("kernel benches need a GPU adapter: {e}"))
}

/// GPU time of the one dispatch, or the wall time of a run where the adapter cannot time it.
fn kernel_time(session: &Session, input: &[f32]) -> Duration {
    if session.can_profile() {
        let ms: f64 = session.profile(input).expect("the kernel runs").expect("timestamps").iter().sum();
        return Duration::from_secs_f64(ms * 1e-3);
    }
    let t = Instant::now();
    session.run(input).expect("the kernel runs");
    t.elapsed()
}

fn kernels(c: &mut Criterion) {
    let batch = batch();
    let mut group = c.benchmark_group(format!("kernel_batch{batch}"));
    for (name, template, onnx) in cases() {
        let program = mfn_compiler::compile(&onnx, &CompileOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kernels: Vec<&str> = program.kernels.iter().map(|k| k.name.as_str()).collect();
        assert!(kernels.len() == 1 && kernels[0].ends_with(&format!("_{template}")), "{name} should compile to one {template} kernel, not {kernels:?}");
        let session = session(&program, batch);
        let input = Rng::new(7).uniform_vec(batch * program.input.elements(), -1.0, 1.0);
        group.throughput(Throughput::Elements(2 * program.stats.macs * batch as u64));
        group.bench_function(name, |b| b.iter_custom(|iters| (0..iters).map(|_| kernel_time(&session, &input)).sum()));
    }
    // Preprocessing: 8-bit RGB crops of 250x250 (LFW's size) to normalised f32 112x112 with a
    // bilinear resize, read back (`Session::preprocess`, wall time; the model does not run).
    let program = mfn_compiler::compile(&cases()[0].2, &CompileOptions::default()).expect("the first case compiles");
    let session = session(&program, batch);
    let rgb: Vec<u8> = (0..250 * 250 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let images = vec![Image { width: 250, height: 250, rgb: &rgb }; batch];
    let norm = Normalization { mean: [127.5; 3], std: [128.0; 3] };
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("preprocess_250_to_112 (elem = image)", |b| b.iter(|| session.preprocess(&images, &norm).expect("preprocessing runs")));
    group.finish();
}

criterion_group! {
    name = benches;
    // Lavapipe takes milliseconds a run: few samples, short windows.
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = kernels
}
criterion_main!(benches);
