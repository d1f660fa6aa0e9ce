//! Storage buffers recycled across ops and forward passes.
//!
//! Sizes are rounded up to a size class (8 classes per power of two) so a
//! buffer freed by one clip length serves the next. A tensor's buffer goes
//! back to the pool when the tensor drops. That is safe even while commands
//! that read it are still being recorded: the GPU runs one submission's
//! commands in order, so any later write to the recycled buffer comes after
//! those reads. A queue write into a recycled buffer runs before the pending
//! commands, though, so `Gpu::upload` recycles only when none are pending.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::BackendError;

/// Free buffers kept beyond this many bytes are released.
const MAX_FREE_BYTES: u64 = 512 << 20;
/// Read-back (MAP_READ) buffers kept for the next download: a forward pass
/// reads back one or a few outputs.
const MAX_FREE_READBACKS: usize = 4;
const MAX_FREE_READBACK_BYTES: u64 = 64 << 20;

pub(crate) struct Pool {
    device: wgpu::Device,
    /// The device's `max_storage_buffer_binding_size`: no tensor may exceed it.
    max_binding: u64,
    free: Mutex<Free>,
    /// Unmapped read-back buffers, each of a size class.
    readbacks: Mutex<Vec<wgpu::Buffer>>,
    /// Buffers let go (past `MAX_FREE_BYTES`): cached bind groups naming
    /// them would keep them alive, so the recorder drops its cache when this moves.
    released: AtomicU64,
    /// Buffers created, for `Gpu::buffers_created`.
    created: AtomicU64,
}

#[derive(Default)]
struct Free {
    by_size: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// A pooled storage buffer; returns to the pool on drop.
pub(crate) struct PoolBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Arc<Pool>,
}

impl PoolBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }
}

impl Drop for PoolBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.give_back(b);
        }
    }
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Pool {
    pub fn new(device: wgpu::Device, max_binding: u64) -> Arc<Self> {
        // Whole 16-byte units (see `class`), so rounding never passes the limit.
        Arc::new(Pool { device, max_binding: max_binding & !15, free: Mutex::new(Free::default()), readbacks: Mutex::default(), released: AtomicU64::new(0), created: AtomicU64::new(0) })
    }

    /// The allocation size for `bytes`: at least 16, rounded up to a size class
    /// but never past the binding limit. Always a multiple of 16 bytes: the
    /// matmul shader also views its inputs as `array<vec4<f32>>`, whose
    /// length WebGPU truncates to whole 16-byte elements.
    fn class(&self, bytes: u64) -> u64 {
        let bytes = bytes.max(16);
        let step = (bytes.next_power_of_two() / 8).max(16);
        let rounded = bytes.div_ceil(step) * step;
        if rounded <= self.max_binding { rounded } else { bytes.div_ceil(16) * 16 }
    }

    fn check(&self, bytes: u64, what: &str) -> Result<(), BackendError> {
        if bytes > self.max_binding {
            return Err(BackendError::Limit(format!(
                "{what} needs a {} MiB buffer, over this GPU's max_storage_buffer_binding_size of {} MiB; use a shorter clip or a smaller batch",
                bytes >> 20,
                self.max_binding >> 20
            )));
        }
        Ok(())
    }

    /// An uninitialized buffer of at least `bytes`.
    pub fn take(self: &Arc<Self>, bytes: u64, what: &str) -> Result<PoolBuffer, BackendError> {
        if let Some(b) = self.take_free(bytes, what)? {
            return Ok(b);
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(what), size: self.class(bytes), usage: USAGE, mapped_at_creation: false });
        Ok(PoolBuffer { buffer: Some(buffer), pool: self.clone() })
    }

    /// A free buffer of at least `bytes`, if the pool holds one of its size class.
    pub fn take_free(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Option<PoolBuffer>, BackendError> {
        self.check(bytes, what)?;
        let size = self.class(bytes);
        let mut free = self.free.lock().map_err(|_| poisoned())?;
        let buffer = free.by_size.get_mut(&size).and_then(Vec::pop);
        if buffer.is_some() {
            free.bytes -= size;
        }
        Ok(buffer.map(|b| PoolBuffer { buffer: Some(b), pool: self.clone() }))
    }

    /// A read-back buffer of at least `bytes`: a free one of that size class,
    /// or a new one. Hand it back with `give_back_readback` once unmapped.
    pub fn take_readback(&self, bytes: u64) -> wgpu::Buffer {
        let size = self.class(bytes);
        if let Ok(mut free) = self.readbacks.lock() {
            if let Some(i) = free.iter().position(|b| b.size() == size) {
                return free.swap_remove(i);
            }
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("readback"), size, usage, mapped_at_creation: false })
    }

    pub fn give_back_readback(&self, buffer: wgpu::Buffer) {
        if let Ok(mut free) = self.readbacks.lock() {
            let bytes: u64 = free.iter().map(wgpu::Buffer::size).sum();
            if free.len() < MAX_FREE_READBACKS && bytes + buffer.size() <= MAX_FREE_READBACK_BYTES {
                free.push(buffer);
            }
        }
    }

    /// How many buffers (storage and read-back) the pool has created since it was made.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// How many buffers the pool has let go since it was made.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    /// A fresh buffer holding `data`.
    pub fn upload(self: &Arc<Self>, data: &[u8], what: &str) -> Result<PoolBuffer, BackendError> {
        self.check(data.len() as u64, what)?;
        if data.is_empty() {
            return self.take(0, what);
        }
        let size = self.class(data.len() as u64);
        self.created.fetch_add(1, Ordering::Relaxed);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(what), size, usage: USAGE, mapped_at_creation: true });
        {
            let mut view = buffer.slice(..data.len() as u64).get_mapped_range_mut().map_err(|e| BackendError::Device(format!("{what}: {e}")))?;
            view.copy_from_slice(data);
        }
        buffer.unmap();
        Ok(PoolBuffer { buffer: Some(buffer), pool: self.clone() })
    }

    fn give_back(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        if let Ok(mut free) = self.free.lock() {
            if free.bytes + size <= MAX_FREE_BYTES {
                free.bytes += size;
                free.by_size.entry(size).or_default().push(buffer);
                return;
            }
        }
        self.released.fetch_add(1, Ordering::Relaxed);
    }
}

fn poisoned() -> BackendError {
    BackendError::Device("the GPU buffer pool was poisoned by an earlier panic".into())
}
