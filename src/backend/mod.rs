//! The small set of tensor operations the SEW-D graph is written against.
//!
//! Activations are channels-last: `[batch, time, channels]`, row-major. That
//! makes every strided feature-encoder conv a plain GEMM over overlapping rows
//! and the upsampling reshape free. Weights are uploaded once through the
//! `prepare_*` methods, which may change their layout; the graph never looks
//! inside a backend tensor.

pub mod cpu;
pub mod gpu;
pub mod relative;

use thiserror::Error;

use crate::config::Activation;
use crate::weights::TensorData;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    /// The GPU failed (device lost, out of memory, an API error): a caller
    /// may move to the CPU.
    #[error("{0}")]
    Device(String),
    /// The input is too large for this GPU's limits (binding size,
    /// workgroups per dimension, 32-bit indexing): the GPU itself is fine.
    #[error("{0}")]
    Limit(String),
    #[error("the {0} backend is not built yet")]
    Unavailable(&'static str),
}

pub(crate) fn shape_err(op: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::Shape { op, message: message.into() }
}

/// A weight whose data length disagrees with its shape (only a `TensorData`
/// built by hand can; the loaders check) is an error, not a panic.
pub(crate) fn check_weight(w: &TensorData, what: &'static str) -> Result<(), BackendError> {
    if w.shape.contains(&0) {
        return Err(shape_err(what, format!("shape {:?} has a zero size", w.shape)));
    }
    let numel = w.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if numel != Some(w.data.len()) {
        return Err(shape_err(what, format!("shape {:?} does not match its {} values", w.shape, w.data.len())));
    }
    Ok(())
}

/// A conv weight `[out, in/groups, kernel]` rearranged for both backends to
/// `[groups][kernel·in_per_group][out_per_group]`, so one window of
/// channels-last input times the weight is one GEMM row. Returns the new
/// shape and data.
pub(crate) fn conv_weight_as_gemm(w: &TensorData, spec: &ConvSpec) -> Result<(Vec<usize>, Vec<f32>), BackendError> {
    // As torch: groups must divide both channel counts (else whole output
    // channels would be left unwritten on the GPU), and the stride is >= 1.
    if spec.groups == 0 || !spec.in_channels.is_multiple_of(spec.groups) || !spec.out_channels.is_multiple_of(spec.groups) {
        return Err(shape_err(
            "conv weight",
            format!("{} groups do not divide {} in and {} out channels", spec.groups, spec.in_channels, spec.out_channels),
        ));
    }
    if spec.stride == 0 {
        return Err(shape_err("conv weight", "stride 0"));
    }
    let (cin_g, cout_g) = (spec.in_channels / spec.groups, spec.out_channels / spec.groups);
    if w.shape != [spec.out_channels, cin_g, spec.kernel] {
        return Err(shape_err("conv weight", format!("expected {:?}, got {:?}", [spec.out_channels, cin_g, spec.kernel], w.shape)));
    }
    check_weight(w, "conv weight")?;
    let mut out = vec![0.0; w.data.len()];
    for g in 0..spec.groups {
        for co in 0..cout_g {
            for ci in 0..cin_g {
                for j in 0..spec.kernel {
                    let src = ((g * cout_g + co) * cin_g + ci) * spec.kernel + j;
                    out[g * spec.kernel * cin_g * cout_g + (j * cin_g + ci) * cout_g + co] = w.data[src];
                }
            }
        }
    }
    Ok((vec![spec.groups, spec.kernel * cin_g, cout_g], out))
}

/// Geometry of a 1-D convolution over channels-last input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Zeros added at both ends of the time axis.
    pub padding: usize,
    pub groups: usize,
    /// Output frames dropped at the end (the "same padding" trim of even kernels).
    pub trim_end: usize,
}

impl ConvSpec {
    pub fn out_len(&self, len: usize) -> usize {
        let padded = len + 2 * self.padding;
        if padded < self.kernel {
            return 0;
        }
        ((padded - self.kernel) / self.stride + 1).saturating_sub(self.trim_end)
    }
}

/// Disentangled attention (DeBERTa-v2) geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    pub heads: usize,
    pub head_dim: usize,
    /// Content-to-position term present.
    pub c2p: bool,
    /// Position-to-content term present.
    pub p2c: bool,
    /// Relative embedding half-span: indices run over `0..2*span`.
    pub span: usize,
    /// `position_buckets` (<= 0: no log bucketing).
    pub buckets: i64,
    /// `max_relative_positions`.
    pub max_position: usize,
    /// Whether relative attention is on at all.
    pub relative: bool,
}

impl AttentionSpec {
    /// 1 / sqrt(head_dim * scale_factor), with scale_factor = 1 + #c2p + #p2c.
    /// transformers counts the `pos_att_type` terms even when
    /// `relative_attention` is off and they add nothing to the scores.
    pub fn scale(&self) -> f32 {
        let factor = 1 + self.c2p as usize + self.p2c as usize;
        1.0 / ((self.head_dim * factor) as f32).sqrt()
    }
}

/// A backend runs the ops; `Tensor` lives wherever the backend keeps data.
pub trait Backend {
    type Tensor;

    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;

    /// Uploads a host tensor as is (activations, vectors, embeddings).
    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Self::Tensor, BackendError>;
    /// Uploads a linear weight given as torch's `[out, in]`.
    fn prepare_linear(&self, w: &TensorData) -> Result<Self::Tensor, BackendError>;
    /// Uploads a conv weight given as torch's `[out, in/groups, kernel]`.
    fn prepare_conv(&self, w: &TensorData, spec: &ConvSpec) -> Result<Self::Tensor, BackendError>;
    /// Reads a tensor back to the host.
    fn download(&self, t: &Self::Tensor) -> Result<TensorData, BackendError>;
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a [usize];

    /// `[B, T, Cin]` → `[B, spec.out_len(T), Cout]`, plus bias.
    fn conv1d(&self, x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>, spec: &ConvSpec)
        -> Result<Self::Tensor, BackendError>;
    /// GroupNorm with one group per channel: normalizes each channel over time.
    fn group_norm_time(&self, x: &Self::Tensor, gamma: &Self::Tensor, beta: &Self::Tensor, eps: f32)
        -> Result<Self::Tensor, BackendError>;
    /// LayerNorm over channels of `x + residual` (residual optional).
    fn layer_norm(&self, x: &Self::Tensor, residual: Option<&Self::Tensor>, gamma: &Self::Tensor, beta: &Self::Tensor, eps: f32)
        -> Result<Self::Tensor, BackendError>;
    /// Elementwise activation.
    fn activate(&self, x: Self::Tensor, act: Activation) -> Result<Self::Tensor, BackendError>;
    /// `x @ w.T + b`, then the activation if given. `x`: `[..., in]`.
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, b: Option<&Self::Tensor>, act: Option<Activation>)
        -> Result<Self::Tensor, BackendError>;
    /// Average pool over time (kernel = stride = `factor`) of `x`, plus `pos`, both
    /// truncated to the shorter length.
    fn avg_pool_add(&self, x: &Self::Tensor, factor: usize, pos: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    /// Disentangled self-attention. `qkv`: `[B, T, 3*H*D]` (query, key, value);
    /// `pos_key`/`pos_query`: `[2*span, H*D]` projected relative embeddings;
    /// `lengths[b]`: valid frames of batch item b (the rest are masked).
    /// Returns the context `[B, T, H*D]` and, if asked, the probabilities `[B, H, T, T]`.
    fn attention(
        &self,
        qkv: &Self::Tensor,
        pos_key: Option<&Self::Tensor>,
        pos_query: Option<&Self::Tensor>,
        lengths: &[usize],
        spec: &AttentionSpec,
        want_probs: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>), BackendError>;
    /// `[B, T, S*C]` → `[B, T*S, C]`, zero-padded (or cut) to `len` frames.
    fn upsample(&self, x: &Self::Tensor, factor: usize, len: usize) -> Result<Self::Tensor, BackendError>;
    /// Zeroes the frames at and after `lengths[b]` of each batch item.
    fn mask_frames(&self, x: Self::Tensor, lengths: &[usize]) -> Result<Self::Tensor, BackendError>;
    /// `sum_i weights[i] * xs[i]`.
    fn weighted_sum(&self, xs: &[&Self::Tensor], weights: &[f32]) -> Result<Self::Tensor, BackendError>;
    /// Mean over the first `lengths[b]` frames: `[B, T, C]` → `[B, C]`.
    fn masked_mean(&self, x: &Self::Tensor, lengths: &[usize]) -> Result<Self::Tensor, BackendError>;
}
