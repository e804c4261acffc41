//! The on-disk pipeline cache (`SessionOptions::pipeline_cache`): written after the pipelines are
//! created, loaded by the next session, and never a reason to fail or to compute differently:
//! damaged, forged and unwritable cache files are discarded or reported.

mod common;

use std::path::{Path, PathBuf};

use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{wgpu, PipelineCacheStatus, SessionOptions};

fn model() -> Vec<u8> {
    let mut rng = Rng::new(11);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 16.into(), 16.into()]);
    g.initializer("w", &[8, 3, 3, 3], rng.normal_vec(216, 0.3));
    g.initializer("p", &[16, 8, 1, 1], rng.normal_vec(128, 0.3));
    g.node("Conv", &["x", "w"], &["c"], vec![Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("Relu", &["c"], &["r"], vec![]);
    g.node("Conv", &["r", "p"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 16.into(), 16.into(), 16.into()]);
    g.to_bytes()
}

/// An empty folder of this test and process.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mfn-test-pipeline-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

/// A session caching in `cache` (a folder, or a path that cannot be one): what its cache did and
/// its output on a fixed input. `None` without an adapter, or where the adapter keeps no cache
/// (wgpu has one on Vulkan only; a Vulkan adapter without it fails the test).
fn session(cache: &Path) -> Option<(PipelineCacheStatus, Vec<f32>)> {
    let program = common::compile(&model());
    let options = SessionOptions { max_batch: 2, pipeline_cache: Some(cache.to_path_buf()), ..Default::default() };
    let session = common::session_with(&program, &options)?;
    let Some(status) = session.pipeline_cache().cloned() else {
        assert_ne!(session.adapter_info().backend, wgpu::Backend::Vulkan, "a Vulkan adapter without a pipeline cache");
        eprintln!("skipping: {} keeps no pipeline cache", session.adapter());
        return None;
    };
    let input = Rng::new(3).uniform_vec(2 * 3 * 16 * 16, -1.0, 1.0);
    Some((status, session.run(&input).expect("the session runs")))
}

/// Our file header: magic, payload length, CRC-32 of the payload.
fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut file = b"MFNPIPE1".to_vec();
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    file.extend_from_slice(payload);
    file
}

#[test]
fn a_second_session_loads_what_the_first_wrote() {
    let dir = fresh_dir("reuse");
    let Some((first, y1)) = session(&dir) else { return };
    let saved = first.saved.clone().expect("the cache is written");
    assert!(saved > 0 && first.path.starts_with(&dir), "{first:?}");
    assert_eq!((first.loaded_bytes, first.discarded.as_deref()), (0, None));
    let (second, y2) = session(&dir).expect("the adapter is still there");
    assert_eq!((second.loaded_bytes, second.discarded.as_deref()), (saved, None), "{second:?}");
    assert_eq!(second.path, first.path);
    assert_eq!(y1, y2, "a cached pipeline computes what a fresh one does");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_and_forged_cache_files_are_discarded_and_rewritten() {
    let dir = fresh_dir("damage");
    let Some((first, want)) = session(&dir) else { return };
    let good = std::fs::read(&first.path).expect("the cache file");
    let payload = &good[20..];
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a flipped bit", flipped, "CRC"),
        ("a truncated file", good[..good.len() - 7].to_vec(), "truncated"),
        ("an empty file", Vec::new(), "not an mfn pipeline cache"),
        ("another format", b"{\"not\": \"a cache\"}".to_vec(), "not an mfn pipeline cache"),
        // Our header is intact, the data is not wgpu's: wgpu's own check refuses it.
        ("forged data", wrap(&vec![0x5a; payload.len()]), "wgpu rejected it"),
        ("forged short data", wrap(&payload[..10]), "wgpu rejected it"),
    ];
    for (what, bytes, why) in cases {
        std::fs::write(&first.path, &bytes).unwrap();
        let (status, got) = session(&dir).expect("the adapter is still there");
        let discarded = status.discarded.as_deref().unwrap_or_else(|| panic!("{what}: not discarded: {status:?}"));
        assert!(discarded.contains(why), "{what}: discarded because '{discarded}', expected '{why}'");
        assert_eq!(status.loaded_bytes, 0, "{what}");
        assert_eq!(got, want, "{what}: the session computes as without a cache");
        assert!(status.saved.is_ok(), "{what}: the cache is rewritten: {status:?}");
        let (again, _) = session(&dir).expect("the adapter is still there");
        assert!(again.discarded.is_none() && again.loaded_bytes > 0, "{what}: the rewritten cache loads: {again:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_cache_is_reported_not_fatal() {
    let dir = fresh_dir("unwritable");
    // A regular file where the cache folder should be.
    let not_a_folder = dir.join("file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let Some((status, _)) = session(&not_a_folder) else { return };
    assert!(status.saved.as_ref().is_err_and(|e| e.contains("cannot write")), "{status:?}");
    assert_eq!(status.loaded_bytes, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
