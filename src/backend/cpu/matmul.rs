//! Strided f32 matrix multiply: the `gemm` crate natively, our own SIMD kernel on wasm
//! (`wasm_gemm`), where the crate's has no fused multiply-add.

/// A read-only matrix view: element (r, c) is at `data[offset + r*rs + c*cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    pub fn rows(data: &'a [f32], offset: usize, rs: usize) -> Self {
        View { data, offset, rs, cs: 1 }
    }
    /// The transpose of a row-major block: element (r, c) of the view is (c, r) of the block.
    pub fn transposed(data: &'a [f32], offset: usize, rs: usize) -> Self {
        View { data, offset, rs: 1, cs: rs }
    }
    fn check(&self, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(last < self.data.len(), "matmul view out of bounds: {last} >= {}", self.data.len());
    }
}

/// `dst[m×n] (row stride ldd) = (accumulate ? dst : 0) + scale * a[m×k] · b[k×n]`.
/// `parallel` spreads the work over the thread pool (native, and wasm built with `threads`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_offset: usize,
    ldd: usize,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k);
    b.check(k, n);
    assert!(dst_offset + (m - 1) * ldd + n <= dst.len(), "matmul destination out of bounds");
    assert!(m == 1 || ldd >= n, "matmul destination rows overlap: stride {ldd} < {n} columns");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[dst_offset + r * ldd..dst_offset + r * ldd + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY (both): every index the kernel touches was bounds-checked above through
    // the views' extents and the destination extent; `dst` is exclusively borrowed.
    #[cfg(target_arch = "wasm32")]
    unsafe {
        use super::wasm_gemm::{gemm, Operand, Output};
        let operand = |v: View| Operand { ptr: v.data.as_ptr().add(v.offset), rs: v.rs, cs: v.cs };
        let out = Output { ptr: dst.as_mut_ptr().add(dst_offset), ld: ldd };
        gemm(m, n, k, out, accumulate, operand(a), operand(b), scale, parallel);
    }
    #[cfg(not(target_arch = "wasm32"))]
    unsafe {
        let par = if parallel && m * n * k >= 1 << 18 && rayon::current_num_threads() > 1 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_offset),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_matmul_matches_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect(); // stored [n, k]
        let mut dst = vec![1.0; m * n];
        matmul(m, n, k, &mut dst, 0, n, true, View::rows(&a, 0, k), View::transposed(&b, 0, k), 2.0, false);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = 1.0 + 2.0 * (0..k).map(|i| a[r * k + i] * b[c * k + i]).sum::<f32>();
                assert!((dst[r * n + c] - want).abs() < 1e-5);
            }
        }
    }
}
