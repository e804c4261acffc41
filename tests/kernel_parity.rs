//! Per-kernel GPU parity: tiny ONNX models, one pattern each, run on the GPU and compared with the
//! CPU evaluator on the *imported, unoptimised* graph (so the passes are checked as well as the
//! kernels), and with the evaluator on the optimised graph. Every case also states which kernels the
//! compiled program dispatches, in order: that is where a fusion that did (or did not) happen shows.
//!
//! The cases are tables of small builders ([`Net`]) with seeded random weights and inputs; the
//! harness ([`run_cases`]) checks every case and reports all failures at once.

mod common;

use mfn_compiler::Program;
use mfn_runtime::{Session, SessionOptions};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;

/// Relative tolerance, max |got - want| / max |want|. The longest accumulations here are dot
/// products of at most ~820 f32 terms (a 13x7x9 Gemm input, a 7x7 conv over 13 channels), summed
/// in a different order (or with BN, bias and the input normalisation folded into the weights) on
/// each side. Rounding errors of such sums grow like sqrt(K) ulps of the partial sums, ~1e-6 of the
/// output range; measured below 1e-6 on every case. 1e-5 leaves room for a GPU that contracts to
/// FMA or evaluates `exp` to its 3-ulp WGSL bound, and still fails any indexing or fusion bug,
/// which shows up as errors of order 1e-2 or more.
const TOLERANCE: f32 = 1e-5;

// ---------------------------------------------------------------------------------------------
// Model builder
// ---------------------------------------------------------------------------------------------

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pad {
    /// No `pads` attribute (zero padding).
    None,
    /// `pads` = top, left, bottom, right.
    Explicit([usize; 4]),
    /// `auto_pad` = SAME_UPPER, SAME_LOWER or VALID.
    Auto(&'static str),
}

/// Grouping of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Group {
    Dense,
    /// `group` = channels, one filter per channel (output channels = input channels).
    Depthwise,
    /// `group` = n.
    Groups(usize),
}

#[derive(Clone, Copy, Debug)]
struct ConvSpec {
    c_out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    group: Group,
    pad: Pad,
    bias: bool,
}

impl ConvSpec {
    fn new(c_out: usize, k: usize) -> Self {
        ConvSpec { c_out, kernel: [k, k], stride: [1, 1], group: Group::Dense, pad: Pad::None, bias: true }
    }
    fn kernel(self, kh: usize, kw: usize) -> Self {
        ConvSpec { kernel: [kh, kw], ..self }
    }
    fn stride(self, stride: usize) -> Self {
        self.strides(stride, stride)
    }
    fn strides(self, sh: usize, sw: usize) -> Self {
        ConvSpec { stride: [sh, sw], ..self }
    }
    fn group(self, group: Group) -> Self {
        ConvSpec { group, ..self }
    }
    fn pad(self, pad: Pad) -> Self {
        ConvSpec { pad, ..self }
    }
    /// Symmetric explicit padding `p` on every side.
    fn same(self, p: usize) -> Self {
        self.pad(Pad::Explicit([p; 4]))
    }
    fn no_bias(self) -> Self {
        ConvSpec { bias: false, ..self }
    }
}

/// The padding ONNX gives a conv of kernel `k` and stride `s` over `size` (one axis): before, after.
fn resolve_pad(pad: Pad, axis: usize, size: usize, k: usize, s: usize) -> (usize, usize) {
    match pad {
        Pad::None | Pad::Auto("VALID") => (0, 0),
        Pad::Explicit(p) => (p[axis], p[axis + 2]),
        Pad::Auto(mode) => {
            let total = ((size.div_ceil(s) - 1) * s + k).saturating_sub(size);
            let (small, large) = (total / 2, total - total / 2);
            if mode == "SAME_UPPER" {
                (small, large)
            } else {
                (large, small)
            }
        }
    }
}

/// The kernel template the compiler should pick for a conv: mirrors the rules documented in
/// `ir::Conv` and `passes::gdconv` (pointwise = 1x1/s1/unpadded/dense, depthwise = one filter per
/// channel, gdconv = depthwise over the whole unpadded input).
fn conv_template(c_in: usize, hw: [usize; 2], out_w: usize, spec: &ConvSpec, pads: [usize; 4]) -> &'static str {
    let depthwise = spec.group == Group::Depthwise && c_in > 1;
    // Rows of whole vec4s (in and out), horizontal stride 1, at most 4 pixels of padding or
    // filter overhang either side: the vec4 variant.
    let rows_of_vec4 = hw[1].is_multiple_of(4) && out_w.is_multiple_of(4);
    if depthwise && pads == [0; 4] && spec.kernel == hw {
        "gdconv"
    } else if depthwise && spec.kernel == [3, 3] && pads[1] == 1 && matches!(spec.stride[1], 1 | 2) && c_in <= 8192 {
        // 3x3, left padding 1, horizontal stride 1 or 2, at most 8192 channels (a row of the
        // weight texture each): four output rows an invocation.
        if rows_of_vec4 {
            "depthwise3x3_vec4"
        } else {
            "depthwise3x3"
        }
    } else if depthwise && rows_of_vec4 && spec.stride[1] == 1 && pads[1] <= 4 && spec.kernel[1] <= 5 + pads[1] {
        "depthwise_vec4"
    } else if depthwise {
        "depthwise"
    } else if spec.kernel == [1, 1] && spec.stride == [1, 1] && pads == [0; 4] && spec.group == Group::Dense {
        // Feature maps of a multiple of 4 pixels get the vec4 variant, where its weights fit a
        // texture of 8192 rows (a row per 32 output and 4 input channels); the other needs a row
        // per input channel and a texel per 4 output channels.
        if (hw[0] * hw[1]).is_multiple_of(4) && spec.c_out.div_ceil(32) * c_in.div_ceil(4) <= 8192 {
            "pointwise_vec4"
        } else if c_in <= 8192 && spec.c_out.div_ceil(4) <= 8192 {
            "pointwise"
        } else {
            "conv2d"
        }
    } else {
        "conv2d"
    }
}

/// A model under construction: a chain of nodes from the graph input "x" (symbolic batch "N"),
/// with seeded random weights. `cur` is the value the next node reads, `shape` its per-sample shape.
struct Net {
    builder: GraphBuilder,
    rng: Rng,
    opset: i64,
    input_shape: Vec<usize>,
    shape: Vec<usize>,
    cur: String,
    count: usize,
    /// The template each conv added is expected to compile to (for the geometry table).
    conv_templates: Vec<&'static str>,
}

impl Net {
    fn new(seed: u64, input_shape: &[usize]) -> Net {
        Net::with_opset(seed, 13, input_shape)
    }

    fn with_opset(seed: u64, opset: i64, input_shape: &[usize]) -> Net {
        let mut builder = GraphBuilder::new(opset);
        let mut dims = vec![Dim::param("N")];
        dims.extend(input_shape.iter().map(|&d| Dim::Fixed(d as i64)));
        builder.input("x", &dims);
        Net {
            builder,
            rng: Rng::new(seed),
            opset,
            input_shape: input_shape.to_vec(),
            shape: input_shape.to_vec(),
            cur: "x".into(),
            count: 0,
            conv_templates: Vec::new(),
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}{}", self.count)
    }

    fn constant(&mut self, prefix: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(prefix);
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.builder.initializer(&name, &dims, data);
        name
    }

    fn normal(&mut self, prefix: &str, dims: &[usize], std: f32) -> String {
        let data = self.rng.normal_vec(dims.iter().product(), std);
        self.constant(prefix, dims, data)
    }

    fn uniform(&mut self, prefix: &str, dims: &[usize], lo: f32, hi: f32) -> String {
        let data = self.rng.uniform_vec(dims.iter().product(), lo, hi);
        self.constant(prefix, dims, data)
    }

    /// Adds a node reading `inputs`; its output becomes `cur`, of per-sample shape `shape`.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, shape: Vec<usize>) -> &mut Self {
        let out = self.fresh(&op.to_lowercase());
        self.builder.node(op, inputs, &[&out], attrs);
        self.cur = out;
        self.shape = shape;
        self
    }

    /// A node reading `cur` (plus `extra` inputs) that keeps the shape.
    fn unary(&mut self, op: &str, extra: &[&str], attrs: Vec<Attr>) -> &mut Self {
        let x = self.cur.clone();
        let mut inputs = vec![x.as_str()];
        inputs.extend_from_slice(extra);
        let shape = self.shape.clone();
        self.node(op, &inputs, attrs, shape)
    }

    fn conv(&mut self, spec: ConvSpec) -> &mut Self {
        let (c_in, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let (group, c_out) = match spec.group {
            Group::Dense => (1, spec.c_out),
            Group::Depthwise => (c_in, c_in),
            Group::Groups(g) => (g, spec.c_out),
        };
        let [kh, kw] = spec.kernel;
        let fan_in = c_in / group * kh * kw;
        let weight = self.normal("w", &[c_out, c_in / group, kh, kw], 1.0 / (fan_in as f32).sqrt());
        let mut inputs = vec![self.cur.clone(), weight];
        if spec.bias {
            inputs.push(self.normal("b", &[c_out], 0.5));
        }
        let mut attrs = vec![Attr::Ints("kernel_shape", vec![kh as i64, kw as i64])];
        let [sh, sw] = spec.stride;
        if spec.stride != [1, 1] {
            attrs.push(Attr::Ints("strides", vec![sh as i64, sw as i64]));
        }
        if group != 1 {
            attrs.push(Attr::Int("group", group as i64));
        }
        match spec.pad {
            Pad::None => {}
            Pad::Explicit(p) => attrs.push(Attr::Ints("pads", p.iter().map(|&v| v as i64).collect())),
            Pad::Auto(mode) => attrs.push(Attr::Str("auto_pad", mode.into())),
        }
        let (t, b) = resolve_pad(spec.pad, 0, h, kh, sh);
        let (l, r) = resolve_pad(spec.pad, 1, w, kw, sw);
        let (oh, ow) = ((h + t + b - kh) / sh + 1, (w + l + r - kw) / sw + 1);
        let spec = ConvSpec { c_out, ..spec };
        self.conv_templates.push(conv_template(c_in, [h, w], ow, &spec, [t, l, b, r]));
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", &inputs, attrs, vec![c_out, oh, ow])
    }

    /// BatchNormalization with random statistics (variance well away from zero).
    fn bn(&mut self) -> &mut Self {
        let c = self.shape[0];
        let gamma = self.uniform("gamma", &[c], 0.5, 1.5);
        let beta = self.normal("beta", &[c], 0.3);
        let mean = self.normal("mean", &[c], 0.3);
        let var = self.uniform("var", &[c], 0.5, 2.0);
        self.unary("BatchNormalization", &[&gamma, &beta, &mean, &var], vec![Attr::Float("epsilon", 1e-3)])
    }

    /// PRelu with random slopes (some negative) of shape `dims`.
    fn prelu(&mut self, dims: &[usize]) -> &mut Self {
        let slope = self.uniform("slope", dims, -0.5, 0.5);
        self.unary("PRelu", &[&slope], vec![])
    }

    /// Clip in the form of the net's opset: attributes before 11, constant inputs from 11 on.
    fn clip(&mut self, min: Option<f32>, max: Option<f32>) -> &mut Self {
        if self.opset < 11 {
            let attrs = [min.map(|v| Attr::Float("min", v)), max.map(|v| Attr::Float("max", v))];
            return self.unary("Clip", &[], attrs.into_iter().flatten().collect());
        }
        let min = min.map_or(String::new(), |v| self.constant("min", &[], vec![v]));
        let max = max.map_or(String::new(), |v| self.constant("max", &[], vec![v]));
        self.unary("Clip", &[&min, &max], vec![])
    }

    fn act(&mut self, act: Activation) -> &mut Self {
        let c = self.shape[0];
        match act {
            Activation::None => self,
            Activation::Relu => self.unary("Relu", &[], vec![]),
            Activation::Sigmoid => self.unary("Sigmoid", &[], vec![]),
            Activation::PRelu => {
                // [C, 1, 1] for feature maps, [C] for [N, C] activations.
                let dims: Vec<usize> = std::iter::once(c).chain(self.shape[1..].iter().map(|_| 1)).collect();
                self.prelu(&dims)
            }
            Activation::PReluScalar => self.prelu(&[1]),
            Activation::Clip => self.clip(Some(-0.5), Some(0.75)),
        }
    }

    /// A binary op of `cur` and `other` (same shape, or a constant).
    fn binary(&mut self, op: &str, other: &str) -> &mut Self {
        self.unary(op, &[other], vec![])
    }

    fn flatten(&mut self) -> &mut Self {
        let n = self.shape.iter().product();
        let x = self.cur.clone();
        self.node("Flatten", &[&x], vec![Attr::Int("axis", 1)], vec![n])
    }

    fn reshape(&mut self, target: &[i64]) -> &mut Self {
        let n = self.shape.iter().product();
        let shape = self.fresh("shape");
        self.builder.initializer_i64(&shape, &[target.len() as i64], target.to_vec());
        let x = self.cur.clone();
        self.node("Reshape", &[&x, &shape], vec![], vec![n])
    }

    fn global_average_pool(&mut self) -> &mut Self {
        let c = self.shape[0];
        let x = self.cur.clone();
        self.node("GlobalAveragePool", &[&x], vec![], vec![c, 1, 1])
    }

    /// Gemm of the `[N, K]` activation by a random B (`[K, M]`, or `[M, K]` with transB).
    fn gemm(&mut self, m: usize, trans_b: bool, alpha: f32, beta: f32, c: Option<&[usize]>) -> &mut Self {
        let k = self.shape[0];
        let std = 1.0 / (k as f32).sqrt();
        let dims = if trans_b { [m, k] } else { [k, m] };
        let b = self.normal("B", &dims, std);
        let c = c.map_or(String::new(), |dims| self.normal("C", dims, 0.5));
        let attrs = vec![Attr::Int("transB", trans_b as i64), Attr::Float("alpha", alpha), Attr::Float("beta", beta)];
        let x = self.cur.clone();
        let inputs: Vec<&str> = [x.as_str(), &b, &c].into_iter().filter(|s| !s.is_empty()).collect();
        self.node("Gemm", &inputs, attrs, vec![m])
    }

    fn matmul(&mut self, m: usize) -> &mut Self {
        let k = self.shape[0];
        let b = self.normal("B", &[k, m], 1.0 / (k as f32).sqrt());
        let x = self.cur.clone();
        self.node("MatMul", &[&x, &b], vec![], vec![m])
    }

    /// The input normalisation of face models, `(x - 127.5) * (1 / 128)`.
    fn normalise(&mut self) -> &mut Self {
        let mean = self.constant("mean", &[], vec![127.5]);
        let scale = self.constant("scale", &[], vec![1.0 / 128.0]);
        self.binary("Sub", &mean).binary("Mul", &scale)
    }

    /// An inverted-residual bottleneck: 1x1 expand (BN, PRelu), 3x3 depthwise (BN, PRelu),
    /// 1x1 project (BN), plus the block input (`skip_first` puts the shortcut first in the Add).
    fn bottleneck(&mut self, expansion: usize, skip_first: bool) -> &mut Self {
        let (skip, c) = (self.cur.clone(), self.shape[0]);
        self.conv(ConvSpec::new(c * expansion, 1).no_bias()).bn().act(Activation::PRelu);
        self.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1).no_bias()).bn().act(Activation::PRelu);
        self.conv(ConvSpec::new(c, 1).no_bias()).bn();
        let proj = self.cur.clone();
        let shape = self.shape.clone();
        let inputs = if skip_first { [skip.as_str(), &proj] } else { [proj.as_str(), &skip] };
        self.node("Add", &inputs, vec![], shape)
    }

    /// The finished model: `cur` is the graph output.
    fn finish(&mut self) -> Vec<u8> {
        let mut dims = vec![Dim::param("N")];
        dims.extend(self.shape.iter().map(|&d| Dim::Fixed(d as i64)));
        let out = self.cur.clone();
        self.builder.output(&out, &dims);
        self.builder.to_bytes()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    None,
    Relu,
    Sigmoid,
    /// Slope per channel: `[C, 1, 1]` on feature maps, `[C]` on `[N, C]`.
    PRelu,
    /// One slope for all channels.
    PReluScalar,
    Clip,
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Case {
    name: String,
    onnx: Vec<u8>,
    input_shape: Vec<usize>,
    batch: usize,
    /// Most samples per GPU submission (smaller than `batch` to exercise batch splitting).
    max_batch: usize,
    /// Inputs are pixel values in [0, 255] instead of N(0, 1).
    pixels: bool,
    /// Template of every dispatch, in order.
    templates: Vec<&'static str>,
    /// Text the optimised graph dump must contain / must not contain.
    dump_has: Vec<&'static str>,
    dump_lacks: Vec<&'static str>,
}

impl Case {
    fn new(name: impl Into<String>, net: &mut Net, templates: &[&'static str]) -> Case {
        Case {
            name: name.into(),
            onnx: net.finish(),
            input_shape: net.input_shape.clone(),
            batch: 1,
            max_batch: 1,
            pixels: false,
            templates: templates.to_vec(),
            dump_has: Vec::new(),
            dump_lacks: Vec::new(),
        }
    }
    fn batch(self, batch: usize) -> Case {
        Case { batch, max_batch: batch, ..self }
    }
    fn max_batch(self, max_batch: usize) -> Case {
        Case { max_batch, ..self }
    }
    fn pixels(self) -> Case {
        Case { pixels: true, ..self }
    }
    fn dump_has(mut self, text: &'static str) -> Case {
        self.dump_has.push(text);
        self
    }
    fn dump_lacks(mut self, text: &'static str) -> Case {
        self.dump_lacks.push(text);
        self
    }
}

/// max |got - want| / max |want| (the reference is never all zeros here).
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output lengths differ");
    let scale = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}

/// A seed for the case's input, from its name (FNV-1a), so that every case gets its own numbers.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn dispatch_templates(program: &Program) -> Vec<&str> {
    program.steps.iter().map(|s| program.kernels[s.kernel].template.as_str()).collect()
}

/// Checks one case; returns the GPU's relative error (`None` without a GPU), or a description of
/// the first thing wrong.
fn check(case: &Case) -> Result<Option<f32>, String> {
    let imported = mfn_compiler::onnx::import(&case.onnx, 1, None).map_err(|e| format!("import: {e}"))?;
    let optimised = mfn_compiler::optimise(&case.onnx, &Default::default()).map_err(|e| format!("optimise: {e}"))?;
    let program = mfn_compiler::codegen::generate(&optimised).map_err(|e| format!("codegen: {e}"))?;
    let dump = optimised.to_string();
    let templates = dispatch_templates(&program);
    if templates != case.templates {
        return Err(format!("dispatches {templates:?}, expected {:?}; optimised graph:\n{dump}", case.templates));
    }
    for text in &case.dump_has {
        if !dump.contains(text) {
            return Err(format!("optimised graph lacks '{text}':\n{dump}"));
        }
    }
    for text in &case.dump_lacks {
        if dump.contains(text) {
            return Err(format!("optimised graph contains '{text}':\n{dump}"));
        }
    }
    let mut rng = Rng::new(seed_of(&case.name));
    let n = case.batch * case.input_shape.iter().product::<usize>();
    let input = if case.pixels { rng.uniform_vec(n, 0.0, 255.0) } else { rng.normal_vec(n, 1.0) };
    let want = mfn_compiler::eval::run(&imported, &input).map_err(|e| format!("eval (imported): {e}"))?;
    let opt = mfn_compiler::eval::run(&optimised, &input).map_err(|e| format!("eval (optimised): {e}"))?;
    let err = rel_err(&opt, &want);
    if err > TOLERANCE {
        return Err(format!("optimised graph differs from the imported one by {err:e}; optimised graph:\n{dump}"));
    }
    // Kernels with a subgroup variant run both ways: the variant where the adapter has subgroups
    // (lavapipe does), and the plain kernel.
    let has_variants = program.kernels.iter().any(|k| k.subgroup_wgsl.is_some());
    let mut worst = None;
    for subgroups in if has_variants { &[true, false][..] } else { &[true][..] } {
        let options = SessionOptions { max_batch: case.max_batch, subgroups: *subgroups, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return Ok(None) };
        let got = session.run(&input).map_err(|e| format!("GPU run: {e}"))?;
        let (err, err_opt) = (rel_err(&got, &want), rel_err(&got, &opt));
        if err.max(err_opt) > TOLERANCE {
            let variant = if session.subgroups() { "subgroup variants" } else { "plain kernels" };
            return Err(format!(
                "GPU ({variant}) differs from the CPU evaluator by {err:e} (imported graph), {err_opt:e} (optimised graph); plan:\n{}",
                program.plan_text()
            ));
        }
        worst = Some(err.max(worst.unwrap_or(0.0)));
    }
    Ok(worst)
}

/// The subgroup variants really run where the adapter allows (so the cases above test them), and
/// lavapipe, the CI adapter, allows: a driver change there must not silently drop their coverage.
#[test]
fn subgroup_variants_run_where_the_adapter_has_subgroups() {
    let mut net = Net::new(16, &[8, 4, 8]);
    let program = mfn_compiler::compile(&net.conv(ConvSpec::new(16, 1)).finish(), &Default::default()).expect("compiles");
    assert!(program.kernels.iter().any(|k| k.subgroup_wgsl.is_some()), "the vec4 pointwise kernel has a subgroup variant");
    let Some(adapter) = common::adapter() else { return };
    let info = adapter.get_info();
    let usable = adapter.features().contains(mfn_runtime::wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
    if info.name.contains("llvmpipe") {
        assert!(usable, "lavapipe has subgroups of 8: {info:?}");
    }
    let Some(session) = common::session(&program, 1) else { return };
    assert_eq!(session.subgroups(), usable, "{}", session.adapter());
    let options = SessionOptions { max_batch: 1, subgroups: false, ..Default::default() };
    assert!(!common::session_with(&program, &options).expect("session").subgroups());
}

/// Loop bounding (kept or left out) and warm cores (on or off) change the speed of a session,
/// never its results; warm cores run on a CPU adapter such as lavapipe, and only there.
#[test]
fn loop_bounding_and_warm_cores_change_no_result() {
    let mut net = Net::new(16, &[8, 12, 12]);
    net.conv(ConvSpec::new(16, 1)).conv(ConvSpec::new(16, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let input = Rng::new(7).normal_vec(2 * 8 * 12 * 12, 1.0);
    let mut results = Vec::new();
    for (loop_bounding, warm_cores) in [(false, true), (true, false)] {
        let options = SessionOptions { max_batch: 2, loop_bounding, warm_cores, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
        if warm_cores && cpu {
            assert_eq!(session.warm_cores(), mfn_runtime::warm_cpus(), "warm cores on {}", session.adapter());
        } else {
            assert_eq!(session.warm_cores(), 0, "warm cores on {} with warm_cores {warm_cores}", session.adapter());
        }
        results.push(session.run(&input).expect("runs"));
    }
    assert_eq!(results[0], results[1]);
}

/// Shared tiles (the tiles of the subgroup GEMMs and convolutions, and the depthwise 3x3 kernels'
/// bands, taken from counters by the driver's threads, on any number of threads, 16 at most)
/// change no result: the same tiles, the same sums. A batch of 5 in submissions of 2 checks that
/// every submission starts from zeroed counters; the layers cover every kernel kind that shares,
/// the depthwise ones both templates (rows of a multiple of 4 and not) and both strides; the last
/// run has no subgroups (the depthwise kernels share all the same).
#[test]
fn shared_tiles_change_no_result() {
    let mut net = Net::new(16, &[8, 12, 12]);
    net.conv(ConvSpec::new(16, 3).same(1)).conv(ConvSpec::new(40, 1)).conv(ConvSpec::new(40, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(16, 1));
    net.conv(ConvSpec::new(16, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 2, 2])));
    net.conv(ConvSpec::new(16, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let templates: Vec<&str> = program.kernels.iter().filter(|k| k.tile_counters().is_some()).map(|k| k.template.as_str()).collect();
    for template in ["conv2d", "pointwise_vec4", "depthwise3x3_vec4", "depthwise3x3", "pointwise"] {
        assert!(templates.contains(&template), "no {template} kernel with tile counters: {:?}", program.kernels.iter().map(|k| &k.name).collect::<Vec<_>>());
    }
    let input = Rng::new(11).normal_vec(5 * 8 * 12 * 12, 1.0);
    let mut results = Vec::new();
    for (sharers, subgroups) in [(Some(0), true), (None, true), (Some(3), true), (Some(7), true), (Some(100), true), (Some(2), false)] {
        let options = SessionOptions { max_batch: 2, tile_sharers: sharers, subgroups, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
        let wanted = sharers.unwrap_or(if cpu { mfn_runtime::driver_threads() } else { 0 });
        // At most 16 threads share (one counter each, a cache line apart, in a dispatch's slot);
        // without subgroups the depthwise kernels still do.
        let expected = if wanted > 1 { wanted.min(16) } else { 0 };
        assert_eq!(session.tile_sharers(), expected, "tile sharers on {} asked {sharers:?}", session.adapter());
        results.push(session.run(&input).expect("runs"));
    }
    for (i, r) in results.iter().enumerate().skip(1) {
        assert!(r == &results[0], "run {i} differs from the one with fixed shares");
    }
}

/// Shared tiles on a layer whose units are many and long: a 3x3 convolution of 256 input channels
/// (3,361 loop iterations a unit: the input channels by rows of taps by taps) at 36x36, 8 samples,
/// 352 units. On lavapipe, whose every invocation ends its loops after 65,535 iterations in all,
/// one thread taking its share of them (176 units on 2 threads, 22 on 16) would stop half-way
/// through a unit and leave it wrong without a word; the runtime caps the units an invocation
/// takes and dispatches enough workgroups for all (`Kernel::unit_iterations`).
#[test]
fn shared_tiles_stay_within_the_drivers_loop_budget() {
    let mut net = Net::new(33, &[256, 36, 36]);
    net.conv(ConvSpec::new(32, 3).same(1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let conv = program.kernels.iter().find(|k| k.template == "conv2d").expect("a conv2d kernel");
    let units = 8 * program.steps[0].workgroups[0] * program.steps[0].workgroups[1] * 4;
    assert!(u64::from(units / 16) * u64::from(conv.unit_iterations) > 65_535, "{units} units of {} iterations", conv.unit_iterations);
    let input = Rng::new(5).normal_vec(8 * 256 * 36 * 36, 1.0);
    let mut results = Vec::new();
    for sharers in [Some(0), None, Some(2)] {
        let options = SessionOptions { max_batch: 8, tile_sharers: sharers, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        results.push(session.run(&input).expect("runs"));
    }
    for (i, r) in results.iter().enumerate().skip(1) {
        let differ = r.iter().zip(&results[0]).filter(|(a, b)| a != b).count();
        assert!(differ == 0, "run {i}: {differ} of {} outputs differ from the grid's", r.len());
    }
}

/// Reductions of one invocation past lavapipe's loop budget: a MatMul over 70,000 inputs and a
/// GlobalAveragePool of a 260x260 map (67,600 pixels). On lavapipe, which ends every loop of an
/// invocation after 65,535 iterations in all, their loops of one product an iteration came out
/// wrong without a word (relative errors 0.34 and 0.12 here); 8 an iteration reach 524,280. Past
/// that (a MatMul over 600,000 inputs), the session is refused there with an error naming the
/// kernel, where it would otherwise compute a wrong result.
#[test]
fn long_reductions_stay_within_the_drivers_loop_budget() {
    let mut net = Net::new(93, &[70_000, 1, 1]);
    net.flatten().matmul(4);
    let cases = vec![
        Case::new("MatMul over 70,000 inputs", &mut net, &["linear"]),
        Case::new("GlobalAveragePool of 260x260", Net::new(94, &[2, 260, 260]).global_average_pool(), &["gdconv"]).batch(2),
    ];
    run_cases(cases);
    let mut net = Net::new(95, &[600_000, 1, 1]);
    net.flatten().matmul(1);
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let linear = &program.kernels[0];
    assert_eq!(linear.unit_iterations, 75_000, "the loop's iterations");
    let Some(adapter) = common::adapter() else { return };
    let name = adapter.get_info().name;
    match Session::new(&program, &SessionOptions::default()) {
        Err(e) if name.contains("llvmpipe") => {
            let text = e.to_string();
            assert!(text.contains("loop iterations") && text.contains(&linear.name) && text.contains("75000"), "{text}");
        }
        Ok(_) if name.contains("llvmpipe") => panic!("lavapipe took a kernel whose loop outlasts its budget"),
        Ok(_) => {}
        Err(e) => panic!("{name} refused a long loop: {e}"),
    }
}

/// Chains (the kernels of a bottleneck block in one dispatch, each link waiting for its tiles)
/// change no result: the stem, two bottlenecks, a stride-2 depthwise and a bottleneck and a
/// small-map GEMM past it, at a batch that every chain takes (1), one that only some take (30),
/// and one that none takes (240: the kernels' own pipelines, built on first need); with links that
/// give up
/// waiting at once (`chain_wait` 0: every batch runs again without chains); on 2, 3 and 16
/// threads; and a chain of five convolutions binding more buffers than wgpu allows by default; all
/// bit-identical to the grid's tiles.
#[test]
fn chains_change_no_result() {
    let mut net = Net::new(21, &[8, 20, 20]);
    net.conv(ConvSpec::new(16, 3).same(1)).bottleneck(2, false).bottleneck(2, true);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 1, 1]))).bottleneck(2, false);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 1, 1]))).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let steps = program.steps.len();
    // Five links of 6 and 5 storage buffers (3x3 convolutions, depthwise between them): 29 with
    // the status word, past wgpu's default of 28 buffers a stage, which a chain may exceed only
    // on a device that asked for more.
    let mut wide = Net::new(22, &[8, 12, 12]);
    wide.conv(ConvSpec::new(8, 3).same(1)).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1));
    wide.conv(ConvSpec::new(8, 3).same(1)).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(8, 3).same(1));
    let wide = mfn_compiler::compile(&wide.finish(), &Default::default()).expect("compiles");
    let input = Rng::new(3).normal_vec(2 * 8 * 12 * 12, 1.0);
    let grid = SessionOptions { max_batch: 2, tile_sharers: Some(0), ..Default::default() };
    let Some(session) = common::session_with(&wide, &grid) else { return };
    let want = session.run(&input).expect("runs");
    let session = common::session_with(&wide, &SessionOptions { max_batch: 2, ..Default::default() }).expect("a session");
    session.wait_for_chains();
    assert!(session.run(&input).expect("runs") == want, "the five-link chain's outputs differ from the grid's");
    if session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu {
        assert_eq!(session.dispatch_count(2), 1, "the five convolutions are not one chain");
    }
    for batch in [1, 30, 240] {
        let input = Rng::new(batch as u64).normal_vec(batch * 8 * 20 * 20, 1.0);
        let grid = SessionOptions { max_batch: batch, tile_sharers: Some(0), ..Default::default() };
        let Some(session) = common::session_with(&program, &grid) else { return };
        let want = session.run(&input).expect("runs");
        let configurations: &[(Option<u32>, u32)] = if batch < 240 { &[(None, 2048), (Some(3), 2048), (Some(16), 2048), (None, 0)] } else { &[(None, 2048)] };
        for &(sharers, wait) in configurations {
            let options = SessionOptions { max_batch: batch, tile_sharers: sharers, chain_wait: wait, ..Default::default() };
            let session = common::session_with(&program, &options).expect("a session");
            session.wait_for_chains();
            let got = session.run(&input).expect("runs");
            let dispatches = session.dispatch_count(batch);
            eprintln!("batch {batch}, sharers {sharers:?}, wait {wait}: {dispatches} dispatches for {steps} steps, {} runs again", session.chain_retries());
            let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
            // On lavapipe: every chain at batch 1, some at 30, none at 240.
            if cpu && batch == 1 {
                assert!(session.chained() > 0 && dispatches < steps, "no chain at batch 1 on {}", session.adapter());
            }
            if cpu && batch == 240 {
                assert_eq!(dispatches, steps, "a chain at batch 240");
            }
            if cpu && wait == 0 && dispatches < steps {
                assert_eq!(session.chain_retries(), 1, "a chain that gave up did not run again");
            }
            assert!(got == want, "batch {batch}, sharers {sharers:?}, wait {wait}: the outputs differ from the grid's");
        }
    }
}

/// Wide loads (activations read, and the GEMMs' and vec4 depthwise kernels' outputs written, as
/// 64-bit integers on CPU adapters with `SHADER_INT64`: `mfn_compiler::wide`) change no result:
/// GEMMs at 14x14 and on padded 7x7 planes, with and without residuals and with a channel count
/// that is not a multiple of 8, the depthwise 3x3 kernel for rows of any width (14x14 at stride 1,
/// 14x14 -> 7x7 at stride 2) and the one for rows of vec4s at strides 1 and 2 (16x16 and 8x8
/// maps, rows of 4 and 2 vec4s), at batches 1 and 3, with chains and without, in f32 and (where
/// the adapter has f16) in f16; bit-identical to the vectors of floats. On lavapipe the wide form
/// must run.
#[test]
fn wide_loads_change_no_result() {
    let mut net = Net::new(31, &[12, 14, 14]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu).bottleneck(2, false).bottleneck(2, true);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1).no_bias()).bn().conv(ConvSpec::new(20, 1)).bottleneck(2, false);
    net.conv(ConvSpec::new(8, 1)).conv(ConvSpec::new(0, 0).kernel(7, 7).group(Group::Depthwise).no_bias()).flatten();
    // Each model with its input's elements a sample and the depthwise template it must run wide
    // (at least that many kernels of it).
    let gemms = (net.finish(), 12 * 14 * 14, "depthwise3x3", 2);
    let mut net = Net::new(32, &[8, 16, 16]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu).bottleneck(2, false);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)).act(Activation::PRelu).conv(ConvSpec::new(24, 1)).bottleneck(2, true).flatten();
    let depthwise = (net.finish(), 8 * 16 * 16, "depthwise3x3_vec4", 3);
    let Some(adapter) = common::adapter() else { return };
    let f16 = adapter.features().contains(mfn_runtime::wgpu::Features::SHADER_F16);
    for ((onnx, elements, template, least), precision) in [&gemms, &depthwise].into_iter().flat_map(|m| [(m, mfn_compiler::Precision::F32), (m, mfn_compiler::Precision::F16)]) {
        if precision == mfn_compiler::Precision::F16 && !f16 {
            eprintln!("{}: no SHADER_F16, f16 not checked", adapter.get_info().name);
            continue;
        }
        let program = mfn_compiler::compile(onnx, &mfn_compiler::CompileOptions { precision, ..Default::default() }).expect("compiles");
        let wide = |k: &mfn_compiler::Kernel| mfn_compiler::wide::wide_loads(k.subgroup_wgsl.as_ref().unwrap_or(&k.wgsl), precision).is_some();
        assert!(program.kernels.iter().any(|k| k.subgroup_wgsl.is_some() && wide(k)), "no GEMM with wide loads");
        // The depthwise kernels, all in the wide form: for rows of any width in the first model,
        // of vec4s in the second.
        let dw: Vec<_> = program.kernels.iter().filter(|k| k.template == *template).collect();
        assert!(dw.len() >= *least && dw.iter().all(|k| wide(k)), "{template} kernels, all wide: {:?}", program.kernels.iter().map(|k| &k.template).collect::<Vec<_>>());
        for batch in [1, 3] {
            let input = Rng::new(batch as u64 + 40).normal_vec(batch * elements, 1.0);
            for chains in [true, false] {
                let plain = SessionOptions { max_batch: batch, wide_loads: false, chains, ..Default::default() };
                let Some(session) = common::session_with(&program, &plain) else { return };
                assert!(!session.wide_loads(), "wide loads where the options say not");
                let want = session.run(&input).expect("runs");
                let session = common::session_with(&program, &SessionOptions { wide_loads: true, ..plain }).expect("a session");
                session.wait_for_chains();
                if session.adapter_info().name.contains("llvmpipe") {
                    assert!(session.wide_loads(), "lavapipe has SHADER_INT64, but the wide loads did not run");
                }
                let got = session.run(&input).expect("runs");
                let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert!(differ == 0, "{precision:?}, batch {batch}, chains {chains}: {differ} of {} outputs differ with wide loads", got.len());
            }
        }
    }
}

/// Checks every case and fails with the list of those that went wrong.
fn run_cases(cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    let mut worst: Option<(f32, &str)> = None;
    for case in &cases {
        match check(case) {
            Err(e) => failures.push(format!("--- {}: {e}", case.name)),
            Ok(Some(err)) if worst.is_none_or(|(w, _)| err > w) => worst = Some((err, &case.name)),
            Ok(_) => {}
        }
    }
    if let Some((err, name)) = worst {
        eprintln!("{} cases, largest GPU error {err:e} ({name})", cases.len());
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `n` items cycling through `items` in a seeded random order: every item appears (n / len times)
/// when n >= len, so a table drawn from it covers each option.
fn deck<T: Copy>(rng: &mut Rng, items: &[T], n: usize) -> Vec<T> {
    let mut out: Vec<T> = (0..n).map(|i| items[i % items.len()]).collect();
    for i in (1..n).rev() {
        out.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// Every kernel size x stride x grouping, with the padding, spatial size, channel count, batch and
/// bias drawn from seeded decks (so each option appears several times).
#[test]
fn conv_geometry() {
    const PADS: [&str; 6] = ["none", "symmetric", "asymmetric", "SAME_UPPER", "SAME_LOWER", "VALID"];
    const SPATIAL: [[usize; 2]; 4] = [[7, 9], [13, 13], [11, 8], [9, 7]];
    let combos: Vec<(usize, usize, Group)> = [1, 3, 5, 7]
        .into_iter()
        .flat_map(|k| [1, 2].into_iter().flat_map(move |s| [Group::Dense, Group::Depthwise, Group::Groups(2)].map(|g| (k, s, g))))
        .collect();
    let n = combos.len();
    let mut rng = Rng::new(0xC0_4E);
    let (pads, spatial) = (deck(&mut rng, &PADS, n), deck(&mut rng, &SPATIAL, n));
    let (batches, biases) = (deck(&mut rng, &[1, 3], n), deck(&mut rng, &[true, false], n));
    let odd_channels = deck(&mut rng, &[3, 5, 13], n);
    let cases = combos
        .iter()
        .enumerate()
        .map(|(i, &(k, stride, group))| {
            // Grouped convs need an even channel count: 6 and 10 are not multiples of 4 either.
            let (c_in, c_out) = match group {
                Group::Groups(_) => ([6, 10][(i / 3) % 2], [10, 6, 2][(i / 3) % 3]),
                _ => (odd_channels[i], odd_channels[(i + 1) % n]),
            };
            let pad = match pads[i] {
                "none" => Pad::None,
                "symmetric" => Pad::Explicit([k / 2; 4]),
                "asymmetric" => Pad::Explicit([k / 2, 0, k - 1, k.div_ceil(2)]),
                auto => Pad::Auto(auto),
            };
            let mut spec = ConvSpec::new(c_out, k).stride(stride).group(group).pad(pad);
            if !biases[i] {
                spec = spec.no_bias();
            }
            let mut net = Net::new(i as u64, &[c_in, spatial[i][0], spatial[i][1]]);
            net.conv(spec);
            let templates = net.conv_templates.clone();
            let name = format!("conv k{k} s{stride} {group:?} {:?} {c_in}->{c_out} in {:?} batch {}", pad, spatial[i], batches[i]);
            Case::new(name, &mut net, &templates).batch(batches[i])
        })
        .collect();
    run_cases(cases);
}

/// Convolutions the table above does not reach: a depthwise conv with a channel multiplier
/// (group = C, 2C outputs), more than two groups, a 1x1 conv that is not pointwise (padded),
/// non-square kernels and strides (which catch a swapped axis), and a batch split in submissions.
#[test]
fn conv_extras() {
    let cases = vec![
        Case::new("depthwise x2 multiplier", Net::new(1, &[5, 9, 7]).conv(ConvSpec::new(10, 3).group(Group::Groups(5)).same(1)), &["conv2d"]),
        Case::new("3 groups, stride 2", Net::new(2, &[9, 13, 13]).conv(ConvSpec::new(6, 3).group(Group::Groups(3)).stride(2)), &["conv2d"]),
        Case::new("padded 1x1", Net::new(3, &[3, 7, 9]).conv(ConvSpec::new(5, 1).same(1)), &["conv2d"]),
        Case::new("1x3 kernel", Net::new(4, &[5, 7, 9]).conv(ConvSpec::new(3, 1).kernel(1, 3).pad(Pad::Explicit([0, 1, 0, 1]))), &["conv2d"]),
        Case::new("strides 1x2", Net::new(6, &[5, 9, 11]).conv(ConvSpec::new(13, 3).strides(1, 2).same(1)), &["conv2d"]).batch(3),
        Case::new("strides 2x1", Net::new(7, &[3, 13, 13]).conv(ConvSpec::new(5, 5).strides(2, 1).pad(Pad::Auto("SAME_LOWER"))), &["conv2d"]),
        // Tiles of 32 and 16 output channels (8 and 4 vectors of weights a tap): every lane of a
        // subgroup variant's broadcast is used.
        Case::new("3x3 stride 2, 3 -> 64 (2 tiles of 32)", Net::new(17, &[3, 18, 22]).conv(ConvSpec::new(64, 3).stride(2).same(1)), &["conv2d"]).batch(2),
        Case::new("3x3, 5 -> 48 (3 tiles of 16, 3 workgroups a tile)", Net::new(18, &[5, 11, 21]).conv(ConvSpec::new(48, 3).same(1)), &["conv2d"]),
        Case::new("3x3, 2 groups, 6 -> 40 (tiles of 4: 20 channels a group)", Net::new(19, &[6, 9, 9]).conv(ConvSpec::new(40, 3).group(Group::Groups(2))), &["conv2d"]),
        Case::new(
            "depthwise 5x3, strides 2x1",
            Net::new(8, &[13, 11, 9]).conv(ConvSpec::new(0, 0).kernel(5, 3).strides(2, 1).group(Group::Depthwise).pad(Pad::Auto("SAME_UPPER"))),
            &["depthwise"],
        ),
        Case::new(
            "depthwise 3x5, strides 1x2",
            Net::new(9, &[5, 9, 11]).conv(ConvSpec::new(0, 0).kernel(3, 5).strides(1, 2).group(Group::Depthwise).pad(Pad::Explicit([0, 2, 1, 1]))),
            &["depthwise"],
        )
        .batch(3),
        Case::new("batch 3 in submissions of 2", Net::new(5, &[13, 13, 13]).conv(ConvSpec::new(5, 1)), &["pointwise"])
            .batch(3)
            .max_batch(2),
        Case::new(
            "depthwise 3x3 same, 3 vec4s a row, 5 rows (a partial band of 4)",
            Net::new(7, &[6, 5, 12]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise3x3_vec4"],
        )
        .batch(3),
        Case::new(
            "depthwise 3x3 stride 2, 16 -> 8 columns, 9 -> 5 rows",
            Net::new(10, &[5, 9, 16]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3_vec4"],
        )
        .batch(2),
        Case::new(
            "depthwise 3x3 stride 2, 24 -> 12 columns (3 vec4s: a half-empty chunk)",
            Net::new(11, &[3, 8, 24]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3_vec4"],
        ),
        Case::new(
            "depthwise 3x3 strides 2x1, pads top 0 bottom 2",
            Net::new(12, &[4, 11, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(2, 1).pad(Pad::Explicit([0, 1, 2, 1]))),
            &["depthwise3x3_vec4"],
        ),
        // The 3x3 kernels walk at most 9 input rows a band (vertical strides 1 and 2): stride 3
        // goes to the general depthwise kernel.
        Case::new(
            "depthwise 3x3 strides 3x1",
            Net::new(21, &[4, 13, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(3, 1).same(1)),
            &["depthwise_vec4"],
        ),
        Case::new(
            "depthwise 3x3 stride 2 on rows of 14 (MobileFaceNet's 14x14 -> 7x7)",
            Net::new(17, &[6, 14, 14]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3"],
        )
        .batch(2),
        Case::new(
            "depthwise 3x3 stride 2 on rows of 18 -> 9 (a chunk of 8 and one of 1)",
            Net::new(20, &[3, 9, 18]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 on rows of 10 (a chunk of 8 and one of 2), 9 rows",
            Net::new(18, &[5, 9, 10]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 strides 2x1 on rows of 7, pads top 0 bottom 2",
            Net::new(19, &[4, 11, 7]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(2, 1).pad(Pad::Explicit([0, 1, 2, 1]))),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 strides 1x2, no right padding",
            Net::new(13, &[4, 6, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(1, 2).pad(Pad::Explicit([1, 1, 1, 0]))),
            &["depthwise3x3_vec4"],
        ),
        Case::new(
            "vec4 depthwise 5x3, no padding, stride 2x1",
            Net::new(8, &[3, 11, 8]).conv(ConvSpec::new(0, 0).kernel(5, 1).strides(2, 1).group(Group::Depthwise)),
            &["depthwise_vec4"],
        ),
        Case::new(
            "vec4 depthwise 5x5, pads 2 (left 4, right 0)",
            Net::new(9, &[4, 6, 8]).conv(ConvSpec::new(0, 0).kernel(5, 5).group(Group::Depthwise).pad(Pad::Explicit([2, 4, 2, 0]))),
            &["depthwise_vec4"],
        ),
        Case::new("vec4 pointwise, batch 3 in submissions of 2", Net::new(6, &[13, 4, 5]).conv(ConvSpec::new(11, 1)), &["pointwise_vec4"])
            .batch(3)
            .max_batch(2),
        Case::new("pointwise 7x7, 6 -> 300 (2 workgroups of 64 across the channels)", Net::new(21, &[6, 7, 7]).conv(ConvSpec::new(300, 1)), &["pointwise"])
            .batch(2),
        Case::new("pointwise 3x3, 9 -> 2 (a workgroup of 8, one invocation live)", Net::new(22, &[9, 3, 3]).conv(ConvSpec::new(2, 1)), &["pointwise"]),
        Case::new("vec4 pointwise, 3 workgroups of 32 a tile (24 idle), 2 tiles", Net::new(14, &[6, 24, 12]).conv(ConvSpec::new(37, 1)), &["pointwise_vec4"]),
        Case::new("vec4 pointwise, 2 workgroups of 32 a tile, 3 tiles (the last of 6 channels)", Net::new(15, &[5, 8, 30]).conv(ConvSpec::new(70, 1)), &["pointwise_vec4"])
            .batch(2),
        Case::new("vec4 pointwise, 9 groups of 4 input channels (odd, the last partial)", Net::new(16, &[35, 4, 8]).conv(ConvSpec::new(32, 1)), &["pointwise_vec4"]),
        // Many groups of input channels (16 loop iterations of 8 channels and a partial last
        // group) into 4 tiles.
        Case::new("vec4 pointwise, 4 tiles, 33 groups of 4 input channels", Net::new(22, &[130, 4, 8]).conv(ConvSpec::new(128, 1)), &["pointwise_vec4"])
            .batch(2),
        // Rows of 576 pixels: the subgroup variant touches the next iteration's cache lines, up to
        // channel 23 of 13 (clamped), on 5 workgroups of 32 a tile (the last half idle).
        Case::new("vec4 pointwise on rows of 576 pixels, 13 -> 40", Net::new(23, &[13, 24, 24]).conv(ConvSpec::new(40, 1)), &["pointwise_vec4"])
            .batch(2),
        // 64 tiles by 257 groups of input channels: 16448 rows, more than a weight texture of
        // every adapter holds (8192), so the other pointwise kernel (1028 rows of 512 texels).
        Case::new("pointwise too large for a weight texture, 1028 -> 2048 on 2x2", Net::new(24, &[1028, 2, 2]).conv(ConvSpec::new(2048, 1)), &["pointwise"]),
        // 8200 input channels on one pixel: too many rows for either pointwise kernel's texture.
        Case::new("pointwise on 8200 input channels (too many for a weight texture)", Net::new(26, &[8200, 1, 1]).conv(ConvSpec::new(2, 1)), &["conv2d"]),
        // 8200 channels: more filters than a weight texture has rows, so no depthwise 3x3 kernel.
        Case::new(
            "depthwise 3x3 on 8200 channels (too many for a weight texture)",
            Net::new(25, &[8200, 2, 4]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise_vec4"],
        ),
    ];
    run_cases(cases);
}

/// Conv -> BatchNormalization -> activation, on each conv kernel: one dispatch, BN folded into the
/// weights and the activation in the epilogue.
#[test]
fn conv_bn_activation_epilogues() {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::PRelu,
        Activation::PReluScalar,
        Activation::Clip,
    ];
    type Layer = (&'static str, [usize; 3], ConvSpec, &'static str);
    let layers: [Layer; 7] = [
        ("pointwise 5->13", [5, 7, 9], ConvSpec::new(13, 1).no_bias(), "pointwise"),
        ("depthwise 3x3", [13, 9, 7], ConvSpec::new(0, 3).group(Group::Depthwise).same(1).no_bias(), "depthwise3x3"),
        ("pointwise vec4 6->21", [6, 4, 6], ConvSpec::new(21, 1), "pointwise_vec4"),
        ("depthwise 3x3 on vec4 rows", [13, 6, 8], ConvSpec::new(0, 3).group(Group::Depthwise).same(1).no_bias(), "depthwise3x3_vec4"),
        ("depthwise 3x3 s2 on vec4 rows", [7, 6, 16], ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1), "depthwise3x3_vec4"),
        ("dense 3x3 s2", [5, 13, 13], ConvSpec::new(3, 3).stride(2).pad(Pad::Auto("SAME_UPPER")), "conv2d"),
        ("gdconv 7x7", [13, 7, 7], ConvSpec::new(0, 7).group(Group::Depthwise).no_bias(), "gdconv"),
    ];
    let mut cases = Vec::new();
    for (li, (layer, shape, spec, template)) in layers.iter().enumerate() {
        for (ai, &act) in acts.iter().enumerate() {
            let mut net = Net::new((li * 10 + ai) as u64, shape);
            net.conv(*spec).bn().act(act);
            let case = Case::new(format!("{layer} + BN + {act:?}"), &mut net, &[template]).batch(1 + 2 * (ai % 2));
            cases.push(case.dump_lacks("BatchNorm[").dump_lacks("Act["));
        }
    }
    // Clip with its bounds as attributes (opset 9), and with only a lower bound (opset 11).
    let mut net = Net::with_opset(50, 9, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1)).bn().clip(Some(0.0), Some(0.5));
    cases.push(Case::new("pointwise + BN + Clip (opset 9 attributes)", &mut net, &["pointwise"]).dump_has("act=clip(0,0.5)"));
    let mut net = Net::with_opset(51, 9, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 3).same(1)).clip(Some(-0.25), None);
    cases.push(Case::new("conv + Clip min only (opset 9)", &mut net, &["conv2d"]).dump_has("act=clip"));
    let mut net = Net::new(52, &[13, 9, 7]);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).clip(None, Some(0.25));
    cases.push(Case::new("depthwise + Clip max only (opset 11 inputs)", &mut net, &["depthwise3x3"]).dump_has("act=clip"));
    run_cases(cases);
}

/// Inverted-residual bottlenecks (expand, depthwise, project + Add of the block input): three
/// dispatches each, the Add in the projection's residual epilogue, whichever Add operand it is.
#[test]
fn inverted_residual_blocks() {
    let mut cases = Vec::new();
    for (i, skip_first) in [false, true].into_iter().enumerate() {
        let mut net = Net::new(60 + i as u64, &[3, 13, 13]);
        net.conv(ConvSpec::new(5, 3).stride(2).same(1).no_bias()).bn().act(Activation::PRelu);
        net.bottleneck(2, skip_first).bottleneck(3, !skip_first);
        let templates = ["conv2d", "pointwise", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise"];
        let case = Case::new(format!("stem + 2 bottlenecks (shortcut first: {skip_first})"), &mut net, &templates);
        cases.push(case.batch(3).dump_has("+residual").dump_lacks("Add("));
    }
    // A block straight on the graph input: the residual binding is the input buffer.
    let mut net = Net::new(62, &[5, 7, 9]);
    net.bottleneck(2, false);
    cases.push(Case::new("bottleneck on the graph input", &mut net, &["pointwise", "depthwise3x3", "pointwise"]).dump_has("+residual"));
    run_cases(cases);
}

/// Maps whose pixels are not a multiple of 4 (MobileFaceNet's 7x7), stored with their planes
/// padded to one (`codegen::layout`) so that their pointwise convolutions take the vec4 kernel:
/// a stride-2 depthwise conv into the padded map, bottlenecks whose residual is padded, channel
/// counts that are not multiples of 4, the GDConv and GlobalAveragePool reading padded planes,
/// and a batch split in submissions (the padding of a reused buffer holds what an earlier value
/// left there, which no pixel may read). Where the map is a graph output, nothing before it on
/// that map can be padded: the scalar kernels as before.
#[test]
fn padded_planes() {
    let dw = |stride| ConvSpec::new(0, 3).group(Group::Depthwise).stride(stride).same(1).no_bias();
    let stage = |net: &mut Net| {
        net.conv(ConvSpec::new(13, 1)).act(Activation::PRelu).conv(dw(2)).bn().act(Activation::PRelu);
        net.conv(ConvSpec::new(12, 1).no_bias()).bn().bottleneck(2, false).bottleneck(3, true);
    };
    let padded = ["pointwise_vec4", "depthwise3x3", "pointwise_vec4", "pointwise_vec4", "depthwise3x3", "pointwise_vec4", "pointwise_vec4", "depthwise3x3", "pointwise_vec4"];
    let gd = ConvSpec::new(0, 0).kernel(7, 7).group(Group::Depthwise).no_bias();
    let mut cases = Vec::new();
    let mut net = Net::new(76, &[8, 14, 14]);
    stage(&mut net);
    net.conv(ConvSpec::new(20, 1)).act(Activation::PRelu).conv(gd).bn().flatten();
    let templates: Vec<_> = padded.iter().copied().chain(["pointwise_vec4", "gdconv"]).collect();
    cases.push(Case::new("7x7 stage and GDConv", &mut net, &templates).batch(3).max_batch(2));
    let mut net = Net::new(77, &[8, 10, 10]);
    stage(&mut net);
    net.global_average_pool().flatten();
    let templates: Vec<_> = padded.iter().copied().chain(["gdconv"]).collect();
    cases.push(Case::new("5x5 stage and GlobalAveragePool", &mut net, &templates).batch(2));
    let mut net = Net::new(78, &[8, 14, 14]);
    stage(&mut net);
    let unpadded = ["pointwise_vec4", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise"];
    cases.push(Case::new("7x7 stage as the graph output", &mut net, &unpadded).batch(2));
    run_cases(cases);
}

/// The subgroup GEMM pairs neighbouring lanes' pixel vec4s in its stores and residual loads,
/// within rows of a multiple of 8 pixels: a 14x14 map (196 pixels) is padded to 200 where every
/// kernel on it allows, and where it cannot be (the layer on the graph input) its GEMM has no
/// subgroup variant and runs the plain kernel. Checked against the CPU evaluator at an odd batch
/// (shared tiles running on across samples) in submissions of 2, with and without shared tiles
/// (on the grid, invocations take their pixels by subgroup and lane), with the same results.
#[test]
fn paired_stores_need_rows_of_8_pixels() {
    let mut net = Net::new(79, &[8, 14, 14]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1)).act(Activation::PRelu);
    net.bottleneck(2, false).global_average_pool().flatten();
    let onnx = net.finish();
    let program = mfn_compiler::compile(&onnx, &Default::default()).expect("compiles");
    let gemms: Vec<_> = program.kernels.iter().filter(|k| k.template == "pointwise_vec4").collect();
    let planes: Vec<_> = gemms.iter().map(|k| k.wgsl.lines().find(|l| l.starts_with("const HW: u32")).expect("HW")).collect();
    assert_eq!(planes, ["const HW: u32 = 196u;", "const HW: u32 = 200u;", "const HW: u32 = 200u;", "const HW: u32 = 200u;"]);
    let variants: Vec<bool> = gemms.iter().map(|k| k.subgroup_wgsl.is_some()).collect();
    assert_eq!(variants, [false, true, true, true], "a subgroup variant only on rows of a multiple of 8 pixels");
    let imported = mfn_compiler::onnx::import(&onnx, 1, None).expect("imports");
    let input = Rng::new(79).normal_vec(3 * 8 * 14 * 14, 1.0);
    let want = mfn_compiler::eval::run(&imported, &input).expect("evaluates");
    let mut results = Vec::new();
    for sharers in [None, Some(0)] {
        let options = SessionOptions { max_batch: 2, tile_sharers: sharers, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let got = session.run(&input).expect("runs");
        let err = rel_err(&got, &want);
        assert!(err <= TOLERANCE, "tile sharers {sharers:?} on {}: differs from the CPU evaluator by {err:e}", session.adapter());
        results.push(got);
    }
    assert!(results[0] == results[1], "shared tiles change the result");
}

/// The global depthwise convolution: kernel = the whole (square or not) feature map, on a channel
/// count that is not a multiple of 4, on more channels than a workgroup has invocations (one
/// invocation a channel: several workgroups, the last partly idle), with more taps than a
/// workgroup has invocations, and as in MobileFaceNet's head (GDConv, BN, 1x1 linear conv, BN,
/// Flatten).
#[test]
fn gdconv() {
    let gd = |kh, kw| ConvSpec::new(0, 0).kernel(kh, kw).group(Group::Depthwise).no_bias();
    let mut cases = vec![
        Case::new("7x7 on 5 channels", Net::new(70, &[5, 7, 7]).conv(gd(7, 7)), &["gdconv"]).batch(3),
        Case::new("7x6 on 13 channels + BN", Net::new(71, &[13, 7, 6]).conv(gd(7, 6)).bn(), &["gdconv"]),
        Case::new("7x7 on 133 channels + BN", Net::new(75, &[133, 7, 7]).conv(gd(7, 7)).bn(), &["gdconv"]).batch(2),
        Case::new("9x11 (99 taps > workgroup) + bias", Net::new(72, &[5, 9, 11]).conv(ConvSpec { bias: true, ..gd(9, 11) }.pad(Pad::Auto("VALID"))), &["gdconv"])
            .batch(3),
    ];
    let mut net = Net::new(73, &[13, 7, 7]);
    net.conv(gd(7, 7)).bn().conv(ConvSpec::new(7, 1).no_bias()).bn().flatten();
    cases.push(Case::new("MobileFaceNet head", &mut net, &["gdconv", "pointwise"]).batch(3).dump_has("GdConv[]"));
    // Padded, it is an ordinary depthwise conv.
    let mut net = Net::new(74, &[5, 7, 7]);
    net.conv(gd(7, 7).same(1));
    cases.push(Case::new("7x7 padded is not global", &mut net, &["depthwise"]));
    run_cases(cases);
}

/// GlobalAveragePool (lowered to the GDConv kernel with uniform weights), Gemm in all its forms and
/// MatMul, after Flatten or Reshape.
#[test]
fn pooling_and_linear() {
    let mut cases = vec![
        Case::new("GAP 13x7x9", Net::new(80, &[13, 7, 9]).global_average_pool(), &["gdconv"]).batch(3),
        Case::new("GAP 5x13x13", Net::new(81, &[5, 13, 13]).global_average_pool(), &["gdconv"]),
        Case::new("GAP 70x3x3", Net::new(82, &[70, 3, 3]).global_average_pool(), &["gdconv"]).batch(2),
    ];
    type GemmForm = (&'static str, bool, f32, f32, Option<&'static [usize]>);
    let forms: [GemmForm; 6] = [
        ("plain", false, 1.0, 1.0, None),
        ("transB", true, 1.0, 1.0, None),
        ("alpha 0.5, C [M]", false, 0.5, 1.0, Some(&[7])),
        ("transB, beta 2, C [1, M]", true, 1.0, 2.0, Some(&[1, 7])),
        ("alpha 2, beta 0.25, scalar C", true, 2.0, 0.25, Some(&[1])),
        ("transB, alpha -1, C [M]", true, -1.0, 1.0, Some(&[7])),
    ];
    for (i, (form, trans_b, alpha, beta, c)) in forms.into_iter().enumerate() {
        let mut net = Net::new(82 + i as u64, &[13, 7, 9]);
        if i % 2 == 0 {
            net.flatten();
        } else {
            net.global_average_pool().flatten();
        }
        net.gemm(7, trans_b, alpha, beta, c);
        let templates: &[&str] = if i % 2 == 0 { &["linear"] } else { &["gdconv", "linear"] };
        cases.push(Case::new(format!("Gemm {form}"), &mut net, templates).batch(1 + 2 * (i % 2)));
    }
    let mut net = Net::new(90, &[5, 7, 9]);
    net.reshape(&[0, -1]).matmul(13);
    cases.push(Case::new("Reshape [0,-1] + MatMul", &mut net, &["linear"]).batch(3));
    let mut net = Net::new(91, &[13, 1, 1]);
    net.flatten().matmul(5).act(Activation::Relu);
    cases.push(Case::new("Flatten + MatMul + Relu", &mut net, &["linear"]).dump_has("Linear[act=relu]"));
    let mut net = Net::new(92, &[13, 3, 3]);
    net.flatten().gemm(5, true, 1.0, 1.0, Some(&[5])).bn().act(Activation::PRelu);
    cases.push(Case::new("Gemm + BN + PRelu slope [C] on [N, C]", &mut net, &["linear"]).batch(3).dump_has("Linear[act=prelu]"));
    let mut net = Net::new(93, &[5, 3, 3]);
    net.flatten();
    let flat = net.cur.clone();
    net.gemm(45, true, 1.0, 1.0, Some(&[45])).binary("Add", &flat);
    cases.push(Case::new("Gemm + Add (residual of the flattened input)", &mut net, &["linear"]).dump_has("Linear[+residual]"));
    run_cases(cases);
}

/// The input normalisation `(x - 127.5) / 128` (as Sub then Mul, or per channel as Sub then Div):
/// folded into the weights of an unpadded conv, kept as a prologue of a zero-padded one (a raw
/// pixel 0 in the padding would otherwise become -127.5/128: wrong at every border pixel).
#[test]
fn input_normalisation() {
    let mut cases = Vec::new();
    let mut net = Net::new(100, &[3, 13, 13]);
    net.normalise().conv(ConvSpec::new(5, 3).same(1).no_bias()).bn().act(Activation::PRelu);
    cases.push(Case::new("into a zero-padded 3x3 conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    let mut net = Net::new(101, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(13, 3).stride(2).pad(Pad::Auto("SAME_UPPER")));
    cases.push(Case::new("into a SAME_UPPER stride-2 conv", &mut net, &["conv2d"]).batch(3).dump_has("prologue=affine"));
    let mut net = Net::new(102, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(5, 3));
    cases.push(Case::new("into an unpadded 3x3 conv (folded)", &mut net, &["conv2d"]).dump_lacks("prologue").dump_lacks("Affine"));
    let mut net = Net::new(103, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(5, 1)).act(Activation::Relu);
    cases.push(Case::new("into a 1x1 conv (folded)", &mut net, &["pointwise"]).batch(3).dump_lacks("prologue"));
    // Per-channel mean and std, into a padded depthwise conv: the prologue needs the conv2d kernel.
    let mut net = Net::new(104, &[3, 9, 7]);
    let mean = net.constant("mean", &[1, 3, 1, 1], vec![120.0, 110.0, 100.0]);
    let std = net.constant("std", &[3, 1, 1], vec![60.0, 64.0, 70.0]);
    net.binary("Sub", &mean).binary("Div", &std).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1));
    cases.push(Case::new("per channel into a padded depthwise conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    let mut net = Net::new(105, &[3, 9, 7]);
    net.normalise().conv(ConvSpec::new(0, 3).group(Group::Depthwise).pad(Pad::Auto("VALID")));
    cases.push(Case::new("into an unpadded depthwise conv (folded)", &mut net, &["depthwise"]).dump_lacks("prologue"));
    let mut cases: Vec<Case> = cases.into_iter().map(Case::pixels).collect();
    // A standalone BatchNormalization on the input is an affine map too.
    let mut net = Net::new(106, &[3, 9, 7]);
    net.bn().conv(ConvSpec::new(5, 3).pad(Pad::Explicit([1, 0, 2, 1])));
    cases.push(Case::new("BN of the input into an asymmetrically padded conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    run_cases(cases);
}

/// Element-wise operations that cannot fuse into a producer run as their own kernel.
#[test]
fn standalone_elementwise() {
    let mut cases = Vec::new();
    // PRelu of a conv output that is read twice: the conv cannot absorb it.
    let mut net = Net::new(110, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1));
    let y = net.cur.clone();
    net.act(Activation::PRelu).binary("Add", &y);
    cases.push(Case::new("PRelu of a conv output used twice", &mut net, &["pointwise", "elementwise", "elementwise"]));
    // Add (and Mul, Sub, Div) of two activations, neither produced by a conv.
    for (i, op) in ["Add", "Mul", "Sub", "Div"].into_iter().enumerate() {
        let mut net = Net::new(111 + i as u64, &[13, 7, 9]);
        net.unary("Sigmoid", &[], vec![]);
        let s = net.cur.clone();
        net.cur = "x".into();
        net.act(Activation::Relu).binary(op, &s);
        cases.push(Case::new(format!("{op} of Relu(x) and Sigmoid(x)"), &mut net, &["elementwise"; 3]).batch(3));
    }
    cases.push(Case::new("Relu of the graph input", Net::new(120, &[5, 7, 9]).act(Activation::Relu), &["elementwise"]).batch(3));
    cases.push(Case::new("Clip of the graph input", Net::new(121, &[5, 7, 9]).act(Activation::Clip), &["elementwise"]));
    cases.push(Case::new("PRelu of the graph input", Net::new(122, &[13, 3, 3]).act(Activation::PRelu), &["elementwise"]));
    cases.push(Case::new("Sigmoid of [N, C]", Net::new(123, &[13, 3, 3]).flatten().act(Activation::Sigmoid), &["elementwise"]));
    // Per-channel constants: one affine kernel, or folded into a conv that produces the operand.
    let constants: [(&str, &[usize]); 4] = [("Mul", &[5, 1, 1]), ("Div", &[1, 5, 1, 1]), ("Add", &[5, 1, 1]), ("Sub", &[1])];
    for (i, (op, dims)) in constants.into_iter().enumerate() {
        let mut net = Net::new(130 + i as u64, &[5, 7, 9]);
        let c = net.uniform("c", dims, 0.5, 2.0);
        net.binary(op, &c);
        cases.push(Case::new(format!("{op} by constant {dims:?}"), &mut net, &["elementwise"]).dump_has("Affine("));
        let mut net = Net::new(140 + i as u64, &[13, 7, 9]);
        net.conv(ConvSpec::new(5, 1));
        let c = net.uniform("c", dims, 0.5, 2.0);
        net.binary(op, &c);
        cases.push(Case::new(format!("conv then {op} by constant {dims:?} (folded)"), &mut net, &["pointwise"]).dump_lacks("Affine"));
    }
    let mut net = Net::new(150, &[5, 7, 9]);
    let c = net.uniform("c", &[5, 1, 1], 0.5, 2.0);
    net.binary("Mul", &c).act(Activation::Relu);
    cases.push(Case::new("Mul by constant then Relu", &mut net, &["elementwise", "elementwise"]));
    let mut net = Net::new(151, &[5, 7, 9]);
    net.bn();
    cases.push(Case::new("BatchNormalization of the graph input", &mut net, &["elementwise"]).batch(3));
    // The constant first: c - x is an affine map with scale -1.
    let mut net = Net::new(152, &[5, 7, 9]);
    let c = net.uniform("c", &[5, 1, 1], -1.0, 1.0);
    let x = net.cur.clone();
    net.node("Sub", &[&c, &x], vec![], vec![5, 7, 9]);
    cases.push(Case::new("constant minus x", &mut net, &["elementwise"]));
    // A conv output read by two activations, summed.
    let mut net = Net::new(153, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 3).same(1));
    let y = net.cur.clone();
    net.act(Activation::Sigmoid);
    let s = net.cur.clone();
    net.cur = y;
    net.act(Activation::Relu).binary("Add", &s);
    cases.push(Case::new("two activations of one conv, added", &mut net, &["conv2d", "elementwise", "elementwise", "elementwise"]));
    run_cases(cases);
}

/// Adds that meet convs in other ways than the bottleneck: two conv branches, an activation after
/// the Add (must stay outside the epilogue), and a shortcut computed after the conv.
#[test]
fn residual_variants() {
    let mut cases = Vec::new();
    let mut net = Net::new(160, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1));
    let a = net.cur.clone();
    net.cur = "x".into();
    net.shape = vec![5, 7, 9];
    net.conv(ConvSpec::new(13, 3).same(1)).binary("Add", &a);
    cases.push(Case::new("Add of two conv branches", &mut net, &["pointwise", "conv2d"]).dump_has("+residual"));
    let mut net = Net::new(161, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 3).same(1)).binary("Add", "x").act(Activation::Relu);
    cases.push(Case::new("Relu after the Add", &mut net, &["conv2d", "elementwise"]).batch(3).dump_has("+residual"));
    let mut net = Net::new(163, &[6, 7, 12]);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).act(Activation::PRelu).binary("Add", "x");
    cases.push(Case::new("depthwise 3x3 + PRelu + Add", &mut net, &["depthwise3x3_vec4"]).batch(2).dump_has("+residual"));
    // The shortcut is computed by a node that comes after the conv in the model.
    let mut net = Net::new(162, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 1));
    let y = net.cur.clone();
    net.cur = "x".into();
    net.act(Activation::Sigmoid).binary("Add", &y);
    cases.push(Case::new("shortcut computed after the conv", &mut net, &["elementwise", "pointwise"]).dump_has("+residual"));
    run_cases(cases);
}

impl Net {
    fn max_pool(&mut self, k: usize, s: usize, pads: Option<[i64; 4]>, ceil: bool) -> &mut Self {
        let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let p = pads.unwrap_or([0; 4]).map(|v| v as usize);
        let out = |size: usize, p0: usize, p1: usize| {
            let span = size + p0 + p1 - k;
            let mut o = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
            if ceil && (o - 1) * s >= size + p0 {
                o -= 1;
            }
            o
        };
        let mut attrs = vec![Attr::Ints("kernel_shape", vec![k as i64; 2]), Attr::Ints("strides", vec![s as i64; 2])];
        if let Some(p) = pads {
            attrs.push(Attr::Ints("pads", p.to_vec()));
        }
        if ceil {
            attrs.push(Attr::Int("ceil_mode", 1));
        }
        let x = self.cur.clone();
        let shape = vec![c, out(h, p[0], p[2]), out(w, p[1], p[3])];
        self.node("MaxPool", &[&x], attrs, shape)
    }

    /// Resize (opset >= 11) in nearest mode by `scales` on H and W.
    fn upsample(&mut self, fh: usize, fw: usize, transform: &str, rounding: &str) -> &mut Self {
        let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let roi = self.constant("roi", &[0], vec![]);
        let scales = self.constant("scales", &[4], vec![1.0, 1.0, fh as f32, fw as f32]);
        let attrs = vec![
            Attr::Str("mode", "nearest".into()),
            Attr::Str("coordinate_transformation_mode", transform.into()),
            Attr::Str("nearest_mode", rounding.into()),
        ];
        let x = self.cur.clone();
        self.node("Resize", &[&x, &roi, &scales], attrs, vec![c, h * fh, w * fw])
    }

    fn transpose(&mut self, perm: &[usize]) -> &mut Self {
        let shape = perm[1..].iter().map(|&a| self.shape[a - 1]).collect();
        let x = self.cur.clone();
        self.node("Transpose", &[&x], vec![Attr::Ints("perm", perm.iter().map(|&a| a as i64).collect())], shape)
    }

    /// Reshape to `[N, -1, k]` with the target computed as YuNet's dynamic export does:
    /// Shape -> Gather(0) -> Unsqueeze -> Concat with constants.
    fn dynamic_reshape(&mut self, k: i64) -> &mut Self {
        let x = self.cur.clone();
        let (shape, n, n1, target) = (self.fresh("shape"), self.fresh("n"), self.fresh("n1"), self.fresh("target"));
        let (zero, minus, last) = (self.fresh("zero"), self.fresh("minus"), self.fresh("last"));
        self.builder.initializer_i64(&zero, &[], vec![0]);
        self.builder.initializer_i64(&minus, &[1], vec![-1]);
        self.builder.initializer_i64(&last, &[1], vec![k]);
        self.builder.node("Shape", &[&x], &[&shape], vec![]);
        self.builder.node("Gather", &[&shape, &zero], &[&n], vec![Attr::Int("axis", 0)]);
        self.builder.node("Unsqueeze", &[&n], &[&n1], vec![Attr::Ints("axes", vec![0])]);
        self.builder.node("Concat", &[&n1, &minus, &last], &[&target], vec![Attr::Int("axis", 0)]);
        let total: usize = self.shape.iter().product();
        self.node("Reshape", &[&x, &target], vec![], vec![total / k as usize, k as usize])
    }
}

/// The data-movement ops of a detector (YuNet): max pooling, nearest upsampling, transposes and
/// the shape arithmetic of a dynamic export folded at import.
#[test]
fn detector_ops() {
    let mut cases = vec![
        Case::new("MaxPool 2x2 s2", Net::new(100, &[5, 8, 12]).max_pool(2, 2, None, false), &["maxpool"]).batch(3).max_batch(2),
        Case::new("MaxPool 3x3 s2 pads 1 ceil", Net::new(101, &[3, 9, 11]).max_pool(3, 2, Some([1, 1, 1, 1]), true), &["maxpool"]),
        Case::new("MaxPool 3x3 s1 asymmetric pads", Net::new(102, &[4, 7, 6]).max_pool(3, 1, Some([0, 1, 2, 1]), false), &["maxpool"]),
        Case::new("MaxPool 2x2 s2 odd size, ceil", Net::new(103, &[2, 7, 9]).max_pool(2, 2, None, true), &["maxpool"]).batch(2),
        Case::new("Resize x2 asymmetric floor", Net::with_opset(104, 11, &[4, 5, 6]).upsample(2, 2, "asymmetric", "floor"), &["upsample"]).batch(2),
        Case::new("Resize x3,x2 half_pixel", Net::with_opset(105, 13, &[3, 4, 5]).upsample(3, 2, "half_pixel", "round_prefer_floor"), &["upsample"]),
        Case::new("Transpose NCHW -> NHWC", Net::new(106, &[5, 3, 7]).transpose(&[0, 2, 3, 1]), &["transpose"]).batch(2),
        Case::new("Transpose [0,3,1,2]", Net::new(107, &[5, 3, 7]).transpose(&[0, 3, 1, 2]), &["transpose"]),
        Case::new("Transpose [0,2,1] of [N,A,B]", Net::new(108, &[6, 11]).transpose(&[0, 2, 1]), &["transpose"]).batch(2),
    ];
    let mut net = Net::with_opset(109, 11, &[8, 8, 8]);
    net.conv(ConvSpec::new(8, 3).same(1)).act(Activation::Relu);
    let skip = net.cur.clone();
    net.max_pool(2, 2, None, false).conv(ConvSpec::new(8, 1)).upsample(2, 2, "asymmetric", "floor").binary("Add", &skip);
    cases.push(Case::new("FPN: conv, pool, conv, upsample, add", &mut net, &["conv2d", "maxpool", "pointwise_vec4", "upsample", "elementwise"]).batch(2));
    let mut net = Net::with_opset(110, 11, &[4, 6, 5]);
    net.conv(ConvSpec::new(4, 1)).transpose(&[0, 2, 3, 1]).dynamic_reshape(4).act(Activation::Sigmoid);
    cases.push(
        Case::new("YuNet head: transpose, dynamic reshape, sigmoid", &mut net, &["pointwise", "transpose", "elementwise"])
            .batch(3)
            .dump_lacks("Shape")
            .dump_lacks("Concat"),
    );
    run_cases(cases);
}

impl Net {
    /// Concat of `inputs` (names of values of per-sample shapes `shapes`) along `axis` (batched).
    fn concat(&mut self, inputs: &[&str], shapes: &[Vec<usize>], axis: usize) -> &mut Self {
        let mut shape = shapes[0].clone();
        shape[axis - 1] = shapes.iter().map(|s| s[axis - 1]).sum();
        self.node("Concat", inputs, vec![Attr::Int("axis", axis as i64)], shape)
    }
}

/// Concatenation of activations: two branches joined on channels (an FPN or inception join), and
/// one value repeated six times along H (two chained kernels of at most four inputs).
#[test]
fn concat_activations() {
    let mut net = Net::new(120, &[4, 6, 10]);
    net.conv(ConvSpec::new(5, 1)).act(Activation::Relu);
    let (a, sa) = (net.cur.clone(), net.shape.clone());
    net.cur = "x".into();
    net.shape = vec![4, 6, 10];
    net.conv(ConvSpec::new(3, 3).same(1));
    let (b, sb) = (net.cur.clone(), net.shape.clone());
    net.concat(&[&a, &b], &[sa, sb], 1);
    let mut cases = vec![Case::new("two branches on channels", &mut net, &["pointwise_vec4", "conv2d", "concat"]).batch(3).max_batch(2)];
    let mut net = Net::new(121, &[2, 3, 5]);
    let six = vec!["x"; 6];
    net.concat(&six, &vec![vec![2, 3, 5]; 6], 2);
    cases.push(Case::new("six copies along H", &mut net, &["concat", "concat"]).batch(2));
    let mut net = Net::new(122, &[3, 7]);
    net.concat(&["x", "x", "x"], &vec![vec![3, 7]; 3], 2);
    cases.push(Case::new("rank 3, last axis", &mut net, &["concat"]));
    run_cases(cases);
}

