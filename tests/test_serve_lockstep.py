"""`unmask serve` honours lockstep: the flags as the server's defaults, the fields per request,
decoded exactly like `unmask sample` with the same flags (issue 32 item 2)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from unmask.cli import main, parse_args  # noqa: E402
from unmask.serve.app import create_app  # noqa: E402
from unmask.serve.backend import Backend  # noqa: E402
from unmask.serve.batcher import Batcher  # noqa: E402
from unmask.serve.commands import defaults_from_args  # noqa: E402
from unmask.session import Session  # noqa: E402

LOCK = ["--lockstep", "jacobi", "--answer_after", "0.5"]


@pytest.fixture(scope="module")
def judge():
    return Session.load("tiny-judge")


def _serve(session, flags, body):
    args = parse_args(["serve", "--model_name_or_path", "tiny-judge", *flags])
    backend = Backend(session, "tiny-judge", defaults_from_args(args))
    with TestClient(create_app(backend, Batcher(backend))) as client:
        r = client.post("/v1/completions", json={"model": "tiny-judge", "prompt": "", **body})
    return r


def _sample(flags, capsys):
    assert main(["sample", "--model_name_or_path", "tiny-judge", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def _figures(d):
    """(text, NFE, cumulative entropy) of a server response or a `sample --json` result."""
    if "unmask" in d:
        return d["choices"][0]["text"], d["unmask"]["nfe"], round(d["unmask"]["cumulative_entropy"], 4)
    return d["text"], d["nfe"], round(d["cumulative_entropy"], 4)


def test_server_lockstep_flags_decode_like_sample(judge, capsys):
    want = _sample(LOCK, capsys)
    plain = _sample([], capsys)
    r = _serve(judge, LOCK, {})
    assert r.status_code == 200, r.text
    got = r.json()
    assert _figures(got) == _figures(want) != _figures(plain)
    assert got["unmask"]["settings"]["lockstep"] == "jacobi"
    assert got["unmask"]["settings"]["answer_after"] == 0.5


def test_lockstep_fields_per_request(judge, capsys):
    want = _sample(["--lockstep", "gauss_seidel", "--tau_r", "0.8"], capsys)
    r = _serve(judge, [], {"lockstep": "gauss_seidel", "tau_r": 0.8})
    assert r.status_code == 200, r.text
    assert _figures(r.json()) == _figures(want)


@pytest.mark.parametrize("body,param", [
    ({"tau_r": 0.8}, "tau_r"),  # a region setting without a mode
    ({"lockstep": "sideways"}, "lockstep"),
    ({"lockstep": "jacobi", "tau_a": 2.0}, "tau_a"),
])
def test_bad_lockstep_fields_are_400(judge, body, param):
    r = _serve(judge, [], body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_lockstep_on_a_model_without_regions_is_refused(tiny_llada_dir):
    session = Session.load(str(tiny_llada_dir))
    backend = Backend(session, "m")
    with TestClient(create_app(backend, Batcher(backend))) as client:
        r = client.post("/v1/completions", json={"prompt": "ab", "lockstep": "jacobi", "max_tokens": 4})
    assert r.status_code == 400 and "reasoning/answer regions" in r.json()["error"]["message"]
