#!/usr/bin/env bash
# What the browser tests (tests/web/test_web_browser.py, marked "browser") need: Debian's
# chromium, driven by Playwright's Python package (pip install -e '.[test]') through
# executable_path=/usr/bin/chromium. Playwright's own browser download is never used.
#
#   scripts/install_browser_test_deps.sh        # as root, or with sudo available
#
# Exits 0 when chromium is usable afterwards, 1 otherwise (the tests then skip with a reason).
set -u

if command -v chromium >/dev/null 2>&1; then
    echo "chromium present: $(chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "cannot install chromium: not root and no sudo; browser tests will be skipped" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install chromium: no apt-get (not Debian/Ubuntu); browser tests will be skipped" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq \
    && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
if command -v chromium >/dev/null 2>&1; then
    echo "installed: $(chromium --version 2>/dev/null)"
    exit 0
fi
echo "chromium could not be installed; browser tests will be skipped" >&2
exit 1
