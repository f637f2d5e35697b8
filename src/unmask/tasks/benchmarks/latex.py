"""Final-answer extraction and equivalence for MATH-style LaTeX answers.

Written to avoid the two classic scoring bugs of MATH evaluation scripts: a ``\\boxed{...}`` regex
that stops at the first closing brace (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1``) and lenient
either-direction substring matching (``1`` "equals" ``10``). Here the box content is found by
brace matching, and two answers are equivalent only when

* their normalised strings are identical (normalisation removes presentation-only differences:
  spacing commands, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac``, ``\\text{}`` wrappers, unit
  text, degree and percent signs, dollar signs, ``x =`` prefixes, braces around single-character
  arguments like ``\\frac12`` or ``^{2}``, a trailing period);
* or both are plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, with an optional sign)
  with exactly the same value (so ``0.5`` equals ``\\frac{1}{2}``; no tolerance);
* or both are bare comma-separated lists (no enclosing brackets, i.e. "all solutions" answers)
  whose elements are pairwise equivalent as multisets (``-2,1`` equals ``1,-2``).

Nothing else is tried (no symbolic algebra): a correct answer written in an unusual but
equivalent form may be scored 0, which is the conservative direction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _match_brace(s: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx`` (escaped braces ``\\{`` skipped)."""
    depth = 0
    i = open_idx
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in ``text``,
    with nested braces handled; None when there is none or it is not closed."""
    best = -1
    cmd_len = 0
    for cmd in _BOX_COMMANDS:
        i = text.rfind(cmd)
        if i > best:
            best, cmd_len = i, len(cmd)
    if best < 0:
        return None
    rest_start = best + cmd_len
    j = rest_start
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        end = _match_brace(text, j)
        if end is None:
            return None
        return text[j + 1 : end].strip()
    if j > rest_start:  # "\boxed 5": up to the next space or dollar sign
        m = re.match(r"[^\s$]+", text[j:])
        return m.group(0) if m else None
    return None


def _unwrap_command(s: str, cmd: str, keep: bool = True) -> str:
    """Replace every ``\\cmd{X}`` by ``X`` (or by nothing when ``keep`` is False)."""
    out = []
    i = 0
    while True:
        j = s.find(cmd + "{", i)
        if j < 0:
            out.append(s[i:])
            break
        end = _match_brace(s, j + len(cmd))
        if end is None:
            out.append(s[i:])
            break
        out.append(s[i:j])
        if keep:
            out.append(s[j + len(cmd) + 1 : end])
        i = end + 1
    return "".join(out)


_TEXT_COMMANDS = ("\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox", "\\textnormal", "\\operatorname")


def _drop_units(s: str) -> str:
    """Drop ``\\text{ cm}``-style unit groups (text that starts with a space) and a power after
    them; MATH references write units this way (``15\\mbox{ cm}^2``)."""
    for cmd in ("\\text", "\\mbox", "\\textnormal", "\\mathrm"):
        s = re.sub(re.escape(cmd) + r"\{\s[^{}]*\}(\^\{?\d\}?)?", "", s)
    return s


def normalize(ans: str) -> str:
    """Canonical string of a LaTeX answer (see the module docstring for what is removed)."""
    s = ans.strip()
    s = s.replace("\n", " ")
    s = _drop_units(s)
    for cmd in _TEXT_COMMANDS:
        s = _unwrap_command(s, cmd)
    for tok in ("\\!", "\\,", "\\;", "\\:", "\\ ", "~", "\\displaystyle", "\\quad", "\\qquad"):
        s = s.replace(tok, " ")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("bmatrix", "pmatrix")
    s = re.sub(r"\\left\s*", "", s)
    s = re.sub(r"\\right\s*", "", s)
    s = s.replace("\\bigl", "").replace("\\bigr", "").replace("\\Bigl", "").replace("\\Bigr", "")
    # degrees, percent, currency
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}", "", s)
    s = re.sub(r"\^\s*\\circ", "", s)
    s = s.replace("\\circ", "").replace("°", "")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\s+", "", s)
    # a leading "x=" / "k=" (one variable name)
    m = re.fullmatch(r"[a-zA-Z]=(.+)", s)
    if m and "=" not in m.group(1):
        s = m.group(1)
    s = s.rstrip(".")
    # single-character arguments written without braces: \frac12, \frac1{2}, \sqrt2, ^{2} -> ^2
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]+)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"([\^_])\{(\w)\}", r"\1\2", s)
    # thousands separators in a plain number; a missing leading zero
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"(^|[^\d])\.(\d)", r"\g<1>0.\2", s)
    return s


def to_number(s: str) -> Fraction | None:
    """Exact value of a normalised plain number (``-3``, ``0.25``, ``3/4``, ``\\frac{3}{4}``,
    ``-\\frac{3}{4}``), else None."""
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        den = int(m.group(3))
        if den == 0:
            return None
        v = Fraction(int(m.group(2)), den)
        return -v if m.group(1) else v
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    if m:
        den = int(m.group(2))
        return Fraction(int(m.group(1)), den) if den else None
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return Fraction(s)
    return None


def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside (), [], {}."""
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _atoms_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = to_number(a), to_number(b)
    return x is not None and y is not None and x == y


def _multiset_equal(xs: Sequence[str], ys: Sequence[str]) -> bool:
    if len(xs) != len(ys):
        return False
    remaining = list(ys)
    for x in xs:
        for k, y in enumerate(remaining):
            if _atoms_equal(x, y):
                del remaining[k]
                break
        else:
            return False
    return True


def is_equiv(pred: str | None, gold: str | None) -> bool:
    """Strict equivalence of two final answers (see the module docstring)."""
    if pred is None or gold is None:
        return False
    a, b = normalize(pred), normalize(gold)
    if not a or not b:
        return False
    if _atoms_equal(a, b):
        return True
    pa, pb = _split_top_level(a), _split_top_level(b)
    if len(pa) > 1 and len(pa) == len(pb) and not any(a.startswith(c) for c in "([{") and not any(
        b.startswith(c) for c in "([{"
    ):
        return _multiset_equal(pa, pb)
    return False
