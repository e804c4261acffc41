//! The chains' pipelines ([`SessionOptions::chains`](super::SessionOptions::chains)), built on a
//! thread of their own after the session's first runs.

use std::sync::{Arc, Mutex};

use super::pipelines::{create_pipelines, Job, OwnedJob};

/// The chains' pipelines, built on a thread of their own once the session has run a few times,
/// while it goes on running a dispatch a kernel: a chain is as long to build as its kernels
/// together, and neither the session's creation nor its first runs (a process that embeds an
/// image or two, a test) need wait or share the CPU with the build.
pub(crate) struct Chains {
    pub(super) pipelines: Arc<std::sync::OnceLock<Vec<wgpu::ComputePipeline>>>,
    build: Mutex<ChainBuild>,
    loop_bounding: bool,
    /// Runs so far that a chain would have taken (the build starts after [`RUNS_BEFORE_CHAINS`]).
    runs: std::sync::atomic::AtomicUsize,
    /// Set when the session is dropped: the build stops before its next pipeline.
    pub(super) dropped: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs of a session before it builds its chains' pipelines.
const RUNS_BEFORE_CHAINS: usize = 3;

pub(super) enum ChainBuild {
    /// Before the first run ends: what to build.
    Waiting(Vec<OwnedJob>),
    Building(std::thread::JoinHandle<()>),
    Done,
}

impl Chains {
    /// Chains whose pipelines `build` makes (with loop bounding where `loop_bounding`).
    pub(super) fn new(build: ChainBuild, loop_bounding: bool) -> Chains {
        Chains {
            pipelines: Arc::new(std::sync::OnceLock::new()),
            build: Mutex::new(build),
            loop_bounding,
            runs: std::sync::atomic::AtomicUsize::new(0),
            dropped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Counts a run that a chain would have taken, and starts building the chains' pipelines after
    /// [`RUNS_BEFORE_CHAINS`] of them (a session that only runs batches too large for any chain
    /// never builds them).
    pub(super) fn ran(&self, device: &wgpu::Device) {
        if self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= RUNS_BEFORE_CHAINS {
            self.start(device);
        }
    }

    /// Starts building the chains' pipelines on `device`, unless begun already.
    fn start(&self, device: &wgpu::Device) {
        let mut build = self.build.lock().unwrap_or_else(|p| p.into_inner());
        if let ChainBuild::Waiting(jobs) = &mut *build {
            let jobs = std::mem::take(jobs);
            let (device, built, loop_bounding, dropped) = (device.clone(), Arc::clone(&self.pipelines), self.loop_bounding, Arc::clone(&self.dropped));
            *build = ChainBuild::Building(std::thread::spawn(move || {
                let jobs: Vec<Job> = jobs.iter().map(OwnedJob::job).collect();
                // A chain that cannot be built leaves the session to its kernels' dispatches.
                if let Ok(pipelines) = create_pipelines(&device, &jobs, loop_bounding, None, Some(&dropped)) {
                    let _ = built.set(pipelines);
                }
            }));
        }
    }

    /// Builds the chains' pipelines now, or waits for the thread building them.
    pub(super) fn wait(&self, device: &wgpu::Device) {
        self.start(device);
        let mut build = self.build.lock().unwrap_or_else(|p| p.into_inner());
        if let ChainBuild::Building(thread) = std::mem::replace(&mut *build, ChainBuild::Done) {
            let _ = thread.join();
        }
    }
}
