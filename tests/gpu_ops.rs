//! Every GPU op against the CPU backend on awkward shapes: odd lengths,
//! lengths off the tile sizes, single frames, padded batches, attention past
//! the bucket midpoint. Fails (does not skip) when no GPU adapter exists;
//! natively lavapipe (Mesa's CPU Vulkan driver) is enough.

mod common;

use std::sync::OnceLock;

use sewd::backend::cpu::Cpu;
use sewd::backend::gpu::Gpu;
use sewd::backend::{relative, AttentionSpec, Backend, BackendError, ConvSpec};
use sewd::config::Activation;
use sewd::weights::TensorData;

const TOL: f32 = 1e-5;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("adapter: {}", g.adapter_name());
        g
    })
}

/// Deterministic values in [-scale, scale).
fn rand(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn data(shape: &[usize], seed: u64) -> TensorData {
    TensorData { shape: shape.to_vec(), data: rand(shape.iter().product(), seed, 1.0) }
}

/// The same host tensor on both backends.
fn both(shape: &[usize], seed: u64) -> (<Cpu as Backend>::Tensor, <Gpu as Backend>::Tensor) {
    let d = data(shape, seed);
    (Cpu.upload(shape, &d.data).unwrap(), gpu().upload(shape, &d.data).unwrap())
}

fn check(what: &str, cpu: &<Cpu as Backend>::Tensor, gpu_t: &<Gpu as Backend>::Tensor, tol: f32) {
    let want = Cpu.download(cpu).unwrap();
    let got = gpu().download(gpu_t).unwrap();
    common::assert_close(what, &got.data, &want.data, &got.shape, &want.shape, tol);
}

const ACTS: [Activation; 6] =
    [Activation::Gelu, Activation::GeluTanh, Activation::Relu, Activation::Selu, Activation::Tanh, Activation::Silu];

#[test]
fn linear_odd_shapes_bias_and_every_activation() {
    // The GEMM reads A as vec4s when in_features % 4 == 0 and B when
    // out_features % 4 == 0 (scalar loads otherwise): both, either and
    // neither, K off the 16-wide tile step, N off the 64-wide tile, M of 1.
    let shapes = [
        (1, 3, 5),
        (37, 45, 67),
        (130, 64, 129),
        (2 * 65, 384, 16),
        (1, 20, 12),
        (65, 36, 68),
        (3, 8, 4),
        (70, 12, 5),
        (9, 7, 8),
        // Grids of at least 256 64x64 tiles, which take those tiles (the
        // shapes above take 32x64 ones; `matmul_tiles_by_grid_size`).
        (1090, 36, 1000),
        (1037, 45, 1003),
    ];
    for (i, &(rows, inp, out)) in shapes.iter().enumerate() {
        let (xc, xg) = both(&[rows, inp], i as u64);
        let w = data(&[out, inp], 100 + i as u64);
        let (wc, wg) = (Cpu.prepare_linear(&w).unwrap(), gpu().prepare_linear(&w).unwrap());
        let (bc, bg) = both(&[out], 200 + i as u64);
        let acts = std::iter::once(None).chain(ACTS.iter().copied().map(Some));
        for act in acts {
            let c = Cpu.linear(&xc, &wc, Some(&bc), act).unwrap();
            let g = gpu().linear(&xg, &wg, Some(&bg), act).unwrap();
            check(&format!("linear {rows}x{inp}->{out} {act:?}"), &c, &g, TOL);
        }
        let c = Cpu.linear(&xc, &wc, None, None).unwrap();
        let g = gpu().linear(&xg, &wg, None, None).unwrap();
        check(&format!("linear {rows}x{inp}->{out} no bias"), &c, &g, TOL);
    }
    // Rank 3 input.
    let (xc, xg) = both(&[2, 7, 9], 9);
    let w = data(&[11, 9], 10);
    let c = Cpu.linear(&xc, &Cpu.prepare_linear(&w).unwrap(), None, None).unwrap();
    let g = gpu().linear(&xg, &gpu().prepare_linear(&w).unwrap(), None, None).unwrap();
    check("linear rank 3", &c, &g, TOL);
}

#[test]
fn activations_elementwise() {
    let mut v = rand(1001, 3, 6.0);
    v.extend([0.0, -0.0, 20.0, -20.0, 100.0, -100.0]);
    for act in ACTS {
        let c = Cpu.activate(Cpu.upload(&[1, 1, v.len()], &v).unwrap(), act).unwrap();
        let g = gpu().activate(gpu().upload(&[1, 1, v.len()], &v).unwrap(), act).unwrap();
        check(&format!("activate {act:?}"), &c, &g, 2e-6);
    }
}

fn conv_case(name: &str, batch: usize, len: usize, spec: ConvSpec, seed: u64) {
    let (xc, xg) = both(&[batch, len, spec.in_channels], seed);
    let w = data(&[spec.out_channels, spec.in_channels / spec.groups, spec.kernel], seed + 1);
    let (bc, bg) = both(&[spec.out_channels], seed + 2);
    let (wc, wg) = (Cpu.prepare_conv(&w, &spec).unwrap(), gpu().prepare_conv(&w, &spec).unwrap());
    let c = Cpu.conv1d(&xc, &wc, Some(&bc), &spec).unwrap();
    let g = gpu().conv1d(&xg, &wg, Some(&bg), &spec).unwrap();
    check(name, &c, &g, TOL);
    let c = Cpu.conv1d(&xc, &wc, None, &spec).unwrap();
    let g = gpu().conv1d(&xg, &wg, None, &spec).unwrap();
    check(&format!("{name} no bias"), &c, &g, TOL);
}

#[test]
fn feature_encoder_convolutions() {
    let plain = |cin, cout, kernel, stride| ConvSpec { in_channels: cin, out_channels: cout, kernel, stride, padding: 0, groups: 1, trim_end: 0 };
    conv_case("conv first layer", 2, 1003, plain(1, 16, 10, 5), 1);
    conv_case("conv k3 s2", 1, 201, plain(16, 32, 3, 2), 2);
    conv_case("conv k2 s2 wide", 3, 130, plain(48, 67, 2, 2), 3);
    conv_case("conv one frame", 1, 10, plain(1, 8, 10, 5), 4);
    conv_case("conv too short", 1, 5, plain(1, 8, 10, 5), 5);
    // vec4 tile loads (row pitch, item stride, K = 12 and N all multiples of 4)
    // and the scalar fallbacks: the item stride 101·2 is not, nor is K = 18.
    conv_case("conv cin4 k3 s1 (vec4)", 2, 57, plain(4, 12, 3, 1), 6);
    conv_case("conv cin2 odd length (scalar A)", 2, 101, plain(2, 8, 2, 2), 7);
    conv_case("conv cin6 k3 s2 (scalar A)", 1, 40, plain(6, 8, 3, 2), 8);
}

#[test]
fn positional_conv_grouped_padded() {
    let pos = |h, kernel, stride, groups| ConvSpec {
        in_channels: h,
        out_channels: h,
        kernel,
        stride,
        padding: kernel / 2,
        groups,
        trim_end: usize::from(kernel % 2 == 0),
    };
    conv_case("pos conv k15 g4 s2", 2, 77, pos(32, 15, 2, 4), 10);
    conv_case("pos conv k16 g2 s3", 1, 50, pos(32, 16, 3, 2), 11);
    conv_case("pos conv k31 g1 s2", 1, 9, pos(24, 31, 2, 1), 12);
    conv_case("pos conv k128 g16 s2", 1, 301, pos(384, 128, 2, 16), 13);
    // 6 channels per group: scalar loads for A and B; 4: vec4 for both.
    conv_case("pos conv k5 g2 s1 (scalar)", 2, 33, pos(12, 5, 1, 2), 14);
    conv_case("pos conv k4 g5 s2 (vec4)", 2, 41, pos(20, 4, 2, 5), 15);
}

#[test]
fn norms() {
    for &(b, t, c) in &[(2, 1500, 20), (1, 1, 16), (1, 513, 64), (3, 7, 130)] {
        let (xc, xg) = both(&[b, t, c], 20);
        let (gc, gg) = both(&[c], 21);
        let (bc, bg) = both(&[c], 22);
        let cn = Cpu.group_norm_time(&xc, &gc, &bc, 1e-5).unwrap();
        let gn = gpu().group_norm_time(&xg, &gg, &bg, 1e-5).unwrap();
        check(&format!("group_norm {b}x{t}x{c}"), &cn, &gn, 1e-5);
        let (rc, rg) = both(&[b, t, c], 23);
        let cl = Cpu.layer_norm(&xc, Some(&rc), &gc, &bc, 1e-5).unwrap();
        let gl = gpu().layer_norm(&xg, Some(&rg), &gg, &bg, 1e-5).unwrap();
        check(&format!("layer_norm+residual {b}x{t}x{c}"), &cl, &gl, 1e-5);
        let cl = Cpu.layer_norm(&xc, None, &gc, &bc, 1e-7).unwrap();
        let gl = gpu().layer_norm(&xg, None, &gg, &bg, 1e-7).unwrap();
        check(&format!("layer_norm {b}x{t}x{c}"), &cl, &gl, 1e-5);
    }
    // A channel with a large offset: the variance must not cancel.
    let mut v = rand(2 * 700 * 3, 30, 1.0);
    v.iter_mut().step_by(3).for_each(|x| *x += 1000.0);
    let (g, b) = (vec![1.0; 3], vec![0.0; 3]);
    let cn = Cpu.group_norm_time(&Cpu.upload(&[2, 700, 3], &v).unwrap(), &Cpu.upload(&[3], &g).unwrap(), &Cpu.upload(&[3], &b).unwrap(), 1e-5).unwrap();
    let gn = gpu()
        .group_norm_time(&gpu().upload(&[2, 700, 3], &v).unwrap(), &gpu().upload(&[3], &g).unwrap(), &gpu().upload(&[3], &b).unwrap(), 1e-5)
        .unwrap();
    check("group_norm offset channel", &cn, &gn, 1e-4);
}

#[test]
fn pooling_upsampling_masking_sums() {
    // avg_pool_add: pooled length from x, pos shorter or longer.
    for &(len, plen, f) in &[(101, 50, 2), (101, 40, 2), (100, 40, 3), (1, 1, 1)] {
        let (xc, xg) = both(&[2, len, 9], 40);
        let (pc, pg) = both(&[2, plen, 9], 41);
        let c = Cpu.avg_pool_add(&xc, f, &pc).unwrap();
        let g = gpu().avg_pool_add(&xg, f, &pg).unwrap();
        check(&format!("avg_pool_add {len}/{f} pos {plen}"), &c, &g, TOL);
    }
    for &(t, f, len) in &[(50, 2, 101), (50, 2, 99), (33, 3, 100), (1, 2, 2)] {
        let (xc, xg) = both(&[2, t, f * 5], 42);
        let c = Cpu.upsample(&xc, f, len).unwrap();
        let g = gpu().upsample(&xg, f, len).unwrap();
        check(&format!("upsample {t}x{f} -> {len}"), &c, &g, 0.0);
    }
    let (xc, xg) = both(&[3, 37, 5], 43);
    let lengths = [37, 12, 0];
    let c = Cpu.mask_frames(xc, &lengths).unwrap();
    let g = gpu().mask_frames(xg, &lengths).unwrap();
    check("mask_frames", &c, &g, 0.0);
    let ts: Vec<_> = (0..5).map(|i| both(&[2, 33, 7], 50 + i)).collect();
    let w = [0.1, -0.5, 2.0, 0.25, 1.0];
    let c = Cpu.weighted_sum(&ts.iter().map(|t| &t.0).collect::<Vec<_>>(), &w).unwrap();
    let g = gpu().weighted_sum(&ts.iter().map(|t| &t.1).collect::<Vec<_>>(), &w).unwrap();
    check("weighted_sum", &c, &g, TOL);
    let (xc, xg) = both(&[3, 301, 70], 60);
    let lengths = [301, 17, 1];
    let c = Cpu.masked_mean(&xc, &lengths).unwrap();
    let g = gpu().masked_mean(&xg, &lengths).unwrap();
    check("masked_mean", &c, &g, TOL);
}

struct AttCase {
    name: &'static str,
    lengths: Vec<usize>,
    len: usize,
    spec: AttentionSpec,
}

fn att_spec(heads: usize, head_dim: usize, c2p: bool, p2c: bool, buckets: i64, max_position: usize) -> AttentionSpec {
    let span = if buckets > 0 { buckets as usize } else { max_position };
    AttentionSpec { heads, head_dim, c2p, p2c, span, buckets, max_position, relative: true }
}

fn attention_case(case: &AttCase, seed: u64) {
    let (batch, len, spec) = (case.lengths.len(), case.len, &case.spec);
    let hd = spec.heads * spec.head_dim;
    let (qc, qg) = both(&[batch, len, 3 * hd], seed);
    let (kc, kg) = both(&[2 * spec.span, hd], seed + 1);
    let (pc, pg) = both(&[2 * spec.span, hd], seed + 2);
    let (cc, cp) = Cpu.attention(&qc, Some(&kc), Some(&pc), &case.lengths, spec, true).unwrap();
    let (gc, gp) = gpu().attention(&qg, Some(&kg), Some(&pg), &case.lengths, spec, true).unwrap();
    check(&format!("{} context", case.name), &cc, &gc, 2e-5);
    check(&format!("{} probs", case.name), &cp.unwrap(), &gp.unwrap(), 2e-5);
    // Without probabilities: the context alone must match too.
    let (gc2, none) = gpu().attention(&qg, Some(&kg), Some(&pg), &case.lengths, spec, false).unwrap();
    assert!(none.is_none());
    check(&format!("{} context (no probs)", case.name), &cc, &gc2, 2e-5);
}

#[test]
fn attention_against_cpu() {
    let cases = [
        AttCase { name: "T=300 b256 both, padded batch", len: 300, lengths: vec![300, 177], spec: att_spec(2, 16, true, true, 256, 512) },
        AttCase { name: "T=300 b16 both", len: 300, lengths: vec![300], spec: att_spec(3, 8, true, true, 16, 64) },
        AttCase { name: "T=1", len: 1, lengths: vec![1], spec: att_spec(2, 16, true, true, 256, 512) },
        AttCase { name: "T=70 D=64 c2p", len: 70, lengths: vec![70, 33], spec: att_spec(2, 64, true, false, 32, 128) },
        AttCase { name: "T=45 D=128 p2c", len: 45, lengths: vec![45], spec: att_spec(1, 128, false, true, 32, 128) },
        AttCase { name: "T=129 D=24 no buckets", len: 129, lengths: vec![100], spec: att_spec(2, 24, true, true, -1, 40) },
        AttCase { name: "T=33 zero valid", len: 33, lengths: vec![33, 0], spec: att_spec(2, 16, true, true, 8, 16) },
        // Head size 6: the position terms' GEMM takes the scalar tile loads.
        AttCase { name: "T=40 D=6 scalar loads", len: 40, lengths: vec![40, 29], spec: att_spec(3, 6, true, true, 16, 64) },
        AttCase {
            name: "T=50 no relative",
            len: 50,
            lengths: vec![50, 20],
            spec: AttentionSpec { relative: false, ..att_spec(2, 16, true, true, 32, 64) },
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        attention_case(case, 70 + 10 * i as u64);
    }
}

/// The bundled English model's attention geometry (4 heads of 36, 64
/// buckets, 256 positions), with small and large scores.
#[test]
fn attention_demo_model_geometry() {
    for &len in &[42usize, 85, 300] {
        for &scale in &[1.0f32, 8.0] {
            let spec = att_spec(4, 36, true, true, 64, 256);
            let hd = 144;
            let q = rand(len * 3 * hd, 900 + len as u64, scale);
            let k = rand(2 * 64 * hd, 901, scale);
            let (qc, qg) = (Cpu.upload(&[1, len, 3 * hd], &q).unwrap(), gpu().upload(&[1, len, 3 * hd], &q).unwrap());
            let (kc, kg) = (Cpu.upload(&[128, hd], &k).unwrap(), gpu().upload(&[128, hd], &k).unwrap());
            let (cc, _) = Cpu.attention(&qc, Some(&kc), Some(&kc), &[len], &spec, false).unwrap();
            let (gc, _) = gpu().attention(&qg, Some(&kg), Some(&kg), &[len], &spec, false).unwrap();
            check(&format!("demo geometry T={len} scale {scale}"), &cc, &gc, 2e-5);
        }
    }
}

/// The row-per-invocation kernel (`attention::main`, head sizes up to 64 in
/// whole vec4s) and the one it falls back to (`attention::wide`) on the
/// edges of their tiles (32 rows and 16 keys; 16 rows and 32 keys): one
/// frame, 17 frames, 100 frames with shorter items (padded keys, padded
/// query rows, a length on a key-tile edge), with and without the relative
/// terms. `attention_entries` checks which kernel each head size takes.
#[test]
fn attention_row_kernel_edges() {
    let mut seed = 400;
    for &(len, ref lengths) in &[(1usize, vec![1usize]), (17, vec![17, 5]), (100, vec![100, 63, 16])] {
        for &head_dim in &[64usize, 36, 128, 66] {
            for relative in [true, false] {
                let spec = AttentionSpec { relative, ..att_spec(2, head_dim, true, true, 32, 128) };
                let name = format!("T={len} {lengths:?} D={head_dim} relative {relative}");
                let case = AttCase { name: Box::leak(name.into_boxed_str()), len, lengths: lengths.clone(), spec };
                attention_case(&case, seed);
                seed += 10;
            }
        }
    }
}

/// Which GEMM tiles each grid size takes: 32x64 below 256 64x64 tiles.
#[test]
fn matmul_tiles_by_grid_size() {
    let g = Gpu::new_profiled().unwrap_or_else(|e| panic!("{e}"));
    for &(rows, out, label) in &[(9usize, 8usize, "matmul::main 32x64 [linear]"), (1090, 1000, "matmul::main [linear]"), (960, 1024, "matmul::main 32x64 [linear]")] {
        let x = g.upload(&[rows, 4], &rand(rows * 4, 1, 1.0)).unwrap();
        let w = g.prepare_linear(&data(&[out, 4], 2)).unwrap();
        g.download(&g.linear(&x, &w, None, None).unwrap()).unwrap();
        let labels: Vec<String> = g.take_profile().unwrap().into_iter().map(|k| k.label).collect();
        assert_eq!(labels, [label], "{rows}x4 -> {out}");
    }
}

/// Which attention kernel runs for which head size.
#[test]
fn attention_entries() {
    let g = Gpu::new_profiled().unwrap_or_else(|e| panic!("{e}"));
    for &(head_dim, entry) in &[(64usize, "attention::main"), (16, "attention::main"), (36, "attention::main"), (6, "attention::wide"), (66, "attention::wide"), (128, "attention::wide")] {
        let spec = att_spec(2, head_dim, true, true, 16, 64);
        let hd = 2 * head_dim;
        let qkv = g.upload(&[1, 20, 3 * hd], &rand(20 * 3 * hd, 9, 1.0)).unwrap();
        let pos = g.upload(&[2 * spec.span, hd], &rand(2 * spec.span * hd, 10, 1.0)).unwrap();
        let (ctx, _) = g.attention(&qkv, Some(&pos), Some(&pos), &[20], &spec, false).unwrap();
        g.download(&ctx).unwrap();
        let labels: Vec<String> = g.take_profile().unwrap().into_iter().map(|k| k.label).collect();
        assert!(labels.iter().any(|l| l == entry), "D={head_dim}: no {entry} in {labels:?}");
        assert!(labels.iter().filter(|l| l.starts_with("attention::")).count() == 1, "D={head_dim}: {labels:?}");
    }
}

/// Short clips split each row's keys across workgroups and merge the
/// splits; long ones do not (`attention_against_cpu` checks the numbers).
#[test]
fn attention_key_splits() {
    let g = Gpu::new_profiled().unwrap_or_else(|e| panic!("{e}"));
    // 32 heads of 4: at T = 1100, 35 row groups a head fill a large GPU.
    let spec = att_spec(32, 4, true, true, 16, 64);
    for &(len, merged) in &[(300usize, true), (20, false), (1100, false)] {
        let qkv = g.upload(&[1, len, 384], &rand(len * 384, 9, 1.0)).unwrap();
        let pos = g.upload(&[32, 128], &rand(32 * 128, 10, 1.0)).unwrap();
        let (ctx, _) = g.attention(&qkv, Some(&pos), Some(&pos), &[len], &spec, false).unwrap();
        g.download(&ctx).unwrap();
        let labels: Vec<String> = g.take_profile().unwrap().into_iter().map(|k| k.label).collect();
        assert_eq!(labels.iter().any(|l| l == "attention_merge::main"), merged, "T={len}: {labels:?}");
    }
}

/// Reads the GPU's relative-position index back through the attention
/// probabilities: with one head of size 1, q = 1, k = 0 and pos_key[r] =
/// 0.01·r, the score of (i, j) is scale·0.01·idx(i - j), so log-probability
/// differences along a row give idx exactly. Rows 0 and T-1 cover every
/// offset in -(T-1)..=T-1.
#[test]
fn bucket_indices_match_cpu_exactly() {
    let len = 1000;
    for &(buckets, max) in &[(256i64, 512usize), (32, 128), (16, 64), (-1, 512)] {
        let spec = AttentionSpec { heads: 1, head_dim: 1, c2p: true, p2c: false, span: 0, buckets, max_position: max, relative: true };
        let spec = AttentionSpec { span: if buckets > 0 { buckets as usize } else { max }, ..spec };
        let mut qkv = vec![0.0f32; len * 3];
        qkv.iter_mut().step_by(3).for_each(|q| *q = 1.0);
        let step = 0.01f32;
        let pos: Vec<f32> = (0..2 * spec.span).map(|r| r as f32 * step).collect();
        let g = gpu();
        let (_, probs) = g
            .attention(&g.upload(&[1, len, 3], &qkv).unwrap(), Some(&g.upload(&[2 * spec.span, 1], &pos).unwrap()), None, &[len], &spec, true)
            .unwrap();
        let probs = g.download(&probs.unwrap()).unwrap().data;
        let unit = spec.scale() * step;
        for (i, sign) in [(0usize, -1i64), (len - 1, 1)] {
            let row = &probs[i * len..(i + 1) * len];
            // idx(0) = span sits at j = i.
            let at_zero = row[i].ln();
            for (j, p) in row.iter().enumerate() {
                let d = i as i64 - j as i64;
                let got = spec.span as f32 + (p.ln() - at_zero) / unit;
                let want = relative::embedding_index(d, buckets, max, spec.span);
                assert!((got - want as f32).abs() < 0.05, "b{buckets} m{max}: offset {d} ({sign}): GPU index {got}, CPU {want}");
            }
        }
    }
}

#[test]
fn one_submission_for_many_ops_and_reuse() {
    // A chain of ops read back once; then again with buffers from the pool.
    for round in 0..2 {
        let (xc, xg) = both(&[1, 129, 32], 90 + round);
        let w = TensorData { shape: vec![32, 32], data: rand(32 * 32, 91, 0.3) };
        let (wc, wg) = (Cpu.prepare_linear(&w).unwrap(), gpu().prepare_linear(&w).unwrap());
        let (mut c, mut g) = (xc, xg);
        for _ in 0..20 {
            c = Cpu.activate(Cpu.linear(&c, &wc, None, None).unwrap(), Activation::Tanh).unwrap();
            g = gpu().activate(gpu().linear(&g, &wg, None, None).unwrap(), Activation::Tanh).unwrap();
        }
        check(&format!("chain round {round}"), &c, &g, 1e-4);
    }
}

#[test]
fn parameters_of_many_dispatches_in_one_submission() {
    // Each input of a weighted sum is one dispatch with its weight in its
    // parameter slot: 600 of them, more than two 256-slot chunks of the
    // arena, recorded before the one read-back that submits them.
    let n = 600;
    let xs: Vec<TensorData> = (0..n).map(|i| data(&[1, 3, 5], 2000 + i as u64)).collect();
    let weights = rand(n, 77, 1.0);
    let up: Vec<_> = xs.iter().map(|x| gpu().upload(&x.shape, &x.data).unwrap()).collect();
    let sum = gpu().weighted_sum(&up.iter().collect::<Vec<_>>(), &weights).unwrap();
    let got = gpu().download(&sum).unwrap();
    let want: Vec<f32> = (0..15).map(|j| xs.iter().zip(&weights).map(|(x, w)| w * x.data[j]).sum()).collect();
    common::assert_close("weighted sum of 600", &got.data, &want, &got.shape, &[1, 3, 5], 1e-5);
}

#[test]
fn repeated_calls_recycle_their_buffers() {
    // Its own device: the shared one's counts move with the other tests.
    let g = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    let wd = data(&[8, 8], 5);
    let (w, wc) = (g.prepare_linear(&wd).unwrap(), Cpu.prepare_linear(&wd).unwrap());
    let mut created = Vec::new();
    for i in 0..12u64 {
        let d = data(&[1, 50, 8], 300 + i);
        let x = g.upload(&d.shape, &d.data).unwrap();
        let y = g.activate(g.linear(&x, &w, None, None).unwrap(), Activation::Tanh).unwrap();
        let got = g.download(&y).unwrap();
        let xc = Cpu.upload(&d.shape, &d.data).unwrap();
        let want = Cpu.download(&Cpu.activate(Cpu.linear(&xc, &wc, None, None).unwrap(), Activation::Tanh).unwrap()).unwrap();
        common::assert_close(&format!("call {i}"), &got.data, &want.data, &got.shape, &want.shape, TOL);
        created.push(g.buffers_created());
    }
    // The input's upload and the intermediates come from the pool after the first calls.
    assert_eq!(created[2], created[11], "buffers created after each call: {created:?}");
}

#[test]
fn upload_while_commands_pending_keeps_their_inputs() {
    // `a` is dropped while the linear that reads it is recorded but not
    // submitted; `b`, the same size, must not be written into a's buffer
    // before that linear runs.
    let g = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    let wd = data(&[8, 8], 6);
    let w = g.prepare_linear(&wd).unwrap();
    let (da, db) = (data(&[1, 20, 8], 401), data(&[1, 20, 8], 402));
    let a = g.upload(&da.shape, &da.data).unwrap();
    let ya = g.linear(&a, &w, None, None).unwrap();
    drop(a);
    let b = g.upload(&db.shape, &db.data).unwrap();
    let yb = g.linear(&b, &w, None, None).unwrap();
    let wc = Cpu.prepare_linear(&wd).unwrap();
    for (name, y, d) in [("a", &ya, &da), ("b", &yb, &db)] {
        let want = Cpu.download(&Cpu.linear(&Cpu.upload(&d.shape, &d.data).unwrap(), &wc, None, None).unwrap()).unwrap();
        let got = g.download(y).unwrap();
        common::assert_close(name, &got.data, &want.data, &got.shape, &want.shape, TOL);
    }
}

#[test]
fn readbacks_from_threads_sharing_one_device() {
    // Whichever thread polls the shared device runs every finished map
    // callback, so a readback's callback can land on another thread just
    // after this thread's own poll returns: downloads must wait for it.
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                for i in 0..200u64 {
                    let d = data(&[1, 7 + (i as usize % 5), 3], t * 1000 + i);
                    let up = gpu().upload(&d.shape, &d.data).unwrap();
                    let y = gpu().activate(up, Activation::Relu).unwrap();
                    let back = gpu().download(&y).unwrap_or_else(|e| panic!("thread {t}, readback {i}: {e}"));
                    let want: Vec<f32> = d.data.iter().map(|v| v.max(0.0)).collect();
                    assert_eq!(back.data, want, "thread {t}, readback {i}");
                }
            });
        }
    });
}

#[test]
fn shape_errors_are_errors() {
    let g = gpu();
    let x = g.upload(&[1, 4, 3], &[0.0; 12]).unwrap();
    let w = g.prepare_linear(&data(&[2, 5], 1)).unwrap();
    assert!(g.linear(&x, &w, None, None).is_err());
    assert!(g.upload(&[2, 2], &[0.0; 3]).is_err());
}

/// A sew-d-tiny-shaped network (13-layer conv stack 64..512, hidden 384,
/// 6 heads of 64, 12 layers sharing one set of random unit-gain weights)
/// built on any backend.
struct TinyNet<B: Backend> {
    convs: Vec<(ConvSpec, B::Tensor)>,
    gn: (B::Tensor, B::Tensor),
    ln_feat: (B::Tensor, B::Tensor),
    proj: (B::Tensor, B::Tensor),
    pos: (ConvSpec, B::Tensor, B::Tensor),
    qkv: (B::Tensor, B::Tensor),
    pos_key: B::Tensor,
    pos_query: B::Tensor,
    attn_out: (B::Tensor, B::Tensor),
    ln1: (B::Tensor, B::Tensor),
    inter: (B::Tensor, B::Tensor),
    out: (B::Tensor, B::Tensor),
    ln2: (B::Tensor, B::Tensor),
    up: (B::Tensor, B::Tensor),
}

const TINY_SPEC: AttentionSpec =
    AttentionSpec { heads: 6, head_dim: 64, c2p: true, p2c: true, span: 256, buckets: 256, max_position: 512, relative: true };

fn scaled(shape: &[usize], seed: u64, fan_in: usize) -> TensorData {
    TensorData { shape: shape.to_vec(), data: rand(shape.iter().product(), seed, (3.0 / fan_in as f32).sqrt()) }
}

impl<B: Backend> TinyNet<B> {
    fn new(b: &B) -> Self {
        let vec_ = |n: usize, seed: u64, base: f32| {
            let v: Vec<f32> = rand(n, seed, 0.1).into_iter().map(|x| x + base).collect();
            b.upload(&[n], &v).unwrap()
        };
        let norm = |n: usize, seed: u64| (vec_(n, seed, 1.0), vec_(n, seed + 1, 0.0));
        let lin = |o: usize, i: usize, seed: u64| (b.prepare_linear(&scaled(&[o, i], seed, i)).unwrap(), vec_(o, seed + 1, 0.0));
        let dims = [64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512];
        let kernels = [10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1];
        let strides = [5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1];
        let mut cin = 1;
        let mut convs = Vec::new();
        for i in 0..13 {
            let spec = ConvSpec { in_channels: cin, out_channels: dims[i], kernel: kernels[i], stride: strides[i], padding: 0, groups: 1, trim_end: 0 };
            convs.push((spec, b.prepare_conv(&scaled(&[dims[i], cin, kernels[i]], 300 + i as u64, cin * kernels[i]), &spec).unwrap()));
            cin = dims[i];
        }
        let pos_spec = ConvSpec { in_channels: 384, out_channels: 384, kernel: 128, stride: 2, padding: 64, groups: 16, trim_end: 1 };
        let rel = |seed: u64| b.upload(&[512, 384], &rand(512 * 384, seed, 1.0)).unwrap();
        TinyNet {
            convs,
            gn: norm(64, 400),
            ln_feat: norm(512, 402),
            proj: lin(384, 512, 404),
            pos: (pos_spec, b.prepare_conv(&scaled(&[384, 24, 128], 406, 24 * 128), &pos_spec).unwrap(), vec_(384, 407, 0.0)),
            qkv: lin(3 * 384, 384, 408),
            pos_key: rel(410),
            pos_query: rel(411),
            attn_out: lin(384, 384, 412),
            ln1: norm(384, 414),
            inter: lin(1536, 384, 416),
            out: lin(384, 1536, 418),
            ln2: norm(384, 420),
            up: lin(768, 384, 422),
        }
    }

    fn forward(&self, b: &B, samples: &[f32]) -> B::Tensor {
        let gelu = Activation::Gelu;
        let mut x = b.upload(&[1, samples.len(), 1], samples).unwrap();
        for (i, (spec, w)) in self.convs.iter().enumerate() {
            x = b.conv1d(&x, w, None, spec).unwrap();
            if i == 0 {
                x = b.group_norm_time(&x, &self.gn.0, &self.gn.1, 1e-5).unwrap();
            }
            x = b.activate(x, gelu).unwrap();
        }
        let frames = b.shape(&x)[1];
        x = b.layer_norm(&x, None, &self.ln_feat.0, &self.ln_feat.1, 1e-5).unwrap();
        x = b.linear(&x, &self.proj.0, Some(&self.proj.1), None).unwrap();
        let pos = b.conv1d(&x, &self.pos.1, Some(&self.pos.2), &self.pos.0).unwrap();
        let pos = b.activate(pos, gelu).unwrap();
        let mut h = b.avg_pool_add(&x, 2, &pos).unwrap();
        let len = b.shape(&h)[1];
        for _ in 0..12 {
            let qkv = b.linear(&h, &self.qkv.0, Some(&self.qkv.1), None).unwrap();
            let (ctx, _) = b.attention(&qkv, Some(&self.pos_key), Some(&self.pos_query), &[len], &TINY_SPEC, false).unwrap();
            let a = b.linear(&ctx, &self.attn_out.0, Some(&self.attn_out.1), None).unwrap();
            let a = b.layer_norm(&a, Some(&h), &self.ln1.0, &self.ln1.1, 1e-7).unwrap();
            let f = b.linear(&a, &self.inter.0, Some(&self.inter.1), Some(gelu)).unwrap();
            let f = b.linear(&f, &self.out.0, Some(&self.out.1), None).unwrap();
            h = b.layer_norm(&f, Some(&a), &self.ln2.0, &self.ln2.1, 1e-7).unwrap();
        }
        let up = b.linear(&h, &self.up.0, Some(&self.up.1), Some(gelu)).unwrap();
        b.upsample(&up, 2, frames).unwrap()
    }
}

/// A 60 s clip through the sew-d-tiny geometry on a device restricted to
/// WebGPU's default limits (128 MiB bindings, 65535 workgroups a dimension),
/// against the CPU backend, with timings. Slow on lavapipe: `--ignored`.
#[test]
#[ignore]
fn sew_d_tiny_60s_within_browser_limits() {
    let g = Gpu::new_with_browser_limits().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("adapter: {}, limits {:?}", g.adapter_name(), g.limits());
    let seconds: usize = std::env::var("SEWD_CLIP_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let samples = rand(seconds * 16_000, 7, 1.0);
    let (cn, gn) = (TinyNet::new(&Cpu), TinyNet::new(&g));
    let t0 = std::time::Instant::now();
    let want = Cpu.download(&cn.forward(&Cpu, &samples)).unwrap();
    let cpu_s = t0.elapsed().as_secs_f64();
    let _ = g.download(&gn.forward(&g, &samples[..16_000])).unwrap(); // builds the pipelines
    let t0 = std::time::Instant::now();
    let got = g.download(&gn.forward(&g, &samples)).unwrap();
    let gpu_s = t0.elapsed().as_secs_f64();
    eprintln!("{seconds} s clip: cpu {cpu_s:.2} s, gpu {gpu_s:.2} s");
    common::assert_close(&format!("sew-d-tiny {seconds} s"), &got.data, &want.data, &got.shape, &want.shape, 2e-3);
}

/// A weight whose data disagrees with its shape, or with a zero size (the
/// GPU's GEMM would leave its output unwritten), is an error on both
/// backends, never an out-of-bounds panic while its layout is changed.
#[test]
fn weights_whose_data_disagrees_with_their_shape_are_errors() {
    let short = TensorData { shape: vec![4, 3], data: vec![0.0; 11] };
    let conv = TensorData { shape: vec![4, 2, 3], data: vec![0.0; 23] };
    let spec = ConvSpec { in_channels: 2, out_channels: 4, kernel: 3, stride: 1, padding: 0, groups: 1, trim_end: 0 };
    let empty = TensorData { shape: vec![4, 0], data: vec![] };
    let messages = [
        Cpu.prepare_linear(&empty).unwrap_err().to_string(),
        gpu().prepare_linear(&empty).unwrap_err().to_string(),
        Cpu.prepare_linear(&short).unwrap_err().to_string(),
        gpu().prepare_linear(&short).unwrap_err().to_string(),
        Cpu.prepare_conv(&conv, &spec).unwrap_err().to_string(),
        gpu().prepare_conv(&conv, &spec).unwrap_err().to_string(),
    ];
    for m in messages {
        assert!(m.contains("weight") || m.contains("upload"), "{m}");
    }
    // Groups that do not divide the channels (torch refuses them too), and stride 0.
    let uneven = ConvSpec { in_channels: 12, out_channels: 10, kernel: 3, stride: 1, padding: 1, groups: 3, trim_end: 0 };
    let w = TensorData { shape: vec![10, 4, 3], data: vec![0.5; 120] };
    let still = ConvSpec { stride: 0, ..spec };
    let w_still = TensorData { shape: vec![4, 2, 3], data: vec![0.5; 24] };
    let messages = [
        Cpu.prepare_conv(&w, &uneven).unwrap_err().to_string(),
        gpu().prepare_conv(&w, &uneven).unwrap_err().to_string(),
        Cpu.prepare_conv(&w_still, &still).unwrap_err().to_string(),
        gpu().prepare_conv(&w_still, &still).unwrap_err().to_string(),
    ];
    for m in messages {
        assert!(m.contains("weight") || m.contains("upload"), "{m}");
    }
}

/// A tensor over the binding limit is a `Limit` error (the input is too
/// large), not a `Device` error (the GPU failed, on which the browser moves
/// the model to the CPU for good); the GPU goes on working.
#[test]
fn over_the_binding_limit_is_a_limit_error() {
    let g = Gpu::new_with_browser_limits().unwrap_or_else(|e| panic!("{e}"));
    let (max_binding, _) = g.limits();
    let n = (max_binding / 4 + 1) as usize;
    let err = g.upload(&[n], &vec![0.0; n]).unwrap_err();
    assert!(matches!(err, BackendError::Limit(_)), "{err:?}");
    assert!(err.to_string().contains("max_storage_buffer_binding_size"), "{err}");
    let x = g.upload(&[2], &[1.0, 2.0]).unwrap();
    assert_eq!(g.download(&x).unwrap().data, [1.0, 2.0]);
}

/// GEMMs with more row tiles than one launch dimension allows are split
/// over several dispatches, and 1-D launches are folded into two
/// dimensions: the same results with the limit lowered to 8 workgroups (at
/// the real 65535 it takes the first conv of a 22-minute clip to get there).
#[test]
fn launches_past_the_workgroup_limit_split_and_fold() {
    let mut small = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    small.limit_workgroups_for_tests(8);
    let g = &small;
    let both = |shape: &[usize], seed: u64| {
        let d = data(shape, seed);
        (Cpu.upload(shape, &d.data).unwrap(), g.upload(shape, &d.data).unwrap())
    };
    let check = |what: &str, c: &<Cpu as Backend>::Tensor, t: &<Gpu as Backend>::Tensor| {
        let (want, got) = (Cpu.download(c).unwrap(), g.download(t).unwrap());
        common::assert_close(what, &got.data, &want.data, &got.shape, &want.shape, TOL);
    };
    // 64-row tiles (18 of them) and 32-row tiles (10), bias and activation.
    for (rows, inp, out) in [(1090, 36, 100), (300, 20, 12)] {
        let (xc, xg) = both(&[rows, inp], 1);
        let w = data(&[out, inp], 2);
        let (bc, bg) = both(&[out], 3);
        let c = Cpu.linear(&xc, &Cpu.prepare_linear(&w).unwrap(), Some(&bc), Some(Activation::Gelu)).unwrap();
        let t = g.linear(&xg, &g.prepare_linear(&w).unwrap(), Some(&bg), Some(Activation::Gelu)).unwrap();
        check(&format!("linear {rows}x{inp}->{out}"), &c, &t);
    }
    // The first conv: two batch items stacked in the GEMM's rows, split mid-item.
    let spec = ConvSpec { in_channels: 1, out_channels: 16, kernel: 10, stride: 5, padding: 0, groups: 1, trim_end: 0 };
    let (xc, xg) = both(&[2, 4003, 1], 4);
    let w = data(&[16, 1, 10], 5);
    let c = Cpu.conv1d(&xc, &Cpu.prepare_conv(&w, &spec).unwrap(), None, &spec).unwrap();
    let t = g.conv1d(&xg, &g.prepare_conv(&w, &spec).unwrap(), None, &spec).unwrap();
    check("conv 2x4003", &c, &t);
    // Folded: 20 elementwise workgroups, 50 layer-norm rows.
    let (xc, xg) = both(&[1, 5000, 1], 6);
    check("activate folded", &Cpu.activate(xc, Activation::Tanh).unwrap(), &g.activate(xg, Activation::Tanh).unwrap());
    let (xc, xg) = both(&[50, 24], 7);
    let (gc, gg) = both(&[24], 8);
    let (bc, bg) = both(&[24], 9);
    check("layer_norm folded", &Cpu.layer_norm(&xc, None, &gc, &bc, 1e-5).unwrap(), &g.layer_norm(&xg, None, &gg, &bg, 1e-5).unwrap());
}
