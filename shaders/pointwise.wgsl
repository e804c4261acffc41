// Pointwise (1x1, stride 1, no padding) convolution, a GEMM y[co, p] = sum_ci w[co, ci] x[ci, p].
// Each invocation computes a tile of CO_TILE = 8 output channels by PX_TILE = 4 pixels (WG apart)
// of one sample: each input it loads serves 8 multiply-adds, each weight vector 16. Neighbouring
// invocations take neighbouring pixels, so input loads are contiguous across the workgroup and
// the weights they read are the same (uniform); the compiler stores the weights transposed and
// packed, w[ci][co / 4] as vec4 (zero-padded past C_OUT), so each is one vector load.
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z);
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

const CO_TILE: u32 = 8u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const PX_TILE: u32 = 4u;
/// Pixel tiles of WG * PX_TILE pixels covering HW.
const PX_TILES: u32 = (HW + WG * PX_TILE - 1u) / (WG * PX_TILE);
/// vec4 columns of one packed weight row (w[ci][..]).
const W_ROW: u32 = CO_BLOCKS * 2u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
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

fn store(acc: vec4<f32>, co0: u32, pix: u32, n: u32) {
    if pix >= HW { return; }
    for (var t = 0u; t < 4u; t++) {
        let co = co0 + t;
        if co < C_OUT {
            let i = (n * C_OUT + co) * HW + pix;
            y[i] = epilogue(acc[t], co, i);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    if group >= CO_BLOCKS * PX_TILES { return; }
    let block = group / PX_TILES;
    var pix: array<u32, PX_TILE>;
    var xi: array<u32, PX_TILE>;
    for (var k = 0u; k < PX_TILE; k++) {
        pix[k] = (group % PX_TILES) * WG * PX_TILE + k * WG + lid;
        xi[k] = wid.z * C_IN * HW + min(pix[k], HW - 1u);
    }
    var lo: array<vec4<f32>, PX_TILE>;
    var hi: array<vec4<f32>, PX_TILE>;
    for (var ci = 0u; ci < C_IN; ci++) {
        let wi = ci * W_ROW + 2u * block;
        let w_lo = w[wi];
        let w_hi = w[wi + 1u];
        for (var k = 0u; k < PX_TILE; k++) {
            let xv = x[xi[k] + ci * HW];
            lo[k] += xv * w_lo;
            hi[k] += xv * w_hi;
        }
    }
    for (var k = 0u; k < PX_TILE; k++) {
        store(lo[k], block * CO_TILE, pix[k], wid.z);
        store(hi[k], block * CO_TILE + 4u, pix[k], wid.z);
    }
}
