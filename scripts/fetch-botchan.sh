#!/usr/bin/env bash
# Fetch "Botchan" (Project Gutenberg #8868, public domain) from the sdist of
# sentencepiece==0.2.3 on PyPI, verify its sha256, strip the Gutenberg header/footer and the
# BOM/CRLFs, and cache the body as data/botchan-body.txt (git-ignored). Prints the path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/data/botchan-body.txt"
want="464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7"
[ -f "$out" ] && { echo "$out"; exit 0; }
mkdir -p "$root/data"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary sentencepiece --disable-pip-version-check -d "$tmp" sentencepiece==0.2.3 >&2
python3 - "$tmp" "$want" "$out" <<'PY'
import hashlib, sys, tarfile, glob
tmp, want, out = sys.argv[1:]
sdist = glob.glob(tmp + "/sentencepiece-0.2.3.tar.gz")[0]
raw = tarfile.open(sdist).extractfile("sentencepiece-0.2.3/test/botchan.txt").read()
got = hashlib.sha256(raw).hexdigest()
if got != want:
    sys.exit(f"botchan.txt sha256 {got} != {want}")
text = raw.decode("utf-8-sig").replace("\r\n", "\n")
start = text.find("*** START OF")
start = text.find("\n", start) + 1 if start >= 0 else 0
end = text.find("*** END OF")
body = text[start:end if end >= 0 else len(text)].strip() + "\n"
open(out, "w", encoding="utf-8").write(body)
PY
echo "$out"
