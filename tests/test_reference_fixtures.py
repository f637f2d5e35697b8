"""The reference implementations' own outputs, replayed: every fixture in
tests/fixtures/reference/ (recorded from ML-GSAI/LLaDA and NVlabs/Fast-dLLM, see
benchmarks/record_reference_fixtures.py) must be reproduced token for token in the matching
``compat`` mode, and the default mode must keep its documented agreement (the defaults are
deliberate differences; a change in these counts means the defaults changed)."""

from __future__ import annotations

import pytest
from refcheck import FAMILIES, family_of, fixture_files, replay

FILES = fixture_files()

#: default-mode agreement per fixture file (agreeing cases, compared cases), as measured and
#: documented in docs/samplers.md ("Reproducing the references")
DEFAULT_AGREEMENT = {
    "llada_generate-llada-peaked": (10, 15),
    "llada_generate-llada-weak": (13, 15),
    "fast_dllm_llada_nocache-llada-peaked": (9, 10),
    "fast_dllm_llada_nocache-llada-weak": (10, 10),
    "fast_dllm_llada_prefix-llada-peaked": (9, 10),
    "fast_dllm_llada_prefix-llada-weak": (10, 10),
    "fast_dllm_llada_dual-llada-peaked": (5, 7),
    "fast_dllm_llada_dual-llada-weak": (10, 10),
    "dream_generate-dream-peaked": (44, 50),
    "dream_generate-dream-weak": (36, 50),
    "fast_dllm_dream_prefix-dream-peaked": (0, 19),
    "fast_dllm_dream_prefix-dream-weak": (5, 20),
    "fast_dllm_dream_dual-dream-peaked": (0, 18),
    "fast_dllm_dream_dual-dream-weak": (5, 20),
}


def test_fixtures_present():
    families = {family_of(f) for f in FILES}
    assert families == set(FAMILIES), f"missing fixture families: {set(FAMILIES) - families}"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_compat_mode_reproduces_reference(path, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "reference-checkpoints"
    mode = FAMILIES[family_of(path)][0]
    rows = replay(path, mode, root)
    assert sum(a.total for a in rows) > 0
    for a in rows:
        assert a.agree == a.total, f"{path.stem} {a.setting}: {a.agree}/{a.total}; first miss {a.mismatches[0]}"


@pytest.mark.parametrize("name", sorted(DEFAULT_AGREEMENT))
def test_default_mode_agreement_is_unchanged(name, tmp_path_factory):
    path = next(f for f in FILES if f.stem == name)
    rows = replay(path, None, tmp_path_factory.getbasetemp() / "reference-checkpoints")
    assert (sum(a.agree for a in rows), sum(a.total for a in rows)) == DEFAULT_AGREEMENT[name]


@pytest.mark.parametrize("path", [f for f in FILES if "llada" in f.stem], ids=lambda f: f.stem)
def test_llada_defaults_differ_only_by_the_mask_token_in_the_softmax(path, tmp_path_factory):
    """The one documented LLaDA difference: with only ``mask_softmax`` switched on, unmask's
    default loop reproduces ML-GSAI's generate() and all three Fast-dLLM loops."""
    rows = replay(path, "mask_softmax", tmp_path_factory.getbasetemp() / "reference-checkpoints")
    assert all(a.agree == a.total for a in rows), [(a.setting, a.agree, a.total) for a in rows]
