#!/usr/bin/env bash
# The browser test drives Debian's chromium through Playwright; Playwright's own browser download cannot work
# offline, so the system package is installed instead (needs root, as on CI).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "The browser test needs Debian's chromium: run 'sudo apt-get install -y chromium chromium-driver' once." >&2
  exit 1
fi
echo "installing chromium (Debian package) for the browser test..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
