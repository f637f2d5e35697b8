"""An LLM judge for the ``writing`` task that position and format cannot fool.

The Info-Gain reference scores stories only with an LLM judge (gpt-4o by default) through an
OpenAI-compatible API: pairwise A/B/tie in one order, or a 1-10 rubric. A one-order pairwise
judge is biased by position (judges prefer one slot), and its parser turns an answer it cannot
read into a tie. Here:

* **Both orders.** Every pair is judged with this run's story as A and again as B. A pair scores
  1 / 0.5 / 0 per order (win / tie / loss for this run) and the mean of its two orders; the win
  rate is the mean over pairs whose two verdicts both parsed, with a 95% percentile-bootstrap
  interval over prompts (2000 resamples, fixed seed). Position-consistency is the share of those
  pairs whose outcome survives the swap; the share of decisive verdicts that named slot A shows
  the judge's position bias directly.
* **Strict parsing.** Pairwise: the answer's last non-empty line must be ``Verdict: A``,
  ``Verdict: B`` or ``Verdict: tie`` (case and surrounding ``*``/brackets aside). Rubric: the
  answer must hold exactly one JSON object with integer scores 1-10 for all six criteria.
  Anything else is ``unparsed``: counted, reported, stored with its raw text, never a tie or a
  score. A judge that answers garbage yields all-unparsed and no win rate, not 50%.
* **Transport.** The official ``openai`` client against ``--judge_base_url``; the key comes from
  the environment variable ``--judge_api_key_env`` (default ``OPENAI_API_KEY``) and is never
  written anywhere. The client retries 408/409/429/5xx and connection errors with exponential
  backoff (honouring ``Retry-After``) up to ``--judge_retries`` times, each call bounded by
  ``--judge_timeout``; at most ``--judge_concurrency`` requests are in flight.
* **Resumable.** Every answer is appended (one fsynced JSONL line: request, raw answer, parse)
  to ``RUN_DIR/judge/<mode>__<judge model>[__vs_<other run>].jsonl`` as it arrives, keyed by
  the judgment's content; a killed or failed run re-asks only what the file lacks. A request that
  still fails after its retries stops the run with one error line (exit 2), keeping what was
  answered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnmaskError
from .results import atomic_write_json, read_records, repair_tail

#: bump when a prompt template or the parse rules change (part of every judgment's key)
PROTOCOL_VERSION = "1"
CRITERIA = ("creativity", "coherence", "engagement", "writing_quality", "prompt_adherence", "overall")

PAIRWISE_TEMPLATE = """You are comparing two short stories that were written for the same writing prompt.

Writing prompt:
{prompt}

Story A:
{a}

Story B:
{b}

Judge them on creativity and originality, coherence and structure, how engaging they are, the quality of the prose, and how well they follow the prompt. Which story is better overall? The order in which the stories appear says nothing about their quality.

Give a short justification. Then finish with a final line of exactly this form, where X is A, B or tie:
Verdict: X"""

SINGLE_TEMPLATE = """You are rating a short story that was written for a writing prompt.

Writing prompt:
{prompt}

Story:
{story}

Score the story from 1 (very poor) to 10 (excellent) on each of: creativity (originality, imagination), coherence (structure, narrative flow), engagement (how compelling it is to read), writing_quality (prose, vocabulary, grammar, style), prompt_adherence (how well it follows the prompt), and overall.

Answer with a single JSON object and nothing else, with integer scores, for example:
{{"creativity": 6, "coherence": 7, "engagement": 5, "writing_quality": 6, "prompt_adherence": 8, "overall": 6, "explanation": "one or two sentences"}}"""

_VERDICT = re.compile(r"^verdict\s*:\s*\[?\s*(a|b|tie)\s*\]?\s*\.?$", re.IGNORECASE)


# --------------------------------------------------------------------------- parsing
def parse_pairwise(answer: str | None) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` when the last non-empty line is a verdict line, else None."""
    if not answer:
        return None
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    m = _VERDICT.match(lines[-1].strip("*_` \t"))
    if m is None:
        return None
    v = m.group(1).lower()
    return "tie" if v == "tie" else v.upper()


def parse_single(answer: str | None) -> dict[str, int] | None:
    """The six integer scores when the answer is exactly one JSON object (a code fence around it
    is allowed) with every criterion an integer in 1..10; else None."""
    if not answer:
        return None
    text = answer.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fence:
        text = fence.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    scores = {}
    for c in CRITERIA:
        v = obj.get(c)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
            return None
        if not 1 <= int(v) <= 10:
            return None
        scores[c] = int(v)
    return scores


# --------------------------------------------------------------------------- statistics
def bootstrap_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean (None for no values)."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[min(resamples - 1, int(math.ceil(0.975 * resamples)) - 1)]


def _outcome(verdict: str | None, this_slot: str) -> float | None:
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    return 1.0 if verdict == this_slot else 0.0


def pairwise_summary(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    """Win rate (ties half) of this run, its interval, position-consistency and the counts."""
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    for j in judgments:
        by_id.setdefault(j["id"], {})[j["order"]] = j
    pair_scores, consistent, incomplete = [], 0, 0
    slot_a = decisive = 0
    for orders in by_id.values():
        for j in orders.values():
            if j["verdict"] in ("A", "B"):
                decisive += 1
                slot_a += j["verdict"] == "A"
        ab = _outcome(orders.get("AB", {}).get("verdict"), "A")  # this run in slot A
        ba = _outcome(orders.get("BA", {}).get("verdict"), "B")  # this run in slot B
        if ab is None or ba is None:
            incomplete += 1
            continue
        pair_scores.append((ab + ba) / 2)
        consistent += ab == ba
    n = len(pair_scores)
    return {
        "mode": "pairwise",
        "pairs": len(by_id),
        "pairs_scored": n,
        "pairs_unparsed": incomplete,
        "judgments": len(judgments),
        "unparsed": sum(1 for j in judgments if j["verdict"] is None),
        "win_rate": sum(pair_scores) / n if n else None,
        "win_rate_ci95": bootstrap_ci(pair_scores),
        "position_consistency": consistent / n if n else None,
        "slot_a_share": slot_a / decisive if decisive else None,
        "wins": sum(1 for s in pair_scores if s > 0.5),
        "ties": sum(1 for s in pair_scores if s == 0.5),
        "losses": sum(1 for s in pair_scores if s < 0.5),
    }


def single_summary(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    parsed = [j["scores"] for j in judgments if j.get("scores")]
    per = {}
    for c in CRITERIA:
        vals = [float(s[c]) for s in parsed]
        per[c] = {"mean": sum(vals) / len(vals) if vals else None, "ci95": bootstrap_ci(vals)}
    return {"mode": "single", "judgments": len(judgments), "scored": len(parsed),
            "unparsed": len(judgments) - len(parsed), "criteria": per}


def format_summary(s: dict[str, Any]) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    if s["mode"] == "pairwise":
        ci = s["win_rate_ci95"]
        ci_s = "" if ci is None else f" (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
        return (f"judge pairwise vs {s.get('other_run', '?')}: win rate {pct(s['win_rate'])}{ci_s} over "
                f"{s['pairs_scored']}/{s['pairs']} pairs (both orders)  W/T/L {s['wins']}/{s['ties']}/{s['losses']}  "
                f"position-consistency {pct(s['position_consistency'])}  slot-A share {pct(s['slot_a_share'])}  "
                f"unparsed {s['unparsed']}/{s['judgments']}")
    parts = []
    for c, v in s["criteria"].items():
        if v["mean"] is None:
            parts.append(f"{c} n/a")
        else:
            parts.append(f"{c} {v['mean']:.2f} ({v['ci95'][0]:.2f}-{v['ci95'][1]:.2f})")
    return f"judge single: scored {s['scored']}/{s['judgments']}  unparsed {s['unparsed']}  " + "  ".join(parts)


# --------------------------------------------------------------------------- runs and judgments
@dataclass
class JudgeSettings:
    base_url: str
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 120.0
    retries: int = 4
    max_tokens: int = 1024

    def public(self) -> dict[str, Any]:
        """What results record about the judge (never the key)."""
        return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "max_tokens": self.max_tokens, "temperature": 0.0, "protocol": PROTOCOL_VERSION}


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A finished writing run's config and its records by sample id."""
    from .results import RecordStore

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UnmaskError(f"{run_dir} is not an eval run folder (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
        key = cfg["run_key"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise UnmaskError(f"{cfg_path} is not a run config ({e})") from None
    if cfg.get("task") != "writing":
        raise UnmaskError(f"{run_dir} is a {cfg.get('task')!r} run; the LLM judge scores writing runs only")
    recs = RecordStore(run_dir).load(key)
    if not recs:
        raise UnmaskError(f"{run_dir} has no finished samples to judge")
    return cfg, recs


def _tag(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")[:60] or "judge"


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def build_requests(mode: str, recs: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]] | None,
                   model: str) -> list[dict[str, Any]]:
    """Every judgment the protocol needs, in sample order: pairwise both orders per common id."""
    out = []
    ids = sorted(recs, key=lambda i: recs[i].get("index", 0))
    for sid in ids:
        r = recs[sid]
        prompt = str(r.get("reference") or "")
        story = str(r.get("output") or "")
        if mode == "single":
            text = SINGLE_TEMPLATE.format(prompt=prompt, story=story)
            out.append({"key": _key(PROTOCOL_VERSION, mode, model, sid, text), "id": sid, "order": "single",
                        "messages": [{"role": "user", "content": text}]})
            continue
        assert other is not None
        if sid not in other:
            continue
        if str(other[sid].get("reference") or "") != prompt:
            raise UnmaskError(f"sample {sid}: the two runs were given different prompts; compare runs of the same data")
        theirs = str(other[sid].get("output") or "")
        for order, (a, b) in (("AB", (story, theirs)), ("BA", (theirs, story))):
            text = PAIRWISE_TEMPLATE.format(prompt=prompt, a=a, b=b)
            out.append({"key": _key(PROTOCOL_VERSION, mode, model, sid, order, text), "id": sid, "order": order,
                        "messages": [{"role": "user", "content": text}]})
    return out


def _client(settings: JudgeSettings):
    try:
        import openai
    except ImportError:
        raise UnmaskError("the LLM judge needs the openai client: pip install 'unmask[judge]'") from None
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise UnmaskError(f"the judge's API key is read from ${settings.api_key_env}, which is not set "
                          "(any non-empty value for a local server without keys)")
    return openai.OpenAI(base_url=settings.base_url, api_key=key, timeout=settings.timeout,
                         max_retries=settings.retries)


def _ask(client, settings: JudgeSettings, req: dict[str, Any]) -> dict[str, Any]:
    import openai

    t0 = time.perf_counter()
    try:
        r = client.chat.completions.create(model=settings.model, messages=req["messages"], temperature=0.0,
                                           max_tokens=settings.max_tokens)
    except openai.APIConnectionError as e:  # includes timeouts, after the client's retries
        what = "timed out" if isinstance(e, openai.APITimeoutError) else f"is unreachable ({e.__cause__ or e})"
        raise UnmaskError(f"the judge at {settings.base_url} {what} after {settings.retries} retries") from None
    except openai.APIStatusError as e:
        raise UnmaskError(f"the judge at {settings.base_url} answered HTTP {e.status_code}: "
                          f"{str(e.message)[:300]}") from None
    choice = r.choices[0] if r.choices else None
    raw = (choice.message.content if choice is not None else None) or ""
    return {"raw": raw, "finish_reason": getattr(choice, "finish_reason", None),
            "seconds": time.perf_counter() - t0}


def judge_run(run_dir: str | Path, settings: JudgeSettings, compare_to: str | Path | None = None,
              mode: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Judge a writing run (single mode, or pairwise against ``compare_to``); returns the summary
    (also written next to the judgments)."""
    mode = mode or ("pairwise" if compare_to else "single")
    if mode not in ("single", "pairwise"):
        raise UnmaskError(f"--judge_mode must be single or pairwise, got {mode!r}")
    if mode == "pairwise" and not compare_to:
        raise UnmaskError("pairwise judging needs --compare_to RUN_DIR (the run to compare against)")
    if mode == "single" and compare_to:
        raise UnmaskError("--compare_to judges pairs; drop --judge_mode single")
    cfg, recs = load_run(run_dir)
    other = other_cfg = None
    if compare_to:
        other_cfg, other = load_run(compare_to)
        if other_cfg["run_key"] == cfg["run_key"]:
            raise UnmaskError("--compare_to names the same run; compare two different runs")
    requests = build_requests(mode, recs, other, settings.model)
    if not requests:
        raise UnmaskError(f"{run_dir} and {compare_to} have no sample in common to compare")
    client = _client(settings)

    out_dir = Path(run_dir) / "judge"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{mode}__{_tag(settings.model)}" + (f"__vs_{other_cfg['run_key'][:12]}" if other_cfg else "")
    path = out_dir / f"{name}.jsonl"
    repair_tail(path)
    done = {r["key"]: r for r in read_records(path)[0] if "key" in r}
    todo = [q for q in requests if q["key"] not in done]
    asked = 0
    if todo:
        with open(path, "ab") as fh, ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            futures: dict[Future, dict[str, Any]] = {pool.submit(_ask, client, settings, q): q for q in todo}
            pending = set(futures)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        answer = f.result()  # raises the first failure (UnmaskError)
                        q = futures[f]
                        rec = {**q, **answer, "judge_model": settings.model}
                        if mode == "single":
                            rec["scores"] = parse_single(answer["raw"])
                        else:
                            rec["verdict"] = parse_pairwise(answer["raw"])
                        fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode())
                        fh.flush()
                        os.fsync(fh.fileno())
                        done[q["key"]] = rec
                        asked += 1
                        if progress:
                            print(f"\rjudged {len(done)}/{len(requests)}", end="", flush=True)
            finally:
                for f in pending:
                    f.cancel()
                if progress:
                    print()
    judgments = [done[q["key"]] for q in requests]
    summary = pairwise_summary(judgments) if mode == "pairwise" else single_summary(judgments)
    summary.update({"run_dir": str(run_dir), "run_key": cfg["run_key"], "asked": asked,
                    "judgments_file": str(path), "judge": settings.public()})
    if other_cfg is not None:
        summary.update({"other_run": str(compare_to), "other_run_key": other_cfg["run_key"],
                        "other_sampler": other_cfg.get("sampler")})
    atomic_write_json(out_dir / f"{name}.summary.json", summary)
    return summary


# --------------------------------------------------------------------------- command line
def add_judge_flags(p: argparse.ArgumentParser) -> None:
    from ..cli import add_flag

    add_flag(p, "judge_base_url", default=None, help="OpenAI-compatible endpoint of the LLM judge (writing task), "
             "e.g. https://api.openai.com/v1")
    add_flag(p, "judge_model", default="gpt-4o", help="the judge model's name at that endpoint")
    add_flag(p, "judge_api_key_env", default="OPENAI_API_KEY", help="environment variable holding the judge's key")
    add_flag(p, "judge_mode", default=None, help="single (1-10 rubric) or pairwise (default: pairwise with --compare_to)")
    add_flag(p, "compare_to", default=None, help="run folder to judge this run against, in both orders")
    add_flag(p, "judge_concurrency", type=int, default=4, help="judge requests in flight at most")
    add_flag(p, "judge_timeout", type=float, default=120.0, help="seconds per judge request")
    add_flag(p, "judge_retries", type=int, default=4, help="retries with backoff on 429/5xx/connection errors")
    add_flag(p, "judge_max_tokens", type=int, default=1024, help="answer budget per judgment")


def settings_from_args(args: argparse.Namespace) -> JudgeSettings:
    from ..validation import check_option

    for name in ("judge_concurrency", "judge_timeout", "judge_retries", "judge_max_tokens"):
        check_option(name, getattr(args, name), f"--{name}")
    return JudgeSettings(base_url=args.judge_base_url, model=args.judge_model, api_key_env=args.judge_api_key_env,
                         concurrency=args.judge_concurrency, timeout=args.judge_timeout, retries=args.judge_retries,
                         max_tokens=args.judge_max_tokens)


def _metrics_for(run_dir: str | Path) -> dict[str, Any]:
    from .writing_metrics import writing_metrics

    cfg, recs = load_run(run_dir)
    m = writing_metrics(list(recs.values()), (cfg.get("generation") or {}).get("max_new_tokens"))
    atomic_write_json(Path(run_dir) / "writing_metrics.json", m)
    return m


def after_eval(args: argparse.Namespace, summary: dict[str, Any]) -> str | None:
    """``unmask eval`` hook: for a writing run, add the judge-free metrics (and the judge's
    summary when ``--judge_base_url`` is given) to ``summary``; returns their text lines."""
    if getattr(args, "judge_base_url", None) is None and (getattr(args, "compare_to", None)
                                                         or getattr(args, "judge_mode", None)):
        raise UnmaskError("--compare_to/--judge_mode need --judge_base_url (the judge's endpoint)")
    if summary.get("task") != "writing" or "run_dir" not in summary:
        if getattr(args, "judge_base_url", None):
            raise UnmaskError("the LLM judge scores the writing task only (--task writing)")
        return None
    from .writing_metrics import format_metrics

    summary["writing_metrics"] = _metrics_for(summary["run_dir"])
    lines = [format_metrics(summary["writing_metrics"])]
    if args.judge_base_url:
        summary["judge"] = judge_run(summary["run_dir"], settings_from_args(args), args.compare_to,
                                     args.judge_mode, progress=not args.json)
        lines.append(format_summary(summary["judge"]))
    return "\n".join(lines)


def cmd_judge(args: argparse.Namespace) -> int:
    from .writing_metrics import format_metrics

    if not args.judge_base_url and (args.compare_to or args.judge_mode):
        raise UnmaskError("--compare_to/--judge_mode need --judge_base_url (the judge's endpoint)")
    settings = settings_from_args(args) if args.judge_base_url else None  # bad numbers before any work
    metrics = _metrics_for(args.run_dir)
    judged = None
    if settings is not None:
        judged = judge_run(args.run_dir, settings, args.compare_to, args.judge_mode, progress=not args.json)
    if args.json:
        print(json.dumps({"writing_metrics": metrics, **({"judge": judged} if judged else {})}))
    else:
        print(format_metrics(metrics))
        if judged:
            print(format_summary(judged))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_flag

    p = sub.add_parser("judge", help="judge-free metrics and the LLM judge for a finished writing run")
    p.add_argument("run_dir", help="run folder written by `unmask eval --task writing`")
    add_judge_flags(p)
    add_flag(p, "json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=cmd_judge)
