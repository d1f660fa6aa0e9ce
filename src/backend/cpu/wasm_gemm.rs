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

    fn transposed(self) -> Self {
        Operand { rs: self.cs, cs: self.rs, ..self }
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
/// `c`'s rows must not overlap (`ld >= n`), and `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(m: usize, n: usize, k: usize, c: Output, accumulate: bool, a: Operand, b: Operand, scale: f32, parallel: bool) {
    // Saturating: on wasm32 a long clip's m·n·k passes 2^32.
    let large = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN;
    let threads = if parallel && large { thread_count() } else { 1 };
    gemm_split(threads, m, n, k, c, accumulate, a, b, scale)
}

/// [`gemm`] in up to `threads` pieces along the longer side (each piece packs all of the
/// other operand again), run on the pool where there is one and in turn where not.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_split(threads: usize, m: usize, n: usize, k: usize, c: Output, accumulate: bool, a: Operand, b: Operand, scale: f32) {
    if threads <= 1 {
        gemm_serial(m, n, k, c, accumulate, a, b, scale)
    } else if m >= n {
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
                pack::<NR>(pb, b.transposed(), jc, nc, pc, kc);
                // The first depth block overwrites unless accumulating; later ones add.
                let add = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack::<MR>(pa, a, ic, mc, pc, kc);
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

/// Rows `first..first+count` of `x` (read as rows × depth), depth `pc..pc+kc`, as panels of
/// W rows: panel p holds, for each depth step, its W values side by side (rows past `count`
/// are zero). A is packed as it is (W = MR), B as its transpose (W = NR).
unsafe fn pack<const W: usize>(packed: &mut Vec<f32>, x: Operand, first: usize, count: usize, pc: usize, kc: usize) {
    let panels = count.div_ceil(W);
    packed.clear();
    packed.resize(panels * W * kc, 0.0);
    for p in 0..panels {
        let panel = &mut packed[p * W * kc..(p + 1) * W * kc];
        for i in 0..W.min(count - p * W) {
            let row = x.ptr.add((first + p * W + i) * x.rs + pc * x.cs);
            for d in 0..kc {
                panel[d * W + i] = *row.add(d * x.cs);
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

    /// Guard values around every operand: a read or write outside its extent shows.
    const GUARD: usize = 37;

    /// `len` values (from `seed`) after GUARD guard values, and GUARD more after them.
    fn guarded(len: usize, seed: usize) -> Vec<f32> {
        (0..GUARD * 2 + len).map(|i| if i < GUARD || i >= GUARD + len { f32::NAN } else { ((i * seed % 1009) as f32 / 504.5) - 1.0 }).collect()
    }

    /// C = (accumulate ? C : 0) + scale·A·B through `gemm_split(threads, ...)`, in a buffer of
    /// m rows of stride n + 3 between guards (non-NaN, so an overwrite shows). Row-major A
    /// and B unless transposed.
    #[allow(clippy::too_many_arguments)]
    fn product(m: usize, n: usize, k: usize, a_t: bool, b_t: bool, accumulate: bool, scale: f32, threads: usize) -> (Vec<f32>, Vec<f32>) {
        let (a, b) = (guarded(m * k, 7919), guarded(k * n, 104_729));
        let (ars, acs) = if a_t { (1, m) } else { (k, 1) };
        let (brs, bcs) = if b_t { (1, k) } else { (n, 1) };
        let ld = n + 3;
        let c0: Vec<f32> = (0..m * ld + 2 * GUARD).map(|i| (i % 13) as f32 * 0.25).collect();
        let mut c = c0.clone();
        unsafe {
            let out = Output { ptr: c.as_mut_ptr().add(GUARD), ld };
            let (a, b) = (Operand { ptr: a.as_ptr().add(GUARD), rs: ars, cs: acs }, Operand { ptr: b.as_ptr().add(GUARD), rs: brs, cs: bcs });
            gemm_split(threads, m, n, k, out, accumulate, a, b, scale);
        }
        (c0, c)
    }

    /// Checks one strided product against an f64 sum, and that nothing outside C changed.
    fn check(m: usize, n: usize, k: usize, a_t: bool, b_t: bool, accumulate: bool, scale: f32) {
        let (before, c) = product(m, n, k, a_t, b_t, accumulate, scale, 1);
        let (a, b) = (guarded(m * k, 7919), guarded(k * n, 104_729));
        let (ars, acs) = if a_t { (1, m) } else { (k, 1) };
        let (brs, bcs) = if b_t { (1, k) } else { (n, 1) };
        let ld = n + 3;
        for (i, (&got, &was)) in c.iter().zip(&before).enumerate() {
            let inside = i >= GUARD && i < GUARD + m * ld && (i - GUARD) % ld < n;
            if !inside {
                assert_eq!(got, was, "({m}×{n}×{k}) wrote outside C at {i}");
                continue;
            }
            let (r, j) = ((i - GUARD) / ld, (i - GUARD) % ld);
            let dot: f64 = (0..k).map(|d| a[GUARD + r * ars + d * acs] as f64 * b[GUARD + d * brs + j * bcs] as f64).sum();
            let want = scale as f64 * dot + if accumulate { was as f64 } else { 0.0 };
            let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
            assert!((got as f64 - want).abs() <= tol, "({m}×{n}×{k}, a_t {a_t}, b_t {b_t}) c[{r}][{j}] = {got}, want {want}");
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

    /// Pieces for threads compute exactly what one thread does, split along rows (m ≥ n)
    /// or columns.
    #[wasm_bindgen_test]
    fn any_thread_count_gives_the_same_bits() {
        for (m, n, k) in [(77, 21, 300), (19, NC + 45, 70)] {
            let (_, one) = product(m, n, k, false, true, true, 0.5, 1);
            for threads in [2, 3, 7] {
                let (_, many) = product(m, n, k, false, true, true, 0.5, threads);
                let same = one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "({m}×{n}×{k}) differs between 1 and {threads} pieces");
            }
        }
    }

    /// test_wasm.sh sets SEWD_EXPECT_RELAXED_SIMD for its relaxed SIMD run: that run must
    /// really build the relaxed kernel, and the other must not.
    #[wasm_bindgen_test]
    fn built_with_the_simd_the_run_asks_for() {
        assert_eq!(cfg!(target_feature = "relaxed-simd"), option_env!("SEWD_EXPECT_RELAXED_SIMD").is_some());
    }

    #[wasm_bindgen_test]
    fn splits_are_aligned_and_cover_every_index() {
        assert_eq!(split(100, 6, 3), vec![(0, 36), (36, 36), (72, 28)]);
        assert_eq!(split(5, 6, 4), vec![(0, 5)]);
        assert_eq!(split(32, 8, 4), vec![(0, 8), (8, 8), (16, 8), (24, 8)]);
    }
}
