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

/// The data-movement kernels of a detector: max pooling, nearest upsampling, concatenation and a
/// transpose.
fn detector_program() -> mfn_compiler::Program {
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
    g.initializer("roi", &[0], vec![]);
    g.initializer("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
    g.node("MaxPool", &["x"], &["p"], vec![Attr::Ints("kernel_shape", vec![2, 2]), Attr::Ints("strides", vec![2, 2])]);
    let nearest = vec![Attr::Str("mode", "nearest".into()), Attr::Str("coordinate_transformation_mode", "asymmetric".into()), Attr::Str("nearest_mode", "floor".into())];
    g.node("Resize", &["p", "roi", "scales"], &["u"], nearest);
    g.node("Concat", &["u", "x"], &["c"], vec![Attr::Int("axis", 1)]);
    g.node("Transpose", &["c"], &["y"], vec![Attr::Ints("perm", vec![0, 2, 3, 1])]);
    g.output("y", &[Dim::param("N"), 8.into(), 8.into(), 8.into()]);
    mfn_compiler::compile(&g.to_bytes(), &Default::default()).expect("compiles")
}

#[test]
fn detector_kernels_in_every_language() {
    let program = detector_program();
    let templates: Vec<&str> = program.kernels.iter().map(|k| k.template.as_str()).collect();
    assert_eq!(templates, ["maxpool", "upsample", "concat", "transpose"]);
    snapshot_all("detector", &program, &Language::ALL);
}

/// f16 storage: `enable f16;` and f16 buffers in every language naga writes.
#[test]
fn f16_kernels_in_every_language() {
    let mut g = GraphBuilder::new(13);
    let mut rng = Rng::new(4);
    g.input("x", &[Dim::param("N"), 8.into(), 4.into(), 4.into()]);
    g.initializer("pw", &[8, 8, 1, 1], rng.normal_vec(64, 0.2));
    g.node("Conv", &["x", "pw"], &["c"], vec![]);
    g.node("Relu", &["c"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 8.into(), 4.into(), 4.into()]);
    let options = mfn_compiler::CompileOptions { precision: mfn_compiler::Precision::F16, ..Default::default() };
    let program = mfn_compiler::compile(&g.to_bytes(), &options).expect("compiles in f16");
    // naga's GLSL back end has no 16-bit floats: a clear error naming the kernel and language.
    for kernel in &program.kernels {
        for wgsl in std::iter::once(&kernel.wgsl).chain(&kernel.subgroup_wgsl) {
            let e = emit(&kernel.name, wgsl, Language::Glsl).err().expect("GLSL refuses f16").to_string();
            assert!(e.contains(&kernel.name) && e.contains("GLSL") && e.contains("width: 2"), "{e}");
        }
    }
    snapshot_all("f16", &program, &[Language::Wgsl, Language::Spirv, Language::Msl, Language::Hlsl]);
}

#[test]
fn every_kernel_in_every_language() {
    snapshot_all("", &program(), &Language::ALL);
}

/// Emits every kernel of `program` (and its subgroup variant) in every language and snapshots it
/// as `PREFIX_KERNEL[_subgroup]_LANG`.
fn snapshot_all(prefix: &str, program: &mfn_compiler::Program, languages: &[Language]) {
    let kernels = program.kernels.iter().flat_map(|k| std::iter::once((k.name.clone(), &k.wgsl)).chain(k.subgroup_wgsl.as_ref().map(|v| (format!("{}_subgroup", k.name), v))));
    for (kernel, wgsl) in kernels {
        for &lang in languages {
            let out = emit(&kernel, wgsl, lang).unwrap_or_else(|e| panic!("{kernel} as {}: {e}", lang.name()));
            let name = if prefix.is_empty() { format!("{kernel}_{}", lang.name()) } else { format!("{prefix}_{kernel}_{}", lang.name()) };
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
