#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests when possible; the tests skip otherwise.
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || exit 1
else
  echo "chromium not installed and cannot apt-get install it here" >&2; exit 1
fi
