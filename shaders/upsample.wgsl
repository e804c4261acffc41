// Nearest-neighbour upsampling by whole factors: y[c, i, j] = x[c, i / FH, j / FW]. One invocation
// per output element of one sample (workgroup_id.z).
// Layouts: x [C, H_IN, W_IN], y [C, H_IN * FH, W_IN * FW] per sample.

// mfn:constants
const C: u32 = 4u;
const H_IN: u32 = 4u;
const W_IN: u32 = 4u;
const FH: u32 = 2u;
const FW: u32 = 2u;
const WG: u32 = 64u;
// mfn:end-constants

const H_OUT: u32 = H_IN * FH;
const W_OUT: u32 = W_IN * FW;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= C * H_OUT * W_OUT { return; }
    let c = idx / (H_OUT * W_OUT);
    let i = (idx / W_OUT) % H_OUT;
    let j = idx % W_OUT;
    y[wid.z * C * H_OUT * W_OUT + idx] = x[((wid.z * C + c) * H_IN + i / FH) * W_IN + j / FW];
}
