//! Helpers shared by the workspace tests: GPU sessions that fail (not skip) under CI when no
//! adapter is found, comparisons, and the project's shared material.
#![allow(dead_code)]

use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{wgpu, RuntimeError, Session, SessionOptions};

/// A session for `program`, or `None` (with a note) when this machine has no GPU adapter.
/// Under CI (`CI=true`) a missing adapter is a failure: CI must always run the GPU tests.
pub fn session(program: &Program, max_batch: usize) -> Option<Session> {
    session_with(program, &SessionOptions { max_batch, ..Default::default() })
}

/// As [`session`], with the given options.
pub fn session_with(program: &Program, options: &SessionOptions) -> Option<Session> {
    match Session::new(program, options) {
        Ok(s) => Some(s),
        Err(e @ RuntimeError::NoAdapter { .. }) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("creating a session failed: {e}"),
    }
}

/// The adapter sessions would use, or `None` (with a note) without one; a failure under CI.
pub fn adapter() -> Option<mfn_runtime::wgpu::Adapter> {
    match mfn_runtime::select_adapter(&Default::default()) {
        Ok(a) => Some(a),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

pub fn compile(onnx: &[u8]) -> Program {
    mfn_compiler::compile(onnx, &CompileOptions::default()).expect("model compiles")
}

/// The optimised graph of a model, for the CPU evaluator.
pub fn optimised(onnx: &[u8]) -> mfn_compiler::ir::Graph {
    mfn_compiler::optimise(onnx, &CompileOptions::default()).expect("model compiles")
}

/// The unoptimised (imported) graph of a model.
pub fn imported(onnx: &[u8]) -> mfn_compiler::ir::Graph {
    mfn_compiler::onnx::import(onnx, 1, None).expect("model imports")
}

#[allow(unused_imports)]
pub use mfn::face::cosine;

/// Largest absolute difference, scaled by the largest magnitude of the reference (at least 1).
pub fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output lengths differ");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}

/// A device and queue opened the way a host application opens its own (requesting the adapter's
/// limits), or `None` (with a note) when there is no adapter; under CI that is a failure.
pub fn host_device() -> Option<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let adapter = match mfn_runtime::select_adapter(&mfn_runtime::AdapterOptions::from_env()) {
        Ok(a) => a,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            return None;
        }
    };
    let desc = wgpu::DeviceDescriptor { label: Some("host"), required_limits: adapter.limits(), ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).expect("host device");
    Some((device, queue, adapter.get_info()))
}

/// What shaders/preprocess.wgsl computes for one image (RGB order, no normalisation), on the CPU
/// in the same f32 arithmetic: each output pixel sampled bilinearly through `warp`.
pub fn cpu_warp(img: &mfn::image_io::RgbImage, warp: &mfn_runtime::Warp, out: (usize, usize)) -> Vec<f32> {
    let [[a, b, c], [d, e, f]] = warp.matrix;
    let (w, h) = (img.width as f32, img.height as f32);
    let edge = warp.border == mfn_runtime::Border::Edge;
    let texel = |x: i64, y: i64, ch: usize| -> f32 {
        if !edge && (x < 0 || y < 0 || x >= img.width as i64 || y >= img.height as i64) {
            return 0.0;
        }
        let (x, y) = (x.clamp(0, img.width as i64 - 1) as usize, y.clamp(0, img.height as i64 - 1) as usize);
        f32::from(img.data[3 * (y * img.width + x) + ch])
    };
    let plane = out.0 * out.1;
    let mut result = vec![0.0; 3 * plane];
    for oy in 0..out.1 {
        for ox in 0..out.0 {
            let (x, y) = (ox as f32, oy as f32);
            let (mut fx, mut fy) = (a * x + b * y + c, d * x + e * y + f);
            if edge {
                (fx, fy) = (fx.clamp(0.0, w - 1.0), fy.clamp(0.0, h - 1.0));
            } else if !(fx > -1.0 && fy > -1.0 && fx < w && fy < h) {
                continue;
            }
            let (x0, y0) = (fx.floor(), fy.floor());
            let (wx, wy) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for ch in 0..3 {
                let top = texel(x0, y0, ch) * (1.0 - wx) + texel(x0 + 1, y0, ch) * wx;
                let bottom = texel(x0, y0 + 1, ch) * (1.0 - wx) + texel(x0 + 1, y0 + 1, ch) * wx;
                result[ch * plane + oy * out.0 + ox] = top * (1.0 - wy) + bottom * wy;
            }
        }
    }
    result
}
