#!/usr/bin/env bash
# The whole study offline through the user's own commands, on the bundled local MTurk-compatible sandbox
# (Amazon's MTurk closed on 2026-09-30):
#   generate -> publish --sandbox -> sandbox simulate -> report
# Usage: scripts/demo.sh [experiments/demo.toml]   (run by `make demo`). The config is found through
# $MTURK_EVAL_CONFIG, as it would be from a mturk-eval.toml written by `mturk-eval init`. Safe to run
# again: every step resumes or skips what is done; the sandbox keeps its state in runs/<exp>/sandbox/.
set -euo pipefail
export MTURK_EVAL_CONFIG="${1:-experiments/demo.toml}"
# PLATFORM=prolific (make demo PLATFORM=prolific): the same study through the local Prolific emulator;
# PLATFORM=links: through invite links. Both rate on the rating site, which --sandbox starts in the
# background like the local sandbox (no `mturk-eval serve` by hand).
if [ "${PLATFORM:-mturk}" = prolific ]; then exec bash "$(dirname "$0")/demo_prolific.sh" "$MTURK_EVAL_CONFIG"; fi
if [ "${PLATFORM:-mturk}" = links ]; then exec bash "$(dirname "$0")/demo_links.sh" "$MTURK_EVAL_CONFIG"; fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/4 mturk-eval generate: datasets, prompt-tuned and fine-tuned systems, responses"
mturk-eval generate

step "2/4 mturk-eval publish --sandbox: rating tasks, 5 raters per item, on the bundled local sandbox"
mturk-eval publish --sandbox

step "3/4 mturk-eval sandbox simulate: simulated raters (marked simulated) rate every task"
mturk-eval sandbox simulate --workers 8

step "4/4 mturk-eval report: collects what is new, then Tables 2/3, agreement, tests, workers, plots"
mturk-eval report

mturk-eval sandbox stop
