//! Disentangled (DeBERTa-v2) self-attention on the CPU.
//!
//! Per (batch item, head), in blocks of query rows so memory stays
//! O(block × T) however long the clip:
//!   S = Q·Kᵀ + C2P[i, idx(i-j)] + P2C[j, idx(i-j)], all scaled by 1/sqrt(D·factor),
//! where C2P = Q·PosKᵀ and P2C = K·PosQᵀ are `[rows, 2·span]` GEMMs and idx is
//! the clamped (bucketed) relative position. The masked softmax follows
//! transformers 5.x (XSoftmax with a `[B, 1, 1, T]` mask): padded keys get
//! probability 0; padded query rows still attend to the valid keys.

use super::matmul::{matmul, View};
use super::{kernels, par, pool};
use crate::backend::relative::index_table;
use crate::backend::{AttentionSpec, BackendError};

const BLOCK: usize = 64;

pub struct Output {
    pub context: Vec<f32>,
    pub probs: Option<Vec<f32>>,
}

/// `qkv`: `[B, T, 3·H·D]` with `B = lengths.len()` (each item's valid
/// length); `pos_key`/`pos_query`: `[2·span, H·D]`.
pub fn attention(
    qkv: &[f32],
    len: usize,
    pos_key: Option<&[f32]>,
    pos_query: Option<&[f32]>,
    lengths: &[usize],
    spec: &AttentionSpec,
    want_probs: bool,
) -> Result<Output, BackendError> {
    let batch = lengths.len();
    let (h, d) = (spec.heads, spec.head_dim);
    let hd = h * d;
    let scale = spec.scale();
    let two_span = 2 * spec.span;
    let table = if spec.relative { index_table(len, spec.buckets, spec.max_position, spec.span) } else { Vec::new() };
    let c2p = spec.relative && spec.c2p;
    let p2c = spec.relative && spec.p2c;

    let per_head = par::map(batch * h, |task| -> Result<(Vec<f32>, Vec<f32>), BackendError> {
        let (b, head) = (task / h, task % h);
        let valid = lengths[b].min(len);
        let base = b * len * 3 * hd;
        let q = View::rows(qkv, base + head * d, 3 * hd);
        let kt = View::transposed(qkv, base + hd + head * d, 3 * hd);
        let v = View::rows(qkv, base + 2 * hd + head * d, 3 * hd);

        // P2C for every key row, once per head.
        let mut p2c_all = Vec::new();
        if let (true, Some(pq)) = (p2c, pos_query) {
            p2c_all = pool::zeros(&[len, two_span], "attention p2c")?;
            let k = View::rows(qkv, base + hd + head * d, 3 * hd);
            matmul(len, two_span, d, &mut p2c_all, 0, two_span, false, k, View::transposed(pq, head * d, hd), scale, false);
        }

        let mut context = pool::zeros(&[len, d], "attention context")?;
        let mut probs = if want_probs { pool::zeros(&[len, len], "attention probabilities")? } else { Vec::new() };
        let mut scores = pool::zeros(&[BLOCK, len], "attention scores")?;
        let mut c2p_blk = if c2p { pool::zeros(&[BLOCK, two_span], "attention c2p")? } else { Vec::new() };

        let mut i0 = 0;
        while i0 < len {
            let rows = BLOCK.min(len - i0);
            let q_blk = View { offset: q.offset + i0 * q.rs, ..q };
            matmul(rows, len, d, &mut scores, 0, len, false, q_blk, kt, scale, false);
            if let (true, Some(pk)) = (c2p, pos_key) {
                matmul(rows, two_span, d, &mut c2p_blk, 0, two_span, false, q_blk, View::transposed(pk, head * d, hd), scale, false);
            }
            for r in 0..rows {
                let i = i0 + r;
                let row = &mut scores[r * len..(r + 1) * len];
                if c2p || p2c {
                    // idx(i - j) lives at table[i - j + len - 1]; reversed, offsets[len - 1 - j].
                    let offsets = &table[i..i + len];
                    let c2p_row = if c2p { &c2p_blk[r * two_span..(r + 1) * two_span] } else { &[][..] };
                    for j in 0..valid {
                        let idx = offsets[len - 1 - j] as usize;
                        debug_assert!(idx < two_span);
                        // SAFETY: index_table clamps every entry into 0..two_span, c2p_row
                        // holds two_span values and p2c_all holds len rows of two_span (j < len).
                        unsafe {
                            let mut extra = 0.0;
                            if c2p {
                                extra += *c2p_row.get_unchecked(idx);
                            }
                            if p2c {
                                extra += *p2c_all.get_unchecked(j * two_span + idx);
                            }
                            *row.get_unchecked_mut(j) += extra;
                        }
                    }
                }
                kernels::softmax(row, valid);
                if want_probs {
                    probs[i * len..(i + 1) * len].copy_from_slice(row);
                }
            }
            // context rows = P · V over the valid keys.
            matmul(rows, d, valid, &mut context, i0 * d, d, false, View::rows(&scores, 0, len), v, 1.0, false);
            i0 += rows;
        }
        pool::give(scores);
        pool::give(c2p_blk);
        pool::give(p2c_all);
        Ok((context, probs))
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;

    let mut context = pool::zeros(&[batch, len, hd], "attention context")?;
    let mut probs = if want_probs { Some(pool::zeros(&[batch, h, len, len], "attention probabilities")?) } else { None };
    for (task, (ctx, p)) in per_head.into_iter().enumerate() {
        let (b, head) = (task / h, task % h);
        for t in 0..len {
            let dst = (b * len + t) * hd + head * d;
            context[dst..dst + d].copy_from_slice(&ctx[t * d..(t + 1) * d]);
        }
        if let Some(all) = probs.as_mut() {
            let at = task * len * len;
            all[at..at + len * len].copy_from_slice(&p);
        }
        pool::give(ctx);
        pool::give(p);
    }
    Ok(Output { context, probs })
}
