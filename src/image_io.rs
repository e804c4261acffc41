//! Image decoding to 8-bit RGB. JPEGs go through mozjpeg (libjpeg-turbo's decoder), which gives
//! the same pixels as the libjpeg-based tools reference embeddings are made with; the `image`
//! crate's decoder differs by a few levels on chroma-subsampled files, enough to move cosines by
//! 5e-3. Other formats (PNG, ...) go through the `image` crate.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Clone, Debug)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
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
}

pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    decode_rgb(&bytes).with_context(|| format!("cannot decode image {}", path.display()))
}

pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes);
    }
    let rgb = image::load_from_memory(bytes).context("not an image the decoder knows (JPEG, PNG)")?.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    // mozjpeg reports libjpeg's fatal errors by unwinding.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<RgbImage> {
        let mut image = mozjpeg::Decompress::new_mem(bytes)?.rgb()?;
        let (width, height) = (image.width(), image.height());
        let pixels: Vec<[u8; 3]> = image.read_scanlines()?;
        image.finish()?;
        Ok(RgbImage { width, height, data: pixels.concat() })
    });
    match decoded {
        Ok(Ok(img)) if img.data.len() == img.width * img.height * 3 && img.width > 0 => Ok(img),
        Ok(Ok(_)) => bail!("the JPEG decoded to fewer pixels than its size says (truncated?)"),
        Ok(Err(e)) => bail!("invalid JPEG: {e}"),
        Err(_) => bail!("invalid JPEG (the decoder gave up)"),
    }
}
