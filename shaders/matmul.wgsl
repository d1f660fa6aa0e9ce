// Tiled GEMM with a fused epilogue:
//   C[z][m, n] = act(alpha * sum_k A[z](m, k) * B[z](k, n) + bias[z][n])
// f32 everywhere, accumulation included.
//
// One shader serves every dense product of the model:
//   * linear layers: A = activations [rows, K], B = weight stored [K, N];
//   * feature-encoder convolutions as an implicit GEMM: with channels-last
//     input, the window of output frame t is the contiguous run of
//     kernel*Cin values starting at t*stride*Cin, so A is the input itself
//     read with row pitch stride*Cin (a_mode 0, rows overlap; no im2col);
//   * the grouped, zero-padded positional conv (a_mode 1): A(m, k) gathers
//     x[t*stride + k / cin_g - pad, g*cin_g + k % cin_g], 0 outside;
//   * the relative-position terms of attention, batched over z = (batch, head).
// Row m of A splits into (item = m / a_rows, t = m % a_rows) so several batch
// items stack into one M. The batch index z splits into (z / zh, z % zh) with
// a stride for each part, for A, B, C and the bias.
//
// Bindings: 0 uniform Params; 1 A (read, f32); 2 B (read, f32);
//           3 bias (read, f32; ignored unless has_bias); 4 C (read_write, f32);
//           5 A again and 6 B again, the same buffers viewed as vec4<f32>
//           (both read-only, so binding one buffer twice is legal).
// Tile loads: each invocation brings 4 consecutive values of A (along k) and
// 4 of B (along n when B is n-contiguous, b_sn == 1, else along k) into
// workgroup memory. Where the host found that every such group of 4 is one
// aligned vec4 of the buffer (flags a_vec4 / b_vec4, computed per dispatch in
// Gpu::matmul: the offsets and strides that place the group are multiples of
// 4 floats and the group's extent, k or n, is a multiple of 4, so a group is
// either wholly inside the tensor or wholly outside), the 4 values come from
// one vec4 load; otherwise from 4 scalar loads (e.g. the first conv layer,
// Cin = 1 and stride 5). The flags are uniform, so the branch is free.
// Pool buffers are whole multiples of 16 bytes, so the vec4 view covers all
// of the data.
// Workgroup 16 x WG_ROWS invocations computes a (4 WG_ROWS)x64 tile of C, a
// 4x4 block per invocation (rows 4ty .. 4ty+3, columns 4tx .. 4tx+3).
// WG_ROWS is a pipeline-overridable constant: 16 (64x64 tiles) by default,
// 8 (32x64 tiles) where 64x64 tiles would leave a large GPU's cores idle,
// chosen per dispatch in Gpu::matmul. The tiles in
// workgroup memory are vec4s along m (A) and n (B), so each step of k costs
// an invocation 2 vec4 loads for 16 FMAs, where scalar tiles took 8 loads: on
// large GPUs the scalar loads, not the FMAs, were the limit. In a 32-wide
// SIMD group the A load is a broadcast (2 addresses) and the B loads are 16
// neighbouring vec4s. K advances 16 at a time through 2 x 4 KiB of workgroup
// memory, well under WebGPU's 16 KiB default. Launch: (ceil(N/64),
// ceil(M / (4 WG_ROWS)), batch).

struct Params {
    m: u32, n: u32, k: u32, a_mode: u32,
    a_off: u32, lda: u32, a_rows: u32, a_item: u32,
    b_off: u32, b_sk: u32, b_sn: u32, c_off: u32,
    ldc: u32, zh: u32, a_sb: u32, a_sh: u32,
    b_sb: u32, b_sh: u32, c_sb: u32, c_sh: u32,
    has_bias: u32, bias_sh: u32, act: u32, alpha: f32,
    cv_len: u32, cv_stride: u32, cv_pad: u32, cv_cin: u32,
    cv_cin_g: u32, a_vec4: u32, b_vec4: u32, m_start: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

override WG_ROWS: u32 = 16u;
const TN: u32 = 64u;
const TK: u32 = 16u;
const TN4: u32 = TN / 4u;

// A tile [TK][WG_ROWS] (at most 16) vec4s: A(m0 + 4r + c, k0 + kk) at [kk * WG_ROWS + r][c].
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TK][TN / 4]: B(k0 + kk, n0 + 4r + c) at [kk * TN4 + r][c]

@compute @workgroup_size(16, WG_ROWS, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let zb = wg.z / p.zh;
    let zi = wg.z % p.zh;
    let a_base = p.a_off + zb * p.a_sb + zi * p.a_sh;
    let b_base = p.b_off + zb * p.b_sb + zi * p.b_sh;
    let c_base = p.c_off + zb * p.c_sb + zi * p.c_sh;
    let tm4 = WG_ROWS;
    let m0 = p.m_start + wg.y * 4u * WG_ROWS;
    let n0 = wg.x * TN;

    // A loader: invocation li fills row li/4, k columns (li%4)*4 .. +4.
    let lr = li / 4u;
    let lk = (li % 4u) * 4u;
    let am = m0 + lr;
    let row_ok = am < p.m;
    let item = am / max(p.a_rows, 1u);
    let t = am % max(p.a_rows, 1u);
    var row_base = a_base + item * p.a_item + t * p.lda;
    let first_pos = i32(t * p.cv_stride) - i32(p.cv_pad);
    if (p.a_mode == 1u) {
        row_base = a_base + item * p.a_item;
    }

    let tx = li % 16u;
    let ty = li / 16u;
    // acc_i holds row 4ty + i, its lanes columns 4tx .. 4tx+3: vectors, not
    // a private array, so no compiler has to prove the indexing constant.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        if (p.a_vec4 != 0u) {
            // k0 + lk is a multiple of 4 and so is cv_cin_g in a_mode 1:
            // the 4 values share one input position and are contiguous.
            let kk = k0 + lk;
            var v = vec4<f32>(0.0);
            if (row_ok && kk + 3u < p.k) {
                if (p.a_mode == 0u) {
                    v = a4[(row_base + kk) / 4u];
                } else {
                    let pos = first_pos + i32(kk / p.cv_cin_g);
                    if (pos >= 0 && u32(pos) < p.cv_len) {
                        v = a4[(row_base + u32(pos) * p.cv_cin + kk % p.cv_cin_g) / 4u];
                    }
                }
            }
            a_tile[lk * tm4 + lr / 4u][lr % 4u] = v.x;
            a_tile[(lk + 1u) * tm4 + lr / 4u][lr % 4u] = v.y;
            a_tile[(lk + 2u) * tm4 + lr / 4u][lr % 4u] = v.z;
            a_tile[(lk + 3u) * tm4 + lr / 4u][lr % 4u] = v.w;
        } else {
            for (var q = 0u; q < 4u; q++) {
                let kk = k0 + lk + q;
                var v = 0.0;
                if (row_ok && kk < p.k) {
                    if (p.a_mode == 0u) {
                        v = a[row_base + kk];
                    } else {
                        let pos = first_pos + i32(kk / p.cv_cin_g);
                        if (pos >= 0 && u32(pos) < p.cv_len) {
                            v = a[row_base + u32(pos) * p.cv_cin + kk % p.cv_cin_g];
                        }
                    }
                }
                a_tile[(lk + q) * tm4 + lr / 4u][lr % 4u] = v;
            }
        }
        // The B tile is 256 groups of 4 values; fewer invocations take turns.
        for (var bi = li; bi < TK * TN4; bi += 16u * WG_ROWS) {
            if (p.b_sn == 1u && p.b_vec4 != 0u) {
                // n-contiguous weights, 4 neighbours in n as one vec4.
                let bk = bi / 16u;
                let bn = (bi % 16u) * 4u;
                let kk = k0 + bk;
                let nn = n0 + bn;
                var v = vec4<f32>(0.0);
                if (kk < p.k && nn + 3u < p.n) {
                    v = b4[(b_base + kk * p.b_sk + nn) / 4u];
                }
                b_tile[bk * TN4 + bn / 4u] = v;
            } else if (p.b_vec4 != 0u) {
                // k-contiguous operand (b_sk == 1), 4 neighbours in k as one vec4.
                let bn = bi / 4u;
                let bk = (bi % 4u) * 4u;
                let kk = k0 + bk;
                let nn = n0 + bn;
                var v = vec4<f32>(0.0);
                if (kk + 3u < p.k && nn < p.n) {
                    v = b4[(b_base + kk + nn * p.b_sn) / 4u];
                }
                b_tile[bk * TN4 + bn / 4u][bn % 4u] = v.x;
                b_tile[(bk + 1u) * TN4 + bn / 4u][bn % 4u] = v.y;
                b_tile[(bk + 2u) * TN4 + bn / 4u][bn % 4u] = v.z;
                b_tile[(bk + 3u) * TN4 + bn / 4u][bn % 4u] = v.w;
            } else if (p.b_sn == 1u) {
                // n-contiguous weights: each invocation reads 4 neighbours in n.
                let bk = bi / 16u;
                let bn = (bi % 16u) * 4u;
                var v = vec4<f32>(0.0);
                for (var q = 0u; q < 4u; q++) {
                    let kk = k0 + bk;
                    let nn = n0 + bn + q;
                    if (kk < p.k && nn < p.n) {
                        v[q] = b[b_base + kk * p.b_sk + nn];
                    }
                }
                b_tile[bk * TN4 + bn / 4u] = v;
            } else {
                // k-contiguous (transposed) operand: read 4 neighbours in k.
                let bn = bi / 4u;
                let bk = (bi % 4u) * 4u;
                for (var q = 0u; q < 4u; q++) {
                    let kk = k0 + bk + q;
                    let nn = n0 + bn;
                    var v = 0.0;
                    if (kk < p.k && nn < p.n) {
                        v = b[b_base + kk * p.b_sk + nn * p.b_sn];
                    }
                    b_tile[(bk + q) * TN4 + bn / 4u][bn % 4u] = v;
                }
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = a_tile[kk * tm4 + ty];
            let br = b_tile[kk * TN4 + tx];
            acc0 = fma(vec4<f32>(ar.x), br, acc0);
            acc1 = fma(vec4<f32>(ar.y), br, acc1);
            acc2 = fma(vec4<f32>(ar.z), br, acc2);
            acc3 = fma(vec4<f32>(ar.w), br, acc3);
        }
        workgroupBarrier();
    }

    let m = m0 + 4u * ty;
    let n = n0 + 4u * tx;
    store_row(m, n, zi, c_base, acc0);
    store_row(m + 1u, n, zi, c_base, acc1);
    store_row(m + 2u, n, zi, c_base, acc2);
    store_row(m + 3u, n, zi, c_base, acc3);
}

// Epilogue for one row of this invocation's outputs: columns n .. n+3.
fn store_row(m: u32, n: u32, zi: u32, c_base: u32, acc: vec4<f32>) {
    if (m >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = n + j;
        if (col < p.n) {
            var v = acc[j] * p.alpha;
            if (p.has_bias != 0u) {
                v += bias[zi * p.bias_sh + col];
            }
            c[c_base + m * p.ldc + col] = activate_value(v, p.act);
        }
    }
}
