"""``POST /v1/images/generations`` on a tiny MMaDA + MAGVIT-v2 (OpenAI images API shape)."""

from __future__ import annotations

import base64
import io

import pytest
from tiny_mmada import write_tiny_mmada

from unmask.models.magvitv2 import load_magvitv2
from unmask.multimodal.serve_images import image_routes
from unmask.multimodal.t2i import t2i
from unmask.session import Session


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from starlette.testclient import TestClient

    from unmask.multimodal.serve_images import image_prompt_for
    from unmask.serve.app import create_app
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher

    folder = write_tiny_mmada(tmp_path_factory.mktemp("serve-img"))
    sess = Session.load(str(folder / "model"))
    vq = load_magvitv2(folder / "vq")
    backend = Backend(sess, "tiny-mmada")
    backend.image_prompt = image_prompt_for(sess.model, vq)
    app = create_app(backend, Batcher(backend), image_routes(sess, vq, "tiny-mmada"))
    with TestClient(app) as client:
        yield client, sess, vq


def test_generations_returns_b64_pngs_equal_to_the_python_api(served):
    from PIL import Image

    client, sess, vq = served
    body = {"prompt": "a red cat", "n": 2, "response_format": "b64_json", "steps": 4, "seed": 5,
            "max_text_len": 16, "sampler": "confidence", "guidance_scale": 2.0}
    r = client.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2
    pics = [Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))) for d in data]
    assert all(p.size == (32, 32) for p in pics)
    ref = t2i(sess.model, vq, ["a red cat"] * 2, "confidence", tokenizer=sess.tokenizer, steps=4, seed=5,
              max_text_len=16, guidance_scale=2.0)
    import numpy as np

    assert all(np.array_equal(np.asarray(p.convert("RGB")), ref.images[i].numpy()) for i, p in enumerate(pics))


def test_size_sets_the_image_length(served):
    client, _, _ = served
    r = client.post("/v1/images/generations", json={"prompt": "x", "size": "16x16", "steps": 2, "max_text_len": 8})
    assert r.status_code == 200, r.text
    assert r.json()["unmask"]["image_tokens"] == 16


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "stepz": 3}, "stepz"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "steps": "3"}, "steps"),
    ({"prompt": "x", "response_format": "url"}, "response_format"),
    ({"prompt": "x", "guidance_scale": float("inf")}, "guidance_scale"),
])
def test_bad_requests_are_400_with_the_param(served, body, param):
    client, _, _ = served
    import json

    r = client.post("/v1/images/generations", content=json.dumps(body, allow_nan=True),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_values_the_decoder_refuses_are_400(served):
    client, _, _ = served
    for body in ({"prompt": "x", "size": "30"}, {"prompt": "x", "sampler": "nope"}, {"prompt": "x", "compat": "zz"}):
        r = client.post("/v1/images/generations", json={**body, "steps": 2, "max_text_len": 8})
        assert r.status_code == 400, body
        assert r.json()["error"]["message"]
    assert client.post("/v1/images/generations", content=b"{").status_code == 400
    assert client.post("/v1/images/generations", json={"prompt": "x", "model": "other"}).status_code == 404


def _data_url(size=(40, 30), fmt="PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _chat(url, text="what is it?"):
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text},
                                                      {"type": "image_url", "image_url": {"url": url}}]}],
            "max_tokens": 8, "steps": 4, "seed": 1}


def test_chat_with_an_image_url_puts_the_image_in_front(served):
    from unmask.multimodal.mmu import mmu_ids
    from unmask.multimodal.serve_images import decode_data_url

    client, sess, vq = served
    url = _data_url()
    r = client.post("/v1/chat/completions", json=_chat(url))
    assert r.status_code == 200, r.text
    text_only = sess.encode_prompt([{"role": "user", "content": "what is it?"}])
    ids = mmu_ids(sess.model, vq, decode_data_url(url), text_only)
    assert r.json()["usage"]["prompt_tokens"] == len(ids) == len(text_only) + 67
    out = sess.generate_ids([ids], "confidence", {}, {"max_new_tokens": 8, "steps": 4, "seed": 1})
    assert r.json()["choices"][0]["message"]["content"] == sess.decode(
        [t for t in out.generated[0] if t < sess.model.config.image_offset])


@pytest.mark.parametrize("url,message", [
    ("https://example.com/cat.png", "data: URL"),
    ("data:image/png;base64,%%%", "not a readable image"),
    ("data:image/png;base64," + base64.b64encode(b"not a picture").decode(), "not a readable image"),
])
def test_bad_image_urls_are_400(served, url, message):
    client, _, _ = served
    r = client.post("/v1/chat/completions", json=_chat(url))
    assert r.status_code == 400 and message in r.json()["error"]["message"]


def test_text_only_server_refuses_images(tiny_llada_dir):
    from starlette.testclient import TestClient

    from unmask.serve.app import create_app
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher

    backend = Backend(Session.load(str(tiny_llada_dir)), "tiny")
    with TestClient(create_app(backend, Batcher(backend))) as client:
        r = client.post("/v1/chat/completions", json=_chat(_data_url()))
    assert r.status_code == 400 and "takes no images" in r.json()["error"]["message"]


def test_one_image_per_conversation(served):
    client, _, _ = served
    body = _chat(_data_url())
    body["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": _data_url()}})
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and "one image per conversation" in r.json()["error"]["message"]
