//! Soak: thousands of consecutive runs of one session give bit-identical outputs and keep the
//! process's memory flat.
//!
//! Memory is the resident set (`VmRSS` of /proc/self/status), read after a warm-up (pipelines
//! compiled, the chains' too, which a session on a CPU adapter builds after its first run;
//! allocator pools filled) and again after the runs. On lavapipe the GPU's memory is
//! the process's memory, so leaked buffers, bind groups or command buffers show up there too.
//! The bound, [`GROWTH_BOUND_KIB`] = 4 MiB, is a leak detector, not a budget: one run uploads a
//! 147 KiB input and reads back 0.5 KiB, so leaking the input staging buffer would grow the
//! process by 29 MiB in 200 runs, and leaking even 420 bytes a run (less than the output vector)
//! would exceed it over the 10,000 runs of the pretrained model; the allocators' noise measured
//! here stays below 1 MiB.
//!
//! The 10,000-run soak of the pretrained model is `#[ignore]`d (29 minutes on a loaded lavapipe):
//! `cargo test -p mfn --test soak -- --ignored --nocapture`.

mod common;

use mfn_runtime::Session;

/// Largest growth of the resident set allowed between the end of the warm-up and the last run.
const GROWTH_BOUND_KIB: u64 = 4 << 10;

/// The resident set of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable (Linux)");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

/// Runs `input` `warmup + runs` times on `session`; every output must equal the first, bit for
/// bit, and the resident set may grow by at most [`GROWTH_BOUND_KIB`] after the warm-up.
fn soak(session: &Session, input: &[f32], warmup: usize, runs: usize) {
    let first = session.run(input).expect("first run");
    session.wait_for_chains();
    let same = |out: &[f32]| out.len() == first.len() && out.iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits());
    for i in 0..warmup {
        assert!(same(&session.run(input).expect("run")), "warm-up run {i}: output differs from the first run");
    }
    let start = rss_kib();
    let mut peak = start;
    let began = std::time::Instant::now();
    for i in 0..runs {
        let out = session.run(input).unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert!(same(&out), "run {i}: output differs from the first run");
        if i % 100 == 99 {
            peak = peak.max(rss_kib());
        }
    }
    let end = rss_kib();
    let per_run = began.elapsed() / runs as u32;
    eprintln!(
        "{runs} runs after {warmup} warm-up ({per_run:?} a run): resident set {start} KiB -> {end} KiB (peak {peak} KiB, growth {} KiB, bound {GROWTH_BOUND_KIB} KiB)",
        end as i64 - start as i64
    );
    assert!(end.saturating_sub(start) <= GROWTH_BOUND_KIB, "resident set grew from {start} KiB to {end} KiB over {runs} runs (bound {GROWTH_BOUND_KIB} KiB)");
}

#[test]
fn two_hundred_runs_of_the_generated_model() {
    let onnx = mfn::synthetic_model(mfn::Variant::Mfn112x112);
    let program = common::compile(&onnx);
    let Some(session) = common::session(&program, 1) else { return };
    soak(&session, &mfn_models::sample_input(mfn::Variant::Mfn112x112, 1, 3), 20, 200);
}

#[test]
#[ignore = "10 to 30 minutes on lavapipe: cargo test -p mfn --test soak -- --ignored"]
fn ten_thousand_runs_of_the_pretrained_model() {
    let path = mfn::shared_file("models/mobilefacenet-insightface.onnx").unwrap_or_else(|e| panic!("{e}"));
    let onnx = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let program = common::compile(&onnx);
    let Some(session) = common::session(&program, 1) else { return };
    let input = mfn_models::rng::Rng::new(17).normal_vec(program.input.shape.iter().product(), 1.0);
    soak(&session, &input, 100, 10_000);
}
