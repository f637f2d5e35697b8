"""The GRPO loop on ``accelerate``: rollouts, rewards, advantages, clipped updates, checkpoints.

Every random choice (which prompts a step sees, each row's rollout seed, the prompt masks of the
one-step estimate) is a pure function of ``(seed, step, global row)``, so a run resumed from a
checkpoint, or split over several processes, sees exactly the data of an uninterrupted
single-process run. Groups never straddle processes (each process owns whole prompts), so
advantages need no communication; the loss of each process is scaled so that the data-parallel
gradient average equals the single-process gradient of the global batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UnmaskError
from .grpo import group_advantages, grpo_loss
from .logprob import ESTIMATORS, Rollout, one_step_logp, trajectory_logp
from .rewards import RewardPool, RewardSpec, parse_weights


def linear_schedule(start: float, final: float | None, step: int, max_steps: int) -> float:
    """``start`` at step 0, ``final`` at the last step (``max_steps - 1``), linear between; ``start``
    throughout when ``final`` is None. The RL schedules (tau, learning rate) are pure functions of
    the step like this, so a resumed run trains exactly what an uninterrupted one would."""
    if final is None or max_steps <= 1:
        return start
    frac = min(1.0, step / (max_steps - 1))
    return start + (final - start) * frac


@dataclass
class RLConfig:
    model_name_or_path: str
    out: str
    task: str | None = None
    prompts: str | None = None
    reward: str = "task"
    reward_weights: str = "correct"
    reward_workers: int = 1
    sampler: str = "confidence"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    tokens_per_step: int | None = None
    #: the other generation rows of the option table (steps, block_size, schedule, top_p, ...)
    decoding: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 128
    use_cache: str = "none"
    group_size: int = 8
    prompts_per_step: int = 16
    max_steps: int = 100
    lr: float = 1e-5
    #: the learning rate at the last step (linear from ``lr``); None: constant
    lr_final: float | None = None
    #: the last K rows of each group are decoded left to right (off-policy demonstrations)
    leftright_rows: int = 0
    #: score those rows with the order term too (False: by their written tokens alone)
    leftright_order: bool = True
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    iterations: int = 1
    clip_eps: float = 0.2
    beta: float = 0.02
    estimator: str = "one_step"
    p_mask_prompt: float = 0.15
    trajectory_steps: int | None = None
    order_term: bool | None = None
    position_temperature: float = 0.0
    #: the exploring draw's tau at the last step (linear from ``position_temperature``); None: constant
    position_temperature_final: float | None = None
    #: include the order term in the KL to the reference (False: anchor only the written tokens)
    kl_order: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    scale_rewards: bool = True
    micro_batch: int = 64
    seed: int = 0
    save_every: int = 10
    save_dtype: str | None = None
    threads: int | None = 1
    device: str = "auto"
    overwrite: bool = False
    #: LockstepOptions fields (mode, tau_r, ...): rollouts decoded in lockstep; empty = off
    lockstep: dict[str, Any] = field(default_factory=dict)
    wandb: bool = False
    wandb_project: str | None = None

    def check(self) -> None:
        """Refuse settings that cannot train, before anything is loaded."""
        from ..samplers.base import make_sampler

        if self.group_size < 2:
            raise UnmaskError(f"--group_size must be at least 2 (GRPO compares completions within a group), got {self.group_size}")
        for name in ("prompts_per_step", "max_steps", "iterations", "micro_batch", "save_every"):
            if getattr(self, name) < 1:
                raise UnmaskError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.estimator not in ESTIMATORS:
            raise UnmaskError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if not 0.0 <= self.p_mask_prompt < 1.0:
            raise UnmaskError(f"--p_mask_prompt must be in [0, 1), got {self.p_mask_prompt}")
        if self.clip_eps <= 0 or self.beta < 0 or self.lr <= 0:
            raise UnmaskError("--clip_eps and --lr must be positive and --beta non-negative")
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise UnmaskError(f"--temperature must be >= 0, got {self.temperature}")
        if self.trajectory_steps is not None and self.trajectory_steps < 1:
            raise UnmaskError(f"--trajectory_steps must be at least 1, got {self.trajectory_steps}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UnmaskError(f"--device for rl is auto, cpu or cuda (accelerate places one device per process), "
                              f"got {self.device!r}")
        if self.lr_final is not None and self.lr_final <= 0:
            raise UnmaskError(f"--lr_final must be > 0, got {self.lr_final}")
        if not 0 <= self.leftright_rows < self.group_size:
            raise UnmaskError(f"--leftright_rows must be in [0, group_size - 1] = [0, {self.group_size - 1}] (a group "
                              f"needs at least one row of the policy's own sampler), got {self.leftright_rows}")
        if self.leftright_rows and self.lockstep.get("mode"):
            raise UnmaskError("--leftright_rows decodes some rows left to right; --lockstep gates every row: "
                              "use one or the other")
        if self.lora_rank < 0:
            raise UnmaskError(f"--lora_rank must be >= 0, got {self.lora_rank}")
        if self.task and self.prompts:
            raise UnmaskError("give --task or --prompts, not both")
        make_sampler(self.sampler, **self.sampler_options)  # a typo in the name fails here
        if self.position_temperature < 0:
            raise UnmaskError(f"--position_temperature must be >= 0, got {self.position_temperature}")
        final = self.position_temperature_final
        if final is not None and (final <= 0 or self.position_temperature <= 0):
            raise UnmaskError("--position_temperature_final needs --position_temperature > 0 and must itself be > 0 "
                              f"(tau -> 0 is greedy confidence, which has no order likelihood), got {final}")
        if self.position_temperature > 0 and (self.sampler != "confidence" or self.estimator != "trajectory"):
            raise UnmaskError("--position_temperature draws confidence-ordered rollouts: it needs --sampler confidence "
                              "and --estimator trajectory (which scores the drawn order)")
        if self.lockstep_options() is not None and (self.position_temperature > 0 or self.order_term):
            raise UnmaskError("--lockstep gates which cells commit; the exploring confidence draw "
                              "(--position_temperature) and --order_term score a plain confidence order: drop them")
        if self.use_order_term() and (self.estimator != "trajectory" or self.temperature <= 0
                                      or (self.tokens_per_step or 1) != 1 or self.sampler != "confidence"):
            raise UnmaskError("--order_term needs --estimator trajectory, --sampler confidence, --temperature > 0 "
                              "and one token per step")

    def lockstep_options(self):
        """The rollouts' :class:`~unmask.decoding.lockstep.LockstepOptions` (validated), or None."""
        if not self.lockstep.get("mode"):
            return None
        from ..decoding.lockstep import LockstepOptions

        return LockstepOptions(**self.lockstep)

    def tau_at(self, step: int) -> float:
        """The exploring draw's position temperature at ``step`` (0-based): linear from
        ``position_temperature`` at the first step to ``position_temperature_final`` at the last, so
        the rollouts start exploring and end close to the greedy decoder used at test time. A pure
        function of the step, so a resumed run draws exactly what an uninterrupted one would."""
        return linear_schedule(self.position_temperature, self.position_temperature_final, step, self.max_steps)

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (0-based): linear from ``lr`` to ``lr_final`` at the last
        step, so a run can keep exploring (tau high) while its updates shrink; a pure function of
        the step, so resume is exact."""
        return linear_schedule(self.lr, self.lr_final, step, self.max_steps)

    def is_leftright_row(self, g: int) -> bool:
        """Row ``g`` of a group (0-based) is one of the last ``leftright_rows``: decoded left to right."""
        return g >= self.group_size - self.leftright_rows

    def use_order_term(self) -> bool:
        if self.position_temperature > 0 or self.lockstep.get("mode"):
            return False  # the soft sampler's order is scored by soft_order_logp instead
        if self.order_term is not None:
            return bool(self.order_term)
        return (self.estimator == "trajectory" and self.sampler == "confidence" and self.temperature > 0
                and (self.tokens_per_step or 1) == 1)


def _row_seed(cfg: RLConfig, step: int, row: int) -> int:
    return (cfg.seed * 1_000_003 + step * 65_537 + row) % (2**62)


class GRPOTrainer:
    """Owns the policy, the frozen reference, the optimiser and the reward workers."""

    def __init__(self, cfg: RLConfig) -> None:
        try:
            from accelerate import Accelerator
        except ImportError:
            raise UnmaskError("unmask rl runs on accelerate: pip install 'unmask[rl]'") from None

        cfg.check()
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.acc = Accelerator(cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()))
        from ..models.loading import load_model, read_config
        from ..models.registry import resolve_model_path

        self.folder = resolve_model_path(cfg.model_name_or_path)
        self.task = self._task()
        self.items_file = None
        if cfg.prompts:
            from .data import read_jsonl

            self.items_file = read_jsonl(cfg.prompts)
        if self.task is None and self.items_file is None:
            raise UnmaskError("no prompts: give --task (or a model folder with task.json) or --prompts FILE.jsonl")
        if cfg.prompts_per_step % self.acc.num_processes:
            raise UnmaskError(f"--prompts_per_step ({cfg.prompts_per_step}) must be a multiple of the number of "
                              f"processes ({self.acc.num_processes}): groups are not split across processes")
        spec = RewardSpec(cfg.reward, parse_weights(cfg.reward_weights),
                          self.task.task_json() if self.task is not None else None)
        self.rewards = RewardPool(spec, workers=cfg.reward_workers)
        self.tokenizer = None
        if self.task is None:
            from ..tokenizer import load_tokenizer

            self.tokenizer = load_tokenizer(self.folder)
        if cfg.lockstep_options() is not None and self.task is None and cfg.lockstep.get("answer_separator") is None:
            raise UnmaskError("--lockstep with --prompts needs --answer_separator TEXT (e.g. '\\nAnswer: ') to place "
                              "R and A after each prompt")
        stored = str(read_config(self.folder).get("torch_dtype", "float32"))
        self.save_dtype = cfg.save_dtype or stored
        self.out = Path(cfg.out)
        if cfg.overwrite and self.acc.is_main_process and self.out.exists():
            shutil.rmtree(self.out)
        self.acc.wait_for_everyone()
        model = load_model(self.folder, dtype=torch.float32)
        if cfg.lora_rank:
            from .lora import add_lora

            model = add_lora(model, cfg.lora_rank, cfg.lora_alpha)
        model.train()
        self.ref = None
        if cfg.beta > 0:
            self.ref = load_model(self.folder, dtype=torch.float32).eval()
            for p in self.ref.parameters():
                p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
        self.start_step = 0
        ckpt = self.out / "checkpoint.pt"
        if ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            self.start_step = int(state["step"])
            self._log_line(f"resuming from {ckpt} at step {self.start_step}")
        self.model, self.opt = self.acc.prepare(model, opt)
        if self.ref is not None:
            self.ref.to(self.acc.device)
        mask_id = int(self.task.mask_id if self.task is not None else model.config.mask_token_id)
        self.mask_id = mask_id
        banned = set(self.task.suppressed_ids()) if self.task is not None else set()
        banned.add(mask_id)
        self.banned = torch.tensor(sorted(banned), dtype=torch.long)

    # ------------------------------------------------------------------ setup helpers
    def _task(self):
        """The model folder's own task (its ``task.json`` carries parameters such as NAE-SAT's
        seed), or ``--task NAME`` with default parameters; None for ``--prompts``."""
        from ..tasks.synthetic import get_task, task_from_json

        if self.cfg.prompts:
            return None
        tj = self.folder / "task.json"
        own = json.loads(tj.read_text()) if tj.exists() else None
        if own is not None and self.cfg.task in (None, own.get("task")):
            return task_from_json(own)
        if self.cfg.task:
            try:
                return get_task(self.cfg.task)
            except KeyError as e:
                raise UnmaskError(str(e).strip("'\"")) from None
        return None

    def _log_line(self, text: str) -> None:
        if self.acc.is_main_process:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # ------------------------------------------------------------------ data
    def step_items(self, step: int) -> list[dict[str, Any]]:
        """The global batch of prompts of ``step`` (the same on every process)."""
        cfg = self.cfg
        if self.items_file is not None:
            import random

            n = len(self.items_file)
            per_epoch = max(1, n // cfg.prompts_per_step)
            epoch, k = divmod(step, per_epoch)
            order = list(range(n))
            random.Random(cfg.seed * 7919 + epoch).shuffle(order)
            idx = [order[(k * cfg.prompts_per_step + j) % n] for j in range(cfg.prompts_per_step)]
            return [self.items_file[i] for i in idx]
        from .data import training_items

        return training_items(self.task, cfg.prompts_per_step, seed=cfg.seed * 1_000_003 + step)

    def prompt_ids(self, item: dict[str, Any]) -> list[int]:
        if self.task is not None:
            return list(self.task.prompt_ids(item))
        return list(self.tokenizer(item["prompt"], add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ one step
    def rollouts(self, step: int, items: list[dict[str, Any]]):
        """Local rows: (prompt index, item, rollout) for this process's prompts, G rows each."""
        from ..decoding import generate

        cfg = self.cfg
        rank, world = self.acc.process_index, self.acc.num_processes
        local = list(range(rank, len(items), world))
        rows, seeds, owners = [], [], []
        for i in local:
            ids = self.prompt_ids(items[i])
            for g in range(cfg.group_size):
                rows.append(ids)
                seeds.append(_row_seed(cfg, step, i * cfg.group_size + g))
                owners.append(i)
        overrides: dict[str, Any] = {"temperature": cfg.temperature, "seed": seeds, "use_cache": cfg.use_cache}
        if self.task is not None:
            overrides.update(max_new_tokens=0, stop_at_eos=False, suppress_token_ids=tuple(self.task.suppressed_ids()))
        else:
            overrides["max_new_tokens"] = cfg.max_new_tokens
        if cfg.tokens_per_step is not None:
            overrides["tokens_per_step"] = cfg.tokens_per_step
        overrides = {**cfg.decoding, **overrides}
        lock = cfg.lockstep_options()
        if lock is not None:  # the regions as `unmask sample --lockstep` lays them out
            if self.task is not None:
                from ..decoding.lockstep import task_regions

                spans = [task_regions(self.task, items[i]) for i in owners]
            else:
                from ..session import Session

                rows, spans = Session(self.acc.unwrap_model(self.model), self.tokenizer).separator_canvases(rows, lock)
                overrides["max_new_tokens"] = 0
            overrides["plan"] = lock.plan(spans)
        policy = self.acc.unwrap_model(self.model)
        policy.eval()
        sampler: Any = cfg.sampler
        if cfg.position_temperature > 0:
            from .sampler import SoftConfidenceSampler

            sampler = SoftConfidenceSampler(cfg.tau_at(step))
        options = {} if cfg.position_temperature > 0 else cfg.sampler_options
        # the last `leftright_rows` of each group are decoded left to right, each with its own seed
        # (a separate generate call: one sampler per call); the rows are put back in group order
        lr_rows = [j for j in range(len(rows)) if cfg.is_leftright_row(j % cfg.group_size)]
        own_rows = [j for j in range(len(rows)) if not cfg.is_leftright_row(j % cfg.group_size)]
        traces: list[Any] = [None] * len(rows)
        sequences: list[Any] = [None] * len(rows)
        generated: list[Any] = [None] * len(rows)
        with torch.no_grad():
            for idx, smp, opts in ((own_rows, sampler, options), (lr_rows, "leftright", {})):
                if not idx:
                    continue
                over = {**overrides, "seed": [seeds[j] for j in idx]}
                out = generate(policy, [rows[j] for j in idx], smp, **over, **opts)
                for j, t, s, g in zip(idx, out.traces, out.sequences, out.generated):
                    traces[j], sequences[j], generated[j] = t, s, g
        policy.train()
        rolls = [Rollout.from_trace(t) for t in traces]
        if self.task is not None and cfg.reward == "task":
            completions = [list(s) for s in sequences]  # task.score reads the canvas ids
        elif self.task is not None:
            completions = [self.task.answer_text(list(s)) for s in sequences]
        else:
            completions = [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
        return owners, seeds, rolls, completions

    def unit_logp(self, model, rolls, seeds, iteration: int, step: int, order: bool = True, lr_rows=None):
        """``(logp, unit mask, token-only logp)``; the last is None unless an order term is part
        of the estimate (``order=False`` scores the written tokens alone, for the reference).
        ``lr_rows`` (bools) marks left-to-right rows: with ``--leftright_order false`` their units
        are their written tokens alone (their order is not the policy's to be scored)."""
        cfg = self.cfg
        if lr_rows is not None and any(lr_rows) and not cfg.leftright_order and order:
            logp, umask, tokens = self.unit_logp(model, rolls, seeds, iteration, step)
            if tokens is not None:
                lr = torch.tensor(lr_rows, device=logp.device)[:, None]
                logp = torch.where(lr, tokens, logp)
            return logp, umask, tokens
        if cfg.estimator == "one_step":
            mseeds = [s * 31 + iteration for s in seeds]
            return (*one_step_logp(model, rolls, self.mask_id, self.banned, cfg.p_mask_prompt, mseeds), None)
        tau = cfg.tau_at(step) if cfg.position_temperature > 0 else 0.0
        select = cfg.use_order_term()
        return trajectory_logp(model, rolls, self.mask_id, self.banned, temperature=cfg.temperature,
                               select=select and order, steps_per_completion=cfg.trajectory_steps,
                               seeds=[s * 31 + iteration for s in seeds],
                               position_temperature=tau if order else 0.0,
                               with_tokens=order and (select or tau > 0))

    def _kl_tokens_only(self) -> bool:
        """The KL anchors the written tokens only when asked and when an order term exists."""
        cfg = self.cfg
        return (not cfg.kl_order and cfg.estimator == "trajectory"
                and (cfg.position_temperature > 0 or cfg.use_order_term()))

    def train_step(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        items = self.step_items(step)
        owners, seeds, rolls, completions = self.rollouts(step, items)
        t_roll = time.perf_counter() - t0
        rewards = torch.tensor(self.rewards([items[i] for i in owners], completions), dtype=torch.float32)
        adv = group_advantages(rewards, cfg.group_size, scale=cfg.scale_rewards)
        own = torch.tensor([not cfg.is_leftright_row(j % cfg.group_size) for j in range(len(rolls))])
        premature = [p for p, o in zip(self._premature(rolls), own.tolist()) if o]  # the policy's rows only
        world = self.acc.num_processes
        n_global = cfg.prompts_per_step * cfg.group_size
        n_local = len(rolls)
        scored_own = own  # per scored row: the policy's own (True) or a left-to-right row
        if cfg.beta == 0:
            # without a KL term a row whose advantage is zero has a zero gradient: skip its
            # forward/backward (most groups agree once a task is mostly solved); the loss is still
            # normalised by the global batch, so the update is the same as scoring every row
            keep = [j for j in range(len(rolls)) if float(adv[j]) != 0.0] or [0]  # every process must backward
            rolls, seeds = [rolls[j] for j in keep], [seeds[j] for j in keep]
            scored_own = own[keep]
            adv = adv[keep]
        chunks = [range(lo, min(lo + cfg.micro_batch, len(rolls))) for lo in range(0, len(rolls), cfg.micro_batch)]
        policy = self.acc.unwrap_model(self.model)
        # old (rollout-time) and reference log-probs for each iteration's estimator draw
        fixed: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = []
        with torch.no_grad():
            for k in range(cfg.iterations):
                per_chunk = []
                for ch in chunks:
                    r, s = [rolls[j] for j in ch], [seeds[j] for j in ch]
                    lr_rows = [not bool(scored_own[j]) for j in ch]
                    old = self.unit_logp(policy, r, s, k, step, lr_rows=lr_rows)[0] if cfg.iterations > 1 else None
                    ref = (self.unit_logp(self.ref, r, s, k, step, order=not self._kl_tokens_only())[0]
                           if self.ref is not None else None)
                    per_chunk.append((old, ref))
                fixed.append(per_chunk)
        sums = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0}
        for k in range(cfg.iterations):
            for c, ch in enumerate(chunks):
                r, s = [rolls[j] for j in ch], [seeds[j] for j in ch]
                last = c == len(chunks) - 1
                ctx = nullcontext() if last or world == 1 else self.acc.no_sync(self.model)
                with ctx:
                    logp, umask, tokens = self.unit_logp(self.model, r, s, k, step,
                                                         lr_rows=[not bool(scored_own[j]) for j in ch])
                    old, ref = fixed[k][c]
                    old = logp.detach() if old is None else old
                    kl_logp = tokens if self._kl_tokens_only() else None
                    loss_i, st = grpo_loss(logp, old, ref, adv[list(ch)].to(logp.device), umask, cfg.clip_eps, cfg.beta,
                                           kl_logp=kl_logp)
                    loss = loss_i.sum() * world / n_global
                    self.acc.backward(loss)
                if k == cfg.iterations - 1:
                    sums["loss"] += float(loss_i.detach().sum())
                    sums["kl"] += float(st["kl"].sum())
                    sums["clip_frac"] += float(st["clip_frac"].sum())
            grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr_at(step)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        groups = rewards.reshape(-1, cfg.group_size)
        local = torch.tensor([float(rewards[own].sum()), float((groups.std(dim=1) == 0).sum()), sums["loss"],
                              sums["kl"], sums["clip_frac"], float(n_local), float(sum(premature)),
                              float(len(premature)), float(rewards[~own].sum()), float(own.sum())],
                             device=self.acc.device)
        tot = self.acc.reduce(local, reduction="sum") if world > 1 else local
        n = float(tot[5])
        row = {
            # reward: the mean over the policy's own rows (the left-to-right rows are `reward_lr`)
            "step": step + 1, "reward": float(tot[0]) / float(tot[9]), "zero_adv_groups": int(tot[1]),
            "loss": float(tot[2]) / n, "kl": float(tot[3]) / n, "clip_frac": float(tot[4]) / n,
            "grad_norm": float(grad_norm), "rollout_s": round(t_roll, 2), "step_s": round(time.perf_counter() - t0, 2),
        }
        if cfg.position_temperature > 0:
            row["tau"] = round(cfg.tau_at(step), 6)
        if cfg.lr_final is not None:
            row["lr"] = cfg.lr_at(step)
        if cfg.leftright_rows:
            row["reward_lr"] = float(tot[8]) / (n - float(tot[9]))
        if float(tot[7]) > 0:
            row["premature"] = float(tot[6]) / float(tot[7])
        return row

    def _premature(self, rolls: list[Rollout]) -> list[bool]:
        """Per rollout: was the answer region started before half of the reasoning region was
        written (tasks with R/A regions, e.g. judge; the same reading as ``unmask compare``)."""
        regions = self.task.regions() if self.task is not None and hasattr(self.task, "regions") else None
        if not regions or "R" not in regions or "A" not in regions:
            return []
        from types import SimpleNamespace

        from ..compare import premature_answer

        out = []
        for r in rolls:
            order = [[s, p, t] for s, (pos, tok) in enumerate(r.steps) for p, t in zip(pos, tok)]
            out.append(bool(premature_answer(SimpleNamespace(order=order), regions)))
        return out

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        metrics = self.out / "metrics.jsonl"
        if self.acc.is_main_process:
            kept = []
            if metrics.exists():
                kept = [ln for ln in metrics.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("step", 0) <= self.start_step]
            metrics.write_text("".join(ln + "\n" for ln in kept))
            (self.out / "rl_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            # `kill PID` ends the run through the finally below, so the reward workers go too
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        bar, advance = (None, None)
        run = None
        if self.acc.is_main_process:
            from ..tracking import progress_bar

            run = self._wandb_run() if cfg.wandb else None
            bar, advance = progress_bar(f"rl {self.folder.name}", cfg.max_steps)
            if advance is not None:
                advance(self.start_step)
        try:
            for step in range(self.start_step, cfg.max_steps):
                row = self.train_step(step)
                if not all(math.isfinite(float(v)) for v in row.values()):
                    raise UnmaskError(f"step {step + 1}: a non-finite value in {row}")
                if self.acc.is_main_process:
                    with metrics.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    self._log_line(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
                    if run is not None:
                        from ..tracking import numbers

                        run.log(numbers(row), step=row["step"])
                    if advance is not None:
                        advance(1)
                if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.max_steps:
                    self.save(step + 1)
        finally:
            if bar is not None:
                bar.stop()
            if run is not None:
                run.finish()
            self.rewards.close()
        return self.out / "model"

    def _wandb_run(self):
        """The run's W&B run (project ``--wandb_project``, named after the run folder); its id is kept
        in ``wandb_run_id`` beside the checkpoint, so a resumed training continues the same W&B run."""
        import uuid

        from ..tracking import start

        id_file = self.out / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:16]
        id_file.write_text(run_id + "\n")
        return start(self.cfg.wandb_project, f"rl-{self.out.name}", asdict(self.cfg), run_id=run_id)

    def save(self, step: int) -> None:
        """``checkpoint.pt`` (weights + optimiser, to resume) and ``model/`` (a folder that loads with
        ``--model_name_or_path``), each replaced atomically."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            from ..models.loading import save_model

            policy = self.acc.unwrap_model(self.model)
            tmp = self.out / "checkpoint.pt.tmp"
            torch.save({"step": step, "model": policy.state_dict(), "optimizer": self.opt.state_dict(),
                        "config": asdict(self.cfg)}, tmp)
            os.replace(tmp, self.out / "checkpoint.pt")
            folder = self.out / "model.tmp"
            if folder.exists():
                shutil.rmtree(folder)
            if self.cfg.lora_rank:  # fold the adapters in: model/ is a plain checkpoint
                from ..models.loading import build_model
                from .lora import merged_state_dict

                plain = build_model(policy.config)
                plain.load_state_dict(merged_state_dict(policy))
                save_model(plain, folder, dtype=self.save_dtype)
            else:
                save_model(policy, folder, dtype=self.save_dtype)
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                         "task.json", "vocab.json", "merges.txt"):
                if (self.folder / name).exists():
                    shutil.copy(self.folder / name, folder / name)
            (folder / "RL.json").write_text(json.dumps({"step": step, "source": str(self.cfg.model_name_or_path),
                                                        "config": asdict(self.cfg)}, indent=2) + "\n")
            final = self.out / "model"
            if final.exists():
                shutil.rmtree(final)
            os.replace(folder, final)
        self.acc.wait_for_everyone()
