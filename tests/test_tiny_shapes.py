"""The shipped ``tiny-shapes`` alias: it resolves offline with its tokenizer, its files belong
together (the VQ tokenizer is the one the model was trained with, the compact vocabulary is
consistent), and ``unmask t2i`` / ``unmask eval --task shapes_geneval`` run on it out of the box
(a few steps: the plumbing, not the accuracy; the case study measures that)."""

from __future__ import annotations

import hashlib
import json

from PIL import Image

from unmask.cli import main
from unmask.models.registry import BUILTIN, resolve_model_path
from unmask.multimodal.commands import default_vq_path, model_text_len
from unmask.multimodal.prompting import SPECIAL_IDS
from unmask.tasks.shapes_mdm import encoder_sha256


def test_alias_ships_model_tokenizer_and_vq_together():
    assert "tiny-shapes" in BUILTIN
    folder = resolve_model_path("tiny-shapes")
    meta = json.loads((folder / "t2i.json").read_text())
    vq = default_vq_path("tiny-shapes")
    assert vq is not None
    assert hashlib.sha256((folder / "vq" / "model.safetensors").read_bytes()).hexdigest() == meta["vq_sha256"]
    # the codes the model was trained on come from this encoder (the decoder was fine-tuned after)
    assert encoder_sha256(folder / "vq") == meta["vq_encoder_sha256"]
    assert model_text_len("tiny-shapes") == meta["max_text_len"] == 48
    cfg = json.loads((folder / "config.json").read_text())
    assert set(cfg["special_token_ids"]) == set(SPECIAL_IDS) and cfg["vocab_size"] == cfg["llm_vocab_size"] + 1024
    assert (folder / "model.safetensors").stat().st_size < 8_000_000  # "a few MB"
    assert "## Training" in (folder / "MODEL_CARD.md").read_text()


def test_t2i_and_eval_run_offline_on_the_alias(tmp_path, capsys):
    out = tmp_path / "sq.png"
    assert main(["t2i", "--model_name_or_path", "tiny-shapes", "--prompt", "two green squares", "--steps", "2",
                 "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["image_tokens"] == 64 and s["forwards"] == 2 and Image.open(out).size == (32, 32)
    assert main(["eval", "--task", "shapes_geneval", "--model_name_or_path", "tiny-shapes", "--steps", "2",
                 "--limit", "2", "--temperature", "0", "--output_dir", str(tmp_path / "ev"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["n"] == 2 and s["max_text_len"] == 48 and s["temperature"] == 0.0 and s["mean_nfe"] == 2
    assert s["vq"].endswith("vq") and s["mean_forward_tokens"] == 2 * 2 * (48 + 3 + 64)


def test_serve_draws_the_alias_with_its_own_vq_and_text_width(monkeypatch):
    """``unmask serve --model_name_or_path tiny-shapes`` (no --vq_model_path): the images endpoint
    uses the folder's vq/ and t2i.json's text width (48, not MMaDA's 512: padding that the
    attention mask hides would not change the picture, but it would cost ten times the tokens)."""
    import argparse
    import base64
    import io

    import numpy as np
    from starlette.testclient import TestClient

    import unmask.multimodal.t2i as t2i_module
    from unmask.models.magvitv2 import load_magvitv2
    from unmask.multimodal.commands import serve_routes
    from unmask.serve.app import create_app
    from unmask.serve.backend import Backend
    from unmask.serve.batcher import Batcher
    from unmask.session import Session

    widths = []
    real_t2i = t2i_module.t2i

    def recording_t2i(*a, **kw):
        widths.append(kw.get("max_text_len"))
        return real_t2i(*a, **kw)

    monkeypatch.setattr(t2i_module, "t2i", recording_t2i)
    sess = Session.load("tiny-shapes")
    backend = Backend(sess, "tiny-shapes")
    args = argparse.Namespace(model_name_or_path="tiny-shapes", vq_model_path=None, device="cpu")
    with TestClient(create_app(backend, Batcher(backend), serve_routes(args, backend))) as client:
        r = client.post("/v1/images/generations", json={"prompt": "a red circle", "steps": 2, "seed": 3})
        assert r.status_code == 200, r.text
        assert client.post("/v1/images/generations", json={"prompt": "a red circle", "steps": 2,
                                                          "max_text_len": 64}).status_code == 200
    assert widths == [48, 64]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).convert("RGB"))
    vq = load_magvitv2(default_vq_path("tiny-shapes"))
    ref = real_t2i(sess.model, vq, ["a red circle"], "maskgit", tokenizer=sess.tokenizer, steps=2, seed=3,
                   max_text_len=48)
    assert np.array_equal(got, ref.images[0].numpy())
