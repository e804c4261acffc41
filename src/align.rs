//! Face alignment: the similarity transform (rotation, uniform scale, shift; no reflection) that
//! best maps five detected landmarks onto the ArcFace 112x112 template in the least-squares sense
//! (Umeyama's estimate, as skimage's `SimilarityTransform` and insightface's `norm_crop`), and
//! the [`Warp`] it gives the GPU preprocessing: the aligned crop is sampled straight from the
//! photo, with zeros outside it (cv2.warpAffine's constant border), no resampling on the CPU.

use mfn_runtime::{Border, Warp};
use thiserror::Error;

/// The five landmarks (right eye, left eye, nose tip, right and left mouth corners, as the
/// subject sees them) of a face aligned to a 112x112 crop: the ArcFace template.
pub const ARCFACE_112: [[f64; 2]; 5] = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// Why landmarks cannot be aligned to a template.
#[derive(Debug, Error, PartialEq)]
pub enum AlignError {
    /// A point has a NaN or infinite coordinate.
    #[error("landmark {index} is not a finite point: {point:?}")]
    NotFinite {
        /// Its index among the landmarks (or among the template points).
        index: usize,
        /// The point as given.
        point: [f64; 2],
    },
    /// The landmarks (nearly) coincide, so no rotation or scale fits them.
    #[error("the landmarks are degenerate (spread {spread:.3e} px): they fix no rotation or scale")]
    Degenerate {
        /// Root-mean-square distance of the landmarks from their centroid, in their pixels (0 when
        /// the fitted transform has no inverse).
        spread: f64,
    },
    /// The landmarks and template points differ in number, or there are fewer than two.
    #[error("{got} landmarks for {want} template points")]
    Count {
        /// Number of landmarks.
        got: usize,
        /// Number of template points.
        want: usize,
    },
}

/// `p -> (a x - b y + tx, b x + a y + ty)`: a rotation by atan2(b, a), a scale by |(a, b)|, a shift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f64,
    /// `scale * sin(angle)`.
    pub b: f64,
    /// Shift in x, applied after the rotation and scale.
    pub tx: f64,
    /// Shift in y, applied after the rotation and scale.
    pub ty: f64,
}

impl Similarity {
    /// The image of the point `[x, y]`.
    pub fn apply(&self, [x, y]: [f64; 2]) -> [f64; 2] {
        [self.a * x - self.b * y + self.tx, self.b * x + self.a * y + self.ty]
    }

    /// The uniform scale factor, |(a, b)|.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The inverse transform (a similarity too); `None` when the scale is zero.
    pub fn inverse(&self) -> Option<Similarity> {
        let n = self.a * self.a + self.b * self.b;
        if !(n > 0.0 && n.is_finite()) {
            return None;
        }
        let (a, b) = (self.a / n, -self.b / n);
        Some(Similarity { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) })
    }

    /// The least-squares similarity mapping `src[i]` to `dst[i]`. Minimising
    /// sum |S(src_i) - dst_i|^2 is linear in (a, b, tx, ty); over centred points its solution is
    /// a = sum(s.d) / sum|s|^2, b = sum(s x d) / sum|s|^2 — the same optimum as Umeyama's SVD form
    /// restricted to proper rotations.
    pub fn estimate(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Result<Similarity, AlignError> {
        if src.len() != dst.len() || src.len() < 2 {
            return Err(AlignError::Count { got: src.len(), want: dst.len() });
        }
        if let Some((index, point)) = src.iter().chain(dst).enumerate().find(|(_, p)| !p.iter().all(|v| v.is_finite())) {
            return Err(AlignError::NotFinite { index: index % src.len(), point: *point });
        }
        let mean = |pts: &[[f64; 2]]| {
            let n = pts.len() as f64;
            [pts.iter().map(|p| p[0]).sum::<f64>() / n, pts.iter().map(|p| p[1]).sum::<f64>() / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut dot, mut cross, mut norm, mut dst_norm) = (0.0, 0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy, dx, dy) = (s[0] - ms[0], s[1] - ms[1], d[0] - md[0], d[1] - md[1]);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            norm += sx * sx + sy * sy;
            dst_norm += dx * dx + dy * dy;
        }
        // Spread of the landmarks relative to the template's: below 1e-6 of it, the fit is noise.
        let spread = (norm / src.len() as f64).sqrt();
        if norm <= 1e-12 * dst_norm || spread < 1e-6 {
            return Err(AlignError::Degenerate { spread });
        }
        let (a, b) = (dot / norm, cross / norm);
        if a.hypot(b) < 1e-9 {
            return Err(AlignError::Degenerate { spread });
        }
        Ok(Similarity { a, b, tx: md[0] - (a * ms[0] - b * ms[1]), ty: md[1] - (b * ms[0] + a * ms[1]) })
    }
}

/// The template for an aligned crop of `width` x `height`: the ArcFace 112x112 points, scaled.
pub fn template(width: usize, height: usize) -> [[f64; 2]; 5] {
    ARCFACE_112.map(|[x, y]| [x * width as f64 / 112.0, y * height as f64 / 112.0])
}

/// The warp producing a `width` x `height` aligned crop from the image the landmarks are in:
/// output pixel p samples the image at S^-1(p), S the similarity from the landmarks to the
/// template. Also returns S.
pub fn alignment_warp(landmarks: &[[f32; 2]; 5], width: usize, height: usize) -> Result<(Warp, Similarity), AlignError> {
    let src = landmarks.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let to_template = Similarity::estimate(&src, &template(width, height))?;
    let Some(inv) = to_template.inverse() else {
        return Err(AlignError::Degenerate { spread: 0.0 });
    };
    let matrix = [[inv.a, -inv.b, inv.tx], [inv.b, inv.a, inv.ty]].map(|row| row.map(|v| v as f32));
    Ok((Warp { matrix, border: Border::Zero }, to_template))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn recovers_a_known_similarity_exactly() {
        let truth = Similarity { a: 2.5 * 0.4f64.cos(), b: 2.5 * 0.4f64.sin(), tx: -31.0, ty: 412.5 };
        let src: Vec<[f64; 2]> = ARCFACE_112.to_vec();
        let dst: Vec<[f64; 2]> = src.iter().map(|p| truth.apply(*p)).collect();
        let got = Similarity::estimate(&src, &dst).expect("a fit");
        for (g, t) in [(got.a, truth.a), (got.b, truth.b), (got.tx, truth.tx), (got.ty, truth.ty)] {
            assert!(close(g, t, 1e-9), "{got:?} != {truth:?}");
        }
        let back = got.inverse().expect("invertible");
        for (p, q) in src.iter().zip(&dst) {
            let r = back.apply(*q);
            assert!(close(r[0], p[0], 1e-9) && close(r[1], p[1], 1e-9));
        }
    }

    #[test]
    fn matches_umeyama_on_noisy_points() {
        // Landmarks of a YuNet detection in obama_small.jpg, and Umeyama's estimate for them (as
        // skimage computes it: SVD of the covariance, numpy float64):
        // [[0.72592096787, 0.027516964004, -65.79993201614], [-0.027516964004, 0.72592096787, -12.81278337831]].
        let src = [[138.17297649, 96.13218307], [188.29209518, 98.38691998], [165.52129364, 128.47543335], [136.43345022, 144.93253326], [187.40401077, 146.48804093]];
        let got = Similarity::estimate(&src, &ARCFACE_112).expect("a fit");
        let want = Similarity { a: 0.72592096787, b: -0.027516964004, tx: -65.79993201614, ty: -12.81278337831 };
        for (g, w) in [(got.a, want.a), (got.b, want.b), (got.tx, want.tx), (got.ty, want.ty)] {
            assert!(close(g, w, 1e-9), "{got:?} != {want:?}");
        }
    }

    #[test]
    fn degenerate_landmarks_are_errors() {
        let same = [[50.0f32, 60.0]; 5];
        assert!(matches!(alignment_warp(&same, 112, 112), Err(AlignError::Degenerate { .. })));
        let mut nan = ARCFACE_112.map(|[x, y]| [x as f32, y as f32]);
        nan[2][1] = f32::NAN;
        assert!(matches!(alignment_warp(&nan, 112, 112), Err(AlignError::NotFinite { index: 2, .. })));
        assert!(matches!(Similarity::estimate(&[[0.0, 0.0]], &[[1.0, 1.0]]), Err(AlignError::Count { .. })));
    }

    #[test]
    fn the_template_itself_aligns_to_the_identity() {
        let lm = ARCFACE_112.map(|[x, y]| [x as f32, y as f32]);
        let (warp, s) = alignment_warp(&lm, 112, 112).expect("a fit");
        assert!(close(s.a, 1.0, 1e-6) && close(s.b, 0.0, 1e-6) && close(s.tx, 0.0, 1e-4) && close(s.ty, 0.0, 1e-4), "{s:?}");
        assert_eq!(warp.border, Border::Zero);
        // An 8 px shift of the landmarks shifts the sampling by 8 px.
        let shifted = lm.map(|[x, y]| [x - 8.0, y]);
        let (warp, _) = alignment_warp(&shifted, 112, 112).expect("a fit");
        assert!((warp.matrix[0][2] + 8.0).abs() < 1e-4 && (warp.matrix[0][0] - 1.0).abs() < 1e-6, "{warp:?}");
    }
}
