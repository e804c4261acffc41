//! The model builder: [`Net`], a chain of nodes with seeded random weights, and the options of its
//! convolutions ([`ConvSpec`]).

use super::*;

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pad {
    /// No `pads` attribute (zero padding).
    None,
    /// `pads` = top, left, bottom, right.
    Explicit([usize; 4]),
    /// `auto_pad` = SAME_UPPER, SAME_LOWER or VALID.
    Auto(&'static str),
}

/// Grouping of a convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Group {
    Dense,
    /// `group` = channels, one filter per channel (output channels = input channels).
    Depthwise,
    /// `group` = n.
    Groups(usize),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub(crate) c_out: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) group: Group,
    pub(crate) pad: Pad,
    pub(crate) bias: bool,
}

impl ConvSpec {
    pub(crate) fn new(c_out: usize, k: usize) -> Self {
        ConvSpec { c_out, kernel: [k, k], stride: [1, 1], group: Group::Dense, pad: Pad::None, bias: true }
    }
    pub(crate) fn kernel(self, kh: usize, kw: usize) -> Self {
        ConvSpec { kernel: [kh, kw], ..self }
    }
    pub(crate) fn stride(self, stride: usize) -> Self {
        self.strides(stride, stride)
    }
    pub(crate) fn strides(self, sh: usize, sw: usize) -> Self {
        ConvSpec { stride: [sh, sw], ..self }
    }
    pub(crate) fn group(self, group: Group) -> Self {
        ConvSpec { group, ..self }
    }
    pub(crate) fn pad(self, pad: Pad) -> Self {
        ConvSpec { pad, ..self }
    }
    /// Symmetric explicit padding `p` on every side.
    pub(crate) fn same(self, p: usize) -> Self {
        self.pad(Pad::Explicit([p; 4]))
    }
    pub(crate) fn no_bias(self) -> Self {
        ConvSpec { bias: false, ..self }
    }
}

/// The padding ONNX gives a conv of kernel `k` and stride `s` over `size` (one axis): before, after.
pub(crate) fn resolve_pad(pad: Pad, axis: usize, size: usize, k: usize, s: usize) -> (usize, usize) {
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
pub(crate) fn conv_template(c_in: usize, hw: [usize; 2], out_w: usize, spec: &ConvSpec, pads: [usize; 4]) -> &'static str {
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
pub(crate) struct Net {
    pub(crate) builder: GraphBuilder,
    rng: Rng,
    opset: i64,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) shape: Vec<usize>,
    pub(crate) cur: String,
    count: usize,
    /// The template each conv added is expected to compile to (for the geometry table).
    pub(crate) conv_templates: Vec<&'static str>,
}

impl Net {
    pub(crate) fn new(seed: u64, input_shape: &[usize]) -> Net {
        Net::with_opset(seed, 13, input_shape)
    }

    pub(crate) fn with_opset(seed: u64, opset: i64, input_shape: &[usize]) -> Net {
        let mut builder = GraphBuilder::new(opset);
        let mut dims = vec![Dim::param("N")];
        dims.extend(input_shape.iter().map(|&d| Dim::Fixed(d as i64)));
        builder.input("x", &dims);
        Net { builder, rng: Rng::new(seed), opset, input_shape: input_shape.to_vec(), shape: input_shape.to_vec(), cur: "x".into(), count: 0, conv_templates: Vec::new() }
    }

    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}{}", self.count)
    }

    pub(crate) fn constant(&mut self, prefix: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(prefix);
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.builder.initializer(&name, &dims, data);
        name
    }

    pub(crate) fn normal(&mut self, prefix: &str, dims: &[usize], std: f32) -> String {
        let data = self.rng.normal_vec(dims.iter().product(), std);
        self.constant(prefix, dims, data)
    }

    pub(crate) fn uniform(&mut self, prefix: &str, dims: &[usize], lo: f32, hi: f32) -> String {
        let data = self.rng.uniform_vec(dims.iter().product(), lo, hi);
        self.constant(prefix, dims, data)
    }

    /// Adds a node reading `inputs`; its output becomes `cur`, of per-sample shape `shape`.
    pub(crate) fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, shape: Vec<usize>) -> &mut Self {
        let out = self.fresh(&op.to_lowercase());
        self.builder.node(op, inputs, &[&out], attrs);
        self.cur = out;
        self.shape = shape;
        self
    }

    /// A node reading `cur` (plus `extra` inputs) that keeps the shape.
    pub(crate) fn unary(&mut self, op: &str, extra: &[&str], attrs: Vec<Attr>) -> &mut Self {
        let x = self.cur.clone();
        let mut inputs = vec![x.as_str()];
        inputs.extend_from_slice(extra);
        let shape = self.shape.clone();
        self.node(op, &inputs, attrs, shape)
    }

    pub(crate) fn conv(&mut self, spec: ConvSpec) -> &mut Self {
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
    pub(crate) fn bn(&mut self) -> &mut Self {
        let c = self.shape[0];
        let gamma = self.uniform("gamma", &[c], 0.5, 1.5);
        let beta = self.normal("beta", &[c], 0.3);
        let mean = self.normal("mean", &[c], 0.3);
        let var = self.uniform("var", &[c], 0.5, 2.0);
        self.unary("BatchNormalization", &[&gamma, &beta, &mean, &var], vec![Attr::Float("epsilon", 1e-3)])
    }

    /// PRelu with random slopes (some negative) of shape `dims`.
    pub(crate) fn prelu(&mut self, dims: &[usize]) -> &mut Self {
        let slope = self.uniform("slope", dims, -0.5, 0.5);
        self.unary("PRelu", &[&slope], vec![])
    }

    /// Clip in the form of the net's opset: attributes before 11, constant inputs from 11 on.
    pub(crate) fn clip(&mut self, min: Option<f32>, max: Option<f32>) -> &mut Self {
        if self.opset < 11 {
            let attrs = [min.map(|v| Attr::Float("min", v)), max.map(|v| Attr::Float("max", v))];
            return self.unary("Clip", &[], attrs.into_iter().flatten().collect());
        }
        let min = min.map_or(String::new(), |v| self.constant("min", &[], vec![v]));
        let max = max.map_or(String::new(), |v| self.constant("max", &[], vec![v]));
        self.unary("Clip", &[&min, &max], vec![])
    }

    pub(crate) fn act(&mut self, act: Activation) -> &mut Self {
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
    pub(crate) fn binary(&mut self, op: &str, other: &str) -> &mut Self {
        self.unary(op, &[other], vec![])
    }

    pub(crate) fn flatten(&mut self) -> &mut Self {
        let n = self.shape.iter().product();
        let x = self.cur.clone();
        self.node("Flatten", &[&x], vec![Attr::Int("axis", 1)], vec![n])
    }

    pub(crate) fn reshape(&mut self, target: &[i64]) -> &mut Self {
        let n = self.shape.iter().product();
        let shape = self.fresh("shape");
        self.builder.initializer_i64(&shape, &[target.len() as i64], target.to_vec());
        let x = self.cur.clone();
        self.node("Reshape", &[&x, &shape], vec![], vec![n])
    }

    pub(crate) fn global_average_pool(&mut self) -> &mut Self {
        let c = self.shape[0];
        let x = self.cur.clone();
        self.node("GlobalAveragePool", &[&x], vec![], vec![c, 1, 1])
    }

    /// Gemm of the `[N, K]` activation by a random B (`[K, M]`, or `[M, K]` with transB).
    pub(crate) fn gemm(&mut self, m: usize, trans_b: bool, alpha: f32, beta: f32, c: Option<&[usize]>) -> &mut Self {
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

    pub(crate) fn matmul(&mut self, m: usize) -> &mut Self {
        let k = self.shape[0];
        let b = self.normal("B", &[k, m], 1.0 / (k as f32).sqrt());
        let x = self.cur.clone();
        self.node("MatMul", &[&x, &b], vec![], vec![m])
    }

    /// The input normalisation of face models, `(x - 127.5) * (1 / 128)`.
    pub(crate) fn normalise(&mut self) -> &mut Self {
        let mean = self.constant("mean", &[], vec![127.5]);
        let scale = self.constant("scale", &[], vec![1.0 / 128.0]);
        self.binary("Sub", &mean).binary("Mul", &scale)
    }

    /// An inverted-residual bottleneck: 1x1 expand (BN, PRelu), 3x3 depthwise (BN, PRelu),
    /// 1x1 project (BN), plus the block input (`skip_first` puts the shortcut first in the Add).
    pub(crate) fn bottleneck(&mut self, expansion: usize, skip_first: bool) -> &mut Self {
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
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut dims = vec![Dim::param("N")];
        dims.extend(self.shape.iter().map(|&d| Dim::Fixed(d as i64)));
        let out = self.cur.clone();
        self.builder.output(&out, &dims);
        self.builder.to_bytes()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Activation {
    None,
    Relu,
    Sigmoid,
    /// Slope per channel: `[C, 1, 1]` on feature maps, `[C]` on `[N, C]`.
    PRelu,
    /// One slope for all channels.
    PReluScalar,
    Clip,
}
