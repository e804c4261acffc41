//! `mfn bench --json`: a line of JSON a batch size, for scripts and dashboards.

use anyhow::Result;
use serde::Serialize;

use super::{cold_start_ms, faces_per_s, BatchResult, CacheStart, KernelTime, SessionFacts};

/// A figure of the JSON output, to 4 decimal places (null where not finite, as JSON has no NaN).
#[derive(Clone, Copy)]
struct Rounded(f64);

impl Serialize for Rounded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((self.0 * 1e4).round() / 1e4)
    }
}

pub(super) fn rounded<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    Rounded(*v).serialize(s)
}

/// One line of `--json`: the figures of one batch size, with the cold start's parts, the batch-1
/// session creation with an empty and a filled pipeline cache (null: the adapter keeps none), and
/// the per-kernel profile (null: no timestamp queries). Non-finite numbers are null.
#[derive(Serialize)]
struct BatchJson<'a> {
    batch: usize,
    median_ms: Rounded,
    min_ms: Rounded,
    max_ms: Rounded,
    p10_ms: Rounded,
    p90_ms: Rounded,
    runs: usize,
    faces_per_s: Rounded,
    cold_start_ms: Rounded,
    compile_ms: Rounded,
    session_ms: Rounded,
    first_run_ms: Rounded,
    max_batch: usize,
    dispatches: usize,
    activation_bytes: u64,
    weight_bytes: u64,
    session_cold_cache_ms: Option<Rounded>,
    session_warm_cache_ms: Option<Rounded>,
    cold_start_warm_cache_ms: Option<Rounded>,
    #[serde(flatten)]
    session: &'a SessionFacts,
    model: &'a str,
    profile: Option<&'a [KernelTime]>,
}

pub(super) fn json_line(r: &BatchResult, compile_ms: f64, cache: Option<&CacheStart>, session: &SessionFacts, model: &str) -> Result<String> {
    let s = &r.stats;
    let line = BatchJson {
        batch: r.batch,
        median_ms: Rounded(s.median),
        min_ms: Rounded(s.min),
        max_ms: Rounded(s.max),
        p10_ms: Rounded(s.p10),
        p90_ms: Rounded(s.p90),
        runs: r.runs,
        faces_per_s: Rounded(faces_per_s(r)),
        cold_start_ms: Rounded(cold_start_ms(r, compile_ms)),
        compile_ms: Rounded(compile_ms),
        session_ms: Rounded(r.session_ms),
        first_run_ms: Rounded(r.first_run_ms),
        max_batch: r.max_batch,
        dispatches: r.dispatches,
        activation_bytes: r.memory.0,
        weight_bytes: r.memory.1,
        session_cold_cache_ms: cache.map(|c| Rounded(c.cold_session_ms)),
        session_warm_cache_ms: cache.map(|c| Rounded(c.warm_session_ms)),
        cold_start_warm_cache_ms: cache.map(|c| Rounded(compile_ms + c.warm_session_ms + c.warm_first_run_ms)),
        session,
        model,
        profile: r.profile.as_deref(),
    };
    Ok(serde_json::to_string(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Stats;

    #[test]
    fn json_lines() {
        let kernel = KernelTime { kernel: "k00_\"gemm\"".into(), nodes: vec!["a\\b".into()], ms: 1.5, gflops: f64::NAN, gbytes: 2.0 };
        let r = BatchResult {
            batch: 16,
            max_batch: 8,
            stats: Stats::of(vec![2.0, 4.0, 3.0]),
            runs: 3,
            session_ms: 10.0,
            first_run_ms: 5.0,
            profile: Some(vec![kernel]),
            memory: (100, 20),
            dispatches: 50,
        };
        let facts = SessionFacts { adapter: "llvmpipe\n(test)".into(), subgroups: true, warm_cores: 2, tile_sharers: 2, wide_loads: false };
        let line = json_line(&r, 1.0, None, &facts, "m.onnx").unwrap();
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["batch"].as_u64(), v["median_ms"].as_f64(), v["faces_per_s"].as_f64()), (Some(16), Some(3.0), Some(5333.3333)));
        assert_eq!(v["cold_start_ms"].as_f64(), Some(16.0));
        assert!(v["session_cold_cache_ms"].is_null());
        assert_eq!((v["adapter"].as_str(), v["tile_sharers"].as_u64(), v["wide_loads"].as_bool()), (Some("llvmpipe\n(test)"), Some(2), Some(false)));
        let row = &v["profile"][0];
        assert_eq!((row["kernel"].as_str(), row["nodes"][0].as_str(), row["gbytes_per_s"].as_f64()), (Some("k00_\"gemm\""), Some("a\\b"), Some(2.0)));
        assert!(row["gflops"].is_null(), "NaN as null: {row}");
    }
}
