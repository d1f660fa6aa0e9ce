#!/usr/bin/env bash
# Builds the npm package `sewd` into pkg/ (`make pkg`):
#
#   pkg/sewd.js, sewd_bg.wasm, sewd.d.ts   one thread, runs anywhere (stable Rust)
#   pkg/threads/...                         the same API plus initThreadPool(n): the CPU
#                                           backend on n Web Workers over shared memory
#                                           (nightly Rust: atomics and a rebuilt std)
#   pkg/threads-bundler/...                 the same for bundlers (see below)
#
# Each directory also holds sewd_relaxed_bg.wasm, the same module built with relaxed
# SIMD (fused multiply-adds in the CPU matrix products, src/backend/cpu/wasm_gemm.rs).
# Its glue is the plain module's, byte for byte (checked), and scripts/relaxed_glue.mjs
# makes `init()` load it where the engine validates relaxed SIMD.
#
# and writes package.json's `exports` ("sewd" and "sewd/threads") and `files`.
#
# wasm-pack's own wasm-opt step is off (it would download binaryen). The wasm-opt
# of npm's binaryen (tools/, installed by setup.sh) runs instead, or another local
# one if it is binaryen 117 or newer: older ones (Debian 12 ships 108) read
# wasm-bindgen's externref table as anyref and the module then fails at init. -O3
# makes the module about a fifth smaller (an eighth gzipped) at the same speed. An
# optimized module must still initialize under node, else the unoptimized one is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

NIGHTLY=${NIGHTLY:-$(cat scripts/nightly-toolchain)}
WASM_OPT=${WASM_OPT:-$( [ -x tools/node_modules/.bin/wasm-opt ] && echo tools/node_modules/.bin/wasm-opt || echo wasm-opt)}
WASM_OPT_FLAGS=(-O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue)

# Node has no `self`, which the threaded module's worker helper listens on: a stand-in.
INIT_CHECK="import fs from 'node:fs';
globalThis.self ??= new EventTarget();
const [dir, wasm] = process.argv.slice(1);
const { initSync } = await import('./' + dir + '/sewd.js');
initSync({ module: fs.readFileSync(wasm) });"
# Node 20 compiles relaxed SIMD only behind this flag (later versions by default).
NODE_RELAXED=()
V8_OPTIONS=$(node --v8-options)
if grep -q -- '--experimental-wasm-relaxed-simd' <<< "$V8_OPTIONS"; then
    NODE_RELAXED=(--experimental-wasm-relaxed-simd)
fi

# optimize WASM [extra wasm-opt flags]: WASM (beside its sewd.js) in place, if the result
# still initializes.
optimize() {
    local wasm=$1; shift
    local dir opt v
    dir=$(dirname "$wasm")
    opt=${wasm%.wasm}.opt.wasm
    v=$("$WASM_OPT" --version 2>/dev/null | grep -o '[0-9]\+' | head -1 || true)
    if [ -z "$v" ] || [ "$v" -lt 117 ]; then
        echo "make pkg: no wasm-opt >= 117 (found: ${v:-none}); keeping the unoptimized $wasm"
    elif "$WASM_OPT" "${WASM_OPT_FLAGS[@]}" "$@" "$wasm" -o "$opt" \
        && node "${NODE_RELAXED[@]}" --input-type=module -e "$INIT_CHECK" "$dir" "$opt"; then
        mv "$opt" "$wasm"
    else
        rm -f "$opt"
        echo "make pkg: the wasm-opt output of $wasm does not initialize; keeping the unoptimized wasm"
    fi
    ls -l "$wasm"
}

# relaxed DIR TARGET_DIR CARGO_ARGS...: builds the module of DIR again with relaxed SIMD
# (RUSTFLAGS as given plus relaxed-simd) into DIR/sewd_relaxed_bg.wasm.
relaxed() {
    local dir=$1 target_dir=$2; shift 2
    RUSTFLAGS="$RUSTFLAGS -C target-feature=+relaxed-simd" cargo "$@" --target-dir "$target_dir"
    rm -rf "$target_dir/bindgen"
    wasm-bindgen --target web --out-dir "$target_dir/bindgen" --out-name sewd \
        "$target_dir/wasm32-unknown-unknown/release/sewd.wasm"
    if ! cmp -s "$target_dir/bindgen/sewd.js" "$dir/sewd.js"; then
        echo "make pkg: the relaxed SIMD build's glue differs from $dir/sewd.js; they must be one" >&2
        diff "$target_dir/bindgen/sewd.js" "$dir/sewd.js" | head -20 >&2
        exit 1
    fi
    cp "$target_dir/bindgen/sewd_bg.wasm" "$dir/sewd_relaxed_bg.wasm"
}

# A failed build below must not leave an older threaded module beside the new one.
rm -rf pkg/threads pkg/threads-bundler pkg/sewd_relaxed_bg.wasm
wasm-pack build --target web --release --no-opt --out-dir pkg --out-name sewd
optimize pkg/sewd_bg.wasm
RUSTFLAGS="-C target-feature=+simd128" relaxed pkg target/wasm-relaxed \
    build --release --lib --target wasm32-unknown-unknown
optimize pkg/sewd_relaxed_bg.wasm --enable-relaxed-simd
node scripts/relaxed_glue.mjs pkg/sewd.js

# Threads need the atomics target feature, so std is rebuilt with it (-Z build-std),
# and since rust#147225 the shared, imported memory and the TLS exports that
# wasm-bindgen's thread transform expects are asked of the linker by name. The
# memory may grow to 4 GiB, as the single-threaded module's may. Its own target
# directory keeps these flags from invalidating the stable build's.
THREAD_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128"
for arg in --shared-memory --max-memory=4294967296 --import-memory \
    --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
    THREAD_RUSTFLAGS+=" -C link-arg=$arg"
done
# threaded DIR FEATURES: the threaded module with FEATURES into DIR, and its relaxed SIMD
# twin. The two variants share target directories (std is built once for each).
threaded() {
    local dir=$1 features=$2
    local cargo_args=(build --release --lib --no-default-features --features "$features"
        --target wasm32-unknown-unknown -Z build-std=panic_abort,std)
    RUSTFLAGS="$THREAD_RUSTFLAGS" cargo "+$NIGHTLY" "${cargo_args[@]}" --target-dir target/wasm-threads
    wasm-bindgen --target web --out-dir "$dir" --out-name sewd \
        target/wasm-threads/wasm32-unknown-unknown/release/sewd.wasm
    optimize "$dir/sewd_bg.wasm" --enable-threads
    RUSTFLAGS="$THREAD_RUSTFLAGS" relaxed "$dir" target/wasm-threads-relaxed "+$NIGHTLY" "${cargo_args[@]}"
    optimize "$dir/sewd_relaxed_bg.wasm" --enable-threads --enable-relaxed-simd
    node scripts/relaxed_glue.mjs "$dir/sewd.js"
}
# As browsers load it: wasm-bindgen-rayon's pool workers start from a blob of the
# helper's own source and import the module by its URL.
threaded pkg/threads threads,no-bundler
# As bundlers see it (package.json's "module" condition for sewd/threads): the pool
# workers are `new Worker(new URL("./workerHelpers.js", import.meta.url))`, which
# bundlers follow, and import the module as the directory three levels up, which
# this package.json resolves.
threaded pkg/threads-bundler threads
cat > pkg/threads-bundler/package.json <<'JSON'
{ "type": "module", "main": "sewd.js", "types": "sewd.d.ts", "sideEffects": ["./snippets/*"] }
JSON

node scripts/package_exports.mjs pkg/package.json
