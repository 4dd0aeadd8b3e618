#!/usr/bin/env bash
# Debian's Chromium for the test that opens the HTML report in a real browser (headless).
#
#   bash .ci/chromium.sh            # prints the binary's path as its last line
#
# Installs the `chromium` package only if no `chromium` is on the PATH (a second run does nothing).
# Installed, not unpacked as Prometheus and kubectl are: the browser needs its shared libraries.
# Everything but the final path goes to stderr.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium.sh: installing Debian's chromium" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
    fi
fi
chromium --version >&2
command -v chromium
