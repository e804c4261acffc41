// Preprocessing: 8-bit RGB images -> the model's f32 NCHW input, on the GPU. One invocation per
// output pixel of one image (workgroup_id.z is the image), writing its three channels.
// pixels: every image's RGB bytes (3 a pixel, row-major), packed four to a u32 little-endian;
// image n starts at byte images[n].offset. An image of the model's size is copied as it is
// (exact: the same floats as a CPU u8 -> f32 conversion); any other size is resized bilinearly
// (half-pixel centres, edges clamped). Then y = (x - MEAN) * SCALE per channel (SCALE = 1 / std).

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

struct Image {
    offset: u32,
    width: u32,
    height: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> images: array<Image>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn byte_at(i: u32) -> u32 {
    return (pixels[i / 4u] >> (8u * (i % 4u))) & 255u;
}

/// The three channels of source pixel (sx, sy) as 0..255 floats.
fn texel(img: Image, sx: u32, sy: u32) -> vec3<f32> {
    let i = img.offset + 3u * (sy * img.width + sx);
    return vec3<f32>(f32(byte_at(i)), f32(byte_at(i + 1u)), f32(byte_at(i + 2u)));
}

fn bilinear(img: Image, ox: u32, oy: u32) -> vec3<f32> {
    let fx = clamp((f32(ox) + 0.5) * f32(img.width) / f32(OUT_W) - 0.5, 0.0, f32(img.width - 1u));
    let fy = clamp((f32(oy) + 0.5) * f32(img.height) / f32(OUT_H) - 0.5, 0.0, f32(img.height - 1u));
    let x0 = u32(floor(fx));
    let y0 = u32(floor(fy));
    let x1 = min(x0 + 1u, img.width - 1u);
    let y1 = min(y0 + 1u, img.height - 1u);
    let wx = fx - f32(x0);
    let wy = fy - f32(y0);
    let top = mix(texel(img, x0, y0), texel(img, x1, y0), wx);
    let bottom = mix(texel(img, x0, y1), texel(img, x1, y1), wx);
    return mix(top, bottom, wy);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let p = gid.x;
    if p >= OUT_H * OUT_W {
        return;
    }
    let n = wid.z;
    let img = images[n];
    let ox = p % OUT_W;
    let oy = p / OUT_W;
    var rgb: vec3<f32>;
    if img.width == OUT_W && img.height == OUT_H {
        rgb = texel(img, ox, oy);
    } else {
        rgb = bilinear(img, ox, oy);
    }
    let plane = OUT_H * OUT_W;
    let base = n * 3u * plane + p;
    y[base] = (rgb.x - MEAN_R) * SCALE_R;
    y[base + plane] = (rgb.y - MEAN_G) * SCALE_G;
    y[base + 2u * plane] = (rgb.z - MEAN_B) * SCALE_B;
}
