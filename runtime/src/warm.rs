//! Warm cores: idle-priority threads that keep the CPUs busy while a run is in flight on a CPU
//! adapter (lavapipe, SwiftShader).
//!
//! A CPU adapter runs every dispatch on a pool of driver threads that fork and join once a
//! dispatch; between dispatches they sleep. Where an idle CPU halts (a virtual machine's vCPU
//! exits to the hypervisor; a bare-metal core drops into a sleep state), waking a sleeping
//! thread there costs tens to hundreds of microseconds, once a dispatch: on lavapipe in a 2-vCPU
//! KVM guest that is a quarter of MobileFaceNet's batch-1 latency (50 dispatches of 0.2 to 2 ms).
//! CPU inference engines keep their workers spinning between jobs for the same reason (onnxruntime's
//! `allow_spinning`, OpenMP's blocktime). The driver's threads are not ours, so these threads do
//! the spinning instead: one per CPU, at `SCHED_IDLE` priority, so that they run only on a CPU
//! with nothing else to run and never take time from the driver's threads, and only between a
//! run's start and its read-back. The rest of the time they are parked.
//!
//! Measured on a 2-vCPU KVM guest only. On a bare-metal machine with SMT a spinning thread shares
//! its physical core with whatever its sibling runs: `SessionOptions::warm_cores` turns it off.
//!
//! Linux only (elsewhere, or where `SCHED_IDLE` is refused, there are no such threads: a spinner
//! at normal priority would compete with the driver's threads), and not on machines of more than
//! 16 CPUs or under a CPU quota (see [`warm_cpus`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

struct Shared {
    /// Runs in flight.
    active: AtomicUsize,
    quit: AtomicBool,
    /// Rounds of spinning done, by all threads (for the tests).
    rounds: AtomicU64,
}

/// The warm-core threads of a session; they end when it drops.
pub(crate) struct WarmCores {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Keeps the cores warm while it lives (see [`WarmCores::hold`]).
pub(crate) struct Hold<'a>(Option<&'a WarmCores>);

impl WarmCores {
    /// One idle-priority thread per CPU; none where idle priority is not available (see the
    /// module's notes).
    pub(crate) fn start() -> WarmCores {
        let shared = Arc::new(Shared { active: AtomicUsize::new(0), quit: AtomicBool::new(false), rounds: AtomicU64::new(0) });
        let mut threads = Vec::new();
        for cpu in warm_cpus() {
            let shared = Arc::clone(&shared);
            let (ready, started) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new().name(format!("mfn-warm-{cpu}")).spawn(move || {
                let idle = idle_priority() && pin(cpu);
                let _ = ready.send(idle);
                if idle {
                    spin(&shared);
                }
            });
            let Ok(handle) = spawned else { break };
            // A thread that could not lower its priority has already ended: no others either.
            if started.recv() != Ok(true) {
                let _ = handle.join();
                break;
            }
            threads.push(handle);
        }
        WarmCores { shared, threads }
    }

    /// Threads started (0 where idle priority is not available).
    pub(crate) fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Spins the threads until the returned guard drops.
    pub(crate) fn hold(&self) -> Hold<'_> {
        if self.threads.is_empty() {
            return Hold(None);
        }
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        for t in &self.threads {
            t.thread().unpark();
        }
        Hold(Some(self))
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Some(warm) = self.0 {
            warm.shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for WarmCores {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Parked while no run is in flight, busy while one is.
fn spin(shared: &Shared) {
    while !shared.quit.load(Ordering::Relaxed) {
        if shared.active.load(Ordering::Relaxed) == 0 {
            // An unpark between the load and here makes park return at once.
            std::thread::park();
            continue;
        }
        // Plain work, no `pause`: a hypervisor that sees a vCPU pause in a loop takes it for a
        // spinning lock and deschedules it, which is the halt this thread is here to prevent.
        for _ in 0..256 {
            std::hint::black_box(0u64);
        }
        shared.rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// Most CPUs kept warm: lavapipe's own thread pool has at most 16 threads, and on larger machines
/// busy idle cores would mostly cost the busy ones their turbo headroom.
const MAX_CPUS: usize = 16;

/// The CPUs to keep warm: all those the process may run on, or none where that is more than
/// [`MAX_CPUS`] or more than the process may use at once (a CPU quota, as in a container limited
/// to fewer CPUs than its host has: time spent spinning would count against it).
pub(crate) fn warm_cpus() -> Vec<usize> {
    let cpus = cpus();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    if cpus.len() > MAX_CPUS || usable < cpus.len() {
        return Vec::new();
    }
    cpus
}

/// The CPUs the process may run on.
#[cfg(target_os = "linux")]
fn cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (all zeroes is the empty set); sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Binds the calling thread to `cpu`: one warm thread a CPU, which the scheduler would not
/// otherwise guarantee for idle-priority threads.
#[cfg(target_os = "linux")]
fn pin(cpu: usize) -> bool {
    // SAFETY: as in `cpus`; sched_setaffinity reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Lowers the calling thread to `SCHED_IDLE`: it then runs only on a CPU with nothing else to run.
#[cfg(target_os = "linux")]
fn idle_priority() -> bool {
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid, initialised
    // sched_param; it changes nothing but this thread's scheduling class.
    let param = libc::sched_param { sched_priority: 0 };
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn idle_priority() -> bool {
    false
}

#[cfg(not(target_os = "linux"))]
fn pin(_cpu: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits up to 5 s for `rounds` to settle (no change over 50 ms) and returns it.
    fn settled(warm: &WarmCores) -> u64 {
        let end = Instant::now() + Duration::from_secs(5);
        let mut last = warm.shared.rounds.load(Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = warm.shared.rounds.load(Ordering::SeqCst);
            if now == last || Instant::now() > end {
                return now;
            }
            last = now;
        }
    }

    #[test]
    fn threads_spin_only_while_held_and_end_with_their_owner() {
        let warm = WarmCores::start();
        assert_eq!(warm.threads(), warm_cpus().len(), "one idle-priority thread per CPU");
        if warm.threads() == 0 {
            return;
        }
        let before = settled(&warm);
        {
            let _a = warm.hold();
            let _b = warm.hold();
            // Idle priority still gets a sliver of a busy CPU: they spin within seconds.
            let end = Instant::now() + Duration::from_secs(10);
            while warm.shared.rounds.load(Ordering::SeqCst) == before {
                assert!(Instant::now() < end, "no warm thread ran while held");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(warm.shared.active.load(Ordering::SeqCst), 0);
        let parked = settled(&warm);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(warm.shared.rounds.load(Ordering::SeqCst), parked, "threads kept spinning after the holds ended");
        drop(warm); // joins every thread: a hang here is a failure
    }
}
