// Preprocessing: 8-bit RGB images -> the model's f32 NCHW input, on the GPU. One invocation per
// output pixel of one image (workgroup_id.z is the image), writing its three channels.
// pixels: every image's RGB bytes (3 a pixel, row-major), packed four to a u32 little-endian;
// image n starts at byte images[n].offset. Each image carries a 2x3 affine map from output pixel
// (x, y) to source coordinates (pixel centres at integers, as cv2.warpAffine with
// WARP_INVERSE_MAP), sampled bilinearly; outside the image the source is its edge (BORDER_EDGE)
// or 0 (BORDER_ZERO, letterbox padding). An identity map copies exactly (the same floats as a CPU
// u8 -> f32 conversion). Channels are written in the model's order (R, G, B, or B, G, R when
// BGR), then y = (x - MEAN) * SCALE per written channel (SCALE = 1 / std), stored as the model
// stores its activations (`stored`: f32, or f16 for programs compiled with f16 precision).

// mfn:constants
alias stored = f32;
const OUT_H: u32 = 112u;
const OUT_W: u32 = 112u;
const BGR: bool = false;
const MEAN_0: f32 = 0.0;
const MEAN_1: f32 = 0.0;
const MEAN_2: f32 = 0.0;
const SCALE_0: f32 = 1.0;
const SCALE_1: f32 = 1.0;
const SCALE_2: f32 = 1.0;
const WG: u32 = 64u;
// mfn:end-constants

const BORDER_EDGE: u32 = 0u;
const BORDER_ZERO: u32 = 1u;

struct Image {
    offset: u32,
    width: u32,
    height: u32,
    border: u32,
    // Source x = m00 * x + m01 * y + m02, source y = m10 * x + m11 * y + m12.
    m00: f32,
    m01: f32,
    m02: f32,
    m10: f32,
    m11: f32,
    m12: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> images: array<Image>;
@group(0) @binding(2) var<storage, read_write> y: array<stored>;

fn byte_at(i: u32) -> u32 {
    return (pixels[i / 4u] >> (8u * (i % 4u))) & 255u;
}

/// The three channels of source pixel (sx, sy) as 0..255 floats; 0 outside a BORDER_ZERO image,
/// the nearest edge pixel outside a BORDER_EDGE one.
fn texel(img: Image, sx: i32, sy: i32) -> vec3<f32> {
    let w = i32(img.width);
    let h = i32(img.height);
    if img.border == BORDER_ZERO && (sx < 0 || sy < 0 || sx >= w || sy >= h) {
        return vec3<f32>(0.0);
    }
    let x = u32(clamp(sx, 0, w - 1));
    let yy = u32(clamp(sy, 0, h - 1));
    let i = img.offset + 3u * (yy * img.width + x);
    return vec3<f32>(f32(byte_at(i)), f32(byte_at(i + 1u)), f32(byte_at(i + 2u)));
}

fn bilinear(img: Image, ox: u32, oy: u32) -> vec3<f32> {
    let x = f32(ox);
    let yy = f32(oy);
    var fx = img.m00 * x + img.m01 * yy + img.m02;
    var fy = img.m10 * x + img.m11 * yy + img.m12;
    let w = f32(img.width);
    let h = f32(img.height);
    if img.border == BORDER_EDGE {
        fx = clamp(fx, 0.0, w - 1.0);
        fy = clamp(fy, 0.0, h - 1.0);
    } else if !(fx > -1.0 && fy > -1.0 && fx < w && fy < h) {
        // Also catches NaN and coordinates too large for i32.
        return vec3<f32>(0.0);
    }
    let x0f = floor(fx);
    let y0f = floor(fy);
    let wx = fx - x0f;
    let wy = fy - y0f;
    let x0 = i32(x0f);
    let y0 = i32(y0f);
    let top = mix(texel(img, x0, y0), texel(img, x0 + 1, y0), wx);
    let bottom = mix(texel(img, x0, y0 + 1), texel(img, x0 + 1, y0 + 1), wx);
    return mix(top, bottom, wy);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let p = gid.x;
    if p >= OUT_H * OUT_W {
        return;
    }
    let n = wid.z;
    var c = bilinear(images[n], p % OUT_W, p / OUT_W);
    if BGR {
        c = c.zyx;
    }
    let plane = OUT_H * OUT_W;
    let base = n * 3u * plane + p;
    y[base] = stored((c.x - MEAN_0) * SCALE_0);
    y[base + plane] = stored((c.y - MEAN_1) * SCALE_1);
    y[base + 2u * plane] = stored((c.z - MEAN_2) * SCALE_2);
}
