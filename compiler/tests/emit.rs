//! Every kernel of a small network, emitted in every language naga writes: valid output, and
//! snapshots so a change in what a platform receives is a reviewable diff.

use mfn_compiler::emit::{emit, Emitted, Language};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;

/// One kernel of each kind: dense conv with prologue, depthwise, pointwise with residual, GDConv,
/// linear and an element-wise op.
fn program() -> mfn_compiler::Program {
    let mut rng = Rng::new(3);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 8.into(), 8.into()]);
    g.initializer("mean", &[], vec![127.5]);
    g.initializer("w1", &[8, 3, 3, 3], rng.normal_vec(216, 0.2));
    g.initializer("dw", &[8, 1, 3, 3], rng.normal_vec(72, 0.2));
    g.initializer("pw", &[8, 8, 1, 1], rng.normal_vec(64, 0.2));
    g.initializer("gd", &[8, 1, 4, 4], rng.normal_vec(128, 0.2));
    g.initializer("fc", &[4, 8], rng.normal_vec(32, 0.2));
    g.node("Sub", &["x", "mean"], &["n"], vec![]);
    g.node("Conv", &["n", "w1"], &["c1"], vec![Attr::Ints("strides", vec![2, 2]), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("Relu", &["c1"], &["a1"], vec![]);
    g.node("Conv", &["a1", "dw"], &["c2"], vec![Attr::Int("group", 8), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("Conv", &["c2", "pw"], &["c3"], vec![]);
    g.node("Add", &["c3", "a1"], &["r"], vec![]);
    g.node("Conv", &["r", "gd"], &["c4"], vec![Attr::Int("group", 8)]);
    g.node("Flatten", &["c4"], &["f"], vec![]);
    g.node("Gemm", &["f", "fc"], &["y0"], vec![Attr::Int("transB", 1)]);
    g.node("Sigmoid", &["y0"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 4.into()]);
    mfn_compiler::compile(&g.to_bytes(), &Default::default()).expect("compiles")
}

#[test]
fn every_kernel_in_every_language() {
    let program = program();
    for kernel in &program.kernels {
        for lang in Language::ALL {
            let out = emit(&kernel.name, &kernel.wgsl, lang).unwrap_or_else(|e| panic!("{} as {}: {e}", kernel.name, lang.name()));
            let name = format!("{}_{}", kernel.name, lang.name());
            match out {
                Emitted::Text(text) => {
                    assert!(text.contains("main"), "{name} has no entry point");
                    insta::assert_snapshot!(name, text);
                }
                Emitted::Binary(spirv) => {
                    assert_eq!(&spirv[..4], &0x0723_0203u32.to_le_bytes(), "{name}: SPIR-V magic");
                    // Binary: the snapshot records its size; the text languages carry the detail.
                    insta::assert_snapshot!(name, format!("{} words", spirv.len() / 4));
                }
            }
        }
    }
}
