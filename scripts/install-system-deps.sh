#!/usr/bin/env bash
# Installs the Debian packages the tests need: chromium for the Playwright browser tests, and the fonts
# the rating pages are checked with (DejaVu for Latin text, Noto CJK for the Japanese pages).
# Safe to run again: does nothing when they are all present.
set -euo pipefail
PACKAGES=(chromium fonts-dejavu-core fonts-noto-cjk)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install-system-deps: ${missing[*]} missing and this user cannot apt-get; browser tests will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
