//! Synthetic MobileFaceNet models (Chen et al. 2018), seeded, in the form PyTorch's ONNX exporter
//! writes them: every Conv has no bias and is followed by BatchNormalization (and PRelu unless the
//! layer is linear). BatchNorm is deliberately *not* folded, so the compiler's folding pass is
//! exercised exactly as on a real export.
//!
//! Weights are random but the BatchNorm running statistics are calibrated on a random batch while
//! the network is generated, so every activation stays O(1) like in a trained network: a parity
//! test on these models then means something (no overflow, no all-zero PRelu outputs).

mod emit;

use crate::calib::{conv2d, Act, ConvGeom};
use crate::rng::Rng;
use onnx_protobuf::ModelProto;

/// ONNX opset the models import.
pub const OPSET: i64 = 13;
/// BatchNormalization epsilon (PyTorch's default).
pub const BN_EPSILON: f32 = 1e-5;
/// Samples in the random batch that calibrates the BatchNorm statistics. The GDConv and linear
/// layers output 1x1 maps, so their per-channel statistics come from this many values only: with 4,
/// some channels' variance was badly underestimated and embeddings of fresh inputs reached std ~4.
const CALIB_BATCH: usize = 16;

const WEIGHT_STREAM: u64 = 1;
const CALIB_STREAM: u64 = 2;
const INPUT_STREAM: u64 = 3;

/// Bottleneck stages of the paper's architecture table: (expansion t, channels c, repeats n, stride s).
const STAGES: [(usize, usize, usize, usize); 5] = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)];

/// The MobileFaceNet variants the paper compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The main network: 112x112 input, 128-d embedding.
    Mfn112x112,
    /// Same weights' shapes, 112 high x 96 wide input (GDConv kernel 7x6).
    Mfn112x96,
    /// 96x96 input (GDConv kernel 6x6).
    Mfn96x96,
    /// MobileFaceNet-M: no linear 1x1 after the GDConv, 512-d embedding.
    M,
    /// MobileFaceNet-S: also no 1x1 128->512 before the GDConv, 128-d embedding.
    S,
}

impl Variant {
    /// Every variant, in a fixed order.
    pub fn all() -> [Variant; 5] {
        [Variant::Mfn112x112, Variant::Mfn112x96, Variant::Mfn96x96, Variant::M, Variant::S]
    }

    /// File-name stem, e.g. "mobilefacenet-112x96".
    pub fn name(self) -> &'static str {
        match self {
            Variant::Mfn112x112 => "mobilefacenet-112x112",
            Variant::Mfn112x96 => "mobilefacenet-112x96",
            Variant::Mfn96x96 => "mobilefacenet-96x96",
            Variant::M => "mobilefacenet-m",
            Variant::S => "mobilefacenet-s",
        }
    }

    /// Input (height, width).
    pub fn input_hw(self) -> (usize, usize) {
        match self {
            Variant::Mfn112x96 => (112, 96),
            Variant::Mfn96x96 => (96, 96),
            _ => (112, 112),
        }
    }

    /// Length of the output embedding.
    pub fn embedding_dim(self) -> usize {
        match self {
            Variant::M => 512,
            _ => 128,
        }
    }

    /// Whether the 1x1 128->512 conv before the GDConv exists.
    fn has_conv_sep(self) -> bool {
        self != Variant::S
    }

    /// Whether the linear 1x1 512->128 conv after the GDConv exists.
    fn has_linear(self) -> bool {
        !matches!(self, Variant::M | Variant::S)
    }
}

/// Builds `variant` with weights drawn from `seed`. Input "input" is float `[N,3,H,W]` (already
/// normalised), output "embedding" is float [N, embedding_dim]; opset 13, IR version 8.
pub fn mobilefacenet(variant: Variant, seed: u64) -> ModelProto {
    emit::to_model(variant, &generate(variant, seed).steps)
}

/// A deterministic, roughly N(0,1) input batch, NCHW [batch, 3, H, W], for reference runs.
pub fn sample_input(variant: Variant, batch: usize, seed: u64) -> Vec<f32> {
    let (h, w) = variant.input_hw();
    Rng::with_stream(seed, INPUT_STREAM).normal_vec(batch * 3 * h * w, 1.0)
}

/// One Conv -> BatchNormalization [-> PRelu] unit with its parameters.
#[derive(Clone, Debug)]
struct ConvLayer {
    /// Module path as PyTorch would name it, e.g. "block3_2.expand".
    name: String,
    geom: ConvGeom,
    /// OIHW.
    weight: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    /// PRelu slope per channel; `None` for a linear layer.
    slope: Option<Vec<f32>>,
}

impl ConvLayer {
    /// Conv + BN, without the activation.
    fn conv_bn(&self, x: &Act) -> Act {
        let mut y = conv2d(x, &self.geom, &self.weight);
        y.batch_norm(&self.gamma, &self.beta, &self.mean, &self.var, BN_EPSILON);
        y
    }

    fn apply_activation(&self, y: &mut Act) {
        if let Some(slope) = &self.slope {
            y.prelu(slope);
        }
    }
}

/// The network as a flat list: residual blocks are bracketed by `Save` and `AddSaved`.
#[derive(Clone, Debug)]
enum Step {
    Conv(ConvLayer),
    /// Remember the current activation as the block's shortcut.
    Save,
    /// Add the saved shortcut; `block` names the node ("block3_2").
    AddSaved {
        block: String,
    },
}

/// A generated network and what calibration saw.
struct Generated {
    steps: Vec<Step>,
    /// (layer name, std of its BatchNorm output over the calibration batch).
    #[cfg_attr(not(test), allow(dead_code))]
    bn_stds: Vec<(String, f32)>,
}

/// Draws weights layer by layer, running the calibration batch through each finished layer so the
/// next BatchNorm's running statistics are those of its real input distribution.
struct Generator {
    rng: Rng,
    x: Act,
    saved: Option<Act>,
    out: Generated,
}

/// Builds the steps of `variant` from `seed`.
fn generate(variant: Variant, seed: u64) -> Generated {
    let (h, w) = variant.input_hw();
    let calib = Rng::with_stream(seed, CALIB_STREAM).normal_vec(CALIB_BATCH * 3 * h * w, 1.0);
    let mut g =
        Generator { rng: Rng::with_stream(seed, WEIGHT_STREAM), x: Act::new(CALIB_BATCH, 3, h, w, calib), saved: None, out: Generated { steps: Vec::new(), bn_stds: Vec::new() } };
    g.conv("conv1", 64, (3, 3), 2, 1, 1, true);
    g.conv("conv2_dw", 64, (3, 3), 1, 1, 64, true);
    for (stage, &(t, c, n, s)) in STAGES.iter().enumerate() {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            g.bottleneck(&format!("block{}_{}", stage + 1, i + 1), t, c, stride);
        }
    }
    if variant.has_conv_sep() {
        g.conv("conv_sep", 512, (1, 1), 1, 0, 1, true);
    }
    let (c, kh, kw) = (g.x.c, g.x.h, g.x.w);
    g.conv("gdconv", c, (kh, kw), 1, 0, c, false);
    if variant.has_linear() {
        g.conv("linear", 128, (1, 1), 1, 0, 1, false);
    }
    g.out
}

impl Generator {
    /// Appends a Conv -> BN [-> PRelu] layer and pushes the calibration batch through it.
    #[allow(clippy::too_many_arguments)]
    fn conv(&mut self, name: &str, cout: usize, (kh, kw): (usize, usize), stride: usize, pad: usize, group: usize, prelu: bool) {
        let geom = ConvGeom { cin: self.x.c, cout, kh, kw, stride, pad, group };
        let fan_in = (geom.cin / group * kh * kw) as f32;
        let weight = self.rng.normal_vec(geom.weight_len(), (2.0 / fan_in).sqrt());
        let gamma = self.rng.uniform_vec(cout, 0.8, 1.2);
        let beta = self.rng.uniform_vec(cout, -0.1, 0.1);
        let slope = prelu.then(|| self.rng.uniform_vec(cout, 0.2, 0.3));
        let raw = conv2d(&self.x, &geom, &weight);
        let (mean, var) = raw.channel_stats();
        let layer = ConvLayer { name: name.to_string(), geom, weight, gamma, beta, mean, var, slope };
        let mut y = layer.conv_bn(&self.x);
        self.out.bn_stds.push((layer.name.clone(), y.std()));
        layer.apply_activation(&mut y);
        self.x = y;
        self.out.steps.push(Step::Conv(layer));
    }

    /// An inverted residual: 1x1 expand (PRelu) -> 3x3 depthwise (PRelu) -> linear 1x1 projection,
    /// plus the shortcut when the block keeps its shape.
    fn bottleneck(&mut self, name: &str, t: usize, c: usize, stride: usize) {
        let cin = self.x.c;
        let residual = stride == 1 && cin == c;
        if residual {
            self.saved = Some(self.x.clone());
            self.out.steps.push(Step::Save);
        }
        self.conv(&format!("{name}.expand"), t * cin, (1, 1), 1, 0, 1, true);
        self.conv(&format!("{name}.dw"), t * cin, (3, 3), stride, 1, t * cin, true);
        self.conv(&format!("{name}.project"), c, (1, 1), 1, 0, 1, false);
        if residual {
            self.x.add(self.saved.as_ref().expect("saved above"));
            self.out.steps.push(Step::AddSaved { block: name.to_string() });
        }
    }
}

/// Runs `steps` on `x` in f32 on the CPU; returns the output and every BatchNorm output's std.
#[cfg(test)]
fn forward(steps: &[Step], mut x: Act) -> (Act, Vec<f32>) {
    let (mut saved, mut stds) = (None, Vec::new());
    for step in steps {
        match step {
            Step::Conv(layer) => {
                x = layer.conv_bn(&x);
                stds.push(x.std());
                layer.apply_activation(&mut x);
            }
            Step::Save => saved = Some(x.clone()),
            Step::AddSaved { .. } => x.add(saved.as_ref().unwrap()),
        }
    }
    (x, stds)
}

#[cfg(test)]
mod tests;
