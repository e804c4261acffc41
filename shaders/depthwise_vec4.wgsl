// Depthwise 2-D convolution (one filter per channel) with horizontal stride 1 on rows of a
// multiple of 4 pixels (input and output), with the fused bias/activation/residual epilogue.
// One invocation computes 8 neighbouring outputs of a row of one sample (two vec4s): it reads
// each input row it needs as 4 aligned vec4 loads (the 8 pixels under the outputs and the vec4
// either side, zero outside the map) instead of 8 + KW - 1 scalar loads.
// Layouts: x [C, H_IN, W_IN], w [C, 1, KH, KW], y [C, H_OUT, W_OUT] per sample (workgroup_id.z);
// p = [bias; C] ++ [prelu slope; C]. Needs W_IN % 4 == 0, W_OUT % 4 == 0, PAD_L <= 4 and
// KW - 1 - PAD_L <= 4 (the compiler checks).

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
const PAD_T: u32 = 1u;
const PAD_L: u32 = 1u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

const W_IN4: u32 = W_IN / 4u;
const W_OUT4: u32 = W_OUT / 4u;
/// Invocations per output row: 8 outputs (2 vec4) each.
const OX_CHUNKS: u32 = (W_OUT4 + 1u) / 2u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<stored>>;
@group(0) @binding(1) var<storage, read> w: array<stored>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<vec4<stored>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<stored>>;

/// A channel's epilogue parameters, loaded once for all the outputs of the channel an
/// invocation writes (on lavapipe every load is a per-lane loop).
struct Channel {
    bias: f32,
    slope: f32,
}

fn channel(c: u32) -> Channel {
    return Channel(p[c], p[C + c]);
}

fn epilogue(acc: vec4<f32>, ch: Channel, i: u32) -> vec4<f32> {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, vec4(0.0)); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= vec4(0.0)); }
    if ACT == ACT_CLIP { v = clamp(v, vec4(CLIP_MIN), vec4(CLIP_MAX)); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += vec4<f32>(r[i]); }
    return v;
}

/// The vec4 of input row `row` (vec4 index) at vec4 column `q`, zero outside the map.
fn load(row: u32, q: i32, row_ok: bool) -> vec4<f32> {
    let v = vec4<f32>(x[row + u32(clamp(q, 0, i32(W_IN4) - 1))]);
    return select(vec4(0.0), v, row_ok && q >= 0 && q < i32(W_IN4));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if t >= C * H_OUT * OX_CHUNKS { return; }
    let c = t / (H_OUT * OX_CHUNKS);
    let oy = (t / OX_CHUNKS) % H_OUT;
    let q0 = i32((t % OX_CHUNKS) * 2u);
    let x0 = (wid.z * C + c) * H_IN * W_IN4;
    var acc: array<f32, 8>;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky) - i32(PAD_T);
        let row_ok = iy >= 0 && iy < i32(H_IN);
        let row = x0 + u32(clamp(iy, 0, i32(H_IN) - 1)) * W_IN4;
        // win[j] = input pixel 4 * q0 - 4 + j of the row.
        let l = load(row, q0 - 1, row_ok && PAD_L > 0u);
        let a = load(row, q0, row_ok);
        let b = load(row, q0 + 1, row_ok);
        let e = load(row, q0 + 2, row_ok && KW - 1u > PAD_L);
        let win = array<f32, 16>(l.x, l.y, l.z, l.w, a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, e.x, e.y, e.z, e.w);
        for (var kx = 0u; kx < KW; kx++) {
            let wv = f32(w[(c * KH + ky) * KW + kx]);
            for (var o = 0u; o < 8u; o++) {
                acc[o] += win[4u + o + kx - PAD_L] * wv;
            }
        }
    }
    let ch = channel(c);
    for (var h = 0u; h < 2u; h++) {
        let q = u32(q0) + h;
        if q < W_OUT4 {
            let i = ((wid.z * C + c) * H_OUT + oy) * W_OUT4 + q;
            y[i] = vec4<stored>(epilogue(vec4(acc[4u * h], acc[4u * h + 1u], acc[4u * h + 2u], acc[4u * h + 3u]), ch, i));
        }
    }
}
