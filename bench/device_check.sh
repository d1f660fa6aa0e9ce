#!/bin/bash
# The GPU checks of one device session, in one call (device time is short).
#
# Here, first:   bench/device_check.sh prep [BASE]
#   builds target/release/sewd, copies the gpu_ops test binary to
#   target/device/gpu_ops and builds the sewd of commit BASE (default
#   a8f874f, the last one measured on a GPU) as target/device/sewd-base,
#   in a temporary worktree (ignored by git, so all must be carried). All
#   three are stripped and the two in target/device xz-compressed: the
#   tree that travels (tracked files ~20 MB, each sewd ~22 MB with its
#   bundled models) must stay under 64 MiB.
# There:         bench/device_check.sh run
#   with carry [".gl", "target/release/sewd", "target/device"]: installs the
#   Vulkan loader from .gl/*.deb (see bench/README.md), runs every GPU op test
#   on the card's own driver, then bench/gpu_vs_pytorch.py (wgpu vs PyTorch
#   eager f32/TF32/fp16, per-kernel profile, logits agreement), then the
#   same clips through sewd-base and sewd alternately, each with a profile:
#   what the changes since BASE did on this card. Results go to $OUT:
#   gpu_ops.log, gpu_vs_pytorch.{md,json}, base_vs_head.jsonl.
set -u
cd "$(dirname "$0")/.."

case "${1:-}" in
prep)
    set -e
    cargo build --release --bin sewd
    exe=$(cargo test --release --test gpu_ops --no-run 2>&1 | sed -n 's/.*Executable tests\/gpu_ops.rs (\(.*\))/\1/p')
    [ -n "$exe" ] || { echo "no gpu_ops test binary"; exit 1; }
    mkdir -p target/device
    cp "$exe" target/device/gpu_ops
    base=${2:-a8f874f}
    wt=$(mktemp -d /tmp/sewd-base.XXXXXX)
    git worktree add -q --detach "$wt" "$base"
    (cd "$wt" && CARGO_TARGET_DIR="$PWD/../$(basename "$wt").target" cargo build --release --bin sewd)
    cp "$wt.target/release/sewd" target/device/sewd-base
    git worktree remove --force "$wt"
    rm -rf "$wt.target"
    git rev-parse --short "$base" > target/device/base-commit
    strip target/release/sewd target/device/gpu_ops target/device/sewd-base
    xz -T0 -6 -f target/device/gpu_ops target/device/sewd-base
    ls -l target/release/sewd target/device/
    ;;
run)
    out=${OUT:-/tmp/device_check}
    mkdir -p "$out"
    (cd target/device && xz -d -f ./*.xz)
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f $icd ] && export VK_DRIVER_FILES=$icd
    export XDG_RUNTIME_DIR=/tmp WGPU_BACKEND=vulkan
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    # --include-ignored: the 60 s browser-limits pass too (seconds on a GPU).
    timeout 180 target/device/gpu_ops --include-ignored > "$out/gpu_ops.log" 2>&1
    echo "gpu_ops: exit $? ($(grep -c ' ok$' "$out/gpu_ops.log") ok; failures:" \
        "$(grep ' FAILED$' "$out/gpu_ops.log" | tr '\n' ' '))"
    grep -A1 panicked "$out/gpu_ops.log" | head -20
    timeout 300 python3 bench/gpu_vs_pytorch.py --out "$out/gpu_vs_pytorch.json" --out-md "$out/gpu_vs_pytorch.md"
    # Base against head on the clips gpu_vs_pytorch.py left in bench/.cache.
    for clip in 17s 60s; do
        for round in 1 2; do
            for bin in target/device/sewd-base target/release/sewd; do
                for mode in "" --profile; do
                    line=$(timeout 120 $bin bench --backend gpu $mode --runs 5 --model bench/.cache/sewd-tiny \
                        --audio bench/.cache/speech_$clip.wav 2>/dev/null | tail -1)
                    echo "{\"clip\": \"$clip\", \"round\": $round, \"sewd\": \"$(basename $bin)\", \"result\": ${line:-null}}" \
                        >> "$out/base_vs_head.jsonl"
                done
            done
        done
    done
    python3 - "$out/base_vs_head.jsonl" "$(cat target/device/base-commit 2>/dev/null)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    res = r["result"] or {}
    what = f"gpu {res['gpu_ms']:.2f} ms, profiled" if "gpu_ms" in res else f"median {res.get('median_ms')} ms"
    print(r["clip"], r["round"], r["sewd"], "(base " + sys.argv[2] + ")" if r["sewd"] == "sewd-base" else "", what)
PY
    ;;
*)
    echo "usage: bench/device_check.sh prep|run" >&2
    exit 2
    ;;
esac
