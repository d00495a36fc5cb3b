#!/usr/bin/env bash
# The whole test suite: fetch the default model (checksum-verified, cached), run every test
# with the dispatched (SIMD) kernels, then the kernel and end-to-end tests again with the
# scalar reference kernels forced (EDGEINFER_KERNELS=scalar).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh >/dev/null
cargo test --workspace --release "$@"
EDGEINFER_KERNELS=scalar cargo test --release -p edgeinfer-kernels -p edgeinfer-e2e "$@"
