#!/usr/bin/env bash
# The sampler comparison tables of docs/tiny_models.md: every built-in tiny model at two
# difficulty levels. Writes results/compare/<name>.md (the table) and .json, and prints both.
#   bash benchmarks/compare_tiny.sh            # all tables (about 60-90 min on 2 CPU cores)
#   bash benchmarks/compare_tiny.sh multiply   # only the tables whose name contains "multiply"
set -euo pipefail
only="${1:-}"
out=results/compare
mkdir -p "$out"
S6=random,confidence,margin,entropy,info_gain,lookum
S7=random,leftright,confidence,margin,entropy,info_gain,lookum
# judge: the seven plus lockstep reasoning/answer decoding (confidence or Info-Gain inside the regions)
SJ=$S7,lockstep_gs,lockstep_jacobi,lockstep_gs:info_gain,lockstep_jacobi:info_gain
# KLASS against the two samplers it builds on (a speed method: compare accuracy per NFE); the
# -loose tables use the authors' LLaDA GSM8K setting (confidence 0.6, KL 0.015) for both
SK=confidence,threshold,klass
LOOSE=(--threshold 0.6 --kl_threshold 0.015)

run() {
  local name="$1"; shift
  if [[ -n "$only" && "$name" != *"$only"* ]]; then return; fi
  unmask compare "$@" --json > "$out/$name.json"
  python3 - "$out/$name.json" "unmask compare $*" > "$out/$name.md" <<'PY'
import json, sys
from unmask.compare import format_table
d = json.load(open(sys.argv[1]))
print(f"`{sys.argv[2]}` (model {d['model']}, n={d['n']})\n")
print(format_table(d["rows"]))
PY
  cat "$out/$name.md"; echo
}

run sudoku-28-32 --task sudoku --samplers "$S6" --n 100 --givens 28-32
run sudoku-36-45 --task sudoku --samplers "$S6" --n 100 --givens 36-45
run sudoku-beyond-singles --task sudoku --samplers "$S6" --n 100 --givens 28-32 --technique beyond_singles
run multiply-t1 --task multiply --samplers "$S7" --n 200 --temperature 1
run multiply-t1-2perstep --task multiply --samplers "$S7" --n 200 --temperature 1 --tokens_per_step 2
run nae-sat-t1 --task nae_sat --samplers "$S7" --n 200 --temperature 1
run nae-sat-t1-4perstep --task nae_sat --samplers "$S7" --n 200 --temperature 1 --tokens_per_step 4
run judge-greedy --task judge --samplers "$SJ" --n 400 --temperature 0
run judge-greedy-2perstep --task judge --samplers "$SJ" --n 400 --temperature 0 --tokens_per_step 2
run judge-t1 --task judge --samplers "$SJ" --n 400 --temperature 1
run judge-t1-2perstep --task judge --samplers "$SJ" --n 400 --temperature 1 --tokens_per_step 2
run judge-greedy-answer-after --task judge --samplers lockstep_gs,lockstep_jacobi,lockstep_gs:info_gain,lockstep_jacobi:info_gain --n 400 --temperature 0 --answer_after 0.5
run judge-greedy-answer-last --task judge --samplers lockstep_gs,lockstep_jacobi,lockstep_gs:info_gain,lockstep_jacobi:info_gain --n 400 --temperature 0 --answer_after 1.0
run klass-sudoku-28-32 --task sudoku --samplers "$SK" --n 100 --givens 28-32
run klass-sudoku-28-32-loose --task sudoku --samplers "$SK" --n 100 --givens 28-32 "${LOOSE[@]}"
run klass-multiply-t1 --task multiply --samplers "$SK" --n 200 --temperature 1
run klass-multiply-t1-loose --task multiply --samplers "$SK" --n 200 --temperature 1 "${LOOSE[@]}"
run klass-nae-sat-t1 --task nae_sat --samplers "$SK" --n 200 --temperature 1
run klass-nae-sat-t1-loose --task nae_sat --samplers "$SK" --n 200 --temperature 1 "${LOOSE[@]}"
run klass-judge-greedy --task judge --samplers "$SK" --n 400 --temperature 0
run klass-judge-greedy-loose --task judge --samplers "$SK" --n 400 --temperature 0 "${LOOSE[@]}"
# accuracy per NFE on Sudoku, where KLASS saves forwards: threshold at stricter cut-offs and
# confidence at fixed tokens per step, near KLASS's NFE
run klass-sudoku-28-32-threshold-0.99 --task sudoku --samplers threshold --n 100 --givens 28-32 --threshold 0.99
run klass-sudoku-28-32-threshold-0.999 --task sudoku --samplers threshold --n 100 --givens 28-32 --threshold 0.999
run klass-sudoku-28-32-3perstep --task sudoku --samplers confidence,klass --n 100 --givens 28-32 --tokens_per_step 3
run klass-sudoku-28-32-klass-0.99 --task sudoku --samplers klass --n 100 --givens 28-32 --threshold 0.99
