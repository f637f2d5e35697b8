"""MMaDA (``Gen-Verse/MMaDA-8B-*``): LLaDA with one vocabulary for text and image codes.

The network is LLaDA's, parameter for parameter (``MMadaModelLM`` subclasses ``LLaDAModelLM`` and
only resizes the embedding and the head), so the native class is :class:`~unmask.models.llada.LLaDA`
with a config that knows where the image codes live:

* ids ``[0, llm_vocab_size)`` are text (126,464 for the official models, the LLaDA tokenizer's
  length); the special prompt tokens (``<|t2i|>``, ``<|soi|>``, ...) are reserved text ids;
* ids ``[image_offset, image_offset + codebook_size)`` are MAGVIT-v2 codes, ``image_offset =
  llm_vocab_size + num_new_special_tokens`` (8,192 codes from 126,464: 134,656 = ``new_vocab_size``);
* the mask is LLaDA's 126336.

The reference finds the image offset as ``len(tokenizer)``; we read it from the config so that a
model folder describes itself (the two agree for the official tokenizer, whose length is
``llm_vocab_size``). For the same reason a folder may carry ``special_token_ids`` (prompt-token
name -> id, e.g. ``{"<|t2i|>": 33, ...}``): a compact-vocabulary model (``tiny-shapes``, see
:mod:`unmask.multimodal.compact`) keeps only the rows it uses, so its prompt tokens are not at
MMaDA-8B's reserved ids. Without the field (every official config) the reference's ids apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..errors import UnmaskError
from .llada import LLaDA, LLaDAConfig


@dataclass
class MMaDAConfig(LLaDAConfig):
    """LLaDA's fields plus the official MMaDA ones. ``num_vq_tokens`` is the image length the
    model was trained for (1,024 = 32 x 32 codes of a 512 px image in ``configs/mmada_demo.yaml``)."""

    vocab_size: int = 134656
    embedding_size: int | None = 134656
    llm_vocab_size: int = 126464
    new_vocab_size: int = 134656
    codebook_size: int = 8192
    num_vq_tokens: int = 1024
    num_new_special_tokens: int = 0
    bos_token_id: int = 126080
    #: prompt-token ids that differ from MMaDA-8B's reserved ones (None: the official ids)
    special_token_ids: dict[str, int] | None = None
    model_type: str = "mmada"
    #: integer fields for which 0 is a valid value (checked by checkpoint_check)
    ZERO_OK: ClassVar[tuple[str, ...]] = ("num_new_special_tokens",)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MMaDAConfig:
        cfg = super().from_dict(d)
        assert isinstance(cfg, MMaDAConfig)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.rows < self.image_offset + self.codebook_size:
            raise UnmaskError(
                f"MMaDA config: the vocabulary has {self.rows} rows, too few for {self.codebook_size} image codes "
                f"after {self.image_offset} text ids (llm_vocab_size + num_new_special_tokens)")
        if not 0 <= self.mask_token_id < self.image_offset:
            raise UnmaskError(f"MMaDA config: mask_token_id {self.mask_token_id} must be a text id "
                              f"(< {self.image_offset})")
        if self.special_token_ids is not None:
            if not isinstance(self.special_token_ids, dict):
                raise UnmaskError("MMaDA config: special_token_ids must be a mapping name -> id")
            for k, v in self.special_token_ids.items():
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.image_offset:
                    raise UnmaskError(f"MMaDA config: special_token_ids[{k!r}] = {v!r} must be a text id "
                                      f"(0 <= id < {self.image_offset})")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["architectures"] = ["MMadaModelLM"]
        if d.get("special_token_ids") is None:
            d.pop("special_token_ids", None)  # official folders do not have the field
        # the reference builds its OLMo ModelConfig from every one of these attributes, so a
        # folder we write must carry them all (values of the official LLaDA/MMaDA configs)
        for k, v in _OLMO_DEFAULTS.items():
            d.setdefault(k, v)
        return d

    @property
    def image_offset(self) -> int:
        """Vocabulary id of image code 0."""
        return self.llm_vocab_size + self.num_new_special_tokens


_OLMO_DEFAULTS: dict[str, Any] = {
    "block_group_size": 1, "alibi_bias_max": 8.0, "flash_attention": False, "attention_dropout": 0.0,
    "multi_query_attention": None, "attention_layer_norm": False, "residual_dropout": 0.0,
    "embedding_dropout": 0.0, "input_emb_norm": False, "layer_norm_with_affine": True,
    "attention_layer_norm_with_affine": True, "bias_for_layer_norm": False, "scale_logits": False,
    "init_device": None, "init_fn": "mitchell", "init_std": 0.02, "init_cutoff_factor": None,
    "precision": "amp_bf16", "use_cache": False,
}


class MMaDA(LLaDA):
    """``MMadaModelLM``: the LLaDA network over the unified vocabulary (same parameter names)."""

    config_class = MMaDAConfig
    config: MMaDAConfig

    @property
    def image_offset(self) -> int:
        return self.config.image_offset

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def head_columns(self, h: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Only the rows ``[lo, hi)`` of the output matrix: image decoding needs 8,192 of the
        134,656 logits per position."""
        t = self.model.transformer
        h = t["ln_f"](h)
        if self.config.weight_tying:
            return F.linear(h, t["wte"].weight[lo:hi])
        head = t["ff_out"]
        return F.linear(h, head.weight[lo:hi], None if head.bias is None else head.bias[lo:hi])


def is_mmada(config: dict[str, Any]) -> bool:
    """Whether a parsed config.json describes an MMaDA model (checked before LLaDA, whose fields
    an MMaDA config also carries)."""
    mt = str(config.get("model_type", "")).lower()
    archs = [str(a).lower() for a in config.get("architectures") or [] if isinstance(config.get("architectures"), list)]
    return mt == "mmada" or any("mmada" in a for a in archs)
