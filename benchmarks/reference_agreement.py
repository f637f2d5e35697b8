"""Agreement of unmask with the reference implementations, per fixture setting.

Replays every fixture in tests/fixtures/reference/ (see benchmarks/record_reference_fixtures.py)
in unmask's default mode and in the matching ``--compat`` mode and prints one markdown row per
(reference loop, checkpoint, setting): how many prompts agree token for token, k/N. Cases where
the reference itself crashed or looped are counted separately (no output to compare).

    PYTHONPATH=src OMP_NUM_THREADS=1 python3 benchmarks/reference_agreement.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from refcheck import FAMILIES, family_of, fixture_files, replay  # noqa: E402


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="unmask-ref-"))
    print("| reference loop | checkpoint | setting | default | compat | reference failed |")
    print("|---|---|---|---|---|---|")
    totals = {"default": [0, 0], "compat": [0, 0]}
    for path in fixture_files():
        fam = family_of(path)
        mode = FAMILIES[fam][0]
        default = replay(path, None, root)
        compat = replay(path, mode, root)
        for d, c in zip(default, compat):
            setting = " ".join(f"{k}={v}" for k, v in json.loads(d.setting).items())
            print(f"| {fam} | {d.checkpoint} | {setting} | {d.agree}/{d.total} | {c.agree}/{c.total} (`{mode}`) "
                  f"| {d.reference_failed} |")
            totals["default"][0] += d.agree
            totals["default"][1] += d.total
            totals["compat"][0] += c.agree
            totals["compat"][1] += c.total
    print(f"\ntotal: default {totals['default'][0]}/{totals['default'][1]}, "
          f"compat {totals['compat'][0]}/{totals['compat'][1]}")


if __name__ == "__main__":
    main()
