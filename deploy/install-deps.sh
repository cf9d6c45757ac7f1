#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are not installed yet (apt-get update
# first, only when something is missing). Needs root or password-less sudo. Installing
# postgresql starts no system-wide server (policy-rc.d, for the install only): tallyd's scripts
# run their own throw-away clusters (tests/pg.sh).
set -euo pipefail

missing=()
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "install-deps: missing packages (${missing[*]}) and no root or sudo to install them" >&2
        exit 1
    fi
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if [ $made_policy -eq 1 ]; then
        $SUDO rm -f $policy
    fi
}
trap cleanup EXIT
if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod 755 $policy
    made_policy=1
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
