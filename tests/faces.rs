//! The face pipeline on real photos: the detector (YuNet compiled by us, letterboxed on the GPU)
//! against onnxruntime's faces recorded in models/reference/yunet (boxes and landmarks within
//! 1 px), same-person pairs of photos against different-person pairs after detect -> align ->
//! embed, and bad input (no face, not an image, empty, 1x1, huge).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mfn::detect::Detector;
use mfn::face::{cosine, detect_and_align, FaceEmbedder, DEFAULT_THRESHOLD};
use mfn::image_io::{load_rgb, RgbImage};
use mfn_runtime::{Normalization, SessionOptions};

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

/// The photos of the same-person test, with who they show.
const PEOPLE: [(&str, &str); 10] = [
    ("obama.jpg", "obama"),
    ("obama1.jpg", "obama"),
    ("obama2.jpg", "obama"),
    ("obama3.jpg", "obama"),
    ("biden.jpg", "biden"),
    ("biden_biden2.jpg", "biden"),
    ("rose_leslie_img1.jpg", "rose_leslie"),
    ("rose_leslie_img2.jpg", "rose_leslie"),
    ("alex_lacamoire1.jpg", "alex_lacamoire"),
    ("alex_lacamoire_img1.jpg", "alex_lacamoire"),
];

#[test]
fn same_person_photos_score_above_different_people() {
    let images: Vec<RgbImage> = PEOPLE.iter().map(|(name, _)| load_rgb(&photo(name)).expect("photo decodes")).collect();
    let Some(detector) = detector((640, 640), 1) else { return };
    let model = std::fs::read(shared(mfn::REAL_MODEL)).expect("model readable");
    let embedder = FaceEmbedder::new(&common::compile(&model), &SessionOptions { max_batch: 10, ..Default::default() }, Normalization::IDENTITY).expect("embedder");
    let mut faces = Vec::new();
    for ((name, _), image) in PEOPLE.iter().zip(&images) {
        let found = detect_and_align(&detector, image, embedder.input_size(), false).expect("detection");
        assert_eq!(found.len(), 1, "{name}: the largest face only");
        faces.push((image, found[0].warp));
    }
    let e = embedder.embed_warped(&faces).expect("embedding");
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for i in 0..PEOPLE.len() {
        for j in i + 1..PEOPLE.len() {
            let c = cosine(&e[i], &e[j]);
            let pair = format!("{} / {}: {c:.4}", PEOPLE[i].0, PEOPLE[j].0);
            if PEOPLE[i].1 == PEOPLE[j].1 {
                same.push((c, pair))
            } else {
                different.push((c, pair))
            }
        }
    }
    same.sort_by(|a, b| a.0.total_cmp(&b.0));
    different.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("same person: {:#?}\nmost similar different people: {:#?}", same, &different[..3]);
    assert_eq!((same.len(), different.len()), (9, 36), "obama 6 pairs, biden, rose_leslie, alex_lacamoire 1 each");
    let (lowest_same, highest_different) = (&same[0], &different[0]);
    assert!(lowest_same.0 > highest_different.0, "a same-person pair ({}) scores below a different-person pair ({})", lowest_same.1, highest_different.1);
    assert!(
        lowest_same.0 > DEFAULT_THRESHOLD && highest_different.0 < DEFAULT_THRESHOLD,
        "the default threshold {DEFAULT_THRESHOLD} does not separate {} from {}",
        lowest_same.1,
        highest_different.1
    );
}

fn mfn_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mfn")).args(args).output().expect("mfn runs")
}

/// A scratch folder for one test of this process.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mfn-faces-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A small JPEG whose frame header claims `width` x `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([90, 120, 150])).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("JPEG");
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame header");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

#[test]
fn bad_photos_are_clear_errors() {
    let dir = scratch("bad");
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("scratch file");
        p
    };
    // A smooth gradient: an image, but no face.
    let gradient = dir.join("gradient.png");
    image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([(x * 255 / 299) as u8, (y * 255 / 199) as u8, 128])).save(&gradient).expect("PNG");
    let tiny = dir.join("tiny.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([10, 20, 30])).save(&tiny).expect("1x1 PNG");
    let good = photo("obama.jpg");
    let cases: [(PathBuf, &str); 5] = [
        (write("empty.jpg", b""), "empty"),
        (write("text.jpg", b"this is not an image\n"), "not an image"),
        (gradient, "no face found in"),
        (tiny, "1x1: too small"),
        (write("huge.jpg", &jpeg_claiming(60000, 60000)), "60000x60000"),
    ];
    for (path, want) in &cases {
        let out = mfn_cli(&["verify", path.to_str().unwrap(), good.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("no GPU adapter") && !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            eprintln!("skipping: {stderr}");
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(
            stderr.contains("error:") && stderr.contains(want) && stderr.contains(&*path.display().to_string()) && !stderr.contains("panicked"),
            "{}: unclear error: {stderr}",
            path.display()
        );
    }
    // A missing detector is named, and only asked for when a photo needs detecting.
    let crop = shared("faces/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg");
    let out = mfn_cli(&["verify", "--detector", "no/such/yunet.onnx", good.to_str().unwrap(), crop.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && stderr.contains("no/such/yunet.onnx") && stderr.contains("obama.jpg"), "{stderr}");
    let out = mfn_cli(&["verify", "--detector", "no/such/yunet.onnx", crop.to_str().unwrap(), crop.to_str().unwrap()]);
    assert!(out.status.success(), "aligned crops need no detector: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_embeds_every_face_and_saves_the_crops() {
    let dir = scratch("crops");
    let group = photo("kit_with_rose.jpg");
    let out = mfn_cli(&["embed", "--all", "--json", "--save-aligned", dir.to_str().unwrap(), group.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no GPU adapter") && !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        eprintln!("skipping: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let faces = json.as_array().expect("one entry per face");
    assert_eq!(faces.len(), 2, "two faces in kit_with_rose.jpg");
    for face in faces {
        assert_eq!(face["embedding"].as_array().map(Vec::len), Some(128));
        assert!(face["score"].as_f64().is_some_and(|s| s > 0.9) && numbers(&face["landmarks"]).len() == 10, "{face}");
    }
    for k in 1..=2 {
        let crop = image::open(dir.join(format!("1-kit_with_rose_face{k}.png"))).expect("crop written").to_rgb8();
        assert_eq!(crop.dimensions(), (112, 112));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval-lfw --realign` on a pairs file: every crop re-detected (160x160 canvas) and re-aligned.
fn realigned_lfw(pairs_file: &str) -> Option<(mfn::lfw::Report, mfn::lfw::Accuracy)> {
    let pairs_file = shared(pairs_file);
    let pairs = mfn::lfw::read_pairs(&pairs_file).expect("pairs file");
    let detector = detector((160, 160), 16)?;
    let model = std::fs::read(shared(mfn::REAL_MODEL)).expect("model readable");
    let embedder = FaceEmbedder::new(&common::compile(&model), &SessionOptions { max_batch: 16, ..Default::default() }, Normalization::IDENTITY).expect("embedder");
    let report = mfn::lfw::evaluate(&embedder, &pairs, &mfn::lfw::images_dir(&pairs_file), 16, Some(&detector), &mut |_, _| {}).expect("evaluation");
    // What onnxruntime reaches on the crops as they are (the file's reference cosines).
    let reference: Vec<f64> = pairs.iter().map(|p| p.reference.expect("reference cosine")).collect();
    let same: Vec<bool> = pairs.iter().map(|p| p.same).collect();
    let plain = mfn::lfw::accuracy(&reference, &same);
    eprintln!("{pairs_file:?}: re-aligned {:?}; accuracy {:?}; as they are (onnxruntime) {plain:?}", report.realigned, report.accuracy);
    Some((report, plain))
}

#[test]
fn lfw_subset_realigned_finds_every_face_and_keeps_accuracy() {
    let Some((report, plain)) = realigned_lfw("faces/lfw/pairs_subset200.csv") else { return };
    assert_eq!(report.realigned, Some((report.images, 0)), "a face in every LFW crop");
    // Re-alignment moves the faces (~8 px onto the ArcFace template), so the cosines change...
    assert!(report.max_reference_diff.expect("reference cosines") > 1e-2, "re-alignment changed nothing");
    // ...and the accuracy does not get worse.
    assert!(report.accuracy.best >= plain.best && report.accuracy.fold_mean >= plain.fold_mean, "{:?} below {plain:?}", report.accuracy);
}

/// The full 5,474 pairs (about 30 minutes on lavapipe): `cargo test --test faces -- --ignored`.
#[test]
#[ignore = "slow: the full LFW pairs"]
fn lfw_full_realigned_keeps_accuracy() {
    let Some((report, plain)) = realigned_lfw("faces/lfw/pairs.csv") else { return };
    let (found, missing) = report.realigned.expect("re-aligned");
    assert!(missing * 100 <= found, "no face found in {missing} of {} crops", found + missing);
    assert!(report.accuracy.best >= plain.best, "{:?} below {plain:?}", report.accuracy);
}
