#!/usr/bin/env bash
# Prints the path of a promtool binary (Prometheus's metrics linter), fetching it if needed.
#
#   tests/tools/promtool.sh DIR
#
# promtool on PATH wins. Otherwise Debian's `prometheus` package is downloaded (apt-get
# download, no install: installing it would enable a Prometheus server at boot) and only
# /usr/bin/promtool is unpacked into DIR. Exits 1 with a reason on stderr when neither works.
set -euo pipefail

dir=${1:?usage: promtool.sh DIR}
if command -v promtool >/dev/null; then
    command -v promtool
    exit 0
fi
if [ -x "$dir/promtool" ]; then
    echo "$dir/promtool"
    exit 0
fi
mkdir -p "$dir/deb"
cd "$dir/deb"
rm -f prometheus_*.deb
if ! apt-get download -q prometheus >/dev/null 2>&1; then
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
    apt-get download -q prometheus >/dev/null 2>&1 || {
        echo "promtool.sh: cannot download Debian's prometheus package" >&2
        exit 1
    }
fi
rm -rf x
dpkg-deb -x prometheus_*.deb x
install -m 755 x/usr/bin/promtool "$dir/promtool"
rm -rf x prometheus_*.deb
echo "$dir/promtool"
