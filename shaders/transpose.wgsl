// A permutation of the axes of one sample (up to four; leading axes of size 1 pad smaller ranks).
// One invocation per output element of one sample (workgroup_id.z): output element (i0, i1, i2, i3)
// of the D0 x D1 x D2 x D3 output reads input element i0 * S0 + i1 * S1 + i2 * S2 + i3 * S3, where
// S_k is the input stride of the axis that becomes output axis k.

// mfn:constants
const D0: u32 = 1u;
const D1: u32 = 4u;
const D2: u32 = 4u;
const D3: u32 = 2u;
const S0: u32 = 0u;
const S1: u32 = 4u;
const S2: u32 = 1u;
const S3: u32 = 16u;
const WG: u32 = 64u;
// mfn:end-constants

const N: u32 = D0 * D1 * D2 * D3;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= N { return; }
    let i3 = idx % D3;
    let i2 = (idx / D3) % D2;
    let i1 = (idx / (D3 * D2)) % D1;
    let i0 = idx / (D3 * D2 * D1);
    y[wid.z * N + idx] = x[wid.z * N + i0 * S0 + i1 * S1 + i2 * S2 + i3 * S3];
}
