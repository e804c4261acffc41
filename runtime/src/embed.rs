//! Embedding in a host application's frame: [`Session::encode`] records the model into the host's
//! own command encoder, taking its input from a host buffer or from regions of a host texture
//! (warped, resized and normalised on the GPU by `shaders/texture_input.wgsl`), and leaving its
//! output in a host buffer; [`Session::encode_readback`] also brings the output to the CPU
//! without ever blocking: its [`ReadbackHandle`] is polled by the host's loop.
//!
//! Built on wgpu 30 (the `wgpu` re-exported by this crate): the host must use the same release.

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::error::{Result, RuntimeError};
use crate::preprocess::Normalization;
use crate::session::{storage_entry, texture_entry, LossWatch, Session};

const SOURCE: &str = include_str!("../../shaders/texture_input.wgsl");
const WORKGROUP: u32 = 64;

/// Where [`Session::encode`] takes the model's input from.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// `batch` samples of f32 NCHW ([`Session::input_shape`] each, batch first) at the start of
    /// a buffer with `COPY_SRC` usage.
    Buffer {
        /// The buffer (`COPY_SRC`), the samples from its start.
        buffer: &'a wgpu::Buffer,
        /// Samples in it.
        batch: usize,
    },
    /// One sample per warp, cut from a texture by [`TextureInput`].
    Texture {
        /// The kernel that samples the texture, made for its format.
        kernel: &'a TextureInput,
        /// The texture (`TEXTURE_BINDING` usage).
        texture: &'a wgpu::Texture,
        /// A sample per warp, in order.
        warps: &'a [TextureWarp],
    },
}

/// A 2x3 affine matrix mapping output pixel (x, y) of the model's input to source pixel
/// coordinates `(m[0] x + m[1] y + m[2], m[3] x + m[4] y + m[5])`, pixel centres at integer
/// coordinates. [`TextureWarp::crop`] builds the common case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextureWarp(pub [f32; 6]);

impl TextureWarp {
    /// The axis-aligned region of `width` x `height` source pixels whose top-left pixel is
    /// (`left`, `top`), resized to `out_w` x `out_h`: the output pixels' areas tile the region's
    /// exactly (the half-pixel convention of image resizers).
    pub fn crop(left: f32, top: f32, width: f32, height: f32, out_w: usize, out_h: usize) -> TextureWarp {
        let (sx, sy) = (width / out_w as f32, height / out_h as f32);
        TextureWarp([sx, 0.0, left + 0.5 * sx - 0.5, 0.0, sy, top + 0.5 * sy - 0.5])
    }
}

/// The kernel that turns regions of RGBA8 / BGRA8 textures (unorm or sRGB, read as their
/// bytes) into the model's input: bilinear samples of the 0..255 bytes (0 outside the texture),
/// normalised per channel. Made once per normalisation.
#[derive(Debug)]
pub struct TextureInput {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The unorm format a texture is read through (its bytes, even for sRGB formats).
fn unorm_view(format: wgpu::TextureFormat) -> Option<wgpu::TextureFormat> {
    use wgpu::TextureFormat as F;
    match format {
        F::Rgba8Unorm | F::Rgba8UnormSrgb => Some(F::Rgba8Unorm),
        F::Bgra8Unorm | F::Bgra8UnormSrgb => Some(F::Bgra8Unorm),
        _ => None,
    }
}

fn encode_error(message: String) -> RuntimeError {
    RuntimeError::Encode(message)
}

impl TextureInput {
    /// The kernel for textures (RGBA8 or BGRA8, unorm or sRGB) on `session`'s device, applying
    /// `norm`. The model's input must be one RGB image, [3, H, W].
    pub fn new(session: &Session, norm: &Normalization) -> Result<TextureInput> {
        let [3, out_h, out_w] = session.input_shape()[..] else {
            return Err(RuntimeError::NotImageInput { shape: session.input_shape().to_vec() });
        };
        let device = &session.device;
        let scopes = crate::scope::Scopes::push(device);
        let module =
            device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("texture input"), source: wgpu::ShaderSource::Wgsl(specialise(out_h, out_w, norm).into()) });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("texture input"),
            entries: &[texture_entry(0), storage_entry(1, true), storage_entry(2, false)],
        });
        let pipeline = crate::session::compute_pipeline(device, "texture input", &layout, &module, &[], None);
        if let Some(e) = scopes.pop() {
            return Err(RuntimeError::Gpu { stage: "texture input pipeline creation", message: e.to_string() });
        }
        Ok(TextureInput { pipeline, layout })
    }
}

/// The template with its constants block replaced (the convention of every kernel).
fn specialise(out_h: usize, out_w: usize, norm: &Normalization) -> String {
    let (begin, end) = ("// mfn:constants\n", "// mfn:end-constants\n");
    let (b, e) = (SOURCE.find(begin).expect("constants block"), SOURCE.find(end).expect("constants block end"));
    let mut consts = format!("// mfn:specialised\nconst OUT_H: u32 = {out_h}u;\nconst OUT_W: u32 = {out_w}u;\n");
    for (name, values) in [("MEAN", norm.mean), ("SCALE", norm.std.map(|s| 1.0 / s))] {
        for (channel, v) in ["R", "G", "B"].iter().zip(values) {
            consts.push_str(&format!("const {name}_{channel}: f32 = {v:?};\n"));
        }
    }
    consts.push_str(&format!("const WG: u32 = {WORKGROUP}u;\n"));
    format!("{}{consts}{}", &SOURCE[..b], &SOURCE[e + end.len()..])
}

/// The CPU values of an [`Session::encode_readback`], delivered when the GPU is done.
pub struct ReadbackHandle {
    buffer: wgpu::Buffer,
    bytes: u64,
    state: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    taken: bool,
    watch: LossWatch,
}

impl ReadbackHandle {
    /// Whether the values can be taken. Progresses only while the host polls the device
    /// (`device.poll(wgpu::PollType::Poll)`) or submits work.
    pub fn is_ready(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// The output (one sample per input sample, batch first) once the GPU has finished; `None`
    /// while it has not, or after the values were taken. Never blocks. A device lost before the
    /// values came back gives [`RuntimeError::DeviceLost`].
    pub fn try_take(&mut self) -> Option<Result<Vec<f32>>> {
        if self.taken {
            return None;
        }
        let mapped = self.state.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        self.taken = true;
        let values = mapped.map_err(|e| RuntimeError::Readback(e.to_string())).and_then(|()| {
            let slice = self.buffer.slice(..self.bytes);
            let view = slice.get_mapped_range().map_err(|e| RuntimeError::Readback(e.to_string()))?;
            let values = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
            drop(view);
            self.buffer.unmap();
            Ok(values)
        });
        Some(values.map_err(|e| self.watch.explain(e)))
    }
}

impl Session {
    /// Records the model into the host's `encoder` (on the device the session was made on, see
    /// [`Session::with_device`]): its input from `input`, its output (f32, one sample of
    /// [`Session::output_shape`] per input sample, batch first) copied to the start of `output`,
    /// which needs `COPY_DST` usage. Nothing is submitted: the host submits the encoder in its
    /// frame. The session's buffers are reused by every call, so the host's submissions must
    /// reach the GPU in the order it encoded them (one queue does that), and a session that
    /// encodes into a host's frames must not also [`Session::run`] on another thread: the host's
    /// submission could land between that run's upload and its dispatches. Where the session
    /// shares its kernels' tiles ([`Session::tile_sharers`]), the recording starts by zeroing
    /// their counters.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, input: Input<'_>, output: &wgpu::Buffer) -> Result<()> {
        let batch = self.encode_model(encoder, input)?;
        let bytes = self.output_bytes(batch);
        if !output.usage().contains(wgpu::BufferUsages::COPY_DST) || output.size() < bytes {
            return Err(encode_error(format!("the output buffer needs COPY_DST usage and {bytes} bytes; it has {:?} and {} bytes", output.usage(), output.size())));
        }
        encoder.copy_buffer_to_buffer(&self.activations[self.output_port().0], 0, output, 0, bytes);
        Ok(())
    }

    /// Like [`Session::encode`], with the output brought to the CPU: the returned handle gives it
    /// once the GPU has finished the submission that holds `encoder` ([`ReadbackHandle::try_take`],
    /// which never blocks).
    pub fn encode_readback(&self, encoder: &mut wgpu::CommandEncoder, input: Input<'_>) -> Result<ReadbackHandle> {
        let batch = self.encode_model(encoder, input)?;
        let bytes = self.output_bytes(batch);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mfn readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&self.activations[self.output_port().0], 0, &buffer, 0, bytes);
        let state = Arc::new(Mutex::new(None));
        let done = state.clone();
        encoder.map_buffer_on_submit(&buffer, wgpu::MapMode::Read, ..bytes, move |r| {
            *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        Ok(ReadbackHandle { buffer, bytes, state, taken: false, watch: self.loss_watch() })
    }

    /// The output the embedding API delivers (the model's first).
    fn output_port(&self) -> (usize, &[usize]) {
        (self.outputs[0].buffer, &self.outputs[0].shape)
    }

    fn output_bytes(&self, batch: usize) -> u64 {
        (4 * batch * self.output_port().1.iter().product::<usize>()) as u64
    }

    /// Records the input step and every dispatch; returns the batch.
    fn encode_model(&self, encoder: &mut wgpu::CommandEncoder, input: Input<'_>) -> Result<usize> {
        if self.precision != mfn_compiler::Precision::F32 {
            return Err(RuntimeError::F16Unsupported("the embedding API (f32 buffers in and out)"));
        }
        let batch = match input {
            Input::Buffer { batch, .. } => batch,
            Input::Texture { warps, .. } => warps.len(),
        };
        if batch == 0 || batch > self.max_batch() {
            return Err(encode_error(format!("a batch of {batch} samples: the session takes 1 to {} (its max_batch)", self.max_batch())));
        }
        let target = &self.activations[self.input.0];
        let texture_step = match input {
            Input::Buffer { buffer, .. } => {
                let bytes = (4 * batch * self.input_shape().iter().product::<usize>()) as u64;
                if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) || buffer.size() < bytes {
                    return Err(encode_error(format!("the input buffer needs COPY_SRC usage and {bytes} bytes; it has {:?} and {} bytes", buffer.usage(), buffer.size())));
                }
                encoder.copy_buffer_to_buffer(buffer, 0, target, 0, bytes);
                None
            }
            Input::Texture { kernel, texture, warps } => Some(self.bind_texture(kernel, texture, warps)?),
        };
        // A dispatch a kernel, never a chain: the session could not see a chain give up.
        self.clear_tile_counters(encoder);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mfn"), timestamp_writes: None });
        if let Some((pipeline, bind_group)) = &texture_step {
            let [_, h, w] = self.input_shape()[..] else { unreachable!("TextureInput::new checked the shape") };
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups((h * w).div_ceil(WORKGROUP as usize) as u32, 1, batch as u32);
        }
        for d in &self.dispatches {
            pass.set_pipeline(&self.pipelines[d.pipeline]);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], batch as u32);
        }
        Ok(batch)
    }

    /// The bind group of one texture-input dispatch: the texture's unorm view, the warps (a
    /// buffer of their own, so every encoded frame keeps its own), the session's input buffer.
    fn bind_texture(&self, kernel: &TextureInput, texture: &wgpu::Texture, warps: &[TextureWarp]) -> Result<(wgpu::ComputePipeline, wgpu::BindGroup)> {
        let format = texture.format();
        let view_format = unorm_view(format).ok_or_else(|| encode_error(format!("texture format {format:?} is not RGBA8 or BGRA8 (unorm or sRGB)")))?;
        if !texture.usage().contains(wgpu::TextureUsages::TEXTURE_BINDING) || texture.dimension() != wgpu::TextureDimension::D2 || texture.sample_count() != 1 {
            return Err(encode_error(format!(
                "the input texture must be 2D, single-sampled, with TEXTURE_BINDING usage; it has {:?}, {:?}, {} samples",
                texture.usage(),
                texture.dimension(),
                texture.sample_count()
            )));
        }
        if let Some(i) = warps.iter().position(|w| w.0.iter().any(|v| !v.is_finite())) {
            return Err(encode_error(format!("warp {i} has a non-finite coefficient: {:?}", warps[i].0)));
        }
        let scopes = crate::scope::Scopes::push(&self.device);
        // sRGB textures are read as their bytes, through a unorm view: the texture must list
        // that format in its view_formats.
        let view = texture.create_view(&wgpu::TextureViewDescriptor { format: Some(view_format), mip_level_count: Some(1), array_layer_count: Some(1), ..Default::default() });
        let rows: Vec<f32> = warps.iter().flat_map(|w| [w.0[0], w.0[1], w.0[2], 0.0, w.0[3], w.0[4], w.0[5], 0.0]).collect();
        let warps = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("mfn warps"),
            contents: bytemuck::cast_slice(&rows),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("texture input"),
            layout: &kernel.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&view) },
                wgpu::BindGroupEntry { binding: 1, resource: warps.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: self.activations[self.input.0].as_entire_binding() },
            ],
        });
        if let Some(e) = scopes.pop() {
            let hint = if format.is_srgb() { format!(" (an sRGB texture must list {view_format:?} in its view_formats)") } else { String::new() };
            return Err(encode_error(format!("binding the input texture failed{hint}: {e}")));
        }
        Ok((kernel.pipeline.clone(), bind_group))
    }
}
