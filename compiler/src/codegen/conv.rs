//! Lowering of a convolution: which conv template takes it (vec4 or plain pointwise, depthwise 3x3,
//! depthwise, conv2d), its constants and workgroups, and its weights packed as that template reads
//! them.

use super::kernels::{channel_params, epilogue_constants, layer_binds, node_bias, threads_to_groups, u, Bind, KernelKey, Lowered, WORKGROUP};
use super::layout::Planes;
use super::template::{Const, Template};
use crate::ir::{Conv, Graph, Node};

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
    conv.is_depthwise(c_in, c_out) && conv.prologue.is_none() && conv.kernel == [3, 3] && conv.pads[1] == 1 && matches!(conv.stride, [1 | 2, 1 | 2]) && c_out <= MAX_TEXTURE_SIDE
}

/// A template, its constants and its workgroups (per sample).
type Choice = (Template, Vec<(&'static str, Const)>, u32);

/// The kernel of a convolution with input shape `x` and output shape `y`.
pub(super) fn lower_conv(graph: &Graph, node: &Node, conv: &Conv, planes: &Planes, x: &[usize], y: &[usize]) -> Lowered {
    let e = &conv.epilogue;
    let params = conv_params(graph, node, conv);
    // A pointwise kernel computes every pixel of its output's planes (padding included:
    // see `layout`; its input and residual are padded alike).
    let (c_in, c_out, hw_out) = (x[1], y[1], planes.plane(graph, node.output));
    let (template, mut constants, groups) = pointwise_template(conv, c_in, c_out, hw_out).unwrap_or_else(|| spatial_template(conv, x, y));
    constants.extend(epilogue_constants(e));
    constants.push(("WG", Const::U32(conv_workgroup(template, c_out))));
    if matches!(template, Template::Conv2d | Template::Depthwise3x3) {
        constants.extend(out_vec(y[3]));
    }
    if template == Template::Depthwise3x3 {
        constants.extend([("IN_PLANE", u(planes.plane(graph, node.inputs[0]))), ("OUT_PLANE", u(planes.plane(graph, node.output)))]);
    }
    let binds = pack_binds(template, layer_binds(graph, node, params, e.residual), conv, c_in, c_out);
    Lowered { key: KernelKey { template, constants }, binds, workgroups: groups }
}

/// The per-channel parameters of a convolution: its epilogue's, then a prologue's scale and shift
/// (only conv2d takes a prologue).
fn conv_params(graph: &Graph, node: &Node, conv: &Conv) -> Vec<f32> {
    let mut params = channel_params(&node_bias(graph, node), conv.epilogue.act.as_ref());
    if let Some(pro) = &conv.prologue {
        params.extend_from_slice(&pro.scale);
        params.extend_from_slice(&pro.shift);
    }
    params
}

/// The vec4 or plain pointwise template of a pointwise convolution whose weights fit its texture,
/// with constants and workgroups; None for every other convolution.
fn pointwise_template(conv: &Conv, c_in: usize, c_out: usize, hw_out: usize) -> Option<Choice> {
    // Where the weights fit a texture (see MAX_TEXTURE_SIDE): the vec4 kernel's rows are
    // tiles of 32 output channels by groups of 4 input channels, the other's a texel per 4
    // output channels by a row per input channel.
    let vec4 = hw_out.is_multiple_of(4) && pointwise_vec4_fits(c_in, c_out);
    let fits = vec4 || (c_in <= MAX_TEXTURE_SIDE && c_out.div_ceil(POINTWISE_CO_TILE) <= MAX_TEXTURE_SIDE);
    if !(conv.is_pointwise() && conv.prologue.is_none() && fits) {
        return None;
    }
    let k = vec![("C_IN", u(c_in)), ("C_OUT", u(c_out)), ("HW", u(hw_out))];
    if vec4 {
        // Whole workgroups per tile of output channels (the tile is the workgroup's).
        let groups = c_out.div_ceil(POINTWISE_VEC4_CO_TILE) * (hw_out / 4).div_ceil(POINTWISE_VEC4_WORKGROUP as usize);
        Some((Template::PointwiseVec4, k, groups as u32))
    } else {
        // A workgroup: PX_TILE pixels by one group of 4 output channels an invocation.
        let wg = pointwise_workgroup(c_out.div_ceil(POINTWISE_CO_TILE));
        let groups = c_out.div_ceil(POINTWISE_CO_TILE).div_ceil(wg as usize) * hw_out.div_ceil(POINTWISE_PX_TILE);
        Some((Template::Pointwise, k, groups as u32))
    }
}

/// The template of a convolution no pointwise template takes: depthwise 3x3, depthwise vec4 or
/// plain depthwise for one filter per channel, conv2d for the rest; with constants and workgroups.
fn spatial_template(conv: &Conv, x: &[usize], y: &[usize]) -> Choice {
    let (c_in, c_out) = (x[1], y[1]);
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
}

/// Workgroup size of a conv template: WORKGROUP but for the kernels whose tile is the workgroup's.
fn conv_workgroup(template: Template, c_out: usize) -> u32 {
    match template {
        Template::PointwiseVec4 => POINTWISE_VEC4_WORKGROUP,
        Template::Pointwise => pointwise_workgroup(c_out.div_ceil(POINTWISE_CO_TILE)),
        Template::Conv2d => CONV2D_WORKGROUP,
        _ => WORKGROUP,
    }
}

/// The layer bindings `binds` with the weights (and the vec4 kernel's parameters) packed as
/// `template` reads them: textures for the pointwise and depthwise 3x3 kernels, tiles for conv2d,
/// as they are for the other depthwise kernels.
fn pack_binds(template: Template, mut binds: Vec<Bind>, conv: &Conv, c_in: usize, c_out: usize) -> Vec<Bind> {
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
    binds
}
