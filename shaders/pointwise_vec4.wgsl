// Pointwise (1x1, stride 1, no padding) convolution where the feature map holds a multiple of 4
// pixels: y[co, p] = sum_ci w[co, ci] x[ci, p], with activations read and written as vec4 of 4
// neighbouring pixels. Each invocation computes CO_TILE = 8 output channels by 4 * PX_VECS
// pixels of one sample: per input channel it makes 2 + PX_VECS vector loads (the packed weights
// w[ci][co / 4], then the inputs) for 32 * PX_VECS multiply-adds. On lavapipe, which runs the
// invocations of a workgroup as SIMD lanes, the number of load instructions per multiply-add is
// what bounds a GEMM. Neighbouring invocations take neighbouring pixel vectors (contiguous loads).
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z), HW % 4 == 0;
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

const CO_TILE: u32 = 8u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
/// vec4s of pixels one invocation computes, HW4 / PX_VECS apart.
const PX_VECS: u32 = 2u;
const HW4: u32 = HW / 4u;
const PX_CHUNKS: u32 = (HW4 + PX_VECS - 1u) / PX_VECS;
/// vec4 columns of one packed weight row (w[ci][..]).
const W_ROW: u32 = CO_BLOCKS * 2u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<stored>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if t >= CO_BLOCKS * PX_CHUNKS { return; }
    let block = t / PX_CHUNKS;
    var q: array<u32, PX_VECS>;
    var xi: array<u32, PX_VECS>;
    for (var k = 0u; k < PX_VECS; k++) {
        q[k] = t % PX_CHUNKS + k * PX_CHUNKS;
        xi[k] = wid.z * C_IN * HW4 + min(q[k], HW4 - 1u);
    }
    // acc[k * 8 + j]: output channel block * 8 + j at the 4 pixels of vector q[k].
    var acc: array<vec4<f32>, 8u * PX_VECS>;
    for (var ci = 0u; ci < C_IN; ci++) {
        let wi = ci * W_ROW + 2u * block;
        let wl = vec4<f32>(w[wi]);
        let wh = vec4<f32>(w[wi + 1u]);
        for (var k = 0u; k < PX_VECS; k++) {
            let xv = vec4<f32>(x[xi[k] + ci * HW4]);
            acc[k * 8u + 0u] += xv * wl.x;
            acc[k * 8u + 1u] += xv * wl.y;
            acc[k * 8u + 2u] += xv * wl.z;
            acc[k * 8u + 3u] += xv * wl.w;
            acc[k * 8u + 4u] += xv * wh.x;
            acc[k * 8u + 5u] += xv * wh.y;
            acc[k * 8u + 6u] += xv * wh.z;
            acc[k * 8u + 7u] += xv * wh.w;
        }
    }
    for (var k = 0u; k < PX_VECS; k++) {
        if q[k] >= HW4 { continue; }
        for (var j = 0u; j < CO_TILE; j++) {
            let co = block * CO_TILE + j;
            if co < C_OUT {
                let i = (wid.z * C_OUT + co) * HW4 + q[k];
                y[i] = vec4<stored>(epilogue(acc[k * 8u + j], co, i));
            }
        }
    }
}
