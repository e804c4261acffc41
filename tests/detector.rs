//! The YuNet face detector compiled by our compiler: every output against onnxruntime on a fixed
//! pattern (the dynamic export, specialised to 96x128), the fixed 320x320 export against the
//! dynamic one specialised to the same size, and clear errors where the input size is missing or
//! contradicts the model.

mod common;

use std::path::Path;

use mfn_compiler::{compile, CompileOptions};

/// Relative tolerance against onnxruntime, per output (max |diff| / max |ref| of that output):
/// sums of at most 576 terms (1x1 convs over 64 channels, 3x3 depthwise) in another order; the
/// sigmoid outputs add WGSL's `exp` error. Measured below 1e-6.
const TOLERANCE: f32 = 2e-5;

fn model(name: &str) -> Vec<u8> {
    let path = mfn::shared_file(&format!("models/{name}")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pattern of models/yunet_raw_reference.py: B, G, R planes of ((c*7919 + y*131 + x*17) mod 256).
fn pattern(h: usize, w: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            x.extend((0..w).map(|i| ((c * 7919 + y * 131 + i * 17) % 256) as f32));
        }
    }
    x
}

fn options(shape: &[usize]) -> CompileOptions {
    CompileOptions { batch: 1, input_shape: Some(shape.to_vec()) }
}

#[test]
fn dynamic_yunet_matches_onnxruntime() {
    let onnx = model("yunet_n_dynamic.onnx");
    let program = compile(&onnx, &options(&[3, 96, 128])).expect("YuNet compiles for 96x128");
    let names: Vec<&str> = program.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"]);
    let anchors = [12 * 16, 6 * 8, 3 * 4];
    for (o, width) in program.outputs.iter().zip([1, 1, 1, 1, 1, 1, 4, 4, 4, 10, 10, 10]) {
        let i = program.outputs.iter().position(|p| p.name == o.name).unwrap_or(0);
        assert_eq!(o.shape, vec![anchors[i % 3], width], "shape of {}", o.name);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/yunet_n_dynamic-96x128.outputs.npy");
    let (_, want) = mfn_models::read_npy_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let input = pattern(96, 128);
    let graph = mfn_compiler::optimise(&onnx, &options(&[3, 96, 128])).expect("optimises");
    let cpu = mfn_compiler::eval::run_all(&graph, &input).expect("CPU evaluation");
    let check = |what: &str, got: &[Vec<f32>]| {
        let mut offset = 0;
        for (o, g) in program.outputs.iter().zip(got) {
            let w = &want[offset..offset + o.elements()];
            offset += o.elements();
            let diff = common::max_rel_diff(g, w);
            eprintln!("{what} {}: {diff:e}", o.name);
            assert!(diff <= TOLERANCE, "{what}: output {} differs from onnxruntime by {diff:e}", o.name);
        }
        assert_eq!(offset, want.len(), "reference length");
    };
    check("CPU evaluator", &cpu);
    let Some(session) = common::session(&program, 1) else { return };
    check("GPU", &session.run_all(&input).expect("GPU run"));
}

#[test]
fn fixed_export_matches_the_dynamic_one() {
    let fixed = compile(&model("yunet_n_320_320.onnx"), &CompileOptions::default()).expect("fixed YuNet compiles");
    let dynamic = compile(&model("yunet_n_dynamic.onnx"), &options(&[3, 320, 320])).expect("dynamic YuNet compiles for 320x320");
    assert_eq!(fixed.input.shape, vec![3, 320, 320]);
    assert_eq!(fixed.stats.macs, dynamic.stats.macs);
    assert_eq!(fixed.stats.parameters, 73_840, "YuNet-n has 73.9 k parameters");
    let Some(a) = common::session(&fixed, 1) else { return };
    let Some(b) = common::session(&dynamic, 1) else { return };
    let input = pattern(320, 320);
    let (ya, yb) = (a.run_all(&input).expect("fixed runs"), b.run_all(&input).expect("dynamic runs"));
    assert_eq!(ya.len(), 12);
    for ((o, x), y) in fixed.outputs.iter().zip(&ya).zip(&yb) {
        assert_eq!(x, y, "output {} of the two exports", o.name);
    }
}

/// The message of a compilation that must fail (without printing a whole program when it does not).
fn error(r: Result<mfn_compiler::Program, mfn_compiler::CompileError>) -> String {
    match r {
        Ok(p) => panic!("compiled, with input {:?}", p.input.shape),
        Err(e) => e.to_string(),
    }
}

#[test]
fn input_size_errors_are_clear() {
    let dynamic = model("yunet_n_dynamic.onnx");
    let e = error(compile(&dynamic, &CompileOptions::default()));
    assert!(e.contains("input") && e.contains("dimension 2 is symbolic"), "{e}");
    let e = error(compile(&dynamic, &options(&[3, 320])));
    assert!(e.contains("has 4 axes") && e.contains("[3, 320]"), "{e}");
    let e = error(compile(&model("yunet_n_320_320.onnx"), &options(&[3, 640, 640])));
    assert!(e.contains("fixed at 320"), "{e}");
    // 120 halves to 60, 30, 15, 7, 3: the FPN's upsampled 3x3 map (6x6) no longer matches the 7x7
    // skip connection it is added to.
    let e = error(compile(&dynamic, &options(&[3, 120, 120])));
    assert!(e.contains("Add") && e.contains("do not broadcast"), "{e}");
}
