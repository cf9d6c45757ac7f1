#!/usr/bin/env bash
# deploy/tallyd.service as systemd reads it: `systemd-analyze verify` (syntax, directives, the
# ExecStart binary, pointed at this build's tallyd) and `systemd-analyze security --offline`
# with an exposure threshold of 2.5 (--threshold counts tenths; the hardening stays good). Skips (exit 77) without systemd-analyze.
#   tests/deploy/check-unit.sh UNIT TALLYD
set -euo pipefail
unit=$1 tallyd=$2
command -v systemd-analyze >/dev/null || { echo "check-unit: no systemd-analyze: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#^ExecStart=/usr/bin/tallyd#ExecStart=$tallyd#" "$unit" >"$work/tallyd.service"
grep -q "^ExecStart=$tallyd " "$work/tallyd.service" || { echo "check-unit: no ExecStart line" >&2; exit 1; }
systemd-analyze verify "$work/tallyd.service"
echo "check-unit: systemd-analyze verify: OK"
systemd-analyze security --offline=true --threshold=25 "$work/tallyd.service" | tail -n 1
