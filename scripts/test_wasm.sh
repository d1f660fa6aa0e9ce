#!/usr/bin/env bash
# Runs the browser tests (tests/wasm_*.rs and the library's wasm-only unit
# tests) in headless Chromium: starts the fixture server, runs `cargo test` for
# wasm32 through wasm-bindgen-test-runner (see .cargo/config.toml and
# webdriver.json), stops the server. Then the unit tests again as the relaxed
# SIMD build compiles them (src/backend/cpu/wasm_gemm.rs), in the target
# directory of that build (scripts/build_pkg.sh).
#
#   scripts/test_wasm.sh                 # all of the above
#   scripts/test_wasm.sh --test wasm_load
#
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli matching
# Cargo.lock's wasm-bindgen (cargo install wasm-bindgen-cli --version …),
# chromium + chromium-driver. A missing browser or WebGPU fails the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${SEWD_FIXTURE_PORT:-8765}"
export SEWD_FIXTURE_SERVER="http://127.0.0.1:${PORT}"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"

want=$(grep -A1 'name = "wasm-bindgen"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p' | head -1)
have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "test_wasm: installing wasm-bindgen-cli $want (have: ${have:-none})"
    cargo install wasm-bindgen-cli --version "$want" --locked
fi

python3 scripts/serve_fixtures.py --port "$PORT" > /tmp/sewd-fixture-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "$SEWD_FIXTURE_SERVER/count" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "$SEWD_FIXTURE_SERVER/count" >/dev/null || { echo "test_wasm: fixture server did not start"; cat /tmp/sewd-fixture-server.log; exit 1; }

if [ $# -gt 0 ]; then
    cargo test --release --target wasm32-unknown-unknown --no-default-features "$@"
    exit
fi
cargo test --release --target wasm32-unknown-unknown --no-default-features --lib --test 'wasm_*'
SEWD_EXPECT_RELAXED_SIMD=1 RUSTFLAGS="-C target-feature=+simd128 -C target-feature=+relaxed-simd" cargo test --release \
    --target wasm32-unknown-unknown --no-default-features --lib --target-dir target/wasm-relaxed
