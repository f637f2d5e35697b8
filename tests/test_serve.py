"""``unmask serve``: real server processes on 127.0.0.1, talked to with the official ``openai`` client.

Two servers start once for the module (in parallel): the tiny random-weight LLaDA of the other
tests (a language model with a chat template) and the default model (``unmask serve`` with no
model flag: the built-in tiny Sudoku model). Expected texts come from the engine in this process,
so the tests check that the server decodes exactly what ``generate`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx  # the test extra installs httpx, openai, starlette and uvicorn
import openai
import pytest
from tiny import write_tiny

from unmask.decoding.engine import generate
from unmask.serve.schema import ApiError
from unmask.session import Session

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_NEW = 16
START_TIMEOUT = 120  # seconds: a loaded CI machine imports torch slowly


class Server:
    def __init__(self, name: str, args: list[str], tmp: Path) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "OMP_NUM_THREADS": "1"}
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "unmask", "serve", "--port", "0", *args],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.port: int | None = None

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited: {self.log.read_text()}")
            m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", self.log.read_text())
            if m:
                self.port = int(m.group(1))
                try:
                    if httpx.get(self.url("/health"), timeout=5).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"server {self.name} did not start: {self.log.read_text()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def client(self):
        return openai.OpenAI(base_url=self.url("/v1"), api_key="unused", max_retries=0, timeout=60)

    def health(self) -> dict:
        return httpx.get(self.url("/health"), timeout=10).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    folder = write_tiny(tmp / "llada", "llada")
    llm = Server("llm", ["--model_name_or_path", str(folder), "--served_model_name", "tiny-llada",
                         "--max_new_tokens", str(MAX_NEW), "--max_wait_ms", "50", "--max_batch_size", "8"], tmp)
    sudoku = Server("sudoku", [], tmp)  # no model flag: the default model
    try:
        yield {"llm": llm.wait_ready(), "sudoku": sudoku.wait_ready(), "folder": folder}
    finally:
        llm.stop()
        sudoku.stop()


@pytest.fixture(scope="module")
def llm(servers):
    return servers["llm"]


@pytest.fixture(scope="module")
def session(servers):
    return Session.load(str(servers["folder"]))


def expected(session: Session, prompt, sampler: str = "confidence", chat: bool = False, **kw) -> tuple[str, object]:
    """What the engine itself generates for this prompt (the server must return the same)."""
    ids = session.encode_prompt(prompt if not chat else [{"role": "user", "content": prompt}],
                                chat_template=None if chat else False)
    out = session.generate_ids([ids], sampler, {k: kw.pop(k) for k in list(kw) if k == "threshold"},
                               {"max_new_tokens": MAX_NEW, **kw})
    text = session.tokenizer.decode(out.generated[0], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text, out


def stream_text(chunks, chat: bool) -> tuple[list[str], list[str]]:
    """Per choice: the concatenated streamed text and the finish reason."""
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    for ch in chunks:
        for c in ch.choices:
            piece = (c.delta.content if chat else c.text) or ""
            texts[c.index] = texts.get(c.index, "") + piece
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    return [texts[i] for i in sorted(texts)], [finish[i] for i in sorted(finish)]


# --------------------------------------------------------------------------- language model
def test_models_health_and_completion_match_the_engine(llm, session):
    c = llm.client()
    assert [m.id for m in c.models.list().data] == ["tiny-llada"]
    assert llm.health()["status"] == "ok"
    r = c.completions.create(model="tiny-llada", prompt="hello there", seed=3)
    text, out = expected(session, "hello there", seed=3)
    assert r.choices[0].text == text
    assert r.choices[0].finish_reason == ("length" if len(out.generated[0]) == MAX_NEW else "stop")
    assert r.usage.prompt_tokens == len(session.encode_prompt("hello there", chat_template=False))
    assert r.usage.completion_tokens == len(out.generated[0])
    assert r.unmask["nfe"] == out.traces[0].nfe
    assert r.unmask["cumulative_entropy"] == pytest.approx(out.traces[0].cumulative_entropy, abs=1e-5)
    assert "forward_tokens" in r.unmask


def test_chat_uses_the_chat_template(llm, session):
    r = llm.client().chat.completions.create(model="tiny-llada", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=8, seed=5)
    text, _ = expected(session, "hi", chat=True, seed=5, max_new_tokens=8)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == text


@pytest.mark.parametrize("chat", [False, True])
def test_stream_concatenates_to_the_non_streamed_text(llm, chat):
    c = llm.client()
    kw = dict(model="tiny-llada", seed=11, temperature=0.0, n=2, extra_body={"steps": 8, "block_size": 8})
    if chat:
        call = c.chat.completions.create
        kw["messages"] = [{"role": "user", "content": "tell me a story"}]
    else:
        call = c.completions.create
        kw["prompt"] = "once upon a time"
    full = call(**kw)
    texts, finish = stream_text(call(stream=True, **kw), chat)
    assert texts == [(ch.message.content if chat else ch.text) for ch in full.choices]
    assert finish == [ch.finish_reason for ch in full.choices]
    assert any(t for t in texts)


def test_stream_sends_text_before_the_end_and_the_canvas_on_request(llm):
    c = llm.client()
    chunks = list(c.completions.create(model="tiny-llada", prompt="abc", seed=2, stream=True,
                                       extra_body={"sampler": "leftright", "stream_canvas": True}))
    canvases = [ch.unmask for ch in chunks if getattr(ch, "unmask", None) and "canvas" in ch.unmask]
    # left to right: every step finalises one more token, so text arrives step by step
    pieces = [ch.choices[0].text for ch in chunks if ch.choices and ch.choices[0].text]
    assert len(pieces) >= MAX_NEW // 2
    assert [cv["step"] for cv in canvases] == list(range(len(canvases)))
    assert canvases[0]["canvas"] == "░" * MAX_NEW
    assert "░" not in canvases[-1]["canvas"]


def test_stop_strings_cut_the_text_in_both_modes(llm):
    c = llm.client()
    for seed in range(4, 40):  # a sampled text with a first occurrence of a character after position 2
        base = c.completions.create(model="tiny-llada", prompt="stop test", seed=seed, temperature=0.7).choices[0].text
        cut = next((i for i in range(2, len(base) - 1) if base[i] not in base[:i]), None)
        if cut is not None:
            break
    assert cut is not None
    stop = base[cut : cut + 2]
    r = c.completions.create(model="tiny-llada", prompt="stop test", seed=seed, temperature=0.7, stop=[stop])
    assert r.choices[0].text == base[:cut] and r.choices[0].finish_reason == "stop"
    texts, finish = stream_text(c.completions.create(model="tiny-llada", prompt="stop test", seed=seed,
                                                     temperature=0.7, stop=[stop], stream=True), chat=False)
    assert texts == [base[:cut]] and finish == ["stop"]


def test_extra_body_settings_reach_the_engine(llm, session):
    c = llm.client()
    r = c.completions.create(model="tiny-llada", prompt="abc", seed=1,
                             extra_body={"sampler": "leftright", "steps": 4})
    text, out = expected(session, "abc", "leftright", seed=1, steps=4)
    assert r.unmask["nfe"] == out.traces[0].nfe == 4
    assert r.choices[0].text == text
    assert r.unmask["settings"]["sampler"] == "leftright" and r.unmask["settings"]["steps"] == 4
    r = c.completions.create(model="tiny-llada", prompt="abc", seed=1, temperature=1.0, top_p=0.9,
                             extra_body={"sampler": "threshold", "threshold": 0.3, "top_k": 5})
    text, out = expected(session, "abc", "threshold", seed=1, temperature=1.0, top_p=0.9, top_k=5, threshold=0.3)
    assert r.choices[0].text == text and r.unmask["nfe"] == out.traces[0].nfe
    assert r.unmask["settings"]["threshold"] == 0.3


@pytest.mark.parametrize("body,param", [
    ({"prompt": "a", "steps": -1}, "steps"),
    ({"prompt": "a", "temperature": "hot"}, "temperature"),
    ({"prompt": "a", "sampler": "nope"}, "sampler"),
    ({"prompt": "a", "stepz": 3}, "stepz"),
    ({"prompt": "a", "use_cache": "sometimes"}, "use_cache"),
    ({"prompt": "a", "max_tokens": 1000}, "prompt"),
    ({"prompt": "a", "top_p": 1.5}, "top_p"),
    ({"prompt": "a", "presence_penalty": 0.5}, "presence_penalty"),
    ({"prompt": "a", "pc_freq_file": "/etc/passwd"}, "pc_freq_file"),
    ({"prompt": "a", "beam_size": 2}, "beam_size"),
    ({"prompt": 5}, "prompt"),
    ({}, "prompt"),
])
def test_bad_requests_get_400_naming_the_field(llm, body, param):
    r = httpx.post(llm.url("/v1/completions"), json={"model": "tiny-llada", **body}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_bad_requests_through_the_client(llm):
    c = llm.client()
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="tiny-llada", messages=[{"role": "user", "content": "x"}],
                                  extra_body={"block_size": 0})
    assert e.value.body["param"] == "block_size"
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="gpt-4", prompt="x")
    r = httpx.post(llm.url("/v1/completions"), content=b"{not json", timeout=30)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_concurrent_requests_equal_sequential_ones(llm):
    c = llm.client()
    reqs = [dict(prompt=f"prompt {i} " + "xy" * (i % 4), seed=100 + i, temperature=0.8,
                 extra_body={"steps": 8} if i % 3 == 0 else {}) for i in range(12)]

    def run(kw):
        r = c.completions.create(model="tiny-llada", **kw)
        return r.choices[0].text, r.unmask["nfe"], r.unmask["batch_size"]

    sequential = [run(kw) for kw in reqs]
    with ThreadPoolExecutor(len(reqs)) as pool:
        concurrent = list(pool.map(run, reqs))
    assert [s[:2] for s in sequential] == [x[:2] for x in concurrent]
    assert max(x[2] for x in concurrent) > 1  # they really were decoded together
    # settings that differ (steps) never share a batch: those requests see smaller batches
    assert all(x[2] <= 4 for i, x in enumerate(concurrent) if i % 3 == 0)


def test_client_disconnect_frees_its_slot(llm):
    before = llm.health()["cancelled"]
    body = {"model": "tiny-llada", "prompt": "long", "max_tokens": 200, "stream": True, "stream_canvas": True}
    with httpx.stream("POST", llm.url("/v1/completions"), json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:]).get("unmask", {}).get("step", 0) >= 2:
                break  # decoding is under way: hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        h = llm.health()
        if h["cancelled"] > before and h["running"] == 0 and h["queued"] == 0:
            break
        time.sleep(0.05)
    assert h["cancelled"] == before + 1 and h["running"] == 0
    assert llm.client().completions.create(model="tiny-llada", prompt="next").choices[0].text is not None


# --------------------------------------------------------------------------- default model
def test_default_model_is_tiny_sudoku_and_solves_puzzles(servers):
    srv = servers["sudoku"]
    c = srv.client()
    assert [m.id for m in c.models.list().data] == ["tiny-sudoku"]
    from unmask.models.registry import resolve_model_path
    from unmask.session import BUILTIN_EXAMPLE_SEED
    from unmask.tasks.synthetic import task_from_json

    task = task_from_json(json.loads((resolve_model_path("tiny-sudoku") / "task.json").read_text()))
    r = c.completions.create(model="tiny-sudoku", prompt="")  # empty prompt: the built-in example
    item = task.make_dataset(1, seed=BUILTIN_EXAMPLE_SEED, givens=(28, 32))[0]
    answer = r.choices[0].text
    assert len(answer) == 81 and task.verify(item, answer)
    assert r.usage.completion_tokens == sum(ch in "0." for ch in item["puzzle"])
    # chat: the last user message is the puzzle, written as a grid with whitespace
    grid = "\n".join(" ".join(item["puzzle"][9 * i : 9 * i + 9]) for i in range(9))
    kw = dict(model="tiny-sudoku", messages=[{"role": "user", "content": grid}])
    texts, finish = stream_text(c.chat.completions.create(stream=True, **kw), chat=True)
    assert texts == [answer] and finish == ["stop"]
    bad = httpx.post(srv.url("/v1/completions"), json={"prompt": "12*34="}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


# --------------------------------------------------------------------------- in process
def test_full_queue_is_refused_with_retry_after(session):
    from unmask.serve.app import error_response
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher, Job
    from unmask.serve.schema import parse_request

    backend = Backend(session, "m")
    batcher = Batcher(backend, max_queue=2)  # worker not started: nothing leaves the queue
    loop = asyncio.new_event_loop()
    try:
        plan = backend.plan(parse_request({"prompt": "a"}, "completion"))
        for _ in range(2):
            batcher.submit(Job(plan, [], False, False, loop))
        with pytest.raises(ApiError) as e:
            batcher.submit(Job(plan, [], False, False, loop))
        assert e.value.status == 503 and error_response(e.value).headers["retry-after"] == "1"
        batcher.begin_shutdown(0)
        with pytest.raises(ApiError) as e:
            batcher.submit(Job(plan, [], False, False, loop))
        assert e.value.code == "shutting_down"
    finally:
        loop.close()


def test_dream_through_the_app_in_process(tiny_dream_dir):
    """The whole ASGI app in this process (Starlette's test client) on the tiny Dream model:
    chat through its template, streamed == non-streamed, and both equal the engine's output."""
    from starlette.testclient import TestClient

    from unmask.serve.app import create_app
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher

    sess = Session.load(str(tiny_dream_dir))
    backend = Backend(sess, "tiny-dream")
    app = create_app(backend, Batcher(backend))
    body = {"model": "tiny-dream", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12,
            "seed": 9, "temperature": 0.5, "block_size": 4}
    with TestClient(app) as client:
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        text = r.json()["choices"][0]["message"]["content"]
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    ids = sess.encode_prompt([{"role": "user", "content": "hello"}])
    out = sess.generate_ids([ids], "confidence", {}, {"max_new_tokens": 12, "seed": 9, "temperature": 0.5,
                                                      "block_size": 4})
    assert text == streamed == sess.tokenizer.decode(out.generated[0], skip_special_tokens=True,
                                                     clean_up_tokenization_spaces=False)


def test_shutdown_fails_unfinished_requests_cleanly(session):
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher, Job
    from unmask.serve.schema import parse_request

    backend = Backend(session, "m")
    batcher = Batcher(backend, max_wait=0.0)
    loop = asyncio.new_event_loop()
    try:
        plan = backend.plan(parse_request({"prompt": "a", "max_tokens": 200}, "completion"))
        queued = [Job(plan, [], False, False, loop) for _ in range(2)]
        batcher.submit(queued[0])
        batcher.start()
        deadline = time.monotonic() + 30
        while not batcher.running_requests() and time.monotonic() < deadline:
            time.sleep(0.001)
        batcher.submit(queued[1])  # waits behind the running batch
        batcher.begin_shutdown(0.0)  # no grace: abort the running batch, fail the queue
        batcher.close()

        async def last_event(job):
            return await asyncio.wait_for(job.events.get(), 10)

        events = [loop.run_until_complete(last_event(j)) for j in queued]
    finally:
        loop.close()
    assert [e[0] for e in events] == ["error", "error"]
    assert all(e[1].status == 503 and e[1].code == "shutting_down" for e in events)


def test_text_stream_holds_back_what_may_still_change():
    from unmask.serve.streaming import TextStream

    ts = TextStream(["END"])
    assert ts.update("hello E", final=False) == "hello "  # "E" may start the stop string
    assert ts.update("hello EN", final=False) == ""
    assert ts.update("hello ENx", final=False) == "ENx"  # it did not
    assert ts.update("hello ENxab\ufffd", final=False) == "ab"  # an incomplete UTF-8 character waits
    assert ts.update("hello ENxab\u00e9 END more", final=False) == "\u00e9 " and ts.stopped
    assert ts.update("hello ENxab\u00e9 END more text", final=True) == ""
    assert ts.sent == "hello ENxab\u00e9 "


def test_request_fields_are_type_checked():
    from unmask.serve.schema import parse_request

    req = parse_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
                         "max_completion_tokens": 7, "steps": 3, "threshold": 1, "stop": "x"}, "chat")
    assert req.prompts == [[{"role": "user", "content": "a"}]] and req.max_tokens == 7
    assert req.settings == {"steps": 3, "threshold": 1.0} and req.stop == ["x"]
    for body, param in [({"messages": [{"role": "robot", "content": "a"}]}, "messages[0].role"),
                        ({"messages": [{"role": "user", "content": "a"}], "steps": 2.5}, "steps"),
                        ({"messages": [{"role": "user", "content": "a"}], "eos_fill": "yes"}, "eos_fill"),
                        ({"messages": [{"role": "user", "content": "a"}], "n": 0}, "n"),
                        ({"messages": [{"role": "user", "content": "a"}], "stream_canvas": True}, "stream_canvas"),
                        ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 4, "max_new_tokens": 5},
                         "max_new_tokens")]:
        with pytest.raises(ApiError) as e:
            parse_request(body, "chat")
        assert e.value.status == 400 and e.value.param == param


def test_a_watching_tokens_hook_costs_no_forward(tiny_llada):
    prompts = [[5, 6, 7], [8, 9]]
    seen = []

    def watch(step, x, logits):
        seen.append(step)
        return x

    kw = dict(max_new_tokens=8, candidate_number=3)
    plain = generate(tiny_llada, prompts, "info_gain", **kw)
    hooked = generate(tiny_llada, prompts, "info_gain", tokens_hook=watch, **kw)
    assert hooked.sequences == plain.sequences and hooked.nfe == plain.nfe and seen


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(servers):
    """Last test of the module: it stops the language-model server."""
    srv = servers["llm"]
    c = srv.client()
    results: list = []
    t = threading.Thread(target=lambda: results.append(
        c.completions.create(model="tiny-llada", prompt="bye", max_tokens=200)))
    t.start()
    deadline = time.monotonic() + 30
    while srv.health()["running"] == 0 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert results and results[0].usage.completion_tokens > 0  # the running request was finished
    assert srv.proc.wait(60) == 0
    assert "Traceback" not in srv.log.read_text()
