#!/usr/bin/env bash
# The whole study offline through invite links (`make demo PLATFORM=links`), with the user's own commands:
#   generate -> publish --platform links --raters 3 (the rating site starts in the background) ->
#   sandbox simulate --platform links -> report
# No money is involved; nothing leaves 127.0.0.1. A person on this machine can open a printed link too.
set -euo pipefail
export MTURK_EVAL_CONFIG="${1:-${MTURK_EVAL_CONFIG:-experiments/demo.toml}}"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
trap 'mturk-eval sandbox stop >/dev/null 2>&1 || true' EXIT

step "1/4 mturk-eval generate: datasets, prompt-tuned and fine-tuned systems, responses"
mturk-eval generate

step "2/4 mturk-eval publish --platform links --raters 3: tasks on the rating site (started in the background), 3 invite links"
mturk-eval publish --platform links --raters 3

step "3/4 mturk-eval sandbox simulate --platform links: simulated raters (marked simulated) take links of their own"
mturk-eval sandbox simulate --platform links --workers 8

step "4/4 mturk-eval report: collects what is new, then Tables 2/3, agreement, tests, raters, plots"
mturk-eval report --target links
