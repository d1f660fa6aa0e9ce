// Elementwise and data-movement ops on channels-last [B, T, C] tensors:
//   activate:      x = act(x), in place;
//   zero_range:    x[start .. end] = 0, in place (mask_frames: one launch per
//                  batch item, clearing its frames from lengths[b] on);
//   axpy:          y = (accumulate ? y : 0) + w * x (weighted_sum, one launch
//                  per input);
//   avg_pool_add:  y[b, t, c] = mean_{s < f} x[b, t*f + s, c] + pos[b, t, c];
//   upsample:      [B, T, S*C] viewed as [B, T*S, C] (the same memory), copied
//                  to [B, len, C] and zero-padded past T*S.
//
// Bindings: 0 uniform Params; 1 src (read); 2 pos (read, avg_pool_add only);
//           3 dst (read_write).
// Workgroup: 256 invocations, one value each; launches over more than
// 65535 workgroups fold into y (`folded_index`).

struct Params {
    count: u32, act: u32, start: u32, end: u32,
    weight: f32, accumulate: u32, c: u32, factor: u32,
    src_len: u32, dst_len: u32, pos_len: u32, keep: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn activate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i < p.count) {
        dst[i] = activate_value(dst[i], p.act);
    }
}

@compute @workgroup_size(256, 1, 1)
fn zero_range(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = p.start + folded_index(wg, nwg, li, 256u);
    if (i < p.end) {
        dst[i] = 0.0;
    }
}

@compute @workgroup_size(256, 1, 1)
fn axpy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i < p.count) {
        var v = p.weight * src[i];
        if (p.accumulate != 0u) {
            v += dst[i];
        }
        dst[i] = v;
    }
}

// dst: [B, dst_len, C]; src: [B, src_len, C]; pos: [B, pos_len, C].
@compute @workgroup_size(256, 1, 1)
fn avg_pool_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i >= p.count) {
        return;
    }
    let ch = i % p.c;
    let t = (i / p.c) % p.dst_len;
    let item = i / (p.c * p.dst_len);
    var s = 0.0;
    for (var k = 0u; k < p.factor; k++) {
        s += src[(item * p.src_len + t * p.factor + k) * p.c + ch];
    }
    dst[i] = s * (1.0 / f32(p.factor)) + pos[(item * p.pos_len + t) * p.c + ch];
}

// dst: [B, dst_len, C]; src holds src_len = T*S frames of C per item;
// the first `keep` frames are copied.
@compute @workgroup_size(256, 1, 1)
fn upsample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = folded_index(wg, nwg, li, 256u);
    if (i >= p.count) {
        return;
    }
    let ch = i % p.c;
    let t = (i / p.c) % p.dst_len;
    let item = i / (p.c * p.dst_len);
    var v = 0.0;
    if (t < p.keep) {
        v = src[(item * p.src_len + t) * p.c + ch];
    }
    dst[i] = v;
}
