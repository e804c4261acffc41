//! The face commands of the `mfn` tool: `embed`, `verify` and `eval-lfw` (aligned crops).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mfn::face::{cosine, load_face, FaceEmbedder, DEFAULT_THRESHOLD};
use mfn::image_io::RgbImage;
use mfn_runtime::Normalization;

use crate::bench::json_string;
use crate::commands::session_options;
use crate::GpuArgs;

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
        let norm = Normalization { mean: per_channel("mean", self.mean.as_deref(), 0.0)?, std: per_channel("std", self.std.as_deref(), 1.0)? };
        if norm.std.iter().any(|s| !s.is_normal()) {
            bail!("--std must be non-zero, got {:?}", norm.std);
        }
        let model = match &self.model {
            Some(spec) => mfn::load_program(spec)?,
            None => {
                let path = mfn::face::default_model_path()?;
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                mfn::program_from_bytes(&bytes, &path.display().to_string())?
            }
        };
        let embedder = FaceEmbedder::new(&model.program, &session_options(gpu, max_batch), norm)?;
        eprintln!("model: {}  adapter: {}", model.name, embedder.session().adapter());
        Ok(embedder)
    }
}

fn load_all(paths: &[PathBuf]) -> Result<Vec<RgbImage>> {
    paths.iter().map(|p| load_face(p)).collect()
}

pub fn embed(model: &ModelArgs, images: &[PathBuf], out: Option<&Path>, json: bool, gpu: &GpuArgs) -> Result<()> {
    let faces = load_all(images)?;
    let embedder = model.embedder(gpu, faces.len().min(32))?;
    let t = Instant::now();
    let embeddings = embedder.embed(&faces)?;
    eprintln!("embedded {} images ({}-d, L2-normalised) in {:.0} ms", faces.len(), embedder.dim(), t.elapsed().as_secs_f64() * 1e3);
    if let Some(out) = out {
        mfn_models::write_npy_file(out, &[embeddings.len(), embedder.dim()], &embeddings.concat()).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {} [{},{}]", out.display(), embeddings.len(), embedder.dim());
    } else if json {
        let rows: Vec<String> = images
            .iter()
            .zip(&embeddings)
            .map(|(p, e)| {
                let values: Vec<String> = e.iter().map(|v| format!("{v:?}")).collect();
                format!("  {{\"image\": {}, \"embedding\": [{}]}}", json_string(&p.display().to_string()), values.join(", "))
            })
            .collect();
        println!("[\n{}\n]", rows.join(",\n"));
    } else {
        for (p, e) in images.iter().zip(&embeddings) {
            let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:+.4}")).collect();
            println!("{}: [{}, ...]", p.display(), head.join(", "));
        }
    }
    Ok(())
}

pub fn verify(model: &ModelArgs, a: &Path, b: &Path, threshold: Option<f64>, gpu: &GpuArgs) -> Result<()> {
    let faces = load_all(&[a.to_path_buf(), b.to_path_buf()])?;
    let embedder = model.embedder(gpu, 2)?;
    let e = embedder.embed(&faces)?;
    let cos = cosine(&e[0], &e[1]);
    let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
    let verdict = if cos > threshold { "SAME" } else { "DIFFERENT" };
    println!("cosine {cos:.4}  {verdict}  (threshold {threshold})");
    Ok(())
}

pub fn eval_lfw(model: &ModelArgs, pairs: Option<&Path>, batch: usize, gpu: &GpuArgs) -> Result<()> {
    let pairs_file = match pairs {
        Some(p) => p.to_path_buf(),
        None => mfn::shared_file("faces/lfw/pairs.csv")?,
    };
    let pairs = mfn::lfw::read_pairs(&pairs_file)?;
    let batch = batch.max(1);
    let embedder = model.embedder(gpu, batch)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} faces  {per_sec}  eta {eta}").expect("valid template"));
    let report = mfn::lfw::evaluate(&embedder, &pairs, &mfn::lfw::images_dir(&pairs_file), batch, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let a = &report.accuracy;
    println!("{}: {} pairs, {} faces", pairs_file.display(), report.pairs, report.images);
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
