// Max pooling over a KH x KW window with stride and padding; padded taps never win. One invocation
// per output element of one sample (workgroup_id.z).
// Layouts: x [C, H_IN, W_IN], y [C, H_OUT, W_OUT] per sample.

// mfn:constants
const C: u32 = 4u;
const H_IN: u32 = 8u;
const W_IN: u32 = 8u;
const H_OUT: u32 = 4u;
const W_OUT: u32 = 4u;
const KH: u32 = 2u;
const KW: u32 = 2u;
const SH: u32 = 2u;
const SW: u32 = 2u;
const PAD_T: u32 = 0u;
const PAD_L: u32 = 0u;
const WG: u32 = 64u;
// mfn:end-constants

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= C * H_OUT * W_OUT { return; }
    let c = idx / (H_OUT * W_OUT);
    let oy = (idx / W_OUT) % H_OUT;
    let ox = idx % W_OUT;
    // Window bounds in padded coordinates, clipped to the input.
    let y0 = oy * SH;
    let x0 = ox * SW;
    let iy_lo = max(y0, PAD_T) - PAD_T;
    let iy_hi = min(y0 + KH, H_IN + PAD_T) - PAD_T;
    let ix_lo = max(x0, PAD_L) - PAD_L;
    let ix_hi = min(x0 + KW, W_IN + PAD_L) - PAD_L;
    let plane = (wid.z * C + c) * H_IN * W_IN;
    var m = x[plane + iy_lo * W_IN + ix_lo];
    for (var iy = iy_lo; iy < iy_hi; iy++) {
        for (var ix = ix_lo; ix < ix_hi; ix++) {
            m = max(m, x[plane + iy * W_IN + ix]);
        }
    }
    y[wid.z * C * H_OUT * W_OUT + idx] = m;
}
