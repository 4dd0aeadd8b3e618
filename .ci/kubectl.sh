#!/usr/bin/env bash
# Debian's kubectl (package `kubernetes-client`) for the emulator's kubectl tests, without installing
# it system-wide: the package is downloaded (not installed) and unpacked into .ci/cache/kubectl/.
# Unpacked rather than installed because another package (e.g. the Google Cloud SDK's `kubectl`)
# may own /usr/bin/kubectl; the tests run this binary, whatever else is on the PATH.
#
#   bash .ci/kubectl.sh            # prints the binary's path as its last line
#
# A second run does nothing. Everything but the final path goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.ci/cache"
dest="$cache/kubectl"
bin="$dest/usr/bin/kubectl"

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
cd "$cache"
rm -f kubernetes-client_*.deb
if ! apt-get download kubernetes-client >&2; then
    echo "kubectl.sh: apt-get download failed; running apt-get update and retrying" >&2
    apt-get update >&2
    apt-get download kubernetes-client >&2
fi
shopt -s nullglob
debs=(kubernetes-client_*.deb)
if (( ${#debs[@]} != 1 )); then
    echo "kubectl.sh: expected one kubernetes-client_*.deb in $cache, found ${#debs[@]}" >&2
    exit 1
fi

# Unpacked into a scratch folder and moved into place only when complete.
tmp="$(mktemp -d "$cache/kubectl.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "${debs[0]}" "$tmp"
"$tmp/usr/bin/kubectl" version --client >&2
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
rm -f "${debs[@]}"
echo "$bin"
