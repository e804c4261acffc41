// Pointwise (1x1, stride 1, no padding) convolution, a GEMM y[co, p] = sum_ci w[co, ci] x[ci, p];
// the general case (shaders/pointwise_vec4.wgsl takes feature maps of a multiple of 4 pixels).
// Each invocation computes a tile of CO_TILE output channels by PX_TILE pixels (PX_CHUNKS apart)
// of one sample; the invocations of a dispatch cover (block of output channels, pixel) pairs
// densely, so small feature maps leave no lanes idle. Neighbouring invocations take neighbouring
// pixels, so input loads are contiguous across the workgroup. The compiler stores the weights
// transposed and packed, w[ci][co / 4] as vec4 (zero-padded past C_OUT), so each is one load.
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z);
// p = [bias; C_OUT] ++ [prelu slope; C_OUT].

// mfn:constants
alias stored = f32;
const C_IN: u32 = 8u;
const C_OUT: u32 = 8u;
const HW: u32 = 16u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

/// Output channels of an invocation's tile (a multiple of 4; the compiler pads the weights to it).
const CO_TILE: u32 = 8u;
const CO_VECS: u32 = CO_TILE / 4u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const PX_TILE: u32 = 4u;
/// Invocations per block of output channels: each takes PX_TILE pixels PX_CHUNKS apart.
const PX_CHUNKS: u32 = (HW + PX_TILE - 1u) / PX_TILE;
/// vec4 columns of one packed weight row (w[ci][..]).
const W_ROW: u32 = CO_BLOCKS * CO_VECS;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

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

fn store(acc: vec4<f32>, co0: u32, pix: u32, n: u32) {
    if pix >= HW { return; }
    for (var t = 0u; t < 4u; t++) {
        let co = co0 + t;
        if co < C_OUT {
            let i = (n * C_OUT + co) * HW + pix;
            y[i] = stored(epilogue(acc[t], co, i));
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if t >= CO_BLOCKS * PX_CHUNKS { return; }
    let block = t / PX_CHUNKS;
    var pix: array<u32, PX_TILE>;
    var xi: array<u32, PX_TILE>;
    for (var k = 0u; k < PX_TILE; k++) {
        pix[k] = t % PX_CHUNKS + k * PX_CHUNKS;
        xi[k] = wid.z * C_IN * HW + min(pix[k], HW - 1u);
    }
    var acc: array<vec4<f32>, CO_VECS * PX_TILE>;
    for (var ci = 0u; ci < C_IN; ci++) {
        var wv: array<vec4<f32>, CO_VECS>;
        for (var j = 0u; j < CO_VECS; j++) {
            wv[j] = vec4<f32>(w[ci * W_ROW + block * CO_VECS + j]);
        }
        for (var k = 0u; k < PX_TILE; k++) {
            let xv = f32(x[xi[k] + ci * HW]);
            for (var j = 0u; j < CO_VECS; j++) {
                acc[k * CO_VECS + j] += xv * wv[j];
            }
        }
    }
    for (var k = 0u; k < PX_TILE; k++) {
        for (var j = 0u; j < CO_VECS; j++) {
            store(acc[k * CO_VECS + j], block * CO_TILE + 4u * j, pix[k], wid.z);
        }
    }
}
