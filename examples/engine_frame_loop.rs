//! An engine-like frame loop embedding faces on the GPU, headless: the host creates its own wgpu
//! device, renders each frame into a texture with a render pass (a synthetic face-like pattern
//! moving across the frame), and in the same encoder and submission has mfn cut the face region
//! out of the frame, resize it and run the model on it (`Session::encode_readback`). The
//! embeddings come back asynchronously: the loop polls without ever waiting for the GPU and
//! prints each result when it arrives, a few frames later. Per frame it prints the CPU time of
//! recording (render pass + `encode_readback`) and of `queue.submit` separately: on some drivers
//! (lavapipe among them) `submit` itself waits for the previous submission to finish.
//!
//! ```sh
//! cargo run --release --example engine_frame_loop -- [MODEL] [FRAMES]
//! ```
//! MODEL is an .onnx or .mfn path or `synthetic[:VARIANT]` (default `synthetic`: the project's
//! generated MobileFaceNet, so it runs from a fresh clone). The host must use the same wgpu
//! release as mfn-runtime (30.x); this example uses the one mfn-runtime re-exports.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mfn_runtime::{wgpu, Input, Normalization, ReadbackHandle, Session, TextureInput, TextureWarp};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
/// The face's half-size in pixels.
const RADIUS: f32 = 56.0;
/// Embeddings in flight at most; frames beyond that render without one (the GPU is busy).
const MAX_IN_FLIGHT: usize = 2;
/// The frame period the loop paces itself to (60 Hz), as a display would.
const FRAME: Duration = Duration::from_micros(16_667);

/// Full-screen triangle; the fragment shader draws a face-like pattern at `scene.center`.
const SCENE: &str = r#"
struct Scene { center: vec2<f32>, radius: f32, time: f32 }
@group(0) @binding(0) var<uniform> scene: Scene;

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let p = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(p * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let q = (pos.xy - scene.center) / scene.radius;
    var color = vec3<f32>(0.15 + 0.1 * sin(pos.x * 0.05 + scene.time), 0.2, 0.3 + 0.1 * cos(pos.y * 0.04));
    if dot(q * vec2<f32>(1.0, 0.8), q * vec2<f32>(1.0, 0.8)) < 0.8 {
        color = vec3<f32>(0.85, 0.65, 0.5);
        let eye = vec2<f32>(abs(q.x) - 0.35, q.y + 0.25);
        if dot(eye, eye) < 0.015 {
            color = vec3<f32>(0.1, 0.1, 0.15);
        }
        if abs(q.y - 0.45 - 0.1 * q.x * q.x) < 0.05 && abs(q.x) < 0.35 {
            color = vec3<f32>(0.6, 0.2, 0.2);
        }
    }
    return vec4<f32>(color, 1.0);
}
"#;

struct Pending {
    frame: usize,
    submitted: Instant,
    handle: ReadbackHandle,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "synthetic".into());
    let frames: usize = args.next().map(|f| f.parse()).transpose().context("FRAMES must be a number")?.unwrap_or(60);

    let (device, queue, info) = host_device()?;
    println!("adapter: {}", mfn_runtime::describe(&info));
    let model = mfn::program_from_bytes(&mfn::load_model(&spec)?, &spec)?;
    let session = Session::with_device(&model.program, device.clone(), queue.clone(), info, 1)?;
    // The generated MobileFaceNet takes 0..255 pixels as they are; a model trained on
    // normalised input would give its mean and std here.
    let kernel = TextureInput::new(&session, &Normalization::IDENTITY)?;
    let (out_h, out_w) = (session.input_shape()[1], session.input_shape()[2]);
    println!("model: {spec} (input {out_h}x{out_w}); scene: a synthetic face-like pattern moving across a {WIDTH}x{HEIGHT} sRGB render target");
    let scene = Scene::new(&device);

    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut first: Option<Vec<f32>> = None;
    let (mut record_us, mut submit_us, mut latencies, mut embedded) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let start = Instant::now();
    for frame in 0..frames {
        let deadline = start + FRAME * (frame as u32 + 1);
        let t = frame as f32 / 60.0;
        let center = [WIDTH as f32 / 2.0 + 70.0 * (1.3 * t).sin(), HEIGHT as f32 / 2.0 + 30.0 * (2.1 * t).cos()];
        let cpu = Instant::now();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frame") });
        scene.render(&queue, &mut encoder, center, t);
        // The face region (the host knows where it drew the face; a tracker would give it), in
        // the same encoder as the frame's render pass.
        let status = if pending.len() < MAX_IN_FLIGHT {
            let side = 2.0 * RADIUS;
            let warps = [TextureWarp::crop(center[0] - RADIUS, center[1] - RADIUS, side, side, out_w, out_h)];
            let handle = session.encode_readback(&mut encoder, Input::Texture { kernel: &kernel, texture: &scene.target, warps: &warps })?;
            pending.push_back(Pending { frame, submitted: Instant::now(), handle });
            embedded += 1;
            "face embedded"
        } else {
            "GPU busy: rendered only"
        };
        let recorded = cpu.elapsed();
        queue.submit([encoder.finish()]);
        let submitted = cpu.elapsed() - recorded;
        record_us.push(recorded.as_secs_f64() * 1e6);
        submit_us.push(submitted.as_secs_f64() * 1e6);
        println!("frame {frame:3}: {status:<24} CPU: record {:8.1} us, submit {:8.1} us", recorded.as_secs_f64() * 1e6, submitted.as_secs_f64() * 1e6);

        // Never wait: poll, take what has arrived.
        device.poll(wgpu::PollType::Poll)?;
        collect(&mut pending, frame, &mut first, &mut latencies)?;
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    // End of the run: let the last embeddings land.
    while !pending.is_empty() {
        device.poll(wgpu::PollType::Poll)?;
        collect(&mut pending, frames, &mut first, &mut latencies)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{frames} frames in {:.2} s, {embedded} faces embedded; per frame on the CPU: recording (render pass + encode) {:.1} us, submit {:.1} us on average; embedding latency (submit to result on the CPU) {:.1} ms on average",
        start.elapsed().as_secs_f64(),
        mean(&record_us),
        mean(&submit_us),
        mean(&latencies)
    );
    Ok(())
}

/// The host's own device, as an engine creates it (the adapter from `MFN_BACKEND` / `MFN_ADAPTER`).
fn host_device() -> Result<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let adapter = mfn_runtime::select_adapter(&mfn_runtime::AdapterOptions::from_env())?;
    let desc = wgpu::DeviceDescriptor { label: Some("engine"), required_limits: adapter.limits(), ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))?;
    Ok((device, queue, adapter.get_info()))
}

/// Prints every embedding that has arrived, in order.
fn collect(pending: &mut VecDeque<Pending>, now: usize, first: &mut Option<Vec<f32>>, latencies: &mut Vec<f64>) -> Result<()> {
    while let Some(p) = pending.front_mut() {
        let Some(result) = p.handle.try_take() else { break };
        let embedding = result?;
        let latency = p.submitted.elapsed().as_secs_f64() * 1e3;
        latencies.push(latency);
        let reference = first.get_or_insert_with(|| embedding.clone());
        println!(
            "           result of frame {} arrived at frame {now} ({latency:.1} ms after submission): {}-d, cosine to the first frame's {:.4}",
            p.frame,
            embedding.len(),
            mfn::face::cosine(&embedding, reference)
        );
        pending.pop_front();
    }
    Ok(())
}

/// The host's rendering: a render target and the pipeline that draws the scene into it.
struct Scene {
    /// The render target: sRGB as engines use, readable by mfn as its bytes through a unorm view.
    target: wgpu::Texture,
    view: wgpu::TextureView,
    pipeline: wgpu::RenderPipeline,
    /// The uniforms of `SCENE`: the face's centre, its radius, the time.
    uniforms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl Scene {
    fn new(device: &wgpu::Device) -> Scene {
        let target = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("frame"),
            size: wgpu::Extent3d { width: WIDTH, height: HEIGHT, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8UnormSrgb,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[wgpu::TextureFormat::Rgba8Unorm],
        });
        let view = target.create_view(&Default::default());
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("scene"), source: wgpu::ShaderSource::Wgsl(SCENE.into()) });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("scene"),
            layout: None,
            vertex: wgpu::VertexState { module: &module, entry_point: Some("vs"), compilation_options: Default::default(), buffers: &[] },
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState { format: wgpu::TextureFormat::Rgba8UnormSrgb, blend: None, write_mask: wgpu::ColorWrites::ALL })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scene"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("scene"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: uniforms.as_entire_binding() }],
        });
        Scene { target, view, pipeline, uniforms, bind_group }
    }

    /// Records the frame's render pass: the face at `center` at time `t`.
    fn render(&self, queue: &wgpu::Queue, encoder: &mut wgpu::CommandEncoder, center: [f32; 2], t: f32) {
        let uniforms: Vec<u8> = [center[0], center[1], RADIUS, t].iter().flat_map(|v| v.to_le_bytes()).collect();
        queue.write_buffer(&self.uniforms, 0, &uniforms);
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("scene"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &self.view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}
