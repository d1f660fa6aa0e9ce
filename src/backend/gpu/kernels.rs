//! The shader table, the pipeline cache and the command recorder.
//!
//! Every op becomes one or a few dispatches appended to a single compute
//! pass of a single command encoder; nothing reaches the GPU until a
//! download (or `Gpu::flush`) submits it. Each dispatch's parameters (shapes,
//! strides, flags) go into their own 256-byte slot of a uniform arena, staged
//! on the host and written with one `queue.write_buffer` per arena chunk just
//! before the submission that reads them. Slots are reused only after it.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::backend::BackendError;
use crate::config::Activation;

/// How a kernel sees one of its storage bindings (1, 2, ...; 0 is the uniform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}
use Access::{Read, ReadWrite as Rw};

/// One entry point of one shader file, the storage bindings it expects and
/// the values it gives the shader's pipeline-overridable constants.
pub(crate) struct Kernel {
    pub file: &'static str,
    pub entry: &'static str,
    /// The pipeline's name in the cache and in profiles: `entry`, plus the
    /// constants where they differ from the shader's defaults.
    pub name: &'static str,
    pub bindings: &'static [Access],
    pub constants: &'static [(&'static str, f64)],
}

const fn kernel(file: &'static str, entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel { file, entry, name: entry, bindings, constants: &[] }
}

/// Bindings 5 and 6 are A and B again, viewed as `array<vec4<f32>>`.
pub(crate) const MATMUL: Kernel = kernel("matmul", "main", &[Read, Read, Read, Rw, Read, Read]);
/// The same GEMM on 32x64 tiles (8 rows of invocations).
pub(crate) const MATMUL_32: Kernel = Kernel { name: "main 32x64", constants: &[("WG_ROWS", 8.0)], ..MATMUL };
pub(crate) const LAYER_NORM: Kernel = kernel("layer_norm", "main", &[Read, Read, Read, Read, Rw]);
const GN: &[Access] = &[Read, Read, Read, Rw, Rw, Rw];
pub(crate) const GN_STATS: Kernel = kernel("group_norm", "stats", GN);
pub(crate) const GN_FINALIZE: Kernel = kernel("group_norm", "finalize", GN);
pub(crate) const GN_APPLY: Kernel = kernel("group_norm", "apply", GN);
const EW: &[Access] = &[Read, Read, Rw];
pub(crate) const ACTIVATE: Kernel = kernel("elementwise", "activate", EW);
pub(crate) const ZERO_RANGE: Kernel = kernel("elementwise", "zero_range", EW);
pub(crate) const AXPY: Kernel = kernel("elementwise", "axpy", EW);
pub(crate) const AVG_POOL_ADD: Kernel = kernel("elementwise", "avg_pool_add", EW);
pub(crate) const UPSAMPLE: Kernel = kernel("elementwise", "upsample", EW);
pub(crate) const MASKED_MEAN: Kernel = kernel("masked_mean", "main", &[Read, Rw]);
const ATT: &[Access] = &[Read, Read, Read, Rw, Rw, Rw];
/// Binding 7 is qkv again, viewed as `array<vec4<f32>>`.
pub(crate) const ATTENTION: Kernel = kernel("attention", "main", &[Read, Read, Read, Rw, Rw, Rw, Read]);
pub(crate) const ATTENTION_WIDE: Kernel = kernel("attention", "wide", ATT);
pub(crate) const ATTENTION_PROBS: Kernel = kernel("attention", "probs", ATT);
pub(crate) const ATTENTION_MERGE: Kernel = kernel("attention_merge", "main", &[Read, Read, Rw, Rw]);

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

fn source(file: &str) -> Option<&'static str> {
    Some(match file {
        "matmul" => include_str!("../../../shaders/matmul.wgsl"),
        "layer_norm" => include_str!("../../../shaders/layer_norm.wgsl"),
        "group_norm" => include_str!("../../../shaders/group_norm.wgsl"),
        "elementwise" => include_str!("../../../shaders/elementwise.wgsl"),
        "masked_mean" => include_str!("../../../shaders/masked_mean.wgsl"),
        "attention" => include_str!("../../../shaders/attention.wgsl"),
        "attention_merge" => include_str!("../../../shaders/attention_merge.wgsl"),
        _ => return None,
    })
}

/// The activation code the shaders' `activate_value` switches on.
pub(crate) fn act_code(act: Option<Activation>) -> u32 {
    match act {
        None => 0,
        Some(Activation::Gelu) => 1,
        Some(Activation::GeluTanh) => 2,
        Some(Activation::Relu) => 3,
        Some(Activation::Selu) => 4,
        Some(Activation::Tanh) => 5,
        Some(Activation::Silu) => 6,
    }
}

// Uniform blocks, field for field the `Params` struct of each shader
// (`AttentionParams` in common.wgsl).

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_mode: u32,
    pub a_off: u32,
    pub lda: u32,
    pub a_rows: u32,
    pub a_item: u32,
    pub b_off: u32,
    pub b_sk: u32,
    pub b_sn: u32,
    pub c_off: u32,
    pub ldc: u32,
    pub zh: u32,
    pub a_sb: u32,
    pub a_sh: u32,
    pub b_sb: u32,
    pub b_sh: u32,
    pub c_sb: u32,
    pub c_sh: u32,
    pub has_bias: u32,
    pub bias_sh: u32,
    pub act: u32,
    pub alpha: f32,
    pub cv_len: u32,
    pub cv_stride: u32,
    pub cv_pad: u32,
    pub cv_cin: u32,
    pub cv_cin_g: u32,
    /// A's tile loads are aligned vec4s (set by `Gpu::matmul`).
    pub a_vec4: u32,
    /// B's tile loads are aligned vec4s (set by `Gpu::matmul`).
    pub b_vec4: u32,
    /// First row of this dispatch (set by `Gpu::matmul`, which splits a
    /// GEMM with more row tiles than a launch dimension allows).
    pub m_start: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct LayerNormParams {
    pub rows: u32,
    pub c: u32,
    pub has_residual: u32,
    pub eps: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct GroupNormParams {
    pub t: u32,
    pub c: u32,
    pub batch: u32,
    pub chunks: u32,
    pub eps: f32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct ElementwiseParams {
    pub count: u32,
    pub act: u32,
    pub start: u32,
    pub end: u32,
    pub weight: f32,
    pub accumulate: u32,
    pub c: u32,
    pub factor: u32,
    pub src_len: u32,
    pub dst_len: u32,
    pub pos_len: u32,
    pub keep: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct MaskedMeanParams {
    pub t: u32,
    pub c: u32,
    pub item: u32,
    pub frames: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct AttentionParams {
    pub t: u32,
    pub heads: u32,
    pub d: u32,
    pub hd: u32,
    pub two_span: u32,
    pub terms: u32,
    pub buckets: i32,
    pub max_pos: i32,
    pub span: i32,
    pub scale: f32,
    pub log_base: f32,
    pub item: u32,
    pub valid: u32,
    pub splits: u32,
    pub split_len: u32,
    pub _pad: u32,
}

/// Query rows per workgroup of `attention::main`; must match `FR` in attention.wgsl.
pub(crate) const ATT_ROWS: usize = 32;

/// Group-norm time chunk; must match `CHUNK` in group_norm.wgsl.
pub(crate) const GN_CHUNK: usize = 512;

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

const SLOT: u64 = 256;
const ARENA_CHUNK: u64 = 256 * SLOT;

/// Past this many cached bind groups the cache starts over.
const MAX_BIND_GROUPS: usize = 4096;

/// What a dispatch binds: its pipeline, its parameter slot (arena chunk,
/// offset, size) and its buffers, in binding order.
type BindKey = ((&'static str, &'static str), usize, u64, u64, Vec<wgpu::Buffer>);

/// Pipelines, the open encoder and pass, and the parameter arena.
#[derive(Default)]
pub(crate) struct Recorder {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<(&'static str, &'static str), Arc<Pipeline>>,
    // The pass is declared first so it drops (ends) before its encoder.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    arena: Vec<wgpu::Buffer>,
    slots_used: u64,
    /// The parameters of the slots used so far, not yet written to `arena`.
    staged: Vec<u8>,
    /// Bind groups reused across passes: a pass over the same length binds
    /// the same pooled buffers at the same parameter slots, and creating its
    /// ~145 bind groups took most of the host's time to record it.
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    /// `Pool::released` when `bind_groups` was last checked against it.
    pool_released: u64,
    /// Dispatches recorded since the last submission.
    pub dispatches: usize,
    /// Dispatches recorded since the device was opened.
    pub total_dispatches: u64,
    /// Per-dispatch timestamps, when the device was opened for profiling.
    pub profiler: Option<super::profile::Profiler>,
}

impl Recorder {
    pub fn with_profiler(profiler: Option<super::profile::Profiler>) -> Recorder {
        Recorder { profiler, ..Recorder::default() }
    }

    fn pipeline(&mut self, device: &wgpu::Device, k: &Kernel) -> Result<Arc<Pipeline>, BackendError> {
        if let Some(p) = self.pipelines.get(&(k.file, k.name)) {
            return Ok(p.clone());
        }
        if !self.modules.contains_key(k.file) {
            let text = source(k.file).ok_or_else(|| BackendError::Device(format!("no shader named {}", k.file)))?;
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(k.file),
                source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{text}").into()),
            };
            // Bounds and division checks stay; naga's loop bounding goes. It
            // adds a counter to every loop, which keeps the driver from
            // unrolling the short ones that index private arrays, and those
            // arrays then live in memory: on an H100 that made a 60 s pass
            // 1.9x slower (attention 3.3x; bench/README.md).
            let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
            // SAFETY: wgpu asks that no shader loop forever. Ours are our own
            // `for` loops with a constant positive step, up to a bound taken
            // from a buffer dimension, and no tensor holds 2^30 f32s (the pool
            // caps them at 4 GiB), so no counter wraps past its bound.
            let module = unsafe { device.create_shader_module_trusted(desc, checks) };
            self.modules.insert(k.file, module);
        }
        let module = &self.modules[k.file];
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        }];
        for (i, access) in k.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *access == Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(k.entry), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(k.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: k.constants, ..Default::default() },
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines.insert((k.file, k.name), p.clone());
        Ok(p)
    }

    /// A uniform slot for `params`. The bytes wait in `staged` and reach the
    /// arena in one `write_buffer` per chunk at submission (`take_encoder`):
    /// wgpu makes a staging buffer for every `write_buffer`, which cost one per
    /// dispatch.
    fn params_slot(&mut self, device: &wgpu::Device, params: &[u8]) -> (usize, u64) {
        let per_chunk = ARENA_CHUNK / SLOT;
        let (chunk, slot) = ((self.slots_used / per_chunk) as usize, self.slots_used % per_chunk);
        if chunk == self.arena.len() {
            self.arena.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: ARENA_CHUNK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let start = (self.slots_used * SLOT) as usize;
        self.slots_used += 1;
        self.staged.resize(start + SLOT as usize, 0);
        self.staged[start..start + params.len()].copy_from_slice(params);
        (chunk, slot * SLOT)
    }

    /// The bind group of one dispatch, from the cache when an earlier pass
    /// bound the same things.
    #[allow(clippy::too_many_arguments)]
    fn bind_group(&mut self, device: &wgpu::Device, k: &Kernel, pipeline: &Pipeline, chunk: usize, offset: u64, size: u64, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let key: BindKey = ((k.file, k.name), chunk, offset, size, buffers.iter().map(|b| (*b).clone()).collect());
        if let Some(group) = self.bind_groups.get(&key) {
            return group.clone();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.arena[chunk], offset, size: NonZeroU64::new(size) }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(k.entry), layout: &pipeline.layout, entries: &entries });
        if self.bind_groups.len() >= MAX_BIND_GROUPS {
            self.bind_groups.clear();
        }
        self.bind_groups.insert(key, group.clone());
        group
    }

    /// Forgets the cached bind groups once the pool has let buffers go, so
    /// the cache keeps a released buffer alive only until the next dispatch
    /// (memory a pass allocated anyway; it does not accumulate across passes).
    pub fn forget_bind_groups_after(&mut self, pool_released: u64) {
        if pool_released != self.pool_released {
            self.bind_groups.clear();
            self.pool_released = pool_released;
        }
    }

    /// Appends one dispatch of `k` to the open compute pass.
    pub fn dispatch(
        &mut self,
        device: &wgpu::Device,
        k: &Kernel,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<(), BackendError> {
        debug_assert_eq!(buffers.len(), k.bindings.len(), "{}::{}", k.file, k.entry);
        debug_assert!(params.len() as u64 <= SLOT && params.len().is_multiple_of(16));
        if groups.contains(&0) {
            return Ok(());
        }
        let pipeline = self.pipeline(device, k)?;
        let (chunk, offset) = self.params_slot(device, params);
        let bind_group = self.bind_group(device, k, &pipeline, chunk, offset, params.len() as u64, buffers);
        self.dispatches += 1;
        self.total_dispatches += 1;
        if let Some(profiler) = self.profiler.as_mut() {
            // Profiling: a pass of its own, timestamped at both ends.
            let encoder = self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sewd") }));
            let timestamp_writes = Some(profiler.next(device, k, params));
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(k.entry), timestamp_writes });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            return Ok(());
        }
        if self.pass.is_none() {
            let encoder = self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sewd") }));
            self.pass = Some(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sewd"), timestamp_writes: None }).forget_lifetime());
        }
        let pass = self.pass.as_mut().expect("just opened");
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }

    /// Ends the open pass and hands over the encoder (a new one if none is open).
    /// Also writes the staged parameters, which the queue applies before this
    /// encoder's commands when it is submitted.
    pub fn take_encoder(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) -> wgpu::CommandEncoder {
        self.pass = None;
        for (chunk, bytes) in self.staged.chunks(ARENA_CHUNK as usize).enumerate() {
            queue.write_buffer(&self.arena[chunk], 0, bytes);
        }
        self.staged.clear();
        self.encoder.take().unwrap_or_else(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sewd") }))
    }

    /// When profiling: resolves the recorded dispatches' timestamps into
    /// `encoder`, to hand to `Profiler::submitted` after the submission.
    pub fn resolve_timestamps(&mut self, device: &wgpu::Device, encoder: &mut wgpu::CommandEncoder) -> Option<super::profile::Batch> {
        self.profiler.as_mut()?.resolve(device, encoder)
    }

    /// Called after a submission: the arena's slots are free again.
    pub fn submitted(&mut self) {
        self.slots_used = 0;
        self.dispatches = 0;
    }
}
