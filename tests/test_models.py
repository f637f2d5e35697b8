import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import write_tiny

from unmask.errors import UnmaskError
from unmask.models.loading import load_model
from unmask.models.registry import find_in_hf_cache, resolve_model_path


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shard", [None, 4000])
def test_roundtrip(tmp_path, arch, dtype, shard):
    folder = write_tiny(tmp_path / "m", arch, dtype=dtype, shard=shard)
    if shard:
        assert (folder / "model.safetensors.index.json").exists()
        assert len(list(folder.glob("model-*-of-*.safetensors"))) > 1
    else:
        assert (folder / "model.safetensors").exists()
    m = load_model(folder, dtype=dtype)
    assert m.dtype == getattr(torch, dtype)
    assert load_model(folder).dtype == torch.float32  # "auto" on a CPU upcasts half precision
    state = {}
    for f in folder.glob("*.safetensors"):
        state.update(load_file(str(f)))
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k
    m32 = load_model(folder, dtype="float32")
    x = torch.randint(3, 40, (2, 9))
    assert m32.predict(x).logits.shape == (2, 9, m32.config.vocab_size)
    assert torch.isfinite(m.predict(x).logits.float()).all()


def test_official_key_names(tiny_llada, tiny_dream):
    k1 = set(tiny_llada.state_dict())
    assert "model.transformer.wte.weight" in k1 and "model.transformer.ff_out.weight" in k1
    assert "model.transformer.blocks.1.up_proj.weight" in k1 and "model.transformer.blocks.0.attn_out.weight" in k1
    k2 = set(tiny_dream.state_dict())
    assert "lm_head.weight" in k2 and "model.layers.1.self_attn.k_proj.bias" in k2
    assert "model.layers.0.mlp.gate_proj.weight" in k2 and "model.norm.weight" in k2


def test_empty_folder(tmp_path):
    with pytest.raises(UnmaskError, match="no config.json"):
        load_model(tmp_path)


def test_missing_weights(tmp_path):
    folder = write_tiny(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnmaskError, match="no model.safetensors"):
        load_model(folder)


def test_config_weights_mismatch_shape(tmp_path):
    folder = write_tiny(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["mlp_hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnmaskError, match=r"shape mismatches: .*ff_proj"):
        load_model(folder)


def test_missing_and_unexpected_keys(tmp_path):
    folder = write_tiny(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    state["model.transformer.extra.weight"] = torch.zeros(2)
    del state["model.transformer.ln_f.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(UnmaskError) as e:
        load_model(folder)
    msg = str(e.value)
    assert "missing keys: model.transformer.ln_f.weight" in msg
    assert "unexpected keys: model.transformer.extra.weight" in msg
    assert "\n" not in msg


def test_unknown_architecture(tmp_path):
    folder = write_tiny(tmp_path / "m")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnmaskError, match="model_type='gpt2'"):
        load_model(folder)


def test_alibi_config_is_refused(tmp_path):
    folder = write_tiny(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(rope=False, alibi=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnmaskError, match="ALiBi"):
        load_model(folder)


def test_unknown_alias():
    with pytest.raises(UnmaskError, match="unknown model 'no-such-model'"):
        resolve_model_path("no-such-model")


def test_alias_without_weights_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UnmaskError, match=r"GSAI-ML/LLaDA-8B-Instruct are not on this machine .*huggingface-cli download"):
        resolve_model_path("llada")


def test_alias_found_in_hf_cache(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--Dream-org--Dream-v0-Instruct-7B" / "snapshots" / "abc123"
    write_tiny(snap, "dream")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_in_hf_cache("Dream-org/Dream-v0-Instruct-7B") == snap
    assert resolve_model_path("dream") == snap
    assert load_model(resolve_model_path("dream")).shift_logits


def test_left_padding_is_exact(tiny_model):
    """A left-padded row gives the same logits as the row alone (positions skip the padding)."""
    x = torch.randint(3, 40, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    am = torch.tensor([[0, 0, 0] + [1] * 7])
    alone = tiny_model.predict(x).logits
    batched = tiny_model.predict(padded, am).logits[:, 3:]
    lo = 1 if tiny_model.shift_logits else 0  # Dream's first row is a placeholder
    assert (alone[:, lo:] - batched[:, lo:]).abs().max() < 1e-4


def test_dream_shift_undone_in_predict(tiny_dream):
    x = torch.randint(3, 40, (2, 8))
    raw = tiny_dream(x).logits
    aligned = tiny_dream.predict(x).logits
    assert torch.equal(aligned[:, 1:], raw[:, :-1])
    assert torch.equal(aligned[:, 0], raw[:, 0])


def test_learned_positions_roundtrip(tmp_path):
    """``rope: false`` (OLMo's switch) gives a ``wpe`` table, survives save/load and makes
    identical tokens at different cells predict differently."""
    folder = write_tiny(tmp_path / "wpe", "llada", rope=False)
    assert json.loads((folder / "config.json").read_text())["rope"] is False
    model = load_model(folder)
    assert "model.transformer.wpe.weight" in model.state_dict()
    assert not model.uses_rope
    x = torch.full((1, 6), 5)
    logits = model.predict(x, torch.ones_like(x)).logits[0]
    assert (logits[0] - logits[3]).abs().max() > 1e-4
    # the default keeps RoPE and no position table (the real LLaDA layout)
    rope_model = load_model(write_tiny(tmp_path / "rope", "llada"))
    assert rope_model.uses_rope and "model.transformer.wpe.weight" not in rope_model.state_dict()
