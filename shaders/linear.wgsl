// Fully connected layer y[m] = sum_k w[m, k] x[k] + b[m] (Gemm, MatMul): one invocation per
// output of one sample, with the fused epilogue.
// Layouts: x [K], w [M, K], y [M] per sample (workgroup_id.z); p = [bias; M] ++ [slope; M].

// mfn:constants
alias stored = f32;
const K: u32 = 16u;
const M: u32 = 8u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

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
    return Channel(p[c], p[M + c]);
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m = (wid.x + wid.y * nwg.x) * WG + lid;
    if m >= M { return; }
    let x0 = wid.z * K;
    var acc = 0.0;
    for (var k = 0u; k < K; k++) {
        acc += f32(x[x0 + k]) * f32(w[m * K + k]);
    }
    let i = wid.z * M + m;
    y[i] = stored(epilogue(acc, channel(m), i));
}
