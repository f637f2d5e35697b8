"""The one table of options: every run setting declared once.

Each :class:`OptionSpec` row generates

* the command-line flag, in both spellings (``--max_new_tokens`` and ``--max-new-tokens``), on
  every command listed in ``commands``, with ``default=argparse.SUPPRESS`` so that "the user gave
  this flag" is known exactly (a flag given at its default value still wins over a preset);
* the config key ``group.key`` of presets, ``--config`` files and ``key=value`` overrides, and its
  schema (unknown keys get a did-you-mean);
* the sweep key (the flat ``name``, or the config spelling ``group.key``) of sweep files;
* the request field of ``unmask serve`` (``server=True``), with its JSON type;
* the numeric range that :mod:`unmask.validation` enforces at every door;
* the help text (with the default) and ``docs/options.md`` (``python -m unmask.options``).

Where a value goes is ``target``: ``generation`` (a ``GenerationConfig`` field of
``unmask.generate``), ``sampler`` (a sampler constructor option), ``sampler_name``, ``lockstep``
(:class:`unmask.decoding.lockstep_options.LockstepOptions`), ``run`` (the command itself:
eval's limit, the chat template, ...), or ``model``.

Precedence, highest first: explicit flag > ``key=value`` override > ``--config`` file >
``--preset`` > the row's default (see :func:`resolve`). Options a row ``excludes`` (``steps`` and
``tokens_per_step``) give way to the higher-precedence one: ``--tokens_per_step 2`` over a preset
that sets ``steps`` runs with ``tokens_per_step=2`` and no step budget.

How to add an option
--------------------
Append one ``OptionSpec(...)`` to :data:`OPTIONS` (name, type, default, help, group, target,
range/choices, commands, server). Then read it where it is used: a ``generation`` row reaches
``GenerationConfig`` (add the dataclass field), a ``sampler`` row reaches the sampler's
constructor (list it in the sampler's ``options``), a ``run`` row is ``args.<name>`` in the
command. Regenerate the reference with ``python -m unmask.options > docs/options.md``; the tests
walk the new row through every door by themselves.

A new command that takes rows: name it in the rows' ``commands`` and call
``unmask.cli.add_sampling_flags(parser, "name")`` when building its parser; it then gets
``--preset``, ``--config``, ``key=value`` and the precedence like the others.

This module imports nothing heavy (no torch): the CLI builds its parser from it for ``--help``.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import UnmaskError
from .ranges import AT_LEAST_1, MAX_SEED, NONNEG, NONNEG_INT, POS, POS_INT, UNIT, UNIT_OPEN_LO, Num

#: commands that decode with the shared sampling options
DECODING = ("sample", "chat", "eval", "compare", "serve")
#: commands that take --preset / --config / key=value (sweep: --preset and key=value; its YAML is the config)
RUN_COMMANDS = ("sample", "chat", "eval", "compare", "serve", "sweep")
#: config groups, in the order docs list them ("" = a top-level key such as ``model``)
GROUPS = ("", "sampler", "generation", "decode", "eval", "run", "rl")
#: a run's own flags for the W&B logging, shared by every command that logs
WANDB_DEFAULT_PROJECT = "unmask"


def parse_bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on", "y", "t"):
        return True
    if v in ("0", "false", "no", "off", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False, got {value!r}")


@dataclass(frozen=True)
class OptionSpec:
    """One option. ``key`` is the name inside ``group`` when it differs from ``name``
    (``decode.mode`` is ``--lockstep``); ``group=None`` means no config key."""

    name: str
    type: type
    default: Any
    help: str
    group: str | None = "generation"
    target: str = "generation"
    range: Num | None = None
    choices: tuple[str, ...] | None = None
    key: str | None = None
    commands: tuple[str, ...] = DECODING
    server: bool = True
    sweep: bool = True
    excludes: tuple[str, ...] = ()

    @property
    def config_key(self) -> str | None:
        if self.group is None:
            return None
        k = self.key or self.name
        return f"{self.group}.{k}" if self.group else k

    def parse(self, value: Any) -> Any:
        """A value from text (a flag, a ``key=value``) or from YAML, as this option's type."""
        if value is None:
            return None
        if self.type is bool:
            return value if isinstance(value, bool) else parse_bool(value)
        if self.type in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        return self.type(value) if self.type is not str else str(value)

    def help_text(self) -> str:
        text = self.help
        if self.choices:
            text += f" ({' | '.join(self.choices)})"
        if self.default not in (None, False) or self.type is bool and self.default is not None:
            text += f" [default: {self.default}]"
        return text


G, S, D, E, R = "generation", "sampler", "decode", "eval", "run"
_LOCKSTEP = ("sample", "chat", "eval", "compare", "serve")

OPTIONS: tuple[OptionSpec, ...] = (
    # ------------------------------------------------------------------ model
    OptionSpec("model_name_or_path", str, None, "model folder, alias (llada, dream, tiny-sudoku, ...) or hub id",
               group="", key="model", target="model", server=False, sweep=False),
    OptionSpec("device", str, "auto", "cpu, cuda, cuda:1, mps ... (auto: cuda when available)", group=None,
               target="model", server=False),
    OptionSpec("dtype", str, "auto", "float32 | bfloat16 | float16 | auto (as stored)", group=None, target="model",
               server=False),
    # ------------------------------------------------------------------ sampler
    OptionSpec("sampler", str, "confidence",
               "random, leftright, confidence, margin, entropy, threshold, factor, eb, klass, pc, info_gain, lookum; "
               "SDAR/TraDo: sequential, low_confidence_static, low_confidence_dynamic, entropy_bounded",
               group=S, key="name", target="sampler_name", sweep=False),
    OptionSpec("threshold", float, None, "confidence threshold (threshold sampler; Info-Gain bypass)", group=S,
               target="sampler", range=UNIT_OPEN_LO),
    OptionSpec("factor", float, None, "Fast-dLLM factor rule", group=S, target="sampler", range=POS),
    OptionSpec("gamma", float, None, "EB-sampler entropy budget", group=S, target="sampler", range=NONNEG),
    OptionSpec("eb_threshold", float, None, "entropy_bounded (SDAR) entropy budget (sampler default 0.35)", group=S,
               target="sampler", range=NONNEG),
    OptionSpec("kl_threshold", float, None, "KLASS: KL to the previous step a stable position stays under "
               "(sampler default 0.01)", group=S, target="sampler",
               range=Num(lo=0, lo_open=True, hint="KLASS: a KL (nats, >= 0) must stay below it")),
    OptionSpec("kl_history", int, None, "KLASS: consecutive steps a position must stay under kl_threshold "
               "(sampler default 2)", group=S, target="sampler", range=AT_LEAST_1),
    OptionSpec("pc_lambda", float, None, "PC-sampler position decay", group=S, target="sampler", range=NONNEG),
    OptionSpec("pc_alpha", float, None, "PC-sampler frequency calibration", group=S, target="sampler", range=POS),
    OptionSpec("pc_freq_file", str, None, "token frequency JSON from `unmask pc-freq` (a server-side file)", group=S,
               target="sampler", server=False),
    OptionSpec("variant", str, None, "Info-Gain objective: info_gain (default) or lookum", group=S, target="sampler"),
    OptionSpec("candidate_number", int, None, "Info-Gain candidate actions per step (sampler default 8)", group=S,
               target="sampler", range=AT_LEAST_1),
    OptionSpec("position_temperature", float, None, "Info-Gain position temperature (sampler default 0.1)", group=S,
               target="sampler", range=NONNEG),
    OptionSpec("bypass", str, None, "Info-Gain threshold bypass: any (default) or all", group=S, target="sampler"),
    OptionSpec("hnext_scope", str, None,
               "Info-Gain H_next over: auto (default: block with use_cache dual, else all), all, block, padded",
               group=S, target="sampler"),
    OptionSpec("lookahead_margin", float, None,
               "Info-Gain: skip the lookahead when the greedy action's confidence gap is at least this", group=S,
               target="sampler", range=UNIT),
    OptionSpec("cost_reduction", str, None, "Info-Gain cost C: sum (default) or mean", group=S, target="sampler"),
    # ------------------------------------------------------------------ generation (GenerationConfig fields)
    OptionSpec("max_new_tokens", int, None, "tokens to generate after the prompt (default: the model's or task's)",
               range=NONNEG_INT),
    OptionSpec("steps", int, None, "total decoding steps (default: one token per step); SDAR/TraDo: steps per block",
               range=POS_INT, excludes=("tokens_per_step",)),
    OptionSpec("block_size", int, None, "semi-autoregressive block length (default: one block; SDAR/TraDo: 4)",
               range=POS_INT),
    OptionSpec("tokens_per_step", int, None, "fixed tokens per step (instead of steps)", range=POS_INT,
               excludes=("steps",)),
    OptionSpec("schedule", str, "linear", "tokens per step within a block", choices=("linear", "linear_round", "dream")),
    OptionSpec("temperature", float, 0.0, "token temperature (0 = argmax)", range=Num(lo=0, hint="0 = argmax")),
    OptionSpec("top_p", float, None, "nucleus sampling mass", range=UNIT_OPEN_LO),
    OptionSpec("top_k", int, None, "sample among the k most likely tokens", range=POS_INT),
    OptionSpec("use_cache", str, "none", "KV cache (SDAR/TraDo: any value but none = the exact block cache)",
               choices=("none", "prefix", "dual")),
    OptionSpec("eos_penalty", float, 0.0, "subtracted from the stop tokens' logits", range=Num()),
    OptionSpec("eos_fill", bool, False, "fill every mask after a committed EOS with EOS"),
    OptionSpec("seed", int, 0, "random seed (every sampler is deterministic given it)",
               range=Num(lo=0, hi=MAX_SEED, integer=True)),
    OptionSpec("beam_size", int, None, "beam search over Info-Gain trajectories (engine default 1)", range=AT_LEAST_1),
    OptionSpec("best_of", int, None, "N runs, keep the lowest cumulative entropy (engine default 1)", range=AT_LEAST_1),
    OptionSpec("max_lookahead_rows", int, None, "split lookahead forwards larger than this", range=AT_LEAST_1),
    OptionSpec("compat", str, None, "reproduce a reference loop token for token: llada | fast_dllm | dream, or "
               "behaviours (mask_softmax, dream_schedule, ...; see docs/samplers.md)"),
    OptionSpec("compile", bool, False, "torch.compile the model's forward (same tokens; pays a one-off compile, "
               "helps on GPU; see docs/benchmarks.md)", server=False, sweep=False),
    # ------------------------------------------------------------------ lockstep (decode.*)
    OptionSpec("lockstep", str, None, "decode a reasoning region R and an answer region A in tandem: gauss_seidel "
               "(commit R, re-run the model, commit A) or jacobi (both from one forward)", group=D, key="mode",
               target="lockstep", choices=("gauss_seidel", "jacobi"), commands=_LOCKSTEP),
    OptionSpec("reasoning_tokens", int, None, "masks an [R] marker expands to (lockstep default 64)", group=D,
               target="lockstep", range=AT_LEAST_1, commands=_LOCKSTEP),
    OptionSpec("answer_tokens", int, None, "masks an [A] marker expands to (lockstep default 16)", group=D,
               target="lockstep", range=AT_LEAST_1, commands=_LOCKSTEP),
    OptionSpec("tau_r", float, None, "confidence an R position needs to be committed (lockstep default 0.90)",
               group=D, target="lockstep", range=UNIT_OPEN_LO, commands=_LOCKSTEP),
    OptionSpec("tau_a", float, None, "confidence an A position needs to be committed (lockstep default 0.92)",
               group=D, target="lockstep", range=UNIT_OPEN_LO, commands=_LOCKSTEP),
    OptionSpec("max_fill_frac", float, None, "most of a region's remaining masks committed per step "
               "(lockstep default 0.4)", group=D, target="lockstep", range=UNIT_OPEN_LO, commands=_LOCKSTEP),
    OptionSpec("answer_after", float, None, "A commits nothing until this fraction of R is filled", group=D,
               target="lockstep", range=UNIT, commands=_LOCKSTEP),
    OptionSpec("answer_separator", str, None, "put R and A after the prompt, separated by this fixed text "
               "(e.g. '\\nAnswer: ')", group=D, target="lockstep", commands=_LOCKSTEP),
    # ------------------------------------------------------------------ run settings
    OptionSpec("chat_template", bool, None, "wrap the prompt in the tokenizer's chat template (default: when it "
               "has one)", group=R, target="run", commands=("sample", "chat", "eval"), server=False),
    OptionSpec("task", str, None, "benchmark or synthetic task (see eval --list_tasks); default: the tiny "
               "model's own task (rl: the synthetic task whose training split gives the prompts)", group=E,
               target="run", commands=("eval", "rl"), server=False, sweep=False),
    OptionSpec("limit", int, None, "evaluate only the first N samples", group=E, target="run", range=AT_LEAST_1,
               commands=("eval",), server=False),
    OptionSpec("data", str, None, "JSONL file in the task's format instead of the packaged data", group=E,
               target="run", commands=("eval", "compare"), server=False),
    OptionSpec("num_fewshot", int, None, "in-prompt examples (default: the task's)", group=E, target="run",
               range=NONNEG_INT, commands=("eval",), server=False),
    OptionSpec("batch_size", int, 8, "prompts decoded together (results do not depend on it)", group=E,
               target="run", range=AT_LEAST_1, commands=("eval", "compare"), server=False),
    OptionSpec("output_dir", str, "results", "where run folders (records, summary) go", group=E, target="run",
               commands=("eval",), server=False, sweep=False),
    OptionSpec("exec_timeout", float, None, "per-test time limit in seconds for code tasks (default 5)", group=E,
               target="run", range=Num(lo=0, hi=86400, lo_open=True, hint="seconds per test"), commands=("eval",),
               server=False),
    OptionSpec("threads", int, None, "torch CPU threads (default: torch's choice; rl: 1 per process)", group=R,
               target="run", range=AT_LEAST_1, commands=("eval", "rl"), server=False),
    OptionSpec("wandb", bool, False, "log the figures to Weights & Biases (needs `pip install wandb`)", group=R,
               target="run", commands=("sample", "eval", "compare", "rl"), server=False),
    OptionSpec("wandb_project", str, WANDB_DEFAULT_PROJECT, "Weights & Biases project", group=R, target="run",
               commands=("sample", "eval", "compare", "rl"), server=False),
    # ------------------------------------------------------------------ rl (GRPO; docs/rl.md)
    *(OptionSpec(name, kind, default, text, group=group, target="run", commands=("rl",), server=False, sweep=False,
                 **extra)
      for name, kind, default, text, group, extra in (
        ("out", str, None, "rl: run folder: metrics.jsonl, checkpoint.pt (resumed automatically), model/ (loads "
         "with --model_name_or_path); required", None, {}),
        ("prompts", str, None, "rl: JSONL file of items with a 'prompt' field (instead of --task)", None, {}),
        ("reward", str, "task", "rl: task (the task's score), code (sandboxed tests in item['tests']) or "
         "package.module:function called as f(item, completion_text) -> float", "rl", {}),
        ("reward_weights", str, "correct", "rl, --reward task: score fields summed into the reward, "
         "NAME[:WEIGHT],... (e.g. correct:1,r_correct:0.5)", "rl", {}),
        ("reward_workers", int, 1, "rl: processes that compute rewards (0: in the trainer's process)", "rl",
         {"range": NONNEG_INT}),
        ("group_size", int, 8, "rl: completions per prompt, G (at least 2)", "rl", {}),
        ("prompts_per_step", int, 16, "rl: prompts per optimiser step (global batch = prompts x group size; a "
         "multiple of the process count)", "rl", {"range": AT_LEAST_1}),
        ("estimator", str, "one_step", "rl: policy log-probability: one_step (diffu-GRPO, one forward) or "
         "trajectory (replays the trace's steps)", "rl", {"choices": ("one_step", "trajectory")}),
        ("p_mask_prompt", float, 0.15, "rl, one_step: probability of masking each prompt token", "rl",
         {"range": Num(lo=0, hi=1, hi_open=True)}),
        ("trajectory_steps", int, None, "rl, trajectory: score this many random steps per completion (default: "
         "all)", "rl", {"range": AT_LEAST_1}),
        ("order_term", bool, None, "rl, trajectory + confidence sampler: add the probability of the chosen "
         "position (default: on when it applies)", "rl", {}),
        ("position_temperature_final", float, None, "rl, --sampler confidence: tau of the exploring draw at the "
         "last step, linear from --position_temperature (default: constant)", "rl", {"range": POS}),
        ("beta", float, 0.02, "rl: KL penalty to the frozen reference (0: no reference model)", "rl",
         {"range": NONNEG}),
        ("kl_order", bool, True, "rl: include the decoding-order term in the KL (false: anchor the written tokens "
         "only, so the order may move)", "rl", {}),
        ("clip_eps", float, 0.2, "rl: GRPO ratio clipping epsilon", "rl", {"range": POS}),
        ("iterations", int, 1, "rl: optimiser steps per batch of rollouts (mu)", "rl", {"range": AT_LEAST_1}),
        ("scale_rewards", bool, True, "rl: divide advantages by the group's reward std (false: Dr. GRPO centring "
         "only)", "rl", {}),
        ("max_steps", int, 100, "rl: optimiser steps (a resumed run continues to this count)", "rl", {}),
        ("lr", float, 1e-5, "rl: AdamW learning rate", "rl", {"range": POS}),
        ("lr_final", float, None, "rl: learning rate at the last step, linear from --lr (default: constant)", "rl",
         {"range": POS}),
        ("leftright_rows", int, 0, "rl: the last K rows of each group are decoded left to right (same seeds, "
         "reward and estimator as the others: off-policy rows that show the policy an order that works)", "rl",
         {"range": NONNEG_INT}),
        ("leftright_order", bool, True, "rl, --leftright_rows: score those rows with the order term as well "
         "(false: by their written tokens alone, so they train what left to right writes, not the order)", "rl",
         {}),
        ("weight_decay", float, 0.0, "rl: AdamW weight decay", "rl", {"range": NONNEG}),
        ("max_grad_norm", float, 1.0, "rl: gradient clipping norm", "rl", {"range": POS}),
        ("micro_batch", int, 64, "rl: completions per forward/backward chunk (memory)", "rl",
         {"range": AT_LEAST_1}),
        ("lora_rank", int, 0, "rl: > 0 trains LoRA adapters of this rank (peft) instead of all weights", "rl",
         {"range": NONNEG_INT}),
        ("lora_alpha", float, 16.0, "rl: LoRA scaling alpha (the update is alpha/rank * B A)", "rl",
         {"range": POS}),
        ("save_every", int, 10, "rl: steps between checkpoints (and at the end)", "rl", {"range": AT_LEAST_1}),
        ("save_dtype", str, None, "rl: dtype of the exported model/ (default: the source's)", "rl",
         {"choices": ("float32", "bfloat16", "float16")}),
        ("overwrite", bool, False, "rl: delete --out first instead of resuming from it", None, {}),
    )),
)

#: ``unmask rl`` decodes its rollouts with the shared decoding rows, so that what is trained is
#: decoded exactly as ``unmask sample`` would decode it (``device``: auto, cpu or cuda, one device
#: per process as accelerate places them); left out are ``dtype`` (rl trains in float32) and the decoders whose kept row is not one draw of the policy
#: (a beam, best-of-N) or that reproduce a reference loop (compat)
_NOT_RL = ("dtype", "beam_size", "best_of", "compat")
OPTIONS = tuple(o if o.commands != DECODING or o.name in _NOT_RL else replace(o, commands=DECODING + ("rl",))
                for o in OPTIONS)

BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}
BY_KEY: dict[str, OptionSpec] = {o.config_key: o for o in OPTIONS if o.config_key is not None}


#: commands no row names that still asked for the shared rows (``add_sampling_flags(p)`` from a
#: module written before the table): they take the rows of the command given here
_LIKE: dict[str, str] = {}


def adopt(command: str, like: str = "sample") -> None:
    """Let ``command`` take the rows of ``like`` (for a command added without rows of its own)."""
    if not any(command in o.commands for o in OPTIONS):
        _LIKE[command] = like


def takes_options(command: str | None) -> bool:
    """Whether ``command`` resolves option-table rows (the run commands, and any command a row
    names, e.g. a new ``t2i`` command whose rows say ``commands=("t2i",)``)."""
    return command in RUN_COMMANDS or command in _LIKE or any(command in o.commands for o in OPTIONS)


def options_for(command: str) -> list[OptionSpec]:
    command = _LIKE.get(command, command)
    return [o for o in OPTIONS if command in o.commands]


def names(target: str) -> tuple[str, ...]:
    """Names of the rows with this target (``generation``, ``sampler``, ``lockstep``, ``run``)."""
    return tuple(o.name for o in OPTIONS if o.target == target)


def ranges() -> dict[str, Num]:
    return {o.name: o.range for o in OPTIONS if o.range is not None}


# --------------------------------------------------------------------------- argparse
def flag_names(name: str) -> list[str]:
    snake = "--" + name.replace("-", "_")
    kebab = "--" + name.replace("_", "-")
    return [snake] if snake == kebab else [snake, kebab]


def add_options(parser: argparse.ArgumentParser, command: str, title: str = "decoding options") -> None:
    """Every row of ``command`` as a flag with ``default=SUPPRESS`` (given = present in the
    namespace); :func:`resolve` fills in the rest."""
    group = parser.add_argument_group(title)
    for o in options_for(command):
        if any(f in parser._option_string_actions for f in flag_names(o.name)):
            continue  # the command declared this flag itself (a plain flag: always "given")
        kind = parse_bool if o.type is bool else o.type
        kw: dict[str, Any] = {"dest": o.name, "default": argparse.SUPPRESS, "help": o.help_text(),
                              "metavar": o.name.upper()}
        if o.type is bool:
            kw.update(nargs="?", const=True)  # --eos_fill alone = True; --eos_fill False
        group.add_argument(*flag_names(o.name), type=kind, **kw)


def add_run_config_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """``--preset`` and ``--config`` (sweep: its YAML is the config); ``key=value`` is in the epilog."""
    g = parser.add_argument_group("presets and config files (precedence: flag > key=value > --config > --preset)")
    g.add_argument("--preset", default=None, metavar="NAME", help="a shipped preset (`unmask presets` lists them)")
    if command != "sweep":
        g.add_argument("--config", dest="config_file", default=None, metavar="FILE.yaml",
                       help="a settings file of the preset shape (docs/options.md)")
    parser.epilog = ((parser.epilog + "\n\n") if parser.epilog else "") + (
        "group.key=value (e.g. generation.steps=8 sampler.name=margin decode.mode=jacobi) overrides one key; "
        "every key is listed in docs/options.md. Precedence: explicit flag > key=value > --config > --preset > "
        "default.")


# --------------------------------------------------------------------------- config keys
def unknown_key(key: str, known: Iterable[str], where: str = "unknown config key") -> UnmaskError:
    known = sorted(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return UnmaskError(f"{where} {key!r}{hint}")


def check_config_keys(flat: Mapping[str, Any]) -> None:
    for key in flat:
        if key not in BY_KEY:
            raise unknown_key(key, BY_KEY)


def convert(o: OptionSpec, value: Any, where: str) -> Any:
    """A config/sweep/request value as the row's type, choices checked."""
    if value is None:
        return None
    try:
        value = o.parse(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise UnmaskError(f"{where}: bad value {value!r} ({e})") from None
    if o.choices is not None and value not in o.choices:
        raise UnmaskError(f"{where}: {value!r} is not one of {', '.join(o.choices)}")
    return value


#: where a resolved value came from, lowest precedence first
SOURCES = ("default", "preset", "config", "override", "flag")


def resolve(args: argparse.Namespace, command: str, layers: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Fill every row of ``command`` on ``args``: explicit flag > override > config > preset >
    default. ``layers`` maps "preset"/"config"/"override" to flat ``{config key: value}``.
    Returns ``{name: source}``. A key the command does not take is an error, except ``eval.*``
    keys (a benchmark preset's eval settings do not concern sample or compare)."""
    for flat in layers.values():
        check_config_keys(flat)
        for key in flat:
            o = BY_KEY[key]
            if _LIKE.get(command, command) not in o.commands and o.group != E:
                raise UnmaskError(f"config key {key!r} does not apply to `unmask {command}`")
    chosen: dict[str, str] = {}
    for o in options_for(command):
        if hasattr(args, o.name):
            chosen[o.name] = "flag"
            continue
        value, src = o.default, "default"
        for source in ("override", "config", "preset"):
            flat = layers.get(source) or {}
            if o.config_key in flat:
                v = flat[o.config_key]
                value = o.default if v is None else convert(o, v, f"config key {o.config_key!r}")
                src = source
                break
        setattr(args, o.name, value)
        chosen[o.name] = src
    # mutually exclusive options: the one from the higher-precedence source wins
    for o in options_for(command):
        for other in o.excludes:
            if other not in chosen or getattr(args, o.name) is None or getattr(args, other) is None:
                continue
            mine, theirs = SOURCES.index(chosen[o.name]), SOURCES.index(chosen[other])
            if mine > theirs:
                setattr(args, other, BY_NAME[other].default)
                chosen[other] = chosen[o.name]
    return chosen


def values(args: argparse.Namespace, target: str) -> dict[str, Any]:
    """The given (not None) values of the rows with ``target``, e.g. the GenerationConfig overrides."""
    return {o.name: getattr(args, o.name) for o in OPTIONS
            if o.target == target and getattr(args, o.name, None) is not None}


def lockstep_options(args: argparse.Namespace, region_flags_alone: bool = False):
    """Lockstep options from parsed flags. Region flags without ``--lockstep`` are an error unless
    ``region_flags_alone`` (compare: its lockstep_* sampler names carry the mode)."""
    from .decoding.lockstep import LockstepOptions, unescape

    kw: dict[str, Any] = {}
    for name in names("lockstep")[1:]:
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if "answer_separator" in kw:
        kw["answer_separator"] = unescape(kw["answer_separator"])
    chosen = getattr(args, "lockstep", None)
    if chosen is None and kw and not region_flags_alone:
        raise UnmaskError(f"{', '.join(f'--{k}' for k in kw)} apply only with --lockstep gauss_seidel|jacobi "
                          "(in compare also with lockstep_gs / lockstep_jacobi samplers)")
    opts = LockstepOptions(mode=chosen, **kw)
    if chosen is None:
        LockstepOptions(mode="gauss_seidel", **kw)  # still validate the values up front
    return opts


def resolved_tree(args: argparse.Namespace, command: str, source: dict[str, Any]) -> dict[str, Any]:
    """The fully resolved settings as a config tree (for result files and ``--json``)."""
    tree: dict[str, Any] = {}
    for o in options_for(command):
        if o.config_key is None:
            continue
        node = tree
        parts = o.config_key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = getattr(args, o.name, None)
    tree["_source"] = source
    return tree


# --------------------------------------------------------------------------- sweep keys
def sweep_key(key: str) -> str:
    """A sweep file key as the option name: ``decode.mode`` -> ``lockstep``, ``steps`` -> ``steps``."""
    o = BY_KEY.get(key)
    return o.name if o is not None and o.sweep else key


def sweep_names() -> set[str]:
    return {o.name for o in OPTIONS if o.sweep} | {o.config_key for o in OPTIONS if o.sweep and o.config_key}


def layer(*mappings: Mapping[str, Any]) -> dict[str, Any]:
    """Merge flat settings, later ones winning; a later option also removes what it ``excludes``
    from the earlier ones (a grid's ``tokens_per_step`` replaces a preset's ``steps``)."""
    out: dict[str, Any] = {}
    for m in mappings:
        for k, v in m.items():
            o = BY_NAME.get(k)
            if o is not None and v is not None:
                for other in o.excludes:
                    if other not in m:  # both in one layer: a real conflict, left to the engine's check
                        out.pop(other, None)
        out.update(m)
    return out


# --------------------------------------------------------------------------- server fields
def server_fields() -> dict[str, type]:
    """JSON type of every request field a row gives the server."""
    return {o.name: o.type for o in OPTIONS if o.server and "serve" in o.commands}


# --------------------------------------------------------------------------- docs
def markdown() -> str:
    """``docs/options.md``: generated from the table (a test checks it is up to date)."""
    out = ["# Options", "",
           "Generated from `src/unmask/options.py` by `python -m unmask.options > docs/options.md`; do not edit.", "",
           "Every option is one row of that table. The same name is the command-line flag (`--name` or `--na-me`), "
           "the sweep-file key, and the `unmask serve` request field; `config key` is its name in presets, "
           "`--config` files and `key=value` overrides.", "",
           "Precedence, highest first: explicit flag > `key=value` override > `--config` file > `--preset` > "
           "default. `steps` and `tokens_per_step` exclude each other: the one from the higher source wins.", "",
           "| option | config key | type | default | range / choices | commands | server | meaning |",
           "|---|---|---|---|---|---|---|---|"]
    for o in OPTIONS:
        rng = o.range.describe() if o.range else (" \\| ".join(o.choices) if o.choices else "")
        out.append(f"| `{o.name}` | {f'`{o.config_key}`' if o.config_key else ''} | {o.type.__name__} | "
                   f"{'' if o.default is None else f'`{o.default}`'} | {rng} | {', '.join(o.commands)} | "
                   f"{'yes' if o.server and 'serve' in o.commands else ''} | {o.help.replace('|', '/')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
