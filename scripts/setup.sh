#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian machine.
# Idempotent: every step checks first and does nothing when already done.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# lavapipe (CPU Vulkan driver) so the wgpu backend runs in plain `cargo test`.
for p in mesa-vulkan-drivers libvulkan1; do pkg_installed "$p" || need_apt+=("$p"); done
# pkg-config and a C compiler for -sys crates.
have pkg-config || need_apt+=(pkg-config)
have cc || need_apt+=(gcc)

if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! have cargo; then
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
