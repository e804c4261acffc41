// Direct 2-D convolution, dense or grouped: one invocation computes 8 output channels (a tile of
// CO_TILE, a divisor of the channels of a group chosen by the compiler, padded to 8 with zero
// weights) at PX = 4 neighbouring output pixels of a row of one sample. Each tap's 8 weights (two
// vec4 loads) serve the 4 pixels, and each input value it loads (and normalises) serves 8
// multiply-adds; padding is handled branch-free (a clamped load, then zero).
// The accumulators are named variables and the pixel loop is written out: on lavapipe, which
// runs invocations as SIMD lanes, a local array indexed in a loop becomes per-lane memory traffic.
// Bias, activation and residual run in the epilogue; an optional per-channel affine prologue
// normalises in-bounds input taps (never the zero padding).
// Layouts: x [C_IN, H_IN, W_IN], y [C_OUT, H_OUT, W_OUT] per sample; the compiler packs the weights
// [C_OUT / CO_TILE, C_IN / GROUP, KH, KW, 8] (zero past CO_TILE) so a tap's weights for the tile
// are two vec4 loads; the sample is workgroup_id.z. p = [bias; C_OUT] ++ [prelu slope; C_OUT] ++
// [prologue scale; C_IN] ++ [prologue shift; C_IN].

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

/// Output pixels along a row one invocation computes.
const PX: u32 = 4u;
const OX_CHUNKS: u32 = (W_OUT + PX - 1u) / PX;
const THREADS: u32 = (C_OUT / CO_TILE) * H_OUT * OX_CHUNKS;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;
const C_IN_G: u32 = C_IN / GROUP;
const C_OUT_G: u32 = C_OUT / GROUP;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

/// A channel's epilogue parameters (bias and PReLU slope).
struct Channel {
    bias: f32,
    slope: f32,
}

/// The epilogue parameters of output channels co .. co + 3 (clamped to the last), loaded once for
/// all the outputs of those channels an invocation writes (on lavapipe every load is a per-lane
/// loop).
struct Quad {
    bias: vec4<f32>,
    slope: vec4<f32>,
}

fn quad(co: u32) -> Quad {
    let i = min(vec4(co) + vec4(0u, 1u, 2u, 3u), vec4(C_OUT - 1u));
    return Quad(vec4(p[i.x], p[i.y], p[i.z], p[i.w]), vec4(p[C_OUT + i.x], p[C_OUT + i.y], p[C_OUT + i.z], p[C_OUT + i.w]));
}

/// Channel j of a quad.
fn member(q: Quad, j: u32) -> Channel {
    return Channel(q.bias[j], q.slope[j]);
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

/// Input tap (iy, ix) of row `row`, normalised by the prologue, zero in the padding.
fn tap(row: u32, ix: i32, row_ok: bool, scale: f32, shift: f32) -> vec4<f32> {
    var v = f32(x[row + u32(clamp(ix, 0, i32(W_IN) - 1))]);
    if HAS_PROLOGUE { v = v * scale + shift; }
    return vec4(select(0.0, v, row_ok && ix >= 0 && ix < i32(W_IN)));
}

/// Writes output channels co0 + 4 * half .. + 3 (those of the tile; `q` their parameters) of
/// pixel `ox` from `acc`.
fn put(acc: vec4<f32>, co0: u32, half: u32, q: Quad, base: u32, ox: u32, live: bool) {
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + 4u * half + j;
        let i = base + co * H_OUT * W_OUT + ox;
        if live && ox < W_OUT && 4u * half + j < CO_TILE {
            y[i] = stored(epilogue(acc[j], member(q, j), i));
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Spare invocations of the last workgroup compute the last tile again and store nothing.
    let t0 = (wid.x + wid.y * nwg.x) * WG + lid;
    let live = t0 < THREADS;
    let t = min(t0, THREADS - 1u);
    let co0 = (t / (H_OUT * OX_CHUNKS)) * CO_TILE;
    let oy = (t / OX_CHUNKS) % H_OUT;
    let ox0 = (t % OX_CHUNKS) * PX;
    let ci0 = (co0 / C_OUT_G) * C_IN_G;
    let x0 = wid.z * C_IN * H_IN * W_IN;
    let ix0 = i32(ox0 * SW) - i32(PAD_L);
    // a<pixel><half>: output channels co0 + 4 * half .. + 3 at pixel ox0 + pixel.
    var a00 = vec4(0.0);
    var a01 = vec4(0.0);
    var a10 = vec4(0.0);
    var a11 = vec4(0.0);
    var a20 = vec4(0.0);
    var a21 = vec4(0.0);
    var a30 = vec4(0.0);
    var a31 = vec4(0.0);
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
                let wi = (((co0 / CO_TILE) * C_IN_G + ci) * KH * KW + ky * KW + kx) * 2u;
                let wl = vec4<f32>(w[wi]);
                let wh = vec4<f32>(w[wi + 1u]);
                let x0v = tap(row, ix0 + i32(kx), row_ok, scale, shift);
                let x1v = tap(row, ix0 + i32(SW + kx), row_ok, scale, shift);
                let x2v = tap(row, ix0 + i32(2u * SW + kx), row_ok, scale, shift);
                let x3v = tap(row, ix0 + i32(3u * SW + kx), row_ok, scale, shift);
                a00 = fma(x0v, wl, a00);
                a01 = fma(x0v, wh, a01);
                a10 = fma(x1v, wl, a10);
                a11 = fma(x1v, wh, a11);
                a20 = fma(x2v, wl, a20);
                a21 = fma(x2v, wh, a21);
                a30 = fma(x3v, wl, a30);
                a31 = fma(x3v, wh, a31);
            }
        }
    }
    let base = (wid.z * C_OUT) * H_OUT * W_OUT + oy * W_OUT;
    let q0 = quad(co0);
    let q1 = quad(co0 + 4u);
    put(a00, co0, 0u, q0, base, ox0, live);
    put(a01, co0, 1u, q1, base, ox0, live);
    put(a10, co0, 0u, q0, base, ox0 + 1u, live);
    put(a11, co0, 1u, q1, base, ox0 + 1u, live);
    put(a20, co0, 0u, q0, base, ox0 + 2u, live);
    put(a21, co0, 1u, q1, base, ox0 + 2u, live);
    put(a30, co0, 0u, q0, base, ox0 + 3u, live);
    put(a31, co0, 1u, q1, base, ox0 + 3u, live);
}
