# `make test` and `make demo` set up what they need, then run.
SHELL := /bin/bash
PORT ?= 8080

.PHONY: setup test test-rust test-wasm-build demo bench fixtures

setup:
	@scripts/setup.sh

test: setup test-rust test-wasm-build

# Every cargo test (CPU and GPU backends, CLI, fixtures) in release mode: the
# fixtures run real forward passes, which are slow unoptimized.
test-rust:
	cargo test --release --all-targets

# The library must keep compiling to WebAssembly.
test-wasm-build:
	cargo build --release --lib --target wasm32-unknown-unknown

demo: setup
	@echo "make demo: the browser demo arrives with the browser issue (#4); for now try:"
	@echo "  cargo run --release -- transcribe --model tests/fixtures/models/ctc_group_both_shared tests/fixtures/models/speech_3s.wav"
	@exit 1

# Side-by-side CPU timing against PyTorch (needs the venv of DEVELOPERS.md).
bench:
	cargo build --release
	$(VENV)/bin/python bench/cpu_vs_pytorch.py

VENV ?= .venv
fixtures:
	$(VENV)/bin/python scripts/make_fixtures.py
