#!/usr/bin/env bash
# The Debian packages CPack builds from BUILD (tallyd, tally-push, libtally-dev): their
# contents (dpkg -c), then installed into a scratch root (dpkg -x) and used from there:
# tallyd and tally-push answer --version, and a program built against libtally-dev with
# pkg-config links and runs. Skips (exit 77) without cpack or dpkg-deb.
#   tests/deploy/check-packages.sh BUILD_DIR
set -euo pipefail
build=$1
command -v cpack >/dev/null && command -v dpkg-deb >/dev/null || {
    echo "check-packages: no cpack or dpkg-deb: skipped"
    exit 77
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cpack --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 || {
    cat "$work/cpack.log" >&2
    exit 1
}
want() { # deb file...
    local deb=$1
    shift
    local list
    list=$(dpkg -c "$deb" | awk '{print $6}')
    for f in "$@"; do
        grep -qx "\./$f" <<<"$list" || { echo "check-packages: $deb lacks $f" >&2; exit 1; }
    done
    echo "check-packages: $(basename "$deb"): $# expected files present"
}
want "$work"/out/tallyd_*.deb usr/bin/tallyd usr/bin/tallyctl usr/lib/systemd/system/tallyd.service \
    usr/share/man/man8/tallyd.8 usr/share/man/man1/tallyctl.1 usr/share/doc/tallyd/tallyd.conf.example
want "$work"/out/tally-push_*.deb usr/bin/tally-push usr/share/man/man1/tally-push.1
want "$work"/out/libtally-dev_*.deb usr/include/tally/client.h usr/include/tally/protocol.h \
    usr/lib/libtally.so usr/lib/pkgconfig/tally.pc

root=$work/root
for deb in "$work"/out/*.deb; do dpkg -x "$deb" "$root"; done
"$root/usr/bin/tallyd" --version
"$root/usr/bin/tally-push" --version
"$root/usr/bin/tallyctl" --version

cat >"$work/use.c" <<'C'
#include <stdio.h>
#include <tally/client.h>
int main(void)
{
    printf("libtally: %s\n", tally_client_strerror(TALLY_CLIENT_ERR_SEQ_CONFLICT));
    return tally_client_id_is_valid("c0") ? 0 : 1;
}
C
export PKG_CONFIG_PATH=$root/usr/lib/pkgconfig
# shellcheck disable=SC2046 # pkg-config prints flags to split
cc -o "$work/use" "$work/use.c" $(pkg-config --cflags --libs tally)
LD_LIBRARY_PATH=$root/usr/lib "$work/use"
echo "check-packages: OK"
