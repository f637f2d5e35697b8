"""LoRA adapters through ``peft`` (``--lora_rank``): only the adapters train; exports fold them
into the base weights, so ``model/`` loads like any checkpoint."""

from __future__ import annotations

import torch

from ..errors import UnmaskError

#: the linear layers of the native LLaDA/Dream/SDAR blocks that get adapters (those present are used)
TARGETS = ("q_proj", "k_proj", "v_proj", "attn_out", "o_proj", "ff_proj", "up_proj", "ff_out", "gate_proj", "down_proj")


def add_lora(model: torch.nn.Module, rank: int, alpha: float) -> torch.nn.Module:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise UnmaskError("--lora_rank needs peft: pip install 'unmask[rl]'") from None
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in TARGETS if t in present]
    if not targets:
        raise UnmaskError(f"--lora_rank: the model has none of the linear layers {', '.join(TARGETS)}")
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter's ``scale * B @ A`` added to its weight."""
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LoraLayer):
            delta = sum(mod.get_delta_weight(a) for a in mod.active_adapters)
            merged[name + ".weight"] = (mod.base_layer.weight + delta).detach()
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        merged.setdefault(key.replace(".base_layer.", "."), value)
    return merged
