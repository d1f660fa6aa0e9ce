//! The f32 GEMM of the WebAssembly build: operands packed into panels, and a 4×8 tile
//! of the output held in eight 128-bit SIMD registers while the sum runs over k.
//!
//! Built with the `relaxed-simd` target feature (`make pkg` builds such modules beside the
//! plain ones), the tile's multiply-adds are `f32x4.relaxed_madd`, which browsers lower to
//! a fused multiply-add where the CPU has one: about 1.2× the throughput of the plain
//! module's separate multiply and add. Browsers without relaxed SIMD (Safari, for one)
//! load the plain module.
//!
//! Each output element is summed in the same order whatever its place in a tile or a
//! thread's share of the work, so results do not depend on the thread count.

use core::arch::wasm32::*;
use std::cell::RefCell;

/// Rows and vectors (of 4 columns) of the register tile. V8 on x86-64 allocates 15 SIMD
/// registers: 4 × 2 accumulators + 2 B vectors + 1 A broadcast leave it room, where a 6×8
/// tile (15 registers) spilled and ran the model's products 1.2-1.35× slower in Chromium.
const MR: usize = 4;
const NV: usize = 2;
const NR: usize = 4 * NV;
/// Depth of one packed block: a B panel (KC × NR, 8 KiB) stays in L1.
const KC: usize = 256;
/// Rows of A packed at a time (MC × KC, 64 KiB) and columns of B (KC × NC, 512 KiB).
const MC: usize = 64;
const NC: usize = 512;
/// Below this many multiply-adds a GEMM runs on one thread.
const PARALLEL_MIN: usize = 1 << 18;

/// A read-only strided matrix: element (r, c) is at `ptr + r*rs + c*cs`.
#[derive(Clone, Copy)]
pub struct Operand {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// The row-major output: element (r, c) is at `ptr + r*ld + c`.
#[derive(Clone, Copy)]
pub struct Output {
    pub ptr: *mut f32,
    pub ld: usize,
}

impl Operand {
    /// The sub-matrix from (row, col).
    unsafe fn from(self, row: usize, col: usize) -> Self {
        Operand { ptr: self.ptr.add(row * self.rs + col * self.cs), ..self }
    }
}

impl Output {
    unsafe fn from(self, row: usize, col: usize) -> Self {
        Output { ptr: self.ptr.add(row * self.ld + col), ..self }
    }
}

// SAFETY: threads write disjoint row or column ranges of `Output` and only read the operands.
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

thread_local! {
    /// Packed A and B blocks, kept per thread between calls.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c[m×n] = (accumulate ? c : 0) + scale · a[m×k] · b[k×n]`, on the thread pool when
/// `parallel` and the build has one. `k` must not be 0 (`c` would be left as it is).
///
/// # Safety
/// Every element of the m×k, k×n and m×n extents must be in bounds of its allocation,
/// and `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(m: usize, n: usize, k: usize, c: Output, accumulate: bool, a: Operand, b: Operand, scale: f32, parallel: bool) {
    let threads = if parallel && m * n * k >= PARALLEL_MIN { thread_count() } else { 1 };
    if threads <= 1 {
        return gemm_serial(m, n, k, c, accumulate, a, b, scale);
    }
    // Split the longer side: each piece packs all of the other operand again.
    if m >= n {
        let pieces = split(m, MR, threads);
        super::par::map(pieces.len(), |i| {
            let (r0, rows) = pieces[i];
            gemm_serial(rows, n, k, c.from(r0, 0), accumulate, a.from(r0, 0), b, scale)
        });
    } else {
        let pieces = split(n, NR, threads);
        super::par::map(pieces.len(), |i| {
            let (c0, cols) = pieces[i];
            gemm_serial(m, cols, k, c.from(0, c0), accumulate, a, b.from(0, c0), scale)
        });
    }
}

#[cfg(feature = "threads")]
fn thread_count() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(feature = "threads"))]
fn thread_count() -> usize {
    1
}

/// `len` cut into at most `parts` (start, length) pieces whose starts are multiples of `align`.
fn split(len: usize, align: usize, parts: usize) -> Vec<(usize, usize)> {
    let piece = len.div_ceil(parts).div_ceil(align) * align;
    (0..len).step_by(piece).map(|s| (s, piece.min(len - s))).collect()
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_serial(m: usize, n: usize, k: usize, c: Output, accumulate: bool, a: Operand, b: Operand, scale: f32) {
    PACKED.with(|packed| {
        let (pa, pb) = &mut *packed.borrow_mut();
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b(pb, b, pc, jc, kc, nc);
                // The first depth block overwrites unless accumulating; later ones add.
                let add = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a(pa, a, ic, pc, mc, kc);
                    for jr in (0..nc).step_by(NR) {
                        for ir in (0..mc).step_by(MR) {
                            let product = tile(kc, pa.as_ptr().add(ir * kc), pb.as_ptr().add(jr * kc), scale);
                            let dst = c.ptr.add((ic + ir) * c.ld + jc + jr);
                            store(&product, dst, c.ld, MR.min(mc - ir), NR.min(nc - jr), add);
                        }
                    }
                }
            }
        }
    });
}

/// A's rows `ic..ic+mc`, depth `pc..pc+kc`, as panels of MR rows: panel p holds, for each
/// depth step, its MR values side by side (rows past `mc` are zero).
unsafe fn pack_a(packed: &mut Vec<f32>, a: Operand, ic: usize, pc: usize, mc: usize, kc: usize) {
    let panels = mc.div_ceil(MR);
    packed.clear();
    packed.resize(panels * MR * kc, 0.0);
    for p in 0..panels {
        let panel = &mut packed[p * MR * kc..(p + 1) * MR * kc];
        for i in 0..MR.min(mc - p * MR) {
            let row = a.ptr.add((ic + p * MR + i) * a.rs + pc * a.cs);
            for d in 0..kc {
                panel[d * MR + i] = *row.add(d * a.cs);
            }
        }
    }
}

/// B's columns `jc..jc+nc`, depth `pc..pc+kc`, as panels of NR columns: panel p holds,
/// for each depth step, its NR values side by side (columns past `nc` are zero).
unsafe fn pack_b(packed: &mut Vec<f32>, b: Operand, pc: usize, jc: usize, kc: usize, nc: usize) {
    let panels = nc.div_ceil(NR);
    packed.clear();
    packed.resize(panels * NR * kc, 0.0);
    for p in 0..panels {
        let panel = &mut packed[p * NR * kc..(p + 1) * NR * kc];
        let cols = NR.min(nc - p * NR);
        for d in 0..kc {
            let row = b.ptr.add((pc + d) * b.rs + (jc + p * NR) * b.cs);
            for j in 0..cols {
                panel[d * NR + j] = *row.add(j * b.cs);
            }
        }
    }
}

#[inline(always)]
unsafe fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}

/// `scale ·` the MR×NR product of one A panel and one B panel over `kc` depth steps,
/// as MR rows of NV vectors.
#[inline(always)]
unsafe fn tile(kc: usize, pa: *const f32, pb: *const f32, scale: f32) -> [[v128; NV]; MR] {
    let mut acc = [[f32x4_splat(0.0); NV]; MR];
    for d in 0..kc {
        let mut b = [f32x4_splat(0.0); NV];
        for (v, bv) in b.iter_mut().enumerate() {
            *bv = v128_load(pb.add(d * NR + 4 * v) as *const v128);
        }
        let a = pa.add(d * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = v128_load32_splat(a.add(i) as *const u32);
            for (x, bv) in row.iter_mut().zip(b) {
                *x = madd(ai, bv, *x);
            }
        }
    }
    let s = f32x4_splat(scale);
    acc.map(|row| row.map(|x| f32x4_mul(x, s)))
}

/// Writes (or, with `add`, adds) the top-left rows × cols of a tile at `dst`. The sum is
/// a separate add in both the full and the partial case, so an element's value does not
/// depend on which kind of tile it fell in.
#[inline(always)]
unsafe fn store(tile: &[[v128; NV]; MR], dst: *mut f32, ld: usize, rows: usize, cols: usize, add: bool) {
    if rows == MR && cols == NR {
        for (i, row) in tile.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                let p = dst.add(i * ld + 4 * v) as *mut v128;
                v128_store(p, if add { f32x4_add(v128_load(p), *x) } else { *x });
            }
        }
        return;
    }
    let mut flat = [0f32; MR * NR];
    for (i, row) in tile.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            v128_store(flat.as_mut_ptr().add(i * NR + 4 * v) as *mut v128, *x);
        }
    }
    for i in 0..rows {
        for j in 0..cols {
            let p = dst.add(i * ld + j);
            *p = if add { *p + flat[i * NR + j] } else { flat[i * NR + j] };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// Checks one strided product against an f64 sum, for shapes that cross every
    /// block edge (k > KC, m > MC, n > NC) and leave partial tiles.
    fn check(m: usize, n: usize, k: usize, a_t: bool, b_t: bool, accumulate: bool, scale: f32) {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729 % 997) as f32 / 498.5) - 1.0).collect();
        // Row-major m×k unless transposed (stored k×m); same for B.
        let (ars, acs) = if a_t { (1, m) } else { (k, 1) };
        let (brs, bcs) = if b_t { (1, k) } else { (n, 1) };
        let ld = n + 3;
        let mut c: Vec<f32> = (0..m * ld).map(|i| (i % 13) as f32 * 0.25).collect();
        let before = c.clone();
        unsafe {
            gemm(m, n, k, Output { ptr: c.as_mut_ptr(), ld }, accumulate, Operand { ptr: a.as_ptr(), rs: ars, cs: acs }, Operand { ptr: b.as_ptr(), rs: brs, cs: bcs }, scale, true);
        }
        for r in 0..m {
            for j in 0..ld {
                let got = c[r * ld + j];
                if j >= n {
                    assert_eq!(got, before[r * ld + j], "({m}×{n}×{k}) wrote past column {n} in row {r}");
                    continue;
                }
                let dot: f64 = (0..k).map(|d| a[r * ars + d * acs] as f64 * b[d * brs + j * bcs] as f64).sum();
                let want = scale as f64 * dot + if accumulate { before[r * ld + j] as f64 } else { 0.0 };
                let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!((got as f64 - want).abs() <= tol, "({m}×{n}×{k}, a_t {a_t}, b_t {b_t}) c[{r}][{j}] = {got}, want {want}");
            }
        }
    }

    #[wasm_bindgen_test]
    fn gemm_matches_f64_sums_across_block_edges() {
        check(1, 1, 1, false, false, false, 1.0);
        check(5, 7, 3, false, true, true, 2.0);
        check(MR, NR, KC, false, false, false, 1.0);
        check(MC + 5, NC + 9, KC + 17, false, true, false, 1.0);
        check(MC * 2 + 1, 13, 2 * KC + 3, true, false, true, 0.5);
        check(17, NC + NR + 1, 40, true, true, true, -1.5);
    }

    #[wasm_bindgen_test]
    fn splits_are_aligned_and_cover_every_index() {
        assert_eq!(split(100, 6, 3), vec![(0, 36), (36, 36), (72, 28)]);
        assert_eq!(split(5, 6, 4), vec![(0, 5)]);
        assert_eq!(split(32, 8, 4), vec![(0, 8), (8, 8), (16, 8), (24, 8)]);
    }
}
