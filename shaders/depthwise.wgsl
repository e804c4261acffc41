// Depthwise 2-D convolution (one filter per channel): one invocation per output element of one
// sample, with the fused bias/activation/residual epilogue.
// Layouts: x [C, H_IN, W_IN], w [C, 1, KH, KW], y [C, H_OUT, W_OUT] per sample (workgroup_id.z);
// p = [bias; C] ++ [prelu slope; C].

// mfn:constants
const C: u32 = 4u;
const H_IN: u32 = 8u;
const W_IN: u32 = 8u;
const H_OUT: u32 = 8u;
const W_OUT: u32 = 8u;
const KH: u32 = 3u;
const KW: u32 = 3u;
const SH: u32 = 1u;
const SW: u32 = 1u;
const PAD_T: u32 = 1u;
const PAD_L: u32 = 1u;
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

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn epilogue(acc: f32, c: u32, i: u32) -> f32 {
    var v = acc + p[c];
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * p[C + c], v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += r[i]; }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= C * H_OUT * W_OUT { return; }
    let c = idx / (H_OUT * W_OUT);
    let oy = (idx / W_OUT) % H_OUT;
    let ox = idx % W_OUT;
    let x0 = (wid.z * C + c) * H_IN * W_IN;
    var acc = 0.0;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky) - i32(PAD_T);
        if iy < 0 || iy >= i32(H_IN) { continue; }
        for (var kx = 0u; kx < KW; kx++) {
            let ix = i32(ox * SW + kx) - i32(PAD_L);
            if ix < 0 || ix >= i32(W_IN) { continue; }
            acc += x[x0 + u32(iy) * W_IN + u32(ix)] * w[(c * KH + ky) * KW + kx];
        }
    }
    let i = wid.z * C * H_OUT * W_OUT + idx;
    y[i] = epilogue(acc, c, i);
}
