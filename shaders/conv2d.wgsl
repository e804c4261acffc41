// Direct 2-D convolution, dense or grouped: one invocation computes CO_TILE output channels (a
// divisor of the channels of a group, chosen by the compiler) of one output pixel of one sample,
// so each input tap it loads (and normalises) serves CO_TILE multiply-adds; padding is handled
// branch-free (a clamped load, then zero).
// Bias, activation and residual run in the epilogue; an optional per-channel affine prologue
// normalises in-bounds input taps (never the zero padding).
// Layouts: x [C_IN, H_IN, W_IN], y [C_OUT, H_OUT, W_OUT] per sample; the compiler packs the weights
// [C_OUT / CO_TILE, C_IN / GROUP, KH, KW, CO_TILE rounded up to 4] so a tap's weights for the tile
// are whole vec4 loads (one load instruction per 4 multiply-adds);
// the sample is workgroup_id.z. p = [bias; C_OUT] ++ [prelu slope; C_OUT] ++ [prologue scale; C_IN]
// ++ [prologue shift; C_IN].

// mfn:constants
alias stored = f32;
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
const CO_TILE: u32 = 4u;
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
/// vec4s holding the weights of one tap for a tile of CO_TILE output channels.
const CO_VECS: u32 = (CO_TILE + 3u) / 4u;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

fn epilogue(acc: f32, co: u32, i: u32) -> f32 {
    var v = acc + p[co];
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * p[C_OUT + co], v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += f32(r[i]); }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if t >= (C_OUT / CO_TILE) * H_OUT * W_OUT { return; }
    let co0 = (t / (H_OUT * W_OUT)) * CO_TILE;
    let pix = t % (H_OUT * W_OUT);
    let oy = pix / W_OUT;
    let ox = pix % W_OUT;
    let ci0 = (co0 / C_OUT_G) * C_IN_G;
    let x0 = wid.z * C_IN * H_IN * W_IN;
    var acc: array<vec4<f32>, CO_VECS>;
    for (var ci = 0u; ci < C_IN_G; ci++) {
        let c = ci0 + ci;
        var scale = 1.0;
        var shift = 0.0;
        if HAS_PROLOGUE {
            scale = p[2u * C_OUT + c];
            shift = p[2u * C_OUT + C_IN + c];
        }
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_T);
            let row_ok = iy >= 0 && iy < i32(H_IN);
            let row = x0 + (c * H_IN + u32(clamp(iy, 0, i32(H_IN) - 1))) * W_IN;
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * SW + kx) - i32(PAD_L);
                var xv = f32(x[row + u32(clamp(ix, 0, i32(W_IN) - 1))]);
                if HAS_PROLOGUE { xv = xv * scale + shift; }
                // Zero padding (after the prologue: padding is never normalised).
                xv = select(0.0, xv, row_ok && ix >= 0 && ix < i32(W_IN));
                let wi = (((co0 / CO_TILE) * C_IN_G + ci) * KH * KW + ky * KW + kx) * CO_VECS;
                for (var v = 0u; v < CO_VECS; v++) {
                    acc[v] += xv * vec4<f32>(w[wi + v]);
                }
            }
        }
    }
    for (var j = 0u; j < CO_TILE; j++) {
        let co = co0 + j;
        let i = (wid.z * C_OUT + co) * H_OUT * W_OUT + pix;
        y[i] = stored(epilogue(acc[j / 4u][j % 4u], co, i));
    }
}
