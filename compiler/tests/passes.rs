//! The optimisation passes on tiny graphs: for each pass's pattern (and the near misses it must
//! leave alone), a snapshot of the graph before and after `mfn_compiler::optimise`, and a check
//! that the CPU evaluator gives the same numbers on both. Snapshots live in `tests/snapshots/`;
//! after an intended change, review them with `cargo insta review` (or regenerate with
//! `INSTA_UPDATE=always`) and read the diff.

use mfn_compiler::ir::Graph;
use mfn_compiler::{eval, onnx, optimise, passes, CompileOptions};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;

/// max |optimised - imported| / max |imported|: the passes only re-associate f32 arithmetic
/// (folded weights, merged affine maps), a few ulps of sums of at most 75 terms here.
const TOLERANCE: f32 = 1e-5;

/// A model built node by node with seeded random initializers; the graph input is "x" with a
/// symbolic batch "N", the last node's output is the graph output.
struct Model {
    builder: GraphBuilder,
    rng: Rng,
    last: String,
    /// Inputs are pixel values in [0, 255] (for the input normalisation) instead of N(0, 1).
    pixels: bool,
}

impl Model {
    fn new(input: &[i64]) -> Model {
        let mut builder = GraphBuilder::new(13);
        let dims: Vec<Dim> = std::iter::once(Dim::param("N")).chain(input.iter().map(|&d| Dim::Fixed(d))).collect();
        builder.input("x", &dims);
        Model { builder, rng: Rng::new(input.iter().product::<i64>() as u64), last: "x".into(), pixels: false }
    }

    fn pixels(&mut self) -> &mut Self {
        self.pixels = true;
        self
    }

    /// A random N(0, 0.5) initializer.
    fn weight(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        let data = self.rng.normal_vec(dims.iter().product::<i64>() as usize, 0.5);
        self.builder.initializer(name, dims, data);
        self
    }

    /// An initializer with the given values.
    fn values(&mut self, name: &str, dims: &[i64], data: &[f32]) -> &mut Self {
        self.builder.initializer(name, dims, data.to_vec());
        self
    }

    /// BatchNormalization statistics `{name}.scale/.bias/.mean/.var` for `c` channels.
    fn bn_params(&mut self, name: &str, c: i64) -> &mut Self {
        for (suffix, lo, hi) in [("scale", 0.5, 1.5), ("bias", -0.5, 0.5), ("mean", -0.5, 0.5), ("var", 0.5, 2.0)] {
            let data = self.rng.uniform_vec(c as usize, lo, hi);
            self.builder.initializer(&format!("{name}.{suffix}"), &[c], data);
        }
        self
    }

    /// A node named `name` whose output is also called `name`.
    fn node(&mut self, name: &str, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> &mut Self {
        self.builder.named_node(name, op, inputs, &[name], attrs);
        self.last = name.into();
        self
    }

    /// BatchNormalization `name` of `input`, with its statistics.
    fn bn(&mut self, name: &str, input: &str, c: i64) -> &mut Self {
        self.bn_params(name, c);
        let p = |s: &str| format!("{name}.{s}");
        let (scale, bias, mean, var) = (p("scale"), p("bias"), p("mean"), p("var"));
        self.node(name, "BatchNormalization", &[input, &scale, &bias, &mean, &var], vec![])
    }

    /// Conv `name` of `input` with weight `{name}.w` ([c_out, c_in / group, k, k]) and no bias.
    fn conv(&mut self, name: &str, input: &str, w: [i64; 4], attrs: Vec<Attr>) -> &mut Self {
        let weight = format!("{name}.w");
        self.weight(&weight, &w);
        self.node(name, "Conv", &[input, &weight], attrs)
    }

    /// The ONNX bytes; the output shape is `output` (with the batch).
    fn bytes(&mut self, output: &[i64]) -> Vec<u8> {
        let dims: Vec<Dim> = std::iter::once(Dim::param("N")).chain(output.iter().map(|&d| Dim::Fixed(d))).collect();
        let last = self.last.clone();
        self.builder.output(&last, &dims);
        self.builder.to_bytes()
    }
}

fn pads(p: i64) -> Attr {
    Attr::Ints("pads", vec![p; 4])
}

fn group(g: i64) -> Attr {
    Attr::Int("group", g)
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}

/// A batch of two random inputs for `graph`.
fn input_for(graph: &Graph, pixels: bool) -> Vec<f32> {
    let n = 2 * graph.value(graph.inputs[0]).shape[1..].iter().product::<usize>();
    let mut rng = Rng::new(99);
    if pixels {
        rng.uniform_vec(n, 0.0, 255.0)
    } else {
        rng.normal_vec(n, 1.0)
    }
}

/// Asserts that `graph` computes what `reference` computes, on a batch of two.
fn assert_same_numbers(reference: &Graph, graph: &Graph, pixels: bool, what: &str) {
    let input = input_for(reference, pixels);
    let want = eval::run(reference, &input).expect("evaluating the imported graph");
    let got = eval::run(graph, &input).expect("evaluating the optimised graph");
    let err = rel_err(&got, &want);
    assert!(err <= TOLERANCE, "{what}: differs from the imported graph by {err:e}:\n{graph}");
}

/// Snapshots the imported and the optimised graph of `model` under `name`, and checks that both
/// compute the same.
fn check(name: &str, model: &mut Model, output: &[i64]) {
    let onnx = model.bytes(output);
    let imported = onnx::import(&onnx, 1, None).expect("imports");
    let optimised = optimise(&onnx, &CompileOptions::default()).expect("optimises");
    assert_same_numbers(&imported, &optimised, model.pixels, name);
    insta::assert_snapshot!(name, format!("# imported\n{imported}\n# optimised\n{optimised}"));
}

#[test]
fn arith_to_affine() {
    // (x - 127.5) * (1/128): two constant ops, one affine map (not into a conv, so it stays).
    let mut m = Model::new(&[3, 4, 4]);
    m.pixels().values("mean", &[], &[127.5]).values("scale", &[], &[1.0 / 128.0]);
    m.node("sub", "Sub", &["x", "mean"], vec![]).node("mul", "Mul", &["sub", "scale"], vec![]);
    m.node("relu", "Relu", &["mul"], vec![]);
    check("arith_to_affine_normalisation", &mut m, &[3, 4, 4]);
    // Per channel, with the constant first in a Sub ([1,C,1,1] and [C,1,1] both broadcast per channel).
    let mut m = Model::new(&[3, 4, 4]);
    m.weight("c", &[1, 3, 1, 1]).values("d", &[3, 1, 1], &[2.0, 4.0, 0.5]);
    m.node("sub", "Sub", &["c", "x"], vec![]).node("div", "Div", &["sub", "d"], vec![]);
    check("arith_to_affine_per_channel", &mut m, &[3, 4, 4]);
    // Not affine: a constant divided by x, and a product of two activations.
    let mut m = Model::new(&[3, 4, 4]);
    m.values("one", &[], &[1.0]).node("sig", "Sigmoid", &["x"], vec![]);
    m.node("inv", "Div", &["one", "sig"], vec![]).node("prod", "Mul", &["inv", "x"], vec![]);
    check("arith_to_affine_near_misses", &mut m, &[3, 4, 4]);
}

#[test]
fn fold_batchnorm() {
    let mut m = Model::new(&[3, 6, 6]);
    m.conv("conv", "x", [5, 3, 3, 3], vec![pads(1)]).bn("bn", "conv", 5);
    check("fold_batchnorm_conv", &mut m, &[5, 6, 6]);
    // After a Gemm (a linear layer) on [N, K].
    let mut m = Model::new(&[3, 2, 2]);
    m.weight("B", &[12, 4]).node("flat", "Flatten", &["x"], vec![]).node("fc", "Gemm", &["flat", "B"], vec![]);
    m.bn("bn", "fc", 4);
    check("fold_batchnorm_gemm", &mut m, &[4]);
    // The conv output is read twice: BN cannot fold and becomes a standalone affine map.
    let mut m = Model::new(&[3, 6, 6]);
    m.conv("conv", "x", [3, 3, 1, 1], vec![]).bn("bn", "conv", 3).node("add", "Add", &["bn", "conv"], vec![]);
    check("fold_batchnorm_shared_output", &mut m, &[3, 6, 6]);
}

#[test]
fn lower_batchnorm() {
    // A BN on the graph input, then a per-channel Mul: one merged affine map, then the Relu.
    let mut m = Model::new(&[3, 4, 4]);
    m.weight("k", &[3, 1, 1]).bn("bn", "x", 3).node("mul", "Mul", &["bn", "k"], vec![]);
    m.node("relu", "Relu", &["mul"], vec![]);
    check("lower_batchnorm_merged", &mut m, &[3, 4, 4]);
}

#[test]
fn fold_output_affine() {
    // conv -> Mul -> Add by per-channel constants: merged into the conv's weights and bias.
    let mut m = Model::new(&[3, 6, 6]);
    m.weight("k", &[4, 1, 1]).weight("c", &[1, 4, 1, 1]);
    m.conv("conv", "x", [4, 3, 3, 3], vec![]).node("mul", "Mul", &["conv", "k"], vec![]).node("add", "Add", &["mul", "c"], vec![]);
    check("fold_output_affine_conv", &mut m, &[4, 4, 4]);
    // After a Relu the map is not linear in the conv output: it stays.
    let mut m = Model::new(&[3, 6, 6]);
    m.weight("k", &[4, 1, 1]);
    m.conv("conv", "x", [4, 3, 3, 3], vec![]).node("relu", "Relu", &["conv"], vec![]).node("mul", "Mul", &["relu", "k"], vec![]);
    check("fold_output_affine_after_activation", &mut m, &[4, 4, 4]);
}

/// The input normalisation model: (x - 127.5) / 128 then `conv` with `attrs`.
fn normalised_conv(w: [i64; 4], attrs: Vec<Attr>) -> Model {
    let mut m = Model::new(&[3, 7, 7]);
    m.pixels().values("mean", &[], &[127.5]).values("std", &[], &[128.0]);
    m.node("sub", "Sub", &["x", "mean"], vec![]).node("div", "Div", &["sub", "std"], vec![]);
    m.conv("conv", "div", w, attrs);
    m
}

#[test]
fn fold_input_affine() {
    check("fold_input_affine_unpadded", &mut normalised_conv([4, 3, 3, 3], vec![]), &[4, 5, 5]);
    check("fold_input_affine_grouped", &mut normalised_conv([3, 1, 3, 3], vec![group(3)]), &[3, 5, 5]);
    // Zero padding: folding would turn the border's zeros into -127.5/128; a prologue instead.
    check("fold_input_affine_padded", &mut normalised_conv([4, 3, 3, 3], vec![pads(1)]), &[4, 7, 7]);
    check("fold_input_affine_same_upper", &mut normalised_conv([4, 3, 3, 3], vec![Attr::Str("auto_pad", "SAME_UPPER".into()), Attr::Ints("strides", vec![2, 2])]), &[4, 4, 4]);
    // The normalised input is read by two convs: it stays a standalone affine map.
    let mut m = normalised_conv([4, 3, 1, 1], vec![]);
    m.conv("conv2", "div", [4, 3, 1, 1], vec![]).node("add", "Add", &["conv", "conv2"], vec![]);
    check("fold_input_affine_shared", &mut m, &[4, 7, 7]);
}

#[test]
fn fuse_activation() {
    let mut m = Model::new(&[3, 6, 6]);
    m.weight("slope", &[4, 1, 1]).conv("conv", "x", [4, 3, 3, 3], vec![pads(1)]).bn("bn", "conv", 4);
    m.node("prelu", "PRelu", &["bn", "slope"], vec![]);
    check("fuse_activation_conv_bn_prelu", &mut m, &[4, 6, 6]);
    let mut m = Model::new(&[3, 6, 6]);
    m.values("lo", &[], &[0.0]).values("hi", &[], &[6.0]);
    m.conv("conv", "x", [3, 1, 3, 3], vec![pads(1), group(3)]).node("clip", "Clip", &["conv", "lo", "hi"], vec![]);
    check("fuse_activation_depthwise_clip", &mut m, &[3, 6, 6]);
    let mut m = Model::new(&[6]);
    m.weight("B", &[4, 6]).node("fc", "Gemm", &["x", "B"], vec![Attr::Int("transB", 1)]);
    m.node("sig", "Sigmoid", &["fc"], vec![]);
    check("fuse_activation_gemm_sigmoid", &mut m, &[4]);
    // Two activations of one conv output: neither fuses.
    let mut m = Model::new(&[3, 6, 6]);
    m.conv("conv", "x", [3, 3, 1, 1], vec![]).node("relu", "Relu", &["conv"], vec![]).node("sig", "Sigmoid", &["conv"], vec![]);
    m.node("add", "Add", &["relu", "sig"], vec![]);
    check("fuse_activation_shared_output", &mut m, &[3, 6, 6]);
}

#[test]
fn fuse_residual() {
    // The inverted-residual bottleneck: the projection conv adds the block input.
    let mut m = Model::new(&[4, 5, 5]);
    m.weight("s1", &[8, 1, 1]).weight("s2", &[8, 1, 1]);
    m.conv("expand", "x", [8, 4, 1, 1], vec![]).bn("bn1", "expand", 8).node("prelu1", "PRelu", &["bn1", "s1"], vec![]);
    m.conv("dw", "prelu1", [8, 1, 3, 3], vec![pads(1), group(8)]).bn("bn2", "dw", 8).node("prelu2", "PRelu", &["bn2", "s2"], vec![]);
    m.conv("project", "prelu2", [4, 8, 1, 1], vec![]).bn("bn3", "project", 4).node("add", "Add", &["x", "bn3"], vec![]);
    check("fuse_residual_bottleneck", &mut m, &[4, 5, 5]);
    // Two conv branches: the later conv takes the Add, the earlier output is its residual.
    let mut m = Model::new(&[4, 5, 5]);
    m.conv("a", "x", [4, 4, 1, 1], vec![]).conv("b", "x", [4, 4, 3, 3], vec![pads(1)]).node("add", "Add", &["a", "b"], vec![]);
    check("fuse_residual_two_branches", &mut m, &[4, 5, 5]);
    // The shortcut is computed after the conv: the conv moves down to the Add.
    let mut m = Model::new(&[4, 5, 5]);
    m.conv("conv", "x", [4, 4, 1, 1], vec![]).node("sig", "Sigmoid", &["x"], vec![]).node("add", "Add", &["sig", "conv"], vec![]);
    check("fuse_residual_shortcut_after_conv", &mut m, &[4, 5, 5]);
    // An activation after the Add stays out of the epilogue (it applies to the sum).
    let mut m = Model::new(&[4, 5, 5]);
    m.conv("conv", "x", [4, 4, 3, 3], vec![pads(1)]).node("add", "Add", &["conv", "x"], vec![]).node("relu", "Relu", &["add"], vec![]);
    check("fuse_residual_then_relu", &mut m, &[4, 5, 5]);
    // No conv produces either operand: the Add stays.
    let mut m = Model::new(&[4, 5, 5]);
    m.node("relu", "Relu", &["x"], vec![]).node("add", "Add", &["relu", "x"], vec![]);
    check("fuse_residual_no_producer", &mut m, &[4, 5, 5]);
}

#[test]
fn gdconv() {
    // MobileFaceNet's head: GDConv 7x7 + BN, then Flatten.
    let mut m = Model::new(&[5, 7, 7]);
    m.conv("gd", "x", [5, 1, 7, 7], vec![group(5)]).bn("bn", "gd", 5).node("flat", "Flatten", &["bn"], vec![]);
    check("gdconv_head", &mut m, &[5]);
    // Non-square whole-map kernel with an activation.
    let mut m = Model::new(&[5, 7, 6]);
    m.conv("gd", "x", [5, 1, 7, 6], vec![group(5)]).node("relu", "Relu", &["gd"], vec![]);
    check("gdconv_7x6_relu", &mut m, &[5, 1, 1]);
    // Near misses: padded (an ordinary depthwise conv) and dense (not depthwise).
    let mut m = Model::new(&[5, 7, 7]);
    m.conv("padded", "x", [5, 1, 7, 7], vec![group(5), pads(1)]).conv("dense", "padded", [5, 5, 3, 3], vec![]);
    check("gdconv_near_misses", &mut m, &[5, 1, 1]);
}

#[test]
fn dce() {
    // A branch nothing reads disappears, with its weights.
    let mut m = Model::new(&[3, 4, 4]);
    m.conv("dead", "x", [3, 3, 1, 1], vec![]).node("sig", "Sigmoid", &["x"], vec![]);
    check("dce_dead_branch", &mut m, &[3, 4, 4]);
}

/// A small MobileFaceNet through the pipeline one pass at a time: what each pass changes, and
/// that every intermediate graph still computes what the imported one does.
#[test]
fn pipeline_trace() {
    let mut m = Model::new(&[3, 9, 9]);
    m.pixels().values("mean", &[], &[127.5]).values("scale", &[], &[0.0078125]);
    m.weight("s0", &[4, 1, 1]).weight("s1", &[8, 1, 1]).weight("s2", &[8, 1, 1]).weight("B", &[6, 4]);
    m.node("sub", "Sub", &["x", "mean"], vec![]).node("mul", "Mul", &["sub", "scale"], vec![]);
    m.conv("stem", "mul", [4, 3, 3, 3], vec![pads(1), Attr::Ints("strides", vec![2, 2])]).bn("stem_bn", "stem", 4);
    m.node("stem_prelu", "PRelu", &["stem_bn", "s0"], vec![]);
    m.conv("expand", "stem_prelu", [8, 4, 1, 1], vec![]).bn("bn1", "expand", 8).node("prelu1", "PRelu", &["bn1", "s1"], vec![]);
    m.conv("dw", "prelu1", [8, 1, 3, 3], vec![pads(1), group(8)]).bn("bn2", "dw", 8).node("prelu2", "PRelu", &["bn2", "s2"], vec![]);
    m.conv("project", "prelu2", [4, 8, 1, 1], vec![]).bn("bn3", "project", 4).node("add", "Add", &["stem_prelu", "bn3"], vec![]);
    m.conv("gd", "add", [4, 1, 5, 5], vec![group(4)]).bn("gd_bn", "gd", 4).node("flat", "Flatten", &["gd_bn"], vec![]);
    m.node("fc", "Gemm", &["flat", "B"], vec![Attr::Int("transB", 1)]).bn("fc_bn", "fc", 6);
    let onnx = m.bytes(&[6]);
    let imported = onnx::import(&onnx, 1, None).expect("imports");
    let mut graph = imported.clone();
    let mut trace = format!("# imported\n{graph}");
    for pass in passes::PASSES {
        let before = graph.to_string();
        (pass.run)(&mut graph).unwrap_or_else(|e| panic!("pass {}: {e}", pass.name));
        graph.verify().unwrap_or_else(|e| panic!("after pass {}: {e}", pass.name));
        assert_same_numbers(&imported, &graph, true, pass.name);
        let after = graph.to_string();
        let body = if after == before { "(unchanged)\n".to_string() } else { after };
        trace.push_str(&format!("\n# after {}\n{body}", pass.name));
    }
    let optimised = optimise(&onnx, &CompileOptions::default()).expect("optimises");
    assert_eq!(graph.to_string(), optimised.to_string(), "PASSES in order is what optimise runs");
    insta::assert_snapshot!("pipeline_trace", trace);
}
