//! The closed set of operations the IR knows. Fusion is data: a fused activation or residual is an
//! [`Epilogue`] on the producing operation, a fused input normalisation an [`Affine`] prologue.

/// An activation, applied element-wise. PReLU carries one slope per channel (axis 1).
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    /// `max(x, 0)`.
    Relu,
    /// `x` where `x >= 0`, else `x * slope[c]`: one slope per channel `c`.
    PRelu(Vec<f32>),
    /// `x` clamped to `[min, max]` (ONNX Clip; ReLU6 is `[0, 6]`).
    Clip {
        /// Lower bound (the lowest f32, or -inf, where the model gives none).
        min: f32,
        /// Upper bound (the largest f32, or +inf, where the model gives none).
        max: f32,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Act {
    /// The activation of `v`, an element of channel `channel` (which only PReLU reads).
    pub fn apply(&self, v: f32, channel: usize) -> f32 {
        match self {
            Act::Relu => v.max(0.0),
            Act::PRelu(slope) => {
                if v >= 0.0 {
                    v
                } else {
                    v * slope[channel]
                }
            }
            Act::Clip { min, max } => v.max(*min).min(*max),
            Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }

    /// The kind's lower-case name in graph dumps: `relu`, `prelu`, `clip` or `sigmoid`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Act::Relu => "relu",
            Act::PRelu(_) => "prelu",
            Act::Clip { .. } => "clip",
            Act::Sigmoid => "sigmoid",
        }
    }
}

/// What a producing kernel does to each output after the accumulation and bias:
/// `y = act(acc + bias)`, then `y += residual` when `residual` is set (the residual is the
/// producing node's last input, same shape as its output).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    /// The activation applied to `acc + bias`, if any.
    pub act: Option<Act>,
    /// Whether the node's last input is added after the activation.
    pub residual: bool,
}

/// A per-channel affine map `y = x * scale[c] + shift[c]` over axis 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    /// The factor of each channel.
    pub scale: Vec<f32>,
    /// The offset of each channel, added after the scale.
    pub shift: Vec<f32>,
}

impl Affine {
    /// `self` then `next`.
    pub fn then(&self, next: &Affine) -> Affine {
        let scale = self.scale.iter().zip(&next.scale).map(|(a, b)| a * b).collect();
        let shift = self.shift.iter().zip(&next.scale).zip(&next.shift).map(|((s, m), t)| s * m + t).collect();
        Affine { scale, shift }
    }
}

/// A 2-D convolution. Inputs: `x [N, C_in, H, W]`, `w [C_out, C_in / group, kH, kW]`, `b [C_out]`,
/// then the residual if the epilogue has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Kernel height and width (`kH`, `kW`, as in the weights).
    pub kernel: [usize; 2],
    /// Strides along height and width.
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
    /// Groups: the input and output channels are split into `group` equal parts, each part of
    /// the output reading only its part of the input (1: dense; `C_in` = `C_out`: depthwise).
    pub group: usize,
    /// Applied to every in-bounds input tap, never to the zero padding (so that a normalisation kept
    /// as a prologue stays exact at the borders).
    pub prologue: Option<Affine>,
    /// Activation and residual applied after the bias.
    pub epilogue: Epilogue,
}

impl Conv {
    /// Whether it is depthwise for `c_in` input and `c_out` output channels: one filter per
    /// channel (`group == c_in == c_out`, more than one).
    pub fn is_depthwise(&self, c_in: usize, c_out: usize) -> bool {
        self.group == c_in && c_in == c_out && self.group > 1
    }

    /// Whether it is a 1x1 convolution of stride 1, no padding and one group: a GEMM over pixels.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4] && self.group == 1
    }
}

/// Max pooling over a 2-D window; padded taps never win (they count as -inf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Strides along height and width.
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
}

/// A binary arithmetic operation, applied element-wise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
}

impl BinOp {
    /// The operation on `a` and `b`.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

/// An operation of the IR. Its inputs ([`Node::inputs`](super::Node::inputs)) are the one
/// activation `x` unless the variant says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A 2-D convolution; see [`Conv`] for its inputs.
    Conv(Conv),
    /// Global depthwise convolution: a depthwise conv whose kernel covers its whole input, no padding.
    /// Inputs `x [N, C, H, W]`, `w [C, 1, H, W]`, `b [C]` (+ residual) -> `[N, C, 1, 1]`.
    GdConv(Epilogue),
    /// Fully connected: inputs `x [N, K]`, `w [M, K]`, `b [M]` (+ residual) -> `[N, M]`.
    Linear(Epilogue),
    /// Inference batch normalisation over axis 1. Inputs: x, scale, bias, mean, var (constants).
    BatchNorm {
        /// Added to the variance before its square root.
        epsilon: f32,
    },
    /// A per-channel affine map of `x` (its parameters are in the op, not inputs).
    Affine(Affine),
    /// An activation of `x` as a node of its own (not fused into a producer's epilogue).
    Act(Act),
    /// Element-wise with numpy broadcasting.
    /// Inputs `a, b` in the ONNX order; at most one is a constant, which never broadcasts the
    /// activation to a larger shape.
    Binary(BinOp),
    /// The mean of each channel's plane: `[N, C, H, W]` -> `[N, C, 1, 1]`.
    GlobalAveragePool,
    /// Max pooling of `[N, C, H, W]`; see [`MaxPool`].
    MaxPool(MaxPool),
    /// Nearest-neighbour upsampling of `[N, C, H, W]` by whole factors: `y[c, i, j] = x[c, i / fh, j / fw]`.
    Upsample {
        /// The factors `[fh, fw]` along height and width.
        factor: [usize; 2],
    },
    /// Permutes the axes: output axis `i` is input axis `perm[i]`; `perm[0]` is 0 (the batch stays).
    Transpose(Vec<usize>),
    /// Joins the inputs along `axis` (not the batch); every other axis agrees.
    /// Inputs: up to four activations, in the order joined (the importer chains longer lists).
    Concat {
        /// The axis joined along, counted with the batch as axis 0 (so at least 1).
        axis: usize,
    },
    /// Same data, the output value's shape.
    Reshape,
}

impl Op {
    /// The operation's name in dumps and error messages (a binary one by its ONNX op: `Add`,
    /// `Sub`, `Mul`, `Div`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::GdConv(_) => "GdConv",
            Op::Linear(_) => "Linear",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Affine(_) => "Affine",
            Op::Act(_) => "Act",
            Op::Binary(BinOp::Add) => "Add",
            Op::Binary(BinOp::Sub) => "Sub",
            Op::Binary(BinOp::Mul) => "Mul",
            Op::Binary(BinOp::Div) => "Div",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::MaxPool(_) => "MaxPool",
            Op::Upsample { .. } => "Upsample",
            Op::Transpose(_) => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Reshape => "Reshape",
        }
    }

    /// The epilogue of an operation that can carry one.
    pub fn epilogue(&self) -> Option<&Epilogue> {
        match self {
            Op::Conv(c) => Some(&c.epilogue),
            Op::GdConv(e) | Op::Linear(e) => Some(e),
            _ => None,
        }
    }

    /// The epilogue of an operation that can carry one, mutable.
    pub fn epilogue_mut(&mut self) -> Option<&mut Epilogue> {
        match self {
            Op::Conv(c) => Some(&mut c.epilogue),
            Op::GdConv(e) | Op::Linear(e) => Some(e),
            _ => None,
        }
    }
}
