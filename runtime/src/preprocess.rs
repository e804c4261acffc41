//! Preprocessing on the GPU: 8-bit RGB images go up as bytes (packed four to a u32), and the
//! kernel of `shaders/preprocess.wgsl` converts them to the model's f32 NCHW input — each sampled
//! bilinearly through a 2x3 affine [`Warp`] (a resize, a letterbox, a face alignment), channels in
//! the model's order, normalised per channel — writing straight into the session's input buffer,
//! in the same submission as the model.

use std::ops::Range;

use mfn_compiler::Precision;
use wgpu::util::DeviceExt;

use crate::error::{Result, RuntimeError};
use crate::scope::Scopes;
use crate::session::Session;

const SOURCE: &str = include_str!("../../shaders/preprocess.wgsl");
const WORKGROUP: u32 = 64;

/// An 8-bit RGB image: `rgb` holds `width * height` pixels, row-major, 3 bytes each.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    /// Pixels a row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` pixels of 3 bytes (R, G, B), row after row.
    pub rgb: &'a [u8],
}

/// Per-channel normalisation of 0..255 pixel values, `(x - mean) / std`, indexed by the channels
/// as the model takes them (R, G, B; B, G, R with [`ChannelOrder::Bgr`]).
/// [`Normalization::IDENTITY`] (0..255 as they are) suits models that normalise in their graph,
/// such as the pretrained MobileFaceNet and YuNet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Subtracted from each channel.
    pub mean: [f32; 3],
    /// What each channel is then divided by.
    pub std: [f32; 3],
}

impl Normalization {
    /// The pixel values as they are (0..255).
    pub const IDENTITY: Normalization = Normalization { mean: [0.0; 3], std: [1.0; 3] };
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization::IDENTITY
    }
}

/// The order of the three channels of the model's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// As OpenCV-trained models such as YuNet take them.
    Bgr,
}

/// What a model expects of its input pixels: channel order, then normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PixelFormat {
    /// The order of the channels.
    pub order: ChannelOrder,
    /// Their normalisation, in that order.
    pub norm: Normalization,
}

/// What a [`Warp`] samples where it falls outside the source image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    /// The nearest edge pixel (coordinates clamped), as a plain resize does.
    Edge,
    /// Zero, as letterbox padding and alignment crops (cv2.warpAffine's constant border).
    Zero,
}

/// Where each pixel of the model's input is sampled in its image: output pixel `(x, y)` reads the
/// source at `(m[0][0] x + m[0][1] y + m[0][2], m[1][0] x + m[1][1] y + m[1][2])`, pixel centres
/// at integer coordinates (cv2.warpAffine with WARP_INVERSE_MAP), bilinearly, computed in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warp {
    /// The output-to-source map `m` above.
    pub matrix: [[f32; 3]; 2],
    /// What is read outside the source.
    pub border: Border,
}

impl Warp {
    /// Output pixel (x, y) is source pixel (x, y): an image of the output's size copied exactly.
    pub const IDENTITY: Warp = Warp { matrix: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], border: Border::Edge };

    /// The image stretched to the output (bilinear, half-pixel centres, edges clamped): what
    /// [`Session::run_images`] does; the identity when the sizes agree.
    pub fn resize(src: (usize, usize), out: (usize, usize)) -> Warp {
        let (sx, sy) = (src.0 as f64 / out.0 as f64, src.1 as f64 / out.1 as f64);
        let m = [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]];
        Warp { matrix: m.map(|row| row.map(|v| v as f32)), border: Border::Edge }
    }

    /// The image scaled by `scale = min(out_w / w, out_h / h)` (aspect kept, half-pixel centres)
    /// into the top-left corner of the output, zeros elsewhere. Returns the warp and the scale:
    /// a point `p` of the output is `p / scale` in the image.
    pub fn letterbox(src: (usize, usize), out: (usize, usize)) -> (Warp, f64) {
        let scale = (out.0 as f64 / src.0 as f64).min(out.1 as f64 / src.1 as f64);
        let (inv, shift) = ((1.0 / scale) as f32, (0.5 / scale - 0.5) as f32);
        (Warp { matrix: [[inv, 0.0, shift], [0.0, inv, shift]], border: Border::Zero }, scale)
    }
}

/// The preprocessing pipeline of one pixel format, created on first use and kept by the session.
pub(crate) struct Preprocess {
    format: PixelFormat,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The template with its constants block replaced (the same convention as the model's kernels).
fn specialise(out_h: usize, out_w: usize, format: &PixelFormat, precision: Precision) -> String {
    let (begin, end) = ("// mfn:constants\n", "// mfn:end-constants\n");
    let (b, e) = (SOURCE.find(begin).expect("constants block"), SOURCE.find(end).expect("constants block end"));
    let bgr = format.order == ChannelOrder::Bgr;
    let mut consts = format!("// mfn:specialised\n{}", precision.wgsl_prelude());
    consts.push_str(&format!("const OUT_H: u32 = {out_h}u;\nconst OUT_W: u32 = {out_w}u;\nconst BGR: bool = {bgr};\n"));
    for (name, values) in [("MEAN", format.norm.mean), ("SCALE", format.norm.std.map(|s| 1.0 / s))] {
        for (channel, v) in values.iter().enumerate() {
            consts.push_str(&format!("const {name}_{channel}: f32 = {v:?};\n"));
        }
    }
    consts.push_str(&format!("const WG: u32 = {WORKGROUP}u;\n"));
    format!("{}{consts}{}", &SOURCE[..b], &SOURCE[e + end.len()..])
}

impl Session {
    /// Runs a batch of 8-bit RGB images (of any sizes) through the model: on the GPU they are
    /// converted to f32 NCHW, resized bilinearly ([`Warp::resize`]) where they are not the
    /// model's input size, and normalised by `norm`, in the same submission as the model (one per
    /// chunk of [`Session::max_batch`] images). Returns one output sample per image. The model's
    /// input must be one RGB image, [3, H, W].
    pub fn run_images(&self, images: &[Image<'_>], norm: &Normalization) -> Result<Vec<f32>> {
        let warps = self.resize_warps(images)?;
        self.run_warped(images, &warps, &PixelFormat { order: ChannelOrder::Rgb, norm: *norm })
    }

    /// [`Session::run_images`] with each image sampled through its own [`Warp`] (a letterbox, an
    /// alignment to a face template...) and the channels in `format`'s order: the model's input
    /// is made on the GPU, in the same submission as the model.
    pub fn run_warped(&self, images: &[Image<'_>], warps: &[Warp], format: &PixelFormat) -> Result<Vec<f32>> {
        Ok(self.run_warped_all(images, warps, format)?.swap_remove(0))
    }

    /// [`Session::run_warped`] returning every output of the model (in the order of
    /// [`Session::outputs`]), each holding one sample per image.
    pub fn run_warped_all(&self, images: &[Image<'_>], warps: &[Warp], format: &PixelFormat) -> Result<Vec<Vec<f32>>> {
        let mut outputs: Vec<Vec<f32>> = self.outputs().iter().map(|o| Vec::with_capacity(images.len() * o.elements())).collect();
        self.gpu_call(|| {
            self.each_chunk(images, warps, format, |batch, record| {
                for (all, part) in outputs.iter_mut().zip(self.record_and_read(batch, Scopes::push(&self.device), None, record)?) {
                    all.extend(part);
                }
                Ok(())
            })
        })?;
        Ok(outputs)
    }

    /// The model input [`Session::run_images`] computes for `images` (NCHW, batch first, as f32
    /// whatever the program's precision), read back without running the model: for tests and
    /// debugging.
    pub fn preprocess(&self, images: &[Image<'_>], norm: &Normalization) -> Result<Vec<f32>> {
        let warps = self.resize_warps(images)?;
        self.preprocess_warped(images, &warps, &PixelFormat { order: ChannelOrder::Rgb, norm: *norm })
    }

    /// The model input [`Session::run_warped`] computes, read back without running the model.
    pub fn preprocess_warped(&self, images: &[Image<'_>], warps: &[Warp], format: &PixelFormat) -> Result<Vec<f32>> {
        let per_sample: usize = self.input_shape().iter().product();
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("preprocess readback"),
            size: crate::session::padded(self.precision.bytes() * per_sample * self.max_batch()),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut output = Vec::with_capacity(images.len() * per_sample);
        self.gpu_call(|| {
            self.each_chunk(images, warps, format, |batch, record| {
                let scopes = Scopes::push(&self.device);
                let mut encoder = self.device.create_command_encoder(&Default::default());
                record(&mut encoder.begin_compute_pass(&Default::default()));
                let bytes = crate::session::padded(self.precision.bytes() * per_sample * batch);
                encoder.copy_buffer_to_buffer(&self.activations[self.input.0], 0, &readback, 0, bytes);
                self.queue.submit([encoder.finish()]);
                let stored = crate::session::map_read(&self.device, &readback, bytes, scopes)?;
                output.extend(&crate::session::decode(&stored, self.precision)[..per_sample * batch]);
                Ok(())
            })
        })?;
        Ok(output)
    }

    /// Bytes of 8-bit RGB pixels one image may have: what one storage binding holds.
    pub fn max_image_bytes(&self) -> u64 {
        let limits = self.device.limits();
        limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(u64::from(u32::MAX))
    }

    /// The input size [H, W] images are preprocessed to, or an error if the model's input is not
    /// one RGB image.
    fn image_input(&self) -> Result<(usize, usize)> {
        match self.input.1[..] {
            [3, h, w] => Ok((h, w)),
            _ => Err(RuntimeError::NotImageInput { shape: self.input.1.clone() }),
        }
    }

    fn resize_warps(&self, images: &[Image<'_>]) -> Result<Vec<Warp>> {
        let (h, w) = self.image_input()?;
        Ok(images.iter().map(|i| Warp::resize((i.width, i.height), (w, h))).collect())
    }

    /// Checks the images, then for each chunk that fits one submission hands `submit` the batch
    /// size and a function recording the preprocessing dispatch into a compute pass.
    fn each_chunk(
        &self,
        images: &[Image<'_>],
        warps: &[Warp],
        format: &PixelFormat,
        mut submit: impl FnMut(usize, &dyn Fn(&mut wgpu::ComputePass<'_>)) -> Result<()>,
    ) -> Result<()> {
        let (out_h, out_w) = self.image_input()?;
        check_images(images, warps, format)?;
        let _guard = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut cached = self.preprocess.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.as_ref().is_none_or(|p| p.format != *format) {
            *cached = Some(self.create_preprocess(out_h, out_w, format)?);
        }
        let pre = cached.as_ref().expect("created above");
        for range in chunks(images, self.max_batch(), self.max_image_bytes())? {
            let batch = range.len();
            let bind_group = self.bind_images(pre, &images[range.clone()], &warps[range]);
            let groups = (out_h * out_w).div_ceil(WORKGROUP as usize) as u32;
            submit(batch, &|pass: &mut wgpu::ComputePass<'_>| {
                pass.set_pipeline(&pre.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups, 1, batch as u32);
            })?;
        }
        Ok(())
    }

    fn create_preprocess(&self, out_h: usize, out_w: usize, format: &PixelFormat) -> Result<Preprocess> {
        let scopes = Scopes::push(&self.device);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("preprocess"),
            source: wgpu::ShaderSource::Wgsl(specialise(out_h, out_w, format, self.precision).into()),
        });
        let layout = crate::session::bind_group_layout(&self.device, 3, 0);
        let pipeline = crate::session::compute_pipeline(&self.device, "preprocess", &layout, &module, &[], None);
        scopes.check("preprocessing pipeline creation")?;
        Ok(Preprocess { format: *format, pipeline, layout })
    }

    /// Uploads a chunk's pixels (each image at a 4-byte-aligned offset), sizes and warps.
    fn bind_images(&self, pre: &Preprocess, images: &[Image<'_>], warps: &[Warp]) -> wgpu::BindGroup {
        let mut bytes = Vec::with_capacity(images.iter().map(|i| i.rgb.len().next_multiple_of(4)).sum());
        let mut info: Vec<u32> = Vec::with_capacity(12 * images.len());
        for (image, warp) in images.iter().zip(warps) {
            let border = match warp.border {
                Border::Edge => 0,
                Border::Zero => 1,
            };
            info.extend([bytes.len() as u32, image.width as u32, image.height as u32, border]);
            info.extend(warp.matrix.as_flattened().iter().map(|v| v.to_bits()));
            info.extend([0, 0]);
            bytes.extend_from_slice(image.rgb);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
        }
        let storage =
            |label, contents: &[u8]| self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage: wgpu::BufferUsages::STORAGE });
        let pixels = storage("pixels", &bytes);
        let sizes = storage("image sizes", bytemuck::cast_slice(&info));
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("preprocess"),
            layout: &pre.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: pixels.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: sizes.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: self.activations[self.input.0].as_entire_binding() },
            ],
        })
    }
}

fn check_images(images: &[Image<'_>], warps: &[Warp], format: &PixelFormat) -> Result<()> {
    if images.is_empty() {
        return Err(RuntimeError::BadImage { index: 0, reason: "no images given".into() });
    }
    if warps.len() != images.len() {
        return Err(RuntimeError::BadImage { index: 0, reason: format!("{} warps for {} images", warps.len(), images.len()) });
    }
    if format.norm.std.iter().any(|s| !s.is_normal()) {
        return Err(RuntimeError::BadImage { index: 0, reason: format!("normalisation divisor {:?} is not a non-zero number", format.norm.std) });
    }
    for (index, (image, warp)) in images.iter().zip(warps).enumerate() {
        let bad = |reason: String| Err(RuntimeError::BadImage { index, reason });
        if image.width == 0 || image.height == 0 {
            return bad(format!("it is {}x{}", image.width, image.height));
        }
        if image.width.checked_mul(image.height).and_then(|n| n.checked_mul(3)) != Some(image.rgb.len()) {
            return bad(format!("{} bytes for {}x{} RGB pixels", image.rgb.len(), image.width, image.height));
        }
        if warp.matrix.as_flattened().iter().any(|v| !v.is_finite()) {
            return bad(format!("its warp {:?} is not finite", warp.matrix));
        }
    }
    Ok(())
}

/// Consecutive ranges of at most `max_batch` images whose packed pixels fit one storage binding.
fn chunks(images: &[Image<'_>], max_batch: usize, max_bytes: u64) -> Result<Vec<Range<usize>>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, image) in images.iter().enumerate() {
        let size = image.rgb.len().next_multiple_of(4) as u64;
        if size > max_bytes || size > u64::from(u32::MAX) {
            return Err(RuntimeError::BadImage { index: i, reason: format!("{}x{} is too large for one GPU buffer", image.width, image.height) });
        }
        if i > start && (i - start == max_batch || bytes + size > max_bytes.min(u64::from(u32::MAX))) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    out.push(start..images.len());
    Ok(out)
}
