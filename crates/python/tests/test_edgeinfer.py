"""The Python bindings against the reference outputs and the library's contract.

Run by scripts/test-python.sh (fresh venv, wheel built by maturin). Models come from
$EDGEINFER_MODELS (default: models/ at the repository root), fixtures from fixtures/.
"""

import gc
import csv
import json
import math
import os
import threading
from pathlib import Path

import pytest

import edgeinfer

ROOT = Path(__file__).resolve().parents[3]
MODELS = Path(os.environ.get("EDGEINFER_MODELS", ROOT / "models"))
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
SMS = ROOT / "fixtures" / "lstm" / "sms.q8_0.gguf"
REFERENCE = ROOT / "fixtures" / "reference"
TEXT_DATA = Path(os.environ.get("EDGEINFER_TEXT_DATA", ROOT / "data" / "classify"))


@pytest.fixture(scope="module")
def model():
    return edgeinfer.Model(SMOLLM2, threads=2, context=256)


@pytest.fixture(scope="module")
def sms():
    return edgeinfer.LstmClassifier(SMS, threads=2)


def greedy_cases():
    with open(REFERENCE / "greedy_smollm2_q4_1.json") as f:
        return sorted(json.load(f).items())


# --- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,case", greedy_cases())
def test_greedy_generation_follows_the_reference(model, name, case):
    """As the Rust tests judge the default (quantized) path: the reference's greedy id must be
    ours wherever its top-1/top-2 margin is >= 1.0, so our free-running greedy sequence may
    leave the reference's only at a step with a smaller margin; up to there the ids are equal."""
    assert model.tokenize(case["prompt"]) == case["prompt_ids"]
    ref = case["greedy_ids"]
    margins = [s[0][1] - s[1][1] for s in case["top5_per_step"]]
    it = model.generate(case["prompt"], max_tokens=len(ref))
    text = "".join(it)
    ours = it.tokens
    assert 1 <= len(ours) <= len(ref)
    diverge = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    if diverge is None:
        # Equal all along: either the whole budget, or an end-of-generation token that the
        # reference (which does not stop) also chose.
        assert len(ours) == len(ref) or it.stop_reason == "end_of_generation"
        agreed = len(ours)
    else:
        assert margins[diverge] < 1.0, (
            f"{name}: left the reference at step {diverge}, margin {margins[diverge]}"
        )
        agreed = diverge
    first_small = next(i for i, m in enumerate(margins) if m < 1.0)
    assert agreed >= first_small
    # The streamed text is the text of the ids, and begins with the reference's text.
    assert text == model.detokenize(ours)
    assert text.startswith(model.detokenize(ref[:agreed]))
    assert it.stop_reason in ("max_tokens", "end_of_generation")
    # Greedy is deterministic.
    again = model.generate(case["prompt"], max_tokens=len(ref))
    assert "".join(again) == text and again.tokens == ours


def test_stop_strings_and_budget(model):
    full = "".join(model.generate("The capital of France is", max_tokens=16))
    assert len(model.generate("x", max_tokens=0).tokens) == 0
    it = model.generate("The capital of France is", max_tokens=3)
    list(it)
    assert len(it.tokens) == 3 and it.stop_reason == "max_tokens"
    # Stop at the first word of the greedy text: nothing of it (or after it) is emitted.
    word = full.split()[1]
    it = model.generate("The capital of France is", max_tokens=16, stop=[word])
    out = "".join(it)
    assert it.stop_reason == "stop_string"
    assert out == full[: full.index(word)]


def test_sampling_is_seeded(model):
    kw = dict(max_tokens=12, temperature=0.9, top_k=40, top_p=0.95, seed=7)
    a = model.generate("Once upon a time", **kw)
    b = model.generate("Once upon a time", **kw)
    assert "".join(a) == "".join(b) and a.tokens == b.tokens
    assert a.tokens and len(a.tokens) == 12
    runs = set()
    for s in range(1, 6):
        it = model.generate("Once upon a time", **dict(kw, seed=s))
        list(it)
        runs.add(tuple(it.tokens))
    assert len(runs) > 1


def test_chat_renders_the_template_and_replies(model):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    it = model.chat(messages, max_tokens=24)
    reply = "".join(it)
    assert reply.strip()
    assert "<|im_start|>" not in reply and "<|im_end|>" not in reply
    # The prompt is the template's: more tokens than the question alone, with the turn markers.
    question = model.tokenize("What is the capital of France?")
    assert it.prompt_tokens > len(question) + 4
    # The same as generating on the rendered ChatML prompt (SmolLM2's template).
    rendered = model.generate(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n",
        max_tokens=24,
    )
    assert "".join(rendered) == reply
    with pytest.raises(edgeinfer.InvalidInputError):
        model.chat([{"role": "user"}])
    with pytest.raises(TypeError):
        model.chat("hello")


# --- tokenizer, score, embed -----------------------------------------------------------------


def test_tokenize_matches_reference_and_round_trips(model):
    with open(REFERENCE / "tokenize.json") as f:
        cases = json.load(f)
    assert len(cases) >= 8
    for case in cases:
        ids = model.tokenize(case["text"], add_special=False)
        assert ids == case["ids"], case["text"]
        assert model.detokenize(ids, special=True) == case["text"]
    text = "Grüße, 世界! 🤖 edge inference"
    assert model.detokenize(model.tokenize(text, add_special=False)) == text
    assert model.vocab_size == 49152


def test_score_is_the_sum_of_token_log_probs(model):
    text = "The capital of France is Paris."
    per = model.score(text, per_token=True)
    assert len(per) == len(model.tokenize(text)) - 1
    assert all(lp <= 0.0 for lp in per)
    assert math.isclose(model.score(text), sum(per), rel_tol=1e-9)
    # A fluent sentence is likelier than the same words shuffled.
    shuffled = "Paris France of is capital The."
    assert model.score(text) > model.score(shuffled)
    with pytest.raises(edgeinfer.InvalidInputError):
        model.score("")


def test_embed_unit_length_and_batch_equals_single(model):
    texts = ["The cat sat on the mat.", "A kitten rests on a rug.", "Quarterly tax filing rules."]
    single = [model.embed(t) for t in texts]
    batch = model.embed(texts)
    for v in single:
        assert len(v) == 576
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4
    for a, b in zip(single, batch):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(single[0], single[1]) > cos(single[0], single[2])
    assert model.active_sessions == 0
    with pytest.raises(TypeError):
        model.embed(3)


# --- LSTM classifier -------------------------------------------------------------------------

SPAM = [
    "WINNER!! As a valued network customer you have been selected to receive a £900 prize "
    "reward! To claim call 09061701461. Claim code KL341. Valid 12 hours only.",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 "
    "to receive entry question(std txt rate)",
    "URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot! Txt the "
    "word: CLAIM to No: 81010",
]
HAM = [
    "Ok lar... Joking wif u oni...",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight",
    "Sorry, I'll call you later. Are you coming for dinner?",
]


def test_lstm_classifies_obvious_spam_and_ham(sms):
    assert sms.labels == ["ham", "spam"]
    for text in SPAM:
        label, p = sms.classify(text)
        assert label == "spam", text
        assert 0.5 < p <= 1.0
    for text in HAM:
        label, p = sms.classify(text)
        assert label == "ham", text
        assert 0.5 < p <= 1.0


def test_lstm_batch_equals_one_by_one(sms):
    texts = SPAM + HAM + ["", "hi", "call me"] * 5
    batch = sms.classify(texts)
    assert len(batch) == len(texts)
    for text, (label, p) in zip(texts, batch):
        one_label, one_p = sms.classify(text)
        assert label == one_label
        assert abs(p - one_p) < 1e-5
    assert sms.classify([]) == []
    with pytest.raises(TypeError):
        sms.classify(5)
    with pytest.raises(TypeError):
        sms.classify(["ok", 5])


def test_lstm_keeps_its_sms_test_accuracy(sms):
    """The int8 SMS fixture on the fixed test split: the floor tests/lstm_baselines.rs holds
    it to (the Naive Bayes baseline, 98.7 %), through one batched call; the batch agrees with
    classifying text by text."""
    with open(TEXT_DATA / "sms" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 400
    texts = [r["text"] for r in rows]
    batch = sms.classify(texts)
    correct = sum(label == r["label"] for (label, _), r in zip(batch, rows))
    assert correct / len(rows) >= 0.987, f"{correct}/{len(rows)}"
    for text, got in zip(texts[:100], batch[:100]):
        label, p = sms.classify(text)
        assert got[0] == label and abs(got[1] - p) < 1e-5


# --- errors ----------------------------------------------------------------------------------


def test_load_errors(tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(edgeinfer.LoadError) as e:
        edgeinfer.Model(missing)
    assert isinstance(e.value, edgeinfer.Error)
    assert "no-such-model.gguf" in str(e.value)
    with pytest.raises(edgeinfer.LoadError):
        edgeinfer.LstmClassifier(missing)
    # Each kind of file refused by the other class, with the library's message.
    with pytest.raises(edgeinfer.LoadError, match="lstm-classifier"):
        edgeinfer.LstmClassifier(SMOLLM2)
    with pytest.raises(edgeinfer.LoadError):
        edgeinfer.Model(SMS)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all")
    with pytest.raises(edgeinfer.LoadError):
        edgeinfer.Model(garbage)
    with pytest.raises(edgeinfer.InvalidInputError):
        edgeinfer.Model(SMOLLM2, threads=0)
    assert issubclass(edgeinfer.ContextFullError, edgeinfer.Error)
    assert issubclass(edgeinfer.InvalidInputError, edgeinfer.Error)
    assert issubclass(edgeinfer.Error, Exception)


def test_input_errors(model):
    small = edgeinfer.Model(SMOLLM2, threads=1, context=16)
    with pytest.raises(edgeinfer.ContextFullError, match="context full"):
        small.generate("word " * 40)
    with pytest.raises(edgeinfer.ContextFullError):
        small.score("word " * 40)
    assert small.active_sessions == 0
    with pytest.raises(edgeinfer.InvalidInputError):
        model.generate("")  # SmolLM2 adds no BOS: nothing to run
    with pytest.raises(edgeinfer.InvalidInputError):
        model.detokenize([1_000_000])
    with pytest.raises(OverflowError):
        model.detokenize([-1])
    with pytest.raises(edgeinfer.InvalidInputError):
        model.generate("hi", top_p=0.0)
    with pytest.raises(edgeinfer.InvalidInputError):
        model.generate("hi", temperature=float("nan"))
    with pytest.raises(TypeError):
        model.generate(123)
    with pytest.raises(TypeError):
        model.generate("hi", stop="x")  # a list of strings, not a string
    with pytest.raises(TypeError):
        model.tokenize(b"bytes")
    assert model.active_sessions == 0


# --- sessions and threads --------------------------------------------------------------------


def test_interrupted_iterator_frees_its_session(model):
    assert model.active_sessions == 0
    it = model.generate("Once upon a time", max_tokens=64)
    assert model.active_sessions == 1
    pieces = []
    for piece in it:
        pieces.append(piece)
        if len(pieces) == 2:
            break
    assert model.active_sessions == 1
    del it
    gc.collect()
    assert model.active_sessions == 0

    # close(): frees at once, ends the iteration
    it = model.generate("Once upon a time", max_tokens=64)
    next(it)
    it.close()
    assert model.active_sessions == 0
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # idempotent
    # running to the end frees it too
    it = model.generate("Once upon a time", max_tokens=4)
    list(it)
    assert model.active_sessions == 0 and len(it.tokens) == 4
    # a with-block closes it
    with model.generate("Once upon a time", max_tokens=64) as it:
        next(it)
        assert model.active_sessions == 1
    assert model.active_sessions == 0


def test_iterator_outlives_its_model_object():
    m = edgeinfer.Model(SMOLLM2, threads=1, context=64)
    it = m.generate("The capital of France is", max_tokens=6)
    del m
    gc.collect()
    assert len("".join(it)) > 0 and len(it.tokens) == 6


def test_two_threads_generate_at_once(model):
    prompts = ["The capital of France is", "Once upon a time"]
    alone = ["".join(model.generate(p, max_tokens=20)) for p in prompts]
    results = [None, None]
    errors = []
    barrier = threading.Barrier(2)

    def run(i):
        try:
            barrier.wait()
            results[i] = "".join(model.generate(prompts[i], max_tokens=20))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert results == alone
    assert model.active_sessions == 0


def test_the_gil_is_released_while_rust_runs():
    """A session exists only inside the Rust call (score makes one and drops it before
    returning): a Python thread that sees one alive ran while that call did, which it cannot
    do unless the call released the GIL."""
    m = edgeinfer.Model(SMOLLM2, threads=1, context=1024)
    text = "It was a bright cold day in April, and the clocks were striking thirteen. " * 12
    seen = threading.Event()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if m.active_sessions == 1:
                seen.set()
                return

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(20):
            m.score(text)
            if seen.is_set():
                break
    finally:
        stop.set()
        t.join()
    assert seen.is_set()
    assert m.active_sessions == 0


def test_cancel_from_another_thread(model):
    big = edgeinfer.Model(SMOLLM2, threads=1, context=2048)
    it = big.generate("Once upon a time", max_tokens=2000)
    first = threading.Event()
    out = []

    def consume():
        for piece in it:
            out.append(piece)
            first.set()

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(timeout=60)
    it.cancel()
    t.join(timeout=120)
    assert not t.is_alive()
    assert it.stop_reason == "cancelled"
    assert 1 <= len(it.tokens) < 2000
    assert big.active_sessions == 0
