#!/usr/bin/env bash
# The whole test suite: fetch the models (checksum-verified, cached), run every test
# with the dispatched (SIMD) kernels and every example, then the kernel and LSTM tests with the level capped at
# AVX2 (on a CPU with AVX-VNNI the first pass ran its tiles), then the kernel, tiny-model and
# SmolLM2 end-to-end tests again with the scalar reference kernels forced
# (EDGEINFER_KERNELS=scalar: the tests read it to choose their engines' level; the library
# reads no environment); then the
# aarch64 pass: cross-built and run under qemu-user at three CPU models
# (scripts/test-aarch64.sh, which installs the cross toolchain when it is missing).
#
# Build time is most of the suite's time on a 2-core machine, so everything here is built
# once: the tests build without LTO and without debug info (a release build keeps both; the
# code and its optimisation level are the same), and every later pass selects its tests from
# the workspace build (`--workspace --test NAME`) and runs the binaries it made, instead of
# `-p PACKAGE`, whose different feature set would rebuild a third of the dependency tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_DEBUG=false
target="${CARGO_TARGET_DIR:-target}"
suite_start=$SECONDS
phase_start=$SECONDS
phase() { # the time since the last phase, so a slow machine's log says where it went
    echo "=== $1: $((SECONDS - phase_start)) s (total $((SECONDS - suite_start)) s)"
    phase_start=$SECONDS
}
scripts/fetch-models.sh all >/dev/null
scripts/fetch-text-data.sh >/dev/null
phase "models and data fetched"
cargo test --workspace --release "$@"
phase "workspace tests, dispatched kernels"
# Every example once (built by the workspace tests): each checks its own results and exits
# non-zero when they are wrong.
for example in generate chat two_sessions lstm_classify zero_shot; do
    echo "--- example $example"
    "$target/release/examples/$example"
done
phase "examples"
scripts/test-server.sh # edgeinfer serve through the real openai Python client
phase "server through the openai client"
scripts/test-capi.sh # the C API: the C examples built against libedgeinfer.a and run
phase "C API"
scripts/test-python.sh # the Python bindings: abi3 wheel built with maturin, pytest in a fresh venv
phase "Python module"
# Every integration test of the kernels and the LSTM (a file in their tests/ is a test target
# of that name).
kernel_tests=()
for f in crates/kernels/tests/*.rs crates/lstm/tests/*.rs; do
    kernel_tests+=(--test "$(basename "$f" .rs)")
done
EDGEINFER_KERNELS=avx2 cargo test --workspace --release "${kernel_tests[@]}" "$@"
phase "kernel and LSTM tests capped at AVX2"
# The scalar pass: the kernels (every level against the contract), the LSTM, every
# architecture's forward on the tiny golden models, and SmolLM2 end to end against the
# reference (ids and logits, teacher-forced, cache against recompute). The perplexity tests
# (5,120 tokens each), the Qwen2.5 / Gemma 3 model tests and the scheduling tests (thread
# counts, concurrent sessions, micro-batching) run in the SIMD pass only: they check the same
# arithmetic the reference tests do, and with scalar kernels they take over ten minutes on
# two cores.
EDGEINFER_KERNELS=scalar cargo test --workspace --release "${kernel_tests[@]}" \
  --test tiny_golden --test lstm_baselines --test smollm2_gguf "$@"
EDGEINFER_KERNELS=scalar cargo test --workspace --release --test smollm2_reference "$@" -- \
  exact_f32_greedy_matches_reference_ids_and_logits \
  quantized_teacher_forced_within_reference_tolerances kv_cache_decode_equals_full_recompute
phase "scalar pass"
scripts/test-aarch64.sh
phase "aarch64 under qemu"
