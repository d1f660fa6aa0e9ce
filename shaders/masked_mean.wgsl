// Mean over the first `frames` frames of one batch item:
//   y[item, c] = sum_{t < frames} x[item, t, c] / max(frames, 1)
// (the classifier's pooling; one launch per batch item, since each has its
// own valid length).
//
// Bindings: 0 uniform Params; 1 x (read, [B, T, C]); 2 y (read_write, [B, C]).
// Workgroup: 64 channels x 4 time lanes (256), channels fastest so each step
// reads one coalesced row; the 4 lanes are summed in workgroup memory.
// Launch: (ceil(C/64), 1, 1).

struct Params {
    t: u32, c: u32, item: u32, frames: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x * 64u + li % 64u;
    let lane = li / 64u;
    var s = 0.0;
    if (ch < p.c) {
        for (var t = lane; t < p.frames; t += 4u) {
            s += x[(p.item * p.t + t) * p.c + ch];
        }
    }
    partial[li] = s;
    workgroupBarrier();
    if (lane == 0u && ch < p.c) {
        let total = partial[li] + partial[li + 64u] + partial[li + 128u] + partial[li + 192u];
        y[p.item * p.c + ch] = total / f32(max(p.frames, 1u));
    }
}
