// Shared helpers, prepended to every other shader file before compilation
// (the Rust side concatenates the text; WGSL has no #include).
//
// Nothing here declares bindings; the one struct is a uniform block that
// two files share. Activation codes match `gpu::kernels::act_code`: 0 none,
// 1 gelu (erf), 2 gelu (tanh), 3 relu, 4 selu, 5 tanh, 6 silu.

// The uniform block of attention.wgsl and attention_merge.wgsl, field for
// field `gpu::kernels::AttentionParams`.
struct AttentionParams {
    t: u32, heads: u32, d: u32, hd: u32,
    two_span: u32, terms: u32, buckets: i32, max_pos: i32,
    span: i32, scale: f32, log_base: f32, item: u32,
    valid: u32, splits: u32, split_len: u32, _p0: u32,
}

// A very negative finite number: WGSL has no infinity literal, and
// exp(-3e38 - m) is exactly 0 for any m a score can take.
const NEG_BIG: f32 = -3.0e38;

// Flat invocation index of a 1-D launch folded into (x, y) workgroups, for
// launches with more than `max_compute_workgroups_per_dimension` groups.
fn folded_index(wg: vec3<u32>, nwg: vec3<u32>, local: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + local;
}

// erf(x) as a rational function on [-4, 4] (erf is +-1 in f32 beyond).
// Same minimax form as the CPU backend, so both backends round alike;
// absolute error below 5e-7.
fn erf_approx(x_in: f32) -> f32 {
    let x = clamp(x_in, -4.0, 4.0);
    let x2 = x * x;
    var p = -2.7261423e-10;
    p = p * x2 + 2.7706814e-8;
    p = p * x2 + -2.101024e-6;
    p = p * x2 + -5.6925064e-5;
    p = p * x2 + -7.3499063e-4;
    p = p * x2 + -2.9546001e-3;
    p = p * x2 + -1.6096033e-2;
    p = p * x;
    var q = -1.4566072e-5;
    q = q * x2 + -2.1337406e-4;
    q = q * x2 + -1.682827e-3;
    q = q * x2 + -7.373329e-3;
    q = q * x2 + -1.426474e-2;
    return p / q;
}

// tanh through exp, clamped so exp cannot overflow; WGSL's builtin tanh
// has no precision guarantee on some backends for large |x|.
fn tanh_approx(x: f32) -> f32 {
    let e = exp(2.0 * clamp(x, -10.0, 10.0));
    return (e - 1.0) / (e + 1.0);
}

fn activate_value(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        case 2u: { return 0.5 * x * (1.0 + tanh_approx(0.7978845608 * (x + 0.044715 * x * x * x))); }
        case 3u: { return max(x, 0.0); }
        case 4u: { return 1.0507010 * (max(x, 0.0) + min(1.6732632 * (exp(min(x, 0.0)) - 1.0), 0.0)); }
        case 5u: { return tanh_approx(x); }
        case 6u: { return x / (1.0 + exp(-x)); }
        default: { return x; }
    }
}
