#!/usr/bin/env bash
# Headless Chromium + Playwright's Python driver for tests/test_app_browser.py (FiftyOne App test).
# Idempotent: installs only what is missing. Never runs `playwright install` (no browser download;
# Playwright drives Debian's /usr/bin/chromium through executable_path).
#   scripts/install-browser.sh            # uses .venv/bin/python beside this script's repo
#   PYTHON=/path/to/python scripts/install-browser.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
playwright_version="1.65.2"

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-browser: /usr/bin/chromium is missing and we are not root; run: sudo apt-get install -y chromium" >&2
        exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! "$python" -c "import playwright.sync_api" 2>/dev/null; then
    "$python" -m pip install -q "playwright==${playwright_version}"
fi

/usr/bin/chromium --version
"$python" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
