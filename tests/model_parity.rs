//! Whole-model parity on the GPU: the project's generated MobileFaceNet variants against their
//! onnxruntime reference outputs, and the real pretrained model on aligned LFW crops against the
//! per-pair cosines onnxruntime gives and against the CPU evaluator.

mod common;

use std::collections::HashMap;
use std::path::Path;

use mfn::Variant;

/// Relative tolerance against onnxruntime (max |diff| / max |ref|): f32 sums of up to 4,608 terms
/// in another order differ by a few ulps of the partial sums; measured here about 2e-6.
const REFERENCE_TOLERANCE: f32 = 2e-5;

#[test]
fn synthetic_variants_match_onnxruntime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference");
    for variant in Variant::all() {
        let onnx = mfn::synthetic_model(variant);
        let program = common::compile(&onnx);
        let input = mfn_models::sample_input(variant, 2, mfn::SYNTHETIC_SEED);
        let path = dir.join(format!("{}.output.npy", variant.name()));
        let (shape, want) = mfn_models::read_npy_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(shape, vec![2, variant.embedding_dim()], "{}", path.display());
        let cpu = mfn_compiler::eval::run(&common::optimised(&onnx), &input).expect("CPU evaluation");
        let cpu_diff = common::max_rel_diff(&cpu, &want);
        assert!(cpu_diff <= REFERENCE_TOLERANCE, "{}: CPU evaluator differs from onnxruntime by {cpu_diff:e}", variant.name());
        let Some(session) = common::session(&program, 2) else { return };
        let gpu = session.run(&input).expect("GPU run");
        let gpu_diff = common::max_rel_diff(&gpu, &want);
        eprintln!("{}: GPU vs onnxruntime {gpu_diff:e}, CPU vs onnxruntime {cpu_diff:e}", variant.name());
        assert!(gpu_diff <= REFERENCE_TOLERANCE, "{}: GPU differs from onnxruntime by {gpu_diff:e}", variant.name());
    }
}

/// Pairs of the LFW subset: image paths, label, onnxruntime's cosine.
fn lfw_pairs(csv: &str) -> Vec<(String, String, f64)> {
    let path = mfn::shared_file(csv).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&path).expect("pairs file readable");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[3].parse().expect("cosine column"))
        })
        .collect()
}

/// An aligned 112x112 LFW crop as RGB 0..255, NCHW.
fn load_face(name: &str) -> Vec<f32> {
    let path = mfn::shared_file(&format!("faces/lfw/images/{name}")).unwrap_or_else(|e| panic!("{e}"));
    let rgb = mfn::image_io::load_rgb(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((rgb.width, rgb.height), (112, 112), "{}", path.display());
    rgb.to_nchw()
}

/// CPU evaluator on both cores: a few hundred faces take a while.
fn cpu_embeddings(graph: &mfn_compiler::ir::Graph, faces: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let half = faces.len().div_ceil(2);
    std::thread::scope(|s| {
        let parts: Vec<_> =
            faces.chunks(half).map(|chunk| s.spawn(move || chunk.iter().map(|f| mfn_compiler::eval::run(graph, f).expect("CPU evaluation")).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|p| p.join().expect("CPU evaluator thread")).collect()
    })
}

fn check_lfw_subset(model: &str) {
    let pairs = lfw_pairs("faces/lfw/pairs_subset200.csv");
    let model_path = mfn::shared_file(model).unwrap_or_else(|e| panic!("{e}"));
    let onnx = std::fs::read(&model_path).expect("model readable");
    let mut names: Vec<&str> = pairs.iter().flat_map(|(a, b, _)| [a.as_str(), b.as_str()]).collect();
    names.sort_unstable();
    names.dedup();
    let faces: Vec<Vec<f32>> = names.iter().map(|n| load_face(n)).collect();
    let Some(session) = common::session(&common::compile(&onnx), 16) else { return };
    let gpu: Vec<Vec<f32>> = faces.chunks(16).flat_map(|batch| session.run(&batch.concat()).expect("GPU run").chunks(128).map(<[f32]>::to_vec).collect::<Vec<_>>()).collect();
    let cpu = cpu_embeddings(&common::optimised(&onnx), &faces);
    let worst_cpu = gpu.iter().zip(&cpu).map(|(g, c)| common::cosine(g, c)).fold(1.0, f64::min);
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let worst_pair = pairs.iter().map(|(a, b, want)| (common::cosine(&gpu[index[a.as_str()]], &gpu[index[b.as_str()]]) - want).abs()).fold(0.0, f64::max);
    eprintln!("{model}: {} faces, lowest cosine GPU vs CPU evaluator {worst_cpu:.7}, largest per-pair cosine difference from onnxruntime {worst_pair:.2e}", faces.len());
    assert!(worst_cpu >= 0.99999, "{model}: an embedding's cosine to the CPU evaluator's is {worst_cpu}");
    assert!(worst_pair <= 1e-4, "{model}: a per-pair cosine differs from onnxruntime's by {worst_pair}");
}

#[test]
fn real_model_on_lfw_subset() {
    check_lfw_subset(mfn::REAL_MODEL);
}

#[test]
fn real_bnfolded_model_on_lfw_subset() {
    check_lfw_subset("models/mobilefacenet-insightface-bnfolded.onnx");
}

/// Whether a model normalises its own input is read from the graph: the pretrained model's
/// `Sub 127.5, Mul 1/128` on `data` (folded into the first conv's prologue since) marks it; the
/// generated models take normalised input. The flag survives the .mfn round trip.
#[test]
fn input_normalisation_is_read_from_the_graph() {
    for file in ["models/mobilefacenet-insightface.onnx", "models/mobilefacenet-insightface-bnfolded.onnx"] {
        let path = mfn::shared_file(file).unwrap_or_else(|e| panic!("{e}"));
        let program = common::compile(&std::fs::read(&path).expect("model readable"));
        assert!(program.normalises_input, "{file}");
        let back = mfn_compiler::Program::from_mfn(&program.to_mfn()).expect("round trip");
        assert!(back.normalises_input, "{file} after .mfn");
    }
    let program = common::compile(&mfn::synthetic_model(Variant::Mfn112x112));
    assert!(!program.normalises_input, "the generated MobileFaceNet takes normalised input");
}
