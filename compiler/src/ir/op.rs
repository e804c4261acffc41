//! The closed set of operations the IR knows. Fusion is data: a fused activation or residual is an
//! [`Epilogue`] on the producing operation, a fused input normalisation an [`Affine`] prologue.

/// An activation, applied element-wise. PReLU carries one slope per channel (axis 1).
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    Relu,
    PRelu(Vec<f32>),
    Clip { min: f32, max: f32 },
    Sigmoid,
}

impl Act {
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
    pub act: Option<Act>,
    pub residual: bool,
}

/// A per-channel affine map `y = x * scale[c] + shift[c]` over axis 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub scale: Vec<f32>,
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
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
    pub group: usize,
    /// Applied to every in-bounds input tap, never to the zero padding (so that a normalisation kept
    /// as a prologue stays exact at the borders).
    pub prologue: Option<Affine>,
    pub epilogue: Epilogue,
}

impl Conv {
    pub fn is_depthwise(&self, c_in: usize, c_out: usize) -> bool {
        self.group == c_in && c_in == c_out && self.group > 1
    }

    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4] && self.group == 1
    }
}

/// Max pooling over a 2-D window; padded taps never win (they count as -inf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(Conv),
    /// Global depthwise convolution: a depthwise conv whose kernel covers its whole input, no padding.
    /// Inputs `x [N, C, H, W]`, `w [C, 1, H, W]`, `b [C]` (+ residual) -> `[N, C, 1, 1]`.
    GdConv(Epilogue),
    /// Fully connected: inputs `x [N, K]`, `w [M, K]`, `b [M]` (+ residual) -> `[N, M]`.
    Linear(Epilogue),
    /// Inference batch normalisation over axis 1. Inputs: x, scale, bias, mean, var (constants).
    BatchNorm { epsilon: f32 },
    Affine(Affine),
    Act(Act),
    /// Element-wise with numpy broadcasting.
    Binary(BinOp),
    GlobalAveragePool,
    MaxPool(MaxPool),
    /// Nearest-neighbour upsampling of `[N, C, H, W]` by whole factors: `y[c, i, j] = x[c, i / fh, j / fw]`.
    Upsample { factor: [usize; 2] },
    /// Permutes the axes: output axis `i` is input axis `perm[i]`; `perm[0]` is 0 (the batch stays).
    Transpose(Vec<usize>),
    /// Same data, the output value's shape.
    Reshape,
}

impl Op {
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

    pub fn epilogue_mut(&mut self) -> Option<&mut Epilogue> {
        match self {
            Op::Conv(c) => Some(&mut c.epilogue),
            Op::GdConv(e) | Op::Linear(e) => Some(e),
            _ => None,
        }
    }
}
