"""Text-to-image decoding for MMaDA: every image token starts masked and any unmask sampler fills
them, with the reference's MaskGIT rule (``maskgit``) as the default.

The loop is split the way the text engine is (so it can move onto the engine's processor/runner
split later):

* :class:`CFGRunner` runs the model. Conditional and unconditional rows of every canvas go through
  ONE forward (the unconditional row is the empty prompt's text part followed by the same image
  tokens, as the reference builds it), the LM head only over the image rows, rotary positions by
  absolute index as the reference.
* :class:`GuidedImageLogits` is the logits processor: classifier-free guidance
  ``(1 + w) * cond - w * uncond`` and the restriction to the image-code slice of the vocabulary.
  Samplers see code-space logits ``[n, codebook_size]`` and never learn that they are drawing an
  image.
* :func:`t2i` is the loop: the cosine schedule of the reference decides how many positions each
  step commits, tokens are sampled from the guided distribution (temperature 1, as the
  reference; ``temperature=0`` takes the argmax, other values divide the guided logits), and
  the sampler picks positions through the usual ``StepView -> Action`` contract.
  Lookahead samplers (``info_gain``, ``lookum``) get their candidates scored in batched
  cond + uncond forwards bounded by ``max_lookahead_rows``; H_next covers the image masks left.

Reference agreement (``tests/test_mmada_reference.py``): with one prompt and a seeded generator the
default ``maskgit`` sampler reproduces ``MMadaModelLM.t2i_generate`` token for token. The
reference shares one random stream across a batch; ``compat="shared_stream"`` reproduces that for
batches (our default gives every row its own stream so that batched and one-by-one runs agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UnmaskError
from ..samplers.base import Action, LookaheadResult, Sampler, StepView, entropy_from_logits, make_sampler
from .maskgit import MaskGITSampler
from .prompting import DEFAULT_MAX_TEXT_LEN, T2ILayout, special_ids, t2i_layout, t2i_text_part

#: ``python inference_t2i.py ... guidance_scale=3.5 generation_timesteps=15`` (README); the demo
#: config's training section has 1.5 / 12 (used for its validation images during training)
DEFAULT_GUIDANCE = 3.5
DEFAULT_STEPS = 15
COMPAT_MODES = ("shared_stream",)


# ---- schedule -------------------------------------------------------------------------------

def cosine_mask_len(step: int, steps: int, num_image: int, unknown: int) -> int:
    """How many positions stay masked after ``step`` (reference arithmetic: float32 cosine of the
    ratio, floor, then at least 1 and at most ``unknown - 1``)."""
    ratio = 1.0 * (step + 1) / steps
    mask_ratio = torch.cos(torch.tensor(ratio) * math.pi * 0.5)
    mask_len = int((num_image * mask_ratio).floor())
    return max(1, min(unknown - 1, mask_len))


# ---- logits processing ----------------------------------------------------------------------

@dataclass
class GuidedImageLogits:
    """Classifier-free guidance over the image-code slice of the vocabulary.

    ``columns`` is the slice ``[offset, offset + codebook_size)``: the runner asks the model for
    these logits only. Input ``[2R, W, C]`` (cond rows, then uncond rows; ``[R, W, C]`` without
    guidance), output ``[R, W, C]`` fp32 code-space logits, ``(1 + w) * cond - w * uncond``."""

    guidance_scale: float
    offset: int
    codebook_size: int

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 0

    @property
    def columns(self) -> tuple[int, int]:
        return self.offset, self.offset + self.codebook_size

    def __call__(self, sliced: torch.Tensor) -> torch.Tensor:
        if not self.guided:
            return sliced.float()
        cond, uncond = sliced.float().chunk(2, dim=0)  # mixed in fp32 even for a bf16 model
        w = self.guidance_scale
        return (1 + w) * cond - w * uncond


# ---- model runner ---------------------------------------------------------------------------

class CFGRunner:
    """Builds the forward rows for canvases of one prompt batch and runs them."""

    def __init__(self, model, layout: T2ILayout, uncond: tuple[torch.Tensor, torch.Tensor] | None,
                 columns: tuple[int, int]) -> None:
        self.model = model
        self.columns = columns
        self.layout = layout
        self.uncond = uncond  # text part ids [text_len] and mask [text_len] of the empty prompt
        t = layout.ids.shape[1]
        self.positions = torch.arange(t, device=model.device)[None]
        self.forwards = 0
        self.rows_run = 0

    def rows(self, canvases: torch.Tensor, owners: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Model rows for ``canvases`` ``[R, T]`` (whose prompt rows are ``owners``): cond rows,
        then (with guidance) the matching uncond rows."""
        dev = self.model.device
        own = torch.tensor(list(owners), device=dev)
        masks = self.layout.mask.to(dev)[own]
        if self.uncond is None:
            return canvases, masks
        tl = self.layout.text_len
        u_ids, u_mask = (t.to(dev) for t in self.uncond)
        r = canvases.shape[0]
        un = torch.cat([u_ids.expand(r, -1), canvases[:, tl:]], dim=1)
        un_mask = torch.cat([u_mask.expand(r, -1), masks[:, tl:]], dim=1)
        return torch.cat([canvases, un]), torch.cat([masks, un_mask])

    @torch.no_grad()
    def image_logits(self, canvases: torch.Tensor, owners: Sequence[int]) -> torch.Tensor:
        """Raw logits of the image positions and the processor's columns ``[R or 2R, N, C]``, one forward."""
        ids, mask = self.rows(canvases, owners)
        lo, hi = self.layout.image_start, self.layout.image_end
        out = self.model(ids, mask, head_range=(lo, hi), positions=self.positions.expand(ids.shape[0], -1),
                         vocab_range=self.columns)
        self.forwards += 1
        self.rows_run += ids.shape[0]
        return out.logits


# ---- the loop -------------------------------------------------------------------------------

@dataclass
class T2IOutput:
    images: torch.Tensor  # [B, H, W, 3] uint8
    codes: torch.Tensor  # [B, N] code ids
    traces: list[list[dict[str, Any]]] = field(default_factory=list)  # per row: one record per step
    forwards: int = 0
    model_rows: int = 0


def resolve_sampler(sampler: str | Sampler | None, options: dict[str, Any] | None = None) -> Sampler:
    if isinstance(sampler, Sampler):
        return sampler
    name = (sampler or "maskgit").strip().lower().replace("-", "_")
    opts = dict(options or {})
    if name == "maskgit":
        unknown = sorted(set(opts) - {"position_temperature"})
        if unknown:
            raise UnmaskError(f"the maskgit sampler takes position_temperature only, not {', '.join(unknown)}")
        return MaskGITSampler(**opts)
    return make_sampler(name, **opts)


def _tokenize(prompts: Sequence[str | Sequence[int]], tokenizer) -> list[list[int]]:
    out = []
    for p in prompts:
        if isinstance(p, str):
            if tokenizer is None:
                raise UnmaskError("text prompts need a tokenizer (pass tokenizer=, or token id lists)")
            out.append(list(tokenizer(p)["input_ids"]))
        else:
            out.append([int(t) for t in p])
    return out


def _special(tokenizer, config, name: str) -> int:
    v = getattr(tokenizer, f"{name}_token_id", None) if tokenizer is not None else None
    return int(v) if v is not None else int(getattr(config, f"{name}_token_id"))


def codes_to_images(vq, codes: torch.Tensor) -> torch.Tensor:
    """Decode codes ``[B, N]`` to uint8 images ``[B, H, W, 3]`` the way the reference saves them
    (clamp ``(x + 1) / 2`` to [0, 1], times 255, truncated)."""
    with torch.no_grad():
        x = vq.decode(codes.to(vq.encoder.conv_in.weight.device))
    x = torch.clamp((x.float() + 1.0) / 2.0, 0.0, 1.0) * 255.0
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu()


def check_pair(model, vq) -> None:
    """A tokenizer folder must match the model's image vocabulary."""
    cfg = getattr(model, "config", None)
    if not hasattr(cfg, "codebook_size"):
        raise UnmaskError("text-to-image needs an MMaDA model (its config.json has codebook_size); "
                          f"{type(model).__name__} is text-only")
    if vq is not None and vq.codebook_size != cfg.codebook_size:
        raise UnmaskError(f"the VQ tokenizer has {vq.codebook_size} codes but the model's codebook_size is "
                          f"{cfg.codebook_size}: pass the tokenizer the model was trained with")


def t2i(
    model,
    vq,
    prompts: Sequence[str | Sequence[int]],
    sampler: str | Sampler | None = "maskgit",
    *,
    tokenizer=None,
    guidance_scale: float = DEFAULT_GUIDANCE,
    steps: int = DEFAULT_STEPS,
    temperature: float = 1.0,
    seed: int | Sequence[int] = 0,
    num_image_tokens: int | None = None,
    max_text_len: int = DEFAULT_MAX_TEXT_LEN,
    max_lookahead_rows: int | None = None,
    sampler_options: dict[str, Any] | None = None,
    compat: str | None = None,
    decode: bool = True,
    generator: torch.Generator | None = None,
) -> T2IOutput:
    """Generate one image per prompt.

    ``seed``: one int (row i uses ``seed + i``) or one per prompt. ``compat="shared_stream"``:
    the reference's single random stream for the whole batch (from ``generator``, or one seeded
    with ``seed``). ``vq`` may be None with ``decode=False`` (codes only). ``temperature``: of the
    token draw (1.0, the reference; 0 = argmax tokens, no draw; the samplers' position rules
    keep their own noise). The prompt-token ids come from the model's config
    (:func:`~unmask.multimodal.prompting.special_ids`)."""
    check_pair(model, vq)
    cfg = model.config
    if compat not in (None, "", *COMPAT_MODES):
        raise UnmaskError(f"unknown compat mode {compat!r} for text-to-image; known: {', '.join(COMPAT_MODES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UnmaskError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(guidance_scale, (int, float)) or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise UnmaskError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise UnmaskError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not prompts:
        raise UnmaskError("no prompts given")
    n_img = int(cfg.num_vq_tokens if num_image_tokens is None else num_image_tokens)
    if isinstance(max_text_len, bool) or not isinstance(max_text_len, int) or max_text_len < 1:
        raise UnmaskError(f"max_text_len must be a positive integer, got {max_text_len!r}")
    side = math.isqrt(max(n_img, 0))
    if n_img < 1 or side * side != n_img:
        raise UnmaskError(f"num_image_tokens {n_img} is not a square grid of at least one token")
    smp = resolve_sampler(sampler, sampler_options)
    dev = model.device
    bos, eos = _special(tokenizer, cfg, "bos"), _special(tokenizer, cfg, "eos")
    mask_id = int(cfg.mask_token_id)
    texts = _tokenize(prompts, tokenizer)
    b = len(texts)
    special = special_ids(cfg)
    layout = t2i_layout(texts, n_img, bos, eos, mask_id, max_text_len, special=special)
    uncond = None
    if guidance_scale > 0:
        u_ids, u_mask = t2i_text_part([], bos, eos, max_text_len, special)
        uncond = (torch.tensor(u_ids), torch.tensor(u_mask))
    proc = GuidedImageLogits(float(guidance_scale), cfg.image_offset, cfg.codebook_size)
    runner = CFGRunner(model, layout, uncond, proc.columns)
    lo, hi = layout.image_start, layout.image_end
    canvas = layout.ids.to(dev).clone()

    shared = compat == "shared_stream"
    if shared:
        g0 = generator or torch.Generator().manual_seed(int(seed if isinstance(seed, int) else seed[0]))
        gens = [g0] * b
    else:
        seeds = [int(seed) + i for i in range(b)] if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != b:
            raise UnmaskError(f"{len(seeds)} seeds for {b} prompts")
        gens = [torch.Generator().manual_seed(s) for s in seeds]

    traces: list[list[dict[str, Any]]] = [[] for _ in range(b)]
    cached: dict[int, torch.Tensor] = {}  # row -> guided logits of its current canvas (from a lookahead)
    for step in range(steps):
        left = (canvas[:, lo:hi] == mask_id).any(1).tolist()
        if not any(left):
            break
        # rows that draw this step: the finished ones only in the shared stream (as the reference,
        # which keeps drawing for every row of its batch)
        live = list(range(b)) if shared else [i for i in range(b) if left[i]]
        need = [i for i in live if i not in cached]
        if need:
            guided = proc(runner.image_logits(canvas[need], need))
            for j, i in enumerate(need):
                cached[i] = guided[j]
        temp = float(temperature)
        probs_all = {i: torch.softmax(cached[i] / temp if temp not in (0.0, 1.0) else cached[i], dim=-1)
                     for i in live}
        # tokens at every image position (as the reference: the stream does not depend on the
        # number of masks left); shared stream: one draw for the whole batch, in row order
        if temp == 0.0:
            sampled = {i: probs_all[i].argmax(-1) for i in live}
        elif shared:
            flat = torch.cat([probs_all[i] for i in live]).cpu()
            drawn = torch.multinomial(flat, 1, generator=gens[0])[:, 0].view(b, n_img)
            sampled = {i: drawn[i].to(dev) for i in live}
        else:
            sampled = {i: torch.multinomial(probs_all[i].cpu(), 1, generator=gens[i])[:, 0].to(dev) for i in live}
        last = step == steps - 1
        views, rows = [], []
        for i in range(b):
            if not left[i]:
                continue
            unknown = canvas[i, lo:hi] == mask_id
            n_unknown = int(unknown.sum())
            k = n_unknown if last else n_unknown - cosine_mask_len(step, steps, n_img, n_unknown)
            idx = unknown.nonzero().squeeze(-1)
            logits = cached[i][idx]
            probs = probs_all[i][idx]
            toks = sampled[i][idx]
            conf = probs.gather(-1, toks[:, None]).squeeze(-1)
            gen_i = gens[i]

            def resample(p=probs, g=gen_i):
                return torch.multinomial(p.cpu(), 1, generator=g)[:, 0].to(p.device)

            views.append(StepView(
                logits=logits, probs=probs, positions=idx + lo, tokens=toks, confidence=conf,
                entropy=entropy_from_logits(logits), k=k,
                generator=gen_i, step=step, block_start=lo, temperature=temp, resample=resample,
                extra={"noise_width": n_img, "noise_index": idx, "steps": steps, "last_step": last}))
            rows.append(i)
        fresh: set[int] = set()  # rows whose next logits a lookahead already computed
        actions = _decide(smp, views, rows, canvas, runner, proc, cached, fresh, mask_id, lo, hi, max_lookahead_rows)
        for i, view, act in zip(rows, views, actions):
            index = act.index
            if view.extra["last_step"] and index.numel() < view.n:  # the last step fills every mask
                index = torch.arange(view.n, device=view.positions.device)
                act = Action(index, None, dict(act.info))
            toks = act.tokens if act.tokens is not None else view.tokens[index]
            pos = view.positions[index]
            canvas[i, pos] = toks.to(canvas.dtype) + cfg.image_offset
            traces[i].append({"step": step, "k": view.k, "positions": (pos - lo).tolist(), "codes": toks.tolist(),
                              "masked_before": view.n, **{k_: v for k_, v in act.info.items() if k_ != "J"}})
            if i not in fresh:
                cached.pop(i, None)
    # every position is filled now; the final codes are the canvas (same as the reference's last
    # sampled_ids: known codes plus the last step's samples)
    codes = (canvas[:, lo:hi] - cfg.image_offset).clamp(0, cfg.codebook_size - 1).cpu()
    images = codes_to_images(vq, codes) if decode and vq is not None else torch.zeros(0, dtype=torch.uint8)
    return T2IOutput(images, codes, traces, runner.forwards, runner.rows_run)


def _decide(smp, views, rows, canvas, runner, proc, cached, fresh, mask_id, lo, hi, max_rows) -> list[Action]:
    """Ask the sampler; lookahead samplers get every row's candidates scored in batched guided
    forwards (cond + uncond rows per candidate, at most ``max_rows`` candidates per forward). The
    winner's guided logits are its row's logits at the next step."""
    if not getattr(smp, "needs_lookahead", False):
        return [smp.select(v) for v in views]
    props = [smp.propose(v) for v in views]
    reqs = [(j, c) for j, p in enumerate(props) if isinstance(p, list) for c in p]
    if not reqs:
        return props
    states, owners = [], []
    for j, c in reqs:
        x = canvas[rows[j]].clone()
        v = views[j]
        toks = c.tokens if c.tokens is not None else v.tokens[c.index]
        x[v.positions[c.index]] = toks.to(x.dtype) + runner.model.config.image_offset
        states.append(x)
        owners.append(rows[j])
    xs = torch.stack(states)
    chunk = max_rows or len(reqs)
    guided = torch.cat([proc(runner.image_logits(xs[a : a + chunk], owners[a : a + chunk]))
                        for a in range(0, len(reqs), chunk)])
    masked = xs[:, lo:hi] == mask_id
    ent = torch.zeros(masked.shape, dtype=torch.float32, device=guided.device)
    if bool(masked.any()):
        ent[masked] = entropy_from_logits(guided[masked])
    out = list(props)
    a = 0
    for j, p in enumerate(props):
        if not isinstance(p, list):
            continue
        m = len(p)
        res = LookaheadResult(entropy=ent[a : a + m], masked=masked[a : a + m], raw_block_logits=guided[a : a + m])
        act = smp.choose(views[j], p, res)
        win = int(act.info.get("winner", 0))
        cached[rows[j]] = guided[a + win]
        fresh.add(rows[j])
        out[j] = act
        a += m
    return out
