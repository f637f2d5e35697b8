"""The ``unmask`` command line: ``unmask sample``, ``unmask train``, ``unmask pc-freq``, ...

Every flag accepts both spellings, ``--max_new_tokens`` and ``--max-new-tokens``. Bad input prints
one line (``error: ...``) on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import UnmaskError
from .options import (
    BY_NAME,
    add_options,
    add_run_config_flags,
    adopt,
    flag_names,
    names,
    parse_bool,
    resolve,
    resolved_tree,
    takes_options,
    values,
)

__all__ = ["add_flag", "add_sampling_flags", "config_overrides", "main", "parse_bool", "resolve_device",
           "sampler_options"]


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each flag's default (``[default: 200]``) unless it is None/False or already in the
    help, and keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "[default:" in text or d in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} [default: {d}]"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent)
                         for p in text.splitlines())


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line, exit status 2, and shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}\n")
        raise SystemExit(2)


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add ``--name`` with both snake_case and kebab-case spellings (a command's own flag; the
    shared run settings are rows of :mod:`unmask.options`)."""
    parser.add_argument(*flag_names(name), dest=name.replace("-", "_"), **kwargs)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Model flags for commands without the run settings (pc-freq)."""
    add_flag(p, "model_name_or_path", default=None, help=BY_NAME["model_name_or_path"].help)


def add_sampling_flags(p: argparse.ArgumentParser, command: str | None = None) -> None:
    """The option table's rows for ``command`` (model, sampler, decoding, lockstep, run settings),
    plus ``--preset``/``--config``; every run command calls this once. Without ``command`` the
    parser's own name is used, and a command no row names takes the rows of ``sample``."""
    command = command or p.prog.rsplit(" ", 1)[-1]
    adopt(command)
    add_options(p, command)
    if not any(a.dest == "preset" for a in p._actions):
        add_run_config_flags(p, command)


#: modules that add subcommands; each exposes ``register(subparsers)``
SUBCOMMAND_MODULES = (
    "unmask.train.commands",
    "unmask.compare",
    "unmask.eval.commands",
    "unmask.chat.commands",
    "unmask.viz.commands",
    "unmask.serve.commands",
    "unmask.eval.writing_judge",
    "unmask.multimodal.commands",
    "unmask.eval.image_metrics",
    "unmask.rl.commands",
)

#: derived from the option table (kept for the server and older callers)
SAMPLER_OPTION_FLAGS = names("sampler")
CONFIG_FLAGS = names("generation")


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
    return values(args, "sampler")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return values(args, "generation")


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    from .options import lockstep_options
    from .session import Session
    from .viz.live import LiveView

    lockstep = lockstep_options(args)
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
        from .tracking import log_rows

        row = {"nfe": result.trace.nfe, "tokens_per_second": result.output.tokens_per_second,
               "seconds": result.output.seconds, **result.extra.get("lockstep", {})}
        log_rows(args.wandb_project, f"sample-{args.sampler}", {"sampler": args.sampler, **lockstep.config()}, [row])
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
    add_flag(p, "prompt", default=None, help="prompt text; the tokenizer's mask token may appear inside it")
    add_flag(p, "json", action="store_true", help="print one JSON object")
    add_flag(p, "save_trace", default=None, help="write the decoding trace (JSON) here")
    add_flag(p, "visualize", type=parse_bool, nargs="?", const=True, default=False,
             help="redraw the canvas live as it is unmasked (terminal only; plain output otherwise)")
    add_sampling_flags(p, "sample")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("pc-freq", help="write the token-frequency file the PC-sampler reads")
    add_model_flags(p)
    add_flag(p, "corpus", required=True, help="text file (one document per line, or JSONL with a 'text' field)")
    add_flag(p, "out", required=True)
    p.set_defaults(func=cmd_pc_freq)

    p = sub.add_parser("presets", help="list the shipped presets (use with --preset NAME on sample, chat, eval, compare, serve, sweep)")
    add_flag(p, "json", action="store_true", help="print the presets as JSON")
    p.set_defaults(func=cmd_presets)

    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


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


def _split_run_overrides(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """For the run commands: take the ``group.key=value`` overrides out of argv."""
    from .config import split_overrides

    if not argv or not takes_options(argv[0]):
        return argv, []
    return split_overrides(argv, parser)


def apply_run_config(args: argparse.Namespace, overrides: list[str]) -> None:
    """Resolve every option-table row of the command (flag > key=value > --config > --preset >
    default) and record the result on ``args.resolved_config``; sweep keeps the layers for its
    YAML to sit between them."""
    from . import config as run_config

    preset, config_file = getattr(args, "preset", None), getattr(args, "config_file", None)
    layers = run_config.layers(preset, config_file, overrides)
    source = {"preset": preset, "config": config_file, "overrides": list(overrides)}
    if args.command == "sweep":
        args.run_config = {"preset_tree": layers.get("preset"), "override_tree": layers.get("override"),
                           "source": {"preset": preset, "overrides": list(overrides)}}
        return
    args.option_sources = resolve(args, args.command, layers)
    args.resolved_config = resolved_tree(args, args.command, source)


def normalize_flags(argv: Sequence[str]) -> list[str]:
    """``--kebab-case`` -> ``--snake_case`` for every flag of every subcommand (values untouched)."""
    out = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            tok = "--" + name.replace("-", "_") + eq + value
        out.append(tok)
    return out


def parse_args(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """argv -> the command's arguments with every option resolved and checked (what a command
    runs with; the tests read the resolution from here)."""
    parser = parser or build_parser()
    raw, overrides = _split_run_overrides(normalize_flags(argv), parser)
    args = parser.parse_args(raw)
    if takes_options(args.command):
        apply_run_config(args, overrides)
    check_arguments(args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 2
    try:
        args = parse_args(argv, parser)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UnmaskError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except BrokenPipeError:
        # the reader went away (``unmask sweep --dry_run | head``): end quietly, like a C tool
        # killed by SIGPIPE; point stdout at /dev/null so the interpreter's final flush is silent
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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
