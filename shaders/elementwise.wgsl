// Element-wise operations that no producer absorbed: an activation, a per-channel affine map, or
// a binary operation of two same-shaped tensors. One invocation per element of one sample.
// Layouts: x, r, y [C, INNER] per sample (workgroup_id.z). p: for MODE_ACT [zeros; C] ++ [prelu
// slope; C]; for MODE_AFFINE [scale; C] ++ [shift; C].

// mfn:constants
alias stored = f32;
const C: u32 = 4u;
const INNER: u32 = 16u;
const MODE: u32 = 0u;
const BINOP: u32 = 0u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const WG: u32 = 64u;
// mfn:end-constants

const MODE_ACT: u32 = 0u;
const MODE_AFFINE: u32 = 1u;
const MODE_BINARY: u32 = 2u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<stored>;
@group(0) @binding(3) var<storage, read_write> y: array<stored>;

fn activate(acc: f32, c: u32) -> f32 {
    var v = acc;
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * p[C + c], v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    return v;
}

fn binary(a: f32, b: f32) -> f32 {
    switch BINOP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        default: { return a / b; }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= C * INNER { return; }
    let c = idx / INNER;
    let i = wid.z * C * INNER + idx;
    var v = f32(x[i]);
    if MODE == MODE_ACT { v = activate(v, c); }
    if MODE == MODE_AFFINE { v = v * p[c] + p[C + c]; }
    if MODE == MODE_BINARY { v = binary(v, f32(r[i])); }
    y[i] = stored(v);
}
