//! LFW face verification: a pairs file (`img1,img2,same[,cos_onnxruntime_fp32]`, image paths
//! relative to `images/` beside it), every image embedded once, and the accuracy of deciding
//! "same person" by `cosine > threshold`: with the best threshold over all pairs, and by the LFW
//! protocol (10 folds; the threshold chosen on nine, accuracy measured on the tenth).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::detect::Detector;
use crate::face::{as_crop, cosine, load_face, FaceEmbedder};

/// One labelled pair, with the reference cosine when the file gives one.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The first image's path, relative to the images folder ([`images_dir`]).
    pub a: String,
    /// The second image's path, likewise.
    pub b: String,
    /// Whether both show the same person.
    pub same: bool,
    /// onnxruntime's fp32 cosine for the pair (the optional fourth column).
    pub reference: Option<f64>,
}

/// Reads a pairs file: a header line, then one `img1,img2,same[,cosine]` line a pair, `same`
/// being 1 or 0. Blank lines are skipped; a file with no pairs is an error.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read pairs file {}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.trim().split(',').collect();
        let bad = || format!("{} line {}: expected img1,img2,same[,cosine], got '{line}'", path.display(), i + 1);
        if f.len() < 3 {
            bail!(bad());
        }
        let same = match f[2] {
            "1" => true,
            "0" => false,
            _ => bail!(bad()),
        };
        let reference = f.get(3).map(|c| c.parse::<f64>()).transpose().with_context(bad)?;
        pairs.push(Pair { a: f[0].to_string(), b: f[1].to_string(), same, reference });
    }
    if pairs.is_empty() {
        bail!("{} holds no pairs", path.display());
    }
    Ok(pairs)
}

/// Where the images of a pairs file are: `images/` beside it.
pub fn images_dir(pairs_file: &Path) -> PathBuf {
    pairs_file.parent().unwrap_or(Path::new(".")).join("images")
}

/// Thresholds searched: -1 to 1 in steps of 0.001.
fn threshold(k: usize) -> f64 {
    (k as f64 - 1000.0) / 1000.0
}
const THRESHOLDS: usize = 2001;

fn accuracy_at(cosines: &[f64], same: &[bool], pairs: impl Iterator<Item = usize> + Clone, t: f64) -> f64 {
    let (right, n) = pairs.fold((0usize, 0usize), |(r, n), i| (r + usize::from((cosines[i] > t) == same[i]), n + 1));
    right as f64 / n.max(1) as f64
}

/// The lowest grid threshold of best accuracy on `pairs`, and that accuracy.
fn search_threshold(cosines: &[f64], same: &[bool], pairs: impl Iterator<Item = usize> + Clone) -> (f64, f64) {
    (0..THRESHOLDS).map(threshold).fold((0.0, -1.0), |best, t| {
        let acc = accuracy_at(cosines, same, pairs.clone(), t);
        if acc > best.1 {
            (t, acc)
        } else {
            best
        }
    })
}

/// Verification accuracy from per-pair cosines and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// Accuracy with the best threshold over all pairs, and that threshold.
    pub best: f64,
    /// The lowest threshold on the grid (-1 to 1 in steps of 0.001) that gives `best`.
    pub best_threshold: f64,
    /// 10-fold accuracy: mean and (population) standard deviation over the folds, and the
    /// threshold chosen on each fold's nine others. Folds are consecutive runs of pairs in file
    /// order (the first `n % 10` one pair longer).
    pub fold_mean: f64,
    /// Standard deviation of the ten fold accuracies.
    pub fold_std: f64,
    /// The threshold each fold was scored with, in fold order.
    pub fold_thresholds: Vec<f64>,
}

/// Scores "same person" decided by `cosine > threshold` against the labels, one per cosine
/// (panics otherwise); accuracies are fractions in 0..1.
pub fn accuracy(cosines: &[f64], same: &[bool]) -> Accuracy {
    assert_eq!(cosines.len(), same.len(), "one label per cosine");
    let n = cosines.len();
    let (best_threshold, best) = search_threshold(cosines, same, 0..n);
    let (mut accs, mut fold_thresholds) = (Vec::new(), Vec::new());
    let mut start = 0;
    for fold in 0..10 {
        let end = start + n / 10 + usize::from(fold < n % 10);
        let train = (0..start).chain(end..n);
        let (t, _) = search_threshold(cosines, same, train);
        accs.push(accuracy_at(cosines, same, start..end, t));
        fold_thresholds.push(t);
        start = end;
    }
    let fold_mean = accs.iter().sum::<f64>() / 10.0;
    let fold_std = (accs.iter().map(|a| (a - fold_mean).powi(2)).sum::<f64>() / 10.0).sqrt();
    Accuracy { best, best_threshold, fold_mean, fold_std, fold_thresholds }
}

/// What [`evaluate`] measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Pairs scored.
    pub pairs: usize,
    /// Distinct images embedded.
    pub images: usize,
    /// Verification accuracy over the pairs.
    pub accuracy: Accuracy,
    /// Cosine of every pair, in file order.
    pub cosines: Vec<f64>,
    /// Largest |cosine - reference cosine| over the pairs that have one.
    pub max_reference_diff: Option<f64>,
    /// Wall time of decoding plus embedding (and detecting), and of decoding alone.
    pub seconds: f64,
    /// Wall time of decoding alone (part of `seconds`).
    pub decode_seconds: f64,
    /// With re-alignment: images where a face was found and re-aligned, and where none was
    /// (embedded as they are).
    pub realigned: Option<(usize, usize)>,
}

impl Report {
    /// Distinct images embedded per second of wall time, decoding included.
    pub fn faces_per_second(&self) -> f64 {
        self.images as f64 / self.seconds
    }
}

/// Embeds every distinct image of `pairs` once (from `images`, `batch` at a time, calling
/// `progress(done, total)` after each batch) and scores the pairs. With a `realign` detector,
/// each crop is re-detected and re-aligned to the ArcFace template first (the largest face; a
/// crop where none is found is embedded as it is).
pub fn evaluate(embedder: &FaceEmbedder, pairs: &[Pair], images: &Path, batch: usize, realign: Option<&Detector>, progress: &mut dyn FnMut(usize, usize)) -> Result<Report> {
    let mut names: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
    names.sort_unstable();
    names.dedup();
    let start = Instant::now();
    let mut decode_seconds = 0.0;
    let mut embeddings = Vec::with_capacity(names.len());
    let (mut found, mut missing) = (0, 0);
    for chunk in names.chunks(batch.max(1)) {
        let t = Instant::now();
        let faces = chunk.iter().map(|n| load_face(&images.join(n))).collect::<Result<Vec<_>>>()?;
        decode_seconds += t.elapsed().as_secs_f64();
        match realign {
            None => embeddings.extend(embedder.embed(&faces)?),
            Some(detector) => {
                let size = embedder.input_size();
                let detections = detector.detect_many(&faces.iter().collect::<Vec<_>>())?;
                let mut warped = Vec::with_capacity(faces.len());
                for (face, detected) in faces.iter().zip(detections) {
                    let aligned = detected.first().and_then(|d| crate::align::alignment_warp(&d.landmarks, size.0, size.1).ok());
                    let warp = match aligned {
                        Some((warp, _)) => {
                            found += 1;
                            warp
                        }
                        None => {
                            missing += 1;
                            as_crop(face, size).warp
                        }
                    };
                    warped.push((face, warp));
                }
                embeddings.extend(embedder.embed_warped(&warped)?);
            }
        }
        progress(embeddings.len(), names.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let cosines: Vec<f64> = pairs.iter().map(|p| cosine(&embeddings[index[p.a.as_str()]], &embeddings[index[p.b.as_str()]])).collect();
    let max_reference_diff = pairs.iter().zip(&cosines).filter_map(|(p, c)| Some((p.reference? - c).abs())).reduce(f64::max);
    let same: Vec<bool> = pairs.iter().map(|p| p.same).collect();
    let realigned = realign.map(|_| (found, missing));
    Ok(Report { pairs: pairs.len(), images: names.len(), accuracy: accuracy(&cosines, &same), cosines, max_reference_diff, seconds, decode_seconds, realigned })
}
