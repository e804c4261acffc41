//! Image decoding to 8-bit RGB. JPEGs go through mozjpeg (libjpeg-turbo's decoder), which gives
//! the same pixels as the libjpeg-based tools reference embeddings are made with; the `image`
//! crate's decoder differs by a few levels on chroma-subsampled files, enough to move cosines by
//! 5e-3. Other formats (PNG, ...) go through the `image` crate.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Most pixels a decoded image may have (67 M, e.g. 8192 x 8192; 192 MiB as RGB): a header
/// claiming more is refused before anything is allocated.
pub const MAX_PIXELS: usize = 1 << 26;

fn check_size(width: usize, height: usize) -> Result<()> {
    if width.saturating_mul(height) > MAX_PIXELS {
        bail!("the image claims to be {width}x{height}: more than the {} megapixels this tool decodes", MAX_PIXELS >> 20);
    }
    Ok(())
}

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Clone, Debug)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes: R, G, B of each pixel, top row first.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Pixels as f32 0..255 in NCHW order (one sample).
    pub fn to_nchw(&self) -> Vec<f32> {
        let plane = self.width * self.height;
        let mut out = vec![0.0; 3 * plane];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = f32::from(px[c]);
            }
        }
        out
    }

    /// The image shrunk by an integer `factor` on the CPU (each output pixel the rounded mean of a
    /// `factor` x `factor` block; edge blocks are partial): for photos too large for one GPU buffer.
    /// Output pixel centre p lies at `(p + 0.5) * factor - 0.5` in this image.
    pub fn downscaled(&self, factor: usize) -> RgbImage {
        let factor = factor.max(1);
        let (width, height) = (self.width.div_ceil(factor), self.height.div_ceil(factor));
        let mut data = Vec::with_capacity(width * height * 3);
        for oy in 0..height {
            let rows = oy * factor..((oy + 1) * factor).min(self.height);
            for ox in 0..width {
                let cols = ox * factor..((ox + 1) * factor).min(self.width);
                let mut sum = [0u64; 3];
                for y in rows.clone() {
                    for x in cols.clone() {
                        let i = 3 * (y * self.width + x);
                        for (total, v) in sum.iter_mut().zip(&self.data[i..i + 3]) {
                            *total += u64::from(*v);
                        }
                    }
                }
                let n = (rows.len() * cols.len()) as u64;
                data.extend(sum.map(|v| ((v + n / 2) / n) as u8));
            }
        }
        RgbImage { width, height, data }
    }

    /// The image itself when its pixels fit `max_bytes` (one GPU buffer), else shrunk by the
    /// smallest integer factor that makes them fit; returns the factor too (1: unchanged).
    pub fn fit_within(self, max_bytes: u64) -> (RgbImage, usize) {
        let bytes = |w: usize, h: usize| (w * h * 3).next_multiple_of(4) as u64;
        let mut factor = 1;
        while bytes(self.width.div_ceil(factor), self.height.div_ceil(factor)) > max_bytes && factor < self.width.max(self.height) {
            factor += 1;
        }
        if factor == 1 {
            (self, 1)
        } else {
            (self.downscaled(factor), factor)
        }
    }

    /// The image as the runtime takes it ([`mfn_runtime::Session::run_images`]).
    pub fn view(&self) -> mfn_runtime::Image<'_> {
        mfn_runtime::Image { width: self.width, height: self.height, rgb: &self.data }
    }
}

/// Reads and decodes the image file at `path` (see [`decode_rgb`]).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    decode_rgb(&bytes).with_context(|| format!("cannot decode image {}", path.display()))
}

/// Decodes an image file's bytes: a JPEG (known by its magic bytes) with mozjpeg, anything else
/// with the `image` crate. Images of more than [`MAX_PIXELS`] pixels, truncated JPEGs and empty
/// input are errors.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes);
    }
    let reader = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().expect("reading from memory");
    let (w, h) = reader().into_dimensions().context("not an image the decoder knows (JPEG, PNG)")?;
    check_size(w as usize, h as usize)?;
    let rgb = reader().decode().context("not an image the decoder knows (JPEG, PNG)")?.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

/// The JPEG's bytes, noting whether the decoder asked for more than there is: libjpeg only warns
/// on a truncated file (and fills the rest with grey), which must be an error here.
struct WatchedBytes<'a> {
    rest: &'a [u8],
    ran_out: &'a std::sync::atomic::AtomicBool,
}

impl std::io::Read for WatchedBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.rest, buf)
    }
}

impl std::io::BufRead for WatchedBytes<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.ran_out.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(self.rest)
    }

    fn consume(&mut self, amount: usize) {
        self.rest = &self.rest[amount.min(self.rest.len())..];
    }
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    let ran_out = std::sync::atomic::AtomicBool::new(false);
    // mozjpeg reports libjpeg's fatal errors by unwinding.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<RgbImage> {
        let header = mozjpeg::Decompress::new_reader(WatchedBytes { rest: bytes, ran_out: &ran_out })?;
        check_size(header.width(), header.height()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let mut image = header.rgb()?;
        let (width, height) = (image.width(), image.height());
        let pixels: Vec<[u8; 3]> = image.read_scanlines()?;
        image.finish()?;
        Ok(RgbImage { width, height, data: pixels.concat() })
    });
    match decoded {
        _ if ran_out.load(std::sync::atomic::Ordering::Relaxed) => bail!("the JPEG ends before its image data does (truncated)"),
        Ok(Ok(img)) if img.data.len() == img.width * img.height * 3 && img.width > 0 => Ok(img),
        Ok(Ok(_)) => bail!("the JPEG decoded to fewer pixels than its size says (truncated?)"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => bail!("{e}"),
        Ok(Err(e)) => bail!("invalid JPEG: {e}"),
        Err(_) => bail!("invalid JPEG (the decoder gave up)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscaling_averages_blocks_and_fits_the_limit() {
        let data: Vec<u8> = (0..5 * 3).flat_map(|i| [i as u8 * 10, 100, 255 - i as u8]).collect();
        let img = RgbImage { width: 5, height: 3, data };
        let small = img.clone().downscaled(2);
        assert_eq!((small.width, small.height), (3, 2));
        // Block (0, 0): pixels 0, 1, 5, 6 -> red mean (0 + 10 + 50 + 60) / 4 = 30.
        assert_eq!(&small.data[..3], &[30, 100, 255 - 3]);
        // Edge block (2, 1): the lone pixel 14.
        assert_eq!(&small.data[15..], &[140, 100, 255 - 14]);
        let (same, f) = img.clone().fit_within(1 << 20);
        assert_eq!((f, same.width), (1, 5));
        // 5x3 pixels take 48 bytes (padded to 4), 3x2 take 20.
        let (fitted, f) = img.fit_within(20);
        assert_eq!((f, fitted.width, fitted.height), (2, 3, 2));
    }

    #[test]
    fn absurd_header_sizes_are_refused_before_decoding() {
        let mut png = Vec::new();
        image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("PNG");
        // IHDR width and height (big-endian) at bytes 16..24, its CRC (over type and data) at 29..33.
        png[16..20].copy_from_slice(&60000u32.to_be_bytes());
        png[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = format!("{:#}", decode_rgb(&png).unwrap_err());
        assert!(err.contains("60000x60000") && err.contains("megapixels"), "{err}");
    }
}
