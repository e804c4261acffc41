// Pointwise (1x1, stride 1, no padding) convolution, a GEMM y[co, p] = sum_ci w[co, ci] x[ci, p]:
// each invocation computes CO_TILE output channels of one pixel of one sample, so every input
// value it loads serves CO_TILE multiply-adds.
// Layouts: x [C_IN, HW], w [C_OUT, C_IN], y [C_OUT, HW] per sample (workgroup_id.z);
// p = [bias; C_OUT] ++ [prelu slope; C_OUT].

// mfn:constants
const C_IN: u32 = 8u;
const C_OUT: u32 = 8u;
const HW: u32 = 16u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

const CO_TILE: u32 = 4u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn epilogue(acc: f32, co: u32, i: u32) -> f32 {
    var v = acc + p[co];
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * p[C_OUT + co], v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += r[i]; }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= CO_BLOCKS * HW { return; }
    let pix = idx % HW;
    let co0 = (idx / HW) * CO_TILE;
    let x0 = wid.z * C_IN * HW + pix;
    // Rows past C_OUT read row C_OUT - 1 (in bounds) and are never stored.
    var rows: array<u32, CO_TILE>;
    for (var t = 0u; t < CO_TILE; t++) { rows[t] = min(co0 + t, C_OUT - 1u) * C_IN; }
    var acc = vec4<f32>(0.0);
    for (var ci = 0u; ci < C_IN; ci++) {
        let xv = x[x0 + ci * HW];
        acc += xv * vec4<f32>(w[rows[0] + ci], w[rows[1] + ci], w[rows[2] + ci], w[rows[3] + ci]);
    }
    for (var t = 0u; t < CO_TILE; t++) {
        let co = co0 + t;
        if co < C_OUT {
            let i = (wid.z * C_OUT + co) * HW + pix;
            y[i] = epilogue(acc[t], co, i);
        }
    }
}
