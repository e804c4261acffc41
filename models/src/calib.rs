//! Naive f32 CPU forward pass of the few ops MobileFaceNet needs (grouped Conv, BatchNorm, PRelu,
//! Add), used while generating a model to calibrate each BatchNorm's running statistics.
//!
//! Only correctness matters here, plus being fast enough to run a whole network in a unit test:
//! loops are ordered so the innermost one walks contiguous output memory. Every reduction is in a
//! fixed order (no threads), so results are bit-identical across runs and platforms.

/// An NCHW activation tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Act {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// The geometry of one 2-D convolution (symmetric padding, no dilation: all MobileFaceNet uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub group: usize,
}

impl ConvGeom {
    /// Element count of the OIHW weight tensor.
    pub fn weight_len(&self) -> usize {
        self.cout * (self.cin / self.group) * self.kh * self.kw
    }

    /// Output spatial size for an input of `h` x `w`.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + 2 * self.pad - self.kh) / self.stride + 1;
        let ow = (w + 2 * self.pad - self.kw) / self.stride + 1;
        (oh, ow)
    }
}

impl Act {
    /// Wraps NCHW data; panics on a size mismatch (an internal bug).
    pub fn new(n: usize, c: usize, h: usize, w: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * c * h * w, "activation size");
        Act { n, c, h, w, data }
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Per-channel mean and (population) variance over batch and space, accumulated in f64.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let count = (self.n * self.plane()) as f64;
        let mut mean = vec![0f64; self.c];
        let mut sq = vec![0f64; self.c];
        for (i, chunk) in self.data.chunks_exact(self.plane()).enumerate() {
            let c = i % self.c;
            mean[c] += chunk.iter().map(|&v| v as f64).sum::<f64>();
        }
        for m in &mut mean {
            *m /= count;
        }
        for (i, chunk) in self.data.chunks_exact(self.plane()).enumerate() {
            let c = i % self.c;
            sq[c] += chunk.iter().map(|&v| (v as f64 - mean[c]).powi(2)).sum::<f64>();
        }
        let var = sq.iter().map(|s| (s / count) as f32).collect();
        (mean.iter().map(|&m| m as f32).collect(), var)
    }

    /// Standard deviation over all elements.
    pub fn std(&self) -> f32 {
        let len = self.data.len() as f64;
        let mean = self.data.iter().map(|&v| v as f64).sum::<f64>() / len;
        let var = self.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len;
        var.sqrt() as f32
    }

    /// Inference BatchNormalization: `gamma * (x - mean) / sqrt(var + eps) + beta`.
    pub fn batch_norm(&mut self, gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) {
        let (c_count, plane) = (self.c, self.plane());
        for (i, chunk) in self.data.chunks_exact_mut(plane).enumerate() {
            let c = i % c_count;
            let scale = gamma[c] / (var[c] + eps).sqrt();
            let shift = beta[c] - mean[c] * scale;
            chunk.iter_mut().for_each(|v| *v = *v * scale + shift);
        }
    }

    /// PRelu with one slope per channel (slope shaped [C,1,1]).
    pub fn prelu(&mut self, slope: &[f32]) {
        let (c_count, plane) = (self.c, self.plane());
        for (i, chunk) in self.data.chunks_exact_mut(plane).enumerate() {
            let a = slope[i % c_count];
            chunk.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= a
                }
            });
        }
    }

    /// Elementwise `self += other` (the residual connection).
    pub fn add(&mut self, other: &Act) {
        assert_eq!((self.n, self.c, self.h, self.w), (other.n, other.c, other.h, other.w));
        self.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += b);
    }
}

/// Grouped 2-D convolution without bias; `weight` is OIHW.
pub(crate) fn conv2d(x: &Act, g: &ConvGeom, weight: &[f32]) -> Act {
    assert_eq!(x.c, g.cin, "conv input channels");
    assert_eq!(weight.len(), g.weight_len(), "conv weight size");
    let (oh, ow) = g.out_hw(x.h, x.w);
    let mut out = Act::new(x.n, g.cout, oh, ow, vec![0.0; x.n * g.cout * oh * ow]);
    let sample_len = g.cout * oh * ow;
    // Samples are independent, so splitting the batch over threads keeps results bit-identical.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(x.n).max(1);
    let per_thread = x.n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, chunk) in out.data.chunks_mut(per_thread * sample_len).enumerate() {
            scope.spawn(move || {
                for (j, sample) in chunk.chunks_mut(sample_len).enumerate() {
                    let n = i * per_thread + j;
                    let input = &x.data[n * g.cin * x.h * x.w..][..g.cin * x.h * x.w];
                    conv_sample(sample, input, (x.h, x.w), g, weight);
                }
            });
        }
    });
    out
}

/// One sample of [`conv2d`]: `out` is [cout, oh, ow], `input` is [cin, h, w].
fn conv_sample(out: &mut [f32], input: &[f32], (h, w): (usize, usize), g: &ConvGeom, weight: &[f32]) {
    let (oh, ow) = g.out_hw(h, w);
    let (cin_g, cout_g) = (g.cin / g.group, g.cout / g.group);
    for (oc, out_plane) in out.chunks_exact_mut(oh * ow).enumerate() {
        for icg in 0..cin_g {
            let ic = (oc / cout_g) * cin_g + icg;
            let in_plane = &input[ic * h * w..][..h * w];
            let wk = &weight[(oc * cin_g + icg) * g.kh * g.kw..][..g.kh * g.kw];
            accumulate_plane(out_plane, (oh, ow), in_plane, (h, w), wk, g);
        }
    }
}

/// Adds one input channel's contribution to one output plane, tap by tap: for a fixed kernel tap
/// the valid output columns form one contiguous range, so the inner loop has no bounds checks.
fn accumulate_plane(out: &mut [f32], (oh, ow): (usize, usize), input: &[f32], (ih, iw): (usize, usize), w: &[f32], g: &ConvGeom) {
    let (s, pad) = (g.stride, g.pad as isize);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let wv = w[ky * g.kw + kx];
            let (x_lo, x_hi) = valid_range(ow, iw, kx as isize - pad, s);
            if x_lo >= x_hi {
                continue;
            }
            for oy in 0..oh {
                let iy = (oy * s) as isize + ky as isize - pad;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                let in_row = &input[iy as usize * iw..][..iw];
                let out_row = &mut out[oy * ow..][x_lo..x_hi];
                let start = ((x_lo * s) as isize + kx as isize - pad) as usize;
                if s == 1 {
                    // Contiguous on both sides: lets the compiler vectorise.
                    let in_run = &in_row[start..start + out_row.len()];
                    out_row.iter_mut().zip(in_run).for_each(|(o, &v)| *o += wv * v);
                } else {
                    for (j, o) in out_row.iter_mut().enumerate() {
                        *o += wv * in_row[start + j * s];
                    }
                }
            }
        }
    }
}

/// Output columns `ox` in `[lo, hi)` for which `ox * s + offset` lies inside `[0, iw)`.
fn valid_range(ow: usize, iw: usize, offset: isize, s: usize) -> (usize, usize) {
    let s = s as isize;
    let lo = if offset >= 0 { 0 } else { (-offset + s - 1) / s };
    let hi = ((iw as isize - offset + s - 1) / s).clamp(0, ow as isize);
    (lo as usize, hi.max(lo) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, with a bounds check per tap.
    fn conv_reference(x: &Act, g: &ConvGeom, weight: &[f32]) -> Vec<f32> {
        let (oh, ow) = g.out_hw(x.h, x.w);
        let (cin_g, cout_g) = (g.cin / g.group, g.cout / g.group);
        let mut out = vec![0.0; x.n * g.cout * oh * ow];
        for n in 0..x.n {
            for oc in 0..g.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for icg in 0..cin_g {
                            let ic = (oc / cout_g) * cin_g + icg;
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.cin + ic) * x.h + iy as usize) * x.w + ix as usize;
                                    acc += weight[((oc * cin_g + icg) * g.kh + ky) * g.kw + kx] * x.data[xi];
                                }
                            }
                        }
                        out[((n * g.cout + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    fn check(g: ConvGeom, h: usize, w: usize) {
        let mut rng = crate::rng::Rng::new(3);
        let x = Act::new(2, g.cin, h, w, rng.normal_vec(2 * g.cin * h * w, 1.0));
        let weight = rng.normal_vec(g.weight_len(), 1.0);
        let got = conv2d(&x, &g, &weight).data;
        let want = conv_reference(&x, &g, &weight);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{g:?}: {a} vs {b}");
        }
    }

    #[test]
    fn conv_matches_reference() {
        let geom = |cin, cout, k, stride, pad, group| ConvGeom { cin, cout, kh: k, kw: k, stride, pad, group };
        check(geom(3, 4, 3, 2, 1, 1), 7, 6);
        check(geom(4, 4, 3, 1, 1, 4), 5, 5);
        check(geom(4, 4, 3, 2, 1, 4), 6, 7);
        check(geom(4, 6, 1, 1, 0, 1), 3, 4);
        check(ConvGeom { cin: 4, cout: 4, kh: 3, kw: 2, stride: 1, pad: 0, group: 4 }, 3, 2);
        check(geom(4, 4, 2, 3, 1, 2), 8, 9);
    }

    #[test]
    fn batch_norm_with_own_stats_standardises() {
        let mut rng = crate::rng::Rng::new(5);
        let mut x = Act::new(2, 3, 4, 4, rng.normal_vec(96, 3.0));
        let (mean, var) = x.channel_stats();
        x.batch_norm(&[1.0; 3], &[0.0; 3], &mean, &var, 0.0);
        let (m2, v2) = x.channel_stats();
        assert!(m2.iter().all(|m| m.abs() < 1e-5) && v2.iter().all(|v| (v - 1.0).abs() < 1e-4));
    }

    #[test]
    fn prelu_scales_negatives_per_channel() {
        let mut x = Act::new(1, 2, 1, 2, vec![-1.0, 2.0, -4.0, 3.0]);
        x.prelu(&[0.5, 0.25]);
        assert_eq!(x.data, [-0.5, 2.0, -1.0, 3.0]);
    }
}
