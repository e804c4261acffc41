// Fully connected layer y[m] = sum_k w[m, k] x[k] + b[m] (Gemm, MatMul): one invocation per
// output of one sample, with the fused epilogue. The loop adds UNROLL products an iteration, in
// order (the same sums as one a time): lavapipe ends every loop of an invocation once its loops
// have run 65,535 iterations in all, which one product an iteration would reach at K = 65,535,
// leaving the sum half done without a word; the runtime refuses longer loops there
// (`Kernel::unit_iterations`).
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

/// Input k of the sample at x0 times weight k of the row at w0.
fn product(x0: u32, w0: u32, k: u32) -> f32 {
    return f32(x[x0 + k]) * f32(w[w0 + k]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m = (wid.x + wid.y * nwg.x) * WG + lid;
    if m >= M { return; }
    let x0 = wid.z * K;
    let w0 = m * K;
    var acc = 0.0;
    var k = 0u;
    for (; k + UNROLL <= K; k += UNROLL) {
        acc += product(x0, w0, k);
        acc += product(x0, w0, k + 1u);
        acc += product(x0, w0, k + 2u);
        acc += product(x0, w0, k + 3u);
        acc += product(x0, w0, k + 4u);
        acc += product(x0, w0, k + 5u);
        acc += product(x0, w0, k + 6u);
        acc += product(x0, w0, k + 7u);
    }
    for (; k < K; k++) {
        acc += product(x0, w0, k);
    }
    let i = wid.z * M + m;
    y[i] = stored(epilogue(acc, channel(m), i));
}
