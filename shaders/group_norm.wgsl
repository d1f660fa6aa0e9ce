// GroupNorm with one group per channel, i.e. each channel of [B, T, C]
// normalized over time, in three launches:
//   stats:    per (item, time chunk of 512 frames, channel) the chunk's
//             mean and sum of squared deviations (two passes per lane,
//             then the 4 lanes merged);
//   finalize: per (item, channel) merge the chunks (Chan et al.) into the
//             mean and scale = gamma / sqrt(var + eps);
//   apply:    y = (x - mean) * scale + beta. Not x * scale + (beta -
//             mean * scale): with one frame (var 0) the scale is 1/sqrt(eps)
//             and that form loses x - mean's exact 0 to rounding (1e-5 off on
//             NVIDIA's driver, which fuses differently from lavapipe).
// Splitting time into chunks keeps the GPU busy on a 60 s clip (192 000
// frames, one channel block) and keeps every partial sum short, so f32 is
// enough where the CPU backend accumulates in f64.
//
// Bindings: 0 uniform Params; 1 x (read, [B, T, C]); 2 gamma (read, [C]);
//           3 beta (read, [C]); 4 partials (read_write, [B, chunks, C, 2]);
//           5 coeffs (read_write, [B, C, 2]: mean, scale); 6 y (read_write, [B, T, C]).
// stats: workgroup 64 channels x 4 time lanes (256), channels fastest so a
// row of channels-last input is one coalesced read; launch
// (ceil(C/64), chunks, B). finalize and apply: 256 invocations, one per
// output value, launch folded into (x, y).

struct Params {
    t: u32, c: u32, batch: u32, chunks: u32,
    eps: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> coeffs: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

const CHUNK: u32 = 512u;
var<workgroup> s_n: array<f32, 256>;
var<workgroup> s_mean: array<f32, 256>;
var<workgroup> s_m2: array<f32, 256>;

// Chan's parallel merge of (n, mean, m2) statistics.
fn merge(na: f32, ma: f32, qa: f32, nb: f32, mb: f32, qb: f32) -> vec3<f32> {
    let n = na + nb;
    if (n == 0.0) {
        return vec3<f32>(0.0, 0.0, 0.0);
    }
    let d = mb - ma;
    return vec3<f32>(n, ma + d * nb / n, qa + qb + d * d * na * nb / n);
}

@compute @workgroup_size(256, 1, 1)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x * 64u + li % 64u;
    let lane = li / 64u;
    let item = wg.z;
    let t0 = wg.y * CHUNK;
    let t1 = min(t0 + CHUNK, p.t);
    // Two passes over this lane's at most 128 frames, both relative to its
    // first frame (so a channel's large offset does not swamp the sum): the
    // sum, then the squared deviations from the mean. Unlike a Welford update
    // it divides once, not once per frame (Vulkan lets a division be off by
    // 2.5 ulp).
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    if (ch < p.c && t0 + lane < t1) {
        let shift = x[(item * p.t + t0 + lane) * p.c + ch];
        var sum = 0.0;
        for (var t = t0 + lane; t < t1; t += 4u) {
            sum += x[(item * p.t + t) * p.c + ch] - shift;
            n += 1.0;
        }
        let rel_mean = sum / n;
        for (var t = t0 + lane; t < t1; t += 4u) {
            let d = (x[(item * p.t + t) * p.c + ch] - shift) - rel_mean;
            m2 = fma(d, d, m2);
        }
        mean = shift + rel_mean;
    }
    s_n[li] = n;
    s_mean[li] = mean;
    s_m2[li] = m2;
    workgroupBarrier();
    if (lane == 0u && ch < p.c) {
        var acc = vec3<f32>(n, mean, m2);
        for (var l = 1u; l < 4u; l++) {
            let o = l * 64u + li;
            acc = merge(acc.x, acc.y, acc.z, s_n[o], s_mean[o], s_m2[o]);
        }
        let at = ((item * p.chunks + wg.y) * p.c + ch) * 2u;
        partials[at] = acc.y;
        partials[at + 1u] = acc.z;
    }
}

@compute @workgroup_size(256, 1, 1)
fn finalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i >= p.batch * p.c) {
        return;
    }
    let item = i / p.c;
    let ch = i % p.c;
    var acc = vec3<f32>(0.0, 0.0, 0.0);
    for (var k = 0u; k < p.chunks; k++) {
        let n = f32(min(CHUNK, p.t - k * CHUNK));
        let at = ((item * p.chunks + k) * p.c + ch) * 2u;
        acc = merge(acc.x, acc.y, acc.z, n, partials[at], partials[at + 1u]);
    }
    let var_ = acc.z / max(f32(p.t), 1.0);
    coeffs[i * 2u] = acc.y;
    coeffs[i * 2u + 1u] = gamma[ch] * inverseSqrt(var_ + p.eps);
}

@compute @workgroup_size(256, 1, 1)
fn apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i >= p.batch * p.t * p.c) {
        return;
    }
    let ch = i % p.c;
    let item = i / (p.t * p.c);
    let k = (item * p.c + ch) * 2u;
    y[i] = (x[i] - coeffs[k]) * coeffs[k + 1u] + beta[ch];
}
