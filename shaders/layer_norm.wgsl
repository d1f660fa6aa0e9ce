// LayerNorm over the channels of each row of `x + residual`:
//   y = (v - mean) / sqrt(var + eps) * gamma + beta,  v = x (+ residual)
// with the population variance, as torch computes it.
//
// Bindings: 0 uniform Params; 1 x (read, [rows, C]); 2 residual (read,
//           [rows, C]; ignored unless has_residual); 3 gamma (read, [C]);
//           4 beta (read, [C]); 5 y (read_write, [rows, C]).
// One workgroup of 128 invocations per row: SEW-D rows are 32..1024 wide,
// so each invocation handles a few strided channels and the statistics
// come from two tree reductions in workgroup memory (mean first, then the
// squared deviations, which is more accurate than E[x^2] - E[x]^2).
// Rows beyond 65535 fold into the y dimension of the launch.

struct Params {
    rows: u32, c: u32, has_residual: u32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, 128>;

fn load(i: u32) -> f32 {
    var v = x[i];
    if (p.has_residual != 0u) {
        v += residual[i];
    }
    return v;
}

// Sum of `v` over the workgroup; every invocation gets the result.
fn workgroup_sum(v: f32, li: u32) -> f32 {
    partial[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            partial[li] += partial[li + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(128, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = wg.y * nwg.x + wg.x;
    // Uniform per workgroup, so the early exit keeps barriers uniform.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.c;
    var s = 0.0;
    for (var i = li; i < p.c; i += WG) {
        s += load(base + i);
    }
    let mean = workgroup_sum(s, li) / f32(p.c);
    var sq = 0.0;
    for (var i = li; i < p.c; i += WG) {
        let d = load(base + i) - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(sq, li) / f32(p.c) + p.eps);
    for (var i = li; i < p.c; i += WG) {
        y[base + i] = (load(base + i) - mean) * inv * gamma[i] + beta[i];
    }
}
