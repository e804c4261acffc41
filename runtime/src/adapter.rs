//! Adapter selection: by backend and by (part of) the adapter's name, from arguments or the
//! environment variables `MFN_BACKEND` and `MFN_ADAPTER`.

use crate::error::{Result, RuntimeError};

/// Which adapter a session should run on. Empty fields mean "any"; [`AdapterOptions::from_env`]
/// fills them from `MFN_BACKEND` (vulkan, metal, dx12, gl) and `MFN_ADAPTER` (a case-insensitive
/// part of the adapter's name).
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// The backend: `vulkan`, `metal`, `dx12` or `gl`.
    pub backend: Option<String>,
    /// A case-insensitive part of the adapter's name, e.g. `llvmpipe`.
    pub name: Option<String>,
}

impl AdapterOptions {
    /// From `MFN_BACKEND` and `MFN_ADAPTER` (unset or empty: any).
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        AdapterOptions { backend: var("MFN_BACKEND"), name: var("MFN_ADAPTER") }
    }

    fn backends(&self) -> Result<wgpu::Backends> {
        Ok(match self.backend.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => wgpu::Backends::all(),
            Some("vulkan" | "vk") => wgpu::Backends::VULKAN,
            Some("metal" | "mtl") => wgpu::Backends::METAL,
            Some("dx12" | "d3d12") => wgpu::Backends::DX12,
            Some("gl" | "gles" | "opengl") => wgpu::Backends::GL,
            Some(other) => return Err(RuntimeError::UnknownBackend(other.into())),
        })
    }
}

pub(crate) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu finds, with its info.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = instance(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())).iter().map(wgpu::Adapter::get_info).collect()
}

fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The adapter that matches `options`, preferring discrete over integrated over software GPUs,
/// and Vulkan/Metal/DX12 over GL.
pub fn select_adapter(options: &AdapterOptions) -> Result<wgpu::Adapter> {
    let backends = options.backends()?;
    let instance = instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let available: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
    if let Some(name) = &options.name {
        let needle = name.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
    }
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (rank(&info), info.backend == wgpu::Backend::Gl)
    });
    adapters.into_iter().next().ok_or_else(|| {
        let mut filter = String::new();
        if let Some(b) = &options.backend {
            filter.push_str(&format!(" for backend '{b}'"));
        }
        if let Some(n) = &options.name {
            filter.push_str(&format!(" named like '{n}'"));
        }
        let available = if available.is_empty() { "none".into() } else { available.join("; ") };
        RuntimeError::NoAdapter { filter, available }
    })
}

/// A one-line description: name, backend, type and driver.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = [info.driver.as_str(), info.driver_info.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    format!("{} ({:?}, {:?}{}{})", info.name, info.backend, info.device_type, if driver.is_empty() { "" } else { ", " }, driver)
}
