//! Writes small seed inputs for the fuzz targets into `corpus/<target>/`: a few small ONNX models
//! built like the tests' ones, and the `.mfn` files of two of them. Seeds give libFuzzer valid
//! structure to mutate from; the big MobileFaceNet is left out of the byte-level corpus (most
//! mutations of a 4 MB file would only hit weights).
//!
//! cargo run --manifest-path fuzz/Cargo.toml --example seed

use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;

fn conv_relu() -> Vec<u8> {
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 8.into(), 8.into()])
        .initializer("w", &[4, 3, 3, 3], Rng::new(1).normal_vec(108, 0.2))
        .initializer("b", &[4], vec![0.1, -0.2, 0.3, 0.0])
        .named_node("conv", "Conv", &["x", "w", "b"], &["c"], vec![Attr::Ints("pads", vec![1; 4])])
        .named_node("relu", "Relu", &["c"], &["y"], vec![])
        .output("y", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
    g.to_bytes()
}

fn conv_prelu_gdconv() -> Vec<u8> {
    let mut rng = Rng::new(2);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 12.into(), 12.into()]);
    g.initializer("w", &[8, 3, 3, 3], rng.normal_vec(216, 0.3));
    g.initializer("slope", &[8, 1, 1], rng.uniform_vec(8, 0.1, 0.3));
    g.initializer("g", &[8, 1, 6, 6], rng.normal_vec(288, 0.2));
    g.node("Conv", &["x", "w"], &["c"], vec![Attr::Ints("strides", vec![2, 2]), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("PRelu", &["c", "slope"], &["a"], vec![]);
    g.node("Conv", &["a", "g"], &["y"], vec![Attr::Int("group", 8)]);
    g.output("y", &[Dim::param("N"), 8.into(), 1.into(), 1.into()]);
    g.to_bytes()
}

fn bn_gemm() -> Vec<u8> {
    let mut rng = Rng::new(3);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 4.into(), 4.into(), 4.into()]);
    for (name, lo, hi) in [("scale", 0.5, 1.5), ("bias", -0.1, 0.1), ("mean", -0.1, 0.1), ("var", 0.5, 1.5)] {
        g.initializer(name, &[4], rng.uniform_vec(4, lo, hi));
    }
    g.initializer("fc", &[64, 10], rng.normal_vec(640, 0.1));
    g.initializer("fcb", &[10], rng.normal_vec(10, 0.1));
    g.node("BatchNormalization", &["x", "scale", "bias", "mean", "var"], &["n"], vec![]);
    g.node("Relu", &["n"], &["r"], vec![]);
    g.node("GlobalAveragePool", &["r"], &["p"], vec![]);
    g.node("Flatten", &["r"], &["f"], vec![Attr::Int("axis", 1)]);
    g.node("Gemm", &["f", "fc", "fcb"], &["z"], vec![]);
    g.node("Sigmoid", &["z"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 10.into()]);
    g.to_bytes()
}

fn main() {
    let models = [("conv_relu", conv_relu()), ("conv_prelu_gdconv", conv_prelu_gdconv()), ("bn_gemm", bn_gemm())];
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    };
    for (name, onnx) in &models {
        write("onnx_compile", &format!("{name}.onnx"), onnx);
        match mfn_compiler::compile(onnx, &Default::default()) {
            Ok(program) => write("mfn_load", &format!("{name}.mfn"), &program.to_mfn()),
            Err(e) => panic!("seed model {name} does not compile: {e}"),
        }
    }
    // onnx_mutate reads its input as mutation choices: any bytes will do.
    for i in 0u8..8 {
        write("onnx_mutate", &format!("choices{i}"), &[i; 32]);
    }
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
