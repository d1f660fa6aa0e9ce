//! The wgpu backend: WebGPU in the browser, Vulkan/Metal/DX12/GL natively.
//!
//! Ops only record: each appends dispatches to one compute pass of one
//! command encoder (see `kernels::Recorder`). A download ends the pass,
//! copies the tensor to a staging buffer, submits everything at once and
//! maps the copy, so a forward pass is one submission and one readback.
//! Shaders live in `shaders/*.wgsl`, one file per op family, every shape and
//! stride in a uniform; pipelines are built on first use and cached.
//! Weights are uploaded once; activations come from a buffer pool.

mod attention;
mod device;
mod kernels;
mod oneshot;
mod pool;
mod profile;

use std::sync::{Arc, Mutex, MutexGuard};

use bytemuck::Pod;

use super::{check_weight, conv_weight_as_gemm, shape_err, AttentionSpec, Backend, BackendError, ConvSpec};
use crate::config::Activation;
use crate::weights::TensorData;
use kernels::*;
use pool::{Pool, PoolBuffer};
pub use profile::KernelTime;

/// Below this many 64x64 workgroups a GEMM takes 32x64 tiles instead.
const MATMUL_SMALL_GRID: usize = 256;

/// How long a native caller waits, after the GPU is idle, for a map callback
/// that another thread's poll may be running.
#[cfg(not(target_arch = "wasm32"))]
const CALLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A tensor in GPU memory: row-major f32, shape kept on the host.
///
/// A linear weight from `prepare_linear` has shape `[in, out]` (transposed);
/// a conv weight from `prepare_conv` has `[groups, kernel·in/groups, out/groups]`.
pub struct GpuTensor {
    shape: Vec<usize>,
    buf: PoolBuffer,
}

impl GpuTensor {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
    /// `(batch, time, channels)` of a rank-3 activation.
    fn btc(&self, op: &'static str) -> Result<(usize, usize, usize), BackendError> {
        match self.shape[..] {
            [b, t, c] => Ok((b, t, c)),
            _ => Err(shape_err(op, format!("expected [batch, time, channels], got {:?}", self.shape))),
        }
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.shape)
    }
}

/// The wgpu backend: one device and queue, a buffer pool, and a recorder
/// that batches dispatches until something is read back.
///
/// Device errors are sticky: after the first one (out of memory, a lost
/// device) every later call returns it, because buffers the failed work
/// touched may be invalid and would be recycled by the pool. Open a new
/// `Gpu` to go on (the browser API falls back to the CPU instead).
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    max_groups: u32,
    pool: Arc<Pool>,
    recorder: Mutex<Recorder>,
    errors: Arc<Mutex<Option<String>>>,
    /// Bound where a kernel's optional input is absent (read-only slots).
    dummy: wgpu::Buffer,
    /// The same for read-write slots (one buffer may not be bound both ways).
    dummy_rw: wgpu::Buffer,
}

/// A submitted copy waiting to be mapped.
struct Readback {
    /// From the pool's read-back buffers; `bytes` of it hold the tensor.
    staging: wgpu::Buffer,
    bytes: u64,
    shape: Vec<usize>,
    mapped: oneshot::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

fn device_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Device(e.to_string())
}

fn u32_of(v: usize, what: &str) -> Result<u32, BackendError> {
    u32::try_from(v).map_err(|_| BackendError::Limit(format!("{what} = {v} does not fit the GPU's 32-bit indexing")))
}

impl Gpu {
    /// Opens the default adapter, blocking until the device is ready.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Gpu, BackendError> {
        pollster::block_on(Self::new_async())
    }

    /// Opens the default adapter with WebGPU's default limits only, to check
    /// natively that a workload fits what every browser grants.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_with_browser_limits() -> Result<Gpu, BackendError> {
        pollster::block_on(Self::open(true, false))
    }

    /// Opens the default adapter with per-kernel GPU timing: every dispatch
    /// gets its own timestamped compute pass (a little slower than
    /// [`Gpu::new`]); read the totals with [`Gpu::take_profile`]. Fails when
    /// the adapter has no `wgpu::Features::TIMESTAMP_QUERY`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_profiled() -> Result<Gpu, BackendError> {
        pollster::block_on(Self::open(false, true))
    }

    /// Opens the default adapter (the only way on the web, where it is async).
    pub async fn new_async() -> Result<Gpu, BackendError> {
        Self::open(false, false).await
    }

    async fn open(browser_limits: bool, profile: bool) -> Result<Gpu, BackendError> {
        let opened = device::open(browser_limits, profile).await?;
        let limits = opened.device.limits();
        // Shaders index f32s with u32s (and rely on it: see kernels.rs's SAFETY
        // note on loops), so no tensor takes more than 4 GiB whatever the GPU allows.
        let max_tensor = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(u32::MAX as u64);
        let pool = Pool::new(opened.device.clone(), max_tensor);
        let storage = |rw: bool| {
            opened.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(if rw { "dummy_rw" } else { "dummy" }),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Gpu {
            dummy: storage(false),
            dummy_rw: storage(true),
            max_groups: limits.max_compute_workgroups_per_dimension,
            adapter: opened.adapter,
            errors: opened.errors,
            pool,
            recorder: Mutex::new(Recorder::with_profiler(profile.then(|| profile::Profiler::new(&opened.queue)))),
            queue: opened.queue,
            device: opened.device,
        })
    }

    /// Lowers the workgroups allowed per launch dimension, so that tests can
    /// reach the split and folded launches that need millions of rows at
    /// the real limit (65535).
    #[doc(hidden)]
    pub fn limit_workgroups_for_tests(&mut self, max: u32) {
        self.max_groups = max.clamp(1, self.max_groups);
    }

    /// The device's `(max_storage_buffer_binding_size, max_compute_workgroups_per_dimension)`.
    pub fn limits(&self) -> (u64, u32) {
        let l = self.device.limits();
        (l.max_storage_buffer_binding_size, l.max_compute_workgroups_per_dimension)
    }

    /// The adapter's name and API, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)".
    pub fn adapter_name(&self) -> &str {
        &self.adapter
    }

    /// Submits the recorded work without reading anything back.
    pub fn flush(&self) -> Result<(), BackendError> {
        let mut rec = self.recorder()?;
        if rec.dispatches > 0 {
            let mut encoder = rec.take_encoder(&self.device, &self.queue);
            let timestamps = rec.resolve_timestamps(&self.device, &mut encoder);
            self.queue.submit([encoder.finish()]);
            rec.submitted();
            if let (Some(p), Some(ts)) = (rec.profiler.as_mut(), timestamps) {
                p.submitted(ts);
            }
        }
        drop(rec);
        self.check_errors()
    }

    /// Buffers (storage and read-back) created since the device was opened.
    /// Repeated passes over one length recycle theirs, so this stops growing
    /// after the first.
    pub fn buffers_created(&self) -> u64 {
        self.pool.created()
    }

    /// Dispatches recorded since the device was opened (empty launches are
    /// not dispatched and not counted).
    pub fn dispatch_count(&self) -> u64 {
        self.recorder.lock().map_or(0, |r| r.total_dispatches)
    }

    /// The GPU time of every dispatch submitted since the last call, summed
    /// per kernel, slowest first; then starts over. Submits pending work and
    /// waits for the GPU. Fails unless the device came from
    /// [`Gpu::new_profiled`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_profile(&self) -> Result<Vec<KernelTime>, BackendError> {
        self.flush()?;
        if self.recorder()?.profiler.is_none() {
            return Err(BackendError::Device("this GPU device was not opened for profiling (Gpu::new_profiled)".into()));
        }
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| BackendError::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()?;
        let mut rec = self.recorder()?;
        let profiler = rec.profiler.as_mut().expect("checked above");
        #[cfg(not(target_arch = "wasm32"))]
        profiler.wait_pending(CALLBACK_TIMEOUT);
        profiler.collect();
        if profiler.pending() > 0 {
            return Err(BackendError::Device("the GPU finished but its timestamps were not mapped".into()));
        }
        profiler.take().map_err(BackendError::Device)
    }

    /// Reads a tensor back without blocking: what the browser needs.
    pub async fn download_async(&self, t: &GpuTensor) -> Result<TensorData, BackendError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.download(t)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let Some(mut rb) = self.start_readback(t)? else {
                return Ok(TensorData { shape: t.shape.clone(), data: Vec::new() });
            };
            let mapped = (&mut rb.mapped).await;
            self.finish_readback(rb, mapped)
        }
    }

    fn recorder(&self) -> Result<MutexGuard<'_, Recorder>, BackendError> {
        self.recorder.lock().map_err(|_| BackendError::Device("the GPU recorder was poisoned by an earlier panic".into()))
    }

    fn check_errors(&self) -> Result<(), BackendError> {
        match self.errors.lock().ok().and_then(|e| e.clone()) {
            Some(e) => Err(BackendError::Device(e)),
            None => Ok(()),
        }
    }

    /// Records the copy of `t` into a staging buffer, submits all pending
    /// work, and asks for the mapping. `None` for an empty tensor.
    fn start_readback(&self, t: &GpuTensor) -> Result<Option<Readback>, BackendError> {
        self.check_errors()?;
        let bytes = (t.numel() * 4) as u64;
        if bytes == 0 {
            return Ok(None);
        }
        let staging = self.pool.take_readback(bytes);
        {
            let mut rec = self.recorder()?;
            let mut encoder = rec.take_encoder(&self.device, &self.queue);
            encoder.copy_buffer_to_buffer(t.buffer(), 0, &staging, 0, bytes);
            let timestamps = rec.resolve_timestamps(&self.device, &mut encoder);
            self.queue.submit([encoder.finish()]);
            rec.submitted();
            if let (Some(p), Some(ts)) = (rec.profiler.as_mut(), timestamps) {
                p.submitted(ts);
            }
        }
        let (tx, rx) = oneshot::channel();
        staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        self.check_errors()?;
        Ok(Some(Readback { staging, bytes, shape: t.shape.clone(), mapped: rx }))
    }

    fn finish_readback(&self, rb: Readback, mapped: Result<(), wgpu::BufferAsyncError>) -> Result<TensorData, BackendError> {
        self.check_errors()?;
        mapped.map_err(|e| BackendError::Device(format!("reading a tensor back from the GPU failed: {e}")))?;
        let data = {
            let view = rb.staging.slice(..rb.bytes).get_mapped_range().map_err(device_err)?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        rb.staging.unmap();
        self.pool.give_back_readback(rb.staging);
        Ok(TensorData { shape: rb.shape, data })
    }

    /// In u64 with overflow checks: on wasm32 a `usize` product such as
    /// heads·T·T wraps at 2³², which would pass the size check with a tiny
    /// buffer. Any tensor that fits a binding has a `numel` that fits `usize`.
    fn alloc(&self, shape: Vec<usize>, what: &'static str) -> Result<GpuTensor, BackendError> {
        let bytes = shape
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| BackendError::Limit(format!("{what} {shape:?}: the size overflows 64 bits")))?;
        Ok(GpuTensor { buf: self.pool.take(bytes, what)?, shape })
    }

    /// `n` workgroups of a 1-D launch, folded into (x, y) past the per-dimension limit.
    fn fold(&self, n: usize) -> Result<[u32; 3], BackendError> {
        let max = self.max_groups as usize;
        if n <= max {
            return Ok([n as u32, 1, 1]);
        }
        let y = n.div_ceil(max);
        if y > max {
            return Err(BackendError::Limit(format!("{n} workgroups exceed this GPU's {max}² limit")));
        }
        Ok([n.div_ceil(y) as u32, y as u32, 1])
    }

    fn groups(&self, g: [usize; 3], op: &str) -> Result<[u32; 3], BackendError> {
        if g.iter().any(|&v| v > self.max_groups as usize) {
            return Err(BackendError::Limit(format!("{op}: launch {g:?} exceeds max_compute_workgroups_per_dimension {}", self.max_groups)));
        }
        Ok([g[0] as u32, g[1] as u32, g[2] as u32])
    }

    fn run<P: Pod>(&self, k: &Kernel, params: &P, buffers: &[&wgpu::Buffer], groups: [u32; 3]) -> Result<(), BackendError> {
        let mut rec = self.recorder()?;
        rec.forget_bind_groups_after(self.pool.released());
        rec.dispatch(&self.device, k, bytemuck::bytes_of(params), buffers, groups)?;
        drop(rec);
        self.check_errors()
    }

    /// The tiled GEMM. Its tile loaders read groups of 4 consecutive values
    /// (A along k; B along n when n-contiguous, else along k); where every
    /// such group is one aligned vec4 of the buffer, the shader reads it as
    /// one (bindings 5 and 6 view A and B as `array<vec4<f32>>`). That holds
    /// when the offsets and strides placing a group are multiples of 4 floats
    /// and the group's extent (k or n) is too, so no group straddles the
    /// tensor's edge. Everything else takes the scalar loads.
    fn matmul(&self, p: &MatmulParams, a: &wgpu::Buffer, b: &wgpu::Buffer, bias: Option<&wgpu::Buffer>, c: &wgpu::Buffer, batches: usize) -> Result<(), BackendError> {
        // 64x64 tiles, unless they would make fewer than MATMUL_SMALL_GRID
        // workgroups: then 32x64 tiles, twice as many workgroups, so that a
        // GPU with a hundred-odd cores has work for all of them (sew-d-tiny's
        // linear layers on 16 s of audio make 42 to 168 64x64 tiles).
        let (n_tiles, m_tiles) = ((p.n as usize).div_ceil(64), (p.m as usize).div_ceil(64));
        let (kernel, m_tile) = if n_tiles * m_tiles * batches < MATMUL_SMALL_GRID { (&MATMUL_32, 32) } else { (&MATMUL, 64) };
        let mut p = *p;
        let x4 = |v: u32| v.is_multiple_of(4);
        // The vec4 views end at the last whole 16 bytes; pool buffers are
        // whole multiples of 16, so this only guards against other buffers.
        let a_rows = x4(p.a_off) && x4(p.a_item) && x4(p.a_sb) && x4(p.a_sh) && x4(p.k) && a.size().is_multiple_of(16);
        // a_mode 1: with cv_cin_g a multiple of 4, the 4 k values share one
        // input position and are contiguous within it.
        let a_within = if p.a_mode == 0 { x4(p.lda) } else { x4(p.cv_cin) && x4(p.cv_cin_g) };
        p.a_vec4 = (a_rows && a_within) as u32;
        let b_base = x4(p.b_off) && x4(p.b_sb) && x4(p.b_sh) && b.size().is_multiple_of(16);
        let b_within = if p.b_sn == 1 { x4(p.b_sk) && x4(p.n) } else { p.b_sk == 1 && x4(p.b_sn) && x4(p.k) };
        p.b_vec4 = (b_base && b_within) as u32;
        // Row tiles past the launch limit (the first conv of a long clip or
        // a big batch is one GEMM of millions of rows) go in more dispatches.
        let row_tiles = (p.m as usize).div_ceil(m_tile);
        let per_launch = self.max_groups as usize;
        let mut first = 0;
        loop {
            let count = (row_tiles - first).min(per_launch);
            p.m_start = u32_of(first * m_tile, "matmul rows")?;
            let g = self.groups([n_tiles, count, batches], "matmul")?;
            self.run(kernel, &p, &[a, b, bias.unwrap_or(&self.dummy), c, a, b], g)?;
            first += count;
            if first >= row_tiles {
                return Ok(());
            }
        }
    }

    fn elementwise(&self, k: &Kernel, p: &ElementwiseParams, src: &wgpu::Buffer, pos: &wgpu::Buffer, dst: &wgpu::Buffer, count: usize) -> Result<(), BackendError> {
        let g = self.fold(count.div_ceil(256))?;
        self.run(k, p, &[src, pos, dst], g)
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;

    fn name(&self) -> &'static str {
        "gpu"
    }

    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor, BackendError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(shape_err("upload", format!("shape {shape:?} does not hold {} values", data.len())));
        }
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // A queue write runs before any command recorded but not yet submitted,
        // so it may fill a recycled buffer only while none is pending (checked
        // under the recorder's lock, so none can be recorded meanwhile).
        // Recycling keeps a stream of calls from adding one buffer per call to
        // the pool; otherwise a fresh buffer, filled at creation.
        let rec = self.recorder()?;
        if rec.dispatches == 0 {
            if let Some(buf) = self.pool.take_free(bytes.len() as u64, "upload")? {
                if !bytes.is_empty() {
                    self.queue.write_buffer(buf.buffer(), 0, bytes);
                }
                return Ok(GpuTensor { buf, shape: shape.to_vec() });
            }
        }
        drop(rec);
        Ok(GpuTensor { buf: self.pool.upload(bytes, "upload")?, shape: shape.to_vec() })
    }

    /// Stored transposed, `[in, out]`, so the GEMM reads it n-contiguous.
    fn prepare_linear(&self, w: &TensorData) -> Result<GpuTensor, BackendError> {
        let [out_f, in_f] = w.shape[..] else {
            return Err(shape_err("linear weight", format!("expected [out, in], got {:?}", w.shape)));
        };
        check_weight(w, "linear weight")?;
        let mut t = vec![0.0f32; w.data.len()];
        for o in 0..out_f {
            for i in 0..in_f {
                t[i * out_f + o] = w.data[o * in_f + i];
            }
        }
        self.upload(&[in_f, out_f], &t)
    }

    fn prepare_conv(&self, w: &TensorData, spec: &ConvSpec) -> Result<GpuTensor, BackendError> {
        let (shape, data) = conv_weight_as_gemm(w, spec)?;
        self.upload(&shape, &data)
    }

    /// Submits everything recorded so far and blocks on the copy (native only;
    /// on the web use [`Gpu::download_async`]).
    fn download(&self, t: &GpuTensor) -> Result<TensorData, BackendError> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = t;
            Err(BackendError::Device("Gpu::download would block the browser; await Gpu::download_async instead".into()))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let Some(rb) = self.start_readback(t)? else {
                return Ok(TensorData { shape: t.shape.clone(), data: Vec::new() });
            };
            self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| BackendError::Device(format!("waiting for the GPU failed: {e}")))?;
            if let Some(p) = self.recorder()?.profiler.as_mut() {
                p.collect();
            }
            // The poll above waited for the GPU, but when another thread
            // polls the shared device at the same moment, it runs our map
            // callback, possibly just after our poll returned.
            rb.mapped.wait(CALLBACK_TIMEOUT);
            let mapped = rb.mapped.try_take().ok_or_else(|| {
                BackendError::Device(format!("the GPU finished but the readback was not mapped within {CALLBACK_TIMEOUT:?}"))
            })?;
            self.finish_readback(rb, mapped)
        }
    }

    fn shape<'a>(&self, t: &'a GpuTensor) -> &'a [usize] {
        &t.shape
    }

    fn conv1d(&self, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, spec: &ConvSpec) -> Result<GpuTensor, BackendError> {
        let (batch, len, cin) = x.btc("conv1d")?;
        if cin != spec.in_channels {
            return Err(shape_err("conv1d", format!("input has {cin} channels, the layer expects {}", spec.in_channels)));
        }
        let (cin_g, cout_g) = (cin / spec.groups, spec.out_channels / spec.groups);
        let window = spec.kernel * cin_g;
        if w.shape != [spec.groups, window, cout_g] {
            return Err(shape_err("conv1d", format!("weight {:?} was not prepared for {spec:?}", w.shape)));
        }
        let out_len = spec.out_len(len);
        let out = self.alloc(vec![batch, out_len, spec.out_channels], "conv1d")?;
        let u = |v: usize| u32_of(v, "conv1d size");
        let mut p = MatmulParams {
            m: u(batch * out_len)?,
            n: u(cout_g)?,
            k: u(window)?,
            a_rows: u(out_len.max(1))?,
            a_item: u(len * cin)?,
            b_sk: u(cout_g)?,
            b_sn: 1,
            ldc: u(spec.out_channels)?,
            zh: u(spec.groups)?,
            has_bias: bias.is_some() as u32,
            alpha: 1.0,
            ..Default::default()
        };
        if spec.groups == 1 && spec.padding == 0 {
            // Overlapping windows of the input are the GEMM rows.
            p.lda = u(spec.stride * cin)?;
        } else {
            p.a_mode = 1;
            p.a_sh = u(cin_g)?;
            p.b_sh = u(window * cout_g)?;
            p.c_sh = u(cout_g)?;
            p.bias_sh = u(cout_g)?;
            p.cv_len = u(len)?;
            p.cv_stride = u(spec.stride)?;
            p.cv_pad = u(spec.padding)?;
            p.cv_cin = u(cin)?;
            p.cv_cin_g = u(cin_g)?;
        }
        self.matmul(&p, x.buffer(), w.buffer(), bias.map(GpuTensor::buffer), out.buffer(), spec.groups)?;
        Ok(out)
    }

    fn group_norm_time(&self, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, eps: f32) -> Result<GpuTensor, BackendError> {
        let (batch, len, c) = x.btc("group_norm")?;
        if gamma.numel() != c || beta.numel() != c {
            return Err(shape_err("group_norm", format!("{} weights for {c} channels", gamma.numel())));
        }
        let out = self.alloc(x.shape.clone(), "group_norm")?;
        let chunks = len.div_ceil(GN_CHUNK);
        let partials = self.alloc(vec![batch, chunks, c, 2], "group_norm partials")?;
        let coeffs = self.alloc(vec![batch, c, 2], "group_norm coefficients")?;
        let p = GroupNormParams { t: u32_of(len, "frames")?, c: c as u32, batch: batch as u32, chunks: chunks as u32, eps, _pad: [0; 3] };
        let bufs = [x.buffer(), gamma.buffer(), beta.buffer(), partials.buffer(), coeffs.buffer(), out.buffer()];
        self.run(&GN_STATS, &p, &bufs, self.groups([c.div_ceil(64), chunks, batch], "group_norm")?)?;
        self.run(&GN_FINALIZE, &p, &bufs, self.fold((batch * c).div_ceil(256))?)?;
        self.run(&GN_APPLY, &p, &bufs, self.fold((batch * len * c).div_ceil(256))?)?;
        Ok(out)
    }

    fn layer_norm(&self, x: &GpuTensor, residual: Option<&GpuTensor>, gamma: &GpuTensor, beta: &GpuTensor, eps: f32) -> Result<GpuTensor, BackendError> {
        let c = *x.shape.last().ok_or_else(|| shape_err("layer_norm", "scalar input"))?;
        if gamma.numel() != c || beta.numel() != c {
            return Err(shape_err("layer_norm", format!("{} weights for {c} channels", gamma.numel())));
        }
        if let Some(r) = residual {
            if r.shape != x.shape {
                return Err(shape_err("layer_norm", format!("residual {:?} vs input {:?}", r.shape, x.shape)));
            }
        }
        let rows = x.numel().checked_div(c).unwrap_or(0);
        let out = self.alloc(x.shape.clone(), "layer_norm")?;
        let p = LayerNormParams { rows: u32_of(rows, "rows")?, c: c as u32, has_residual: residual.is_some() as u32, eps };
        let r = residual.map_or(&self.dummy, GpuTensor::buffer);
        self.run(&LAYER_NORM, &p, &[x.buffer(), r, gamma.buffer(), beta.buffer(), out.buffer()], self.fold(rows)?)?;
        Ok(out)
    }

    fn activate(&self, x: GpuTensor, act: Activation) -> Result<GpuTensor, BackendError> {
        let n = x.numel();
        let p = ElementwiseParams { count: u32_of(n, "elements")?, act: act_code(Some(act)), ..Default::default() };
        self.elementwise(&ACTIVATE, &p, &self.dummy, &self.dummy, x.buffer(), n)?;
        Ok(x)
    }

    fn linear(&self, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>, act: Option<Activation>) -> Result<GpuTensor, BackendError> {
        let [in_f, out_f] = w.shape[..] else {
            return Err(shape_err("linear", format!("weight {:?} did not come from prepare_linear", w.shape)));
        };
        let width = *x.shape.last().ok_or_else(|| shape_err("linear", "scalar input"))?;
        if width != in_f {
            return Err(shape_err("linear", format!("input width {width}, weight expects {in_f}")));
        }
        if let Some(b) = b {
            if b.numel() != out_f {
                return Err(shape_err("linear", format!("bias of {} for {out_f} outputs", b.numel())));
            }
        }
        let rows = x.numel() / in_f.max(1);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("checked non-empty") = out_f;
        let out = self.alloc(shape, "linear")?;
        let p = MatmulParams {
            m: u32_of(rows, "rows")?,
            n: out_f as u32,
            k: in_f as u32,
            lda: in_f as u32,
            a_rows: u32_of(rows.max(1), "rows")?,
            b_sk: out_f as u32,
            b_sn: 1,
            ldc: out_f as u32,
            zh: 1,
            has_bias: b.is_some() as u32,
            act: act_code(act),
            alpha: 1.0,
            ..Default::default()
        };
        self.matmul(&p, x.buffer(), w.buffer(), b.map(GpuTensor::buffer), out.buffer(), 1)?;
        Ok(out)
    }

    fn avg_pool_add(&self, x: &GpuTensor, factor: usize, pos: &GpuTensor) -> Result<GpuTensor, BackendError> {
        let (batch, len, c) = x.btc("avg_pool")?;
        let (pb, plen, pc) = pos.btc("avg_pool")?;
        if pb != batch || pc != c || factor == 0 {
            return Err(shape_err("avg_pool", format!("position embeddings {:?} vs input {:?}, factor {factor}", pos.shape, x.shape)));
        }
        let out_len = (len / factor).min(plen);
        let out = self.alloc(vec![batch, out_len, c], "avg_pool")?;
        let n = out.numel();
        let p = ElementwiseParams {
            count: u32_of(n, "elements")?,
            c: c as u32,
            factor: factor as u32,
            src_len: len as u32,
            dst_len: out_len as u32,
            pos_len: plen as u32,
            ..Default::default()
        };
        self.elementwise(&AVG_POOL_ADD, &p, x.buffer(), pos.buffer(), out.buffer(), n)?;
        Ok(out)
    }

    fn attention(
        &self,
        qkv: &GpuTensor,
        pos_key: Option<&GpuTensor>,
        pos_query: Option<&GpuTensor>,
        lengths: &[usize],
        spec: &AttentionSpec,
        want_probs: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor>), BackendError> {
        self.disentangled_attention(qkv, pos_key, pos_query, lengths, spec, want_probs)
    }

    fn upsample(&self, x: &GpuTensor, factor: usize, len: usize) -> Result<GpuTensor, BackendError> {
        let (batch, t, width) = x.btc("upsample")?;
        if factor == 0 || width % factor != 0 {
            return Err(shape_err("upsample", format!("width {width} not divisible by {factor}")));
        }
        let c = width / factor;
        let have = t * factor;
        let out = self.alloc(vec![batch, len, c], "upsample")?;
        let n = out.numel();
        let p = ElementwiseParams {
            count: u32_of(n, "elements")?,
            c: c as u32,
            src_len: have as u32,
            dst_len: len as u32,
            keep: have.min(len) as u32,
            ..Default::default()
        };
        self.elementwise(&UPSAMPLE, &p, x.buffer(), &self.dummy, out.buffer(), n)?;
        Ok(out)
    }

    fn mask_frames(&self, x: GpuTensor, lengths: &[usize]) -> Result<GpuTensor, BackendError> {
        let (batch, len, c) = x.btc("mask_frames")?;
        for (b, &l) in lengths.iter().enumerate().take(batch) {
            if l < len {
                let (start, end) = ((b * len + l) * c, (b + 1) * len * c);
                let p = ElementwiseParams { start: u32_of(start, "offset")?, end: u32_of(end, "offset")?, ..Default::default() };
                self.elementwise(&ZERO_RANGE, &p, &self.dummy, &self.dummy, x.buffer(), end - start)?;
            }
        }
        Ok(x)
    }

    fn weighted_sum(&self, xs: &[&GpuTensor], weights: &[f32]) -> Result<GpuTensor, BackendError> {
        let first = xs.first().ok_or_else(|| shape_err("weighted_sum", "no inputs"))?;
        if weights.len() != xs.len() {
            return Err(shape_err("weighted_sum", format!("{} weights for {} inputs", weights.len(), xs.len())));
        }
        let out = self.alloc(first.shape.clone(), "weighted_sum")?;
        let n = out.numel();
        for (i, (x, &w)) in xs.iter().zip(weights).enumerate() {
            if x.shape != first.shape {
                return Err(shape_err("weighted_sum", format!("{:?} vs {:?}", x.shape, first.shape)));
            }
            let p = ElementwiseParams { count: u32_of(n, "elements")?, weight: w, accumulate: (i > 0) as u32, ..Default::default() };
            self.elementwise(&AXPY, &p, x.buffer(), &self.dummy, out.buffer(), n)?;
        }
        Ok(out)
    }

    fn masked_mean(&self, x: &GpuTensor, lengths: &[usize]) -> Result<GpuTensor, BackendError> {
        let (batch, len, c) = x.btc("masked_mean")?;
        let out = self.alloc(vec![batch, c], "masked_mean")?;
        for b in 0..batch {
            let frames = lengths.get(b).copied().unwrap_or(len).min(len);
            let p = MaskedMeanParams { t: u32_of(len, "frames")?, c: c as u32, item: b as u32, frames: frames as u32 };
            self.run(&MASKED_MEAN, &p, &[x.buffer(), out.buffer()], self.groups([c.div_ceil(64), 1, 1], "masked_mean")?)?;
        }
        Ok(out)
    }
}
