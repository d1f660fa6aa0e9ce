//! Recycles large activation buffers between ops and between forward passes.
//!
//! Fresh multi-megabyte allocations come from the OS as untouched pages, and
//! faulting them in cost about 5% of a forward pass. Dropped tensors hand
//! their buffers back here instead; memory stays bounded by the peak of one pass.

use std::sync::Mutex;

/// Buffers smaller than this are left to the allocator.
const MIN_LEN: usize = 1 << 14;
const MAX_KEPT: usize = 48;

static FREE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A zero-filled buffer of `len` values.
pub fn zeros(len: usize) -> Vec<f32> {
    let mut v = take(len);
    v.resize(len, 0.0);
    v
}

/// A copy of `src`.
pub fn copy(src: &[f32]) -> Vec<f32> {
    let mut v = take(src.len());
    v.extend_from_slice(src);
    v
}

/// An empty buffer with room for `len` values: the smallest free one that
/// fits without wasting more than half of it.
fn take(len: usize) -> Vec<f32> {
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
                return v;
            }
        }
    }
    Vec::with_capacity(len)
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
