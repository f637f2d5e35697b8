"""The compact-vocabulary export of an MMaDA model (how ``tiny-shapes`` ships at a few MB): the
prompt-token ids come from the config, the official layout is unchanged without the field, the
rows the trainer never touches keep their initial values, and the compact copy draws exactly the
same codes as the official-id model for every sampler, greedy and sampled."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_mmada import mmada_config, tiny_magvit, tiny_mmada

from unmask.errors import UnmaskError
from unmask.models.loading import build_model, load_model, save_model
from unmask.models.magvitv2 import save_magvitv2
from unmask.models.mmada import MMaDAConfig
from unmask.multimodal import compact as C
from unmask.multimodal.prompting import SPECIAL_IDS, special_ids, t2i_layout
from unmask.multimodal.t2i import t2i
from unmask.tasks import shapes_mdm as M

SAMPLERS = ("maskgit", "confidence", "margin", "entropy", "random", "info_gain", "lookum")
PROMPTS = ["two green squares", "a red circle left of a blue square", ""]


def test_official_configs_keep_the_reference_ids(tmp_path):
    cfg = MMaDAConfig.from_dict(mmada_config().to_dict())
    assert cfg.special_token_ids is None and special_ids(cfg) == SPECIAL_IDS
    assert "special_token_ids" not in cfg.to_dict()
    with pytest.raises(UnmaskError, match="must be a text id"):
        MMaDAConfig.from_dict({**mmada_config().to_dict(), "special_token_ids": {"<|t2i|>": 126464}})
    with pytest.raises(UnmaskError, match="unknown prompt token"):
        special_ids(MMaDAConfig.from_dict({**mmada_config().to_dict(), "special_token_ids": {"<|x|>": 5}}))


def test_compact_copy_has_remapped_ids_in_its_config(tmp_path):
    tok = M.char_tokenizer()
    small, remap = C.compact_model(tiny_mmada(0), len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    cfg = small.config
    assert cfg.llm_vocab_size == len(tok) + len(SPECIAL_IDS) + 1 and cfg.rows == cfg.llm_vocab_size + 64
    assert cfg.mask_token_id == remap[126336] == cfg.llm_vocab_size - 1
    assert special_ids(cfg)["<|t2i|>"] == remap[SPECIAL_IDS["<|t2i|>"]]
    save_model(small, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.special_token_ids == cfg.special_token_ids
    lay = t2i_layout([tok("a circle")["input_ids"]], 4, tok.bos_token_id, tok.eos_token_id, cfg.mask_token_id, 12,
                     special=special_ids(cfg))
    assert int(lay.ids.max()) < cfg.llm_vocab_size  # every prompt id is a kept row


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_compact_model_draws_the_same_codes_for_every_sampler(temperature):
    tok = M.char_tokenizer()
    big = tiny_mmada(3)
    small, _ = C.compact_model(big, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    vq = tiny_magvit(0)
    for name in SAMPLERS:
        kw = dict(tokenizer=tok, steps=3, seed=[5, 6, 7], max_text_len=40, guidance_scale=2.0,
                  temperature=temperature)
        a = t2i(big, vq, PROMPTS, name, **kw)
        b = t2i(small, vq, PROMPTS, name, **kw)
        assert torch.equal(a.codes, b.codes), name
        assert torch.equal(a.images, b.images), name
        assert a.traces == b.traces and a.model_rows == b.model_rows, name


def test_trainer_leaves_unused_rows_at_their_initial_values(tmp_path):
    save_magvitv2(tiny_magvit(0), tmp_path / "vq")
    args = M.build_parser().parse_args(["--out", str(tmp_path / "run"), "--vq", str(tmp_path / "vq"), "--size", "test",
                                        "--steps", "2", "--batch_size", "3", "--warmup", "1",
                                        "--layout", "mmada"])
    trained = M.train(args)["model"]
    init = build_model(M.model_config("test", 64, 64), seed=0)
    w, w0 = (m.model.transformer["wte"].weight.detach() for m in (trained, init))
    kept = set(C.kept_text_ids(trained.config, len(M.char_tokenizer())))
    kept |= set(range(trained.config.image_offset, trained.config.rows))
    unused = torch.tensor([i for i in range(w.shape[0]) if i not in kept])
    assert torch.equal(w[unused], w0[unused])
    assert not torch.equal(w[trained.config.image_offset:], w0[trained.config.image_offset:])  # it did train

    # the folder conversion: a few MB instead of 127k rows, same side files
    dst = C.compact_folder(tmp_path / "run" / "model", tmp_path / "small")
    assert json.loads((dst / "t2i.json").read_text()) == json.loads((tmp_path / "run" / "model" / "t2i.json").read_text())
    assert (dst / "model.safetensors").stat().st_size * 50 < (tmp_path / "run" / "model" / "model.safetensors").stat().st_size
    assert C.main([str(dst), str(dst)]) == 2
