#!/usr/bin/env bash
# The whole test suite: fetch the models (checksum-verified, cached), run every test
# with the dispatched (SIMD) kernels and every example, then the kernel and LSTM tests with the level capped at
# AVX2 (on a CPU with AVX-VNNI the first pass ran its tiles), then the kernel, tiny-model and
# SmolLM2 end-to-end tests again with the scalar reference kernels forced
# (EDGEINFER_KERNELS=scalar: the tests read it to choose their engines' level; the library
# reads no environment); then the
# aarch64 pass: cross-built and run under qemu-user at three CPU models
# (scripts/test-aarch64.sh, which installs the cross toolchain when it is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh all >/dev/null
scripts/fetch-text-data.sh >/dev/null
cargo test --workspace --release "$@"
# Every example once: each checks its own results and exits non-zero when they are wrong.
for example in generate chat two_sessions lstm_classify zero_shot; do
    echo "--- example $example"
    cargo run --release -q -p edgeinfer-examples --example "$example"
done
scripts/test-server.sh # edgeinfer serve through the real openai Python client
scripts/test-capi.sh # the C API: the C examples built against libedgeinfer.a and run
scripts/test-python.sh # the Python bindings: abi3 wheel built with maturin, pytest in a fresh venv
EDGEINFER_KERNELS=avx2 cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm "$@"
# The scalar pass: the kernels (every level against the contract), the LSTM, every
# architecture's forward on the tiny golden models, and SmolLM2 end to end against the
# reference. The perplexity tests (5,120 tokens each) and the Qwen2.5 / Gemma 3 model tests run
# in the SIMD pass only: with scalar kernels they take over ten minutes on two cores, and the
# scalar path is already checked against the reference logits and greedy ids here.
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm "$@"
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-transformer --test tiny_golden "$@"
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-e2e --test smollm2_reference \
  --test smollm2_gguf --test lstm_baselines "$@"
scripts/test-aarch64.sh
