//! Error scopes around GPU work. wgpu's default handler panics on an error no scope catches, so
//! every piece of work the runtime records runs inside [`Scopes`]: validation, out-of-memory and
//! internal errors all come back as a [`RuntimeError`] of the call that caused them.

use crate::error::RuntimeError;

/// One error scope of each filter, pushed together and popped together.
pub(crate) struct Scopes(Vec<wgpu::ErrorScopeGuard>);

impl Scopes {
    /// Pushes scopes catching out-of-memory, internal and validation errors on `device`.
    pub fn push(device: &wgpu::Device) -> Scopes {
        Scopes([wgpu::ErrorFilter::OutOfMemory, wgpu::ErrorFilter::Internal, wgpu::ErrorFilter::Validation].map(|f| device.push_error_scope(f)).into())
    }

    /// Pops every scope, innermost first, and returns the first error any of them caught.
    pub fn pop(mut self) -> Option<wgpu::Error> {
        let mut first = None;
        while let Some(guard) = self.0.pop() {
            first = first.or(pollster::block_on(guard.pop()));
        }
        first
    }

    /// Pops every scope; what they caught, as the error of `stage`.
    pub fn check(self, stage: &'static str) -> Result<(), RuntimeError> {
        self.pop().map_or(Ok(()), |e| Err(classify(stage, &e)))
    }
}

impl Drop for Scopes {
    /// Scopes left on an early return are popped innermost first (wgpu requires that order; a
    /// `Vec` drops its guards outermost first) and what they caught is dropped with them.
    fn drop(&mut self) {
        while let Some(guard) = self.0.pop() {
            drop(guard);
        }
    }
}

/// A wgpu error caught during `stage` as an error of our API.
pub(crate) fn classify(stage: &'static str, e: &wgpu::Error) -> RuntimeError {
    match e {
        wgpu::Error::OutOfMemory { .. } => RuntimeError::OutOfMemory { stage, message: e.to_string() },
        _ => RuntimeError::Gpu { stage, message: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_its_own_error_and_the_rest_gpu_errors() {
        let oom = wgpu::Error::OutOfMemory { source: "no room".into() };
        let e = classify("run", &oom);
        assert!(matches!(e, RuntimeError::OutOfMemory { stage: "run", .. }), "{e:?}");
        assert!(e.to_string().contains("lower the batch"), "{e}");
        let internal = wgpu::Error::Internal { source: "driver".into(), description: "driver failure".into() };
        assert!(matches!(classify("run", &internal), RuntimeError::Gpu { stage: "run", .. }));
    }
}
