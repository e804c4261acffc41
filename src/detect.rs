//! Face detection with YuNet (libfacedetection.train): decoding its twelve output heads into
//! faces (box, five landmarks, score), non-maximum suppression, and mapping back from the
//! letterboxed canvas the model saw to the photo. The decoding is OpenCV's `FaceDetectorYN`:
//! per stride s in 8, 16, 32 the heads cover the (H/s) x (W/s) grid row-major, and anchor
//! (row, col) gives
//! - score `sqrt(clamp(cls, 0, 1) * clamp(obj, 0, 1))` (the heads are already sigmoid-ed),
//! - box centre `((col + bbox0) s, (row + bbox1) s)`, size `(exp(bbox2) s, exp(bbox3) s)`,
//! - landmark k `((kps[2k] + col) s, (kps[2k+1] + row) s)`.

use anyhow::{bail, Context, Result};
use mfn_compiler::CompileOptions;
use mfn_runtime::{ChannelOrder, Normalization, PixelFormat, Session, SessionOptions, Warp};
use thiserror::Error;

use crate::image_io::RgbImage;

/// The canvas a detector compiled from a model with symbolic height and width sees: each photo is
/// letterboxed into it.
pub const DEFAULT_CANVAS: (usize, usize) = (640, 640);

/// The strides of YuNet's three heads.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// A detected face: `rect` is `[x, y, width, height]` (top-left corner first), the landmarks are
/// right eye, left eye, nose tip, right and left mouth corners (as the subject sees them).
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// Confidence in 0..1: the geometric mean of the class and objectness scores.
    pub score: f32,
    /// The box, in pixels of the image the face was found in (the canvas for [`decode`], the
    /// photo for [`Detector::detect`]).
    pub rect: [f32; 4],
    /// Five `[x, y]` points in the same pixels as `rect`, in the order above.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    /// Area of the box in square pixels (a negative width or height counts as 0).
    pub fn area(&self) -> f32 {
        self.rect[2].max(0.0) * self.rect[3].max(0.0)
    }

    /// Intersection over union of the two boxes (0 when both are empty).
    pub fn iou(&self, other: &Face) -> f32 {
        let [ax, ay, aw, ah] = self.rect;
        let [bx, by, bw, bh] = other.rect;
        let iw = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
        let ih = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// The face in the coordinates of an image letterboxed by `scale` (the inverse of
    /// [`mfn_runtime::Warp::letterbox`]: canvas point p is image point (p + 0.5) / scale - 0.5).
    pub fn unletterboxed(&self, scale: f64) -> Face {
        let point = |p: f32| ((f64::from(p) + 0.5) / scale - 0.5) as f32;
        let length = |l: f32| (f64::from(l) / scale) as f32;
        let [x, y, w, h] = self.rect;
        Face { score: self.score, rect: [point(x), point(y), length(w), length(h)], landmarks: self.landmarks.map(|[x, y]| [point(x), point(y)]) }
    }
}

/// Thresholds of [`decode`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectOptions {
    /// Faces scoring below are dropped. OpenCV's default is 0.9; on the project's photos real
    /// faces score 0.90-0.96 and the best false detection 0.52, so 0.6 keeps a margin both ways.
    pub score_threshold: f32,
    /// A face overlapping a better one by more than this IoU is suppressed (OpenCV: 0.3).
    pub nms_iou: f32,
    /// Most candidates kept for suppression, best first (OpenCV: 5000).
    pub top_k: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions { score_threshold: 0.6, nms_iou: 0.3, top_k: 5000 }
    }
}

/// Why YuNet's outputs cannot be decoded, or a canvas cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum DetectError {
    /// A head [`decode`] needs is not among the outputs.
    #[error("the detector has no output '{name}' (a YuNet model has cls_8..32, obj_*, bbox_*, kps_*; it has {have:?})")]
    MissingOutput {
        /// The head looked for, e.g. `kps_32`.
        name: String,
        /// The names of the outputs given.
        have: Vec<String>,
    },
    /// A head has the wrong number of values for the canvas.
    #[error("detector output '{name}' has {got} values, expected {want} for a {width}x{height} canvas")]
    OutputSize {
        /// The head.
        name: String,
        /// Values it has.
        got: usize,
        /// Values the canvas needs: (W/s) x (H/s) anchors times 1, 4 or 10 values each.
        want: usize,
        /// Canvas width in pixels.
        width: usize,
        /// Canvas height in pixels.
        height: usize,
    },
    /// A canvas side is zero or not a multiple of 32 (the largest stride).
    #[error("the detector canvas {width}x{height} is not a positive multiple of 32 in both dimensions")]
    Canvas {
        /// Canvas width in pixels.
        width: usize,
        /// Canvas height in pixels.
        height: usize,
    },
}

/// The faces YuNet's outputs (by name, one image) show on a `canvas` (width, height), in canvas
/// coordinates, after non-maximum suppression: best score first.
pub fn decode(outputs: &[(&str, &[f32])], canvas: (usize, usize), options: &DetectOptions) -> Result<Vec<Face>, DetectError> {
    let (width, height) = canvas;
    if width == 0 || height == 0 || width % 32 != 0 || height % 32 != 0 {
        return Err(DetectError::Canvas { width, height });
    }
    let head = |kind: &str, stride: usize, per_anchor: usize| -> Result<&[f32], DetectError> {
        let name = format!("{kind}_{stride}");
        let &(_, data) = outputs
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| DetectError::MissingOutput { name: name.clone(), have: outputs.iter().map(|(n, _)| n.to_string()).collect() })?;
        let want = (width / stride) * (height / stride) * per_anchor;
        if data.len() != want {
            return Err(DetectError::OutputSize { name, got: data.len(), want, width, height });
        }
        Ok(data)
    };
    let mut faces = Vec::new();
    for stride in STRIDES {
        let (cls, obj, bbox, kps) = (head("cls", stride, 1)?, head("obj", stride, 1)?, head("bbox", stride, 4)?, head("kps", stride, 10)?);
        let (cols, s) = (width / stride, stride as f64);
        for (i, (c, o)) in cls.iter().zip(obj).enumerate() {
            let score = (c.clamp(0.0, 1.0) * o.clamp(0.0, 1.0)).sqrt();
            if score.is_nan() || score < options.score_threshold {
                continue;
            }
            let (row, col) = ((i / cols) as f64, (i % cols) as f64);
            let b: Vec<f64> = bbox[4 * i..4 * i + 4].iter().map(|v| f64::from(*v)).collect();
            let (cx, cy, w, h) = ((col + b[0]) * s, (row + b[1]) * s, b[2].exp() * s, b[3].exp() * s);
            let k = &kps[10 * i..10 * i + 10];
            let landmarks = std::array::from_fn(|n| [((f64::from(k[2 * n]) + col) * s) as f32, ((f64::from(k[2 * n + 1]) + row) * s) as f32]);
            faces.push(Face { score, rect: [(cx - w / 2.0) as f32, (cy - h / 2.0) as f32, w as f32, h as f32], landmarks });
        }
    }
    Ok(nms(faces, options.nms_iou, options.top_k))
}

/// Greedy non-maximum suppression: the `top_k` best candidates (stable by score, best first),
/// each kept unless it overlaps an already kept one by IoU > `iou`.
pub fn nms(mut candidates: Vec<Face>, iou: f32, top_k: usize) -> Vec<Face> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(top_k);
    let mut kept: Vec<Face> = Vec::new();
    for face in candidates {
        if kept.iter().all(|k| face.iou(k) <= iou) {
            kept.push(face);
        }
    }
    kept
}

/// Faces ordered by box area, largest first (the face a photo is "of" comes first).
pub fn by_area(mut faces: Vec<Face>) -> Vec<Face> {
    faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
    faces
}

/// YuNet compiled for one canvas and made resident on the GPU. [`Detector::detect`] letterboxes a
/// photo into the canvas on the GPU (scale `min(cw / w, ch / h)`, the photo at the top-left, zeros
/// elsewhere; BGR 0..255 as YuNet takes it), runs the model, decodes, suppresses overlaps and
/// returns the faces in photo coordinates.
pub struct Detector {
    session: Session,
    canvas: (usize, usize),
    /// The thresholds faces are decoded with ([`DetectOptions::default`] unless changed).
    pub options: DetectOptions,
}

impl Detector {
    /// Compiles a YuNet ONNX model for `canvas` (width, height; multiples of 32). `None`: the
    /// model's own size when it is fixed (yunet_n_320_320.onnx), else [`DEFAULT_CANVAS`].
    pub fn new(onnx: &[u8], canvas: Option<(usize, usize)>, options: &SessionOptions) -> Result<Detector> {
        let compile = |(w, h): (usize, usize)| mfn_compiler::compile(onnx, &CompileOptions { input_shape: Some(vec![3, h, w]), ..CompileOptions::default() });
        if let Some((width, height)) = canvas {
            if width == 0 || height == 0 || width % 32 != 0 || height % 32 != 0 {
                bail!(DetectError::Canvas { width, height });
            }
        }
        let program = match canvas {
            Some(size) => compile(size).with_context(|| format!("compiling the detector for a {}x{} canvas", size.0, size.1))?,
            // A fixed-size export compiles as it is; a dynamic one needs a canvas.
            None => match mfn_compiler::compile(onnx, &CompileOptions::default()) {
                Ok(program) => program,
                Err(_) => compile(DEFAULT_CANVAS).with_context(|| format!("compiling the detector for a {}x{} canvas", DEFAULT_CANVAS.0, DEFAULT_CANVAS.1))?,
            },
        };
        let [3, h, w] = program.input.shape[..] else {
            bail!("the detector's input {:?} is not one image [3, H, W]", program.input.shape);
        };
        if w % 32 != 0 || h % 32 != 0 {
            bail!(DetectError::Canvas { width: w, height: h });
        }
        let session = Session::new(&program, options)?;
        Ok(Detector { session, canvas: (w, h), options: DetectOptions::default() })
    }

    /// The canvas (width, height) photos are letterboxed into.
    pub fn canvas(&self) -> (usize, usize) {
        self.canvas
    }

    /// The GPU session running YuNet (for its adapter and limits).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The faces in `image`, in its coordinates, largest box first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        Ok(self.detect_many(&[image])?.swap_remove(0))
    }

    /// [`Detector::detect`] for several images, in batches of the session's `max_batch`.
    pub fn detect_many(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Face>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let letterboxes: Vec<(Warp, f64)> = images.iter().map(|i| Warp::letterbox((i.width, i.height), self.canvas)).collect();
        let views: Vec<_> = images.iter().map(|i| i.view()).collect();
        let warps: Vec<Warp> = letterboxes.iter().map(|(w, _)| *w).collect();
        let format = PixelFormat { order: ChannelOrder::Bgr, norm: Normalization::IDENTITY };
        let outputs = self.session.run_warped_all(&views, &warps, &format)?;
        let ports = self.session.outputs();
        let mut all = Vec::with_capacity(images.len());
        for (n, (_, scale)) in letterboxes.iter().enumerate() {
            let named: Vec<(&str, &[f32])> = ports.iter().zip(&outputs).map(|(p, data)| (p.name.as_str(), &data[n * p.elements()..(n + 1) * p.elements()])).collect();
            let faces = decode(&named, self.canvas, &self.options)?;
            all.push(by_area(faces.iter().map(|f| f.unletterboxed(*scale)).collect()));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeroed YuNet heads for a canvas, by name.
    fn heads(width: usize, height: usize) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        for (kind, per) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
            for s in STRIDES {
                out.push((format!("{kind}_{s}"), vec![0.0; (width / s) * (height / s) * per]));
            }
        }
        out
    }

    fn set(heads: &mut [(String, Vec<f32>)], name: &str, index: usize, values: &[f32]) {
        let h = heads.iter_mut().find(|(n, _)| n == name).expect("head");
        h.1[index..index + values.len()].copy_from_slice(values);
    }

    fn run(heads: &[(String, Vec<f32>)], canvas: (usize, usize), options: &DetectOptions) -> Result<Vec<Face>, DetectError> {
        let named: Vec<(&str, &[f32])> = heads.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        decode(&named, canvas, options)
    }

    #[test]
    fn decodes_an_anchor_as_opencv_does() {
        let (w, h) = (96, 64);
        let mut hs = heads(w, h);
        // Stride 16: a 6x4 grid; anchor (row 2, col 3) is index 15.
        let i = 2 * 6 + 3;
        set(&mut hs, "cls_16", i, &[0.81]);
        set(&mut hs, "obj_16", i, &[1.5]); // clamped to 1
        set(&mut hs, "bbox_16", 4 * i, &[0.25, -0.5, 1.0f32.ln(), 2.0f32.ln()]);
        let kps = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0];
        set(&mut hs, "kps_16", 10 * i, &kps);
        let faces = run(&hs, (w, h), &DetectOptions::default()).expect("decodes");
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        assert!((f.score - 0.9).abs() < 1e-6, "{f:?}");
        // Centre ((3 + 0.25) 16, (2 - 0.5) 16) = (52, 24), size (16, 32).
        let want = [52.0 - 8.0, 24.0 - 16.0, 16.0, 32.0];
        assert!(f.rect.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4), "{:?}", f.rect);
        for (n, lm) in f.landmarks.iter().enumerate() {
            let want = [(kps[2 * n] + 3.0) * 16.0, (kps[2 * n + 1] + 2.0) * 16.0];
            assert!((lm[0] - want[0]).abs() < 1e-4 && (lm[1] - want[1]).abs() < 1e-4, "landmark {n}: {lm:?} != {want:?}");
        }
        // Below the threshold: nothing.
        let strict = DetectOptions { score_threshold: 0.95, ..Default::default() };
        assert!(run(&hs, (w, h), &strict).expect("decodes").is_empty());
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let face = |score: f32, x: f32| Face { score, rect: [x, 0.0, 10.0, 10.0], landmarks: [[0.0; 2]; 5] };
        // IoU of boxes shifted by 4 of 10: 60/140 = 0.43 > 0.3; shifted by 6: 40/160 = 0.25.
        let kept = nms(vec![face(0.7, 4.0), face(0.9, 0.0), face(0.8, 20.0), face(0.75, 24.0), face(0.6, 6.0)], 0.3, 5000);
        let got: Vec<(f32, f32)> = kept.iter().map(|f| (f.score, f.rect[0])).collect();
        assert_eq!(got, vec![(0.9, 0.0), (0.8, 20.0), (0.6, 6.0)]);
        assert_eq!(nms(vec![face(0.9, 0.0), face(0.8, 50.0)], 0.3, 1).len(), 1, "top_k");
        let ordered = by_area(vec![face(0.9, 0.0), Face { rect: [0.0, 0.0, 20.0, 20.0], ..face(0.1, 0.0) }]);
        assert_eq!(ordered[0].score, 0.1, "largest box first");
    }

    #[test]
    fn malformed_outputs_are_errors() {
        let mut hs = heads(64, 64);
        assert!(matches!(run(&hs, (64, 48), &DetectOptions::default()), Err(DetectError::Canvas { .. })));
        assert!(matches!(run(&hs, (64, 96), &DetectOptions::default()), Err(DetectError::OutputSize { .. })));
        hs.retain(|(n, _)| n != "kps_32");
        let err = run(&hs, (64, 64), &DetectOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no output 'kps_32'"), "{err}");
    }

    #[test]
    fn unletterboxing_inverts_the_letterbox_warp() {
        let (warp, scale) = mfn_runtime::Warp::letterbox((1000, 500), (640, 640));
        let f = Face { score: 1.0, rect: [64.0, 32.0, 128.0, 64.0], landmarks: [[100.0, 50.0]; 5] };
        let back = f.unletterboxed(scale);
        // The warp sends canvas point p to image point m p + t: the same map.
        let [[m, _, t], _] = warp.matrix;
        assert!((back.rect[0] - (m * 64.0 + t)).abs() < 1e-3 && (back.rect[2] - 200.0).abs() < 1e-3, "{back:?}");
        assert!((back.landmarks[0][1] - (m * 50.0 + t)).abs() < 1e-3);
    }
}
