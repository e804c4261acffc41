// Direct 2-D convolution, dense or grouped: one invocation per output element of one sample.
// Bias, activation and residual run in the epilogue; an optional per-channel affine prologue
// normalises in-bounds input taps (never the zero padding).
// Layouts: x [C_IN, H_IN, W_IN], w [C_OUT, C_IN / GROUP, KH, KW], y [C_OUT, H_OUT, W_OUT] per sample;
// the sample is workgroup_id.z. p = [bias; C_OUT] ++ [prelu slope; C_OUT] ++ [prologue scale; C_IN]
// ++ [prologue shift; C_IN].

// mfn:constants
const C_IN: u32 = 3u;
const H_IN: u32 = 8u;
const W_IN: u32 = 8u;
const C_OUT: u32 = 4u;
const H_OUT: u32 = 4u;
const W_OUT: u32 = 4u;
const KH: u32 = 3u;
const KW: u32 = 3u;
const SH: u32 = 2u;
const SW: u32 = 2u;
const PAD_T: u32 = 1u;
const PAD_L: u32 = 1u;
const GROUP: u32 = 1u;
const HAS_PROLOGUE: bool = false;
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
const C_IN_G: u32 = C_IN / GROUP;
const C_OUT_G: u32 = C_OUT / GROUP;

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
    if idx >= C_OUT * H_OUT * W_OUT { return; }
    let co = idx / (H_OUT * W_OUT);
    let oy = (idx / W_OUT) % H_OUT;
    let ox = idx % W_OUT;
    let ci0 = (co / C_OUT_G) * C_IN_G;
    let x0 = wid.z * C_IN * H_IN * W_IN;
    var acc = 0.0;
    for (var ci = 0u; ci < C_IN_G; ci++) {
        let c = ci0 + ci;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_T);
            if iy < 0 || iy >= i32(H_IN) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * SW + kx) - i32(PAD_L);
                if ix < 0 || ix >= i32(W_IN) { continue; }
                var xv = x[x0 + (c * H_IN + u32(iy)) * W_IN + u32(ix)];
                if HAS_PROLOGUE { xv = xv * p[2u * C_OUT + c] + p[2u * C_OUT + C_IN + c]; }
                acc += xv * w[((co * C_IN_G + ci) * KH + ky) * KW + kx];
            }
        }
    }
    let i = wid.z * C_OUT * H_OUT * W_OUT + idx;
    y[i] = epilogue(acc, co, i);
}
