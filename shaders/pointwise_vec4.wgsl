// Pointwise (1x1, stride 1, no padding) convolution where the feature map holds a multiple of 4
// pixels: y[co, p] = sum_ci w[co, ci] x[ci, p], with activations read and written as vec4 of 4
// neighbouring pixels. A workgroup computes one tile of CO_TILE = 32 output channels at WG pixel
// vec4s of one sample; each of its invocations computes 16 of those channels (the first half of
// the workgroup the first 16, the second half the others) at 2 of those vec4s, WG / 2 apart (so
// neighbouring invocations read neighbouring vectors). Per group of 4 input channels it makes 8
// vector loads of inputs and 16 of weights for 512 multiply-adds.
// `pointwise_vec4_subgroup.wgsl` is the same kernel, dispatch for dispatch, with the weights
// shared across a subgroup instead of loaded by every invocation; the runtime uses it where the
// device has subgroups of at least 8 invocations.
// The accumulators are named matrices, never a local array indexed in a loop (on lavapipe, which
// runs invocations as SIMD lanes, that becomes per-lane memory traffic), and the loop carries them
// through 8 input channels an iteration (lavapipe masks every write to a variable that lives
// across iterations).
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z), HW % 4 == 0: the map's pixels,
// or its planes padded to a multiple of 8 where the map's pixels are not (7x7: 56; see
// compiler/src/codegen/layout.rs), the padding computed like any pixel and never read as one; w is
// a texture of 32 RGBA texels a row and C_OUT / 32 * C_IN / 4 rows (both rounded up), texel j of
// row b * CI4 + g holding the weights of output channel 32b + j for input channels 4g .. 4g + 3
// (zero-padded): on lavapipe textureLoad fetches a texel with vector gathers, where a storage
// buffer load is a loop over the SIMD lanes (batch 16, 128 -> 256 at 14x14: 1.25 times as fast);
// p is a texture of 16 RGBA texels a row and C_OUT / 32 rows (rounded up), texel j of row b
// holding the biases of output channels 32b + j, + 8, + 16, + 24 and texel 8 + j their PReLU
// slopes (zero-padded; f32 in either precision), as the subgroup variant takes them.

// mfn:constants
alias stored = f32;
const C_IN: u32 = 8u;
const C_OUT: u32 = 8u;
const HW: u32 = 16u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

const CO_TILE: u32 = 32u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const HW4: u32 = HW / 4u;
/// Workgroups per tile of output channels: one pixel vec4 an invocation.
const PX_GROUPS: u32 = (HW4 + WG - 1u) / WG;
/// Groups of 4 input channels; the last is partial where C_IN % 4 != 0.
const CI4: u32 = (C_IN + 3u) / 4u;
const PARTIAL: bool = C_IN % 4u != 0u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<stored>>;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var p: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> r: array<vec4<stored>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<stored>>;

/// A channel's epilogue parameters (bias and PReLU slope).
struct Channel {
    bias: f32,
    slope: f32,
}

fn epilogue(acc: vec4<f32>, ch: Channel, i: u32) -> vec4<f32> {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, vec4(0.0)); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= vec4(0.0)); }
    if ACT == ACT_CLIP { v = clamp(v, vec4(CLIP_MIN), vec4(CLIP_MAX)); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += vec4<f32>(r[i]); }
    return v;
}

/// The accumulators of an invocation: m<k><j> holds output channels c0 + 4j .. + 3 (column i:
/// channel c0 + 4j + i; c0 its first channel) at the 4 pixels of its pixel vec4 k.
struct Tile {
    m00: mat4x4<f32>,
    m01: mat4x4<f32>,
    m02: mat4x4<f32>,
    m03: mat4x4<f32>,
    m10: mat4x4<f32>,
    m11: mat4x4<f32>,
    m12: mat4x4<f32>,
    m13: mat4x4<f32>,
}

/// The accumulators of 4 output channels at the invocation's two pixel vec4s.
struct Pair {
    a: mat4x4<f32>,
    b: mat4x4<f32>,
}

/// Where an invocation reads: its two pixel vec4s of input channel 0, and its first weight
/// texel of group 0 (column, row).
struct At {
    x0: u32,
    x1: u32,
    w: vec2<u32>,
}

/// acc + the outer product of 4 pixels `xv` and the weights `wv` of 4 output channels.
fn mac(acc: mat4x4<f32>, xv: vec4<f32>, wv: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(fma(xv, vec4(wv.x), acc[0]), fma(xv, vec4(wv.y), acc[1]), fma(xv, vec4(wv.z), acc[2]), fma(xv, vec4(wv.w), acc[3]));
}

/// The pixels of a group of 4 input channels (row u: input channel 4g + u).
struct Pixels {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
}

/// acc (output channels co .. co + 3) plus a group of 4 input channels: `px` its pixels, w<i> the
/// weights of output channel co + i over the group.
fn mac4(acc: mat4x4<f32>, px: Pixels, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> mat4x4<f32> {
    let a1 = mac(acc, px.x0, vec4(w0.x, w1.x, w2.x, w3.x));
    let a2 = mac(a1, px.x1, vec4(w0.y, w1.y, w2.y, w3.y));
    let a3 = mac(a2, px.x2, vec4(w0.z, w1.z, w2.z, w3.z));
    return mac(a3, px.x3, vec4(w0.w, w1.w, w2.w, w3.w));
}

/// The accumulators of output channels c0 + 4j .. + 3 plus a group of input channels (`px0`, `px1`
/// its pixels at the two vec4s) whose weights for the invocation's channels start at texel `i`.
fn quad(a0: mat4x4<f32>, a1: mat4x4<f32>, px0: Pixels, px1: Pixels, i: vec2<u32>, j: u32) -> Pair {
    let k = i + vec2(4u * j, 0u);
    let w0 = textureLoad(w, k, 0);
    let w1 = textureLoad(w, k + vec2(1u, 0u), 0);
    let w2 = textureLoad(w, k + vec2(2u, 0u), 0);
    let w3 = textureLoad(w, k + vec2(3u, 0u), 0);
    return Pair(mac4(a0, px0, w0, w1, w2, w3), mac4(a1, px1, w0, w1, w2, w3));
}

/// The pixels of input channel `ci` at `x_at` (the invocation's vec4 of channel 0); zero past
/// the last channel (the padded part of a partial group).
fn load_x(x_at: u32, ci: u32) -> vec4<f32> {
    if PARTIAL {
        return select(vec4(0.0), vec4<f32>(x[x_at + min(ci, C_IN - 1u) * HW4]), ci < C_IN);
    }
    return vec4<f32>(x[x_at + ci * HW4]);
}

/// The pixels of input channels 4g .. 4g + 3 at pixel vec4 `x_at` of channel 0.
fn pixels(x_at: u32, g: u32) -> Pixels {
    let c = 4u * g;
    return Pixels(load_x(x_at, c), load_x(x_at, c + 1u), load_x(x_at, c + 2u), load_x(x_at, c + 3u));
}

/// `t` plus the group of input channels 4g .. 4g + 3.
fn group(t: Tile, g: u32, at: At) -> Tile {
    let px0 = pixels(at.x0, g);
    let px1 = pixels(at.x1, g);
    let i = at.w + vec2(0u, g);
    let q0 = quad(t.m00, t.m10, px0, px1, i, 0u);
    let q1 = quad(t.m01, t.m11, px0, px1, i, 1u);
    let q2 = quad(t.m02, t.m12, px0, px1, i, 2u);
    let q3 = quad(t.m03, t.m13, px0, px1, i, 3u);
    return Tile(q0.a, q1.a, q2.a, q3.a, q0.b, q1.b, q2.b, q3.b);
}

/// Writes output channels co .. co + 3 (those below C_OUT) at pixel vec4 q; `bias` and `slope`
/// hold their parameters.
fn put(acc: mat4x4<f32>, co: u32, bias: vec4<f32>, slope: vec4<f32>, q: u32, sample: u32, ok: bool) {
    for (var j = 0u; j < 4u; j++) {
        let i = (sample * C_OUT + co + j) * HW4 + q;
        if ok && co + j < C_OUT {
            y[i] = vec4<stored>(epilogue(acc[j], Channel(bias[j], slope[j]), i));
        }
    }
}

/// The parameters of output channels co .. co + 3 (co % 4 == 0) from texels `first` (0: biases,
/// 8: slopes) + co % 8 .. + 3 of the tile's row of p, component (co % 32) / 8 of each.
fn params(co: u32, first: u32) -> vec4<f32> {
    let j = first + co % 8u;
    let b = co / CO_TILE;
    let h = co % CO_TILE / 8u;
    return vec4(textureLoad(p, vec2(j, b), 0)[h], textureLoad(p, vec2(j + 1u, b), 0)[h], textureLoad(p, vec2(j + 2u, b), 0)[h], textureLoad(p, vec2(j + 3u, b), 0)[h]);
}

/// Writes output channels co .. co + 3 with their parameters.
fn finish(acc: mat4x4<f32>, co: u32, q: u32, sample: u32, ok: bool) {
    put(acc, co, params(co, 0u), params(co, 8u), q, sample, ok);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // The tile is the workgroup's; the half of its channels and the two pixel vec4s the
    // invocation's. Spare invocations compute clamped pixel vec4s and store nothing. Tile g is
    // block g % CO_BLOCKS of pixel group g / CO_BLOCKS: the blocks that read the same inputs
    // come one after another (see `pointwise_vec4_subgroup.wgsl`).
    let g = wid.x + wid.y * nwg.x;
    let live = g < CO_BLOCKS * PX_GROUPS;
    let block = g % CO_BLOCKS;
    let half = lid / (WG / 2u);
    let q0 = min(g / CO_BLOCKS, PX_GROUPS - 1u) * WG + lid % (WG / 2u);
    let q1 = q0 + WG / 2u;
    let x_at = wid.z * C_IN * HW4;
    let at = At(x_at + min(q0, HW4 - 1u), x_at + min(q1, HW4 - 1u), vec2(half * 16u, block * CI4));
    var t = Tile();
    for (var k = 0u; k + 2u <= CI4; k += 2u) {
        t = group(group(t, k, at), k + 1u, at);
    }
    if CI4 % 2u == 1u {
        t = group(t, CI4 - 1u, at);
    }
    let c0 = block * CO_TILE + half * 16u;
    let ok0 = live && q0 < HW4;
    let ok1 = live && q1 < HW4;
    finish(t.m00, c0, q0, wid.z, ok0);
    finish(t.m01, c0 + 4u, q0, wid.z, ok0);
    finish(t.m02, c0 + 8u, q0, wid.z, ok0);
    finish(t.m03, c0 + 12u, q0, wid.z, ok0);
    finish(t.m10, c0, q1, wid.z, ok1);
    finish(t.m11, c0 + 4u, q1, wid.z, ok1);
    finish(t.m12, c0 + 8u, q1, wid.z, ok1);
    finish(t.m13, c0 + 12u, q1, wid.z, ok1);
}
