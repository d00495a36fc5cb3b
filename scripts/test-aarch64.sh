#!/usr/bin/env bash
# aarch64 (Raspberry Pi 4/5, ARM laptops) under emulation: cross-build the kernel, LSTM and
# end-to-end tests and run them with qemu-user at three CPU models:
#   cortex-a72  Raspberry Pi 4: NEON only
#   cortex-a76  Raspberry Pi 5: NEON + dotprod (+ fp16)
#   max         everything qemu has, i8mm included (Apple M2+, newer Cortex)
# (Doc tests are left to the native pass: they are target-independent examples, and rustdoc
# would compile them again for each CPU model.)
# The kernel tests loop over every kernel level the emulated CPU reports, so each model runs
# its own levels plus the scalar reference; the tiny golden decoders (fixtures/decoder) run
# each architecture's forward at each model's best level. The end-to-end check (SmolLM2 against the
# reference outputs) runs at cortex-a76 only: emulation is 20-50x slower than a real board.
#
# The toolchain comes from Debian's packages (Rust 1.96 at /usr/bin/rustc with the aarch64
# standard library, the aarch64 linker, qemu-user); it is installed when missing, which
# needs root and apt. The rustup toolchain stays the default for everything else.
# Emulation checks correctness only: nothing timed here says anything about speed.
#
# usage: scripts/test-aarch64.sh [--e2e-cpu CPU] [--cpus "a b c"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cpus="cortex-a72 cortex-a76 max"
e2e_cpu="cortex-a76"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpus) cpus="$2"; shift 2 ;;
    --e2e-cpu) e2e_cpu="$2"; shift 2 ;;
    *) echo "usage: $0 [--cpus \"cortex-a72 cortex-a76 max\"] [--e2e-cpu CPU]" >&2; exit 2 ;;
  esac
done

target=aarch64-unknown-linux-gnu
have_toolchain() {
  [ -x /usr/bin/rustc ] && command -v aarch64-linux-gnu-gcc >/dev/null &&
    command -v qemu-aarch64 >/dev/null &&
    [ -n "$(/usr/bin/rustc --print sysroot 2>/dev/null)" ] &&
    ls "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$target/lib/"libstd-*.rlib >/dev/null 2>&1
}
if ! have_toolchain; then
  echo "installing the aarch64 cross toolchain and qemu-user (Debian packages) ..." >&2
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: the aarch64 toolchain is missing and this is not a root Debian shell; run as root:" >&2
    echo "  dpkg --add-architecture arm64 && apt-get update && apt-get install -y rustc-web \\" >&2
    echo "    libstd-rust-web-dev libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu qemu-user" >&2
    exit 1
  fi
  dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web libstd-rust-web-dev \
    libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu qemu-user >/dev/null
  have_toolchain || { echo "error: aarch64 toolchain still incomplete after install" >&2; exit 1; }
fi

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
/usr/bin/rustc --version
qemu-aarch64 --version | head -1

# Built without LTO and debug info (the code and its optimisation level are a release
# build's), and only the test targets run below: the link steps are most of a cross-build.
export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_DEBUG=false
scripts/fetch-models.sh >/dev/null
# One package set for the build and every run, so that no run resolves other features and
# rebuilds; the runs below choose their tests from it by target name.
packages=(-p edgeinfer-kernels -p edgeinfer-lstm -p edgeinfer-transformer -p edgeinfer-e2e)
# The kernel and LSTM tests (unit tests of every library in the set, the kernel contract, the
# LSTM golden logits); every architecture's forward (llama, qwen2, gemma3 with its sliding
# window) on the tiny golden models, against the independent NumPy forward, at this CPU's best
# level; and the multi-session decode step against each session stepping alone, at every level.
per_cpu=(--lib --test tiny_golden --test decode_many)
for f in crates/kernels/tests/*.rs crates/lstm/tests/*.rs; do
  per_cpu+=(--test "$(basename "$f" .rs)")
done
start=$SECONDS
cargo test --release --target "$target" "${packages[@]}" "${per_cpu[@]}" \
  --test smollm2_reference --no-run
echo "aarch64 cross-build: $((SECONDS - start)) s"

run() { # CPU, then cargo test arguments
  local cpu="$1"; shift
  local t0=$SECONDS
  echo "== qemu-aarch64 -cpu $cpu: $*"
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu" \
    cargo test --release --target "$target" "${packages[@]}" "$@"
  echo "== $cpu done in $((SECONDS - t0)) s"
}

for cpu in $cpus; do
  run "$cpu" "${per_cpu[@]}"
done
# SmolLM2 end to end: tokenizer ids and the default path teacher-forced against the reference
# outputs (one batched forward per prompt), decode through the KV cache against recompute.
run "$e2e_cpu" --test smollm2_reference -- \
  tokenizer_matches_reference_ids quantized_teacher_forced_within_reference_tolerances \
  kv_cache_decode_equals_full_recompute
