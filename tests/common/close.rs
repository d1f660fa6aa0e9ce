//! The closeness check of the native and the wasm tests (one copy, included by both).

/// Max abs error over the max abs reference value; panics past `tol`, naming
/// the worst flat index. The first NaN is the worst error: a later finite
/// one must not replace it. Returns the relative error.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], got_shape: &[usize], want_shape: &[usize], tol: f32) -> f32 {
    assert_eq!(got_shape, want_shape, "{what}: shape");
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        if e.is_nan() {
            (worst, at) = (f32::NAN, i);
            break;
        }
        if e > worst {
            worst = e;
            at = i;
        }
    }
    let rel = worst / scale;
    assert!(
        rel <= tol,
        "{what}: max abs error {worst:.3e} / max abs {scale:.3e} = {rel:.3e} > {tol:.0e} at flat index {at} (got {}, want {})",
        got[at],
        want[at]
    );
    rel
}
