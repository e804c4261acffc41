//! Lowering of one IR node to a kernel specialisation: which template, its constants (the typed
//! cache key), what each binding holds, and how many workgroups a sample needs.

use super::layout::{Planes, PLANE_MULTIPLE};
use super::template::{Const, Template};
use crate::error::{CompileError, Result};
use crate::ir::{numel, Act, Conv, Epilogue, Graph, Node, Op, ValueId};

/// Workgroup size of every kernel.
pub const WORKGROUP: u32 = 64;

/// A kernel specialisation: the template and its constants. Identical keys share one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelKey {
    pub template: Template,
    pub constants: Vec<(&'static str, Const)>,
}

impl KernelKey {
    /// A hashable, printable form of the key (f32 constants by their bits).
    pub fn id(&self) -> String {
        let mut s = self.template.name().to_string();
        for (name, c) in &self.constants {
            let v = match c {
                Const::U32(v) => v.to_string(),
                Const::F32(v) => format!("{:08x}", v.to_bits()),
                Const::Bool(v) => v.to_string(),
                Const::Type(ty) => ty.to_string(),
                Const::Typed(_, expr) => expr.to_string(),
            };
            s.push_str(&format!(" {name}={v}"));
        }
        s
    }

    /// The value of the key's u32 constant `name`, if it has one.
    pub fn u32(&self, name: &str) -> Option<u32> {
        self.constants.iter().find_map(|(n, c)| match c {
            Const::U32(v) if *n == name => Some(*v),
            _ => None,
        })
    }
}

/// Whether a kernel can take its template's subgroup variant: the vec4 GEMM's pairs its lanes'
/// pixel vec4s within rows, and needs planes of a multiple of PLANE_MULTIPLE pixels (`layout`
/// pads them to that where it can).
pub fn subgroup_fits(key: &KernelKey) -> bool {
    match key.template {
        Template::PointwiseVec4 => key.u32("HW").is_some_and(|hw| (hw as usize).is_multiple_of(PLANE_MULTIPLE)),
        _ => true,
    }
}

/// The most loop iterations one unit of work of a kernel takes (see
/// [`crate::Kernel::unit_iterations`]): for a kernel that can share its tiles, the shared-tile
/// loop's own iteration and every back-edge of the loops inside a unit; for the others, every
/// back-edge of an invocation's loops; counted as if no loop were unrolled; 0 for templates without
/// loops.
/// - `pointwise_vec4` (subgroup variant, a tile of a subgroup): the loop over pairs of groups of 4
///   input channels, and 8 stores of 4 channels in a loop of 4 (the plain variant's; the subgroup
///   variant's stores take 2 pairs of channels a loop, 2 iterations: the larger count is kept);
/// - `pointwise` (subgroup variant, a grid workgroup's subgroup share): the loop over groups of 4
///   input channels, and 4 stores of a 4 by 4 loop nest;
/// - `conv2d` (subgroup variant): input channels of a group, by rows of taps, by taps, and up to
///   8 stores in a loop of 4;
/// - the depthwise 3x3 kernels (a band an invocation): no loop inside a band;
/// - `linear` and `gdconv`: the reduction, 8 products an iteration and the rest one a time;
/// - `depthwise` and `depthwise_vec4`: rows of taps, by the row's loads and by taps by the
///   invocation's 8 outputs, and the stores;
/// - `maxpool`: the window's rows by its columns.
pub fn unit_iterations(key: &KernelKey) -> u32 {
    let c_in = key.u32("C_IN").unwrap_or(0);
    match key.template {
        // The subgroup variant takes 4 input channels an iteration, the plain one 8: the larger.
        Template::PointwiseVec4 => 1 + c_in.div_ceil(4) + 8 * 4,
        Template::Pointwise => 1 + c_in.div_ceil(4) + 4 * (4 + 4 * 4),
        Template::Conv2d => {
            let c_in_group = c_in / key.u32("GROUP").unwrap_or(1).max(1);
            let (kh, kw) = (key.u32("KH").unwrap_or(1), key.u32("KW").unwrap_or(1));
            1u32.saturating_add(c_in_group.saturating_mul(1 + kh.saturating_mul(1 + kw))).saturating_add(8 * 4)
        }
        Template::Depthwise3x3 | Template::Depthwise3x3Vec4 => 1,
        Template::Linear => unrolled(key.u32("K").unwrap_or(0)),
        Template::GdConv => unrolled(key.u32("HW").unwrap_or(0)),
        Template::Depthwise | Template::DepthwiseVec4 => {
            let (kh, kw, sw) = (key.u32("KH").unwrap_or(1), key.u32("KW").unwrap_or(1), key.u32("SW").unwrap_or(1));
            // 8 outputs an invocation: a row reads the 7 * SW + KW inputs under them.
            let row = (7u32.saturating_mul(sw)).saturating_add(kw).saturating_add(kw.saturating_mul(1 + 8));
            kh.saturating_mul(1 + row).saturating_add(8)
        }
        Template::MaxPool => key.u32("KH").unwrap_or(1).saturating_mul(1 + key.u32("KW").unwrap_or(1)),
        _ => 0,
    }
}

/// Iterations of the loops of `linear.wgsl` and `gdconv.wgsl` over `n` products: 8 an iteration,
/// then one a time.
fn unrolled(n: u32) -> u32 {
    n / 8 + n % 8
}

/// What a binding of a lowered node holds.
#[derive(Clone, Debug)]
pub enum Bind {
    Value(ValueId),
    /// Constant data created for this node (weights or packed per-channel parameters).
    Data(String, Vec<f32>),
    /// Constant data read as a 2D texture of RGBA texels, this many texels a row
    /// ([`crate::Weight::texture`]).
    Texture(String, Vec<f32>, u32),
    Unused,
}

pub struct Lowered {
    pub key: KernelKey,
    pub binds: Vec<Bind>,
    /// Workgroups one sample needs.
    pub workgroups: u32,
}

fn u(v: usize) -> Const {
    Const::U32(v as u32)
}

/// The constants of a kernel that stores OUT_VEC consecutive outputs of a row at once: the
/// element type of its output `out_t` (`stored`, `vec2<stored>` or `vec4<stored>`), `LANE`
/// (component k holds k) and OUT_VEC. Its invocations write runs of 4 outputs of a row from a
/// multiple of 4 on, so a row of `w_out` outputs takes quads where `w_out` is a multiple of 4 and
/// pairs where it is even (on lavapipe a store costs by the lane more than by the component: the
/// first conv's scalar stores were 0.4 of its time).
fn out_vec(w_out: usize) -> [(&'static str, Const); 3] {
    let (n, ty, lane) = match w_out % 4 {
        0 => (4, "vec4<stored>", "out_t(0.0, 1.0, 2.0, 3.0)"),
        2 => (2, "vec2<stored>", "out_t(0.0, 1.0)"),
        _ => (1, "stored", "out_t(0.0)"),
    };
    [("out_t", Const::Type(ty)), ("LANE", Const::Typed("out_t", lane)), ("OUT_VEC", Const::U32(n))]
}

fn epilogue_constants(e: &Epilogue) -> [(&'static str, Const); 4] {
    let (act, min, max) = act_constants(e.act.as_ref());
    [("ACT", act), ("CLIP_MIN", min), ("CLIP_MAX", max), ("HAS_RESIDUAL", Const::Bool(e.residual))]
}

fn act_constants(act: Option<&Act>) -> (Const, Const, Const) {
    let (code, min, max) = match act {
        None => (0, 0.0, 6.0),
        Some(Act::Relu) => (1, 0.0, 6.0),
        Some(Act::PRelu(_)) => (2, 0.0, 6.0),
        Some(Act::Clip { min, max }) => (3, *min, *max),
        Some(Act::Sigmoid) => (4, 0.0, 6.0),
    };
    (Const::U32(code), Const::F32(min), Const::F32(max))
}

/// `[bias; C] ++ [prelu slope or zeros; C]`: the per-channel parameters of an epilogue.
fn channel_params(bias: &[f32], act: Option<&Act>) -> Vec<f32> {
    let mut p = bias.to_vec();
    match act {
        Some(Act::PRelu(slope)) => p.extend_from_slice(slope),
        _ => p.extend(std::iter::repeat_n(0.0, bias.len())),
    }
    p
}

/// Output channels one invocation of the pointwise kernel computes.
const POINTWISE_CO_TILE: usize = 4;
/// Pixels one workgroup of the pointwise kernel computes.
const POINTWISE_PX_TILE: usize = 16;
/// Output channels one workgroup of the vec4 pointwise kernel computes: also the width, in
/// texels, of its weight texture (a row per tile and group of 4 input channels).
const POINTWISE_VEC4_CO_TILE: usize = 32;
/// Most texels a side of a weight texture: WebGPU's default `max_texture_dimension_2d`, which
/// every adapter of its core profile has. Larger layers take a template that reads its weights
/// from a storage buffer (`pointwise_vec4` -> `pointwise` -> `conv2d`, `depthwise3x3` ->
/// `depthwise_vec4` or `depthwise`).
const MAX_TEXTURE_SIDE: usize = 8192;

/// Outputs along a row one invocation of the depthwise kernel computes.
const DEPTHWISE_OX_TILE: usize = 8;
/// Output rows one invocation of the depthwise 3x3 kernel computes.
const DEPTHWISE3X3_ROWS: usize = 4;

/// Output channels one invocation of the conv2d kernel computes (its workgroup's tile): the
/// largest of 32, 16, 8, 4, 2, 1 that divides the output channels of a group (so a tile never
/// straddles two groups).
fn conv2d_co_tile(c_out_per_group: usize) -> usize {
    [32, 16, 8, 4, 2, 1].into_iter().find(|t| c_out_per_group.is_multiple_of(*t)).unwrap_or(1)
}

/// Workgroup size of the conv2d kernel: the tile is the workgroup's, and 32 idles fewer
/// invocations at the end of a tile than 64.
const CONV2D_WORKGROUP: u32 = 32;

/// Workgroup size of the vec4 pointwise kernel (one pixel vec4 an invocation of the subgroup
/// variant, two for half the tile in the plain one). The tile is the workgroup's, so a workgroup
/// of 32 never idles more invocations than one of 64 (28x28: 196 vec4s, 28 idle against 60), and
/// it measured faster on lavapipe at 28x28 and 56x56 too.
const POINTWISE_VEC4_WORKGROUP: u32 = 32;

/// Workgroup size of the pointwise kernel for `co4` groups of 4 output channels (one an
/// invocation): the next power of two, from 8 (a subgroup: the subgroup variant broadcasts from
/// lanes 0..8) to 64.
fn pointwise_workgroup(co4: usize) -> u32 {
    co4.next_power_of_two().clamp(8, WORKGROUP as usize) as u32
}

/// `[C_out, C_in]` -> `[C_in, C_out rounded up to the tile]`, zero-padded: the pointwise kernels
/// read the weights of four output channels as one vec4.
fn pack_pointwise(w: &[f32], c_out: usize, c_in: usize, tile: usize) -> Vec<f32> {
    let cols = c_out.div_ceil(tile) * tile;
    let mut packed = vec![0.0; c_in * cols];
    for co in 0..c_out {
        for ci in 0..c_in {
            packed[ci * cols + co] = w[co * c_in + ci];
        }
    }
    packed
}

/// `[C_out, C_in]` -> `[C_out / 32][C_in / 4][32]` vec4s (both rounded up, zero-padded): vector
/// (b, g, j) holds the weights of output channel 32b + j for input channels 4g .. 4g + 3, so the
/// vec4 pointwise kernels read a tile's weights for a group of input channels as 32 vectors.
fn pack_pointwise_vec4(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let (tile, groups) = (POINTWISE_VEC4_CO_TILE, c_in.div_ceil(4));
    let mut packed = vec![0.0; c_out.div_ceil(tile) * groups * tile * 4];
    for co in 0..c_out {
        for ci in 0..c_in {
            packed[((co / tile * groups + ci / 4) * tile + co % tile) * 4 + ci % 4] = w[co * c_in + ci];
        }
    }
    packed
}

/// Texels of a row of the vec4 pointwise kernels' parameter texture: 8 of biases, 8 of slopes.
const POINTWISE_VEC4_PARAM_TEXELS: usize = 16;

/// `[bias; C_out] ++ [slope; C_out]` -> a texture of 16 RGBA texels a row, a row per tile of 32
/// output channels (zero-padded): texel j of row b holds the biases of output channels 32b + j,
/// 32b + j + 8, 32b + j + 16 and 32b + j + 24, texel 8 + j their slopes. Lane j of the subgroup
/// GEMM takes its share of a tile's 64 parameters as 2 texels (on lavapipe 2 texel fetches, a few
/// vector gathers each, instead of 8 single-float loads, each a loop over the SIMD lanes).
fn pack_pointwise_vec4_params(p: &[f32], c_out: usize) -> Vec<f32> {
    let tile = POINTWISE_VEC4_CO_TILE;
    let row = POINTWISE_VEC4_PARAM_TEXELS * 4;
    // The slopes' texels follow the biases' in the row.
    let slopes = row / 2;
    let mut packed = vec![0.0; c_out.div_ceil(tile) * row];
    for co in 0..c_out {
        let (b, j) = (co / tile, co % tile);
        let at = b * row + (j % 8) * 4 + j / 8;
        packed[at] = p[co];
        packed[at + slopes] = p[c_out + co];
    }
    packed
}

/// `[C, 1, 3, 3]` -> `[C][3]` texels: texel r of channel c holds row r of its filter and a zero,
/// so the depthwise 3x3 kernels read a filter row as one texel.
fn pack_depthwise3x3(w: &[f32]) -> Vec<f32> {
    w.chunks_exact(3).flat_map(|row| [row[0], row[1], row[2], 0.0]).collect()
}

/// Output pixels along a row one invocation of the conv2d kernel computes.
const CONV2D_PX: usize = 4;
/// Weights the conv2d kernel reads for one tap: 8 vec4s, the tile zero-padded.
const CONV2D_LANES: usize = 32;

/// `[C_out, C_in / group, KH, KW]` -> `[C_out / tile, C_in / group, KH, KW, 32]`, zero-padded: the
/// conv2d kernel reads the weights of one tap for its tile of output channels as vec4s of 4
/// channels.
fn pack_conv2d(w: &[f32], c_out: usize, tile: usize) -> Vec<f32> {
    let per_co = w.len() / c_out.max(1);
    let lanes = CONV2D_LANES;
    let mut packed = vec![0.0; c_out / tile * per_co * lanes];
    for co in 0..c_out {
        let (block, j) = (co / tile, co % tile);
        for k in 0..per_co {
            packed[(block * per_co + k) * lanes + j] = w[co * per_co + k];
        }
    }
    packed
}

/// Whether a pointwise convolution's weights fit the vec4 kernel's texture (see MAX_TEXTURE_SIDE):
/// its rows are tiles of 32 output channels by groups of 4 input channels.
pub(super) fn pointwise_vec4_fits(c_in: usize, c_out: usize) -> bool {
    c_out.div_ceil(POINTWISE_VEC4_CO_TILE) * c_in.div_ceil(4) <= MAX_TEXTURE_SIDE
}

/// Whether a convolution takes one of the depthwise 3x3 kernels: 3x3 filters, left padding 1,
/// strides of 1 or 2, one filter per channel, its filters' texture within MAX_TEXTURE_SIDE rows.
pub(super) fn depthwise3x3_fits(conv: &Conv, c_in: usize, c_out: usize) -> bool {
    conv.is_depthwise(c_in, c_out)
        && conv.prologue.is_none()
        && conv.kernel == [3, 3]
        && conv.pads[1] == 1
        && matches!(conv.stride, [1 | 2, 1 | 2])
        && c_out <= MAX_TEXTURE_SIDE
}

fn threads_to_groups(threads: usize) -> u32 {
    threads.div_ceil(WORKGROUP as usize) as u32
}

/// Bindings `x, w, params, residual, y` of the layer templates.
fn layer_binds(graph: &Graph, node: &Node, params: Vec<f32>, residual: bool) -> Vec<Bind> {
    let w = node.inputs[1];
    let res = if residual { Bind::Value(*node.inputs.last().expect("residual input")) } else { Bind::Unused };
    vec![
        Bind::Value(node.inputs[0]),
        Bind::Data(graph.value(w).name.clone(), graph.const_f32(w).unwrap_or_default().to_vec()),
        Bind::Data(format!("{}.params", node.name()), params),
        res,
        Bind::Value(node.output),
    ]
}

/// The kernel of `node`, its activations laid out as `planes` says.
pub fn lower(graph: &Graph, node: &Node, planes: &Planes) -> Result<Lowered> {
    let x = graph.shape(node.inputs[0]).to_vec();
    let y = graph.shape(node.output).to_vec();
    let bias = || graph.const_f32(node.inputs[2]).unwrap_or_default().to_vec();
    match &node.op {
        Op::Conv(conv) => {
            let e = &conv.epilogue;
            let mut params = channel_params(&bias(), e.act.as_ref());
            // A pointwise kernel computes every pixel of its output's planes (padding included:
            // see `layout`; its input and residual are padded alike).
            let (c_in, c_out, hw_out) = (x[1], y[1], planes.plane(graph, node.output));
            // Where the weights fit a texture (see MAX_TEXTURE_SIDE): the vec4 kernel's rows are
            // tiles of 32 output channels by groups of 4 input channels, the other's a texel per 4
            // output channels by a row per input channel.
            let vec4 = hw_out.is_multiple_of(4) && pointwise_vec4_fits(c_in, c_out);
            let fits = vec4 || (c_in <= MAX_TEXTURE_SIDE && c_out.div_ceil(POINTWISE_CO_TILE) <= MAX_TEXTURE_SIDE);
            let pointwise = conv.is_pointwise() && conv.prologue.is_none() && fits;
            // The template, its constants and its workgroups (per sample).
            let (template, mut constants, groups) = if pointwise {
                let k = vec![("C_IN", u(c_in)), ("C_OUT", u(c_out)), ("HW", u(hw_out))];
                if vec4 {
                    // Whole workgroups per tile of output channels (the tile is the workgroup's).
                    let groups = c_out.div_ceil(POINTWISE_VEC4_CO_TILE) * (hw_out / 4).div_ceil(POINTWISE_VEC4_WORKGROUP as usize);
                    (Template::PointwiseVec4, k, groups as u32)
                } else {
                    // A workgroup: PX_TILE pixels by one group of 4 output channels an invocation.
                    let wg = pointwise_workgroup(c_out.div_ceil(POINTWISE_CO_TILE));
                    let groups = c_out.div_ceil(POINTWISE_CO_TILE).div_ceil(wg as usize) * hw_out.div_ceil(POINTWISE_PX_TILE);
                    (Template::Pointwise, k, groups as u32)
                }
            } else {
                let depthwise = conv.is_depthwise(c_in, c_out) && conv.prologue.is_none();
                let mut k = if depthwise { vec![("C", u(c_in))] } else { vec![("C_IN", u(c_in))] };
                k.extend([("H_IN", u(x[2])), ("W_IN", u(x[3]))]);
                if !depthwise {
                    k.push(("C_OUT", u(c_out)));
                }
                k.extend([("H_OUT", u(y[2])), ("W_OUT", u(y[3])), ("KH", u(conv.kernel[0])), ("KW", u(conv.kernel[1]))]);
                k.extend([("SH", u(conv.stride[0])), ("SW", u(conv.stride[1])), ("PAD_T", u(conv.pads[0])), ("PAD_L", u(conv.pads[1]))]);
                if !depthwise {
                    k.extend([("GROUP", u(conv.group)), ("HAS_PROLOGUE", Const::Bool(conv.prologue.is_some()))]);
                    k.push(("CO_TILE", u(conv2d_co_tile(c_out / conv.group))));
                    if let Some(pro) = &conv.prologue {
                        params.extend_from_slice(&pro.scale);
                        params.extend_from_slice(&pro.shift);
                    }
                }
                let (kw, pad_l) = (conv.kernel[1], conv.pads[1]);
                let rows_of_vec4 = x[3].is_multiple_of(4) && y[3].is_multiple_of(4);
                if depthwise3x3_fits(conv, c_in, c_out) {
                    // Four output rows by 8 outputs an invocation.
                    k.retain(|(name, _)| !matches!(*name, "KH" | "KW" | "PAD_L"));
                    let threads = c_out * y[2].div_ceil(DEPTHWISE3X3_ROWS) * y[3].div_ceil(8);
                    (if rows_of_vec4 { Template::Depthwise3x3Vec4 } else { Template::Depthwise3x3 }, k, threads_to_groups(threads))
                } else if depthwise && conv.stride[1] == 1 && rows_of_vec4 && pad_l <= 4 && kw <= 5 + pad_l {
                    k.retain(|(name, _)| *name != "SW");
                    (Template::DepthwiseVec4, k, threads_to_groups(c_out * y[2] * (y[3] / 4).div_ceil(2)))
                } else if depthwise {
                    (Template::Depthwise, k, threads_to_groups(c_out * y[2] * y[3].div_ceil(DEPTHWISE_OX_TILE)))
                } else {
                    // Whole workgroups per tile of output channels (the tile is the workgroup's).
                    let per_tile = (y[2] * y[3].div_ceil(CONV2D_PX)).div_ceil(CONV2D_WORKGROUP as usize);
                    (Template::Conv2d, k, (c_out / conv2d_co_tile(c_out / conv.group) * per_tile) as u32)
                }
            };
            constants.extend(epilogue_constants(e));
            let wg = match template {
                Template::PointwiseVec4 => POINTWISE_VEC4_WORKGROUP,
                Template::Pointwise => pointwise_workgroup(c_out.div_ceil(POINTWISE_CO_TILE)),
                Template::Conv2d => CONV2D_WORKGROUP,
                _ => WORKGROUP,
            };
            constants.push(("WG", Const::U32(wg)));
            if matches!(template, Template::Conv2d | Template::Depthwise3x3) {
                constants.extend(out_vec(y[3]));
            }
            if template == Template::Depthwise3x3 {
                constants.extend([("IN_PLANE", u(planes.plane(graph, node.inputs[0]))), ("OUT_PLANE", u(planes.plane(graph, node.output)))]);
            }
            let mut binds = layer_binds(graph, node, params, e.residual);
            if let Bind::Data(name, w) = &mut binds[1] {
                if template == Template::PointwiseVec4 {
                    binds[1] = Bind::Texture(std::mem::take(name), pack_pointwise_vec4(w, c_out, c_in), POINTWISE_VEC4_CO_TILE as u32);
                    if let Bind::Data(name, p) = &mut binds[2] {
                        binds[2] = Bind::Texture(std::mem::take(name), pack_pointwise_vec4_params(p, c_out), POINTWISE_VEC4_PARAM_TEXELS as u32);
                    }
                } else if template == Template::Pointwise {
                    binds[1] = Bind::Texture(std::mem::take(name), pack_pointwise(w, c_out, c_in, POINTWISE_CO_TILE), c_out.div_ceil(POINTWISE_CO_TILE) as u32);
                } else if template == Template::Conv2d {
                    *w = pack_conv2d(w, c_out, conv2d_co_tile(c_out / conv.group));
                } else if matches!(template, Template::Depthwise3x3 | Template::Depthwise3x3Vec4) {
                    binds[1] = Bind::Texture(std::mem::take(name), pack_depthwise3x3(w), 3);
                }
            }
            Ok(Lowered { key: KernelKey { template, constants }, binds, workgroups: groups })
        }
        Op::GdConv(e) => {
            let mut constants = vec![("C", u(x[1])), ("HW", u(x[2] * x[3])), ("PLANE", u(planes.plane(graph, node.inputs[0])))];
            constants.extend(epilogue_constants(e));
            constants.push(("WG", Const::U32(WORKGROUP)));
            let binds = layer_binds(graph, node, channel_params(&bias(), e.act.as_ref()), e.residual);
            Ok(Lowered { key: KernelKey { template: Template::GdConv, constants }, binds, workgroups: threads_to_groups(x[1]) })
        }
        Op::GlobalAveragePool => {
            let (c, hw) = (x[1], x[2] * x[3]);
            let mut constants = vec![("C", u(c)), ("HW", u(hw)), ("PLANE", u(planes.plane(graph, node.inputs[0])))];
            constants.extend(epilogue_constants(&Epilogue::default()));
            constants.push(("WG", Const::U32(WORKGROUP)));
            let binds = vec![
                Bind::Value(node.inputs[0]),
                Bind::Data(format!("{}.mean", node.name()), vec![1.0 / hw as f32; c * hw]),
                Bind::Data(format!("{}.params", node.name()), vec![0.0; 2 * c]),
                Bind::Unused,
                Bind::Value(node.output),
            ];
            Ok(Lowered { key: KernelKey { template: Template::GdConv, constants }, binds, workgroups: threads_to_groups(c) })
        }
        Op::Linear(e) => {
            let (k, m) = (x[1], y[1]);
            let mut constants = vec![("K", u(k)), ("M", u(m))];
            constants.extend(epilogue_constants(e));
            constants.push(("WG", Const::U32(WORKGROUP)));
            let binds = layer_binds(graph, node, channel_params(&bias(), e.act.as_ref()), e.residual);
            Ok(Lowered { key: KernelKey { template: Template::Linear, constants }, binds, workgroups: threads_to_groups(m) })
        }
        Op::Act(_) | Op::Affine(_) | Op::Binary(_) => elementwise(graph, node, &y),
        Op::MaxPool(p) => {
            let constants = vec![
                ("C", u(x[1])),
                ("H_IN", u(x[2])),
                ("W_IN", u(x[3])),
                ("H_OUT", u(y[2])),
                ("W_OUT", u(y[3])),
                ("KH", u(p.kernel[0])),
                ("KW", u(p.kernel[1])),
                ("SH", u(p.stride[0])),
                ("SW", u(p.stride[1])),
                ("PAD_T", u(p.pads[0])),
                ("PAD_L", u(p.pads[1])),
                ("WG", Const::U32(WORKGROUP)),
            ];
            Ok(data_movement(Template::MaxPool, constants, node, numel(&y[1..])))
        }
        Op::Upsample { factor } => {
            let constants =
                vec![("C", u(x[1])), ("H_IN", u(x[2])), ("W_IN", u(x[3])), ("FH", u(factor[0])), ("FW", u(factor[1])), ("WG", Const::U32(WORKGROUP))];
            Ok(data_movement(Template::Upsample, constants, node, numel(&y[1..])))
        }
        Op::Concat { axis } => {
            let outer = numel(&y[1..*axis]);
            let slab = |v: ValueId| numel(&graph.shape(v)[*axis..]);
            let mut binds: Vec<Bind> = node.inputs.iter().map(|&v| Bind::Value(v)).collect();
            let mut constants = vec![("OUTER", u(outer))];
            for (k, name) in ["S_A", "S_B", "S_C", "S_D"].into_iter().enumerate() {
                constants.push((name, u(node.inputs.get(k).map_or(0, |&v| slab(v)))));
            }
            constants.push(("WG", Const::U32(WORKGROUP)));
            binds.resize(4, Bind::Unused);
            binds.push(Bind::Value(node.output));
            Ok(Lowered { key: KernelKey { template: Template::Concat, constants }, binds, workgroups: threads_to_groups(numel(&y[1..])) })
        }
        Op::Transpose(perm) => {
            let sample = &x[1..];
            if sample.len() > 4 {
                return Err(CompileError::Unsupported { node: node.name().into(), op: "Transpose".into(), message: format!("a rank-{} sample", sample.len()) });
            }
            let mut strides = vec![1; sample.len()];
            for i in (0..sample.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * sample[i + 1];
            }
            // Output axis k of the sample is input axis perm[k + 1] - 1; pad to four axes in front.
            let pad = 4 - sample.len();
            let dim = |k: usize| if k < pad { 1 } else { sample[perm[k - pad + 1] - 1] };
            let stride = |k: usize| if k < pad { 0 } else { strides[perm[k - pad + 1] - 1] };
            let mut constants = Vec::new();
            for (k, (d, s)) in [("D0", "S0"), ("D1", "S1"), ("D2", "S2"), ("D3", "S3")].into_iter().enumerate() {
                constants.push((d, u(dim(k))));
                constants.push((s, u(stride(k))));
            }
            constants.sort_by_key(|(name, _)| name.starts_with('S'));
            constants.push(("WG", Const::U32(WORKGROUP)));
            Ok(data_movement(Template::Transpose, constants, node, numel(&y[1..])))
        }
        other => Err(CompileError::Unsupported {
            node: node.name().into(),
            op: other.name().into(),
            message: "this operation after the passes".into(),
        }),
    }
}

/// A kernel reading the node's one input and writing its output, one invocation per output element.
fn data_movement(template: Template, constants: Vec<(&'static str, Const)>, node: &Node, elements: usize) -> Lowered {
    let binds = vec![Bind::Value(node.inputs[0]), Bind::Value(node.output)];
    Lowered { key: KernelKey { template, constants }, binds, workgroups: threads_to_groups(elements) }
}

fn elementwise(graph: &Graph, node: &Node, y: &[usize]) -> Result<Lowered> {
    let c = y.get(1).copied().unwrap_or(1);
    let inner = numel(y.get(2..).unwrap_or(&[]));
    let unused = (Const::U32(0), Const::F32(0.0), Const::F32(6.0));
    let (mode, binop, (act, min, max), params, other) = match &node.op {
        Op::Act(a) => (0, 0, act_constants(Some(a)), Some(channel_params(&vec![0.0; c], Some(a))), Bind::Unused),
        Op::Affine(a) => (1, 0, unused, Some([a.scale.clone(), a.shift.clone()].concat()), Bind::Unused),
        Op::Binary(op) => {
            let (a, b) = (node.inputs[0], node.inputs[1]);
            if graph.shape(a) != graph.shape(b) || graph.is_const(a) || graph.is_const(b) {
                return Err(CompileError::Unsupported {
                    node: node.name().into(),
                    op: node.op.name().into(),
                    message: format!("broadcasting {:?} with {:?}", graph.shape(a), graph.shape(b)),
                });
            }
            (2, *op as u32, unused, None, Bind::Value(b))
        }
        _ => unreachable!("elementwise() is called for element-wise ops only"),
    };
    let constants = vec![
        ("C", u(c)),
        ("INNER", u(inner)),
        ("MODE", Const::U32(mode)),
        ("BINOP", Const::U32(binop)),
        ("ACT", act),
        ("CLIP_MIN", min),
        ("CLIP_MAX", max),
        ("WG", Const::U32(WORKGROUP)),
    ];
    let params = params.map_or(Bind::Unused, |p| Bind::Data(format!("{}.params", node.name()), p));
    let binds = vec![Bind::Value(node.inputs[0]), params, other, Bind::Value(node.output)];
    Ok(Lowered { key: KernelKey { template: Template::Elementwise, constants }, binds, workgroups: threads_to_groups(c * inner) })
}
