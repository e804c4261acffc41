// Global depthwise convolution (GDConv): per channel, a weighted sum over the whole feature map,
// G[c] = sum_{i,j} K[c,i,j] * F[c,i,j]. One invocation per channel of one sample sums its HW
// products in a register, then applies the fused epilogue. (A workgroup per channel reducing in
// workgroup memory needs log2(WG) barriers for HW = 49 products; on lavapipe, where barriers are
// costly, that was the slower kernel: see docs/performance.md.) The loop adds UNROLL products an
// iteration, in order (the same sums as one a time): lavapipe ends every loop of an invocation
// once its loops have run 65,535 iterations in all, which one product an iteration would reach on
// a 256x256 map, leaving the sum half done without a word; the runtime refuses longer loops there
// (`Kernel::unit_iterations`).
// Layouts: x [C, PLANE] per sample (workgroup_id.z), a channel's HW pixels at the start of its
// plane (PLANE > HW where the compiler pads the map for the vec4 pointwise kernels:
// compiler/src/codegen/layout.rs), w [C, HW], y [C] per sample; p = [bias; C] ++ [slope; C].

// mfn:constants
alias stored = f32;
const C: u32 = 4u;
const HW: u32 = 49u;
const PLANE: u32 = 52u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

/// Products an iteration of the loop adds.
const UNROLL: u32 = 8u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<stored>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

/// A channel's epilogue parameters, loaded once for all the outputs of the channel an
/// invocation writes (on lavapipe every load is a per-lane loop).
struct Channel {
    bias: f32,
    slope: f32,
}

fn channel(c: u32) -> Channel {
    return Channel(p[c], p[C + c]);
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

/// Pixel k of the channel at x0 times weight k of the filter at w0.
fn product(x0: u32, w0: u32, k: u32) -> f32 {
    return f32(x[x0 + k]) * f32(w[w0 + k]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = (wid.x + wid.y * nwg.x) * WG + lid;
    if c >= C { return; }
    let x0 = (wid.z * C + c) * PLANE;
    let w0 = c * HW;
    var acc = 0.0;
    var k = 0u;
    for (; k + UNROLL <= HW; k += UNROLL) {
        acc += product(x0, w0, k);
        acc += product(x0, w0, k + 1u);
        acc += product(x0, w0, k + 2u);
        acc += product(x0, w0, k + 3u);
        acc += product(x0, w0, k + 4u);
        acc += product(x0, w0, k + 5u);
        acc += product(x0, w0, k + 6u);
        acc += product(x0, w0, k + 7u);
    }
    for (; k < HW; k++) {
        acc += product(x0, w0, k);
    }
    let i = wid.z * C + c;
    y[i] = stored(epilogue(acc, channel(c), i));
}
