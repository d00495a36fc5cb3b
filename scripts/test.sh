#!/usr/bin/env bash
# The whole test suite: fetch the default model (checksum-verified, cached), run every test
# with the dispatched (SIMD) kernels, then the kernel and LSTM tests with the level capped at
# AVX2 (on a CPU with AVX-VNNI the first pass ran its tiles), then the kernel and end-to-end
# tests again with the scalar reference kernels forced (EDGEINFER_KERNELS=scalar); then the
# aarch64 pass: cross-built and run under qemu-user at three CPU models
# (scripts/test-aarch64.sh, which installs the cross toolchain when it is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh >/dev/null
scripts/fetch-text-data.sh >/dev/null
cargo test --workspace --release "$@"
EDGEINFER_KERNELS=avx2 cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm "$@"
# The Botchan perplexity test (10 windows of 512 tokens) runs in the SIMD pass only: with the
# scalar kernels it takes over ten minutes on two cores, and the scalar path is already checked
# against the reference logits and greedy ids above.
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-kernels -p edgeinfer-lstm -p edgeinfer-e2e "$@" -- --skip botchan_perplexity
scripts/test-aarch64.sh
