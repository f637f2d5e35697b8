"""MAGVIT-v2: code layout, round trips through a checkpoint folder, training signals."""

from __future__ import annotations

import json

import pytest
import torch

from unmask.errors import UnmaskError
from unmask.models.magvitv2 import MAGVITv2, MAGVITv2Config, load_magvitv2, save_magvitv2

TINY = dict(ch=32, ch_mult=[1, 2], num_res_blocks=[1, 1], dec_ch_mult=[1, 2], dec_num_res_blocks=[1, 1],
            attn_resolutions=[8], resolution=16, codebook_bits=5)


def tiny(seed=0):
    torch.manual_seed(seed)
    return MAGVITv2(MAGVITv2Config(**TINY)).eval()


def test_official_defaults_give_8192_codes_and_official_names():
    cfg = MAGVITv2Config()
    assert cfg.codebook_size == 8192 and cfg.downsample == 16
    with torch.device("meta"):
        m = MAGVITv2(cfg)
    keys = set(m.state_dict())
    for k in ("encoder.down.0.block.3.conv2.weight", "encoder.down.3.downsample.conv.weight",
              "encoder.mid.attn_1.proj_out.weight", "encoder.quant_conv.weight", "decoder.post_quant_conv.bias",
              "decoder.up.3.block.0.nin_shortcut.weight", "decoder.up.1.upsample.conv.weight",
              "quantize.embedding", "quantize.power_vals"):
        assert k in keys, k
    assert "decoder.up.0.upsample.conv.weight" not in keys  # finest level has no upsampler
    assert tuple(m.quantize.embedding.shape) == (8192, 13)


def test_codes_are_sign_bits_top_bit_first():
    m = tiny()
    z = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]).view(1, 5, 1, 1)  # bits 1 0 1 0 1 (0 counts as negative)
    assert m.quantize.codes_of(z).tolist() == [[0b10101]]
    back = m.quantize.vectors_of(torch.tensor([[0b10101]]))
    assert back.flatten().tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]


def test_encode_decode_shapes_and_folder_round_trip(tmp_path):
    m = tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = m.encode(x)
    assert codes.shape == (2, 64) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 32
    img = m.decode(codes)
    assert img.shape == (2, 3, 16, 16)
    m2 = load_magvitv2(save_magvitv2(m, tmp_path / "vq"))
    assert torch.equal(m2.encode(x), codes)
    assert torch.equal(m2.decode(codes), img)


def test_loader_names_bad_tensors_and_accepts_missing_lfq_buffers(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_magvitv2(tiny(), tmp_path / "vq")
    state = load_file(str(folder / "model.safetensors"))
    state.pop("quantize.embedding")
    state.pop("quantize.power_vals")
    save_file(state, str(folder / "model.safetensors"))
    load_magvitv2(folder)  # recomputed
    cfg = json.loads((folder / "config.json").read_text())
    cfg["codebook_bits"] = 6
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnmaskError, match="shape mismatches: .*quant_conv"):
        load_magvitv2(folder)


def test_training_forward_gives_gradients_through_the_quantizer():
    m = tiny().train()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = m(x)
    loss = (out["reconstruction"] - x).pow(2).mean() + out["commit_loss"] + out["entropy_loss"]
    loss.backward()
    assert m.encoder.conv_in.weight.grad is not None and m.encoder.conv_in.weight.grad.abs().sum() > 0
    assert out["commit_loss"] > 0
    assert torch.equal(out["codes"], m.eval().encode(x))


def test_bad_sizes_are_clear_errors():
    m = tiny()
    with pytest.raises(UnmaskError, match="multiple of the tokenizer's downsampling 2"):
        m.encode(torch.zeros(1, 3, 15, 16))
    with pytest.raises(UnmaskError, match="do not fill"):
        m.decode(torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(UnmaskError, match="must be in"):
        m.decode(torch.full((1, 4), 32))
    with pytest.raises(UnmaskError, match="multiple of norm_groups"):
        MAGVITv2Config.from_dict({**TINY, "ch": 24})
