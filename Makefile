# `make test` and `make demo` set up what they need, then run.
SHELL := /bin/bash
PORT ?= 8080

.PHONY: setup test test-rust test-wasm-build test-wasm test-page pkg cli demo bench bench-browser fixtures

setup:
	@scripts/setup.sh

test: setup test-rust test-wasm-build test-wasm test-page

# Every cargo test (CPU and GPU backends, CLI, fixtures) in release mode: the
# fixtures run real forward passes, which are slow unoptimized.
test-rust:
	cargo test --release --all-targets

# The library must keep compiling to WebAssembly.
test-wasm-build:
	cargo build --release --lib --target wasm32-unknown-unknown

# The browser tests (tests/wasm_*.rs, and the wasm GEMM's unit tests in both
# its builds): wasm-bindgen-test in headless Chromium, CPU and WebGPU
# (SwiftShader), against the fixture server.
test-wasm:
	scripts/test_wasm.sh

# The npm package `sewd` (pkg/): the single-threaded module and, in pkg/threads/ (and
# pkg/threads-bundler/ for bundlers), the one with Web Worker threads, each also built
# with relaxed SIMD (see the script).
pkg:
	scripts/build_pkg.sh

cli:
	cargo build --release --bin sewd

# The browser demo on http://127.0.0.1:$(PORT)/ with the bundled model.
demo: setup pkg cli
	target/release/sewd serve --port $(PORT)

# The demo page in Debian's Chromium: fake microphone, file upload, WebGPU badge;
# then the npm package in Node (its CPU path, models over HTTP), and an app that
# imports it, built with Vite and opened in Chromium.
test-page: pkg cli
	cd tests/page && node --test --test-concurrency=1 page.test.mjs node.test.mjs bundle.test.mjs

# Side-by-side CPU timing against PyTorch (needs the venv of DEVELOPERS.md).
bench:
	cargo build --release
	$(VENV)/bin/python bench/cpu_vs_pytorch.py

# Native CPU vs the wasm package in headless Chromium (CPU and WebGPU on
# SwiftShader) vs onnxruntime-web on the same model, one run; see
# bench/README.md. Needs the venv (for the ONNX export). BENCH_ARGS, e.g. "--runs 3".
bench-browser: pkg cli
	@if [ ! -f bench/node_modules/onnxruntime-web/package.json ] || [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then \
		cd bench && npm ci --no-audit --no-fund --loglevel=error; fi
	$(VENV)/bin/python bench/export_onnx.py
	node bench/browser.mjs $(BENCH_ARGS)

VENV ?= .venv
fixtures:
	$(VENV)/bin/python scripts/make_fixtures.py
