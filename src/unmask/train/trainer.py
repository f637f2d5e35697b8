"""Train a tiny LLaDA-style masked diffusion model on a synthetic task, on CPU.

Usage::

    python -m unmask.train --task sudoku --out runs/tiny-sudoku --n_layers 6 --d_model 192 \\
        --max_steps 20000 --batch_size 64 --threads 1
    python -m unmask.train --out runs/tiny-sudoku --resume            # continue exactly
    python -m unmask.train --out runs/tiny-sudoku --resume --max_steps 40000   # extend

Design choices (each made so that runs are reproducible and resumable on a shared 2-core box):

* **Data is a pure function of (seed, step).** Step ``s`` draws its batch from
  ``random.Random(seed * 1_000_003 + s)`` and its diffusion noise from a ``torch.Generator`` seeded
  the same way. Nothing about the data stream lives in the checkpoint, so ``--resume`` continues
  bit-for-bit: N straight steps equal k steps + resume + N - k steps.
* **Objective** (``--objective discrete``, the default). Per example draw ``k ~ U{1..n}`` where
  ``n`` is its number of target tokens, mask a uniformly random set of exactly ``k`` targets, i.e.
  ``t = k / n``; loss = sum over masked tokens of ``CE / t``, divided by the number of *target*
  tokens in the batch. This is the masked-diffusion (any-order) NELBO per target token: dividing by
  target tokens rather than masked tokens keeps each example's ``1/t`` weighting intact (dividing by
  the masked count would re-weight examples by their draw of ``t``). ``--objective continuous`` is
  the textbook form (``t ~ U(1e-3, 1)``, each target masked with probability ``t``, at least one
  forced); on short canvases the forced token gets weights up to 1000, which biases and destabilises
  training (see :func:`diffusion_loss`), hence the discrete default.
* **Schedule.** Linear warm-up then cosine decay to 10% of ``--lr`` at ``--max_steps``, computed
  from the step number alone (no scheduler state). Resuming with a larger ``--max_steps`` therefore
  *recomputes* the schedule: the learning rate jumps to where the longer cosine would be at the
  current step. That is intended for extending a run in a later session.
* **Checkpoints** every ``--ckpt_minutes`` and at the end: ``OUT/ckpt.pt`` (model, optimizer,
  step, elapsed wall time, args) written atomically, plus the shippable folder ``OUT/model/``
  (bf16 ``model.safetensors``, ``config.json``, tokenizer, ``task.json``, ``MODEL_CARD.md``) and
  ``OUT/loss.png``. Logs go to stdout and ``OUT/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UnmaskError
from ..models.base import DiffusionLM
from ..models.llada import LLaDA, LLaDAConfig
from ..models.loading import build_model, save_model
from ..tasks.synthetic import SyntheticTask, get_task

EPS = 1e-3
EVAL_MASK_RATES = (0.25, 0.5, 0.9, 1.0)
HELDOUT_OFFSET = 7_777_777  # held-out examples come from a stream no training step can reach
MAX_EXPORT_BYTES = 10 * 1024 * 1024


from .arguments import add_train_arguments  # noqa: E402,F401 - re-exported (python -m unmask.train)

DEFAULTS: dict[str, Any] = {
    "n_layers": 4, "d_model": 128, "n_heads": 4, "mlp_hidden_size": None, "positions": "rope", "seed": 0, "max_steps": 10000,
    "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 200, "grad_clip": 1.0, "objective": "discrete",
    "derived_frac": 0.0, "eval_every": 500, "eval_size": 256, "decode_eval": 48, "log_every": 50, "threads": 2,
}
# settings a resumed run must keep (changing them would change what the checkpoint means)
FROZEN_ON_RESUME = ("task", "task_param", "n_layers", "d_model", "n_heads", "mlp_hidden_size", "positions", "seed", "batch_size",
                    "objective")


# ------------------------------------------------------------------------------------ pieces
def make_model(task: SyntheticTask, n_layers: int, d_model: int, n_heads: int,
               mlp_hidden_size: int | None, seed: int, positions: str = "rope") -> LLaDA:
    """A fresh LLaDA sized for the task's canvas, with the char tokenizer's special ids."""
    tok = task.tokenizer
    vocab = len(tok)
    cfg = LLaDAConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads,
        mlp_hidden_size=mlp_hidden_size or 3 * d_model,
        vocab_size=vocab, embedding_size=vocab, max_sequence_length=task.canvas_len,
        mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        rope_theta=10000.0, rope=positions == "rope",
    )
    return build_model(cfg, seed=seed)  # type: ignore[return-value]


def lr_at(step: int, lr: float, warmup: int, max_steps: int, floor: float = 0.1) -> float:
    """Learning rate used for update number ``step`` (0-based): linear warm-up, then cosine to
    ``floor * lr`` at ``max_steps`` (held there if training continues past it)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, max_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_batch(task: SyntheticTask, rng: random.Random, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids, target = zip(*(task.training_example(rng) for _ in range(batch_size)))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(target, dtype=torch.bool)


def apply_noise(ids: torch.Tensor, target: torch.Tensor, t: torch.Tensor, mask_id: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask every target token with probability ``t`` (per row); at least one per row is masked
    (a row with nothing masked would contribute no signal and waste its compute)."""
    u = torch.rand(ids.shape, generator=gen)
    masked = (u < t[:, None]) & target
    # force one masked token per row: the target with the smallest u
    none = ~masked.any(dim=1)
    if bool(none.any()):
        u_t = torch.where(target, u, torch.full_like(u, 2.0))
        first = u_t.argmin(dim=1)
        masked[none, first[none]] = True
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    return noisy, masked


def apply_noise_discrete(ids: torch.Tensor, target: torch.Tensor, mask_id: int,
                         gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discrete-time noise: per row draw ``k ~ U{1..n}`` (``n`` = its number of targets) and mask a
    uniformly random set of exactly ``k`` targets; returns ``(noisy, masked, t = k / n)``."""
    n = target.sum(dim=1)
    u = torch.rand(ids.shape[0], generator=gen)
    k = (u * n).floor().long().clamp(max=n - 1) + 1
    scores = torch.rand(ids.shape, generator=gen).masked_fill(~target, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    masked = (rank < k[:, None]) & target
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    return noisy, masked, k.float() / n.clamp(min=1).float()


def diffusion_loss(model: DiffusionLM, ids: torch.Tensor, target: torch.Tensor, mask_id: int,
                   gen: torch.Generator, objective: str = "discrete", derived: torch.Tensor | None = None,
                   derived_frac: float = 0.0) -> torch.Tensor:
    """Masked-diffusion NELBO estimate per target token (see the module docstring).

    ``objective="discrete"`` (default): ``t = k / n`` with ``k ~ U{1..n}`` masked targets, weight
    ``1 / t = n / k``; this is exactly the any-order (absorbing diffusion) ELBO, always masks at
    least one token and its weights are bounded by ``n``. ``"continuous"``: ``t ~ U(eps, 1)``, each
    target masked with probability ``t``, weight ``1 / t``, one token forced when none was drawn.
    The forced token is what makes the continuous form a poor fit for short canvases: for small
    ``t`` almost every row is forced and then weighted by up to ``1 / eps`` = 1000, which both biases
    the estimate (about ``(ln(1/eps) - H_n) / n`` extra CE per token, +0.5 for multiply's 8 digits)
    and makes the gradient very noisy.

    ``derived`` (a bool canvas mask) with ``derived_frac > 0``: that fraction of rows, drawn from
    ``gen``, treats only its derived tokens as targets, so the rest of the row is visible and the
    row trains ``p(derived | rest)`` at every mask rate. Each row is still an unbiased any-order
    term for *some* conditional of the data, so the model stays a masked diffusion model; the
    batch is simply tilted towards the conditional that order-aware decoding leans on. With
    ``derived_frac == 0`` no extra random numbers are drawn (older runs resume bit-for-bit)."""
    if derived is not None and derived_frac > 0 and bool(derived.any()):
        pick = torch.rand(ids.shape[0], generator=gen) < derived_frac
        target = torch.where(pick[:, None], target & derived[None, :], target)
    if objective == "discrete":
        noisy, masked, t = apply_noise_discrete(ids, target, mask_id, gen)
    elif objective == "continuous":
        t = EPS + (1 - EPS) * torch.rand(ids.shape[0], generator=gen)
        noisy, masked = apply_noise(ids, target, t, mask_id, gen)
    else:
        raise ValueError(f"unknown objective {objective!r}")
    logits = model(noisy).logits
    ce = F.cross_entropy(logits[masked].float(), ids[masked], reduction="none")
    weights = (1.0 / t)[:, None].expand_as(ids)[masked]
    return (ce * weights).sum() / target.sum().clamp(min=1)


def step_generators(seed: int, step: int) -> tuple[random.Random, torch.Generator]:
    """The data RNG and noise generator of training step ``step``: a pure function of both."""
    key = seed * 1_000_003 + step
    gen = torch.Generator().manual_seed(key)
    return random.Random(key), gen


# ------------------------------------------------------------------------------------ evaluation
class HeldOut:
    """Fixed held-out material: examples for masked-token metrics and items for the decode monitor."""

    def __init__(self, task: SyntheticTask, seed: int, size: int, decode_items: int) -> None:
        self.task = task
        rng = random.Random(seed * 1_000_003 + HELDOUT_OFFSET)
        self.ids, self.target = make_batch(task, rng, size)
        self.noise_seed = seed + HELDOUT_OFFSET
        self.items: list[dict[str, Any]] = []
        if decode_items > 0:
            difficulty = {"givens": (28, 32)} if task.name == "sudoku" else {}
            self.items = task.make_dataset(decode_items, seed + HELDOUT_OFFSET, **difficulty)

    @torch.no_grad()
    def evaluate(self, model: DiffusionLM, batch: int = 128) -> dict[str, float]:
        """Masked-token accuracy and mean CE at fixed mask rates, then the decode monitor."""
        was_training = model.training
        model.eval()
        out: dict[str, float] = {}
        mask_id = self.task.mask_id
        for rate in EVAL_MASK_RATES:
            gen = torch.Generator().manual_seed(self.noise_seed + int(rate * 1000))
            n_tok, n_hit, ce_sum = 0, 0, 0.0
            for lo in range(0, self.ids.shape[0], batch):
                ids, target = self.ids[lo:lo + batch], self.target[lo:lo + batch]
                t = torch.full((ids.shape[0],), rate)
                noisy, masked = apply_noise(ids, target, t, mask_id, gen)
                logits = model(noisy).logits[masked].float()
                gold = ids[masked]
                ce_sum += float(F.cross_entropy(logits, gold, reduction="sum"))
                n_hit += int((logits.argmax(-1) == gold).sum())
                n_tok += int(masked.sum())
            out[f"acc@{rate:g}"] = n_hit / max(1, n_tok)
            out[f"loss@{rate:g}"] = ce_sum / max(1, n_tok)
        derived = self.task.derived_positions()
        if derived:
            # every derived token masked, the rest visible: can the model compute the easy part?
            noisy = self.ids.clone()
            noisy[:, derived] = mask_id
            hits = []
            for lo in range(0, noisy.shape[0], batch):
                pred = model(noisy[lo:lo + batch]).logits[:, derived].argmax(-1)
                hits.append(pred == self.ids[lo:lo + batch, derived])
            hit = torch.cat(hits)
            out["derived_acc"] = float(hit.float().mean())
            out["derived_row_acc"] = float(hit.all(dim=1).float().mean())
        if self.items:
            out.update(self.decode_monitor(model))
        model.train(was_training)
        return out

    @torch.no_grad()
    def decode_monitor(self, model: DiffusionLM) -> dict[str, float]:
        """A deliberately simple sampler, only to watch training: one position per step, the masked
        position with the highest max-probability, argmax token for conditional tasks (Sudoku) and
        a temperature-1 sample for unconditional ones (whose argmax would be one fixed answer).
        Special tokens are never produced. The real samplers live in :mod:`unmask.samplers`."""
        task = self.task
        x = torch.tensor([task.prompt_ids(it) for it in self.items], dtype=torch.long)
        allowed = torch.zeros(task.vocab_size, dtype=torch.bool)
        allowed[list(task.char_ids.values())] = True
        sample = not task.conditional
        gen = torch.Generator().manual_seed(self.noise_seed)
        rows = torch.arange(x.shape[0])
        while True:
            is_mask = x == task.mask_id
            if not bool(is_mask.any()):
                break
            logits = model(x).logits.float()
            logits[..., ~allowed] = -math.inf
            probs = logits.softmax(-1)
            conf = probs.max(-1).values.masked_fill(~is_mask, -1.0)
            pos = conf.argmax(-1)
            p = probs[rows, pos]
            tok = torch.multinomial(p, 1, generator=gen).squeeze(1) if sample else p.argmax(-1)
            active = is_mask.any(dim=1)
            x[rows[active], pos[active]] = tok[active]
        scores = [task.score(it, row.tolist()) for it, row in zip(self.items, x)]
        keys = scores[0].keys()
        return {f"decode_{k}": sum(s[k] for s in scores) / len(scores) for k in keys}


# ------------------------------------------------------------------------------------ outputs
def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_model_folder(model: DiffusionLM, task: SyntheticTask, out: Path, card: str) -> Path:
    """Write ``out/model`` (bf16 weights, config, tokenizer, task.json, MODEL_CARD.md), swapping
    the finished folder in so a reader never sees a half-written one."""
    final = out / "model"
    tmp = out / "model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp, dtype="bfloat16")
    size = (tmp / "model.safetensors").stat().st_size
    if size > MAX_EXPORT_BYTES:
        print(f"warning: exported weights are {size / 2**20:.1f} MiB (> 10 MiB budget)", flush=True)
    task.tokenizer.save_pretrained(str(tmp))
    (tmp / "task.json").write_text(json.dumps(task.task_json(), indent=2) + "\n")
    (tmp / "MODEL_CARD.md").write_text(card)
    old = out / "model.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
    return rows


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be re-logged)."""
    rows = [r for r in read_log(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def plot_loss(log_path: Path, png: Path) -> None:
    """Training loss (smoothed) and held-out loss at each mask rate versus step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional
        return
    rows = read_log(log_path)
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if not train:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot([s for s, _ in train], [v for _, v in train], lw=1)
    axes[0].set(xlabel="step", ylabel="train loss (NELBO / target token)", yscale="log", title="training")
    for rate in EVAL_MASK_RATES:
        key = f"acc@{rate:g}"
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            axes[1].plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=f"masked acc @ {rate:g}")
    for key in ("decode_correct", "decode_obs_accuracy"):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            axes[1].plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=key)
    axes[1].set(xlabel="step", ylabel="held-out", ylim=(0, 1.02), title="held-out")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)


def model_card(task: SyntheticTask, model: DiffusionLM, cfg: dict[str, Any], step: int, elapsed: float,
               last_eval: dict[str, Any] | None, command: str, name: str | None = None) -> str:
    """The card of an exported model. ``name`` (the run folder's name) titles it: a user's own run
    is not one of the shipped ``tiny-*`` models (whose runs were ``runs/tiny-<task>``)."""
    n_params = model.num_parameters()
    lines = [
        f"# {name or 'tiny-' + task.name}: a {n_params / 1e6:.2f}M-parameter masked diffusion model",
        "",
        f"A LLaDA-architecture (bidirectional, no time embedding) model trained from scratch on CPU on the "
        f"synthetic `{task.name}` task of `unmask.tasks`. Canvas: `[BOS]` + {task.seq_len} tokens; "
        "decode by infilling the mask positions of `task.prompt_ids(item)` (max_new_tokens=0).",
        "",
        "## Files",
        "- `config.json`, `model.safetensors` (bfloat16): LLaDA layout, loads with `unmask.models.loading.load_model`.",
        "- `tokenizer.json`, `tokenizer_config.json`: character-level tokenizer (`[PAD]`=0, `[MASK]`=1, `[EOS]`=2, `[BOS]`=3).",
        "- `task.json`: task name and parameters (`unmask.tasks.synthetic.task_from_json`).",
        "",
        "## Training",
        f"- command: `{command}`",
        f"- model: {cfg['n_layers']} layers, d_model {cfg['d_model']}, {cfg['n_heads']} heads, "
        f"SwiGLU hidden {cfg['mlp_hidden_size'] or 3 * cfg['d_model']}, "
        f"{'learned absolute positions (rope: false)' if cfg.get('positions') == 'learned' else 'RoPE'}, "
        f"{n_params:,} parameters",
        f"- task parameters: `{json.dumps(task.params)}`",
        f"- seed {cfg['seed']}, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} (warm-up {cfg['warmup_steps']}, "
        f"cosine to 10% at step {cfg['max_steps']}), weight decay {cfg['weight_decay']}",
        f"- steps done: {step} of {cfg['max_steps']}; wall time {elapsed / 3600:.2f} h on CPU",
        ("- objective: masked diffusion (discrete time): k ~ U{1..n} of the n target tokens masked, t = k/n, "
         if cfg.get("objective", "discrete") == "discrete" else
         "- objective: masked diffusion (continuous time): t ~ U(1e-3, 1), targets masked with prob. t, ")
        + "CE/t summed over masked tokens / number of target tokens; givens never masked"
        + (f"; {cfg['derived_frac']:.0%} of rows mask only the derived tokens ({task.derived_positions()})"
           if cfg.get("derived_frac") else ""),
        "",
        "## Held-out figures (latest evaluation)",
    ]
    if last_eval:
        for k, v in last_eval.items():
            if k not in ("kind", "time"):
                lines.append(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}")
        lines.append("")
        lines.append("`acc@r`/`loss@r`: masked-token accuracy / CE with each target masked with probability r. "
                     "`derived_*`: argmax accuracy on every derived token at once (per token / whole row), the "
                     "rest visible. `decode_*`: built-in confidence monitor (one token per step; argmax for "
                     "Sudoku on 28-32 givens, temperature 1 for the unconditional tasks) on held-out items.")
    else:
        lines.append("- none yet")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ main loop
def init_weights(model: DiffusionLM, source: str) -> None:
    """Copy the weights of a model folder / built-in alias into ``model`` (shapes must agree).

    Why: ``ckpt.pt`` (with the optimizer state) lives in the git-ignored run folder, so on a new
    machine the only copy of a shipped model is its bf16 export; this continues training from it."""
    from ..models.loading import load_model
    from ..models.registry import resolve_model_path

    try:
        src = load_model(resolve_model_path(source), dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any load failure is a user error here
        raise UnmaskError(f"--init_from {source}: {exc}") from None
    theirs, ours = src.state_dict(), model.state_dict()
    bad = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
    if bad or set(theirs) != set(ours):
        raise UnmaskError(f"--init_from {source}: its shape differs from this run's model "
                         f"(first mismatch: {(bad or sorted(set(theirs) ^ set(ours)))[0]}); pass matching "
                         "--n_layers/--d_model/--n_heads/--mlp_hidden_size")
    model.load_state_dict(theirs)


def resolve_config(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Merge command-line flags, checkpoint settings (on resume) and defaults."""
    cfg: dict[str, Any] = {}
    keys = ["task", "task_param", *DEFAULTS]
    for k in keys:
        given = getattr(args, k, None)
        if saved is not None and k in FROZEN_ON_RESUME:
            if given is not None and given != saved.get(k) and not (k == "task_param" and
                                                                   dict(given) == dict(saved.get(k) or [])):
                raise UnmaskError(f"--{k} {given!r} differs from the checkpoint's {saved.get(k)!r}; "
                                 "it cannot change on resume")
            cfg[k] = saved.get(k, DEFAULTS.get(k))
        elif given is not None:
            cfg[k] = given
        elif saved is not None and k in saved:
            cfg[k] = saved[k]
        else:
            cfg[k] = DEFAULTS.get(k)
    if not cfg["task"]:
        raise UnmaskError("--task is required for a new run")
    cfg["task_param"] = [list(p) for p in (cfg["task_param"] or [])]
    return cfg


def check_train_config(cfg: dict[str, Any]) -> None:
    """Numbers through the shared rule (they may come from a checkpoint's saved config too), and
    a model shape that can be built."""
    from ..validation import check_option

    for k in DEFAULTS:
        cfg[k] = check_option(k, cfg[k], f"--{k}")
    if cfg["d_model"] % cfg["n_heads"]:
        raise UnmaskError(f"--n_heads ({cfg['n_heads']}) must divide --d_model ({cfg['d_model']})")
    if (cfg.get("positions") or "rope") == "rope" and (cfg["d_model"] // cfg["n_heads"]) % 2:
        raise UnmaskError(f"the head size --d_model/--n_heads = {cfg['d_model'] // cfg['n_heads']} must be even "
                          "with rotary positions (or use --positions learned)")


def run_train(args: argparse.Namespace) -> int:
    """Entry point behind ``python -m unmask.train`` / ``unmask train``; returns an exit code."""
    from ..userio import ensure_dir

    if args.init_from and args.resume:
        raise UnmaskError("--init_from starts a new run; it cannot be combined with --resume")
    out = ensure_dir(args.out, "--out")
    ckpt_path = out / "ckpt.pt"
    log_path = out / "log.jsonl"
    saved = None
    if args.resume:
        if not ckpt_path.exists():
            raise UnmaskError(f"--resume: no checkpoint at {ckpt_path}")
        try:
            saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            saved["config"], saved["model"], saved["optimizer"], saved["step"]  # noqa: B018 - presence check
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's file to fix
            raise UnmaskError(f"--resume: {ckpt_path} is not a readable unmask training checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    cfg = resolve_config(args, saved["config"] if saved else None)
    check_train_config(cfg)
    if saved and args.threads is not None and args.threads != saved["config"].get("threads", DEFAULTS["threads"]):
        print(f"note: --threads {args.threads} differs from the run's {saved['config'].get('threads')}: "
              "the resumed steps may differ in the last bits from an uninterrupted run", file=sys.stderr, flush=True)
    torch.set_num_threads(cfg["threads"])
    try:
        task = get_task(cfg["task"], **dict(cfg["task_param"]))
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise UnmaskError(f"--task {cfg['task']} {cfg['task_param'] or ''}: {msg}".replace(" : ", ": ")) from None
    model = make_model(task, cfg["n_layers"], cfg["d_model"], cfg["n_heads"], cfg["mlp_hidden_size"], cfg["seed"],
                       cfg.get("positions") or "rope")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=cfg["weight_decay"])
    step, elapsed = 0, 0.0
    if args.init_from:
        init_weights(model, args.init_from)
    if saved:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        step, elapsed = int(saved["step"]), float(saved["elapsed"])
        truncate_log(log_path, step)
        commands = saved.get("commands", [])
    else:
        if log_path.exists():
            log_path.unlink()
        commands = []
    # record the command as typed: ``unmask train ...`` arrives with "train" as its first argument
    argv, prog = sys.argv[1:], "python -m unmask.train"
    if argv[:1] == ["train"]:
        argv, prog = argv[1:], "unmask train"
    command = prog + " " + " ".join(shlex.quote(a) for a in argv)
    commands = [*commands, command]
    model.train()

    n_params = model.num_parameters()
    print(f"[train] task={task.name} params={json.dumps(task.params)} model={n_params:,} parameters "
          f"canvas={task.canvas_len} vocab={task.vocab_size} start_step={step} max_steps={cfg['max_steps']} "
          f"threads={torch.get_num_threads()}", flush=True)
    heldout = HeldOut(task, cfg["seed"], cfg["eval_size"], cfg["decode_eval"])
    last_eval: dict[str, Any] | None = None
    for r in reversed(read_log(log_path)):
        if r.get("kind") == "eval":
            last_eval = r
            break

    def log(row: dict[str, Any]) -> None:
        with log_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def checkpoint() -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "elapsed": elapsed + (time.time() - t_start), "config": cfg, "commands": commands}
        _atomic_torch_save(state, ckpt_path)
        card = model_card(task, model, cfg, step, state["elapsed"], last_eval, " && ".join(commands),
                          out.resolve().name)
        export_model_folder(model, task, out, card)
        plot_loss(log_path, out / "loss.png")
        print(f"[ckpt] step {step} -> {ckpt_path}", flush=True)

    t_start = time.time()
    last_ckpt = time.time()
    window_loss, window_n, window_t0, window_tok = 0.0, 0, time.time(), 0
    stop_at = t_start + 60 * args.max_minutes if args.max_minutes else None
    mask_id = task.mask_id
    derived = torch.zeros(task.canvas_len, dtype=torch.bool)
    derived[task.derived_positions()] = True
    while step < cfg["max_steps"]:
        rng, gen = step_generators(cfg["seed"], step)
        ids, target = make_batch(task, rng, cfg["batch_size"])
        lr = lr_at(step, cfg["lr"], cfg["warmup_steps"], cfg["max_steps"])
        for group in opt.param_groups:
            group["lr"] = lr
        loss = diffusion_loss(model, ids, target, mask_id, gen, cfg["objective"], derived, cfg["derived_frac"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        step += 1
        window_loss += float(loss.detach())
        window_n += 1
        window_tok += ids.numel()
        if step % cfg["log_every"] == 0 or step == cfg["max_steps"]:
            dt = time.time() - window_t0
            row = {"kind": "train", "step": step, "loss": window_loss / window_n, "lr": lr,
                   "grad_norm": float(gnorm), "tok_per_s": window_tok / max(dt, 1e-9),
                   "elapsed": elapsed + time.time() - t_start}
            log(row)
            print(f"[train] step {step}/{cfg['max_steps']} loss {row['loss']:.4f} lr {lr:.2e} "
                  f"gnorm {row['grad_norm']:.2f} {row['tok_per_s']:.0f} tok/s "
                  f"elapsed {row['elapsed'] / 60:.1f} min", flush=True)
            window_loss, window_n, window_t0, window_tok = 0.0, 0, time.time(), 0
        if step % cfg["eval_every"] == 0 or step == cfg["max_steps"]:
            t0 = time.time()
            figures = heldout.evaluate(model)
            last_eval = {"kind": "eval", "step": step, **figures, "eval_seconds": time.time() - t0}
            log(last_eval)
            print(f"[eval] step {step} " + " ".join(f"{k} {v:.4f}" for k, v in figures.items())
                  + f" ({last_eval['eval_seconds']:.0f}s)", flush=True)
            window_t0 = time.time()  # keep the throughput figure about training only
        now = time.time()
        if now - last_ckpt >= 60 * args.ckpt_minutes:
            checkpoint()
            last_ckpt = time.time()
            window_t0 += last_ckpt - now
        if args.stop_at_step is not None and step >= args.stop_at_step:
            print(f"[train] --stop_at_step reached at step {step}", flush=True)
            break
        if stop_at is not None and time.time() >= stop_at:
            print(f"[train] --max_minutes reached at step {step}", flush=True)
            break
    checkpoint()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unmask.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    from ..cli import check_arguments

    try:
        check_arguments(args)
        return run_train(args)
    except UnmaskError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
