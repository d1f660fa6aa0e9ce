#!/bin/bash
# The GPU checks of one device session, in one call (device time is short).
#
# Here, first:   bench/device_check.sh prep
#   builds target/release/sewd and copies the gpu_ops test binary to
#   target/device/gpu_ops (both ignored by git, so they must be carried).
# There:         bench/device_check.sh run
#   with carry [".gl", "target/release/sewd", "target/device"]: installs the
#   Vulkan loader from .gl/*.deb (see bench/README.md), runs every GPU op test
#   on the card's own driver, then bench/gpu_vs_pytorch.py (wgpu vs PyTorch
#   eager f32/TF32/fp16, per-kernel profile, logits agreement). Results go
#   to $OUT: gpu_ops.log, gpu_vs_pytorch.{md,json}.
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
    ls -l target/release/sewd target/device/gpu_ops
    ;;
run)
    out=${OUT:-/tmp/device_check}
    mkdir -p "$out"
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
    timeout 360 python3 bench/gpu_vs_pytorch.py --out "$out/gpu_vs_pytorch.json" --out-md "$out/gpu_vs_pytorch.md"
    ;;
*)
    echo "usage: bench/device_check.sh prep|run" >&2
    exit 2
    ;;
esac
