#!/usr/bin/env bash
# The whole study offline, on the local MTurk sandbox:
#   data build -> generate -> distinct -> sandbox serve -> publish -> simulate -> collect -> review -> report
# Usage: scripts/demo.sh [experiments/demo.toml]   (run by `make demo`; safe to run again: every step
# resumes or skips what is done, and the sandbox keeps its state in runs/<experiment>/sandbox.sqlite)
set -euo pipefail
CFG="${1:-experiments/demo.toml}"
# PLATFORM=prolific (make demo PLATFORM=prolific): the same study through the local Prolific emulator.
if [ "${PLATFORM:-mturk}" = prolific ]; then exec bash "$(dirname "$0")/demo_prolific.sh" "$CFG"; fi
NAME="$(python - "$CFG" <<'PY'
import sys
from mturk_eval.config import load_config
print(load_config(sys.argv[1]).name)
PY
)"
RUN="runs/$NAME"
mkdir -p "$RUN"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/8 Build the datasets"
mturk-eval data build --config "$CFG"

step "2/8 Train prompt-tuned and fine-tuned systems, sample responses"
mturk-eval generate --config "$CFG"

step "3/8 Automatic evaluation (distinct-1/2, the paper's Table 1)"
mturk-eval distinct --config "$CFG"

step "4/8 Start the local MTurk sandbox"
PORT="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
mturk-eval sandbox serve --port "$PORT" --state "$RUN/sandbox.sqlite" --quiet > "$RUN/sandbox.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if python -c "import urllib.request,sys; urllib.request.urlopen('$URL/', timeout=1)" 2>/dev/null; then break; fi
    sleep 0.2
done
echo "sandbox at $URL (worker site: $URL/)"

step "5/8 Publish rating HITs (5 workers per item)"
mturk-eval publish --config "$CFG" --endpoint-url "$URL"

step "6/8 Simulated workers rate the responses (marked simulated)"
mturk-eval sandbox simulate --endpoint "$URL" --config "$CFG" --workers 8

step "7/8 Collect and review"
mturk-eval collect --config "$CFG" --endpoint-url "$URL"
mturk-eval review --config "$CFG" --endpoint-url "$URL" --apply
mturk-eval status --config "$CFG" --endpoint-url "$URL"

step "8/8 Report: the paper's Tables 2 and 3, agreement, tests, workers, plots"
mturk-eval report --config "$CFG" --target local
echo
echo "Report: $RUN/report/report.md"
