// Global depthwise convolution (GDConv): per channel, a weighted sum over the whole feature map,
// G[c] = sum_{i,j} K[c,i,j] * F[c,i,j]. One workgroup per channel of one sample reduces the
// HW products in workgroup memory, then applies the fused epilogue.
// Layouts: x [C, HW], w [C, HW], y [C] per sample (workgroup_id.z); p = [bias; C] ++ [slope; C].

// mfn:constants
alias stored = f32;
const C: u32 = 4u;
const HW: u32 = 49u;
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

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<stored>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

var<workgroup> partial: array<f32, WG>;

fn epilogue(acc: f32, c: u32, i: u32) -> f32 {
    var v = acc + p[c];
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * p[C + c], v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += f32(r[i]); }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Every invocation of the workgroup reaches the barriers: the channel test comes last.
    let c = wid.x + wid.y * nwg.x;
    let cc = min(c, C - 1u);
    let x0 = (wid.z * C + cc) * HW;
    var acc = 0.0;
    for (var k = lid; k < HW; k += WG) {
        acc += f32(x[x0 + k]) * f32(w[cc * HW + k]);
    }
    partial[lid] = acc;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride { partial[lid] += partial[lid + stride]; }
    }
    if lid == 0u && c < C {
        let i = wid.z * C + c;
        y[i] = stored(epilogue(partial[0], c, i));
    }
}
