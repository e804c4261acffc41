// Pointwise (1x1, stride 1, no padding) convolution where the feature map holds a multiple of 4
// pixels, with the weights shared across a subgroup: `pointwise_vec4.wgsl` dispatch for dispatch
// (same tiles, same workgroups, same packed weights), for devices with subgroups of at least 8
// invocations. Every invocation of a workgroup works on the same 16 output channels, so per input
// channel each invocation loads 2 of their weights (invocation i of the subgroup channels i and
// 8 + i) and takes the other 14 from its neighbours with subgroupBroadcast, instead of loading all
// 16: per input channel 2 vector loads of inputs and 2 scalar loads of weights for 128
// multiply-adds. On lavapipe, where every load is a per-lane loop and a broadcast a register
// shuffle, that is about 1.5 times as fast.
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z), HW % 4 == 0; the compiler
// packs w as [C_IN, C_OUT rounded up to 16] (zero-padded); p = [bias; C_OUT] ++ [prelu slope; C_OUT].

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

const CO_TILE: u32 = 16u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const HW4: u32 = HW / 4u;
/// Invocations per tile of output channels: 2 pixel vec4s each.
const PX_CHUNKS: u32 = (HW4 + 1u) / 2u;
/// Workgroups per tile of output channels.
const PX_GROUPS: u32 = (PX_CHUNKS + WG - 1u) / WG;
/// Columns of the packed weights: C_OUT rounded up to the tile.
const W_COLS: u32 = CO_BLOCKS * CO_TILE;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<stored>>;
@group(0) @binding(1) var<storage, read> w: array<stored>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<vec4<stored>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<stored>>;

fn epilogue(acc: vec4<f32>, co: u32, i: u32) -> vec4<f32> {
    var v = acc + p[co];
    if ACT == ACT_RELU { v = max(v, vec4(0.0)); }
    if ACT == ACT_PRELU { v = select(v * p[C_OUT + co], v, v >= vec4(0.0)); }
    if ACT == ACT_CLIP { v = clamp(v, vec4(CLIP_MIN), vec4(CLIP_MAX)); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += vec4<f32>(r[i]); }
    return v;
}

/// The accumulators of an invocation: m<k><j> holds output channels co0 + 4j .. + 3 (column i:
/// channel co0 + 4j + i) at the 4 pixels of its pixel vec4 k.
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

/// Where an invocation reads: its two pixel vec4s of input channel 0, and its share of the weights.
struct At {
    x0: u32,
    x1: u32,
    w: u32,
}

/// acc + the outer product of 4 pixels `xv` and the weights `wv` of 4 output channels.
fn mac(acc: mat4x4<f32>, xv: vec4<f32>, wv: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(fma(xv, vec4(wv.x), acc[0]), fma(xv, vec4(wv.y), acc[1]), fma(xv, vec4(wv.z), acc[2]), fma(xv, vec4(wv.w), acc[3]));
}

/// `t` plus input channel `ci`.
fn accumulate(t: Tile, ci: u32, at: At) -> Tile {
    let xv0 = vec4<f32>(x[at.x0 + ci * HW4]);
    let xv1 = vec4<f32>(x[at.x1 + ci * HW4]);
    let wm = weights(ci, at.w);
    return Tile(
        mac(t.m00, xv0, wm[0]),
        mac(t.m01, xv0, wm[1]),
        mac(t.m02, xv0, wm[2]),
        mac(t.m03, xv0, wm[3]),
        mac(t.m10, xv1, wm[0]),
        mac(t.m11, xv1, wm[1]),
        mac(t.m12, xv1, wm[2]),
        mac(t.m13, xv1, wm[3]),
    );
}

/// The weights of input channel `ci` for the tile (column j: channels co0 + 4j .. + 3). Invocation
/// `lane` of the subgroup loads channels co0 + lane % 8 and that + 8 (`w` = their row offset);
/// the rest come from its neighbours (subgroupBroadcast takes a constant lane).
fn weights(ci: u32, w_at: u32) -> mat4x4<f32> {
    let lo = f32(w[ci * W_COLS + w_at]);
    let hi = f32(w[ci * W_COLS + w_at + 8u]);
    return mat4x4(
        vec4(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u)),
        vec4(subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u)),
        vec4(subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u)),
        vec4(subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u)),
    );
}

/// Writes output channels co .. co + 3 (those below C_OUT) at pixel vec4 q.
fn put(acc: mat4x4<f32>, co: u32, q: u32, sample: u32, ok: bool) {
    for (var j = 0u; j < 4u; j++) {
        let i = (sample * C_OUT + co + j) * HW4 + q;
        if ok && co + j < C_OUT {
            y[i] = vec4<stored>(epilogue(acc[j], co + j, i));
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    // The tile is the workgroup's, the pixels the invocation's. Spare invocations compute
    // clamped pixels and store nothing.
    let g = wid.x + wid.y * nwg.x;
    let live = g < CO_BLOCKS * PX_GROUPS;
    let co0 = min(g / PX_GROUPS, CO_BLOCKS - 1u) * CO_TILE;
    let chunk = (g % PX_GROUPS) * WG + lid;
    let q0 = chunk;
    let q1 = chunk + PX_CHUNKS;
    // This invocation's share of the tile's weights: channels co0 + lane % 8 and that + 8.
    let at = At(wid.z * C_IN * HW4 + min(q0, HW4 - 1u), wid.z * C_IN * HW4 + min(q1, HW4 - 1u), co0 + lane % 8u);
    // Four input channels an iteration: the loop-carried tile is written once per iteration
    // (lavapipe masks every write to a variable that lives across iterations).
    var t = Tile();
    for (var ci = 0u; ci + 4u <= C_IN; ci += 4u) {
        t = accumulate(accumulate(accumulate(accumulate(t, ci, at), ci + 1u, at), ci + 2u, at), ci + 3u, at);
    }
    for (var ci = C_IN - C_IN % 4u; ci < C_IN; ci++) {
        t = accumulate(t, ci, at);
    }
    let ok0 = live && q0 < PX_CHUNKS;
    let ok1 = live && q0 < PX_CHUNKS && q1 < HW4;
    put(t.m00, co0, q0, wid.z, ok0);
    put(t.m01, co0 + 4u, q0, wid.z, ok0);
    put(t.m02, co0 + 8u, q0, wid.z, ok0);
    put(t.m03, co0 + 12u, q0, wid.z, ok0);
    put(t.m10, co0, q1, wid.z, ok1);
    put(t.m11, co0 + 4u, q1, wid.z, ok1);
    put(t.m12, co0 + 8u, q1, wid.z, ok1);
    put(t.m13, co0 + 12u, q1, wid.z, ok1);
}
