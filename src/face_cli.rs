//! The face commands of the `mfn` tool: `embed`, `verify` and `eval-lfw`, on aligned crops and on
//! ordinary photos (detected with YuNet and aligned to the ArcFace template on the GPU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mfn::detect::{DetectOptions, Detector};
use mfn::face::{as_crop, cosine, detect_and_align, FaceEmbedder, FoundFace, DEFAULT_THRESHOLD, MIN_SIDE};
use mfn::image_io::{load_rgb, RgbImage};
use mfn_runtime::Normalization;
use serde::Serialize;

use crate::commands::session_options;
use crate::GpuArgs;

/// The canvas `eval-lfw --realign` detects in: a 112x112 crop scaled by 1.43 (YuNet finds the
/// crops' faces more surely there than in 640x640, where they would fill the canvas).
const LFW_CANVAS: (usize, usize) = (160, 160);

/// The model and the normalisation of its input, shared by the face commands.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// Model: an .onnx or .mfn path or synthetic[:VARIANT] (default: the pretrained MobileFaceNet in ../shared).
    #[arg(long)]
    model: Option<String>,
    /// Mean subtracted from 0..255 pixels: one value or R,G,B (default 0: the pretrained model
    /// normalises in its graph).
    #[arg(long)]
    mean: Option<String>,
    /// Divisor after the mean: one value or R,G,B (default 1).
    #[arg(long)]
    std: Option<String>,
}

fn per_channel(flag: &str, text: Option<&str>, default: f32) -> Result<[f32; 3]> {
    let Some(text) = text else { return Ok([default; 3]) };
    let values: Vec<f32> = text.split(',').map(|v| v.trim().parse::<f32>()).collect::<Result<_, _>>().with_context(|| format!("--{flag} '{text}': not a number"))?;
    match values[..] {
        [v] => Ok([v; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => bail!("--{flag} '{text}': give one value or three (R,G,B)"),
    }
}

impl ModelArgs {
    fn embedder(&self, gpu: &GpuArgs, max_batch: usize) -> Result<FaceEmbedder> {
        // --precision is the face model's; the detector stays f32.
        let options = crate::commands::compile_options(None, gpu.precision)?;
        let model = match &self.model {
            Some(spec) => mfn::load_program_with(spec, &options)?,
            None => {
                let path = mfn::face::default_model_path()?;
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                mfn::program_from_bytes_with(&bytes, &path.display().to_string(), &options)?
            }
        };
        // The default normalisation is read from the model: none where its graph normalises its
        // own input (the pretrained model's Sub/Mul), else the paper's (x - 127.5) / 128.
        let (mean, std) = if model.program.normalises_input { (0.0, 1.0) } else { (127.5, 128.0) };
        let norm = Normalization { mean: per_channel("mean", self.mean.as_deref(), mean)?, std: per_channel("std", self.std.as_deref(), std)? };
        if norm.std.iter().any(|s| !s.is_normal()) {
            bail!("--std must be non-zero, got {:?}", norm.std);
        }
        let embedder = FaceEmbedder::new(&model.program, &session_options(gpu, max_batch), norm)?;
        let normalisation = if self.mean.is_some() || self.std.is_some() {
            "as given"
        } else if model.program.normalises_input {
            "none (the model normalises its input in its graph)"
        } else {
            "(x - 127.5) / 128 (the model's graph does not normalise its input)"
        };
        let storage = if model.program.precision == mfn_compiler::Precision::F16 { " (f16 storage)" } else { "" };
        eprintln!("model: {}{storage}  adapter: {}  input normalisation: {normalisation}", model.name, embedder.session().adapter());
        Ok(embedder)
    }
}

/// The face detector and its settings, shared by the face commands.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DetectorArgs {
    /// YuNet face detector (default: models/yunet_n_dynamic.onnx in $MFN_SHARED or ../shared).
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Canvas WxH photos are letterboxed into for detection, multiples of 32 (default 640x640,
    /// or the detector's own size when it is fixed; eval-lfw --realign: 160x160).
    #[arg(long)]
    detector_size: Option<String>,
    /// Detections scoring below are ignored (0..1).
    #[arg(long, default_value_t = DetectOptions::default().score_threshold)]
    min_face_score: f32,
}

impl DetectorArgs {
    /// Compiles the detector; `why` says which image needs it, for the error when it is missing.
    fn detector(&self, gpu: &GpuArgs, max_batch: usize, default_canvas: Option<(usize, usize)>, why: &str) -> Result<Detector> {
        let path = match &self.detector {
            Some(p) => p.clone(),
            None => mfn::shared_dir().join(mfn::DETECTOR_MODEL),
        };
        if !path.exists() {
            bail!("the face detector {} does not exist ({why}); give one with --detector PATH or set MFN_SHARED", path.display());
        }
        if !(0.0..=1.0).contains(&self.min_face_score) {
            bail!("--min-face-score {} is not between 0 and 1", self.min_face_score);
        }
        let canvas = match &self.detector_size {
            Some(text) => Some(parse_size(text).with_context(|| format!("--detector-size '{text}'"))?),
            None => default_canvas,
        };
        let onnx = std::fs::read(&path).with_context(|| format!("cannot read the face detector {}", path.display()))?;
        let mut detector = Detector::new(&onnx, canvas, &session_options(gpu, max_batch)).with_context(|| format!("face detector {}", path.display()))?;
        detector.options.score_threshold = self.min_face_score;
        let (w, h) = detector.canvas();
        eprintln!("detector: {} ({w}x{h} canvas)", path.display());
        Ok(detector)
    }
}

fn parse_size(text: &str) -> Result<(usize, usize)> {
    let parse = |v: &str| v.trim().parse::<usize>().ok();
    match text.split_once(['x', 'X']).map(|(w, h)| (parse(w), parse(h))) {
        Some((Some(w), Some(h))) => Ok((w, h)),
        _ => bail!("expected WIDTHxHEIGHT, e.g. 640x640"),
    }
}

/// How the face commands take their images.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FaceArgs {
    /// Take every image as an aligned face crop (resized to the model's input size when it
    /// differs), never detecting. Default: images of the model's input size are taken as aligned
    /// crops, any other goes through detection and alignment.
    #[arg(long, conflicts_with = "detect")]
    aligned: bool,
    /// Detect and align the faces of every image, even those of the model's input size.
    #[arg(long)]
    detect: bool,
    /// Every face of a photo (largest first), not only the largest.
    #[arg(long)]
    all: bool,
    /// Write each face as the model sees it (aligned crop, PNG) into this folder.
    #[arg(long)]
    save_aligned: Option<PathBuf>,
    #[command(flatten)]
    detector: DetectorArgs,
}

/// One face to embed: the image it is in, how to cut it out, and a name for it.
struct Entry {
    image: usize,
    face: FoundFace,
    label: String,
}

/// Decodes the images and finds their faces (detecting where needed, with a detector created on
/// first need): the images, possibly downscaled to fit the GPU, and one entry per face.
fn find_faces(paths: &[PathBuf], size: (usize, usize), args: &FaceArgs, gpu: &GpuArgs) -> Result<(Vec<RgbImage>, Vec<Entry>)> {
    let mut images = Vec::with_capacity(paths.len());
    for path in paths {
        let image = load_rgb(path)?;
        if image.width < MIN_SIDE || image.height < MIN_SIDE {
            bail!("image {} is {}x{}: too small to hold a face (at least {MIN_SIDE}x{MIN_SIDE})", path.display(), image.width, image.height);
        }
        images.push(image);
    }
    let mut detector: Option<Detector> = None;
    let mut entries = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let detect = args.detect || (!args.aligned && (images[i].width, images[i].height) != size);
        if !detect {
            entries.push(Entry { image: i, face: as_crop(&images[i], size), label: path.display().to_string() });
            continue;
        }
        if detector.is_none() {
            let why = format!("needed to find the face in {}, which is not a {}x{} aligned crop", path.display(), size.0, size.1);
            detector = Some(args.detector.detector(gpu, 1, None, &why)?);
        }
        let detector = detector.as_ref().expect("created above");
        let max_bytes = detector.session().max_image_bytes();
        let (w, h) = (images[i].width, images[i].height);
        let (image, factor) = std::mem::replace(&mut images[i], RgbImage { width: 0, height: 0, data: Vec::new() }).fit_within(max_bytes);
        if factor > 1 {
            eprintln!(
                "note: {} ({w}x{h}) is larger than one GPU buffer ({} MiB): downscaled by {factor} on the CPU to {}x{}",
                path.display(),
                max_bytes >> 20,
                image.width,
                image.height
            );
        }
        images[i] = image;
        let faces = detect_and_align(detector, &images[i], size, args.all).with_context(|| format!("finding faces in {}", path.display()))?;
        if faces.is_empty() {
            bail!("no face found in {} (at detection score {})", path.display(), detector.options.score_threshold);
        }
        let many = faces.len() > 1;
        for (k, face) in faces.into_iter().enumerate() {
            let label = if many { format!("{}#{}", path.display(), k + 1) } else { path.display().to_string() };
            entries.push(Entry { image: i, face, label });
        }
    }
    Ok((images, entries))
}

/// Embeds the faces; writes their crops first when asked.
fn embed_entries(embedder: &FaceEmbedder, images: &[RgbImage], entries: &[Entry], paths: &[PathBuf], save: Option<&Path>) -> Result<Vec<Vec<f32>>> {
    let faces: Vec<(&RgbImage, mfn_runtime::Warp)> = entries.iter().map(|e| (&images[e.image], e.face.warp)).collect();
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (entry, crop) in entries.iter().zip(embedder.crops(&faces)?) {
            let stem = paths[entry.image].file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
            let suffix = entry.label.rsplit_once('#').map(|(_, k)| format!("_face{k}")).unwrap_or_default();
            let out = dir.join(format!("{}-{stem}{suffix}.png", entry.image + 1));
            image::RgbImage::from_raw(crop.width as u32, crop.height as u32, crop.data).expect("a whole image").save(&out).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {}", out.display());
        }
    }
    embedder.embed_warped(&faces)
}

/// One face of `mfn embed --json`: the image, the detection where the face was detected (score,
/// box x, y, w, h and the 5 landmarks as x, y pairs, in the image's pixels), and the embedding.
#[derive(Serialize)]
struct EmbeddingJson<'a> {
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    rect: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    landmarks: Option<&'a [f32]>,
    embedding: &'a [f32],
}

impl<'a> EmbeddingJson<'a> {
    fn new(image: &Path, face: &'a FoundFace, embedding: &'a [f32]) -> EmbeddingJson<'a> {
        let d = face.detection.as_ref();
        EmbeddingJson { image: image.display().to_string(), score: d.map(|d| d.score), rect: d.map(|d| &d.rect[..]), landmarks: d.map(|d| d.landmarks.as_flattened()), embedding }
    }
}

pub fn embed(model: &ModelArgs, faces: &FaceArgs, images: &[PathBuf], out: Option<&Path>, json: bool, gpu: &GpuArgs) -> Result<()> {
    let embedder = model.embedder(gpu, images.len().clamp(1, 32))?;
    let (decoded, entries) = find_faces(images, embedder.input_size(), faces, gpu)?;
    let t = Instant::now();
    let embeddings = embed_entries(&embedder, &decoded, &entries, images, faces.save_aligned.as_deref())?;
    eprintln!("embedded {} faces of {} images ({}-d, L2-normalised) in {:.0} ms", entries.len(), images.len(), embedder.dim(), t.elapsed().as_secs_f64() * 1e3);
    if let Some(out) = out {
        mfn_models::write_npy_file(out, &[embeddings.len(), embedder.dim()], &embeddings.concat()).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {} [{},{}]", out.display(), embeddings.len(), embedder.dim());
    } else if json {
        // A face a line.
        let rows = entries.iter().zip(&embeddings).map(|(entry, e)| serde_json::to_string(&EmbeddingJson::new(&images[entry.image], &entry.face, e)).map(|row| format!("  {row}")));
        let rows = rows.collect::<Result<Vec<String>, _>>()?;
        println!("[\n{}\n]", rows.join(",\n"));
    } else {
        for (entry, e) in entries.iter().zip(&embeddings) {
            let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:+.4}")).collect();
            println!("{}: [{}, ...]", entry.label, head.join(", "));
        }
    }
    Ok(())
}

pub fn verify(model: &ModelArgs, faces: &FaceArgs, a: &Path, b: &Path, threshold: Option<f64>, gpu: &GpuArgs) -> Result<()> {
    let embedder = model.embedder(gpu, 2)?;
    let paths = [a.to_path_buf(), b.to_path_buf()];
    let (decoded, entries) = find_faces(&paths, embedder.input_size(), faces, gpu)?;
    let e = embed_entries(&embedder, &decoded, &entries, &paths, faces.save_aligned.as_deref())?;
    let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
    let of = |image: usize| entries.iter().enumerate().filter(move |(_, entry)| entry.image == image).map(|(k, _)| k);
    let pairs: Vec<(usize, usize)> = of(0).flat_map(|i| of(1).map(move |j| (i, j))).collect();
    for (i, j) in &pairs {
        let cos = cosine(&e[*i], &e[*j]);
        let verdict = if cos > threshold { "SAME" } else { "DIFFERENT" };
        if pairs.len() == 1 {
            println!("cosine {cos:.4}  {verdict}  (threshold {threshold})");
        } else {
            println!("{} vs {}: cosine {cos:.4}  {verdict}  (threshold {threshold})", entries[*i].label, entries[*j].label);
        }
    }
    Ok(())
}

pub fn eval_lfw(model: &ModelArgs, pairs: Option<&Path>, batch: usize, realign: Option<&DetectorArgs>, gpu: &GpuArgs) -> Result<()> {
    let pairs_file = match pairs {
        Some(p) => p.to_path_buf(),
        None => mfn::shared_file("faces/lfw/pairs.csv")?,
    };
    let pairs = mfn::lfw::read_pairs(&pairs_file)?;
    let batch = batch.max(1);
    let embedder = model.embedder(gpu, batch)?;
    let detector = match realign {
        Some(args) => Some(args.detector(gpu, batch, Some(LFW_CANVAS), "needed by --realign")?),
        None => None,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} faces  {per_sec}  eta {eta}").expect("valid template"));
    let report = mfn::lfw::evaluate(&embedder, &pairs, &mfn::lfw::images_dir(&pairs_file), batch, detector.as_ref(), &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let a = &report.accuracy;
    println!("{}: {} pairs, {} faces", pairs_file.display(), report.pairs, report.images);
    if let Some((found, missing)) = report.realigned {
        println!("re-aligned: a face found and aligned to the ArcFace template in {found} crops, none in {missing} (embedded as they are)");
    }
    println!("best-threshold accuracy: {:.2}% at threshold {:.3}", 100.0 * a.best, a.best_threshold);
    println!(
        "10-fold accuracy: {:.2}% +- {:.2}% (fold thresholds {:.3} on average)",
        100.0 * a.fold_mean,
        100.0 * a.fold_std,
        a.fold_thresholds.iter().sum::<f64>() / a.fold_thresholds.len() as f64
    );
    println!(
        "throughput: {:.1} faces/s ({} faces in {:.1} s, of which decoding {:.1} s; batch {batch})",
        report.faces_per_second(),
        report.images,
        report.seconds,
        report.decode_seconds
    );
    match report.max_reference_diff {
        Some(d) => println!("largest |cosine - cos_onnxruntime_fp32| over the pairs: {d:.2e}"),
        None => println!("the pairs file gives no reference cosines"),
    }
    Ok(())
}
