#!/usr/bin/env bash
# Make a Prometheus server binary available for the e2e tests, without
# installing a system service: Debian's `prometheus` package is downloaded
# (not installed) and unpacked into .ci/cache/prometheus/.
#
#   bash .ci/prometheus.sh            # prints the binary's path as its last line
#
# Does nothing if `prometheus` is already on PATH or already unpacked, so a
# second run is instant. Everything but the final path goes to stderr, so
# PROM="$(bash .ci/prometheus.sh)" captures just the path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.ci/cache"
dest="$cache/prometheus"
bin="$dest/usr/bin/prometheus"

if command -v prometheus >/dev/null 2>&1; then
    command -v prometheus
    exit 0
fi
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
cd "$cache"
rm -f prometheus_*.deb
if ! apt-get download prometheus >&2; then
    echo "prometheus.sh: apt-get download failed; running apt-get update and retrying" >&2
    apt-get update >&2
    apt-get download prometheus >&2
fi
shopt -s nullglob
debs=(prometheus_*.deb)
if (( ${#debs[@]} != 1 )); then
    echo "prometheus.sh: expected one prometheus_*.deb in $cache, found ${#debs[@]}" >&2
    exit 1
fi

# Unpack into a scratch folder and move it into place only when complete, so
# an interrupted run never leaves a half-unpacked tree that looks finished.
tmp="$(mktemp -d "$cache/prometheus.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "${debs[0]}" "$tmp"
"$tmp/usr/bin/prometheus" --version >&2
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
rm -f "${debs[@]}"
echo "$bin"
