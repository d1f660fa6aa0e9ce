// Combines the key splits of attention.wgsl's `main` (launched with
// splits > 1): split s of query row i, head h left its context normalized
// over its own keys, c_s, and its row max m_s and sum l_s. With
// M = max_s m_s and w_s = l_s * exp(m_s - M):
//   context = sum_s w_s c_s / sum_s w_s,   stats = (M, sum_s w_s),
// exactly what one pass over all keys gives. A split with no valid keys
// has l_s = 0 and weighs nothing.
//
// Bindings: 0 uniform AttentionParams (common.wgsl);
//   1 part_ctx   (read, [B * splits, T, H*D]);
//   2 part_stats (read, [B * splits, H, T, 2]);
//   3 ctx        (read_write, [B, T, H*D]);
//   4 stats      (read_write, [B, H, T, 2]).
// One invocation per context value of item `item`, launch folded into (x, y).

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> part_ctx: array<f32>;
@group(0) @binding(2) var<storage, read> part_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let e = folded_index(wg, nwg, li, 256u);
    if (e >= p.t * p.hd) {
        return;
    }
    let i = e / p.hd;
    let h = (e % p.hd) / p.d;
    let first = p.item * p.splits;
    var m = NEG_BIG;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, part_stats[(((first + s) * p.heads + h) * p.t + i) * 2u]);
    }
    var l = 0.0;
    var c = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let st = (((first + s) * p.heads + h) * p.t + i) * 2u;
        let w = part_stats[st + 1u] * exp(part_stats[st] - m);
        l += w;
        c = fma(w, part_ctx[(first + s) * p.t * p.hd + e], c);
    }
    if (l > 0.0) {
        c /= l;
    }
    ctx[p.item * p.t * p.hd + e] = c;
    if (e % p.d == 0u) {
        let st = ((p.item * p.heads + h) * p.t + i) * 2u;
        stats[st] = m;
        stats[st + 1u] = l;
    }
}
