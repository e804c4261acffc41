// Pointwise (1x1, stride 1, no padding) convolution for feature maps of any size, with the inputs
// shared across a subgroup: `pointwise.wgsl` dispatch for dispatch (same tiles, workgroups and
// packed weights), for devices with subgroups of at least 8 invocations. Every invocation of a
// workgroup needs the same 8 pixels of each input channel, so invocation i of the subgroup loads
// pixel p0 + i % 8 and takes the other 7 from its neighbours with subgroupBroadcast: per input
// channel one vec4 load of weights and one scalar load of inputs for 32 multiply-adds.
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z); the compiler packs w as
// [C_IN, C_OUT rounded up to 4] (zero-padded) so an invocation's 4 weights are one vec4 load;
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

/// Pixels an invocation computes.
const PX: u32 = 8u;
/// Groups of 4 output channels: one an invocation.
const CO4: u32 = (C_OUT + 3u) / 4u;
/// Workgroups across the output channels, and across the pixels.
const CO_GROUPS: u32 = (CO4 + WG - 1u) / WG;
const PX_GROUPS: u32 = (HW + PX - 1u) / PX;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

/// A channel's epilogue parameters (bias and PReLU slope).
struct Channel {
    bias: f32,
    slope: f32,
}

/// The epilogue parameters of output channels co .. co + 3 (clamped to the last), loaded once for
/// all the outputs of those channels an invocation writes (on lavapipe every load is a per-lane
/// loop).
struct Quad {
    bias: vec4<f32>,
    slope: vec4<f32>,
}

fn quad(co: u32) -> Quad {
    let i = min(vec4(co) + vec4(0u, 1u, 2u, 3u), vec4(C_OUT - 1u));
    return Quad(vec4(p[i.x], p[i.y], p[i.z], p[i.w]), vec4(p[C_OUT + i.x], p[C_OUT + i.y], p[C_OUT + i.z], p[C_OUT + i.w]));
}

/// Channel j of a quad.
fn member(q: Quad, j: u32) -> Channel {
    return Channel(q.bias[j], q.slope[j]);
}

fn epilogue(acc: f32, ch: Channel, i: u32) -> f32 {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += f32(r[i]); }
    return v;
}

/// The accumulators of an invocation: column k of `lo` (of `hi`) holds its 4 output channels at
/// pixel p0 + k (p0 + 4 + k).
struct Tile {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
}

/// Where an invocation reads: its pixel p0 + lane % 8 of input channel 0 of its sample, and its
/// group of 4 output channels.
struct At {
    x: u32,
    co4: u32,
}

fn mac(acc: mat4x4<f32>, xs: vec4<f32>, wv: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(fma(vec4(xs.x), wv, acc[0]), fma(vec4(xs.y), wv, acc[1]), fma(vec4(xs.z), wv, acc[2]), fma(vec4(xs.w), wv, acc[3]));
}

/// `t` plus input channel `ci`.
fn accumulate(t: Tile, ci: u32, at: At) -> Tile {
    let wv = vec4<f32>(w[ci * CO4 + at.co4]);
    let xs = pixels(at.x + ci * HW);
    return Tile(mac(t.lo, xs[0], wv), mac(t.hi, xs[1], wv));
}

/// Writes the invocation's channels (those below C_OUT) at pixels p .. p + 3 (those inside the map).
fn put(acc: mat4x4<f32>, co4: u32, q: Quad, p: u32, sample: u32, live: bool) {
    for (var k = 0u; k < 4u; k++) {
        for (var j = 0u; j < 4u; j++) {
            let co = 4u * co4 + j;
            let i = (sample * C_OUT + co) * HW + p + k;
            if live && co < C_OUT && p + k < HW {
                y[i] = stored(epilogue(acc[k][j], member(q, j), i));
            }
        }
    }
}

/// The workgroup's pixels p0 + k, k in 0..8, of one input channel (past the map's end, its last
/// pixel). `row` is this invocation's share, pixel p0 + lane % 8; the others come from its
/// neighbours (subgroupBroadcast takes a constant lane).
fn pixels(row: u32) -> array<vec4<f32>, 2> {
    let v = f32(x[row]);
    return array(
        vec4(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
        vec4(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)),
    );
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    // The pixels are the workgroup's, the channels the invocation's. Spare invocations compute
    // clamped channels and store nothing.
    let g = wid.x + wid.y * nwg.x;
    let p0 = (g % PX_GROUPS) * PX;
    let co4 = min(g / PX_GROUPS, CO_GROUPS - 1u) * WG + lid;
    let live = g < CO_GROUPS * PX_GROUPS && co4 < CO4;
    let at = At(wid.z * C_IN * HW + min(p0 + lane % 8u, HW - 1u), min(co4, CO4 - 1u));
    // Four input channels an iteration: the loop-carried tile is written once per iteration
    // (lavapipe masks every write to a variable that lives across iterations).
    var t = Tile();
    for (var ci = 0u; ci + 4u <= C_IN; ci += 4u) {
        t = accumulate(accumulate(accumulate(accumulate(t, ci, at), ci + 1u, at), ci + 2u, at), ci + 3u, at);
    }
    for (var ci = C_IN - C_IN % 4u; ci < C_IN; ci++) {
        t = accumulate(t, ci, at);
    }
    let q = quad(4u * min(co4, CO4 - 1u));
    put(t.lo, co4, q, p0, wid.z, live);
    put(t.hi, co4, q, p0 + 4u, wid.z, live);
}
