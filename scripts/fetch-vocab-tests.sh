#!/usr/bin/env bash
# Fetch llama.cpp's tokenizer test vectors (vocab-only GGUF files with input strings and
# expected ids) from the sdist of llama-cpp-python==0.3.36 on PyPI (data only; none of its code
# is used), verify the sdist's sha256, and cache them in data/vocab/ (git-ignored).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/data/vocab"
want="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
vocabs="gpt-2 qwen2 llama-bpe starcoder command-r llama-spm phi-3"
missing=0
for v in $vocabs; do [ -f "$out/ggml-vocab-$v.gguf.out" ] || missing=1; done
[ "$missing" = 0 ] && { echo "$out"; exit 0; }
mkdir -p "$out"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --disable-pip-version-check -d "$tmp" llama-cpp-python==0.3.36 >&2
python3 - "$tmp" "$want" "$out" $vocabs <<'PY'
import glob, hashlib, sys, tarfile, os
tmp, want, out, *vocabs = sys.argv[1:]
sdist = glob.glob(tmp + "/llama_cpp_python-0.3.36.tar.gz")[0]
h = hashlib.sha256(open(sdist, "rb").read()).hexdigest()
if h != want:
    sys.exit(f"sdist sha256 {h} != {want}")
t = tarfile.open(sdist)
for v in vocabs:
    for ext in ("", ".inp", ".out"):
        name = f"ggml-vocab-{v}.gguf{ext}"
        data = t.extractfile(f"llama_cpp_python-0.3.36/vendor/llama.cpp/models/{name}").read()
        open(os.path.join(out, name), "wb").write(data)
PY
echo "$out"
