"""Allowed ranges of numbers (:class:`Num`) and the common ones, shared by the option table
(:mod:`unmask.options`) and :mod:`unmask.validation`. Pure data: no imports of the package."""

from __future__ import annotations

from dataclasses import dataclass

#: largest seed torch's generators accept (``manual_seed`` takes unsigned 64-bit values; a few
#: seeds are derived by adding small offsets, so leave headroom)
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Num:
    """An allowed range. ``lo``/``hi`` None = unbounded on that side (but always finite)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: value must be > lo (not >=)
    hi_open: bool = False
    integer: bool = False
    hint: str = ""  # appended to the message, e.g. what the value means

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            left = "(" if self.lo_open else "["
            right = ")" if self.hi_open else "]"
            text = f"in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"
        elif self.lo is not None:
            text = f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        elif self.hi is not None:
            text = f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        else:
            text = "a finite number"
        if self.integer:
            return "an integer" if text == "a finite number" else f"{text} (an integer)"
        return text


def _fmt(v: float) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


POS_INT = Num(lo=0, lo_open=True, integer=True)
AT_LEAST_1 = Num(lo=1, integer=True)  # the same set as POS_INT, worded as counts usually are
NONNEG_INT = Num(lo=0, integer=True)
POS = Num(lo=0, lo_open=True)
NONNEG = Num(lo=0)
UNIT_OPEN_LO = Num(lo=0, hi=1, lo_open=True)  # (0, 1]
UNIT = Num(lo=0, hi=1)  # [0, 1]
FINITE = Num()
