#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian machine.
# Idempotent: every step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# lavapipe (CPU Vulkan driver) so the wgpu backend runs in plain `cargo test`.
for p in mesa-vulkan-drivers libvulkan1; do pkg_installed "$p" || need_apt+=("$p"); done
# pkg-config and a C compiler for -sys crates.
have pkg-config || need_apt+=(pkg-config)
have cc || need_apt+=(gcc)
# The browser demo: Chromium (+ driver) for the page test.
for p in chromium chromium-driver; do pkg_installed "$p" || need_apt+=("$p"); done
have node || need_apt+=(nodejs)
# scripts/test_wasm.sh polls its fixture server with curl.
have curl || need_apt+=(curl)
have npm || need_apt+=(npm)

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
# The threaded wasm module (pkg/threads/, scripts/build_pkg.sh) rebuilds std with atomics:
# a pinned nightly with its source.
nightly=$(cat scripts/nightly-toolchain)
if ! rustup run "$nightly" rustc --version >/dev/null 2>&1 \
    || ! [ -d "$(rustup run "$nightly" rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    echo "setup: installing Rust $nightly with rust-src (for the threaded wasm module)"
    rustup toolchain install "$nightly" --profile minimal --component rust-src
fi

# wasm-pack, and the wasm-bindgen CLI at the exact version Cargo.lock pins: wasm-pack would
# otherwise try to download a prebuilt one, which this machine's network refuses.
if ! have wasm-pack; then
    echo "setup: building wasm-pack from crates.io (a few minutes)"
    cargo install wasm-pack
fi
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ -n "$wbg_version" ] && [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
    echo "setup: building wasm-bindgen-cli $wbg_version from crates.io (a few minutes)"
    cargo install wasm-bindgen-cli --version "$wbg_version" --force
fi

# binaryen's wasm-opt for `make pkg` (Debian 12's is too old for wasm-bindgen's output; see the Makefile).
if [ ! -f tools/node_modules/binaryen/package.json ] || [ tools/package-lock.json -nt tools/node_modules/.package-lock.json ]; then
    echo "setup: npm install in tools (binaryen's wasm-opt)"
    (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

# playwright-core for the page test (it drives Debian's Chromium; it never downloads a browser).
if [ ! -f tests/page/node_modules/playwright-core/package.json ] || [ tests/page/package-lock.json -nt tests/page/node_modules/.package-lock.json ]; then
    echo "setup: npm install in tests/page"
    (cd tests/page && npm ci --no-audit --no-fund --loglevel=error)
fi
