//! Data parallelism that is rayon on native and on wasm built with `threads`
//! (Web Workers over shared memory), and a plain loop on single-threaded wasm.

/// Runs `f(i)` for `i in 0..n`, in parallel where threads exist, and collects in order.
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    {
        (0..n).map(f).collect()
    }
}

/// Runs `f(chunk_index, chunk)` over `chunk`-sized pieces of `data`.
pub fn chunks_mut(data: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let chunk = chunk.max(1);
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        use rayon::prelude::*;
        if data.len() > chunk {
            data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
            return;
        }
    }
    data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
}
