// Pointwise (1x1, stride 1, no padding) convolution, a GEMM y[co, p] = sum_ci w[co, ci] x[ci, p]:
// the kernel for feature maps of any size, made for small ones (MobileFaceNet's 7x7), where
// pixels are too few to give every invocation its own (`pointwise_vec4.wgsl` does that for maps
// of a multiple of 4 pixels). A workgroup computes PX = 16 pixels of one sample, in two halves of
// 8 (the tile of the subgroup variant, which shares its dispatch geometry; 16 pixels at once
// measured 1.2 times slower here, its 64 accumulators spilling on lavapipe); each invocation
// computes its group of 4 output channels at those pixels. Per input channel and half it makes
// one vec4 load of its weights and 8 loads of the (shared) inputs for 32 multiply-adds.
// `pointwise_subgroup.wgsl` is the same kernel, dispatch for dispatch, with the inputs shared
// across a subgroup instead of loaded by every invocation; the runtime uses it where the device
// has subgroups of at least 8 invocations.
// The accumulators are named matrices, never a local array indexed in a loop: on lavapipe, which
// runs invocations as SIMD lanes, that becomes per-lane memory traffic.
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z); w is a texture of CO4 RGBA
// texels a row and C_IN rows, texel j of row ci holding the weights of output channels 4j .. 4j + 3
// for input channel ci (zero-padded), so an invocation's 4 weights are one texel (on lavapipe a
// few vector gathers, where a storage-buffer load is a loop over the SIMD lanes);
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

/// Pixels an invocation computes, 8 at a time.
const PX: u32 = 16u;
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
@group(0) @binding(1) var w: texture_2d<f32>;
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

/// Where an invocation reads: input channel 0 of its sample and the workgroup's first pixel, and
/// its group of 4 output channels.
struct At {
    x: u32,
    co4: u32,
}

fn mac(acc: mat4x4<f32>, xs: vec4<f32>, wv: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(fma(vec4(xs.x), wv, acc[0]), fma(vec4(xs.y), wv, acc[1]), fma(vec4(xs.z), wv, acc[2]), fma(vec4(xs.w), wv, acc[3]));
}

/// `t` plus input channel `ci`.
fn accumulate(t: Tile, ci: u32, at: At) -> Tile {
    let wv = textureLoad(w, vec2(at.co4, ci), 0);
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

/// Input `row` + k for k in 0..8 (`row`: the workgroup's first pixel of one input channel), the
/// map's last pixel past its end.
fn pixels(row: u32) -> array<vec4<f32>, 2> {
    let last = row - row % HW + HW - 1u;
    return array(
        vec4(f32(x[min(row, last)]), f32(x[min(row + 1u, last)]), f32(x[min(row + 2u, last)]), f32(x[min(row + 3u, last)])),
        vec4(f32(x[min(row + 4u, last)]), f32(x[min(row + 5u, last)]), f32(x[min(row + 6u, last)]), f32(x[min(row + 7u, last)])),
    );
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // The pixels are the workgroup's, the channels the invocation's. Spare invocations compute
    // clamped channels and store nothing.
    let g = wid.x + wid.y * nwg.x;
    let p0 = (g % PX_GROUPS) * PX;
    let co4 = min(g / PX_GROUPS, CO_GROUPS - 1u) * WG + lid;
    let live = g < CO_GROUPS * PX_GROUPS && co4 < CO4;
    let q = quad(4u * min(co4, CO4 - 1u));
    for (var h = 0u; h < 2u; h++) {
        let p = p0 + 8u * h;
        if p >= HW {
            break;
        }
        let at = At(wid.z * C_IN * HW + p, min(co4, CO4 - 1u));
        // Four input channels an iteration: the loop-carried tile is written once per iteration
        // (lavapipe masks every write to a variable that lives across iterations).
        var t = Tile();
        for (var ci = 0u; ci + 4u <= C_IN; ci += 4u) {
            t = accumulate(accumulate(accumulate(accumulate(t, ci, at), ci + 1u, at), ci + 2u, at), ci + 3u, at);
        }
        for (var ci = C_IN - C_IN % 4u; ci < C_IN; ci++) {
            t = accumulate(t, ci, at);
        }
        put(t.lo, co4, q, p, wid.z, live);
        put(t.hi, co4, q, p + 4u, wid.z, live);
    }
}
