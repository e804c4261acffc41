//! The pipeline cache on disk: the driver's compiled pipelines, kept between processes through
//! wgpu's `PipelineCache` (Vulkan adapters with `Features::PIPELINE_CACHE`).
//!
//! One file per class of adapter, named by `wgpu::util::pipeline_cache_key`, in the folder of
//! [`SessionOptions::pipeline_cache`](crate::SessionOptions). The file wraps wgpu's data in a
//! header of our own (magic, length, CRC-32), because wgpu only checks its own header: damaged
//! data past it would reach the driver. Data that fails either check is discarded, the pipelines
//! are compiled afresh and the file rewritten; a session never fails because of its cache.

use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MFNPIPE1";
const HEADER: usize = 8 + 8 + 4;

/// What the pipeline cache did for one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineCacheStatus {
    /// The cache file of this adapter.
    pub path: PathBuf,
    /// Bytes of earlier cache data handed to the driver; 0 when there was none or it was discarded.
    pub loaded_bytes: usize,
    /// Why earlier data was discarded (damaged, truncated, another driver), if it was.
    pub discarded: Option<String>,
    /// Bytes written after the pipelines were created, or why writing failed.
    pub saved: Result<usize, String>,
}

impl crate::Session {
    /// What the on-disk pipeline cache did when this session was created; `None` where no cache
    /// folder was given, the adapter has no `PIPELINE_CACHE` feature (only Vulkan has it), or the
    /// session runs on a host's device ([`Session::with_device`](crate::Session::with_device)).
    pub fn pipeline_cache(&self) -> Option<&PipelineCacheStatus> {
        self.pipeline_cache.as_ref()
    }
}

/// A pipeline cache being filled by a session, and where it goes when done.
pub(crate) struct DiskCache {
    pub cache: wgpu::PipelineCache,
    pub status: PipelineCacheStatus,
}

impl DiskCache {
    /// Opens the cache of `info`'s adapter in `dir`; `None` where the device has no
    /// `PIPELINE_CACHE` feature or wgpu keeps no cache for the adapter's backend.
    pub fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo, dir: &Path) -> Option<DiskCache> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let path = dir.join(wgpu::util::pipeline_cache_key(info)?);
        let (data, mut discarded) = match std::fs::read(&path) {
            Ok(file) => match unwrap(&file) {
                Ok(data) => (Some(data.to_vec()), None),
                Err(why) => (None, Some(why)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (None, Some(format!("cannot read it: {e}"))),
        };
        let loaded = data.and_then(|d| match create(device, Some(&d)) {
            Ok(cache) => Some((cache, d.len())),
            Err(why) => {
                discarded = Some(why);
                None
            }
        });
        let (cache, loaded_bytes) = match loaded {
            Some(loaded) => loaded,
            None => (create(device, None).ok()?, 0),
        };
        let status = PipelineCacheStatus { path, loaded_bytes, discarded, saved: Ok(0) };
        Some(DiskCache { cache, status })
    }

    /// Writes the cache (with the pipelines created since [`DiskCache::open`]) atomically: to a
    /// file of this process first, then renamed over the old one.
    pub fn save(mut self) -> PipelineCacheStatus {
        let path = &self.status.path;
        self.status.saved = match self.cache.get_data() {
            None => Err("the driver returned no cache data".into()),
            Some(data) => {
                let temp = path.with_extension(format!("tmp{}", std::process::id()));
                let write = || -> std::io::Result<()> {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::write(&temp, wrap(&data))?;
                    std::fs::rename(&temp, path)
                };
                write().map(|()| data.len()).map_err(|e| {
                    let _ = std::fs::remove_file(&temp);
                    format!("cannot write {}: {e}", path.display())
                })
            }
        };
        self.status
    }
}

/// A wgpu pipeline cache from `data`; an error (not a panic) where wgpu rejects the data.
fn create(device: &wgpu::Device, data: Option<&[u8]>) -> Result<wgpu::PipelineCache, String> {
    let scopes = crate::scope::Scopes::push(device);
    // SAFETY: wgpu's contract is that `data` came from `PipelineCache::get_data`. It did, unless
    // the file was damaged or forged: `unwrap` rejects damage (CRC-32), wgpu checks its header
    // (adapter, driver, version) and the Vulkan driver its own.
    // No silent fallback to an empty cache: a rejection is reported, and the caller starts empty.
    let cache = unsafe { device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor { label: Some("mfn"), data, fallback: false }) };
    match scopes.pop() {
        None => Ok(cache),
        Some(e) => Err(format!("wgpu rejected it: {e}")),
    }
}

/// wgpu's data in our header: magic, payload length (u64 LE), CRC-32 of the payload (u32 LE).
fn wrap(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The payload of a cache file, or why it cannot be used.
fn unwrap(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < HEADER || &file[..8] != MAGIC {
        return Err("not an mfn pipeline cache file".into());
    }
    let len = u64::from_le_bytes(file[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(file[16..20].try_into().expect("4 bytes"));
    let payload = &file[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!("truncated or extended: {} bytes of data, the header says {len}", payload.len()));
    }
    if crc32fast::hash(payload) != crc {
        return Err("damaged: the CRC-32 does not match".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_header_round_trip_and_damage() {
        let data = b"some driver data".to_vec();
        let file = wrap(&data);
        assert_eq!(unwrap(&file).unwrap(), &data[..]);
        let mut flipped = file.clone();
        flipped[HEADER + 3] ^= 1;
        assert!(unwrap(&flipped).unwrap_err().contains("CRC"));
        assert!(unwrap(&file[..file.len() - 1]).unwrap_err().contains("truncated"));
        assert!(unwrap(&file[..5]).unwrap_err().contains("not an mfn"));
        assert!(unwrap(b"MFNPIPE2xxxxxxxxxxxxxxxx").is_err());
    }
}
