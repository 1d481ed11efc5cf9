#!/usr/bin/env bash
# The whole study offline through the local Prolific emulator (`make demo PLATFORM=prolific`):
#   generate -> rating site -> publish --platform prolific --sandbox (the bundled emulator) ->
#   simulated participants -> collect -> review (approve, bonus) -> report
# Nothing leaves 127.0.0.1 and no money is involved: --sandbox is the emulator, never Prolific.
set -euo pipefail
CFG="${1:-experiments/demo.toml}"
NAME="$(python - "$CFG" <<'PY'
import sys
from mturk_eval.config import load_config
print(load_config(sys.argv[1]).name)
PY
)"
RUN="runs/$NAME"
mkdir -p "$RUN"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 150); do
    if python -c "import urllib.request; urllib.request.urlopen('$1', timeout=1)" 2>/dev/null; then return 0; fi
    sleep 0.2; done; echo "$1 did not come up" >&2; return 1; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/6 mturk-eval generate: datasets, prompt-tuned and fine-tuned systems, responses"
mturk-eval generate --config "$CFG"

step "2/6 Start the rating site (participants rate there)"
SITE_PORT="$(free_port)"; SITE="http://127.0.0.1:$SITE_PORT"
mturk-eval serve --config "$CFG" --port "$SITE_PORT" > "$RUN/site.log" 2>&1 &
SITE_PID=$!
trap 'kill $SITE_PID 2>/dev/null || true; mturk-eval sandbox stop --config "$CFG" >/dev/null 2>&1 || true' EXIT
wait_for "$SITE/healthz"
echo "rating site at $SITE"

step "3/6 Publish one study per batch on the bundled local Prolific emulator (cost shown first)"
P=(--config "$CFG" --platform prolific --sandbox)
mturk-eval publish "${P[@]}" --public-url "$SITE"

step "4/6 Simulated participants take the study (some return it); collect frees their tasks; more come"
mturk-eval sandbox participants --config "$CFG" --return-share 0.1
mturk-eval collect "${P[@]}"
mturk-eval sandbox participants --config "$CFG" --seed 1

step "5/6 Collect, review (approve, a bonus in Prolific's two steps), status"
mturk-eval collect "${P[@]}"
mturk-eval review "${P[@]}" --apply --bonus 0.10
mturk-eval status "${P[@]}"

step "6/6 Report: the paper's Tables 2 and 3, agreement, tests, raters, plots"
mturk-eval report --config "$CFG" --target prolific-emulator
echo
echo "Report: $RUN/report/report.md"
