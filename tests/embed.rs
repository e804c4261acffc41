//! The embedding API on a host's own device: `Session::encode` into the host's encoder with the
//! input from a buffer or from warped regions of a texture, and the non-blocking readback,
//! against the plain `Session::run` on the same input.

mod common;

use std::time::{Duration, Instant};

use mfn_runtime::{wgpu, Input, Normalization, ReadbackHandle, RuntimeError, Session, TextureInput, TextureWarp};
use wgpu::util::DeviceExt;

/// A 112 high x 96 wide model (non-square, so rows and columns cannot be swapped unnoticed) on a
/// host device.
fn host_session(max_batch: usize) -> Option<(Session, wgpu::Device, wgpu::Queue)> {
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::Mfn112x96));
    let (device, queue, info) = common::host_device()?;
    let session = Session::with_device(&program, device.clone(), queue.clone(), info, max_batch).expect("session on the host device");
    Some((session, device, queue))
}

/// Blocks on a handle, polling as a render loop would (for the test only).
fn wait(device: &wgpu::Device, handle: &mut ReadbackHandle) -> Vec<f32> {
    let start = Instant::now();
    loop {
        device.poll(wgpu::PollType::Poll).expect("poll");
        if let Some(result) = handle.try_take() {
            assert!(handle.try_take().is_none(), "values taken twice");
            return result.expect("readback");
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the readback never completed");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A host buffer read back synchronously (for the test only).
fn read_buffer(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
    queue.submit([encoder.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let values = bytemuck_f32(&staging.slice(..).get_mapped_range().expect("mapped"));
    values
}

fn bytemuck_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn encode_from_a_buffer_matches_run() {
    let Some((session, device, queue)) = host_session(2) else { return };
    let per_sample: usize = session.input_shape().iter().product();
    let x = mfn_models::rng::Rng::new(11).uniform_vec(2 * per_sample, 0.0, 255.0);
    let want = session.run(&x).expect("run");
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("host input"), contents: &f32_bytes(&x), usage: wgpu::BufferUsages::COPY_SRC });
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host output"),
        size: 4 * want.len() as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    session.encode(&mut encoder, Input::Buffer { buffer: &input, batch: 2 }, &output).expect("encode");
    // Two batches in one encoder: the session's buffers are reused in order.
    let mut handle = session.encode_readback(&mut encoder, Input::Buffer { buffer: &input, batch: 1 }).expect("encode_readback");
    assert!(!handle.is_ready(), "ready before submission");
    queue.submit([encoder.finish()]);
    assert_eq!(wait(&device, &mut handle), want[..want.len() / 2], "encode_readback differs from run");
    assert_eq!(read_buffer(&device, &queue, &output), want, "encode into a host buffer differs from run");
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const TEX_W: usize = 150;
const TEX_H: usize = 130;

/// The model input the texture kernel must produce for `warp`, computed on the CPU: bilinear
/// samples of the RGB bytes, pixel centres at integer coordinates, 0 outside, normalised.
fn cpu_warp(rgba: &[u8], warp: &TextureWarp, out_h: usize, out_w: usize, norm: &Normalization) -> Vec<f32> {
    let m = warp.0;
    let texel = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= TEX_W as i64 || y >= TEX_H as i64 {
            0.0
        } else {
            f32::from(rgba[4 * (y as usize * TEX_W + x as usize) + c])
        }
    };
    let mut out = vec![0.0; 3 * out_h * out_w];
    for oy in 0..out_h {
        for ox in 0..out_w {
            let (x, y) = (ox as f32, oy as f32);
            let (sx, sy) = (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]);
            let (fx, fy) = (sx.floor(), sy.floor());
            let (wx, wy) = (sx - fx, sy - fy);
            let (x0, y0) = (fx as i64, fy as i64);
            for c in 0..3 {
                let lerp = |a: f32, b: f32, t: f32| a * (1.0 - t) + b * t;
                let top = lerp(texel(x0, y0, c), texel(x0 + 1, y0, c), wx);
                let bottom = lerp(texel(x0, y0 + 1, c), texel(x0 + 1, y0 + 1, c), wx);
                out[(c * out_h + oy) * out_w + ox] = (lerp(top, bottom, wy) - norm.mean[c]) * (1.0 / norm.std[c]);
            }
        }
    }
    out
}

fn texture(device: &wgpu::Device, queue: &wgpu::Queue, format: wgpu::TextureFormat, view_formats: &[wgpu::TextureFormat], bytes: &[u8]) -> wgpu::Texture {
    let size = wgpu::Extent3d { width: TEX_W as u32, height: TEX_H as u32, depth_or_array_layers: 1 };
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("frame"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats,
    });
    let layout = wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(4 * TEX_W as u32), rows_per_image: None };
    queue.write_texture(texture.as_image_copy(), bytes, layout, size);
    texture
}

/// Warps whose samples are exact in f32 (integer and quarter-pixel positions), so the GPU must
/// match the CPU bit for bit: a crop, a 90 degree rotation, a 2x enlargement at quarter-pixel
/// phase, and a region partly outside the texture.
fn warps(out_h: usize, out_w: usize) -> Vec<TextureWarp> {
    vec![
        TextureWarp([1.0, 0.0, 20.0, 0.0, 1.0, 10.0]),
        TextureWarp([0.0, -1.0, 130.0, 1.0, 0.0, 5.0]),
        TextureWarp::crop(7.0, 3.0, out_w as f32 / 2.0, out_h as f32 / 2.0, out_w, out_h),
        TextureWarp([1.0, 0.0, -30.0, 0.0, 1.0, 60.0]),
    ]
}

#[test]
fn encode_from_a_texture_matches_run_on_the_same_pixels() {
    let Some((session, device, queue)) = host_session(4) else { return };
    let [3, out_h, out_w] = session.input_shape()[..] else { panic!("image model") };
    let rgba: Vec<u8> = {
        let mut rng = mfn_models::rng::Rng::new(3);
        (0..4 * TEX_W * TEX_H).map(|_| rng.uniform_vec(1, 0.0, 256.0)[0].min(255.0) as u8).collect()
    };
    let bgra: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[2], p[1], p[0], p[3]]).collect();
    let norm = Normalization { mean: [127.5, 120.0, 100.0], std: [128.0, 64.0, 32.0] };
    let warps = warps(out_h, out_w);
    let expected_input: Vec<f32> = warps.iter().flat_map(|w| cpu_warp(&rgba, w, out_h, out_w, &norm)).collect();
    let want = session.run(&expected_input).expect("run");
    let cases = [
        (wgpu::TextureFormat::Rgba8Unorm, vec![], &rgba),
        (wgpu::TextureFormat::Bgra8Unorm, vec![], &bgra),
        // sRGB textures are read as their bytes through a unorm view.
        (wgpu::TextureFormat::Rgba8UnormSrgb, vec![wgpu::TextureFormat::Rgba8Unorm], &rgba),
        (wgpu::TextureFormat::Bgra8UnormSrgb, vec![wgpu::TextureFormat::Bgra8Unorm], &bgra),
    ];
    for (format, view_formats, bytes) in cases {
        let frame = texture(&device, &queue, format, &view_formats, bytes);
        let kernel = TextureInput::new(&session, &norm).expect("texture kernel");
        let mut encoder = device.create_command_encoder(&Default::default());
        let mut handle = session.encode_readback(&mut encoder, Input::Texture { kernel: &kernel, texture: &frame, warps: &warps }).expect("encode");
        queue.submit([encoder.finish()]);
        let got = wait(&device, &mut handle);
        assert!(common::max_rel_diff(&got, &want) <= 1e-6, "{format:?}: texture input differs from run on the CPU-warped pixels by {}", common::max_rel_diff(&got, &want));
    }
}

#[test]
fn encode_rejects_what_it_cannot_take() {
    let Some((session, device, queue)) = host_session(2) else { return };
    let per_sample: usize = session.input_shape().iter().product();
    let buffer = |size: usize, usage| device.create_buffer(&wgpu::BufferDescriptor { label: None, size: size as u64, usage, mapped_at_creation: false });
    let input = buffer(4 * 3 * per_sample, wgpu::BufferUsages::COPY_SRC);
    let output = buffer(4 * 3 * 128, wgpu::BufferUsages::COPY_DST);
    let mut encoder = device.create_command_encoder(&Default::default());
    let encode_err = |encoder: &mut wgpu::CommandEncoder, input, output: &wgpu::Buffer| match session.encode(encoder, input, output) {
        Err(e @ RuntimeError::Encode(_)) => e.to_string(),
        other => panic!("expected an encode error, got {other:?}"),
    };
    assert!(encode_err(&mut encoder, Input::Buffer { buffer: &input, batch: 3 }, &output).contains("1 to 2"));
    assert!(encode_err(&mut encoder, Input::Buffer { buffer: &input, batch: 0 }, &output).contains("batch of 0"));
    let no_copy = buffer(4 * per_sample, wgpu::BufferUsages::STORAGE);
    assert!(encode_err(&mut encoder, Input::Buffer { buffer: &no_copy, batch: 1 }, &output).contains("COPY_SRC"));
    let small = buffer(4, wgpu::BufferUsages::COPY_DST);
    assert!(encode_err(&mut encoder, Input::Buffer { buffer: &input, batch: 1 }, &small).contains("bytes"));
    let norm = Normalization::IDENTITY;
    // An sRGB texture without its unorm view format cannot be read as bytes.
    let srgb = texture(&device, &queue, wgpu::TextureFormat::Rgba8UnormSrgb, &[], &vec![0; 4 * TEX_W * TEX_H]);
    let kernel = TextureInput::new(&session, &norm).expect("kernel");
    let warps = [TextureWarp::crop(0.0, 0.0, 96.0, 112.0, 96, 112)];
    let message = encode_err(&mut encoder, Input::Texture { kernel: &kernel, texture: &srgb, warps: &warps }, &output);
    assert!(message.contains("view_formats"), "{message}");
    let r8 = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d { width: 8, height: 8, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R8Unorm,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    assert!(encode_err(&mut encoder, Input::Texture { kernel: &kernel, texture: &r8, warps: &warps }, &output).contains("R8Unorm"));
    let nan = [TextureWarp([f32::NAN, 0.0, 0.0, 0.0, 1.0, 0.0])];
    assert!(encode_err(&mut encoder, Input::Texture { kernel: &kernel, texture: &srgb, warps: &nan }, &output).contains("non-finite"));
    // Nothing half-recorded: the encoder still finishes and submits cleanly.
    queue.submit([encoder.finish()]);
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
}

#[test]
fn texture_input_template_is_valid_wgsl_on_its_own() {
    let source = include_str!("../shaders/texture_input.wgsl");
    mfn_compiler::codegen::template::validate("texture_input", source).unwrap_or_else(|e| panic!("shaders/texture_input.wgsl: {e}"));
}
