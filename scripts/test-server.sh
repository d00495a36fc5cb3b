#!/usr/bin/env bash
# The server through the real `openai` Python client: build the CLI, start `edgeinfer serve`
# with the default model on a free port, wait for /health, run tests/python/test_openai_client.py
# (in a venv under the target directory, with openai and pytest from PyPI; the load test reads
# the server's memory through its pid), stop the server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
# The binary as the workspace tests build it (the CLI's tests run it): under scripts/test.sh
# this builds nothing, where `-p edgeinfer-cli` would resolve other features and rebuild.
cargo test --workspace --release -q --test cli --no-run
venv="$target/py-openai"
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q openai pytest
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$target/release/edgeinfer" serve --port "$port" --slots 2 --ctx 1024 -t 2 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
    if [ "$(python3 -c "import urllib.request, sys
try: print(urllib.request.urlopen('$url/health', timeout=2).status)
except Exception: print(0)")" = 200 ]; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        cat "$log"
        echo "the server exited" >&2
        exit 1
    fi
    sleep 0.2
done
grep -q "listening on http://127.0.0.1:$port" "$log" || { cat "$log"; echo "no address printed" >&2; exit 1; }
EDGEINFER_SERVER_URL="$url" EDGEINFER_SERVER_PID="$server" "$venv/bin/pytest" -q tests/python/test_openai_client.py
