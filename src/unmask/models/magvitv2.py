"""MAGVIT-v2 image tokenizer (the ``showlab/magvitv2`` layout that MMaDA uses), in plain PyTorch.

A VQGAN-style convolutional encoder, a lookup-free quantizer (LFQ) and a decoder:

* the encoder downsamples ``len(ch_mult) - 1`` times (16x for the official 5 levels: 256 px -> 16x16
  codes, 512 px -> 32x32 = 1024 codes) and ends in ``z_channels`` = ``codebook_bits`` channels;
* LFQ takes the *sign* of each of those channels: 13 bits -> 2**13 = 8192 codes, no codebook to
  learn. The code of a position is the bits read most-significant-first (channel 0 is the top bit);
* the decoder maps the +-1 bit vectors back to pixels in [-1, 1].

The parameter names are the official ones (``encoder.down.0.block.1.conv1.weight``,
``quantize.embedding``, ...), so the official weights load unchanged. Every size is a config field
so the same code builds the 8192-code tokenizer and tiny ones that train on a laptop; training
goes through :meth:`MAGVITv2.forward`, which returns the straight-through reconstruction with the
commitment and entropy losses that the reference quantizer defines.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnmaskError


@dataclass
class MAGVITv2Config:
    """Sizes of the tokenizer. The defaults are those of ``showlab/magvitv2`` (whose own
    config.json carries no sizes: the reference hard-codes them in its constructors)."""

    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4])
    num_res_blocks: list[int] = field(default_factory=lambda: [4, 3, 4, 3, 4])
    # the decoder is not the encoder mirrored: the reference gives it its own widths and depths
    dec_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    dec_num_res_blocks: list[int] = field(default_factory=lambda: [4, 4, 3, 4, 3])
    # spatial sizes (in pixels of the feature map) that get a self-attention block after each
    # residual block; the official value 5 never occurs, so only the middle attention exists
    attn_resolutions: list[int] = field(default_factory=lambda: [5])
    in_ch: int = 3
    out_ch: int = 3
    resolution: int = 256
    codebook_bits: int = 13  # = z_channels; the codebook has 2**bits entries
    norm_groups: int = 32  # GroupNorm groups (channel counts must be multiples of it)
    beta: float = 0.25
    entropy_multiplier: float = 0.1
    commit_loss_multiplier: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MAGVITv2Config:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        if "z_channels" in d and "codebook_bits" not in d:
            kwargs["codebook_bits"] = d["z_channels"]
        extra = {k: v for k, v in d.items() if k not in known}
        cfg = cls(**kwargs, extra=extra)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, "_class_name": "MAGVITv2", **d}

    @property
    def codebook_size(self) -> int:
        return 2 ** self.codebook_bits

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def validate(self) -> None:
        if len(self.ch_mult) != len(self.num_res_blocks):
            raise UnmaskError("MAGVIT-v2 config: ch_mult and num_res_blocks must have the same length")
        if len(self.dec_ch_mult) != len(self.dec_num_res_blocks):
            raise UnmaskError("MAGVIT-v2 config: dec_ch_mult and dec_num_res_blocks must have the same length")
        if len(self.dec_ch_mult) != len(self.ch_mult):
            raise UnmaskError("MAGVIT-v2 config: encoder and decoder need the same number of levels")
        if not 1 <= self.codebook_bits <= 20:
            raise UnmaskError(f"MAGVIT-v2 config: codebook_bits must be in 1..20, got {self.codebook_bits}")
        widths = [self.ch * m for m in (*self.ch_mult, *self.dec_ch_mult)] + [self.ch]
        if any(w % self.norm_groups for w in widths):
            raise UnmaskError(f"MAGVIT-v2 config: every channel count ({sorted(set(widths))}) must be a multiple "
                              f"of norm_groups={self.norm_groups}")


def _norm(cfg: MAGVITv2Config, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.norm_groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv, twice, plus a 1x1 shortcut when the width changes."""

    def __init__(self, cfg: MAGVITv2Config, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _norm(cfg, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cfg, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, 1x1 convolutions for q/k/v/out."""

    def __init__(self, cfg: MAGVITv2Config, c: int) -> None:
        super().__init__()
        self.norm = _norm(cfg, c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(c), as the reference
        return x + self.proj_out(o.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after padding one pixel on the right and bottom only."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution: residual blocks (``block``), optional attentions (``attn``), and the
    resampler (``downsample`` / ``upsample``) except on the last level."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def run(self, h: torch.Tensor) -> torch.Tensor:
        for i, blk in enumerate(self.block):
            h = blk(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class _Middle(nn.Module):
    def __init__(self, cfg: MAGVITv2Config, c: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(cfg, c, c)
        self.attn_1 = AttnBlock(cfg, c)
        self.block_2 = ResnetBlock(cfg, c, c)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: MAGVITv2Config) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_ch, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, cin = cfg.resolution, cfg.ch
        for i, (mult, n_blocks) in enumerate(zip(cfg.ch_mult, cfg.num_res_blocks)):
            level, cout = _Level(), cfg.ch * mult
            for _ in range(n_blocks):
                level.block.append(ResnetBlock(cfg, cin, cout))
                cin = cout
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(cfg, cin))
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(cin)
                res //= 2
            self.down.append(level)
        self.mid = _Middle(cfg, cin)
        self.norm_out = _norm(cfg, cin)
        self.conv_out = nn.Conv2d(cin, cfg.codebook_bits, 3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.codebook_bits, cfg.codebook_bits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: MAGVITv2Config) -> None:
        super().__init__()
        n = len(cfg.dec_ch_mult)
        cin = cfg.ch * cfg.dec_ch_mult[-1]
        res = cfg.resolution // 2 ** (n - 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_bits, cfg.codebook_bits, 1)
        self.conv_in = nn.Conv2d(cfg.codebook_bits, cin, 3, padding=1)
        self.mid = _Middle(cfg, cin)
        levels: list[_Level] = []
        for i in reversed(range(n)):  # built coarse to fine, stored fine to coarse (official order)
            level, cout = _Level(), cfg.ch * cfg.dec_ch_mult[i]
            for _ in range(cfg.dec_num_res_blocks[i]):
                level.block.append(ResnetBlock(cfg, cin, cout))
                cin = cout
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(cfg, cin))
            if i != 0:
                level.upsample = Upsample(cin)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cfg, cin)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level.run(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class Quantized:
    z: torch.Tensor  # [B, bits, h, w] in {-1, +1} (straight-through gradient to the encoder output)
    codes: torch.Tensor  # [B, h*w] long, row-major
    commit_loss: torch.Tensor  # already scaled by commit_loss_multiplier
    entropy_loss: torch.Tensor  # already scaled by entropy_multiplier


class LFQuantizer(nn.Module):
    """Lookup-free quantizer: each channel's sign is one bit of the code.

    ``embedding`` (all 2**bits +-1 vectors, top bit first) and ``power_vals`` are buffers so that
    the official checkpoint, which stores them, loads with strict key checking."""

    def __init__(self, cfg: MAGVITv2Config) -> None:
        super().__init__()
        bits = cfg.codebook_bits
        self.bits, self.beta = bits, cfg.beta
        self.commit_loss_multiplier, self.entropy_multiplier = cfg.commit_loss_multiplier, cfg.entropy_multiplier
        shifts = torch.arange(bits - 1, -1, -1, dtype=torch.long)
        table = (torch.arange(2 ** bits)[:, None] >> shifts) & 1
        self.register_buffer("embedding", table.float() * 2 - 1)
        self.register_buffer("power_vals", 2 ** shifts)

    def codes_of(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, bits, h, w]`` -> ``[B, h*w]``: positive channels are 1 bits."""
        bits = (z > 0).long()
        return (bits * self.power_vals.view(1, -1, 1, 1)).sum(1).flatten(1)

    def vectors_of(self, codes: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``[B, N]`` codes -> ``[B, bits, h, w]`` +-1 vectors (square grid unless ``hw`` given)."""
        b, n = codes.shape
        h, w = hw if hw is not None else (math.isqrt(n), math.isqrt(n))
        if h * w != n:
            raise UnmaskError(f"{n} image codes do not fill a {h}x{w} grid")
        if int(codes.min()) < 0 or int(codes.max()) >= self.embedding.shape[0]:
            raise UnmaskError(f"image codes must be in [0, {self.embedding.shape[0]}), got "
                              f"[{int(codes.min())}, {int(codes.max())}]")
        return self.embedding[codes].view(b, h, w, self.bits).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.bits)
        hard = torch.where(flat > 0, 1.0, -1.0).to(flat.dtype)
        q = flat + (hard - flat).detach()  # straight-through estimator
        # per-bit two-way distribution from the distance to +1 / -1: push each bit to be decided
        # (low per-sample entropy) while keeping both values in use over the batch (high entropy
        # of the mean) -- the reference's entropy loss
        logits = torch.stack([-(flat - 1).pow(2), -(flat + 1).pow(2)], dim=-1)
        probs = logits.softmax(-1)
        sample_entropy = -(probs * logits.log_softmax(-1)).sum(-1).mean()
        mean_p = probs.mean(0)
        mean_entropy = -(mean_p * mean_p.clamp_min(1e-30).log()).sum(-1).mean()
        commit = F.mse_loss(flat, q.detach()) + self.beta * F.mse_loss(q, flat.detach())
        zq = q.view(z.shape[0], z.shape[2], z.shape[3], self.bits).permute(0, 3, 1, 2).contiguous()
        return Quantized(zq, self.codes_of(zq), commit * self.commit_loss_multiplier,
                         (sample_entropy - mean_entropy) * self.entropy_multiplier)


class MAGVITv2(nn.Module):
    """``encode(pixels) -> codes``, ``decode(codes) -> pixels``; pixels are ``[B, 3, H, W]`` in [-1, 1]."""

    def __init__(self, config: MAGVITv2Config | None = None) -> None:
        super().__init__()
        self.config = config or MAGVITv2Config()
        self.config.validate()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = LFQuantizer(self.config)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def grid(self, height: int, width: int) -> tuple[int, int]:
        f = self.config.downsample
        if height % f or width % f:
            raise UnmaskError(f"image size {height}x{width} is not a multiple of the tokenizer's downsampling {f}")
        return height // f, width // f

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> ``[B, (H/f)*(W/f)]`` codes in ``[0, codebook_size)``."""
        self.grid(pixels.shape[-2], pixels.shape[-1])
        return self.quantize.codes_of(self.encoder(pixels.to(self.dtype)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``[B, N]`` codes -> ``[B, 3, H, W]`` pixels (unclamped, nominally [-1, 1])."""
        return self.decoder(self.quantize.vectors_of(codes.long(), hw).to(self.dtype))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: reconstruction through the straight-through quantizer plus its losses."""
        q = self.quantize(self.encoder(pixels))
        return {"reconstruction": self.decoder(q.z), "codes": q.codes,
                "commit_loss": q.commit_loss, "entropy_loss": q.entropy_loss}

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.weight.dtype


# ---- checkpoint folders ----

_VQ_WEIGHT_FILES = ("model.safetensors", "pytorch_model.safetensors", "diffusion_pytorch_model.safetensors",
                    "pytorch_model.bin", "diffusion_pytorch_model.bin")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    for name in _VQ_WEIGHT_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- any unreadable file is one clear error
            raise UnmaskError(f"cannot read tokenizer weights {path} ({type(e).__name__}: {e})") from None
    raise UnmaskError(f"no tokenizer weights in {folder} (looked for {', '.join(_VQ_WEIGHT_FILES)})")


def load_magvitv2(folder: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> MAGVITv2:
    """Load a MAGVIT-v2 folder (``config.json`` + weights, official key names). Missing, extra and
    mis-shaped tensors are reported by name; the LFQ buffers may be absent (they are recomputed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnmaskError(f"tokenizer folder {folder} does not exist")
    cfg_path = folder / "config.json"
    raw: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            raw = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UnmaskError(f"{cfg_path} is not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise UnmaskError(f"{cfg_path} must hold a JSON object")
    cfg = MAGVITv2Config.from_dict(raw)
    with torch.device("meta"):
        model = MAGVITv2(cfg)
    state = _read_state(folder)
    expected = model.state_dict()
    buffers = {"quantize.embedding", "quantize.power_vals"}
    missing = sorted(set(expected) - set(state) - buffers)
    unexpected = sorted(set(state) - set(expected))
    bad = sorted(f"{k} (file {tuple(state[k].shape)}, config {tuple(expected[k].shape)})"
                 for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or bad:
        parts = [f"{what}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                 for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", bad))
                 if items]
        raise UnmaskError(f"tokenizer in {folder} does not match its config.json: " + "; ".join(parts))
    fresh = LFQuantizer(cfg)
    for name in buffers:
        state.setdefault(name, getattr(fresh, name.split(".")[1]))
    target = dtype or torch.float32
    state = {k: v.to(device=device, dtype=target if v.is_floating_point() else v.dtype) for k, v in state.items()}
    # the LFQ table is exact in any float dtype; power_vals stay integers
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def save_magvitv2(model: MAGVITv2, folder: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (official key names, buffers included)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
