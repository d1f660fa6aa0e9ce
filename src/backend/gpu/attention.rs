//! Disentangled self-attention on the GPU: the relative-position terms as
//! GEMMs, then `attention.wgsl` (flash-attention style, O(T) memory), its
//! key splits merged by `attention_merge.wgsl` where a clip is too short to
//! fill the GPU otherwise.

use std::sync::OnceLock;

use super::kernels::*;
use super::{shape_err, u32_of, Gpu, GpuTensor};
use crate::backend::{AttentionSpec, BackendError};

/// Workgroups of `attention::main` worth launching: enough to keep a large
/// GPU busy (an H100 holds about three of these register-heavy groups on
/// each of its 132 SMs). Fewer row groups than this get their keys split.
const ATT_TARGET_GROUPS: usize = 1024;
/// Fewest keys a split takes, so that loading the query row and merging
/// stay small next to the key loop.
const ATT_MIN_SPLIT_KEYS: usize = 128;
/// Keys per tile of `attention::main` (`FK` in attention.wgsl).
const ATT_KEYS: usize = 16;

/// `SEWD_GPU_ATTENTION_SPLITS=N` asks for N key splits (1: none), still at
/// most one per `ATT_MIN_SPLIT_KEYS` keys; a benchmarking knob, read once.
fn splits_override() -> Option<usize> {
    static SPLITS: OnceLock<Option<usize>> = OnceLock::new();
    *SPLITS.get_or_init(|| std::env::var("SEWD_GPU_ATTENTION_SPLITS").ok()?.parse().ok().filter(|&n| n > 0))
}

/// (splits, keys per split) for `len` frames and `heads` heads.
fn key_splits(len: usize, heads: usize) -> (usize, usize) {
    let row_groups = len.div_ceil(ATT_ROWS) * heads;
    let wanted = splits_override().unwrap_or_else(|| ATT_TARGET_GROUPS.div_ceil(row_groups.max(1)));
    let most = len.div_ceil(ATT_MIN_SPLIT_KEYS).max(1);
    let split_len = len.div_ceil(wanted.clamp(1, most)).next_multiple_of(ATT_KEYS).max(ATT_KEYS);
    (len.div_ceil(split_len).max(1), split_len)
}

impl Gpu {
    pub(super) fn disentangled_attention(
        &self,
        qkv: &GpuTensor,
        pos_key: Option<&GpuTensor>,
        pos_query: Option<&GpuTensor>,
        lengths: &[usize],
        spec: &AttentionSpec,
        want_probs: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor>), BackendError> {
        let (batch, len, width) = qkv.btc("attention")?;
        let (h, d) = (spec.heads, spec.head_dim);
        let hd = h * d;
        if width != 3 * hd || lengths.len() != batch {
            return Err(shape_err("attention", format!("qkv {:?} for {h} heads of {d}, {} lengths", qkv.shape, lengths.len())));
        }
        if d > 128 {
            return Err(shape_err("attention", format!("head size {d} is above the GPU kernel's 128")));
        }
        let c2p = spec.relative && spec.c2p;
        let p2c = spec.relative && spec.p2c;
        let two_span = 2 * spec.span;
        let rel = |p: Option<&GpuTensor>, name: &str, key_part: usize| -> Result<Option<GpuTensor>, BackendError> {
            let p = match p {
                Some(p) if p.shape == [two_span, hd] => p,
                _ => return Err(shape_err("attention", format!("{name} must be [{two_span}, {hd}]"))),
            };
            // [B, H, T, 2·span] = scale · (query or key rows of each head) · Pᵀ.
            let out = self.alloc(vec![batch, h, len, two_span], "attention relative terms")?;
            let m = MatmulParams {
                m: u32_of(len, "frames")?,
                n: two_span as u32,
                k: d as u32,
                a_off: (key_part * hd) as u32,
                lda: 3 * hd as u32,
                a_rows: len.max(1) as u32,
                b_sk: 1,
                b_sn: hd as u32,
                ldc: two_span as u32,
                zh: h as u32,
                a_sb: u32_of(len * 3 * hd, "qkv size")?,
                a_sh: d as u32,
                b_sh: d as u32,
                c_sb: u32_of(h * len * two_span, "relative term size")?,
                c_sh: u32_of(len * two_span, "relative term size")?,
                alpha: spec.scale(),
                ..Default::default()
            };
            self.matmul(&m, qkv.buffer(), p.buffer(), None, out.buffer(), batch * h)?;
            Ok(Some(out))
        };
        let c2p_t = if c2p { rel(pos_key, "pos_key", 0)? } else { None };
        let p2c_t = if p2c { rel(pos_query, "pos_query", 1)? } else { None };

        let ctx = self.alloc(vec![batch, len, hd], "attention context")?;
        let stats = self.alloc(vec![batch, h, len, 2], "attention row statistics")?;
        let probs = if want_probs { Some(self.alloc(vec![batch, h, len, len], "attention probabilities")?) } else { None };
        let mid = spec.buckets / 2;
        let log_base = if spec.buckets > 0 && spec.max_position > 0 {
            (((spec.max_position as f64 - 1.0) / mid as f64) as f32).ln()
        } else {
            1.0
        };
        // `main` keeps a query row and its context in 16 vec4 registers and
        // reads qkv as vec4s: head sizes up to 64 in whole vec4s. Larger head
        // sizes, or ones not a multiple of 4, take `wide`, which never splits.
        let vec4_rows = d <= 64 && d.is_multiple_of(4) && qkv.buffer().size().is_multiple_of(16);
        let (splits, split_len) = if vec4_rows { key_splits(len, h) } else { (1, len) };
        // With splits, `main` writes each split's context and statistics to
        // scratch slots item * splits + split; the merge fills ctx and stats.
        let scratch = if splits > 1 {
            Some((
                self.alloc(vec![batch * splits, len, hd], "attention split contexts")?,
                self.alloc(vec![batch * splits, h, len, 2], "attention split statistics")?,
            ))
        } else {
            None
        };
        let (ctx_out, stats_out) = scratch.as_ref().map_or((&ctx, &stats), |(c, s)| (c, s));
        let bufs = [
            qkv.buffer(),
            c2p_t.as_ref().map_or(&self.dummy, GpuTensor::buffer),
            p2c_t.as_ref().map_or(&self.dummy, GpuTensor::buffer),
            ctx_out.buffer(),
            stats_out.buffer(),
            probs.as_ref().map_or(&self.dummy_rw, GpuTensor::buffer),
            qkv.buffer(),
        ];
        for (b, &valid) in lengths.iter().enumerate() {
            let p = AttentionParams {
                t: u32_of(len, "frames")?,
                heads: h as u32,
                d: d as u32,
                hd: hd as u32,
                two_span: two_span as u32,
                terms: c2p as u32 | (p2c as u32) << 1,
                buckets: spec.buckets.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                max_pos: spec.max_position.min(i32::MAX as usize) as i32,
                span: spec.span as i32,
                scale: spec.scale(),
                log_base,
                item: b as u32,
                valid: valid.min(len) as u32,
                splits: splits as u32,
                split_len: u32_of(split_len, "frames")?,
                _pad: 0,
            };
            if vec4_rows {
                self.run(&ATTENTION, &p, &bufs, self.groups([len.div_ceil(ATT_ROWS), h, splits], "attention")?)?;
            } else {
                self.run(&ATTENTION_WIDE, &p, &bufs[..6], self.groups([len.div_ceil(16), h, 1], "attention")?)?;
            }
            if let Some((part_ctx, part_stats)) = &scratch {
                let merge = [part_ctx.buffer(), part_stats.buffer(), ctx.buffer(), stats.buffer()];
                self.run(&ATTENTION_MERGE, &p, &merge, self.fold((len * hd).div_ceil(256))?)?;
            }
            if want_probs {
                let bufs = [bufs[0], bufs[1], bufs[2], ctx.buffer(), stats.buffer(), bufs[5]];
                self.run(&ATTENTION_PROBS, &p, &bufs, self.fold((h * len * len).div_ceil(256))?)?;
            }
        }
        Ok((ctx, probs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_only_where_row_groups_leave_a_large_gpu_idle() {
        if splits_override().is_some() {
            return; // a benchmarking run fixed them
        }
        // sew-d-tiny (6 heads) on 16.55 s and 60 s: 4 splits each, the best
        // of 1..16 measured on an H100 (bench/README.md).
        assert_eq!(key_splits(414, 6), (4, 112));
        assert_eq!(key_splits(1500, 6), (4, 384));
        // Enough row groups already, or too few keys to split.
        assert_eq!(key_splits(6000, 6), (1, 6000));
        assert_eq!(key_splits(128, 1), (1, 128));
        assert_eq!(key_splits(1, 1), (1, 16));
        assert_eq!(key_splits(0, 6), (1, 16));
        // Every key falls in a split, none is empty.
        for len in 1..3000 {
            let (splits, split_len) = key_splits(len, 4);
            assert!(split_len % ATT_KEYS == 0 && splits * split_len >= len && (splits - 1) * split_len < len, "{len}");
        }
    }
}
