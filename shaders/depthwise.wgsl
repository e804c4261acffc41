// Depthwise 2-D convolution (one filter per channel), with the fused bias/activation/residual
// epilogue. One invocation computes OX_TILE neighbouring outputs of a row of one sample: it loads
// each input row segment they share once (zero outside the map, no divergent branches) and each
// weight once for OX_TILE multiply-adds.
// Layouts: x [C, H_IN, W_IN], w [C, 1, KH, KW], y [C, H_OUT, W_OUT] per sample (workgroup_id.z);
// p = [bias; C] ++ [prelu slope; C].

// mfn:constants
alias stored = f32;
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

/// Outputs along a row one invocation computes: they share the input rows they read.
const OX_TILE: u32 = 8u;
const OX_CHUNKS: u32 = (W_OUT + OX_TILE - 1u) / OX_TILE;
/// Input columns the OX_TILE outputs of a row read.
const SPAN: u32 = (OX_TILE - 1u) * SW + KW;
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if t >= C * H_OUT * OX_CHUNKS { return; }
    let c = t / (H_OUT * OX_CHUNKS);
    let oy = (t / OX_CHUNKS) % H_OUT;
    let ox0 = (t % OX_CHUNKS) * OX_TILE;
    let x0 = (wid.z * C + c) * H_IN * W_IN;
    let ix0 = i32(ox0 * SW) - i32(PAD_L);
    var acc: array<f32, OX_TILE>;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky) - i32(PAD_T);
        let row_ok = iy >= 0 && iy < i32(H_IN);
        let row = x0 + u32(clamp(iy, 0, i32(H_IN) - 1)) * W_IN;
        // The input row segment all OX_TILE outputs read, zero outside the map (padding).
        var xs: array<f32, SPAN>;
        for (var j = 0u; j < SPAN; j++) {
            let ix = ix0 + i32(j);
            let v = f32(x[row + u32(clamp(ix, 0, i32(W_IN) - 1))]);
            xs[j] = select(0.0, v, row_ok && ix >= 0 && ix < i32(W_IN));
        }
        for (var kx = 0u; kx < KW; kx++) {
            let wv = f32(w[(c * KH + ky) * KW + kx]);
            for (var o = 0u; o < OX_TILE; o++) {
                acc[o] += xs[o * SW + kx] * wv;
            }
        }
    }
    let ch = channel(c);
    for (var o = 0u; o < OX_TILE; o++) {
        let ox = ox0 + o;
        if ox < W_OUT {
            let i = ((wid.z * C + c) * H_OUT + oy) * W_OUT + ox;
            y[i] = stored(epilogue(acc[o], ch, i));
        }
    }
}
