//! Relative positions of DeBERTa-v2 attention, exactly as transformers'
//! `build_relative_position` / `make_log_bucket_position` compute them.
//!
//! transformers does the log in float32 (`abs_pos / mid` promotes the int64
//! tensor to float32), so we do too: an f64 log would move a few offsets that
//! sit on a `ceil` boundary into the neighbouring bucket.

/// The (possibly log-bucketed) relative position for offset `d = query - key`.
pub fn bucket(d: i64, buckets: i64, max_position: usize) -> i64 {
    if buckets <= 0 || max_position == 0 {
        return d;
    }
    let mid = buckets / 2;
    let abs = if d < mid && d > -mid { mid - 1 } else { d.abs() };
    if abs <= mid {
        return d;
    }
    let ratio = abs as f32 / mid as f32;
    let base = ((max_position as f64 - 1.0) / mid as f64) as f32;
    let log_pos = (ratio.ln() / base.ln() * (mid - 1) as f32).ceil() + mid as f32;
    log_pos as i64 * d.signum()
}

/// Index into the `2*span` relative embeddings for offset `d`, clamped like
/// `torch.clamp(relative_pos + att_span, 0, 2*att_span - 1)`. The same index
/// serves c2p (at `q - k`) and p2c (transformers negates the key-to-query
/// offset, which the odd symmetry of `bucket` turns back into `q - k`).
pub fn embedding_index(d: i64, buckets: i64, max_position: usize, span: usize) -> usize {
    // Saturating: a degenerate log base makes `bucket` saturate at i64::MAX.
    let r = bucket(d, buckets, max_position).saturating_add(span as i64);
    r.clamp(0, 2 * span as i64 - 1) as usize
}

/// Table of `embedding_index` for offsets `-(len-1)..=len-1`, at `d + len - 1`.
pub fn index_table(len: usize, buckets: i64, max_position: usize, span: usize) -> Vec<u32> {
    let n = len as i64;
    (-(n - 1)..n).map(|d| embedding_index(d, buckets, max_position, span) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_offsets_are_unchanged() {
        for d in -128..=128 {
            assert_eq!(bucket(d, 256, 512), d);
        }
        assert_eq!(bucket(1000, -1, 512), 1000);
    }

    #[test]
    fn log_buckets_are_odd_and_bounded() {
        for d in 1..5000 {
            let b = bucket(d, 256, 512);
            assert_eq!(bucket(-d, 256, 512), -b);
            if d < 512 {
                assert!(b <= 255, "{d} -> {b}");
            }
            // Past max_position the bucket keeps growing; the embedding index clamps it.
            assert!(embedding_index(d, 256, 512, 256) < 512);
            assert!(embedding_index(-d, 256, 512, 256) < 512);
        }
        // The top of the range lands on the last bucket: log(511/128)/log(511/128) * 127 + 128.
        assert_eq!(bucket(511, 256, 512), 255);
    }
}
