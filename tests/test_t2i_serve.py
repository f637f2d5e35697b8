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

    from unmask.serve.app import create_app
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher

    folder = write_tiny_mmada(tmp_path_factory.mktemp("serve-img"))
    sess = Session.load(str(folder / "model"))
    vq = load_magvitv2(folder / "vq")
    backend = Backend(sess, "tiny-mmada")
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
