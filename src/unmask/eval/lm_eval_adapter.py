"""lm-evaluation-harness model adapter, registered as ``unmask``.

Install with ``pip install 'unmask[lm-eval]'``. lm-eval finds models through its own registry,
which only knows a model once the module defining it has been imported; its ``lm_eval`` console
script cannot import third-party modules, so use one of:

* ``unmask lm-eval --model unmask --model_args pretrained=PATH,sampler=info_gain --tasks ...``
  (or ``python -m unmask.eval.lm_eval_adapter ...``): the ``lm_eval`` command line with this
  module imported first;
* from Python: ``import unmask.eval.lm_eval_adapter`` and then
  ``lm_eval.simple_evaluate(model="unmask", model_args=...)``, or pass an
  :class:`UnmaskLM` instance as ``model``.

``model_args``: ``pretrained`` (model folder, alias or hub id in the local cache), ``sampler``,
``device``, ``dtype``, ``batch_size``, ``max_new_tokens`` (used when a task gives no
``max_gen_toks``), any :class:`~unmask.decoding.engine.GenerationConfig` field (``steps``,
``block_size``, ``tokens_per_step``, ``use_cache``, ...), ``mc_num``/``mc_batch_size`` for
log-likelihoods, and any sampler option (``threshold``, ``candidate_number``, ...).

Behaviour:

* ``generate_until`` batches requests that share generation arguments, decodes with the chosen
  sampler, cuts each output at the first of the request's ``until`` strings (and at the model's
  stop tokens), and reports every answer to lm-eval's cache hook as soon as its batch is done
  (``--use_cache`` then resumes an interrupted run). ``max_gen_toks`` sets the generation length;
  a task's ``temperature``/``do_sample`` are honoured (``do_sample: false`` = temperature 0).
* ``loglikelihood`` uses the Monte-Carlo estimate of the LLaDA paper (Nie et al., 2025, Eq. 6):
  for each of ``mc_num`` draws, pick ``l`` uniformly in ``1..L`` (L = continuation length), mask
  ``l`` random continuation tokens, and add ``(L / l) * sum of the masked tokens' log-probs``; the
  estimate is the mean over draws (a lower bound of the log-likelihood in expectation). The
  ``is_greedy`` flag is approximate: whether the argmax of every continuation token, with the
  whole continuation masked, equals the continuation.
* ``loglikelihood_rolling`` (perplexity tasks) raises ``NotImplementedError``.
* Single process only; for data-parallel evaluation use ``unmask eval`` (which shards by rank).
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections import defaultdict
from typing import Any

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as _e:  # pragma: no cover - exercised only without lm-eval
    raise ImportError("the lm-eval adapter needs lm-evaluation-harness: pip install 'unmask[lm-eval]'") from _e

import torch

from ..config_schema import generation_fields
from ..tasks.benchmarks.base import cut_at_stops


@register_model("unmask")
class UnmaskLM(LM):
    """An ``lm_eval.api.model.LM`` backed by an unmask model and sampler (see the module docs)."""

    def __init__(
        self,
        pretrained: str | None = None,
        sampler: str = "confidence",
        device: str | None = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        max_new_tokens: int = 256,
        mc_num: int = 128,
        mc_batch_size: int = 16,
        session=None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from ..cli import resolve_device
        from .runner import load_session

        self.session = session if session is not None else load_session(pretrained, resolve_device(device or "auto"), dtype)
        self.pretrained = pretrained or (str(self.session.folder) if self.session.folder else "unmask")
        self.sampler = sampler
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        self.max_new_tokens = int(max_new_tokens)
        self.mc_num = int(mc_num)
        self.mc_batch_size = max(1, int(mc_batch_size))
        gen = generation_fields()
        self.overrides = {k: v for k, v in kwargs.items() if k in gen}
        self.sampler_options = {k: v for k, v in kwargs.items() if k not in gen}
        from ..samplers import make_sampler

        make_sampler(sampler, **self.sampler_options)  # validate early
        self._chat_applied = False
        self.stats: dict[str, float] = defaultdict(float)

    # ------------------------------------------------------------------ lm-eval plumbing
    @property
    def tokenizer(self):
        return self.session.tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self.pretrained)).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self._chat_applied = True
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def _encode(self, text: str) -> list[int]:
        # a templated prompt already carries its special tokens
        return list(self.tokenizer(text, add_special_tokens=not self._chat_applied)["input_ids"])

    # ------------------------------------------------------------------ generation
    def _gen_overrides(self, gk: dict[str, Any]) -> dict[str, Any]:
        ov = dict(self.overrides)
        ov["max_new_tokens"] = int(gk.get("max_gen_toks", ov.get("max_new_tokens", self.max_new_tokens)))
        if self.overrides.get("steps") is not None:  # a user step budget, never above the length
            ov["steps"] = max(1, min(int(self.overrides["steps"]), ov["max_new_tokens"]))
        do_sample = bool(gk.get("do_sample", False))
        temp = gk.get("temperature")
        if temp is not None:
            ov["temperature"] = float(temp) if do_sample or float(temp) > 0 else 0.0
        elif not do_sample:
            ov.setdefault("temperature", 0.0)
        for k in ("top_p", "top_k"):
            if gk.get(k) is not None:
                ov[k] = gk[k]
        return ov

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[json.dumps(req.args[1], sort_keys=True, default=str)].append(i)
        session = self.session
        for _, idxs in groups.items():
            gk = dict(requests[idxs[0]].args[1])
            until = gk.get("until") or []
            if isinstance(until, str):
                until = [until]
            overrides = self._gen_overrides(gk)
            for b0 in range(0, len(idxs), self.batch_size):
                batch = idxs[b0 : b0 + self.batch_size]
                prompts = [self._encode(requests[i].args[0]) for i in batch]
                seeds = [(int(overrides.get("seed", 0) or 0) * 1_000_003 + zlib.crc32(requests[i].args[0].encode()))
                         % (2**31 - 1) for i in batch]
                t0 = time.perf_counter()
                out = session.generate_ids(prompts, self.sampler, self.sampler_options, {**overrides, "seed": seeds})
                self.stats["seconds"] += time.perf_counter() - t0
                self.stats["requests"] += len(batch)
                for j, i in enumerate(batch):
                    text = cut_at_stops(session.decode(out.generated[j]), until)
                    results[i] = text
                    self.stats["nfe"] += out.traces[j].nfe
                    self.stats["forward_rows"] += out.traces[j].forward_rows
                    self.stats["forward_tokens"] += out.traces[j].forward_tokens
                    self.stats["generated_tokens"] += len(out.generated[j])
                    self.stats["cumulative_entropy"] += out.traces[j].cumulative_entropy
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return [r if r is not None else "" for r in results]

    # ------------------------------------------------------------------ likelihoods
    @torch.no_grad()
    def _mc_loglikelihood(self, ctx: list[int], cont: list[int], seed: int) -> tuple[float, bool]:
        model = self.session.model
        mask_id = int(model.config.mask_token_id)
        max_len = int(getattr(model.config, "max_sequence_length", 0) or 0)
        L = len(cont)
        if L == 0:
            return 0.0, True
        if max_len and len(ctx) + L > max_len:
            ctx = ctx[-max(0, max_len - L):] if max_len > L else []
        seq = torch.tensor(ctx + cont, dtype=torch.long)
        c0 = len(ctx)
        target = seq[c0:].to(model.device)
        g = torch.Generator().manual_seed(seed)
        total = 0.0
        done = 0
        while done < self.mc_num:
            b = min(self.mc_batch_size, self.mc_num - done)
            batch = seq.repeat(b, 1)
            ls = torch.randint(1, L + 1, (b,), generator=g)
            for r in range(b):
                pos = torch.randperm(L, generator=g)[: int(ls[r])] + c0
                batch[r, pos] = mask_id
            batch = batch.to(model.device)
            logits = model.predict(batch).logits[:, c0:].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, target.expand(b, L)[..., None]).squeeze(-1)
            masked = batch[:, c0:] == mask_id
            per = (logp * masked).sum(1) * (L / ls.to(logp.device).float())
            total += float(per.sum())
            done += b
        full = seq.clone()[None]
        full[0, c0:] = mask_id
        greedy_ids = model.predict(full.to(model.device)).logits[0, c0:].argmax(-1)
        return total / self.mc_num, bool(torch.equal(greedy_ids, target))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            context, continuation = req.args
            whole = self._encode(context + continuation)
            ctx = self._encode(context) if context else []
            if whole[: len(ctx)] != ctx:  # tokenization merged across the boundary: split the pair
                cont = self._encode(continuation)
                cont = cont[1:] if (cont and self.tokenizer.bos_token_id is not None
                                    and cont[0] == self.tokenizer.bos_token_id) else cont
            else:
                cont = whole[len(ctx):]
            seed = zlib.crc32((context + "\x00" + continuation).encode())
            res = self._mc_loglikelihood(ctx, cont, seed)
            self.cache_hook.add_partial("loglikelihood", req.args, res)
            out.append(res)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "unmask's lm-eval adapter does not implement loglikelihood_rolling (perplexity tasks): a masked "
            "diffusion model has no left-to-right likelihood; use generation or multiple-choice tasks"
        )


def check_model_args(model_args: str | dict[str, Any]) -> dict[str, Any]:
    """Validate ``--model_args`` of the ``unmask`` model (a request body, in effect) before
    lm-eval starts: the model folder, the sampler, every option name and number. Bad input then
    gives one ``error:`` line, not a page of lm-eval log lines followed by a traceback."""
    from ..config_schema import generation_keys
    from ..decoding.engine import GenerationConfig
    from ..errors import UnmaskError
    from ..models.checkpoint_check import check_config
    from ..models.loading import read_config
    from ..models.registry import resolve_model_path
    from ..samplers import make_sampler
    from ..validation import check_option

    if isinstance(model_args, str):
        from lm_eval.utils import simple_parse_args_string

        try:
            args = simple_parse_args_string(model_args)
        except Exception as e:  # noqa: BLE001 - lm-eval's parser raises plain exceptions
            raise UnmaskError(f"--model_args {model_args!r} is not key=value,key=value ({e})") from None
    else:
        args = dict(model_args)
    known = {"pretrained", "sampler", "device", "dtype", "batch_size", "max_batch_size", "max_new_tokens",
             "mc_num", "mc_batch_size"}
    gen = generation_keys()
    for k in ("max_new_tokens", "mc_num", "mc_batch_size", "max_batch_size"):
        if args.get(k) is not None:
            check_option(k, args[k], f"model_args {k}")
    if args.get("pretrained") is not None:
        folder = resolve_model_path(str(args["pretrained"]))
        check_config(read_config(folder), folder / "config.json")
    overrides = {k: v for k, v in args.items() if k in gen}
    options = {k: v for k, v in args.items() if k not in gen and k not in known}
    make_sampler(str(args.get("sampler", "confidence")), **options)
    cfg = GenerationConfig(**overrides)
    cfg.validate()
    return args


def _precheck(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model", default=None)
    p.add_argument("--model_args", "--model-args", default=None)
    p.add_argument("--device", default=None)
    known, _ = p.parse_known_args(argv)
    if known.model != "unmask":
        return
    if known.device is not None:
        from ..cli import resolve_device

        resolve_device(known.device)
    check_model_args(known.model_args or "")


def run_lm_eval_cli(argv: list[str]) -> int:
    """Run lm-eval's command line with the ``unmask`` model registered."""
    from lm_eval.__main__ import cli_evaluate

    _precheck(argv)

    old = sys.argv
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    finally:
        sys.argv = old
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_lm_eval_cli(sys.argv[1:]))
