// Disentangled (DeBERTa-v2) self-attention for one batch item:
//   S[i, j] = scale * q_i . k_j + C2P[i, idx(i - j)] + P2C[j, idx(i - j)]
//   P = masked softmax over keys j < valid, context_i = sum_j P[i, j] v_j
// C2P = scale * Q PosK^T and P2C = scale * K PosQ^T are [T, 2*span] per head,
// computed before by matmul.wgsl (2*span is far below T on long clips, so
// gathering from them beats recomputing a dot product per score). idx is the
// clamped log-bucket relative position, computed here exactly as
// `backend::relative::embedding_index` does, in f32 like transformers; no
// table is uploaded. Padded keys (j >= valid) get probability 0; padded
// query rows still attend to the valid keys.
//
// Entries `main` and `wide` are flash-attention style: they walk the valid
// keys a tile at a time with an online softmax, so memory stays O(T) however
// long the clip, and write each row's max and sum to `stats`. Entry `probs`,
// launched only when the probabilities are requested, recomputes each score
// and writes exp(s - max) / sum.
//
// Bindings: 0 uniform AttentionParams (common.wgsl);
//   1 qkv   (read, [B, T, 3*H*D]: query | key | value per frame);
//   2 c2p   (read, [B, H, T, 2*span]; ignored unless terms & 1);
//   3 p2c   (read, [B, H, T, 2*span]; ignored unless terms & 2);
//   4 ctx   (read_write, [B, T, H*D]);
//   5 stats (read_write, [B, H, T, 2]: row max, row sum);
//   6 probs (read_write, [B, H, T, T]; `probs` only);
//   7 qkv4  (read, binding 1's buffer as vec4s; `main` only).
//
// main (D <= 64 in whole vec4s; FlashAttention-2 style): 128 invocations = 4
// key splits x 32 query rows, invocation s * 32 + r owning query row i0 + r
// and keys 4s .. 4s+3 of every 16-key tile (their scores and probabilities
// are the 4 components of a vec4). Its q and its context accumulator are 16
// vec4s each, in registers (private arrays indexed only by the counter of
// short barrier-free loops of constant trip count, which compilers unroll; at
// D = 128 they would take 256 registers, hence `wide`), and its
// online-softmax max and sum are scalars of its own: no score ever needs a
// cross-invocation reduction. Per tile the workgroup loads K and V (16 keys x
// 16 vec4s each, zeros past `valid` and past D) with vec4 loads, and the
// tile's 47 relative indices, into workgroup memory between 2 barriers; the
// 32 invocations of a split then read the same K/V vec4 at a time (a
// broadcast). Splitting each row's keys 4 ways gives a clip 4x the
// invocations of one row each (T = 1500 x 6 heads: 36k) to hide a large GPU's
// latency, for one merge at the end through the same workgroup memory: the
// row's max and sum, then the rescaled context, 16 dims a round. Rows past T
// (last workgroup) compute row T-1 again and store nothing. Workgroup memory:
// K/V tile 8 KiB + 47 indices, half of WebGPU's 16 KiB default. Launch:
// (ceil(T/32), H, splits). With splits > 1 (a short clip would leave a large
// GPU mostly idle), workgroup z takes keys z*split_len .. (z+1)*split_len
// only and writes its normalized context and (max, sum) to slot
// item*splits + z of ctx and stats, which are then scratch buffers that
// attention_merge.wgsl combines.
// wide (any D <= 128, for what main does not take): 128 invocations = 16 rows
// x 8 lanes; a lane owns 4 keys of each 32-key tile and 4 of every 32 output
// dims (16 registers). Workgroup memory: Q 16x128 + K/V chunk 32x32 + scores
// 16x32 + 48 indices, 14.2 KiB. Launch: (ceil(T/16), H, 1).
// probs: 256 invocations, one probability each, launch folded into (x, y).

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> c2p: array<f32>;
@group(0) @binding(3) var<storage, read> p2c: array<f32>;
@group(0) @binding(4) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> probs_out: array<f32>;
@group(0) @binding(7) var<storage, read> qkv4: array<vec4<f32>>;

// `wide`.
const BQ: u32 = 16u;
const BK: u32 = 32u;
const DC: u32 = 32u;
const DMAX: u32 = 128u;

var<workgroup> q_tile: array<f32, 2048>;  // [BQ][DMAX]
var<workgroup> kv_tile: array<f32, 1024>; // [BK][DC]
var<workgroup> s_tile: array<f32, 512>;   // [BQ][BK]
var<workgroup> rel: array<u32, 48>;       // idx of offset (i0 - j0) - (BK - 1) + o

// `relative::embedding_index(d, buckets, max_position, span)`.
fn rel_index(d: i32) -> u32 {
    var r = d;
    if (p.buckets > 0 && p.max_pos > 0) {
        let mid = p.buckets / 2;
        var a = abs(d);
        if (d < mid && d > -mid) {
            a = mid - 1;
        }
        if (a > mid) {
            var lp = f32(mid - 1);
            // At a = max_position - 1 the host computes log(x) / log(x) = 1
            // exactly; a GPU division need not, and ceil would step up.
            if (a != p.max_pos - 1) {
                lp = ceil(log(f32(a) / f32(mid)) / p.log_base * f32(mid - 1));
            }
            r = (i32(lp) + mid) * sign(d);
        }
    }
    return u32(clamp(r + p.span, 0, 2 * p.span - 1));
}

// Fills kv_tile with rows j0 .. j0+BK (0 past `valid`) and head dims
// d0 .. d0+DC (0 past D) of the key or value block starting at `base`.
fn load_kv(base: u32, pitch: u32, j0: u32, d0: u32, li: u32) {
    for (var e = li; e < BK * DC; e += 128u) {
        let j = j0 + e / DC;
        let d = d0 + e % DC;
        var v = 0.0;
        if (j < p.valid && d < p.d) {
            v = qkv[base + j * pitch + d];
        }
        kv_tile[e] = v;
    }
}

// acc += P[r, :] V[:, chunk] for this lane's 4 dims of the chunk in kv_tile.
fn pv(acc: vec4<f32>, r: u32, lane: u32) -> vec4<f32> {
    var a = acc;
    for (var jj = 0u; jj < BK; jj++) {
        let v = vec4<f32>(kv_tile[jj * DC + lane], kv_tile[jj * DC + lane + 8u],
                          kv_tile[jj * DC + lane + 16u], kv_tile[jj * DC + lane + 24u]);
        a = fma(vec4<f32>(s_tile[r * BK + jj]), v, a);
    }
    return a;
}

fn store_ctx(at: u32, d0: u32, lane: u32, acc: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        let d = d0 + lane + 8u * c;
        if (d < p.d) {
            ctx[at + d] = acc[c];
        }
    }
}

@compute @workgroup_size(128, 1, 1)
fn wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.y;
    let z = p.item * p.heads + h;
    let i0 = wg.x * BQ;
    let r = li / 8u;
    let lane = li % 8u;
    let i = i0 + r;
    let pitch = 3u * p.hd;
    let q_base = p.item * p.t * pitch + h * p.d;
    let k_base = q_base + p.hd;
    let v_base = q_base + 2u * p.hd;
    let c2p_on = (p.terms & 1u) != 0u;
    let p2c_on = (p.terms & 2u) != 0u;

    for (var e = li; e < BQ * p.d; e += 128u) {
        let rr = e / p.d;
        let dd = e % p.d;
        var v = 0.0;
        if (i0 + rr < p.t) {
            v = qkv[q_base + (i0 + rr) * pitch + dd];
        }
        q_tile[rr * DMAX + dd] = v;
    }

    var m = NEG_BIG;
    var l = 0.0;
    // Output dims ch*32 + lane + 8c live in acc_ch[c]: vectors rather than
    // a private array, so they stay in registers on every compiler.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var j0 = 0u; j0 < p.valid; j0 += BK) {
        workgroupBarrier();
        if ((c2p_on || p2c_on) && li < BQ + BK - 1u) {
            rel[li] = rel_index(i32(i0) - i32(j0) - i32(BK - 1u) + i32(li));
        }

        // q_i . k_j for this lane's keys lane + 8c, head dims in chunks of DC.
        var s = vec4<f32>(0.0);
        for (var d0 = 0u; d0 < p.d; d0 += DC) {
            workgroupBarrier();
            load_kv(k_base, pitch, j0, d0, li);
            workgroupBarrier();
            let dn = min(DC, p.d - d0);
            for (var dd = 0u; dd < dn; dd++) {
                let k = vec4<f32>(kv_tile[lane * DC + dd], kv_tile[(lane + 8u) * DC + dd],
                                  kv_tile[(lane + 16u) * DC + dd], kv_tile[(lane + 24u) * DC + dd]);
                s = fma(vec4<f32>(q_tile[r * DMAX + d0 + dd]), k, s);
            }
        }

        s *= p.scale;
        for (var c = 0u; c < 4u; c++) {
            let jj = lane + 8u * c;
            let j = j0 + jj;
            var v = NEG_BIG;
            if (j < p.valid) {
                v = s[c];
                let ri = rel[r + BK - 1u - jj];
                if (c2p_on && i < p.t) {
                    v += c2p[(z * p.t + i) * p.two_span + ri];
                }
                if (p2c_on) {
                    v += p2c[(z * p.t + j) * p.two_span + ri];
                }
            }
            s[c] = v;
            s_tile[r * BK + jj] = v;
        }
        workgroupBarrier();
        var tmax = NEG_BIG;
        for (var jj = 0u; jj < BK; jj++) {
            tmax = max(tmax, s_tile[r * BK + jj]);
        }
        let m_new = max(m, tmax);
        let corr = exp(m - m_new);
        workgroupBarrier();
        for (var c = 0u; c < 4u; c++) {
            let jj = lane + 8u * c;
            var pv_ = 0.0;
            if (j0 + jj < p.valid) {
                pv_ = exp(s[c] - m_new);
            }
            s_tile[r * BK + jj] = pv_;
        }
        workgroupBarrier();
        var row_sum = 0.0;
        for (var jj = 0u; jj < BK; jj++) {
            row_sum += s_tile[r * BK + jj];
        }
        l = l * corr + row_sum;
        m = m_new;

        // acc = acc * corr + P V, head dims in chunks of DC (DMAX / DC = 4).
        acc0 *= corr;
        acc1 *= corr;
        acc2 *= corr;
        acc3 *= corr;
        workgroupBarrier();
        load_kv(v_base, pitch, j0, 0u, li);
        workgroupBarrier();
        acc0 = pv(acc0, r, lane);
        if (p.d > DC) {
            workgroupBarrier();
            load_kv(v_base, pitch, j0, DC, li);
            workgroupBarrier();
            acc1 = pv(acc1, r, lane);
        }
        if (p.d > 2u * DC) {
            workgroupBarrier();
            load_kv(v_base, pitch, j0, 2u * DC, li);
            workgroupBarrier();
            acc2 = pv(acc2, r, lane);
        }
        if (p.d > 3u * DC) {
            workgroupBarrier();
            load_kv(v_base, pitch, j0, 3u * DC, li);
            workgroupBarrier();
            acc3 = pv(acc3, r, lane);
        }
    }

    if (i < p.t) {
        var inv = 0.0;
        if (l > 0.0) {
            inv = 1.0 / l;
        }
        let at = (p.item * p.t + i) * p.hd + h * p.d;
        store_ctx(at, 0u, lane, acc0 * inv);
        store_ctx(at, DC, lane, acc1 * inv);
        store_ctx(at, 2u * DC, lane, acc2 * inv);
        store_ctx(at, 3u * DC, lane, acc3 * inv);
        if (lane == 0u) {
            stats[(z * p.t + i) * 2u] = m;
            stats[(z * p.t + i) * 2u + 1u] = l;
        }
    }
}

// `main`. FR * FS must be the 128 invocations, and the K/V tile (2 * FK * D4
// vec4s) doubles as the merge scratch, CH vec4s per invocation a round.
const FR: u32 = 32u;                   // query rows per workgroup (`ATT_ROWS`)
const FS: u32 = 4u;                    // key splits per row
const FK: u32 = 16u;                   // keys per tile
const KS: u32 = FK / FS;               // keys per invocation per tile: 4, one per vec4 lane
const D4: u32 = 16u;                   // vec4s of a head row (D <= 64)
const CH: u32 = 2u * FK * D4 / 128u;   // context vec4s merged per round

// K tile [FK][D4] then V tile [FK][D4]; after the key loop, merge scratch.
var<workgroup> kv4_tile: array<vec4<f32>, 2u * FK * D4>;
var<workgroup> rel4: array<u32, FR + FK - 1u>; // idx of offset (i0 - j0) - (FK - 1) + o

@compute @workgroup_size(128, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.y;
    let z = p.item * p.heads + h;
    let slot = p.item * p.splits + wg.z;
    let js = wg.z * p.split_len;
    let je = min(js + p.split_len, p.valid);
    let i0 = wg.x * FR;
    let r = li % FR;
    let s = li / FR;
    let i = i0 + r;
    // Rows past T (the last workgroup's) compute row T-1 again, never stored.
    let ic = min(i, p.t - 1u);
    let pitch4 = 3u * p.hd / 4u;
    let qb4 = (p.item * p.t * 3u * p.hd + h * p.d) / 4u;
    let k4 = qb4 + p.hd / 4u;
    let v4 = qb4 + 2u * p.hd / 4u;
    let dn4 = p.d / 4u;
    let c2p_on = (p.terms & 1u) != 0u;
    let p2c_on = (p.terms & 2u) != 0u;
    let kb = s * KS;

    // Head dims past D stay 0 in q, so they add nothing to a dot product.
    var q: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var e = 0u; e < D4; e++) {
        if (e < dn4) {
            q[e] = qkv4[qb4 + ic * pitch4 + e];
        }
    }
    var m = NEG_BIG;
    var l = 0.0;

    for (var j0 = js; j0 < je; j0 += FK) {
        workgroupBarrier();
        for (var n = 0u; n < 2u * FK * D4 / 128u; n++) {
            let e = n * 128u + li;
            let jj = (e / D4) % FK;
            let e4 = e % D4;
            let j = j0 + jj;
            var v = vec4<f32>(0.0);
            if (j < je && e4 < dn4) {
                v = qkv4[select(k4, v4, e >= FK * D4) + j * pitch4 + e4];
            }
            kv4_tile[e] = v;
        }
        if (c2p_on || p2c_on) {
            for (var o = li; o < FR + FK - 1u; o += 128u) {
                rel4[o] = rel_index(i32(i0) - i32(j0) - i32(FK - 1u) + i32(o));
            }
        }
        workgroupBarrier();

        if (j0 + kb < je) {
            // q . k for keys kb .. kb + 3 of the tile. The per-key values are
            // vec4 components, not private arrays: a loop indexing an array
            // by key, with loads and exp in its body, is one a compiler may
            // leave rolled, and then the array lives in (slow) memory.
            var d0 = vec4<f32>(0.0);
            var d1 = vec4<f32>(0.0);
            var d2 = vec4<f32>(0.0);
            var d3 = vec4<f32>(0.0);
            for (var e = 0u; e < D4; e++) {
                let qe = q[e];
                d0 = fma(qe, kv4_tile[kb * D4 + e], d0);
                d1 = fma(qe, kv4_tile[(kb + 1u) * D4 + e], d1);
                d2 = fma(qe, kv4_tile[(kb + 2u) * D4 + e], d2);
                d3 = fma(qe, kv4_tile[(kb + 3u) * D4 + e], d3);
            }
            let one = vec4<f32>(1.0);
            var sc = vec4<f32>(dot(d0, one), dot(d1, one), dot(d2, one), dot(d3, one)) * p.scale;
            let live = vec4<u32>(j0 + kb) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(je);
            if (c2p_on || p2c_on) {
                for (var k = 0u; k < KS; k++) {
                    let j = min(j0 + kb + k, je - 1u);
                    let ri = rel4[r + FK - 1u - kb - k];
                    var v = sc[k];
                    if (c2p_on) {
                        v += c2p[(z * p.t + ic) * p.two_span + ri];
                    }
                    if (p2c_on) {
                        v += p2c[(z * p.t + j) * p.two_span + ri];
                    }
                    sc[k] = v;
                }
            }
            sc = select(vec4<f32>(NEG_BIG), sc, live);
            // Online softmax: rescale only when the running max moves.
            let tmax = max(max(sc.x, sc.y), max(sc.z, sc.w));
            if (tmax > m) {
                let corr = exp(m - tmax);
                l *= corr;
                for (var e = 0u; e < D4; e++) {
                    acc[e] *= corr;
                }
                m = tmax;
            }
            let pk = select(vec4<f32>(0.0), exp(sc - vec4<f32>(m)), live);
            l += pk.x + pk.y + pk.z + pk.w;
            for (var e = 0u; e < D4; e++) {
                var a = acc[e];
                a = fma(vec4<f32>(pk.x), kv4_tile[(FK + kb) * D4 + e], a);
                a = fma(vec4<f32>(pk.y), kv4_tile[(FK + kb + 1u) * D4 + e], a);
                a = fma(vec4<f32>(pk.z), kv4_tile[(FK + kb + 2u) * D4 + e], a);
                a = fma(vec4<f32>(pk.w), kv4_tile[(FK + kb + 3u) * D4 + e], a);
                acc[e] = a;
            }
        }
    }

    // Merge the FS splits of each row: the row's max and sum first (exactly
    // what a single pass would have: mr is the max over every valid key) ...
    workgroupBarrier();
    kv4_tile[li] = vec4<f32>(m, l, 0.0, 0.0);
    workgroupBarrier();
    var mr = NEG_BIG;
    for (var t = 0u; t < FS; t++) {
        mr = max(mr, kv4_tile[t * FR + r].x);
    }
    var lr = 0.0;
    for (var t = 0u; t < FS; t++) {
        let e = kv4_tile[t * FR + r];
        lr += e.y * exp(e.x - mr);
    }
    var f = 0.0;
    if (lr > 0.0) {
        f = exp(m - mr) / lr;
    }
    // ... then the context, CH vec4s a round: every split hands over its
    // vec4s c*CH .. (c+1)*CH, rescaled, and split c % FS sums and stores them.
    let at = (slot * p.t + i) * p.hd + h * p.d;
    for (var c = 0u; c < D4 / CH; c++) {
        workgroupBarrier();
        // acc is indexed only by e, the counter of a loop without barriers,
        // so that unrolling it makes every index a constant.
        for (var e = 0u; e < D4; e++) {
            if (e / CH == c) {
                kv4_tile[(r * FS + s) * CH + e % CH] = acc[e] * f;
            }
        }
        workgroupBarrier();
        if (s == c % FS && i < p.t) {
            for (var k = 0u; k < CH; k++) {
                let d = (c * CH + k) * 4u;
                if (d < p.d) {
                    var sum = kv4_tile[r * FS * CH + k];
                    for (var t = 1u; t < FS; t++) {
                        sum += kv4_tile[(r * FS + t) * CH + k];
                    }
                    ctx[at + d] = sum.x;
                    ctx[at + d + 1u] = sum.y;
                    ctx[at + d + 2u] = sum.z;
                    ctx[at + d + 3u] = sum.w;
                }
            }
        }
    }
    if (s == 0u && i < p.t) {
        let st = ((slot * p.heads + h) * p.t + i) * 2u;
        stats[st] = mr;
        stats[st + 1u] = lr;
    }
}

@compute @workgroup_size(256, 1, 1)
fn probs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let e = folded_index(wg, nwg, li, 256u);
    if (e >= p.heads * p.t * p.t) {
        return;
    }
    let j = e % p.t;
    let i = (e / p.t) % p.t;
    let h = e / (p.t * p.t);
    let z = p.item * p.heads + h;
    var out = 0.0;
    if (j < p.valid) {
        let pitch = 3u * p.hd;
        let q_at = p.item * p.t * pitch + i * pitch + h * p.d;
        let k_at = p.item * p.t * pitch + j * pitch + p.hd + h * p.d;
        var dot = 0.0;
        for (var d = 0u; d < p.d; d++) {
            dot = fma(qkv[q_at + d], qkv[k_at + d], dot);
        }
        var v = dot * p.scale;
        if ((p.terms & 3u) != 0u) {
            let ri = rel_index(i32(i) - i32(j));
            if ((p.terms & 1u) != 0u) {
                v += c2p[(z * p.t + i) * p.two_span + ri];
            }
            if ((p.terms & 2u) != 0u) {
                v += p2c[(z * p.t + j) * p.two_span + ri];
            }
        }
        let at = (z * p.t + i) * 2u;
        out = exp(v - stats[at]) / stats[at + 1u];
    }
    probs_out[(z * p.t + i) * p.t + j] = out;
}
