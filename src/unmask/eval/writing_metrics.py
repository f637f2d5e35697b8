"""Judge-free figures of a writing run: what can be measured about a set of stories without
asking a model. They sit beside the LLM judge because a judge can be fooled (or be garbage) and
these cannot: a sampler that loops on one phrase shows it in repetition and distinct-n whatever
the judge says.

* distinct-n (n = 1, 2, 3): distinct word n-grams / all word n-grams over all of the run's
  stories together (Li et al., 2016);
* self-BLEU: the mean sentence BLEU (sacrebleu, 0-100) of each story against all the others as
  references (Zhu et al., 2018): high when the stories resemble each other;
* repetition: mean share of a story's word trigrams that repeat an earlier one of that story;
* words: mean story length in words; no_eos: share of rows that filled the whole canvas
  (``max_new_tokens``) without an end-of-text token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tasks.benchmarks.writing import repetition_rate, words


def distinct_n(texts: Sequence[list[str]], n: int) -> float:
    grams = [tuple(t[i : i + n]) for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean BLEU of each text against all the others; None without sacrebleu or with < 2 texts.

    Equal to averaging sacrebleu's ``BLEU(effective_order=True).sentence_score(t, others)`` (a
    test checks it), but each text is tokenized and counted once: the clipped count of an n-gram
    against "all the others" is the largest count among the other texts, which the largest and
    second-largest count over all texts give directly. sacrebleu's own loop re-reads the 199
    references of every story, minutes for 200 stories."""
    try:
        from sacrebleu.metrics import BLEU
        from sacrebleu.metrics.helpers import extract_all_word_ngrams
    except ImportError:
        return None
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        return None
    bleu = BLEU(effective_order=True)
    grams, lens = [], []
    for t in texts:
        counts, length = extract_all_word_ngrams(bleu.tokenizer(t.rstrip()), 1, bleu.max_ngram_order)
        grams.append(counts)
        lens.append(length)
    top: dict[tuple, tuple[int, int, int]] = {}  # n-gram -> (largest count, its text, second largest)
    for i, counts in enumerate(grams):
        for g, k in counts.items():
            t = top.get(g)
            if t is None:
                top[g] = (k, i, 0)
            elif k > t[0]:
                top[g] = (k, i, t[0])
            elif k > t[2]:
                top[g] = (t[0], t[1], k)
    scores = []
    for i, counts in enumerate(grams):
        correct = [0] * bleu.max_ngram_order
        total = [0] * bleu.max_ngram_order
        for g, k in counts.items():
            n = len(g) - 1
            total[n] += k
            c1, owner, c2 = top[g]
            correct[n] += min(k, c2 if owner == i else c1)
        ref_len = bleu._get_closest_ref_len(lens[i], lens[:i] + lens[i + 1 :])
        scores.append(BLEU.compute_bleu(correct, total, lens[i], ref_len, smooth_method=bleu.smooth_method,
                                        smooth_value=bleu.smooth_value, effective_order=True,
                                        max_ngram_order=bleu.max_ngram_order).score)
    return sum(scores) / len(scores)


def writing_metrics(records: Sequence[dict[str, Any]], max_new_tokens: int | None) -> dict[str, Any]:
    """The figures above for one run's records (fields ``output`` and ``generated_tokens``)."""
    stories = [str(r.get("output") or "") for r in records]
    toks = [[w for w in words(s) if w[0].isalnum()] for s in stories]
    n = len(stories)
    no_eos = None
    if max_new_tokens:
        no_eos = sum(1 for r in records if int(r.get("generated_tokens", 0)) >= max_new_tokens) / n if n else 0.0
    sb = self_bleu(stories)
    return {
        "n": n,
        "distinct_1": distinct_n(toks, 1),
        "distinct_2": distinct_n(toks, 2),
        "distinct_3": distinct_n(toks, 3),
        "self_bleu": sb,
        "repetition": sum(repetition_rate(t) for t in toks) / n if n else 0.0,
        "words": sum(len(t) for t in toks) / n if n else 0.0,
        "no_eos": no_eos,
        "empty": sum(1 for s in stories if not s.strip()),
    }


def format_metrics(m: dict[str, Any]) -> str:
    sb = "n/a (pip install sacrebleu)" if m["self_bleu"] is None else f"{m['self_bleu']:.2f}"
    no_eos = "n/a" if m["no_eos"] is None else f"{100 * m['no_eos']:.1f}%"
    return (f"writing metrics (n={m['n']}): distinct-1/2/3 {m['distinct_1']:.3f}/{m['distinct_2']:.3f}/"
            f"{m['distinct_3']:.3f}  self-BLEU {sb}  repetition {m['repetition']:.3f}  words {m['words']:.1f}  "
            f"no EOS {no_eos}  empty {m['empty']}")
