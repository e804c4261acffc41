//! Telling a lost device from another failure: the loss callback of a session's own device, or
//! a probe of a host's.

use std::sync::{mpsc, Arc, Mutex};

use crate::error::RuntimeError;
use crate::scope::Scopes;

/// Why the device was lost, where a loss callback recorded it.
pub(super) fn reason(lost: &Mutex<Option<String>>) -> Option<String> {
    lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether `device` is lost, asked after a failure: a lost device raises no errors (WebGPU makes
/// its work silently invalid), but mapping a fresh buffer fails only there. With
/// `PollType::Poll` it never blocks, and a map not yet answered counts as not lost.
fn probe(device: &wgpu::Device, poll: wgpu::PollType) -> Option<String> {
    let scopes = Scopes::push(device);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some("mfn probe"), size: 16, usage: wgpu::BufferUsages::MAP_READ, mapped_at_creation: false });
    let (tx, rx) = mpsc::channel();
    buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    let polled = device.poll(poll);
    let mapped = rx.try_recv();
    scopes.pop();
    match (polled, mapped) {
        (Ok(_), Ok(Ok(()))) | (Ok(_), Err(mpsc::TryRecvError::Empty)) => None,
        (polled, mapped) => Some(format!("a fresh buffer cannot be mapped ({polled:?}, {mapped:?})")),
    }
}

/// A session's device, adapter name and loss record, for errors raised after the call that
/// recorded the work (a [`crate::ReadbackHandle`]).
pub(crate) struct LossWatch {
    pub(super) device: wgpu::Device,
    pub(super) adapter: String,
    pub(super) lost: Arc<Mutex<Option<String>>>,
}

impl LossWatch {
    /// `e` as [`RuntimeError::DeviceLost`] where the device is lost (known, or found by a probe
    /// that never blocks), else as it is.
    pub(crate) fn explain(&self, e: RuntimeError) -> RuntimeError {
        explain_loss(&self.device, &self.adapter, &self.lost, wgpu::PollType::Poll, e)
    }
}

/// `e`, a failure on `device`, as [`RuntimeError::DeviceLost`] where the device is lost: known
/// from its loss callback (`lost`), or found by a probe (the host's device) polling with `poll`.
pub(super) fn explain_loss(device: &wgpu::Device, adapter: &str, lost: &Mutex<Option<String>>, poll: wgpu::PollType, e: RuntimeError) -> RuntimeError {
    match reason(lost).or_else(|| probe(device, poll)) {
        Some(message) => RuntimeError::DeviceLost { adapter: adapter.to_owned(), message: format!("{message}; the call failed with: {e}") },
        None => e,
    }
}
