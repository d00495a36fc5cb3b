#!/usr/bin/env bash
# The C API end to end: build libedgeinfer.a (release), compile examples/c/*.c against it and
# crates/capi/include/edgeinfer.h with gcc -std=c99 -Wall -Werror, then run
#   generate  on the default model (SmolLM2-135M, fetched if absent): exit 0, non-empty text;
#   threads   two sessions on two threads (equal greedy text) and a cancel from a third.
# Honours CARGO_TARGET_DIR (default target/) and EDGEINFER_MODELS (default models/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
models="${EDGEINFER_MODELS:-models}"
model="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] || EDGEINFER_MODELS="$models" scripts/fetch-models.sh smollm2 >/dev/null

cargo build --release -q -p edgeinfer-capi
out="$target/capi-examples"
mkdir -p "$out"
for prog in generate threads; do
    gcc -std=c99 -O2 -Wall -Wextra -Werror -Icrates/capi/include "examples/c/$prog.c" \
        "$target/release/libedgeinfer.a" -lpthread -ldl -lm -o "$out/$prog"
done

# The same example against the shared library: the exports of libedgeinfer.so.
gcc -std=c99 -O2 -Wall -Wextra -Werror -Icrates/capi/include examples/c/generate.c \
    -L"$target/release" -ledgeinfer -Wl,-rpath,"$(cd "$target/release" && pwd)" \
    -o "$out/generate-shared"

echo "--- C example generate"
text="$("$out/generate" "$model" "The capital of France is" 32)"
printf '%s\n' "$text"
completion="${text#The capital of France is}"
if [ -z "${completion//[[:space:]]/}" ]; then
    echo "examples/c/generate printed no completion" >&2
    exit 1
fi
# Errors are reported, not crashes: a missing model exits 1 with ei_last_error's message.
if err="$("$out/generate" /nonexistent/model.gguf 2>&1)"; then
    echo "examples/c/generate succeeded on a missing model" >&2
    exit 1
fi
case "$err" in
    *"/nonexistent/model.gguf"*) ;;
    *) echo "unexpected error message: $err" >&2; exit 1 ;;
esac

echo "--- C example generate, linked with libedgeinfer.so"
shared="$("$out/generate-shared" "$model" "The capital of France is" 32)"
if [ "$shared" != "$text" ]; then
    echo "the shared-library build printed something else: $shared" >&2
    exit 1
fi

echo "--- C example threads"
"$out/threads" "$model"
