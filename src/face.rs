//! Face embeddings of aligned crops: a [`FaceEmbedder`] runs a compiled model on 8-bit RGB images
//! (preprocessing on the GPU) and L2-normalises what it returns; two faces are compared by the
//! cosine of their embeddings.

use std::path::Path;

use anyhow::{bail, Context, Result};
use mfn_runtime::{Image, Normalization, PixelFormat, Session, SessionOptions, Warp};

use crate::image_io::{load_rgb, RgbImage};

/// Cosine above which `mfn verify` calls two faces the same person, for the pretrained
/// MobileFaceNet on aligned 112x112 crops. Obtained with `mfn eval-lfw` on the 5,474 pairs of
/// `../shared/faces/lfw/pairs.csv`: the threshold of best accuracy over all pairs (99.29%),
/// searched on a 0.001 grid; the ten fold thresholds of the 10-fold protocol average 0.275.
pub const DEFAULT_THRESHOLD: f64 = 0.279;

/// Smallest side of an image taken as a face crop: anything smaller holds no usable face.
pub const MIN_SIDE: usize = 16;

/// A model made resident on the GPU, embedding face crops.
pub struct FaceEmbedder {
    session: Session,
    norm: Normalization,
}

impl FaceEmbedder {
    /// Creates the session of a compiled model; `norm` is applied to 0..255 pixels before the
    /// model (identity for models that normalise in their graph).
    pub fn new(program: &mfn_compiler::Program, options: &SessionOptions, norm: Normalization) -> Result<FaceEmbedder> {
        let session = Session::new(program, options)?;
        Ok(FaceEmbedder { session, norm })
    }

    /// An embedder on an existing session.
    pub fn from_session(session: Session, norm: Normalization) -> FaceEmbedder {
        FaceEmbedder { session, norm }
    }

    /// The GPU session running the model (for its adapter and limits).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Length of one embedding.
    pub fn dim(&self) -> usize {
        self.session.output_shape().iter().product()
    }

    /// The (width, height) of the face crops the model takes.
    pub fn input_size(&self) -> (usize, usize) {
        match self.session.input_shape() {
            [_, h, w] => (*w, *h),
            _ => (0, 0),
        }
    }

    /// One L2-normalised embedding per image (in batches of the session's `max_batch`).
    pub fn embed(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let views: Vec<Image> = images.iter().map(RgbImage::view).collect();
        let raw = self.session.run_images(&views, &self.norm)?;
        Ok(raw.chunks(self.dim()).map(l2_normalised).collect())
    }

    /// One L2-normalised embedding per face, each cut from its image by its warp on the GPU
    /// (an alignment from [`crate::align::alignment_warp`], or a resize for crops).
    pub fn embed_warped(&self, faces: &[(&RgbImage, Warp)]) -> Result<Vec<Vec<f32>>> {
        let views: Vec<Image> = faces.iter().map(|(i, _)| i.view()).collect();
        let warps: Vec<Warp> = faces.iter().map(|(_, w)| *w).collect();
        let raw = self.session.run_warped(&views, &warps, &PixelFormat { order: Default::default(), norm: self.norm })?;
        Ok(raw.chunks(self.dim()).map(l2_normalised).collect())
    }

    /// The aligned crops `faces` give (RGB, 0..255 as the GPU samples them, before
    /// normalisation): what [`FaceEmbedder::embed_warped`] feeds the model, for a person to see.
    pub fn crops(&self, faces: &[(&RgbImage, Warp)]) -> Result<Vec<RgbImage>> {
        let views: Vec<Image> = faces.iter().map(|(i, _)| i.view()).collect();
        let warps: Vec<Warp> = faces.iter().map(|(_, w)| *w).collect();
        let planes = self.session.preprocess_warped(&views, &warps, &PixelFormat::default())?;
        let (width, height) = self.input_size();
        let plane = width * height;
        Ok(planes
            .chunks(3 * plane)
            .map(|p| RgbImage { width, height, data: (0..plane).flat_map(|i| [0, 1, 2].map(|c| p[c * plane + i].round().clamp(0.0, 255.0) as u8)).collect() })
            .collect())
    }
}

/// Loads an image to be embedded as a face crop: decoded (see [`crate::image_io`]) and at least
/// [`MIN_SIDE`] pixels a side.
pub fn load_face(path: &Path) -> Result<RgbImage> {
    let image = load_rgb(path)?;
    if image.width < MIN_SIDE || image.height < MIN_SIDE {
        bail!("image {} is {}x{}: too small for a face crop (at least {MIN_SIDE}x{MIN_SIDE}; aligned 112x112 crops expected)", path.display(), image.width, image.height);
    }
    Ok(image)
}

/// `v` scaled to unit L2 norm (computed in f64); a zero vector stays zero.
pub fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|x| (f64::from(*x) * scale) as f32).collect()
}

/// Cosine of two embeddings (computed in f64; equal to their dot product when both are normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na * nb)
}

/// The pretrained model's path in the shared folder, or an error saying where it was looked for.
pub fn default_model_path() -> Result<std::path::PathBuf> {
    crate::shared_file(crate::REAL_MODEL).context("no --model given and the default pretrained model is absent")
}

/// One face of a photo, ready to embed: the warp that cuts its aligned crop out of the image on
/// the GPU, and the detection it came from (`None` for an image taken as an aligned crop).
#[derive(Clone, Debug)]
pub struct FoundFace {
    /// Maps each pixel of the embedder's input crop to where it is sampled in the photo.
    pub warp: Warp,
    /// The detection, in photo coordinates; `None` for an image taken as a crop.
    pub detection: Option<crate::detect::Face>,
}

/// The faces of a photo aligned for crops of `size` (width, height): detected, largest first
/// (only the largest unless `all`), each with the similarity warp to the ArcFace template. An
/// empty result means no face was found.
pub fn detect_and_align(detector: &crate::detect::Detector, image: &RgbImage, size: (usize, usize), all: bool) -> Result<Vec<FoundFace>> {
    let mut faces = detector.detect(image)?;
    if !all {
        faces.truncate(1);
    }
    faces
        .into_iter()
        .map(|face| {
            let (warp, _) = crate::align::alignment_warp(&face.landmarks, size.0, size.1).with_context(|| format!("aligning the face at {:?}", face.rect))?;
            Ok(FoundFace { warp, detection: Some(face) })
        })
        .collect()
}

/// An image taken as a face crop as it is: resized to `size` when it differs.
pub fn as_crop(image: &RgbImage, size: (usize, usize)) -> FoundFace {
    FoundFace { warp: Warp::resize((image.width, image.height), size), detection: None }
}
