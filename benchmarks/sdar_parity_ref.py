"""Reference side of the SDAR parity check. Runs in a *separate* virtual environment with the
transformers version the reference modeling file needs; started by benchmarks/sdar_parity.py.

It imports the reference files that sdar_parity.py extracted from the public repositories into a
scratch folder (nothing of them is kept in this repository) and adapts only what a CPU machine
lacks, each adaptation stated where it is made:

* ``flash_attn`` is not installed: the modeling file imports its Triton RMSNorm at module level.
  A stand-in module provides ``rms_norm_fn`` with the plain RMSNorm the modeling file keeps as its
  commented-out fallback (fp32 statistics, weight applied after casting back).
* ``flash_attn_func`` is only reached for one-token windows with a cache (block length 1), which
  the cases avoid; the stand-in raises if it is ever called.

Usage: python sdar_parity_ref.py REF_DIR MODEL_DIR CASES.pt OUT.pt
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import torch
import torch.nn.functional as F


def install_flash_attn_stub() -> None:
    def rms_norm_fn(x, weight, bias=None, eps=1e-6, **_):
        dtype = x.dtype
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return weight * y.to(dtype)

    def flash_attn_func(*a, **k):
        raise RuntimeError("flash_attn_func reached (block length 1 with a cache): not supported on CPU")

    root = types.ModuleType("flash_attn")
    root.flash_attn_func = flash_attn_func
    root.flash_attn_varlen_func = flash_attn_func
    ops = types.ModuleType("flash_attn.ops")
    triton = types.ModuleType("flash_attn.ops.triton")
    ln = types.ModuleType("flash_attn.ops.triton.layer_norm")
    ln.rms_norm_fn = rms_norm_fn
    bp = types.ModuleType("flash_attn.bert_padding")
    bp.index_first_axis = bp.pad_input = bp.unpad_input = flash_attn_func
    for name, mod in {"flash_attn": root, "flash_attn.ops": ops, "flash_attn.ops.triton": triton,
                      "flash_attn.ops.triton.layer_norm": ln, "flash_attn.bert_padding": bp}.items():
        # a spec without a distribution: transformers' probe finds the module but no installed
        # package version, so it still treats flash-attention as unavailable
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = mod


def block_mask(total: int, block: int) -> torch.Tensor:
    nb = (total + block - 1) // block
    m = torch.tril(torch.ones(nb, nb)).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return m[:total, :total][None, None]


def main() -> None:
    ref_dir, model_dir, cases_path, out_path = sys.argv[1:5]
    sys.path.insert(0, ref_dir)
    install_flash_attn_stub()
    import sdar_generate  # the reference generate.py (JetAstra/SDAR)
    import sdar_generate_ebfix  # the same file with transfer_index initialised in entropy_bounded
    import sdar_generate_ebintended  # ... and per-position entropies (what the rule intends)
    import sdar_generate_norewrite  # the loop with the transfer restricted to masked positions
    from sdar_ref.modeling_sdar import SDARForCausalLM  # noqa: E402 - after the stub
    from transformers.cache_utils import DynamicCache

    cases = torch.load(cases_path)
    model = SDARForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    mask_id = int(cases["mask_id"])
    out: dict = {"logits": [], "cached_logits": [], "generations": []}

    with torch.no_grad():
        for ids, block in cases["logit_cases"]:
            x = torch.tensor([ids])
            t = x.shape[1]
            pos = torch.arange(t)[None]
            full = model(x, attention_mask=block_mask(t, block), position_ids=pos).logits
            out["logits"].append(full[0])
            # cached: prefill the complete blocks before the last block, then run the last block
            s = ((t - 1) // block) * block
            if t - s < 2:  # one-token windows take the flash-attn path in the reference
                s -= block
            cache = DynamicCache()
            m = block_mask(t, block)
            if s > 0:
                model(x[:, :s], attention_mask=m[:, :, :s, :s], position_ids=pos[:, :s], past_key_values=cache,
                      use_cache=True, store_kv=True)
            part = model(x[:, s:], attention_mask=m[:, :, s:, :], position_ids=pos[:, s:], past_key_values=cache,
                         use_cache=True, store_kv=False).logits
            out["cached_logits"].append(part[0])

    class Observed(torch.nn.Module):
        """Wraps the reference model (the only adapter between JetAstra's loop and dLLM-RL's
        modeling file). ``exclude`` sets the mask token's logit to -inf (our engine
        never proposes the mask token), so the remaining comparison is about the decoding loop.
        It also watches the block the loop feeds in: a position that was already decoded (not the
        mask) and changes between two forwards of the same block is a *rewrite* by the loop."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.exclude = True
            self.reset()

        def reset(self):
            self.last, self.last_key, self.rewrites, self.mask_argmax = None, None, 0, 0

        @property
        def device(self):
            return self.inner.device

        def forward(self, input_ids, *a, **k):
            key = int(k["position_ids"][0, 0]) if k.get("position_ids") is not None else -1
            if self.last is not None and key == self.last_key and self.last.shape == input_ids.shape:
                changed = (self.last != mask_id) & (input_ids != self.last)
                self.rewrites += int(changed.sum())
            self.last, self.last_key = input_ids.clone(), key
            am = k.get("attention_mask")
            if am is not None and am.dim() == 3:
                # JetAstra's loop passes [1, Q, K]; the dLLM-RL modeling file takes 2-D or 4-D
                # masks, and dLLM-RL's copy of the loop adds the head axis: so do we
                k["attention_mask"] = am[:, None]
            o = self.inner(input_ids, *a, **k)
            if self.exclude and o.logits is not None:
                o.logits[..., mask_id] = float("-inf")
            elif o.logits is not None:  # positions whose argmax is the mask token (the loop may
                # commit it at a masked position, or write it over a position it rewrites)
                self.mask_argmax += int((o.logits.argmax(-1) == mask_id).sum())
            return o

    def argmax_sampler(logits, temperature=1.0, top_k=0, top_p=1.0):
        """Temperature 0 as argmax with the untempered probability (the reference divides by the
        temperature, so 0 gives inf/NaN logits and torch.multinomial fails)."""
        probs = F.softmax(logits.float(), dim=-1)
        tok = probs.argmax(-1)
        return tok, probs.gather(-1, tok[..., None]).squeeze(-1)

    wrapped = Observed(model)
    modules = {"asis": sdar_generate, "ebfix": sdar_generate_ebfix, "ebintended": sdar_generate_ebintended,
               "norewrite": sdar_generate_norewrite}
    originals = {name: mod.sample_with_temperature_topk_topp for name, mod in modules.items()}
    for case in cases["gen_cases"]:
        name = case.get("module", "asis")
        mod = modules[name]
        if case["temperature"] == 0 and not case.get("raw_temperature", False):
            mod.sample_with_temperature_topk_topp = argmax_sampler
        else:
            mod.sample_with_temperature_topk_topp = originals[name]
        wrapped.exclude = case.get("exclude_mask", True)
        wrapped.reset()
        torch.manual_seed(0)
        try:
            x = mod.block_diffusion_generate(
                wrapped, {"input_ids": torch.tensor([case["prompt"]])}, mask_id, gen_length=case["gen_length"],
                block_length=case["block"], denoising_steps=case["steps"], temperature=case["temperature"],
                remasking_strategy=case["strategy"], confidence_threshold=case.get("threshold", 0.85),
                eb_threshold=case.get("eb_threshold", 0.35),
            )
            out["generations"].append({"tokens": x[0].tolist(), "rewrites": wrapped.rewrites,
                                        "mask_argmax": wrapped.mask_argmax})
        except Exception as e:  # noqa: BLE001 - a crash of the reference is a result we report
            out["generations"].append({"error": f"{type(e).__name__}: {e}", "mask_argmax": wrapped.mask_argmax})
    torch.save(out, out_path)


if __name__ == "__main__":
    main()
