"""Measurements of the Python bindings against the `edgeinfer` CLI (not a test; run by hand).

    python crates/python/bench.py gen  CLI MODEL           # one generate call, A/B with the CLI
    python crates/python/bench.py cls  CLI LSTM CSV        # classify(list), 1 and 2 processes

Alternates A and B three times and prints the medians.
"""

import csv
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import edgeinfer

PROMPT = "The capital of France is"
N = 32


def py_generate(model_path):
    t = time.perf_counter()
    m = edgeinfer.Model(model_path, threads=2, context=2048)
    load = time.perf_counter() - t
    t = time.perf_counter()
    it = m.generate(PROMPT, max_tokens=N)
    text = "".join(it)
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = "".join(m.generate(PROMPT, max_tokens=N))
    second = time.perf_counter() - t
    assert again == text
    return load, first, second, len(it.tokens)


def cli_generate(cli, model_path):
    t = time.perf_counter()
    out = subprocess.run(
        [cli, "generate", "-m", model_path, "-p", PROMPT, "-n", str(N), "--temp", "0",
         "-t", "2", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    wall = time.perf_counter() - t
    tm = json.loads(out)["timings"]
    return wall, tm["load_ms"] / 1e3, (tm["prefill_ms"] + tm["decode_ms"]) / 1e3, len(
        json.loads(out)["generated_ids"])


_clf = None


def _init(path):
    global _clf
    _clf = edgeinfer.LstmClassifier(path, threads=1)


def _work(texts):
    return _clf.classify(texts)


def py_classify(path, texts, procs):
    t = time.perf_counter()
    if procs == 1:
        out = edgeinfer.LstmClassifier(path, threads=2).classify(texts)
    else:
        chunks = [texts[i::procs] for i in range(procs)]
        with ProcessPoolExecutor(procs, initializer=_init, initargs=(path,)) as ex:
            parts = list(ex.map(_work, chunks))
        out = [None] * len(texts)
        for i, part in enumerate(parts):
            out[i::procs] = part
    return time.perf_counter() - t, out


def cli_classify(cli, path, csv_path):
    t = time.perf_counter()
    out = subprocess.run(
        [cli, "classify", "-m", path, "--file", csv_path, "--json", "-t", "2"],
        check=True, capture_output=True, text=True,
    ).stdout
    return time.perf_counter() - t, out


def main():
    mode, cli = sys.argv[1], sys.argv[2]
    if mode == "gen":
        model = sys.argv[3]
        rows = {"cli": [], "py": []}
        for _ in range(3):
            rows["cli"].append(cli_generate(cli, model))
            rows["py"].append(py_generate(model))
        med = lambda k, i: statistics.median(r[i] for r in rows[k])  # noqa: E731
        rest = statistics.median(r[0] - r[1] for r in rows["cli"])
        print(f"CLI: wall {med('cli', 0):.3f}s, load {med('cli', 1):.3f}s, "
              f"wall - load {rest * 1e3:.1f} ms, "
              f"prefill+decode {med('cli', 2) * 1e3:.1f} ms, {rows['cli'][0][3]} tokens")
        print(f"Python: load {med('py', 0):.3f}s, first generate {med('py', 1) * 1e3:.1f} ms, "
              f"second {med('py', 2) * 1e3:.1f} ms, {rows['py'][0][3]} tokens")
    else:
        path, csv_path = sys.argv[3], sys.argv[4]
        with open(csv_path, newline="") as f:
            texts = [r["text"] for r in csv.DictReader(f)]
        res = {"cli": [], "py1": [], "py2": []}
        for _ in range(3):
            res["cli"].append(cli_classify(cli, path, csv_path)[0])
            t1, o1 = py_classify(path, texts, 1)
            res["py1"].append(t1)
            t2, o2 = py_classify(path, texts, 2)
            res["py2"].append(t2)
            assert [a for a, _ in o1] == [a for a, _ in o2]
        for k, v in res.items():
            m = statistics.median(v)
            print(f"{k}: {m:.3f}s for {len(texts)} texts = {len(texts) / m:,.0f} texts/s "
                  f"({m / len(texts) * 1e6:.1f} µs/text, incl. process start and load)")


if __name__ == "__main__":
    main()
