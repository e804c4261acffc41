// Pointwise (1x1, stride 1, no padding) convolution where the feature map holds a multiple of 4
// pixels, with the weights shared across a subgroup: `pointwise_vec4.wgsl` dispatch for dispatch
// (same tiles, same workgroups, same packed weights), for devices with subgroups of at least 8
// invocations. Every invocation of a workgroup works on the same 32 output channels, so per group
// of 4 input channels each invocation loads 4 vectors of the tile's weights (invocation i of the
// subgroup: channels co0 + i, + 8, + 16, + 24, each over the 4 input channels) and takes the
// other 124 from its neighbours with subgroupBroadcast: per 4 input channels 4 vector loads of
// inputs and 4 of weights for 512 multiply-adds. On lavapipe, where every load is a per-lane loop
// and a broadcast a register shuffle, loads are what counts.
// The accumulators are named matrices, never a local array indexed in a loop (on lavapipe, which
// runs invocations as SIMD lanes, that becomes per-lane memory traffic), and the loop carries them
// through 8 input channels an iteration (lavapipe masks every write to a variable that lives
// across iterations).
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z), HW % 4 == 0; the compiler
// packs w as [C_OUT / 32 (rounded up)][C_IN / 4 (rounded up)][32] vec4s, vector (b, g, j) holding
// the weights of output channel 32b + j for input channels 4g .. 4g + 3 (zero-padded);
// p = [bias; C_OUT] ++ [prelu slope; C_OUT].

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
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
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

/// The accumulators of an invocation: m<j> holds output channels co0 + 4j .. + 3 (column i:
/// channel co0 + 4j + i) at the 4 pixels of its pixel vec4.
struct Tile {
    m0: mat4x4<f32>,
    m1: mat4x4<f32>,
    m2: mat4x4<f32>,
    m3: mat4x4<f32>,
    m4: mat4x4<f32>,
    m5: mat4x4<f32>,
    m6: mat4x4<f32>,
    m7: mat4x4<f32>,
}

/// An invocation's share of the tile's weights for one group of 4 input channels: v<h> holds
/// output channel co0 + 8h + lane % 8 (component u: input channel 4g + u).
struct Share {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

/// acc + the outer product of 4 pixels `xv` and the weights `wv` of 4 output channels.
fn mac(acc: mat4x4<f32>, xv: vec4<f32>, wv: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(fma(xv, vec4(wv.x), acc[0]), fma(xv, vec4(wv.y), acc[1]), fma(xv, vec4(wv.z), acc[2]), fma(xv, vec4(wv.w), acc[3]));
}

/// The 4 output channels of a share's vector `v` that lanes 0 .. 3 of the subgroup hold
/// (subgroupBroadcast takes a constant lane).
fn lanes_lo(v: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}

/// The 4 output channels of a share's vector `v` that lanes 4 .. 7 hold.
fn lanes_hi(v: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}

/// `t` plus input channel 4g + u (pixels `xv`, the tile's weights from the subgroup's shares).
fn accumulate(t: Tile, xv: vec4<f32>, s: Share, u: u32) -> Tile {
    return Tile(
        mac(t.m0, xv, lanes_lo(s.v0[u])),
        mac(t.m1, xv, lanes_hi(s.v0[u])),
        mac(t.m2, xv, lanes_lo(s.v1[u])),
        mac(t.m3, xv, lanes_hi(s.v1[u])),
        mac(t.m4, xv, lanes_lo(s.v2[u])),
        mac(t.m5, xv, lanes_hi(s.v2[u])),
        mac(t.m6, xv, lanes_lo(s.v3[u])),
        mac(t.m7, xv, lanes_hi(s.v3[u])),
    );
}

/// The pixels of input channel `ci` at `x_at` (the invocation's vec4 of channel 0); zero past
/// the last channel (the padded part of a partial group).
fn load_x(x_at: u32, ci: u32) -> vec4<f32> {
    if PARTIAL {
        return select(vec4(0.0), vec4<f32>(x[x_at + min(ci, C_IN - 1u) * HW4]), ci < C_IN);
    }
    return vec4<f32>(x[x_at + ci * HW4]);
}

/// `t` plus the group of input channels 4g .. 4g + 3. `w_at` is the invocation's first share
/// vector of the tile (group 0).
fn group(t: Tile, g: u32, x_at: u32, w_at: u32) -> Tile {
    let i = w_at + g * CO_TILE;
    let s = Share(vec4<f32>(w[i]), vec4<f32>(w[i + 8u]), vec4<f32>(w[i + 16u]), vec4<f32>(w[i + 24u]));
    let c = 4u * g;
    let t1 = accumulate(t, load_x(x_at, c), s, 0u);
    let t2 = accumulate(t1, load_x(x_at, c + 1u), s, 1u);
    let t3 = accumulate(t2, load_x(x_at, c + 2u), s, 2u);
    return accumulate(t3, load_x(x_at, c + 3u), s, 3u);
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

/// An invocation's share of the tile's parameters at offset `at` of p (bias 0, slope C_OUT):
/// output channel co0 + 8h + lane % 8 in component h.
fn params(co: u32, at: u32) -> vec4<f32> {
    let last = C_OUT - 1u;
    return vec4(p[at + min(co, last)], p[at + min(co + 8u, last)], p[at + min(co + 16u, last)], p[at + min(co + 24u, last)]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    // The tile is the workgroup's, the pixels the invocation's. Spare invocations compute a
    // clamped pixel vec4 and store nothing.
    let g = wid.x + wid.y * nwg.x;
    let live = g < CO_BLOCKS * PX_GROUPS;
    let block = min(g / PX_GROUPS, CO_BLOCKS - 1u);
    let q = (g % PX_GROUPS) * WG + lid;
    let x_at = wid.z * C_IN * HW4 + min(q, HW4 - 1u);
    let w_at = block * CI4 * CO_TILE + lane % 8u;
    var t = Tile();
    for (var k = 0u; k + 2u <= CI4; k += 2u) {
        t = group(group(t, k, x_at, w_at), k + 1u, x_at, w_at);
    }
    if CI4 % 2u == 1u {
        t = group(t, CI4 - 1u, x_at, w_at);
    }
    let ok = live && q < HW4;
    let co0 = block * CO_TILE;
    let bias = params(co0 + lane % 8u, 0u);
    let slope = params(co0 + lane % 8u, C_OUT);
    put(t.m0, co0, lanes_lo(bias.x), lanes_lo(slope.x), q, wid.z, ok);
    put(t.m1, co0 + 4u, lanes_hi(bias.x), lanes_hi(slope.x), q, wid.z, ok);
    put(t.m2, co0 + 8u, lanes_lo(bias.y), lanes_lo(slope.y), q, wid.z, ok);
    put(t.m3, co0 + 12u, lanes_hi(bias.y), lanes_hi(slope.y), q, wid.z, ok);
    put(t.m4, co0 + 16u, lanes_lo(bias.z), lanes_lo(slope.z), q, wid.z, ok);
    put(t.m5, co0 + 20u, lanes_hi(bias.z), lanes_hi(slope.z), q, wid.z, ok);
    put(t.m6, co0 + 24u, lanes_lo(bias.w), lanes_lo(slope.w), q, wid.z, ok);
    put(t.m7, co0 + 28u, lanes_hi(bias.w), lanes_hi(slope.w), q, wid.z, ok);
}
