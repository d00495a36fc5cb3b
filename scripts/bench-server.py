#!/usr/bin/env python3
"""Load test of a running `edgeinfer serve` (or any OpenAI-compatible server): N concurrent
streaming clients, each asking for the same number of tokens; reports per round the aggregate
completion tokens/s, time to first token (median, p95) and the server's peak RSS (--pid).

    scripts/bench-server.py --url http://127.0.0.1:8080 --clients 1,2,4,8 --tokens 128 --pid PID

Standard library only (urllib + threads): runs wherever the server does.
"""

import argparse
import json
import statistics
import threading
import time
import urllib.request


def stream_one(url, prompt, tokens, seed, temperature, out):
    body = json.dumps({
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": temperature,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        # Generate exactly `tokens`: no early end of generation.
        "ignore_eos": True,
    }).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = None
    last = None
    usage = None
    pieces = 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            msg = json.loads(data)
            if msg.get("usage"):
                usage = msg["usage"]
            if msg.get("choices") and msg["choices"][0].get("text"):
                pieces += 1
                last = time.perf_counter() - t0
                if first is None:
                    first = last
    n = usage["completion_tokens"] if usage else pieces
    out.append({
        "ttft": first,
        # Tokens after the first over the time after it: the stream's decode speed.
        "decode_tok_s": (n - 1) / (last - first) if last and first and last > first else None,
        "wall": time.perf_counter() - t0,
        "completion_tokens": usage["completion_tokens"] if usage else pieces,
    })


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--prompt", default="Write a short story about a lighthouse keeper.")
    ap.add_argument("--pid", type=int, help="server pid, for its peak RSS")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.clients.split(",")]:
        speeds, ttfts, streams = [], [], []
        for r in range(args.rounds + 1):  # round 0 warms up
            out = []
            threads = [threading.Thread(target=stream_one,
                                        args=(args.url, args.prompt, args.tokens, 1000 * r + i,
                                              args.temperature, out))
                       for i in range(n)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            if len(out) != n:
                raise SystemExit(f"{n} clients: only {len(out)} finished")
            if r == 0:
                continue
            speeds.append(sum(o["completion_tokens"] for o in out) / wall)
            ttfts.extend(o["ttft"] for o in out if o["ttft"] is not None)
            streams.extend(o["decode_tok_s"] for o in out if o["decode_tok_s"])
        ttfts.sort()
        row = {
            "clients": n,
            "aggregate_tok_s_median": statistics.median(speeds),
            "aggregate_tok_s_min": min(speeds),
            "aggregate_tok_s_max": max(speeds),
            "ttft_ms_median": 1e3 * statistics.median(ttfts),
            "ttft_ms_p95": 1e3 * ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
            "stream_decode_tok_s_median": statistics.median(streams) if streams else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| clients | aggregate tok/s (median, min–max) | per stream tok/s | TTFT median | TTFT p95 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['aggregate_tok_s_median']:.1f} ({r['aggregate_tok_s_min']:.1f}–"
              f"{r['aggregate_tok_s_max']:.1f}) | {r['stream_decode_tok_s_median'] or 0:.1f} | {r['ttft_ms_median']:.0f} ms | {r['ttft_ms_p95']:.0f} ms |")
    if args.pid:
        print(f"server peak RSS: {peak_rss_mib(args.pid):.1f} MiB")


if __name__ == "__main__":
    main()
