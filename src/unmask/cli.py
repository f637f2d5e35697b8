"""The ``unmask`` command line: ``unmask sample``, ``unmask train``, ``unmask pc-freq``, ...

Every flag accepts both spellings, ``--max_new_tokens`` and ``--max-new-tokens``. Bad input prints
one line (``error: ...``) on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import UnmaskError


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}\n")
        raise SystemExit(2)


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add ``--name`` with both snake_case and kebab-case spellings."""
    snake = "--" + name.replace("-", "_")
    kebab = "--" + name.replace("_", "-")
    names = [snake] if snake == kebab else [snake, kebab]
    parser.add_argument(*names, dest=name.replace("-", "_"), **kwargs)


def parse_bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on", "y", "t"):
        return True
    if v in ("0", "false", "no", "off", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False, got {value!r}")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    add_flag(p, "model_name_or_path", default=None, help="model folder, alias (llada, dream, tiny-sudoku, ...) or hub id")
    add_flag(p, "device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    add_flag(p, "dtype", default="auto", help="float32 | bfloat16 | float16 | auto (as stored)")


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """Every flag that changes decoding; shared by sample, chat, eval and compare."""
    add_flag(p, "sampler", default="confidence",
             help="random, leftright, confidence, margin, entropy, threshold, factor, eb, pc, info_gain, lookum; "
                  "SDAR/TraDo names: sequential, low_confidence_static, low_confidence_dynamic, entropy_bounded")
    add_flag(p, "max_new_tokens", type=int, default=None, help="tokens to generate after the prompt")
    add_flag(p, "steps", type=int, default=None, help="total decoding steps (default: one token per step); SDAR/TraDo: steps per block")
    add_flag(p, "block_size", type=int, default=None, help="semi-autoregressive block length (default: one block; SDAR/TraDo: the model's, 4)")
    add_flag(p, "tokens_per_step", type=int, default=None, help="fixed tokens per step (instead of --steps)")
    add_flag(p, "schedule", default="linear", help="linear (LLaDA), linear_round, dream")
    add_flag(p, "temperature", type=float, default=0.0, help="token temperature (0 = argmax)")
    add_flag(p, "top_p", type=float, default=None)
    add_flag(p, "top_k", type=int, default=None)
    add_flag(p, "threshold", type=float, default=None, help="confidence threshold (threshold sampler; Info-Gain bypass)")
    add_flag(p, "factor", type=float, default=None, help="Fast-dLLM factor rule")
    add_flag(p, "gamma", type=float, default=None, help="EB-sampler entropy budget")
    add_flag(p, "eb_threshold", type=float, default=None, help="entropy_bounded (SDAR) entropy budget (default 0.35)")
    add_flag(p, "pc_lambda", type=float, default=None)
    add_flag(p, "pc_alpha", type=float, default=None)
    add_flag(p, "pc_freq_file", default=None, help="token frequency JSON from `unmask pc-freq`")
    add_flag(p, "variant", default=None, help="Info-Gain objective: info_gain (default) or lookum")
    add_flag(p, "candidate_number", type=int, default=None, help="Info-Gain candidate actions per step (default 8)")
    add_flag(p, "position_temperature", type=float, default=None, help="Info-Gain position temperature (default 0.1)")
    add_flag(p, "bypass", default=None, help="Info-Gain threshold bypass: any (default) or all")
    add_flag(p, "hnext_scope", default=None,
             help="Info-Gain H_next over: auto (default: block with --use_cache dual, else all), all, block, padded")
    add_flag(p, "lookahead_margin", type=float, default=None,
             help="Info-Gain: skip the lookahead when the greedy action's confidence gap is at least this")
    add_flag(p, "cost_reduction", default=None, help="Info-Gain cost C: sum (default) or mean")
    add_flag(p, "beam_size", type=int, default=None, help="beam search over Info-Gain trajectories")
    add_flag(p, "best_of", type=int, default=None, help="N runs, keep the lowest cumulative entropy")
    add_flag(p, "max_lookahead_rows", type=int, default=None, help="split lookahead forwards larger than this")
    add_flag(p, "use_cache", default="none", help="none | prefix | dual (SDAR/TraDo: any value but none = the exact block cache)")
    add_flag(p, "eos_penalty", type=float, default=0.0)
    add_flag(p, "eos_fill", type=parse_bool, default=False, help="fill every mask after a committed EOS with EOS")
    add_flag(p, "seed", type=int, default=0)
    add_flag(p, "compat", default=None,
             help="reproduce a reference loop token for token: llada | fast_dllm | dream, or behaviours "
                  "(mask_softmax, dream_schedule, ...; see docs/samplers.md)")
    add_lockstep_flags(p)


def add_lockstep_flags(p: argparse.ArgumentParser) -> None:
    """Lockstep reasoning/answer decoding (docs/samplers.md, "Lockstep")."""
    add_flag(p, "lockstep", default=None, help="decode a reasoning region R and an answer region A in tandem: "
             "gauss_seidel (commit R, re-run the model, commit A) or jacobi (both from one forward)")
    add_flag(p, "reasoning_tokens", type=int, default=None, help="masks an [R] marker expands to (default 64)")
    add_flag(p, "answer_tokens", type=int, default=None, help="masks an [A] marker expands to (default 16)")
    add_flag(p, "tau_r", type=float, default=None, help="confidence an R position needs to be committed (0.90)")
    add_flag(p, "tau_a", type=float, default=None, help="confidence an A position needs to be committed (0.92)")
    add_flag(p, "max_fill_frac", type=float, default=None,
             help="most of a region's remaining masks committed per step (0.4)")
    add_flag(p, "answer_after", type=float, default=None, help="A commits nothing until this fraction of R is filled")
    add_flag(p, "answer_separator", default=None,
             help="put R and A after the prompt, separated by this fixed text (e.g. '\\nAnswer: ')")


#: modules that add subcommands; each exposes ``register(subparsers)``
SUBCOMMAND_MODULES = (
    "unmask.train.commands",
    "unmask.compare",
    "unmask.eval.commands",
    "unmask.chat.commands",
    "unmask.viz.commands",
    "unmask.serve.commands",
    "unmask.rl.commands",
)

SAMPLER_OPTION_FLAGS = (
    "threshold", "factor", "gamma", "eb_threshold", "pc_lambda", "pc_alpha", "pc_freq_file", "variant", "candidate_number",
    "position_temperature", "bypass", "hnext_scope", "cost_reduction", "lookahead_margin",
)
CONFIG_FLAGS = (
    "max_new_tokens", "steps", "block_size", "tokens_per_step", "schedule", "temperature", "top_p", "top_k",
    "use_cache", "eos_penalty", "eos_fill", "seed", "beam_size", "best_of", "max_lookahead_rows", "compat",
)


def resolve_device(name: str) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UnmaskError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UnmaskError(f"device {name} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UnmaskError(f"device {name} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UnmaskError(f"device {name} requested but MPS is not available; use --device cpu")
    elif dev.type != "cpu":
        raise UnmaskError(f"device {name!r} is not supported; use cpu, cuda, cuda:N, mps or auto")
    return name


def sampler_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in SAMPLER_OPTION_FLAGS if getattr(args, k, None) is not None}


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    from .lockstep_run import options_from_args
    from .session import Session
    from .viz.live import LiveView

    lockstep = options_from_args(args)
    if args.save_trace:
        from .userio import check_output_file

        check_output_file(args.save_trace, "--save_trace")  # before decoding, not after
    session = Session.load(args.model_name_or_path, device=resolve_device(args.device), dtype=args.dtype)
    with LiveView(session, enabled=args.visualize) as view:  # inert unless stdout is a terminal
        result = session.sample(
            prompt=args.prompt,
            chat_template=args.chat_template,
            sampler=args.sampler,
            sampler_options=sampler_options(args),
            overrides={**config_overrides(args), **view.overrides},
            lockstep=lockstep if lockstep.on else None,
        )
    result.extra.setdefault("sampler", args.sampler)
    if lockstep.on:
        result.extra.setdefault("label", f"lockstep {lockstep.mode} · {args.sampler}")
    if args.wandb:
        from .lockstep_run import wandb_log

        row = {"nfe": result.trace.nfe, "tokens_per_second": result.output.tokens_per_second,
               "seconds": result.output.seconds, **result.extra.get("lockstep", {})}
        wandb_log(args.wandb_project, f"sample-{args.sampler}", {"sampler": args.sampler, **lockstep.config()}, [row])
    if args.save_trace:
        session.save_trace(result, args.save_trace)
    if args.json:
        print(json.dumps({**result.to_json(), "config": getattr(args, "resolved_config", None)}))
    else:
        print(result.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unmask", description="Decode and evaluate masked diffusion language models.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("sample", help="generate from a prompt (default: the built-in tiny Sudoku model and puzzle)")
    add_model_flags(p)
    add_flag(p, "prompt", default=None, help="prompt text; the tokenizer's mask token may appear inside it")
    add_flag(p, "chat_template", type=parse_bool, default=None, help="wrap the prompt in the chat template (default: auto)")
    add_sampling_flags(p)
    add_flag(p, "json", action="store_true", help="print one JSON object")
    add_flag(p, "save_trace", default=None, help="write the decoding trace (JSON) here")
    add_flag(p, "visualize", type=parse_bool, nargs="?", const=True, default=False,
             help="redraw the canvas live as it is unmasked (terminal only; plain output otherwise)")
    add_flag(p, "wandb", action="store_true", help="log the figures to Weights & Biases (needs `pip install wandb`)")
    add_flag(p, "wandb_project", default=None)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("pc-freq", help="write the token-frequency file the PC-sampler reads")
    add_model_flags(p)
    add_flag(p, "corpus", required=True, help="text file (one document per line, or JSONL with a 'text' field)")
    add_flag(p, "out", required=True)
    p.set_defaults(func=cmd_pc_freq)

    p = sub.add_parser("presets", help="list the shipped presets (use with --preset NAME on sample/eval/compare)")
    add_flag(p, "json", action="store_true", help="print the presets as JSON")
    p.set_defaults(func=cmd_presets)

    for module in SUBCOMMAND_MODULES:
        if _module_exists(module):
            importlib.import_module(module).register(sub)
    return parser


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is not there
        return False


def cmd_pc_freq(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .models.registry import resolve_model_path
    from .samplers.baselines import write_token_frequencies
    from .tokenizer import load_tokenizer
    from .userio import check_output_file, read_text

    check_output_file(args.out, "--out")
    path = Path(args.corpus)
    corpus = read_text(path, "corpus file")
    tok = load_tokenizer(resolve_model_path(args.model_name_or_path))
    texts = []
    for line in corpus.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                texts.append(str(json.loads(line).get("text", "")))
                continue
            except json.JSONDecodeError:
                pass
        texts.append(line)
    data = write_token_frequencies(texts, tok, args.out)
    print(f"wrote {args.out}: {len(data['token_frequency'])} distinct tokens, {data['num_tokens']} tokens")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .config import preset_table

    rows = preset_table()
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print(f"{r['name']:18s} {r['description']}")
        print(" " * 19 + " ".join(f"{k}={v}" for k, v in r["settings"].items()))
    return 0


def _take_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``--name VALUE`` / ``--name=VALUE`` from argv; returns (rest, value)."""
    rest, value, i = [], None, 0
    while i < len(argv):
        tok = argv[i]
        if tok == f"--{name}":
            if i + 1 >= len(argv):
                raise UnmaskError(f"--{name} needs a value")
            value = argv[i + 1]
            i += 2
            continue
        if tok.startswith(f"--{name}="):
            value = tok.split("=", 1)[1]
        else:
            rest.append(tok)
        i += 1
    return rest, value


def _run_config(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, Any] | None]:
    """For the run commands: take --preset, --config (not sweep's positional) and key=value
    overrides out of argv; returns the remaining argv and what to apply after parsing."""
    from .config import RUN_COMMANDS, split_overrides

    if not argv or argv[0] not in RUN_COMMANDS:
        return argv, None
    argv, preset = _take_option(argv, "preset")
    config_file = None
    if argv[0] != "sweep":
        argv, config_file = _take_option(argv, "config")
    argv, overrides = split_overrides(argv, parser)
    return argv, {"preset": preset, "config_file": config_file, "overrides": overrides}


def normalize_flags(argv: Sequence[str]) -> list[str]:
    """``--kebab-case`` -> ``--snake_case`` for every flag of every subcommand (values untouched)."""
    out = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            tok = "--" + name.replace("-", "_") + eq + value
        out.append(tok)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = normalize_flags(sys.argv[1:] if argv is None else argv)
    try:
        raw, run_cfg = _run_config(raw, parser)
    except UnmaskError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    args = parser.parse_args(raw)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        if run_cfg is not None:
            from . import config as run_config

            if args.command == "sweep":  # the sweep YAML holds the grid: layer preset < YAML < overrides
                args.run_config = {
                    "preset_tree": run_config.merged_tree(run_cfg["preset"], None, []),
                    "override_tree": run_config.merged_tree(None, None, run_cfg["overrides"]),
                    "source": {"preset": run_cfg["preset"], "overrides": run_cfg["overrides"]},
                }
            else:
                tree = run_config.merged_tree(run_cfg["preset"], run_cfg["config_file"], run_cfg["overrides"])
                run_config.apply(args, parser, raw, tree)
                args.resolved_config = run_config.resolved(args, run_cfg["preset"], run_cfg["config_file"],
                                                           run_cfg["overrides"])
        check_arguments(args)
        return int(args.func(args) or 0)
    except UnmaskError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except OSError as e:  # an I/O failure no check anticipated: still the user's to fix
        from .userio import os_error_line

        sys.stderr.write(f"error: {os_error_line(e)}\n")
        return 2
    except UnicodeError as e:
        sys.stderr.write(f"error: {UnmaskError(f'text is not valid UTF-8 ({e.reason})')}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def check_arguments(args: argparse.Namespace) -> None:
    """The boundary rule for every subcommand at once: each numeric flag is finite and in its
    range (see :mod:`unmask.validation`), each text flag is valid UTF-8 without NUL bytes."""
    from .validation import check_option, check_utf8

    for name, value in vars(args).items():
        if value is None or name in ("func", "command"):
            continue
        if isinstance(value, str):
            check_utf8(f"--{name}", value)
        elif isinstance(value, list) and name != "lm_eval_args":
            for v in value:
                if isinstance(v, str):
                    check_utf8(f"--{name}", v)
        else:
            setattr(args, name, check_option(name, value, f"--{name}"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
