#!/usr/bin/env bash
# Installs what the test suite needs on top of the studio: pytest, Playwright's Python package, and Debian's
# Chromium (Playwright drives /usr/bin/chromium; it never downloads a browser of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt -r requirements-test.txt
if [ ! -x /usr/bin/chromium ]; then
  sudo_if_needed=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq chromium >/dev/null
fi
