//! Elementwise and row kernels: activations, layer norm, softmax.
//!
//! `f32::exp` and friends call libm one value at a time; the polynomial
//! versions here are branch-free so LLVM vectorizes the loops (AVX2/AVX-512
//! through the runtime-dispatched copies below, SIMD128 on wasm). Their error
//! is a few ulp, far inside the 1e-4 tolerance against PyTorch.

use crate::config::Activation;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// e^x for x in the f32 range (clamped; underflows to about 1e-38, not 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x) by a rational approximation on [-4, 4] (erf is ±1 beyond in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_600_1e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    p / q
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-10.0, 10.0));
    (e - 1.0) / (e + 1.0)
}

#[inline(always)]
fn activate_one(x: f32, act: Activation) -> f32 {
    match act {
        Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2/pi)
            0.5 * x * (1.0 + tanh(C * (x + 0.044_715 * x * x * x)))
        }
        Activation::Relu => x.max(0.0),
        Activation::Selu => {
            const SCALE: f32 = 1.050_701;
            const ALPHA: f32 = 1.673_263_2;
            SCALE * (x.max(0.0) + (ALPHA * (exp(x.min(0.0)) - 1.0)).min(0.0))
        }
        Activation::Tanh => tanh(x),
        Activation::Silu => x / (1.0 + exp(-x)),
    }
}

#[inline(always)]
fn activate_impl(xs: &mut [f32], act: Activation) {
    // One loop per variant so each vectorizes without a per-element branch.
    macro_rules! each {
        ($a:expr) => {
            for x in xs.iter_mut() {
                *x = activate_one(*x, $a);
            }
        };
    }
    match act {
        Activation::Gelu => each!(Activation::Gelu),
        Activation::GeluTanh => each!(Activation::GeluTanh),
        Activation::Relu => each!(Activation::Relu),
        Activation::Selu => each!(Activation::Selu),
        Activation::Tanh => each!(Activation::Tanh),
        Activation::Silu => each!(Activation::Silu),
    }
}

/// Lanes of the reductions below: independent partial sums let LLVM keep
/// them in vector registers (a single running f32 sum may not be reordered).
const LANES: usize = 16;

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

#[inline(always)]
fn layer_norm_impl(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(width) {
        let mean = sum(row) / width as f32;
        let mut acc = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for c in chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += (v - mean) * (v - mean);
            }
        }
        let var = (acc.iter().sum::<f32>() + tail) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// Softmax of `row[..valid]` in place; `row[valid..]` becomes 0.
#[inline(always)]
fn softmax_impl(row: &mut [f32], valid: usize) {
    let (live, dead) = row.split_at_mut(valid.min(row.len()));
    dead.fill(0.0);
    if live.is_empty() {
        return;
    }
    let max = max(live);
    for v in live.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(live);
    for v in live.iter_mut() {
        *v *= inv;
    }
}

/// Defines a safe entry point that runs `$impl` compiled for AVX2+FMA when the
/// CPU has them, and the baseline build otherwise.
macro_rules! dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $imp:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) { $imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the features `fast` was compiled for were just detected.
                    return unsafe { fast($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

dispatch!(
    /// Applies `act` to every element.
    pub fn activate(xs: &mut [f32], act: Activation) => activate_impl
);
dispatch!(
    /// LayerNorm of each `width`-long row.
    pub fn layer_norm_rows(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_impl
);
dispatch!(
    /// Masked softmax of one row.
    pub fn softmax(row: &mut [f32], valid: usize) => softmax_impl
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        let mut worst_exp = 0.0f64;
        let mut worst_erf = 0.0f64;
        for i in -20000..20000 {
            let x = i as f32 * 0.004;
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64) - e).abs() / e);
            worst_erf = worst_erf.max(((erf(x) as f64) - libm_erf(x as f64)).abs());
        }
        assert!(worst_exp < 5e-7, "exp rel err {worst_exp}");
        assert!(worst_erf < 5e-7, "erf abs err {worst_erf}");
    }

    // erf by its Taylor series / continued fraction, in f64, for the test only.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc asymptotic is accurate to ~1e-9 here.
            let t = 1.0 / (x * x);
            let c = (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()) * (1.0 - 0.5 * t + 0.75 * t * t - 1.875 * t * t * t);
            return x.signum() * (1.0 - c);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn softmax_masks_the_tail() {
        let mut row = vec![1.0, 2.0, 3.0, 100.0];
        softmax(&mut row, 3);
        assert_eq!(row[3], 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut row = vec![1.0, 2.0];
        softmax(&mut row, 0);
        assert_eq!(row, vec![0.0, 0.0]);
    }
}
