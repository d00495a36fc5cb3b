"""The server through the real `openai` client (run by scripts/test-server.sh, which starts
`edgeinfer serve` with the default model and sets EDGEINFER_SERVER_URL)."""

import math
import os

import openai
import pytest

BASE = os.environ["EDGEINFER_SERVER_URL"] + "/v1"


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=120)


def test_models(client):
    ids = [m.id for m in client.models.list().data]
    assert len(ids) == 1 and ids[0]


def test_chat_plain_and_streamed_agree(client):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="smollm2", messages=msgs, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    assert r.object == "chat.completion"
    assert text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 < r.usage.completion_tokens <= 24

    stream = client.chat.completions.create(
        model="smollm2", messages=msgs, max_tokens=24, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == text
    assert finish == r.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens


def test_completion_plain_and_streamed_agree_and_stop(client):
    r = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=16, temperature=0)
    text = r.choices[0].text
    assert r.object == "text_completion" and text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="smollm2", prompt="The capital of France is", max_tokens=16, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == text
    word = text.split()[len(text.split()) // 2]
    s = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=16, temperature=0, stop=[word]
    )
    assert s.choices[0].text == text[: text.index(word)]
    assert s.choices[0].finish_reason == "stop"


def test_seeded_sampling_repeats(client):
    args = dict(model="smollm2", prompt="My favourite food is", max_tokens=12, temperature=0.9, seed=42)
    a = client.completions.create(**args).choices[0].text
    b = client.completions.create(**args).choices[0].text
    assert a == b


def test_chat_logprobs(client):
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=6, temperature=0, logprobs=True, top_logprobs=3,
    )
    content = r.choices[0].logprobs.content
    assert content
    for t in content:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob == t.logprob  # greedy
        assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1 + 1e-5
    assert bytes(b for t in content for b in t.bytes).decode() == r.choices[0].message.content


def test_completion_logprobs(client):
    r = client.completions.create(model="smollm2", prompt="Hello", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert all(len(t) <= 2 for t in lp.top_logprobs)


def test_bad_request_raises(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2", messages=[], max_tokens=4)
    assert e.value.status_code == 400
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt="hi", temperature=7)


def test_embeddings(client):
    # The client asks for base64 by default and decodes it to floats.
    r = client.embeddings.create(model="smollm2", input=["The cat sat on the mat.", "Stock markets fell."])
    assert [d.index for d in r.data] == [0, 1]
    a, b = (d.embedding for d in r.data)
    assert len(a) == len(b) == 576  # SmolLM2-135M's hidden size
    assert abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-4
    assert a != b
    assert r.usage.prompt_tokens > 0
    f = client.embeddings.create(model="smollm2", input="The cat sat on the mat.", encoding_format="float")
    assert f.data[0].embedding == a


def _rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _health():
    import json
    import urllib.request
    with urllib.request.urlopen(os.environ["EDGEINFER_SERVER_URL"] + "/health", timeout=10) as r:
        return json.load(r)


def test_load_16_streaming_clients_some_disconnecting(client):
    """16 concurrent streaming clients (the server has 2 slots; the rest queue), 4 of them
    dropping their stream after 2 chunks, twice: every finished stream equals the same seeded
    request run alone, nothing is refused or left busy, and the second round does not grow the
    server's memory."""
    import threading

    prompt = "Write a list of fruits:"
    tokens = 24

    def request(seed):
        return client.completions.create(
            model="smollm2", prompt=prompt, max_tokens=tokens, temperature=0.9, seed=seed,
            stream=True,
        )

    def run(seed, drop, out):
        try:
            stream = request(seed)
            text = []
            for i, c in enumerate(stream):
                if c.choices:
                    text.append(c.choices[0].text)
                if drop and i == 1:
                    stream.close()  # closes the connection: the server cancels it
                    out[seed] = None
                    return
            out[seed] = "".join(text)
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            out[seed] = e

    seeds = list(range(100, 116))
    alone = {}
    for s in seeds[:12]:
        alone[s] = "".join(c.choices[0].text for c in request(s) if c.choices)

    pid = int(os.environ["EDGEINFER_SERVER_PID"])
    rss = []
    for _ in range(2):
        out = {}
        threads = [threading.Thread(target=run, args=(s, s >= 112, out)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in seeds:
            assert not isinstance(out[s], Exception), f"seed {s}: {out[s]!r}"
            if s < 112:
                assert out[s] == alone[s], f"seed {s}: under load {out[s]!r}, alone {alone[s]!r}"
        # Cancelled slots are freed at the next step.
        for _ in range(100):
            h = _health()
            if h["busy"] == 0 and h["queued"] == 0:
                break
            threading.Event().wait(0.05)
        assert h["busy"] == 0 and h["queued"] == 0, h
        rss.append(_rss_mib(pid))
    assert rss[1] - rss[0] < 8, f"server RSS after round 1 / 2: {rss} MiB"
