// The model's input from regions of an RGBA8 or BGRA8 texture (a camera frame, a render target),
// on the GPU. One invocation per output pixel of one region (workgroup_id.z is the region),
// writing its three channels of f32 NCHW.
// A region is a 2x3 affine matrix mapping output pixel (x, y) to source pixel coordinates
// (sx, sy) = (a x + b y + c, d x + e y + f), pixel centres at integer coordinates: it crops,
// rotates and resizes in one. The source is sampled bilinearly from its 0..255 byte values
// (texels outside the texture count as 0), then y = (v - MEAN) * SCALE per channel
// (SCALE = 1 / std): the conventions of the project's CPU-image preprocessing.
// The texture is read through a unorm view, so sRGB textures give their stored bytes.
// Its format may be RGBA8 or BGRA8: both load as (r, g, b, a).

// mfn:constants
const OUT_H: u32 = 112u;
const OUT_W: u32 = 112u;
const MEAN_R: f32 = 0.0;
const MEAN_G: f32 = 0.0;
const MEAN_B: f32 = 0.0;
const SCALE_R: f32 = 1.0;
const SCALE_G: f32 = 1.0;
const SCALE_B: f32 = 1.0;
const WG: u32 = 64u;
// mfn:end-constants

/// Rows of the 2x3 matrix (the fourth lane is padding).
struct Warp {
    row0: vec4<f32>,
    row1: vec4<f32>,
}

@group(0) @binding(0) var frame: texture_2d<f32>;
@group(0) @binding(1) var<storage, read> warps: array<Warp>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

/// Texel (x, y) as 0..255 RGB, 0 outside the texture.
fn texel(x: i32, y: i32, size: vec2<i32>) -> vec3<f32> {
    if x < 0 || y < 0 || x >= size.x || y >= size.y {
        return vec3<f32>(0.0);
    }
    // Unorm8 reads as byte / 255: rounding recovers the byte exactly.
    // BGRA8 textures load as (r, g, b, a) too: no swizzle.
    return round(textureLoad(frame, vec2<i32>(x, y), 0).rgb * 255.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let p = gid.x;
    if p >= OUT_H * OUT_W {
        return;
    }
    let n = wid.z;
    let w = warps[n];
    let o = vec3<f32>(f32(p % OUT_W), f32(p / OUT_W), 1.0);
    let sx = dot(w.row0.xyz, o);
    let sy = dot(w.row1.xyz, o);
    let size = vec2<i32>(textureDimensions(frame));
    let fx = floor(sx);
    let fy = floor(sy);
    let wx = sx - fx;
    let wy = sy - fy;
    let x0 = i32(fx);
    let y0 = i32(fy);
    let top = mix(texel(x0, y0, size), texel(x0 + 1, y0, size), wx);
    let bottom = mix(texel(x0, y0 + 1, size), texel(x0 + 1, y0 + 1, size), wx);
    let rgb = mix(top, bottom, wy);
    let plane = OUT_H * OUT_W;
    let base = n * 3u * plane + p;
    y[base] = (rgb.x - MEAN_R) * SCALE_R;
    y[base + plane] = (rgb.y - MEAN_G) * SCALE_G;
    y[base + 2u * plane] = (rgb.z - MEAN_B) * SCALE_B;
}
