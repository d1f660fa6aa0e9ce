//! Adapter and device: which backends, which limits, where errors go.

use std::sync::{Arc, Mutex};

use crate::backend::BackendError;

pub(crate) struct Opened {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: String,
    /// The first uncaptured device error or device loss, if any.
    pub errors: Arc<Mutex<Option<String>>>,
}

/// Native: Vulkan (lavapipe on machines without a GPU), Metal, DX12, GL.
/// `WGPU_BACKEND` (e.g. `vulkan`) overrides. Web: the browser's WebGPU only.
fn backends() -> wgpu::Backends {
    let default = if cfg!(target_arch = "wasm32") {
        wgpu::Backends::BROWSER_WEBGPU
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12 | wgpu::Backends::GL
    };
    default.with_env()
}

/// `browser_limits`: ask for WebGPU's default limits only (128 MiB storage
/// bindings, 65535 workgroups per dimension), what every browser grants.
/// `timestamps`: require `Features::TIMESTAMP_QUERY` (per-kernel profiling).
pub(crate) async fn open(browser_limits: bool, timestamps: bool) -> Result<Opened, BackendError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor { backends: backends(), ..wgpu::InstanceDescriptor::new_without_display_handle() });
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            BackendError::Device(format!(
                "no GPU adapter found (WebGPU/Vulkan/Metal/DX12): {e}. In a browser, use one with WebGPU enabled; \
                 natively, install a GPU driver (on Linux without a GPU, Mesa's lavapipe: `mesa-vulkan-drivers`) \
                 or use the CPU backend"
            ))
        })?;
    let info = adapter.get_info();
    let have = adapter.limits();
    // WebGPU's defaults, with the limits that decide the longest clip raised
    // to whatever the adapter offers, then clamped to it throughout.
    let mut want = wgpu::Limits::default();
    if !browser_limits {
        want.max_storage_buffer_binding_size = have.max_storage_buffer_binding_size;
        want.max_buffer_size = have.max_buffer_size;
        want.max_compute_workgroups_per_dimension = have.max_compute_workgroups_per_dimension;
    }
    let want = want.or_worse_values_from(&have);
    let features = if timestamps { wgpu::Features::TIMESTAMP_QUERY } else { wgpu::Features::empty() };
    if !adapter.features().contains(features) {
        return Err(BackendError::Device(format!(
            "the GPU adapter {} ({:?}) does not support the timestamp queries (wgpu::Features::TIMESTAMP_QUERY) \
             that per-kernel profiling needs",
            info.name, info.backend
        )));
    }
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("sewd"),
            required_features: features,
            required_limits: want,
            experimental_features: Default::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: Default::default(),
        })
        .await
        .map_err(|e| BackendError::Device(format!("the GPU adapter {} refused a device: {e}", info.name)))?;

    let errors: Arc<Mutex<Option<String>>> = Arc::default();
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        let text = match &e {
            wgpu::Error::OutOfMemory { .. } => format!("the GPU ran out of memory: {e}"),
            _ => format!("GPU error: {e}"),
        };
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert(text);
        }
    }));
    let sink = errors.clone();
    device.set_device_lost_callback(move |reason, message| {
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert(format!("the GPU device was lost ({reason:?}): {message}"));
        }
    });
    Ok(Opened { device, queue, adapter: format!("{} ({:?})", info.name, info.backend), errors })
}
