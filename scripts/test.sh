#!/usr/bin/env bash
# The whole test suite: fetch the default model (checksum-verified, cached), run every test
# with the dispatched (SIMD) kernels and every example once (each checks its own results), then
# the kernel and LSTM tests with the level capped at AVX2 (on a CPU with AVX-VNNI the first
# pass ran its tiles), then the kernel and end-to-end tests again with the scalar reference
# kernels forced (EDGEINFER_KERNELS=scalar: the tests read it to choose their engines' level;
# the library reads no environment); then the aarch64 pass: cross-built and run under
# qemu-user at three CPU models (scripts/test-aarch64.sh, which installs the cross toolchain
# when it is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh >/dev/null
scripts/fetch-text-data.sh >/dev/null
cargo test --workspace --release "$@"
for example in generate chat two_sessions lstm_classify zero_shot; do
    echo "--- example $example"
    cargo run --release -q -p edgeinfer-examples --example "$example"
done
EDGEINFER_KERNELS=avx2 cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm "$@"
# The Botchan perplexity test (10 windows of 512 tokens) runs in the SIMD pass only: with the
# scalar kernels it takes over ten minutes on two cores, and the scalar path is already checked
# against the reference logits and greedy ids above.
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm -p edgeinfer-e2e "$@" -- --skip botchan_perplexity
scripts/test-aarch64.sh
