//! Per-dispatch GPU timing with timestamp queries (`Gpu::new_profiled`).
//!
//! When profiling is on, every dispatch gets its own compute pass whose
//! `timestamp_writes` mark its beginning and end (only
//! `Features::TIMESTAMP_QUERY` is needed, not the inside-passes one). Query
//! sets of `QUERY_SET_MAX_QUERIES` hold 2048 dispatches each; more are
//! allocated as a submission needs them and reused by later ones. At each
//! submission the used queries are resolved and copied to a mapped buffer in
//! the same encoder; once the GPU is done, the ticks are turned into
//! nanoseconds (`Queue::get_timestamp_period`) and summed per label.
//! Native only: on the web no device is opened for profiling.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

use std::collections::HashMap;

use super::kernels::{Kernel, MatmulParams, MATMUL};
use super::oneshot;

/// Total GPU time of one kernel (or one use of the matmul kernel).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// `file::entry` of the shader, e.g. `layer_norm::main`; the matmul
    /// kernel is split by use: `matmul::main [linear]`, `[attention terms]`,
    /// `[conv, feature encoder]` (overlapping-window GEMM, a_mode 0),
    /// `[conv, positional]` (grouped, padded conv, a_mode 1).
    pub label: String,
    /// Dispatches timed.
    pub dispatches: u64,
    /// Sum of their GPU durations, in milliseconds.
    pub ms: f64,
}

/// `(file, entry, use)`: what one dispatch is filed under.
type Label = (&'static str, &'static str, &'static str);

const PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// What the matmul kernel is doing, from its parameters: only the conv
/// callers set `a_item` (the input's per-item stride) and only the grouped,
/// padded conv uses `a_mode` 1; the attention terms read B transposed
/// (`b_sk == 1`), a linear layer's B is n-contiguous (`b_sn == 1`).
fn matmul_use(params: &[u8]) -> &'static str {
    if params.len() != std::mem::size_of::<MatmulParams>() {
        return "";
    }
    let p: MatmulParams = bytemuck::pod_read_unaligned(params);
    if p.a_mode == 1 {
        "conv, positional"
    } else if p.a_item != 0 {
        "conv, feature encoder"
    } else if p.b_sn != 1 {
        "attention terms"
    } else {
        "linear"
    }
}

/// Submitted timestamps waiting for the GPU.
struct Pending {
    staging: wgpu::Buffer,
    labels: Vec<Label>,
    mapped: oneshot::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

/// Resolved, not yet mapped: handed from the recorder to the code that submits.
pub(crate) struct Batch {
    staging: wgpu::Buffer,
    labels: Vec<Label>,
}

pub(crate) struct Profiler {
    period_ns: f64,
    sets: Vec<wgpu::QuerySet>,
    /// One per dispatch recorded since the last submission, in query order.
    labels: Vec<Label>,
    pending: Vec<Pending>,
    totals: HashMap<Label, (u64, f64)>,
    /// The first failure to read timestamps back, reported by `take`.
    error: Option<String>,
}

impl Profiler {
    pub fn new(queue: &wgpu::Queue) -> Profiler {
        Profiler {
            period_ns: queue.get_timestamp_period() as f64,
            sets: Vec::new(),
            labels: Vec::new(),
            pending: Vec::new(),
            totals: HashMap::new(),
            error: None,
        }
    }

    /// The timestamp writes for the next dispatch, of kernel `k` with `params`.
    pub fn next(&mut self, device: &wgpu::Device, k: &Kernel, params: &[u8]) -> wgpu::ComputePassTimestampWrites<'_> {
        let n = self.labels.len() as u32;
        let (set, index) = ((n / PER_SET) as usize, n % PER_SET * 2);
        if set == self.sets.len() {
            self.sets.push(device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("sewd timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: PER_SET * 2,
            }));
        }
        let is_matmul = k.file == MATMUL.file && k.entry == MATMUL.entry;
        self.labels.push((k.file, k.name, if is_matmul { matmul_use(params) } else { "" }));
        wgpu::ComputePassTimestampWrites {
            query_set: &self.sets[set],
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: Some(index + 1),
        }
    }

    /// Resolves this submission's queries and copies them to a mappable
    /// buffer, in `encoder`; `None` when nothing was timed.
    pub fn resolve(&mut self, device: &wgpu::Device, encoder: &mut wgpu::CommandEncoder) -> Option<Batch> {
        if self.labels.is_empty() {
            return None;
        }
        let n = self.labels.len() as u64;
        let bytes = n * 2 * wgpu::QUERY_SIZE as u64;
        let buffer = |usage, label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage, mapped_at_creation: false });
        let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, "timestamps resolved");
        let staging = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "timestamps readback");
        for (s, set) in self.sets.iter().enumerate() {
            let first = s as u64 * PER_SET as u64;
            if first >= n {
                break;
            }
            let count = (n - first).min(PER_SET as u64) as u32;
            // Each set's slice starts at a multiple of 4096 · 8 bytes, well aligned.
            encoder.resolve_query_set(set, 0..count * 2, &resolved, first * 2 * wgpu::QUERY_SIZE as u64);
        }
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        Some(Batch { staging, labels: std::mem::take(&mut self.labels) })
    }

    /// After the submission holding `batch`: asks for its mapping.
    pub fn submitted(&mut self, batch: Batch) {
        let (tx, rx) = oneshot::channel();
        batch.staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        self.pending.push(Pending { staging: batch.staging, labels: batch.labels, mapped: rx });
    }

    /// Waits up to `timeout` in all for the pending batches' map callbacks,
    /// which another thread's poll of the shared device may be running.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_pending(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        for p in &self.pending {
            p.mapped.wait(deadline.saturating_duration_since(std::time::Instant::now()));
        }
    }

    /// Adds up every batch the GPU has finished (after a `device.poll`);
    /// the others stay pending.
    pub fn collect(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let Some(mapped) = self.pending[i].mapped.try_take() else {
                i += 1;
                continue;
            };
            let p = self.pending.swap_remove(i);
            if let Err(e) = mapped {
                self.error.get_or_insert(format!("reading the GPU timestamps back failed: {e}"));
                continue;
            }
            match p.staging.slice(..).get_mapped_range() {
                Ok(view) => {
                    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&view);
                    for (label, t) in p.labels.iter().zip(ticks.chunks_exact(2)) {
                        let ns = t[1].saturating_sub(t[0]) as f64 * self.period_ns;
                        let e = self.totals.entry(*label).or_default();
                        e.0 += 1;
                        e.1 += ns / 1e6;
                    }
                }
                Err(e) => {
                    self.error.get_or_insert(format!("reading the GPU timestamps back failed: {e}"));
                }
            }
            p.staging.unmap();
        }
    }

    /// Batches still waiting for the GPU.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The totals so far, slowest first, and a fresh start.
    pub fn take(&mut self) -> Result<Vec<KernelTime>, String> {
        if let Some(e) = self.error.take() {
            self.totals.clear();
            return Err(e);
        }
        let mut out: Vec<KernelTime> = self
            .totals
            .drain()
            .map(|((file, entry, what), (dispatches, ms))| KernelTime {
                label: if what.is_empty() { format!("{file}::{entry}") } else { format!("{file}::{entry} [{what}]") },
                dispatches,
                ms,
            })
            .collect();
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.label.cmp(&b.label)));
        Ok(out)
    }
}
