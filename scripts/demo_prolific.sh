#!/usr/bin/env bash
# The whole study offline through the local Prolific emulator (`make demo PLATFORM=prolific`), with the
# user's own commands only:
#   generate -> publish --platform prolific --sandbox (starts the bundled emulator AND the rating site in
#   the background) -> simulated participants -> collect -> review (approve, bonus) -> report
# Nothing leaves 127.0.0.1 and no money is involved: --sandbox is the emulator, never Prolific.
# The config is found through $MTURK_EVAL_CONFIG (set by scripts/demo.sh), as from a mturk-eval.toml.
set -euo pipefail
export MTURK_EVAL_CONFIG="${1:-${MTURK_EVAL_CONFIG:-experiments/demo.toml}}"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
trap 'mturk-eval sandbox stop >/dev/null 2>&1 || true' EXIT
P=(--platform prolific --sandbox)

step "1/5 mturk-eval generate: datasets, prompt-tuned and fine-tuned systems, responses"
mturk-eval generate

step "2/5 mturk-eval publish --platform prolific --sandbox: one study per batch on the local emulator (cost shown first); the rating site starts in the background"
mturk-eval publish "${P[@]}"

step "3/5 Simulated participants take the study (some return it); collect frees their tasks; more come"
mturk-eval sandbox participants --return-share 0.1
mturk-eval collect "${P[@]}"
mturk-eval sandbox simulate --platform prolific --seed 1

step "4/5 Collect, review (approve, a bonus in Prolific's two steps), status"
mturk-eval collect "${P[@]}"
mturk-eval review "${P[@]}" --apply --bonus 0.10
mturk-eval status "${P[@]}"

step "5/5 mturk-eval report: the paper's Tables 2 and 3, agreement, tests, raters, plots"
mturk-eval report --target prolific-emulator
