//! The opt-in f16 storage mode: every activation and weight stored as f16, arithmetic in f32.
//! Its parity tolerance is its own (stated below), checked against onnxruntime for the generated
//! variants, per-pair cosines for the pretrained model, and box coordinates for the detector.

mod common;

use std::path::Path;

use mfn::Variant;
use mfn_compiler::{compile, CompileOptions, Precision};

fn f16() -> CompileOptions {
    CompileOptions { precision: Precision::F16, ..CompileOptions::default() }
}

/// Relative tolerance against onnxruntime (max |diff| / max |ref|) in f16 mode. Every stored value
/// is rounded to 11 significant bits (relative error up to 2^-11 = 4.9e-4); over the ~50 layers of
/// MobileFaceNet, with BN folded into f16 weights, the errors add up like a random walk of that
/// size per layer: a few 1e-3 of the output range (measured 3.4e-3 to 5.3e-3 on lavapipe).
const F16_TOLERANCE: f32 = 1e-2;

#[test]
fn f16_generated_variants_match_onnxruntime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference");
    for variant in Variant::all() {
        let onnx = mfn::synthetic_model(variant);
        let program = compile(&onnx, &f16()).expect("compiles in f16");
        assert_eq!(program.precision, Precision::F16);
        assert!(program.kernels.iter().all(|k| k.wgsl.contains("enable f16;") && k.wgsl.contains("alias stored = f16;")));
        assert_eq!(mfn_compiler::Program::from_mfn(&program.to_mfn()).as_ref(), Ok(&program), "f16 survives the .mfn round trip");
        let input = mfn_models::sample_input(variant, 2, mfn::SYNTHETIC_SEED);
        let path = dir.join(format!("{}.output.npy", variant.name()));
        let (_, want) = mfn_models::read_npy_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(session) = common::session(&program, 2) else { return };
        let got = session.run(&input).expect("f16 run");
        let diff = common::max_rel_diff(&got, &want);
        eprintln!("{} f16: {diff:e}", variant.name());
        assert!(diff <= F16_TOLERANCE, "{}: f16 differs from onnxruntime by {diff:e}", variant.name());
    }
}

/// An aligned 112x112 LFW crop as RGB 0..255, NCHW.
fn load_face(name: &str) -> Vec<f32> {
    let path = mfn::shared_file(&format!("faces/lfw/images/{name}")).unwrap_or_else(|e| panic!("{e}"));
    mfn::image_io::load_rgb(&path).unwrap_or_else(|e| panic!("{e:#}")).to_nchw()
}

/// Largest per-pair cosine difference from onnxruntime's fp32 column allowed in f16 mode: measured
/// 5.3e-4 on these pairs (lavapipe). LFW decisions at the 0.28 threshold move only for pairs that
/// close to it.
const F16_COSINE_TOLERANCE: f64 = 2e-3;

#[test]
fn f16_pretrained_model_keeps_the_lfw_cosines() {
    let path = mfn::shared_file("faces/lfw/pairs_subset200.csv").unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&path).expect("pairs readable");
    // Every 10th pair: 10 same-person and 10 different-person pairs.
    let pairs: Vec<(String, String, f64)> = text
        .lines()
        .skip(1)
        .step_by(10)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].into(), f[1].into(), f[3].parse().expect("cosine column"))
        })
        .collect();
    let model = mfn::shared_file("models/mobilefacenet-insightface.onnx").unwrap_or_else(|e| panic!("{e}"));
    let program = compile(&std::fs::read(model).expect("model readable"), &f16()).expect("compiles in f16");
    let Some(session) = common::session(&program, 8) else { return };
    let mut worst = 0.0f64;
    for (a, b, want) in &pairs {
        let input = [load_face(a), load_face(b)].concat();
        let e = session.run(&input).expect("f16 run");
        let cos = mfn::face::cosine(&e[..128], &e[128..]);
        worst = worst.max((cos - want).abs());
    }
    eprintln!("f16: largest cosine difference from onnxruntime over {} pairs: {worst:e}", pairs.len());
    assert!(worst <= F16_COSINE_TOLERANCE, "f16 cosines differ from onnxruntime by up to {worst:e}");
}

/// A device opened without SHADER_F16 refuses an f16 program with an error naming the feature.
#[test]
fn f16_needs_shader_f16() {
    let program = compile(&mfn::synthetic_model(Variant::Mfn112x112), &f16()).expect("compiles in f16");
    let Some(adapter) = common::adapter() else { return };
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).expect("plain device");
    assert!(!device.features().contains(mfn_runtime::wgpu::Features::SHADER_F16));
    let e = mfn_runtime::Session::with_device(&program, device, queue, adapter.get_info(), 1).err().expect("refused").to_string();
    assert!(e.contains("SHADER_F16") && e.contains("f16"), "{e}");
}

/// GPU preprocessing writes an f16 program's input in f16. 8-bit values and their
/// (x - 127.5) / 128 are exact in f16, so an identity warp gives the CPU's conversion exactly; a
/// resize differs from the f32 path by f16 rounding alone; and `run_images` gives `run`'s
/// outputs on the same floats.
#[test]
fn f16_gpu_preprocessing_writes_the_f16_input() {
    use mfn_runtime::{Image, Normalization};
    let program = compile(&mfn::synthetic_model(Variant::Mfn112x112), &f16()).expect("compiles in f16");
    let Some(session) = common::session(&program, 2) else { return };
    let f32_program = compile(&mfn::synthetic_model(Variant::Mfn112x112), &CompileOptions::default()).expect("compiles in f32");
    let Some(f32_session) = common::session(&f32_program, 2) else { return };
    let mut rng = mfn_models::rng::Rng::new(16);
    let pixels = |w: usize, h: usize, rng: &mut mfn_models::rng::Rng| -> Vec<u8> { (0..3 * w * h).map(|_| (rng.next_u64() >> 56) as u8).collect() };
    let (face, photo) = (pixels(112, 112, &mut rng), pixels(150, 131, &mut rng));
    let crops = [Image { width: 112, height: 112, rgb: &face }, Image { width: 112, height: 112, rgb: &face }];
    let cpu: Vec<f32> = crops.iter().flat_map(|i| (0..3).flat_map(move |c| i.rgb.chunks_exact(3).map(move |p| f32::from(p[c])))).collect();
    let norm = Normalization { mean: [127.5; 3], std: [128.0; 3] };
    for (n, want) in [(Normalization::IDENTITY, cpu.clone()), (norm, cpu.iter().map(|x| (x - 127.5) / 128.0).collect())] {
        let got = session.preprocess(&crops, &n).expect("f16 preprocessing");
        assert!(got == want, "f16 GPU preprocessing of 112x112 crops differs from the CPU conversion ({n:?})");
    }
    let resized = session.preprocess(&[Image { width: 150, height: 131, rgb: &photo }], &Normalization::IDENTITY).expect("f16 resize");
    let reference = f32_session.preprocess(&[Image { width: 150, height: 131, rgb: &photo }], &Normalization::IDENTITY).expect("f32 resize");
    // Half an f16 ulp at 128..256 (0.125) is the most rounding can move a value below 256.
    let worst = resized.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 0.0625, "f16 resize differs from f32 by {worst} (more than f16 rounding)");
    let by_images = session.run_images(&crops, &Normalization::IDENTITY).expect("f16 run_images");
    assert!(by_images == session.run(&cpu).expect("f16 run"), "f16 run_images differs from run on the same floats");
}
