// Concatenation of up to four tensors along one axis. Per sample, each input is OUTER slabs of
// S_k contiguous elements (the product of the concatenated axis and those after it); the output
// is OUTER slabs of S_A + S_B + S_C + S_D, each the inputs' slabs side by side. One invocation per
// output element of one sample (workgroup_id.z); an absent input has S_k = 0.

// mfn:constants
alias stored = f32;
const OUTER: u32 = 2u;
const S_A: u32 = 3u;
const S_B: u32 = 5u;
const S_C: u32 = 0u;
const S_D: u32 = 0u;
const WG: u32 = 64u;
// mfn:end-constants

const S: u32 = S_A + S_B + S_C + S_D;

@group(0) @binding(0) var<storage, read> a: array<stored>;
@group(0) @binding(1) var<storage, read> b: array<stored>;
@group(0) @binding(2) var<storage, read> c: array<stored>;
@group(0) @binding(3) var<storage, read> d: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if idx >= OUTER * S { return; }
    let slab = wid.z * OUTER + idx / S;
    var r = idx % S;
    var v: stored;
    if r < S_A {
        v = a[slab * S_A + r];
    } else {
        r -= S_A;
        if r < S_B {
            v = b[slab * S_B + r];
        } else {
            r -= S_B;
            if r < S_C {
                v = c[slab * S_C + r];
            } else {
                v = d[slab * S_D + r - S_C];
            }
        }
    }
    y[wid.z * OUTER * S + idx] = v;
}
