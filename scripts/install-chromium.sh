#!/usr/bin/env bash
# Install Debian's headless-capable Chromium, which tests/test_report.py uses to render the HTML
# report (a screenshot and the DOM). Idempotent and quiet: does nothing when `chromium` is on PATH.
# Usage: bash scripts/install-chromium.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-chromium: not root and no sudo: install Debian's 'chromium' package by hand" >&2
        exit 1
    fi
    SUDO="sudo"
fi

echo "install-chromium: installing Debian's chromium package (once)" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: apt-get finished but 'chromium' is not on PATH" >&2
    exit 1
fi
