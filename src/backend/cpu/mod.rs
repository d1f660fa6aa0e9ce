//! The pure-Rust CPU backend: GEMM from the `gemm` crate, threads through
//! rayon on native, SIMD through auto-vectorized kernels.

mod attention;
mod kernels;
mod matmul;
mod par;
mod pool;
#[cfg(target_arch = "wasm32")]
mod wasm_gemm;

use super::{check_weight, conv_weight_as_gemm, shape_err, AttentionSpec, Backend, BackendError, ConvSpec};
use crate::config::Activation;
use crate::weights::TensorData;
use matmul::{matmul, View};

/// A host tensor, row-major. Its buffer returns to the pool when dropped.
#[derive(Debug)]
pub struct CpuTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Drop for CpuTensor {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.data));
    }
}

impl CpuTensor {
    fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        CpuTensor { shape, data }
    }
    fn zeros(shape: Vec<usize>, what: &'static str) -> Result<Self, BackendError> {
        let data = pool::zeros(&shape, what)?;
        Ok(CpuTensor { shape, data })
    }
    fn try_clone(&self, what: &'static str) -> Result<Self, BackendError> {
        Ok(CpuTensor { shape: self.shape.clone(), data: pool::copy(&self.data, what)? })
    }
    /// `(batch, time, channels)` of a rank-3 activation.
    fn btc(&self, op: &'static str) -> Result<(usize, usize, usize), BackendError> {
        match self.shape[..] {
            [b, t, c] => Ok((b, t, c)),
            _ => Err(shape_err(op, format!("expected [batch, time, channels], got {:?}", self.shape))),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

/// Rows of an elementwise pass handed to one thread.
const ROWS_PER_TASK: usize = 256;

impl Backend for Cpu {
    type Tensor = CpuTensor;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<CpuTensor, BackendError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(shape_err("upload", format!("shape {shape:?} does not hold {} values", data.len())));
        }
        Ok(CpuTensor::new(shape.to_vec(), pool::copy(data, "upload")?))
    }

    fn prepare_linear(&self, w: &TensorData) -> Result<CpuTensor, BackendError> {
        if w.shape.len() != 2 {
            return Err(shape_err("linear weight", format!("expected [out, in], got {:?}", w.shape)));
        }
        check_weight(w, "linear weight")?;
        self.upload(&w.shape, &w.data)
    }

    fn prepare_conv(&self, w: &TensorData, spec: &ConvSpec) -> Result<CpuTensor, BackendError> {
        let (shape, data) = conv_weight_as_gemm(w, spec)?;
        Ok(CpuTensor::new(shape, data))
    }

    fn download(&self, t: &CpuTensor) -> Result<TensorData, BackendError> {
        Ok(TensorData { shape: t.shape.clone(), data: pool::copy(&t.data, "download")? })
    }

    fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
        &t.shape
    }

    fn conv1d(&self, x: &CpuTensor, w: &CpuTensor, bias: Option<&CpuTensor>, spec: &ConvSpec) -> Result<CpuTensor, BackendError> {
        let (batch, len, cin) = x.btc("conv1d")?;
        if cin != spec.in_channels {
            return Err(shape_err("conv1d", format!("input has {cin} channels, the layer expects {}", spec.in_channels)));
        }
        let out_len = spec.out_len(len);
        let cout = spec.out_channels;
        let (cin_g, cout_g) = (cin / spec.groups, cout / spec.groups);
        let window = spec.kernel * cin_g;
        let mut out = CpuTensor::zeros(vec![batch, out_len, cout], "conv1d output")?;
        if out_len == 0 {
            return Ok(out);
        }
        if let Some(b) = bias {
            for row in out.data.chunks_exact_mut(cout) {
                row.copy_from_slice(&b.data);
            }
        }
        for b in 0..batch {
            let x_b = &x.data[b * len * cin..(b + 1) * len * cin];
            let dst_off = b * out_len * cout;
            if spec.groups == 1 && spec.padding == 0 {
                // Windows of channels-last input are contiguous and overlap:
                // row t starts at t·stride·cin. No im2col copy needed.
                let lhs = View::rows(x_b, 0, spec.stride * cin);
                matmul(out_len, cout, window, &mut out.data, dst_off, cout, bias.is_some(), lhs, View::rows(&w.data, 0, cout), 1.0, true);
                continue;
            }
            // Grouped or padded: gather each group's windows (im2col), then one GEMM per group.
            let cols = par::map(spec.groups, |g| -> Result<Vec<f32>, BackendError> {
                let mut col = pool::zeros(&[out_len, window], "conv1d windows")?;
                for t in 0..out_len {
                    for j in 0..spec.kernel {
                        let pos = (t * spec.stride + j) as isize - spec.padding as isize;
                        if pos < 0 || pos as usize >= len {
                            continue;
                        }
                        let src = pos as usize * cin + g * cin_g;
                        let dst = t * window + j * cin_g;
                        col[dst..dst + cin_g].copy_from_slice(&x_b[src..src + cin_g]);
                    }
                }
                Ok(col)
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            for (g, col) in cols.iter().enumerate() {
                let w_g = View::rows(&w.data, g * window * cout_g, cout_g);
                matmul(out_len, cout_g, window, &mut out.data, dst_off + g * cout_g, cout, bias.is_some(), View::rows(col, 0, window), w_g, 1.0, true);
            }
            cols.into_iter().for_each(pool::give);
        }
        Ok(out)
    }

    fn group_norm_time(&self, x: &CpuTensor, gamma: &CpuTensor, beta: &CpuTensor, eps: f32) -> Result<CpuTensor, BackendError> {
        let (batch, len, c) = x.btc("group_norm")?;
        let mut out = x.try_clone("group_norm output")?;
        for b in 0..batch {
            let data = &mut out.data[b * len * c..(b + 1) * len * c];
            // f64 accumulation: a channel is averaged over up to ~10^6 frames.
            let mut mean = vec![0.0f64; c];
            for row in data.chunks_exact(c) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += v as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= len.max(1) as f64);
            let mut var = vec![0.0f64; c];
            for row in data.chunks_exact(c) {
                for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                    let d = v as f64 - m;
                    *s += d * d;
                }
            }
            let scale: Vec<f32> = var.iter().zip(&gamma.data).map(|(v, g)| (*g as f64 / (v / len.max(1) as f64 + eps as f64).sqrt()) as f32).collect();
            let shift: Vec<f32> = mean.iter().zip(&scale).zip(&beta.data).map(|((m, s), b)| b - (*m as f32) * s).collect();
            par::chunks_mut(data, ROWS_PER_TASK * c, |_, rows| {
                for row in rows.chunks_exact_mut(c) {
                    for ((v, s), sh) in row.iter_mut().zip(&scale).zip(&shift) {
                        *v = *v * s + sh;
                    }
                }
            });
        }
        Ok(out)
    }

    fn layer_norm(&self, x: &CpuTensor, residual: Option<&CpuTensor>, gamma: &CpuTensor, beta: &CpuTensor, eps: f32) -> Result<CpuTensor, BackendError> {
        let c = *x.shape.last().ok_or_else(|| shape_err("layer_norm", "scalar input"))?;
        if gamma.data.len() != c {
            return Err(shape_err("layer_norm", format!("{} weights for {c} channels", gamma.data.len())));
        }
        let mut out = x.try_clone("layer_norm output")?;
        if let Some(r) = residual {
            if r.shape != x.shape {
                return Err(shape_err("layer_norm", format!("residual {:?} vs input {:?}", r.shape, x.shape)));
            }
            out.data.iter_mut().zip(&r.data).for_each(|(a, b)| *a += b);
        }
        par::chunks_mut(&mut out.data, ROWS_PER_TASK * c, |_, rows| kernels::layer_norm_rows(rows, c, &gamma.data, &beta.data, eps));
        Ok(out)
    }

    fn activate(&self, mut x: CpuTensor, act: Activation) -> Result<CpuTensor, BackendError> {
        par::chunks_mut(&mut x.data, 1 << 15, |_, c| kernels::activate(c, act));
        Ok(x)
    }

    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>, act: Option<Activation>) -> Result<CpuTensor, BackendError> {
        let (out_f, in_f) = (w.shape[0], w.shape[1]);
        let width = *x.shape.last().ok_or_else(|| shape_err("linear", "scalar input"))?;
        if width != in_f {
            return Err(shape_err("linear", format!("input width {width}, weight expects {in_f}")));
        }
        let rows = x.data.len() / in_f.max(1);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("checked non-empty") = out_f;
        let mut out = CpuTensor::zeros(shape, "linear output")?;
        if let Some(b) = b {
            for row in out.data.chunks_exact_mut(out_f) {
                row.copy_from_slice(&b.data);
            }
        }
        matmul(rows, out_f, in_f, &mut out.data, 0, out_f, b.is_some(), View::rows(&x.data, 0, in_f), View::transposed(&w.data, 0, in_f), 1.0, true);
        match act {
            Some(a) => self.activate(out, a),
            None => Ok(out),
        }
    }

    fn avg_pool_add(&self, x: &CpuTensor, factor: usize, pos: &CpuTensor) -> Result<CpuTensor, BackendError> {
        let (batch, len, c) = x.btc("avg_pool")?;
        let (pb, plen, pc) = pos.btc("avg_pool")?;
        if pb != batch || pc != c {
            return Err(shape_err("avg_pool", format!("position embeddings {:?} vs input {:?}", pos.shape, x.shape)));
        }
        let out_len = (len / factor).min(plen);
        let mut out = CpuTensor::zeros(vec![batch, out_len, c], "avg_pool output")?;
        let inv = 1.0 / factor as f32;
        for b in 0..batch {
            for t in 0..out_len {
                let dst = &mut out.data[(b * out_len + t) * c..(b * out_len + t + 1) * c];
                for s in 0..factor {
                    let src = &x.data[(b * len + t * factor + s) * c..][..c];
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                }
                let p = &pos.data[(b * plen + t) * c..][..c];
                dst.iter_mut().zip(p).for_each(|(d, v)| *d = *d * inv + v);
            }
        }
        Ok(out)
    }

    fn attention(
        &self,
        qkv: &CpuTensor,
        pos_key: Option<&CpuTensor>,
        pos_query: Option<&CpuTensor>,
        lengths: &[usize],
        spec: &AttentionSpec,
        want_probs: bool,
    ) -> Result<(CpuTensor, Option<CpuTensor>), BackendError> {
        let (batch, len, width) = qkv.btc("attention")?;
        let hd = spec.heads * spec.head_dim;
        if width != 3 * hd || lengths.len() != batch {
            return Err(shape_err("attention", format!("qkv {:?} for {} heads of {}, {} lengths", qkv.shape, spec.heads, spec.head_dim, lengths.len())));
        }
        for (name, p, needed) in [("pos_key", pos_key, spec.c2p), ("pos_query", pos_query, spec.p2c)] {
            if spec.relative && needed {
                match p {
                    Some(p) if p.shape == [2 * spec.span, hd] => {}
                    _ => return Err(shape_err("attention", format!("{name} must be [{}, {hd}]", 2 * spec.span))),
                }
            }
        }
        let out = attention::attention(&qkv.data, len, pos_key.map(|p| &p.data[..]), pos_query.map(|p| &p.data[..]), lengths, spec, want_probs)?;
        let probs = out.probs.map(|p| CpuTensor::new(vec![batch, spec.heads, len, len], p));
        Ok((CpuTensor::new(vec![batch, len, hd], out.context), probs))
    }

    fn upsample(&self, x: &CpuTensor, factor: usize, len: usize) -> Result<CpuTensor, BackendError> {
        let (batch, t, width) = x.btc("upsample")?;
        if width % factor != 0 {
            return Err(shape_err("upsample", format!("width {width} not divisible by {factor}")));
        }
        let c = width / factor;
        let have = t * factor;
        let keep = have.min(len);
        let mut out = CpuTensor::zeros(vec![batch, len, c], "upsample output")?;
        for b in 0..batch {
            // [T, S·C] and [T·S, C] are the same memory: the reshape is a copy of rows.
            out.data[b * len * c..(b * len + keep) * c].copy_from_slice(&x.data[b * have * c..(b * have + keep) * c]);
        }
        Ok(out)
    }

    fn mask_frames(&self, mut x: CpuTensor, lengths: &[usize]) -> Result<CpuTensor, BackendError> {
        let (batch, len, c) = x.btc("mask_frames")?;
        for (b, &l) in lengths.iter().enumerate().take(batch) {
            if l < len {
                x.data[(b * len + l) * c..(b + 1) * len * c].fill(0.0);
            }
        }
        Ok(x)
    }

    fn weighted_sum(&self, xs: &[&CpuTensor], weights: &[f32]) -> Result<CpuTensor, BackendError> {
        let first = xs.first().ok_or_else(|| shape_err("weighted_sum", "no inputs"))?;
        let mut out = CpuTensor::zeros(first.shape.clone(), "weighted_sum output")?;
        for (x, w) in xs.iter().zip(weights) {
            if x.shape != first.shape {
                return Err(shape_err("weighted_sum", format!("{:?} vs {:?}", x.shape, first.shape)));
            }
            out.data.iter_mut().zip(&x.data).for_each(|(o, v)| *o += w * v);
        }
        Ok(out)
    }

    fn masked_mean(&self, x: &CpuTensor, lengths: &[usize]) -> Result<CpuTensor, BackendError> {
        let (batch, len, c) = x.btc("masked_mean")?;
        let mut out = CpuTensor::zeros(vec![batch, c], "masked_mean output")?;
        for b in 0..batch {
            let n = lengths.get(b).copied().unwrap_or(len).min(len);
            let dst = &mut out.data[b * c..(b + 1) * c];
            for t in 0..n {
                dst.iter_mut().zip(&x.data[(b * len + t) * c..][..c]).for_each(|(d, v)| *d += v);
            }
            dst.iter_mut().for_each(|d| *d /= n.max(1) as f32);
        }
        Ok(out)
    }
}
