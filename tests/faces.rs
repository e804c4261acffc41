//! The face pipeline on real photos: the detector (YuNet compiled by us, letterboxed on the GPU)
//! against onnxruntime's faces recorded in models/reference/yunet (boxes and landmarks within
//! 1 px), same-person pairs of photos against different-person pairs after detect -> align ->
//! embed, and bad input (no face, not an image, empty, 1x1, huge).

mod common;

use std::path::{Path, PathBuf};

use mfn::detect::{Detector, Face};
use mfn::image_io::{load_rgb, RgbImage};
use mfn_runtime::SessionOptions;

fn shared(relative: &str) -> PathBuf {
    mfn::shared_file(relative).unwrap_or_else(|e| panic!("{e}"))
}

fn photo(name: &str) -> PathBuf {
    shared(&format!("faces/photos/{name}"))
}

/// The detector on the default 640x640 canvas, or `None` where there is no GPU (outside CI).
fn detector(canvas: (usize, usize), max_batch: usize) -> Option<Detector> {
    let onnx = std::fs::read(shared("models/yunet_n_dynamic.onnx")).expect("detector readable");
    match Detector::new(&onnx, Some(canvas), &SessionOptions { max_batch, ..Default::default() }) {
        Ok(d) => Some(d),
        Err(e) => match e.downcast_ref::<mfn_runtime::RuntimeError>() {
            Some(mfn_runtime::RuntimeError::NoAdapter { .. }) if !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                eprintln!("skipping GPU test: {e}");
                None
            }
            _ => panic!("creating the detector failed: {e:#}"),
        },
    }
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(items) => items.iter().flat_map(numbers).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().expect("a number")],
        other => panic!("expected numbers, got {other}"),
    }
}

/// A reference face: score, box, landmarks flattened to 10 values.
fn reference_faces(record: &serde_json::Value) -> Vec<(f64, Vec<f64>, Vec<f64>)> {
    record["faces"].as_array().expect("faces").iter().map(|f| (f["score"].as_f64().expect("score"), numbers(&f["box"]), numbers(&f["landmarks"]))).collect()
}

#[test]
fn detector_matches_onnxruntime_on_every_photo() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/yunet");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 15, "expected a reference per photo in {}", dir.display());
    let Some(detector) = detector((640, 640), 1) else { return };
    let mut worst = 0.0f64;
    for file in &files {
        let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).expect("readable")).expect("JSON");
        let name = record["image"].as_str().expect("image name");
        let image = load_rgb(&photo(name)).expect("photo decodes");
        assert_eq!((image.width as u64, image.height as u64), (record["width"].as_u64().unwrap(), record["height"].as_u64().unwrap()), "{name}: size");
        // mozjpeg here and PIL there must decode the same pixels for the comparison to mean anything.
        assert_eq!(u64::from(crc32fast::hash(&image.data)), record["pixels_crc32"].as_u64().unwrap(), "{name}: decoded pixels differ from PIL's");
        let faces = detector.detect(&image).expect("detection");
        let want = reference_faces(&record);
        assert_eq!(faces.len(), want.len(), "{name}: {} faces, onnxruntime {} ({faces:?})", faces.len(), want.len());
        for (k, (got, (score, rect, landmarks))) in faces.iter().zip(&want).enumerate() {
            let got_values = got.rect.iter().chain(got.landmarks.as_flattened()).map(|v| f64::from(*v));
            let diff = got_values.zip(rect.iter().chain(landmarks)).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
            assert!(diff <= 1.0, "{name} face {k}: box/landmarks differ from onnxruntime by {diff:.3} px\n got {got:?}\nwant {rect:?} {landmarks:?}");
            assert!((f64::from(got.score) - score).abs() < 1e-3, "{name} face {k}: score {} vs {score}", got.score);
            worst = worst.max(diff);
        }
    }
    eprintln!("largest box/landmark difference from onnxruntime over {} photos: {worst:.4} px", files.len());
}
