//! Recycles large activation buffers between ops and between forward passes.
//!
//! Fresh multi-megabyte allocations come from the OS as untouched pages, and
//! faulting them in cost about 5% of a forward pass. Dropped tensors hand
//! their buffers back here instead; memory stays bounded by the peak of one pass.

use std::sync::Mutex;

use crate::backend::BackendError;

/// Buffers smaller than this are left to the allocator.
const MIN_LEN: usize = 1 << 14;
const MAX_KEPT: usize = 48;

static FREE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A zero-filled buffer of `dims.product()` values.
pub fn zeros(dims: &[usize], what: &'static str) -> Result<Vec<f32>, BackendError> {
    let len = numel(dims, what)?;
    let mut v = take(len, what)?;
    v.resize(len, 0.0);
    Ok(v)
}

/// A copy of `src`.
pub fn copy(src: &[f32], what: &'static str) -> Result<Vec<f32>, BackendError> {
    let mut v = take(src.len(), what)?;
    v.extend_from_slice(src);
    Ok(v)
}

/// `dims.product()`, checked: on wasm32 a product such as heads·T·T wraps
/// `usize` for long clips, which would allocate too little.
fn numel(dims: &[usize], what: &'static str) -> Result<usize, BackendError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 4)
        .ok_or_else(|| BackendError::Limit(format!("{what} {dims:?} is too large to address on this machine; use a shorter clip")))
}

/// An empty buffer with room for `len` values: the smallest free one that
/// fits without wasting more than half of it. Running out of memory is an
/// error, not an abort: in the browser an abort would leave the caller's
/// promise unsettled with no message.
fn take(len: usize, what: &'static str) -> Result<Vec<f32>, BackendError> {
    if len >= MIN_LEN {
        if let Ok(mut free) = FREE.lock() {
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut v = free.swap_remove(i);
                v.clear();
                return Ok(v);
            }
        }
    }
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        // Buffers kept for reuse may be what is missing: free them and retry.
        if let Ok(mut free) = FREE.lock() {
            free.clear();
        }
        v.try_reserve_exact(len).map_err(|_| {
            BackendError::Limit(format!("out of memory: {what} needs {} MiB more; use a shorter clip", (len * 4) >> 20))
        })?;
    }
    Ok(v)
}

pub fn give(v: Vec<f32>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    if let Ok(mut free) = FREE.lock() {
        if free.len() >= MAX_KEPT {
            // Drop the smallest so big buffers stay available.
            if let Some((i, _)) = free.iter().enumerate().min_by_key(|(_, v)| v.capacity()) {
                if free[i].capacity() < v.capacity() {
                    free.swap_remove(i);
                } else {
                    return;
                }
            }
        }
        free.push(v);
    }
}
