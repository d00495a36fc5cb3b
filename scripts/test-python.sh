#!/usr/bin/env bash
# The Python bindings end to end: a fresh venv under $CARGO_TARGET_DIR (default target/),
# maturin + pytest from PyPI, the abi3 wheel of crates/python built (release) and installed,
# then pytest crates/python/tests against the default model (SmolLM2-135M, fetched if absent)
# and the SMS LSTM fixture (also on the SMS test split of scripts/fetch-text-data.sh).
# Honours CARGO_TARGET_DIR and EDGEINFER_MODELS (default models/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
models="${EDGEINFER_MODELS:-models}"
[ -f "$models/SmolLM2-135M-Instruct.Q4_1.gguf" ] ||
    EDGEINFER_MODELS="$models" scripts/fetch-models.sh smollm2 >/dev/null
text_data="$(scripts/fetch-text-data.sh)" # data/classify: the SMS test split

venv="$target/py-venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin pytest

wheels="$target/py-wheels"
rm -rf "$wheels"
# maturin builds with cargo, which honours CARGO_TARGET_DIR.
"$venv/bin/maturin" build --release -q -m crates/python/Cargo.toml -o "$wheels"
"$venv/bin/pip" install -q --disable-pip-version-check "$wheels"/edgeinfer-*.whl

EDGEINFER_MODELS="$(cd "$models" && pwd)" EDGEINFER_TEXT_DATA="$text_data" "$venv/bin/python" -m pytest -q crates/python/tests
