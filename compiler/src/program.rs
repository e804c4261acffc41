//! The compiler's output: plain data the runtime turns into buffers, pipelines and dispatches.
//! Sizes of activations are per sample; the runtime multiplies them by the batch it allocates for.

use std::fmt::Write;

/// How activations and weights are stored on the GPU. Arithmetic is f32 either way; f16 halves
/// the memory traffic at the cost of rounding every stored value to 11 significant bits (an opt-in
/// mode for adapters with `SHADER_F16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats, the default.
    #[default]
    F32,
    /// 16-bit floats (WGSL `enable f16;`): needs an adapter with `SHADER_F16`.
    F16,
}

impl Precision {
    /// Bytes of one stored element.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// The lines a specialised template starts its constants with: the `stored` alias every
    /// template reads and writes activations through, after `enable f16;` where it is f16.
    pub fn wgsl_prelude(self) -> String {
        let enable = if self == Precision::F16 { "enable f16;\n" } else { "" };
        format!("{enable}alias stored = {};\n", self.wgsl())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(format!("precision '{other}': expected f32 or f16")),
        }
    }
}

/// A compiled model.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Unique kernels; several steps may share one.
    pub kernels: Vec<Kernel>,
    /// Dispatches, in order.
    pub steps: Vec<Step>,
    /// Activation buffers of the memory plan (reused by liveness), in f32 elements per sample. A
    /// value is `[C, plane]` a sample: its pixels, or for maps whose pixels are not a multiple of
    /// 4, planes padded to one where every kernel reading or writing it allows
    /// (`codegen::layout`); graph inputs and outputs are never padded.
    pub buffers: Vec<usize>,
    /// Constant buffers (weights and per-channel parameters), uploaded once.
    pub weights: Vec<Weight>,
    /// The graph's input (a program has exactly one).
    pub input: Port,
    /// The graph's outputs, in the model's order (at least one).
    pub outputs: Vec<Port>,
    /// The graph normalises its own input: it begins with constant arithmetic on it (such as the
    /// pretrained MobileFaceNet's `Sub 127.5, Mul 1/128`), so it takes raw pixel values.
    pub normalises_input: bool,
    /// How activations (and the weights of [`Weight::precision`] f16) are stored.
    pub precision: Precision,
    /// Figures of the optimised graph: parameters, multiply-adds, activation memory.
    pub stats: Stats,
}

/// Smallest subgroup the subgroup variants of kernels ([`Kernel::subgroup_wgsl`]) work with: they
/// broadcast from lanes 0..8.
pub const MIN_SUBGROUP_SIZE: u32 = 8;

/// One generated WGSL compute kernel (entry point `main`, bind group 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Unique name, `k<index>_<template>` (such as `k03_pointwise`).
    pub name: String,
    /// Which template it was specialised from.
    pub template: String,
    /// The WGSL source: a comment header describing the kernel's dispatches, then the
    /// specialised template.
    pub wgsl: String,
    /// The same kernel with subgroup operations (same dispatches, bindings and results up to
    /// rounding), which the runtime uses where the device has subgroups of at least
    /// [`MIN_SUBGROUP_SIZE`] invocations; `None` for most kernels.
    pub subgroup_wgsl: Option<String>,
    /// Invocations a workgroup (`@workgroup_size`, one-dimensional).
    pub workgroup_size: u32,
    /// Number of bindings, 0..n; the last one is the output (read-write storage).
    pub bindings: u32,
    /// Bindings that are 2D textures of RGBA texels (`texture_2d<f32>`, read with textureLoad), bit
    /// i for binding i; the others are storage buffers. Such a binding is always a
    /// [`Weight::texture`].
    pub textures: u32,
    /// The most loop iterations (back-edges of its loops, the shared-tile loop's included) one
    /// unit of work takes: a tile where the kernel can share its tiles ([`Kernel::tile_counters`]),
    /// else all an invocation runs; 0 for kernels without loops. CPU drivers may cap the iterations
    /// of an invocation's loops in all (lavapipe ends every loop after 65535, silently): there the
    /// runtime refuses a kernel whose unit alone takes more, sets [`UNIT_CAP`] from it, so that no
    /// invocation takes more units than that allows, and dispatches enough workgroups that the
    /// capped invocations take every unit between them.
    pub unit_iterations: u32,
}

/// The pipeline constant (WGSL `override`) through which a runtime lets the driver's threads
/// share a kernel's tiles: see [`Kernel::tile_counters`].
pub const TILE_SHARERS: &str = "SHARERS";

/// The pipeline constant (WGSL `override`) that caps the units one invocation of a kernel that
/// shares its tiles takes from the counters: see [`Kernel::unit_iterations`]. Its default is no
/// cap.
pub const UNIT_CAP: &str = "UNIT_CAP";

impl Kernel {
    /// Whether binding `i` is a texture (see [`Kernel::textures`]).
    pub fn is_texture(&self, i: usize) -> bool {
        i < 32 && self.textures & (1 << i) != 0
    }

    /// The binding of the tile counters, where the kernel can share its tiles among the threads
    /// of a CPU adapter's driver: one past the output (read-write storage, one `u32` a thread,
    /// 64 bytes apart, zero before every run). The runtime binds it and, where the variant it runs
    /// shares ([`Kernel::shares_tiles`]), sets [`TILE_SHARERS`] to the number of threads and
    /// dispatches that many workgroups per sample instead of [`Step::workgroups`]; with the
    /// constant at 0 (its default) the kernel computes the grid's tiles as usual and never touches
    /// the binding. The subgroup variants of the GEMMs and direct convolutions
    /// (`pointwise_vec4_subgroup.wgsl`, `pointwise_subgroup.wgsl`, `conv2d_subgroup.wgsl`: a tile
    /// per subgroup) and the depthwise 3x3 kernels (`depthwise3x3.wgsl`, `depthwise3x3_vec4.wgsl`,
    /// a band per invocation) have one.
    pub fn tile_counters(&self) -> Option<u32> {
        (self.shares_tiles(true) || self.shares_tiles(false)).then_some(self.bindings)
    }

    /// Whether the variant of the kernel that runs (the subgroup variant where `subgroups`, else
    /// the plain one) has the [`TILE_SHARERS`] constant: the subgroup variants of the GEMMs and
    /// direct convolutions, and the depthwise 3x3 kernels (which have no subgroup variant) always.
    pub fn shares_tiles(&self, subgroups: bool) -> bool {
        match self.template.as_str() {
            "pointwise_vec4" | "pointwise" | "conv2d" => subgroups && self.subgroup_wgsl.is_some(),
            "depthwise3x3" | "depthwise3x3_vec4" => true,
            _ => false,
        }
    }
}

/// One dispatch of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The kernel it dispatches, an index into [`Program::kernels`].
    pub kernel: usize,
    /// The ONNX nodes this dispatch computes.
    pub nodes: Vec<String>,
    /// What each binding of the kernel is bound to.
    pub bindings: Vec<Resource>,
    /// Workgroups per sample (x, y); the runtime dispatches z = batch.
    pub workgroups: [u32; 2],
    /// Shapes per sample of the activations it reads, in binding order.
    pub input_shapes: Vec<Vec<usize>>,
    /// Output shape per sample.
    pub output_shape: Vec<usize>,
    /// Multiply-adds per sample.
    pub macs: u64,
}

/// What a binding of a step is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// An activation buffer of [`Program::buffers`].
    Activation(usize),
    /// A constant buffer of [`Program::weights`].
    Weight(usize),
    /// A binding the kernel declares but this specialisation never reads.
    Unused,
}

/// A constant buffer (or texture): weights or per-channel parameters, uploaded once.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    /// The constant's ONNX name, or for data made for a node its name with a suffix (such as
    /// `.params`); for plans and dumps.
    pub name: String,
    /// The values, laid out as the kernels that bind it read them (packed and padded for some
    /// templates), held in f32 whatever [`Weight::precision`] says.
    pub data: Vec<f32>,
    /// How the kernels read it: convolution and linear weights follow the program's precision,
    /// per-channel parameters (bias, slopes) stay f32. The runtime converts at upload.
    pub precision: Precision,
    /// `Some(width)`: uploaded as a 2D texture of RGBA texels (rgba32float, rgba16float where the
    /// precision is f16), `width` texels a row and `data.len() / 4 / width` rows, which kernels
    /// read with textureLoad (on lavapipe a texel is fetched with vector gathers, where a storage
    /// buffer load is a loop over the SIMD lanes). `None`: a storage buffer.
    pub texture: Option<u32>,
}

impl Weight {
    /// Texture size (width, height) in texels of a [`Weight::texture`].
    pub fn texture_size(&self) -> Option<(u32, u32)> {
        self.texture.map(|width| (width, (self.data.len() / 4 / width.max(1) as usize).try_into().unwrap_or(u32::MAX)))
    }
}

/// A graph input or output: name, shape per sample (without the batch) and its buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// The ONNX value's name.
    pub name: String,
    /// Shape per sample, without the batch.
    pub shape: Vec<usize>,
    /// Its activation buffer, an index into [`Program::buffers`].
    pub buffer: usize,
}

impl Port {
    /// Elements per sample.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Figures of the optimised graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Learned parameters after BN folding (weights, biases, PReLU slopes).
    pub parameters: u64,
    /// Multiply-adds per sample.
    pub macs: u64,
    /// Peak activation memory per sample, in bytes, after buffer reuse.
    pub peak_activation_bytes: u64,
    /// Activation memory per sample without reuse, in bytes.
    pub total_activation_bytes: u64,
}

impl Program {
    /// The first output (the only one of an embedding model).
    pub fn output(&self) -> &Port {
        &self.outputs[0]
    }

    /// The plan as plain text: kernels in dispatch order, fused ONNX nodes, shapes, workgroups and
    /// buffers.
    pub fn plan_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# mfn execution plan");
        let _ = writeln!(s, "input  {} [N,{}] -> buffer b{}", self.input.name, dims(&self.input.shape), self.input.buffer);
        for o in &self.outputs {
            let _ = writeln!(s, "output {} [N,{}] <- buffer b{}", o.name, dims(&o.shape), o.buffer);
        }
        let _ = writeln!(s, "parameters {}  multiply-adds {}  kernels {}  dispatches {}", self.stats.parameters, self.stats.macs, self.kernels.len(), self.steps.len());
        let _ = writeln!(s, "peak activation memory {} bytes a sample ({} without reuse)", self.stats.peak_activation_bytes, self.stats.total_activation_bytes);
        let _ = writeln!(s, "\n## buffers (f32 elements a sample)");
        for (i, b) in self.buffers.iter().enumerate() {
            let _ = writeln!(s, "b{i}: {b}");
        }
        let _ = writeln!(s, "\n## dispatches");
        for (i, step) in self.steps.iter().enumerate() {
            let k = &self.kernels[step.kernel];
            let binds: Vec<String> = step.bindings.iter().map(|r| self.resource_name(*r)).collect();
            let _ = writeln!(
                s,
                "{i:3} {:<28} wg {}x{}x1 (x{}) out [N,{}] macs {}  bind [{}]\n    fuses: {}",
                k.name,
                step.workgroups[0],
                step.workgroups[1],
                k.workgroup_size,
                dims(&step.output_shape),
                step.macs,
                binds.join(", "),
                step.nodes.join(", ")
            );
        }
        s
    }

    fn resource_name(&self, r: Resource) -> String {
        match r {
            Resource::Activation(b) => format!("b{b}"),
            Resource::Weight(w) => match self.weights[w].texture_size() {
                Some((width, height)) => format!("t:{} ({width}x{height} texels)", self.weights[w].name),
                None => format!("w:{}", self.weights[w].name),
            },
            Resource::Unused => "-".into(),
        }
    }
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}
